//! Why a migration is stuck or slow: named causes, each with the evidence
//! on the wire that supports it.
//!
//! The same rules serve the live view (`watch`, evaluated every second
//! against "now") and the final report (`verify`, `lab run`, evaluated at
//! the end of the observation), so an operator sees the same cause, under
//! the same stable ID, while it happens and afterwards. Every rule rests on
//! what the observers count per connection and direction (payload that
//! advanced the sequence, retransmissions, zero windows, segment sizes, the
//! SYN's MSS, SYN / SYN-ACK / FIN / RST) and on ARP per address, because an
//! unreachable peer sends no SYN at all: the kernel holds it until the
//! target's address resolves.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use serde_json::{json, Value};
use verifier_ebpf::{
    Direction, NeighborKey, NeighborStats, SEEN_FIN, SEEN_RST, SEEN_SYN, SEEN_SYN_ACK,
};

use super::{
    budget::{BudgetReport, Projection},
    migration::{Figures, Group},
    series::Interval,
    verdict::{bytes, rate, Expectations, Reason, Severity},
};
use crate::{
    config::Endpoint,
    dataplane::Role,
    flows::{Connection, FlowTable, SlotInfo},
};

/// Stable IDs of the causes (documented in docs/verify.md).
pub mod id {
    pub const PEER_UNREACHABLE: &str = "cause.peer-unreachable";
    pub const MTU_BLACKHOLE: &str = "cause.mtu-blackhole";
    pub const BLACKHOLE: &str = "cause.blackhole";
    pub const RATE_CAP: &str = "cause.rate-cap";
    pub const RECEIVER_BOUND: &str = "cause.receiver-bound";
    pub const RESET_AFTER_CONNECT: &str = "cause.reset-after-connect";
    pub const FALLBACK: &str = "fallback.primary-network";
    pub const NO_TRAFFIC: &str = "traffic.none";
}

/// A SYN unanswered this long (or sent twice: the first retry comes after
/// 1 s) is no slow handshake.
const SYN_PATIENCE_MS: u64 = 1000;
/// A direction that has not moved new payload for this long while its
/// sender retransmits is not being acknowledged.
const STALL_EVIDENCE_MS: u64 = 1000;
/// Retransmissions since the last progress that make a stall evidence:
/// the retransmission timer backs off, so two come within about a second.
const STALL_RETRANSMITS: u64 = 2;
/// A sender that never got past this many segments' worth of payload never
/// had a full-size segment acknowledged (an initial window is 10 segments).
const INITIAL_WINDOW_SEGMENTS: u64 = 16;
/// Segments at least this large are "full size" for an MTU black hole; a
/// smaller largest segment points to another cause.
const FULL_SIZE_MIN: u32 = 1200;
/// A reset this soon after the first packet, before the stream moved more
/// than a handshake's worth, is a broken proxy or TLS set-up: a failed
/// handshake resets within a second. (Later resets follow a cancel or a
/// stall; and a multifd migration's main channel carries only a few KiB in
/// all, so the payload alone says nothing.)
const RESET_WINDOW_MS: u64 = 3_000;
const HANDSHAKE_PAYLOAD: u64 = 64 * 1024;
/// Unanswered ARP requests that make an address unreachable (the kernel
/// sends one a second, three in all, before "No route to host").
const ARP_UNANSWERED: u64 = 2;
/// Live: published endpoints with no packet for this long.
const NO_TRAFFIC_AFTER_MS: u64 = 5000;
/// Rate cap: the window judged, and the buckets it is cut into.
const FLAT_WINDOW_MS: u64 = 2500;
const FLAT_BUCKET_MS: u64 = 500;
/// Every bucket within this share of the median is a flat rate.
const FLAT_TOLERANCE: f64 = 0.10;
/// Within this share of bandwidthPerMigration the cap is that setting.
const SETTING_TOLERANCE: f64 = 0.10;
/// RTT p50 this many times the least RTT (and over 1 ms): a queue builds,
/// as in front of a shaper.
const QUEUE_RTT_FACTOR: u64 = 10;
/// Zero windows that make a slow migration receiver-bound: a window that
/// closes once while a stream sets up says nothing.
const SLOW_RECEIVER_ZERO_WINDOWS: u64 = 50;
/// Live: what "recent" means for zero windows.
const RECENT_MS: u64 = 5000;

/// Whether the rules judge a moment in a running observation or its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `watch`: every second, about now.
    Live,
    /// `verify`, `lab run`: once, about the whole observation.
    Final,
}

/// Everything the rules look at besides each migration's own figures.
pub struct Scene<'a> {
    pub table: &'a FlowTable,
    pub slots: &'a [Option<SlotInfo>],
    pub endpoints: &'a [Endpoint],
    pub neighbors: &'a [(NeighborKey, NeighborStats)],
    pub expectations: &'a Expectations,
    /// Now (live) or the end of the observation, ms since it started.
    pub now_ms: u64,
    /// When the endpoints became known, ms since the observation started.
    pub endpoints_since_ms: u64,
    pub phase: Phase,
}

/// One migration as the rules see it.
pub struct Subject<'a> {
    pub group: &'a Group<'a>,
    pub figures: &'a Figures,
    pub budget: &'a BudgetReport,
}

/// The named causes that hold, with their evidence.
pub fn diagnose(scene: &Scene, migrations: &[Subject]) -> Vec<Reason> {
    let mut causes = Vec::new();
    for subject in migrations {
        diagnose_migration(scene, subject, &mut causes);
    }
    let unreachable = unreachable_by_arp(scene, &mut causes);
    no_traffic(scene, migrations, &unreachable, &mut causes);
    causes
}

fn cause(
    id: &'static str,
    severity: Severity,
    migration: Option<String>,
) -> impl FnOnce(String, Value) -> Reason {
    move |message, evidence| Reason {
        id,
        severity,
        message,
        migration,
        evidence,
    }
}

/// What one direction of a connection shows, over every place it was seen.
#[derive(Clone, Debug, Default)]
struct DirectionView {
    payload: u64,
    retransmits: u64,
    /// Largest segment at the hook that saw the largest, and at the one
    /// that saw the smallest largest (of the hooks that saw payload).
    largest: u32,
    smallest_largest: u32,
    /// The SYN's MSS option of this direction.
    mss: u16,
    packets: u64,
    /// (interface, largest segment, retransmits) per hook that saw payload.
    hooks: Vec<(String, u32, u64)>,
}

fn view(connection: &Connection, slots: &[Option<SlotInfo>], forward: bool) -> DirectionView {
    let mut view = DirectionView {
        smallest_largest: u32::MAX,
        ..DirectionView::default()
    };
    for seen in connection.observations().filter(|s| s.forward == forward) {
        let s = seen.stats;
        view.payload = view.payload.max(s.unique_payload_bytes);
        view.retransmits = view.retransmits.max(s.retransmits);
        view.packets = view.packets.max(s.packets);
        view.mss = view.mss.max(s.mss);
        if s.unique_payload_bytes + s.retransmitted_bytes > 0 {
            view.largest = view.largest.max(s.largest_segment);
            view.smallest_largest = view.smallest_largest.min(s.largest_segment);
            view.hooks.push((
                format!("{} {}", slot_name(slots, seen.slot), seen.direction),
                s.largest_segment,
                s.retransmits,
            ));
        }
    }
    if view.smallest_largest == u32::MAX {
        view.smallest_largest = 0;
    }
    view
}

fn slot_name(slots: &[Option<SlotInfo>], slot: u8) -> String {
    slots
        .get(usize::from(slot))
        .cloned()
        .flatten()
        .map_or_else(|| format!("slot{slot}"), |s| s.name())
}

/// The MTUs of the interfaces a connection was seen on.
fn mtus(connection: &Connection, slots: &[Option<SlotInfo>]) -> BTreeMap<String, u32> {
    connection
        .observations()
        .filter_map(|seen| {
            let slot = slots.get(usize::from(seen.slot)).cloned().flatten()?;
            Some((slot.name(), slot.mtu?))
        })
        .collect()
}

/// How a stalled direction looks.
enum Stall {
    /// Full-size segments never got through.
    Mtu,
    /// Everything stopped after the stream had moved.
    Blackhole,
}

/// The end of a connection's time: its close, or now.
fn end_ms(connection: &Connection, now_ms: u64) -> u64 {
    connection.closed_at_ms.unwrap_or(now_ms).min(now_ms)
}

/// Whether one direction has stopped being acknowledged: no new payload
/// for a while, and the sender resending meanwhile.
fn stalled(connection: &Connection, index: usize, now_ms: u64) -> Option<u64> {
    let activity = &connection.activity[index];
    let last = activity.payload_ms?;
    let stalled_ms = end_ms(connection, now_ms).saturating_sub(last);
    (activity.retransmits_since_payload >= STALL_RETRANSMITS && stalled_ms >= STALL_EVIDENCE_MS)
        .then_some(stalled_ms)
}

fn classify_stall(view: &DirectionView) -> Stall {
    let never_past_first_window =
        view.payload <= INITIAL_WINDOW_SEGMENTS * u64::from(view.largest.max(1));
    // Hooks further along saw only smaller segments: the large ones were
    // lost between.
    let large_ones_lost = view.smallest_largest + 64 < view.largest;
    if view.largest >= FULL_SIZE_MIN && (never_past_first_window || large_ones_lost) {
        Stall::Mtu
    } else {
        Stall::Blackhole
    }
}

fn established(connection: &Connection) -> bool {
    connection.seen() & SEEN_SYN_ACK != 0
        || (connection.seen() & SEEN_SYN == 0 && connection.payload_bytes() > 0)
}

fn conn_name(connection: &Connection) -> String {
    format!("{} -> {}", connection.key.client, connection.key.server)
}

fn diagnose_migration(scene: &Scene, subject: &Subject, causes: &mut Vec<Reason>) {
    let group = subject.group;
    let f = subject.figures;
    let id_of = || Some(f.id.clone());
    let now = scene.now_ms;

    let mut syn_unanswered = Vec::new();
    let mut refused = Vec::new();
    let mut mtu = Vec::new();
    let mut blackhole = Vec::new();
    let mut resets = Vec::new();
    let mut zero_window = Vec::new();
    // A migration that got past its handshakes somewhere ends with resets
    // (a cancel, an abort): they do not say its set-up is broken.
    let moved_far = group
        .connections
        .iter()
        .any(|c| c.forward_payload_bytes() > HANDSHAKE_PAYLOAD);
    for connection in &group.connections {
        let seen = connection.seen();
        let forward = view(connection, scene.slots, true);
        let age = end_ms(connection, now).saturating_sub(connection.first_seen_ms.unwrap_or(now));
        // No SYN-ACK seen, and nothing sent after the SYN: data would mean
        // the handshake completed where we do not see (an asymmetric path).
        if seen & SEEN_SYN != 0 && seen & SEEN_SYN_ACK == 0 && connection.payload_bytes() == 0 {
            if seen & SEEN_RST != 0 {
                refused.push(json!({ "connection": conn_name(connection) }));
            } else if forward.packets >= 2 || age >= SYN_PATIENCE_MS {
                syn_unanswered.push(json!({
                    "connection": conn_name(connection),
                    "syns": forward.packets,
                    "waiting_s": secs(age),
                    "seen_on": forward.hooks.iter().map(|h| &h.0).collect::<Vec<_>>(),
                }));
            }
            continue;
        }
        if !established(connection) {
            continue;
        }
        let mut stalled_here = false;
        for (index, is_forward) in [(0, true), (1, false)] {
            let Some(stalled_ms) = stalled(connection, index, now) else {
                continue;
            };
            stalled_here = true;
            let dir = if is_forward {
                forward.clone()
            } else {
                view(connection, scene.slots, false)
            };
            let evidence = json!({
                "connection": conn_name(connection),
                "direction": if is_forward { "to target" } else { "to source" },
                "stalled_s": secs(stalled_ms),
                "payload_bytes": dir.payload,
                "retransmits": dir.retransmits,
                "retransmits_since_progress": connection.activity[index].retransmits_since_payload,
                "largest_segment": dir.largest,
                "smallest_largest_segment": dir.smallest_largest,
                "mss": dir.mss,
                "hooks": dir.hooks.iter().map(|(at, largest, retransmits)| json!({
                    "at": at, "largest_segment": largest, "retransmits": retransmits,
                })).collect::<Vec<_>>(),
                "interface_mtus": mtus(connection, scene.slots),
            });
            match classify_stall(&dir) {
                Stall::Mtu => mtu.push(evidence),
                Stall::Blackhole => blackhole.push(evidence),
            }
        }
        if !stalled_here && !moved_far && seen & SEEN_RST != 0 {
            let lived = connection
                .closed_at_ms
                .unwrap_or(now)
                .saturating_sub(connection.first_seen_ms.unwrap_or(0));
            if lived <= RESET_WINDOW_MS && connection.forward_payload_bytes() <= HANDSHAKE_PAYLOAD {
                resets.push(json!({
                    "connection": conn_name(connection),
                    "reset_after_s": secs(lived),
                    "payload_bytes": connection.payload_bytes(),
                    "fin": seen & SEEN_FIN != 0,
                }));
            }
        }
        // A zero window from the target, at or after the stream's last
        // progress: it stopped reading what arrives.
        let activity = &connection.activity[1];
        let last_progress = connection.activity[0].payload_ms.unwrap_or(0);
        if let Some(at) = activity.zero_window_ms.filter(|at| *at >= last_progress) {
            if !stalled_here && (scene.phase == Phase::Final || now.saturating_sub(at) <= RECENT_MS)
            {
                let count: u64 = connection
                    .observations()
                    .filter(|s| !s.forward)
                    .map(|s| s.stats.zero_windows)
                    .max()
                    .unwrap_or(0);
                zero_window.push(json!({
                    "connection": conn_name(connection),
                    "zero_windows": count,
                    "last_s_ago": secs(now.saturating_sub(at)),
                }));
            }
        }
    }

    if !syn_unanswered.is_empty() || !refused.is_empty() {
        let message = if syn_unanswered.is_empty() {
            format!(
                "the target refused {} connection(s) with a reset to the SYN: nothing listens on {} (did the \
                 target's migration stop?)",
                refused.len(),
                f.targets.join(", ")
            )
        } else {
            format!(
                "{} connection(s) to {} sent SYNs without a SYN-ACK: the peer is unreachable on this network — \
                 down, filtered, or on another L2 segment or VLAN than the source",
                syn_unanswered.len(),
                f.targets.join(", ")
            )
        };
        causes.push(cause(id::PEER_UNREACHABLE, Severity::Error, id_of())(
            message,
            json!({ "syn_unanswered": syn_unanswered, "refused": refused }),
        ));
    }
    if !mtu.is_empty() {
        let largest = mtu
            .iter()
            .filter_map(|e| e["largest_segment"].as_u64())
            .max()
            .unwrap_or(0);
        let far = mtu
            .iter()
            .filter_map(|e| e["smallest_largest_segment"].as_u64())
            .min()
            .unwrap_or(0);
        let mss = mtu
            .iter()
            .filter_map(|e| e["mss"].as_u64())
            .max()
            .unwrap_or(0);
        let interface_mtus: BTreeMap<String, u64> = mtu
            .iter()
            .filter_map(|e| e["interface_mtus"].as_object())
            .flat_map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_u64()?))))
            .collect();
        let least_mtu = interface_mtus.values().min().copied();
        let mut message = format!(
            "MTU black hole: {} connection(s) completed the handshake, then their full-size segments ({largest} B \
             of payload{}) were retransmitted and never acknowledged",
            mtu.len(),
            if mss > 0 { format!(", MSS {mss}") } else { String::new() },
        );
        if far > 0 && far + 64 < largest {
            message.push_str(&format!(
                "; further along only segments up to {far} B arrived"
            ));
        }
        match least_mtu {
            Some(least) if largest + 40 <= least => message.push_str(&format!(
                "; every observed interface takes them (MTU {least} or more), so a hop between has a smaller MTU \
                 and drops them without an ICMP 'fragmentation needed': make the MTU equal end to end"
            )),
            Some(least) => message.push_str(&format!(
                "; an observed interface has MTU {least}: make the MTU equal end to end (the NAD's mtu, the NICs, \
                 the switch ports)"
            )),
            None => message.push_str(": make the MTU equal end to end"),
        }
        causes.push(cause(id::MTU_BLACKHOLE, Severity::Error, id_of())(
            message,
            json!({ "connections": mtu, "interface_mtus": interface_mtus }),
        ));
    }
    if !blackhole.is_empty() {
        let stalled_s = blackhole
            .iter()
            .filter_map(|e| e["stalled_s"].as_f64())
            .fold(0.0, f64::max);
        let retransmits: u64 = blackhole
            .iter()
            .filter_map(|e| e["retransmits_since_progress"].as_u64())
            .sum();
        let reached: BTreeSet<String> = blackhole
            .iter()
            .filter_map(|e| e["hooks"].as_array())
            .flatten()
            .filter(|h| h["retransmits"].as_u64().unwrap_or(0) > 0)
            .filter_map(|h| h["at"].as_str().map(str::to_string))
            .collect();
        let mut message = format!(
            "{} of {} connection(s) stopped being acknowledged for {stalled_s:.1} s after moving {}: the sender \
             retransmitted {retransmits} times without getting further — packets are dropped on the path or at \
             the receiver (a firewall or NetworkPolicy, a failed link)",
            blackhole.len(),
            group.connections.len(),
            bytes(f.payload_bytes),
        );
        if !reached.is_empty() {
            message.push_str(&format!(
                "; the retransmissions were seen on {}, so they are lost beyond those hooks",
                reached.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
        causes.push(cause(id::BLACKHOLE, Severity::Error, id_of())(
            message,
            json!({ "connections": blackhole }),
        ));
    }
    if !resets.is_empty() {
        causes.push(cause(id::RESET_AFTER_CONNECT, Severity::Error, id_of())(
            format!(
                "{} connection(s) were reset within {} s of connecting, after at most {} of payload: a proxy or \
                 the TLS set-up breaks the connection (certificates, a TLS-intercepting proxy, a port not meant \
                 for migration)",
                resets.len(),
                RESET_WINDOW_MS / 1000,
                bytes(HANDSHAKE_PAYLOAD)
            ),
            json!({ "connections": resets }),
        ));
    }
    let capped = rate_cap(scene, subject, causes);
    // Loss explains a stall better than a closed window, a cap a slow rate.
    if mtu.is_empty() && blackhole.is_empty() {
        receiver_bound(scene, subject, &zero_window, capped, causes);
    }
    if f.bytes_by_role.primary > 0 {
        fallback(f, causes);
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Zero windows from the target matter when the migration is too slow for
/// its budget or has stopped: the target, not the network, holds it back.
/// A fast migration whose receiver is the bottleneck is healthy.
fn receiver_bound(
    scene: &Scene,
    subject: &Subject,
    zero_window: &[Value],
    capped: bool,
    causes: &mut Vec<Reason>,
) {
    if zero_window.is_empty() {
        return;
    }
    let count: u64 = zero_window
        .iter()
        .filter_map(|z| z["zero_windows"].as_u64())
        .sum();
    let f = subject.figures;
    let b = subject.budget;
    // Live, a migration whose connections all closed is over, not slow.
    let open = subject
        .group
        .connections
        .iter()
        .any(|c| c.closed_at_ms.is_none());
    if scene.phase == Phase::Live && !open {
        return;
    }
    let (stalled_s, rate_bps) = match scene.phase {
        // A finished migration ran at what it averaged: the median interval
        // of a short one is its set-up (as for the budget's projection).
        Phase::Final if b.projection == Projection::Duration => {
            (f.longest_stall_s, f.throughput_bps.mean)
        }
        Phase::Final => (f.longest_stall_s, f.throughput_bps.p50),
        Phase::Live => (
            current_stall_ms(&f.progress, scene.now_ms) as f64 / 1000.0,
            recent_rate_bps(&f.progress, scene.now_ms, RECENT_MS),
        ),
    };
    // Slow, and the window closing again and again (not once while the
    // stream set up), with no cap on the path to explain the rate.
    let slow = b.min_rate_bps > 0
        && rate_bps < b.min_rate_bps
        && !capped
        && count >= SLOW_RECEIVER_ZERO_WINDOWS;
    if stalled_s * 1000.0 < STALL_EVIDENCE_MS as f64 && !slow {
        return;
    }
    causes.push(cause(id::RECEIVER_BOUND, Severity::Warning, Some(f.id.clone()))(
        format!(
            "the target advertised a zero receive window {count} times while the migration {}: the target does \
             not read fast enough (its QEMU, CPU or disk), not the network",
            if slow {
                format!("ran at {}, below the {} its budget needs", rate(rate_bps), rate(b.min_rate_bps))
            } else {
                format!("stood still for {stalled_s:.1} s")
            }
        ),
        json!({ "connections": zero_window, "rate_bps": rate_bps, "min_rate_bps": b.min_rate_bps,
                "stalled_s": stalled_s }),
    ));
}

/// How long the payload has not moved, at `now_ms` (live).
pub fn current_stall_ms(progress: &[Interval], now_ms: u64) -> u64 {
    progress
        .iter()
        .rev()
        .find(|i| i.bytes > 0)
        .map_or(0, |i| now_ms.saturating_sub(i.at_ms))
}

/// The payload rate over the `window_ms` before `now_ms` (or the part of
/// it the migration has lasted), bits per second.
pub fn recent_rate_bps(progress: &[Interval], now_ms: u64, window_ms: u64) -> u64 {
    let from = now_ms.saturating_sub(window_ms);
    let recent = progress
        .iter()
        .filter(|i| i.at_ms > from && i.at_ms <= now_ms);
    let (moved, covered) = recent.fold((0u64, 0u64), |(moved, covered), i| {
        (moved + i.bytes, covered + i.length_ms)
    });
    let covered = covered.clamp(1, window_ms.max(1));
    (u128::from(moved) * 8 * 1000 / u128::from(covered)) as u64
}

/// Payload rates of consecutive buckets of `FLAT_BUCKET_MS` from `from`
/// to `to`, bits per second. Each bucket's rate is its intervals' bytes
/// over their own lengths: reads come a little early or late, and a bucket
/// that got one interval more must not look faster.
fn buckets(progress: &[Interval], from: u64, to: u64) -> Vec<u64> {
    let count = ((to.saturating_sub(from)) / FLAT_BUCKET_MS) as usize;
    let mut sums = vec![(0u64, 0u64); count];
    for interval in progress {
        if interval.at_ms <= from || interval.at_ms > from + count as u64 * FLAT_BUCKET_MS {
            continue;
        }
        let index = ((interval.at_ms - from - 1) / FLAT_BUCKET_MS) as usize;
        sums[index].0 += interval.bytes;
        sums[index].1 += interval.length_ms;
    }
    sums.iter()
        .map(|(bytes, ms)| bytes * 8 * 1000 / (*ms).max(1))
        .collect()
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn within(value: u64, target: u64, tolerance: f64) -> bool {
    (value as f64 - target as f64).abs() <= tolerance * target as f64
}

/// A flat rate: live, every bucket of the last few seconds at one rate;
/// at the end, most buckets of the migration's middle (its ramp-up and
/// tail left out). Returns the rate and the seconds it held.
fn flat_rate(progress: &[Interval], phase: Phase, now_ms: u64) -> Option<(u64, f64)> {
    let first = progress.iter().find(|i| i.bytes > 0)?;
    let start = first.at_ms.saturating_sub(first.length_ms);
    match phase {
        Phase::Live => {
            let from = now_ms.checked_sub(FLAT_WINDOW_MS)?;
            if from < start {
                return None;
            }
            let rates = buckets(progress, from, now_ms);
            let m = median(&rates);
            (m > 0 && rates.iter().all(|r| within(*r, m, FLAT_TOLERANCE)))
                .then_some((m, FLAT_WINDOW_MS as f64 / 1000.0))
        }
        Phase::Final => {
            let last = progress.iter().rev().find(|i| i.bytes > 0)?.at_ms;
            let (from, to) = (start + 1000, last.checked_sub(1000)?);
            let rates = buckets(progress, from, to);
            if (rates.len() as u64) < FLAT_WINDOW_MS / FLAT_BUCKET_MS {
                return None;
            }
            let m = median(&rates);
            let flat = rates
                .iter()
                .filter(|r| within(**r, m, FLAT_TOLERANCE))
                .count();
            (m > 0 && flat * 5 >= rates.len() * 4)
                .then_some((m, (flat as u64 * FLAT_BUCKET_MS) as f64 / 1000.0))
        }
    }
}

/// Whether the rate is flat at a limit (and says so).
fn rate_cap(scene: &Scene, subject: &Subject, causes: &mut Vec<Reason>) -> bool {
    let f = subject.figures;
    let b = subject.budget;
    let Some((cap_bps, held_s)) = flat_rate(&f.progress, scene.phase, scene.now_ms) else {
        return false;
    };
    let setting = b
        .bandwidth_per_migration_bps
        .filter(|bw| within(cap_bps, *bw, SETTING_TOLERANCE));
    let queueing = f.rtt_us.samples >= 10
        && f.rtt_us.p50 >= 1000
        && f.rtt_us.p50 >= QUEUE_RTT_FACTOR * f.rtt_us.min.max(1);
    let what = match setting {
        Some(bw) => format!("bandwidthPerMigration ({})", rate(bw)),
        None if queueing => format!(
            "a shaper: a queue builds in front of it (RTT p50 {} us against {} us at best)",
            f.rtt_us.p50, f.rtt_us.min
        ),
        None => {
            "a limit on the path (a shaper or policer, the link speed, or QEMU's max-bandwidth)"
                .to_string()
        }
    };
    let projected_s = (cap_bps > 0).then(|| b.size_bytes as f64 * 8.0 / cap_bps as f64);
    let budget_s = b.completion_timeout_s as f64;
    let severity = match projected_s {
        Some(p) if budget_s > 0.0 && p > budget_s => Severity::Error,
        Some(p) if budget_s > 0.0 && p > super::verdict::NEAR_BUDGET * budget_s => {
            Severity::Warning
        }
        _ => Severity::Info,
    };
    let consequence = match projected_s {
        Some(p) => format!(
            "at this rate {} take {p:.0} s against a completion budget of {budget_s:.0} s{}",
            bytes(b.size_bytes),
            if p > budget_s {
                ": KubeVirt will cancel it; raise the limit or the budget"
            } else {
                ""
            }
        ),
        None => String::new(),
    };
    causes.push(cause(id::RATE_CAP, severity, Some(f.id.clone()))(
        format!(
            "the rate has been flat at {} for {held_s:.1} s: capped by {what}; {consequence}",
            rate(cap_bps)
        ),
        json!({
            "rate_bps": cap_bps,
            "held_s": held_s,
            "bandwidth_per_migration_bps": b.bandwidth_per_migration_bps,
            "rtt_us": { "min": f.rtt_us.min, "p50": f.rtt_us.p50 },
            "projected_s": projected_s,
            "completion_timeout_s": b.completion_timeout_s,
            "size_bytes": b.size_bytes,
        }),
    ));
    true
}

fn fallback(f: &Figures, causes: &mut Vec<Reason>) {
    let on: Vec<String> = f
        .bytes_by_interface
        .iter()
        .filter(|i| i.role == Role::Primary)
        .map(|i| {
            i.netns
                .as_ref()
                .map_or(i.interface.clone(), |ns| format!("{}@{ns}", i.interface))
        })
        .collect();
    causes.push(cause(id::FALLBACK, Severity::Error, Some(f.id.clone()))(
        format!(
            "{} bytes of this migration crossed the primary (pod) network on {}: virt-handler did not use \
             the migration network (is migration0 missing from the virt-handler pod?)",
            f.bytes_by_role.primary,
            on.join(", ")
        ),
        json!({ "bytes_by_role": f.bytes_by_role, "interfaces": on }),
    ));
}

/// The addresses ARP is judged for: the published targets, and the
/// migration network's own addresses (which only migrations use).
fn of_interest(scene: &Scene, addr: Ipv4Addr) -> Option<Option<String>> {
    let ip = IpAddr::V4(addr);
    if let Some(endpoint) = scene.endpoints.iter().find(|e| e.addr.ip() == ip) {
        return Some(Some(
            endpoint
                .migration
                .clone()
                .unwrap_or_else(|| format!("target {ip}")),
        ));
    }
    scene
        .expectations
        .cidrs
        .iter()
        .any(|c| c.contains(ip))
        .then_some(None)
}

/// Addresses asked for again and again, never answering: no SYN can leave
/// for them. Returns the addresses diagnosed.
fn unreachable_by_arp(scene: &Scene, causes: &mut Vec<Reason>) -> BTreeSet<IpAddr> {
    #[derive(Default)]
    struct Asked {
        requests: u64,
        replies: u64,
        first_ns: u64,
        last_ns: u64,
        hooks: Vec<Value>,
        vlans: BTreeSet<u16>,
    }
    let mut by_addr: BTreeMap<Ipv4Addr, Asked> = BTreeMap::new();
    for (key, stats) in scene.neighbors {
        let addr = Ipv4Addr::from(key.addr.to_ne_bytes());
        let asked = by_addr.entry(addr).or_default();
        // Every hook sees the same broadcast request: the busiest counts.
        asked.requests = asked.requests.max(stats.requests);
        asked.replies += stats.replies;
        if stats.requests > 0 {
            asked.first_ns = match asked.first_ns {
                0 => stats.first_request_ns,
                first => first.min(stats.first_request_ns),
            };
            asked.last_ns = asked.last_ns.max(stats.last_request_ns);
            asked.hooks.push(json!({
                "at": format!("{} {}", slot_name(scene.slots, key.slot), Direction::try_from(key.direction).map_or("unknown", Direction::name)),
                "requests": stats.requests,
                "vlan": (stats.vlan != 0).then_some(stats.vlan),
            }));
            if stats.vlan != 0 {
                asked.vlans.insert(stats.vlan);
            }
        }
    }
    let mut diagnosed = BTreeSet::new();
    for (addr, asked) in by_addr {
        if asked.requests < ARP_UNANSWERED || asked.replies > 0 {
            continue;
        }
        let Some(migration) = of_interest(scene, addr) else {
            continue;
        };
        // A connection that got through says the address did resolve.
        let connected = scene.table.connections().any(|c| {
            (c.key.server.ip() == IpAddr::V4(addr) || c.key.client.ip() == IpAddr::V4(addr))
                && established(c)
        });
        if connected {
            continue;
        }
        let published = migration.is_some();
        let span_s = asked.last_ns.saturating_sub(asked.first_ns) as f64 / 1e9;
        let mut message = format!(
            "{addr} never answered ARP ({} requests over {span_s:.1} s, no reply): no SYN can leave for it. The \
             peer is down or not on the source's L2 segment — a VLAN mismatch looks exactly like this",
            asked.requests
        );
        if !asked.vlans.is_empty() {
            let tags: Vec<String> = asked.vlans.iter().map(ToString::to_string).collect();
            match scene.expectations.vlan {
                Some(expected) if asked.vlans.iter().any(|v| *v != expected) => message.push_str(&format!(
                    " (the requests carried VLAN {} where the NAD says {expected})",
                    tags.join(", ")
                )),
                _ => message.push_str(&format!(
                    " (the requests carried VLAN {}: check that the target's port and every switch port \
                     between carry it)",
                    tags.join(", ")
                )),
            }
        }
        diagnosed.insert(IpAddr::V4(addr));
        causes.push(cause(
            id::PEER_UNREACHABLE,
            if published {
                Severity::Error
            } else {
                Severity::Warning
            },
            migration,
        )(
            message,
            json!({ "address": addr, "arp_requests": asked.requests, "arp_replies": 0,
                    "span_s": span_s, "hooks": asked.hooks }),
        ));
    }
    diagnosed
}

/// Endpoints published, and nothing on the wire for them. At the end of an
/// observation without endpoints, the warning that nothing was seen.
fn no_traffic(
    scene: &Scene,
    migrations: &[Subject],
    unreachable: &BTreeSet<IpAddr>,
    causes: &mut Vec<Reason>,
) {
    let expect_traffic = scene.expectations.expect_traffic || !scene.endpoints.is_empty();
    match scene.phase {
        Phase::Final if migrations.is_empty() && unreachable.is_empty() => {
            let (severity, message) = if expect_traffic {
                (
                    Severity::Error,
                    "endpoints were published but no migration packet crossed an observed interface: check that \
                     migverify watches the right interfaces and that the migration started",
                )
            } else {
                (
                    Severity::Warning,
                    "no migration traffic was seen: give the migration's endpoints (--vmi, --endpoint) or the \
                     migration network's CIDR (--cidr), and watch while a migration runs",
                )
            };
            causes.push(cause(id::NO_TRAFFIC, severity, None)(
                message.into(),
                json!({}),
            ));
        }
        Phase::Final => {}
        Phase::Live => {
            let waited = scene.now_ms.saturating_sub(scene.endpoints_since_ms);
            if scene.endpoints.is_empty() || waited < NO_TRAFFIC_AFTER_MS {
                return;
            }
            let mut silent: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for endpoint in scene.endpoints {
                let ip = endpoint.addr.ip();
                let any_packet = scene
                    .table
                    .connections()
                    .any(|c| c.key.server == endpoint.addr)
                    || unreachable.contains(&ip)
                    || scene
                        .neighbors
                        .iter()
                        .any(|(k, _)| IpAddr::V4(Ipv4Addr::from(k.addr.to_ne_bytes())) == ip);
                if !any_packet {
                    silent
                        .entry(
                            endpoint
                                .migration
                                .clone()
                                .unwrap_or_else(|| format!("target {ip}")),
                        )
                        .or_default()
                        .push(endpoint.addr.to_string());
                }
            }
            for (migration, endpoints) in silent {
                causes.push(cause(id::NO_TRAFFIC, Severity::Error, Some(migration))(
                    format!(
                        "{} published {:.0} s ago and no packet for it, not even ARP: check that migverify watches \
                         the interfaces the migration uses and that the source started",
                        endpoints.join(", "),
                        waited as f64 / 1000.0
                    ),
                    json!({ "endpoints": endpoints, "waited_s": waited as f64 / 1000.0 }),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use verifier_ebpf::{Channel, Direction, FlowKey, FlowStats, Reason as Why};

    use super::*;
    use crate::{
        flows::tests::key,
        measure::{
            budget::{budget, BudgetSettings, VmSize},
            migration::{figures, group},
        },
    };

    const CLIENT: &str = "10.200.5.11:50000";
    const SERVER: &str = "10.200.5.12:40000";

    fn stats(payload: u64, retransmits: u64, largest: u32, seen: u8) -> FlowStats {
        FlowStats {
            bytes: payload + 100,
            packets: payload / 1000 + 2,
            unique_payload_bytes: payload,
            retransmits,
            retransmitted_bytes: retransmits * u64::from(largest),
            largest_segment: largest,
            seen,
            channel: Channel::Memory as u8,
            reason: Why::Endpoint as u8,
            ..FlowStats::default()
        }
    }

    fn slots() -> Vec<Option<SlotInfo>> {
        let slot = |interface: &str, role| {
            Some(SlotInfo {
                interface: interface.into(),
                netns: None,
                role,
                mtu: Some(9000),
            })
        };
        vec![
            slot("source0", Role::Migration),
            slot("target0", Role::Migration),
            slot("eth0", Role::Primary),
        ]
    }

    /// A table fed tick by tick: `at(ms)` gives the flows read then.
    fn table(ticks: u64, at: impl Fn(u64) -> Vec<(FlowKey, FlowStats)>) -> FlowTable {
        let endpoints = HashSet::from([SERVER.parse().unwrap()]);
        let mut table = FlowTable::default();
        for tick in 1..=ticks {
            table.update(&at(tick * 100), &endpoints, tick * 100);
        }
        table
    }

    fn causes(
        table: &FlowTable,
        phase: Phase,
        now_ms: u64,
        neighbors: &[(NeighborKey, NeighborStats)],
    ) -> Vec<Reason> {
        causes_with(table, phase, now_ms, neighbors, BudgetSettings::default())
    }

    fn causes_with(
        table: &FlowTable,
        phase: Phase,
        now_ms: u64,
        neighbors: &[(NeighborKey, NeighborStats)],
        settings: BudgetSettings,
    ) -> Vec<Reason> {
        let endpoints = vec![Endpoint {
            addr: SERVER.parse().unwrap(),
            channel: Channel::Memory,
            migration: Some("default/vm".into()),
        }];
        let slots = slots();
        let groups = group(table, &endpoints);
        let size = VmSize {
            bytes: 256 << 20,
            source: "test".into(),
        };
        let figures: Vec<Figures> = groups.iter().map(|g| figures(g, &slots, 100)).collect();
        let budgets: Vec<BudgetReport> = figures
            .iter()
            .map(|f| budget(&settings, &size, f))
            .collect();
        let subjects: Vec<Subject> = groups
            .iter()
            .zip(figures.iter().zip(&budgets))
            .map(|(group, (figures, budget))| Subject {
                group,
                figures,
                budget,
            })
            .collect();
        let expectations = Expectations {
            cidrs: vec!["10.200.5.0/24".parse().unwrap()],
            vlan: Some(100),
            expect_traffic: true,
        };
        let scene = Scene {
            table,
            slots: &slots,
            endpoints: &endpoints,
            neighbors,
            expectations: &expectations,
            now_ms,
            endpoints_since_ms: 0,
            phase,
        };
        diagnose(&scene, &subjects)
    }

    fn ids(causes: &[Reason]) -> Vec<&'static str> {
        causes.iter().map(|c| c.id).collect()
    }

    const HANDSHAKE: u8 = SEEN_SYN | SEEN_SYN_ACK;

    #[test]
    fn full_size_segments_lost_after_the_handshake_are_an_mtu_black_hole() {
        // The source's hook sees 8948-byte segments resent every few ticks;
        // the target's hook only ever saw the small ones.
        let t = table(20, |ms| {
            let resent = ms / 300;
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(85_000, resent, 8948, SEEN_SYN),
                ),
                (
                    key(CLIENT, SERVER, 1, Direction::Ingress),
                    stats(6_000, 0, 1366, SEEN_SYN),
                ),
                (
                    key(SERVER, CLIENT, 0, Direction::Ingress),
                    stats(900, 0, 900, SEEN_SYN_ACK),
                ),
            ]
        });
        let found = causes(&t, Phase::Live, 2000, &[]);
        assert_eq!(ids(&found), [id::MTU_BLACKHOLE], "{found:#?}");
        let message = &found[0].message;
        assert!(
            message.contains("8948 B") && message.contains("up to 1366 B"),
            "{message}"
        );
        // Not yet a second without progress: no verdict on it.
        let early = table(5, |ms| {
            vec![(
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(85_000, ms / 100, 8948, HANDSHAKE),
            )]
        });
        assert!(causes(&early, Phase::Live, 500, &[]).is_empty());
    }

    #[test]
    fn a_stream_that_stops_being_acknowledged_after_moving_is_a_black_hole() {
        let t = table(40, |ms| {
            let moved = ms.min(2000) * 10_000;
            let resent = ms.saturating_sub(2000) / 300;
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(moved, resent, 1448, HANDSHAKE),
                ),
                (
                    key(CLIENT, SERVER, 1, Direction::Ingress),
                    stats(moved, resent, 1448, HANDSHAKE),
                ),
            ]
        });
        let found = causes(&t, Phase::Live, 4000, &[]);
        assert_eq!(ids(&found), [id::BLACKHOLE], "{found:#?}");
        assert!(
            found[0].message.contains("source0 egress"),
            "{}",
            found[0].message
        );
        // And in the final report, once the connections were reset.
        assert_eq!(ids(&causes(&t, Phase::Final, 4000, &[])), [id::BLACKHOLE]);
    }

    #[test]
    fn syns_without_answer_make_the_peer_unreachable() {
        let t = table(12, |ms| {
            let mut syn = stats(0, 0, 0, SEEN_SYN);
            syn.packets = 1 + ms / 1000;
            vec![(key(CLIENT, SERVER, 0, Direction::Egress), syn)]
        });
        let found = causes(&t, Phase::Live, 1200, &[]);
        assert_eq!(ids(&found), [id::PEER_UNREACHABLE], "{found:#?}");
        assert_eq!(found[0].severity, Severity::Error);
    }

    #[test]
    fn unanswered_arp_for_the_target_makes_it_unreachable() {
        let asked = |requests, replies| {
            vec![(
                NeighborKey {
                    addr: u32::from_ne_bytes([10, 200, 5, 12]),
                    slot: 0,
                    direction: Direction::Egress as u8,
                    _pad: [0; 2],
                },
                NeighborStats {
                    requests,
                    replies,
                    first_request_ns: 1_000_000_000,
                    last_request_ns: 2_000_000_000,
                    vlan: 100,
                    ..NeighborStats::default()
                },
            )]
        };
        let empty = FlowTable::default();
        let found = causes(&empty, Phase::Live, 1500, &asked(2, 0));
        assert_eq!(ids(&found), [id::PEER_UNREACHABLE], "{found:#?}");
        assert_eq!(found[0].migration.as_deref(), Some("default/vm"));
        assert!(
            found[0].message.contains("VLAN 100"),
            "{}",
            found[0].message
        );
        // Answered, or asked once: nothing to say yet.
        assert!(causes(&empty, Phase::Live, 1500, &asked(3, 1)).is_empty());
        assert!(causes(&empty, Phase::Live, 1500, &asked(1, 0)).is_empty());
        // At the end, the unreachable peer replaces "no traffic".
        assert_eq!(
            ids(&causes(&empty, Phase::Final, 1500, &asked(3, 0))),
            [id::PEER_UNREACHABLE]
        );
        assert_eq!(
            ids(&causes(&empty, Phase::Final, 1500, &[])),
            [id::NO_TRAFFIC]
        );
    }

    #[test]
    fn a_reset_right_after_connecting_is_a_broken_proxy_or_tls() {
        let t = table(10, |ms| {
            let seen = if ms >= 500 {
                HANDSHAKE | SEEN_RST
            } else {
                HANDSHAKE
            };
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(600, 0, 600, seen),
                ),
                (
                    key(SERVER, CLIENT, 0, Direction::Ingress),
                    stats(1500, 0, 1500, seen),
                ),
            ]
        });
        assert_eq!(
            ids(&causes(&t, Phase::Final, 1000, &[])),
            [id::RESET_AFTER_CONNECT]
        );
    }

    #[test]
    fn resets_that_end_a_migration_which_moved_are_no_broken_set_up() {
        // A multifd migration's main channel carries a few KiB in all; reset
        // as a cancelled migration ends, beside a channel that moved MBs.
        const OTHER: &str = "10.200.5.11:50002";
        let t = table(20, |ms| {
            let seen = if ms >= 1500 {
                HANDSHAKE | SEEN_RST
            } else {
                HANDSHAKE
            };
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(2200, 0, 600, seen),
                ),
                (
                    key(OTHER, SERVER, 0, Direction::Egress),
                    stats(ms.min(1000) * 10_000, 0, 1448, seen),
                ),
            ]
        });
        let found = causes(&t, Phase::Final, 2000, &[]);
        assert!(
            !ids(&found).contains(&id::RESET_AFTER_CONNECT),
            "{found:#?}"
        );
    }

    #[test]
    fn a_flat_rate_is_a_cap_and_says_what_it_means_for_the_budget() {
        // 25 MB/s = 200 Mbit/s, every tick the same.
        let t = table(50, |ms| {
            vec![(
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(ms * 25_000, 0, 1448, HANDSHAKE),
            )]
        });
        let found = causes(&t, Phase::Live, 5000, &[]);
        assert_eq!(ids(&found), [id::RATE_CAP], "{found:#?}");
        assert_eq!(found[0].severity, Severity::Info, "11 s of a 150 s budget");
        assert!(
            found[0].message.contains("200.0 Mbit/s"),
            "{}",
            found[0].message
        );
        // bandwidthPerMigration at that rate is named; a tight budget is an error.
        let settings = BudgetSettings {
            bandwidth_per_migration: Some(25_000_000),
            completion_timeout_per_gib: 5,
            ..BudgetSettings::default()
        };
        let found = causes_with(&t, Phase::Live, 5000, &[], settings);
        assert_eq!(found[0].severity, Severity::Error);
        assert!(
            found[0].message.contains("bandwidthPerMigration"),
            "{}",
            found[0].message
        );
        // Not yet three seconds of it: no cap.
        assert!(causes(&t, Phase::Live, 2000, &[]).is_empty());
    }

    #[test]
    fn a_target_that_closes_its_window_while_stalled_is_receiver_bound() {
        let t = table(30, |ms| {
            let mut back = stats(0, 0, 0, SEEN_SYN_ACK);
            back.zero_windows = ms / 200;
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(ms.min(1000) * 5_000, 0, 1448, SEEN_SYN),
                ),
                (key(SERVER, CLIENT, 0, Direction::Ingress), back),
            ]
        });
        let found = causes(&t, Phase::Live, 3000, &[]);
        assert_eq!(ids(&found), [id::RECEIVER_BOUND], "{found:#?}");
    }

    /// A short migration of 256 MiB: 400 ms of set-up at 5 kB a tick, the
    /// size in 300 ms, then nothing; at 800 ms `end` (FIN, RST or nothing)
    /// is seen. The target closes its window every 10 ms.
    fn short_migration(end: u8) -> FlowTable {
        table(10, |ms| {
            let payload = if ms <= 400 {
                ms * 50
            } else {
                20_000 + (ms - 400).min(300) * ((256 << 20) / 300)
            };
            let seen = if ms >= 800 {
                HANDSHAKE | end
            } else {
                HANDSHAKE
            };
            let mut back = stats(100, 0, 100, seen);
            back.zero_windows = ms / 10;
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(payload, 0, 1448, seen),
                ),
                (key(SERVER, CLIENT, 0, Direction::Ingress), back),
            ]
        })
    }

    /// A short migration's intervals are half set-up: once it has moved
    /// its size and closed, its budget rests on how long it took, not on
    /// its median interval rate (here a set-up rate).
    #[test]
    fn a_finished_migration_is_judged_on_how_long_it_took() {
        let size = VmSize {
            bytes: 256 << 20,
            source: "test".into(),
        };
        let endpoints = vec![Endpoint {
            addr: SERVER.parse().unwrap(),
            channel: Channel::Memory,
            migration: Some("default/vm".into()),
        }];
        let run = |end: u8| {
            let t = short_migration(end);
            let groups = group(&t, &endpoints);
            let f = figures(&groups[0], &slots(), 100);
            budget(&BudgetSettings::default(), &size, &f)
        };
        let finished = run(SEEN_FIN);
        assert_eq!(finished.projection, Projection::Duration);
        let took = finished.projected_s.unwrap();
        assert!((0.6..=0.9).contains(&took), "{finished:#?}");
        // Still open, or reset (aborted, say), the same intervals
        // extrapolate from the set-up rate: far beyond the 150 s budget.
        for end in [0, SEEN_RST] {
            let b = run(end);
            assert_eq!(b.projection, Projection::MedianRate, "{end}");
            assert!(b.projected_s.unwrap() > 150.0, "{b:#?}");
        }
    }

    /// Zero windows in a short migration that finished within its budget
    /// do not make it receiver-bound, though its median interval (set-up)
    /// is below the rate the budget needs; open, the same figures do.
    #[test]
    fn a_finished_migration_is_not_judged_slow_on_its_set_up() {
        let found = causes(&short_migration(SEEN_FIN), Phase::Final, 1000, &[]);
        assert!(found.is_empty(), "{found:#?}");
        let found = causes(&short_migration(0), Phase::Final, 1000, &[]);
        assert_eq!(ids(&found), [id::RECEIVER_BOUND], "{found:#?}");
    }

    #[test]
    fn a_healthy_migration_has_no_cause() {
        // Fast, a few retransmissions and zero windows on the way, closed.
        let t = table(12, |ms| {
            let seen = if ms >= 1000 {
                HANDSHAKE | SEEN_FIN
            } else {
                HANDSHAKE
            };
            let mut back = stats(100, 0, 100, seen);
            back.zero_windows = ms / 100;
            vec![
                (
                    key(CLIENT, SERVER, 0, Direction::Egress),
                    stats(ms.min(1000) * 300_000, ms / 300, 1448, seen),
                ),
                (key(SERVER, CLIENT, 0, Direction::Ingress), back),
            ]
        });
        for (phase, now) in [
            (Phase::Live, 1200),
            (Phase::Live, 9000),
            (Phase::Final, 1200),
        ] {
            let found = causes(&t, phase, now, &[]);
            assert!(found.is_empty(), "{phase:?} {now}: {found:#?}");
        }
    }

    #[test]
    fn migration_bytes_on_a_primary_interface_are_a_fallback() {
        let t = table(5, |ms| {
            vec![(
                key(CLIENT, SERVER, 2, Direction::Egress),
                stats(ms * 1000, 0, 1448, HANDSHAKE),
            )]
        });
        assert_eq!(ids(&causes(&t, Phase::Live, 500, &[])), [id::FALLBACK]);
    }

    #[test]
    fn published_endpoints_without_a_packet_are_no_traffic_after_a_while() {
        let empty = FlowTable::default();
        assert!(causes(&empty, Phase::Live, 4000, &[]).is_empty());
        assert_eq!(
            ids(&causes(&empty, Phase::Live, 6000, &[])),
            [id::NO_TRAFFIC]
        );
    }
}
