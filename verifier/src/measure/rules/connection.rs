//! What each connection of a migration shows, read once, and the causes
//! that rest on it: a peer that never answers, full-size segments lost
//! after the handshake (an MTU black hole), a stream that stops being
//! acknowledged (a black hole), a reset right after connecting.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use verifier_ebpf::{SEEN_FIN, SEEN_RST, SEEN_SYN, SEEN_SYN_ACK};

use super::{rate::RECENT_MS, secs, Phase, Scene, Subject};
use crate::{
    flows::{Connection, SlotInfo},
    measure::reasons::{Reason, BLACKHOLE, MTU_BLACKHOLE, PEER_UNREACHABLE, RESET_AFTER_CONNECT},
    units::bytes,
};

/// A SYN unanswered this long (or sent twice: the first retry comes after
/// 1 s) is no slow handshake.
const SYN_PATIENCE_MS: u64 = 1000;
/// A direction that has not moved new payload for this long while its
/// sender retransmits is not being acknowledged.
pub(super) const STALL_EVIDENCE_MS: u64 = 1000;
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
/// The evidence each cause rests on, gathered in one pass over a
/// migration's connections.
#[derive(Default)]
pub struct Facts {
    syn_unanswered: Vec<Value>,
    refused: Vec<Value>,
    mtu: Vec<Value>,
    blackhole: Vec<Value>,
    resets: Vec<Value>,
    /// Zero windows from the target at or after the stream's last progress.
    pub zero_window: Vec<Value>,
}

impl Facts {
    pub fn of(scene: &Scene, subject: &Subject) -> Facts {
        let group = subject.group;
        let now = scene.now_ms;
        let mut facts = Facts::default();
        // A migration that got past its handshakes somewhere ends with resets
        // (a cancel, an abort): they do not say its set-up is broken.
        let moved_far = group
            .connections
            .iter()
            .any(|c| c.forward_payload_bytes() > HANDSHAKE_PAYLOAD);
        for connection in &group.connections {
            let seen = connection.seen();
            let forward = view(connection, scene.slots, true);
            let age =
                end_ms(connection, now).saturating_sub(connection.first_seen_ms.unwrap_or(now));
            // No SYN-ACK seen, and nothing sent after the SYN: data would mean
            // the handshake completed where we do not see (an asymmetric path).
            if seen & SEEN_SYN != 0 && seen & SEEN_SYN_ACK == 0 && connection.payload_bytes() == 0 {
                if seen & SEEN_RST != 0 {
                    facts
                        .refused
                        .push(json!({ "connection": conn_name(connection) }));
                } else if forward.packets >= 2 || age >= SYN_PATIENCE_MS {
                    facts.syn_unanswered.push(json!({
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
                    Stall::Mtu => facts.mtu.push(evidence),
                    Stall::Blackhole => facts.blackhole.push(evidence),
                }
            }
            if !stalled_here && !moved_far && seen & SEEN_RST != 0 {
                let lived = connection
                    .closed_at_ms
                    .unwrap_or(now)
                    .saturating_sub(connection.first_seen_ms.unwrap_or(0));
                if lived <= RESET_WINDOW_MS
                    && connection.forward_payload_bytes() <= HANDSHAKE_PAYLOAD
                {
                    facts.resets.push(json!({
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
                if !stalled_here
                    && (scene.phase == Phase::Final || now.saturating_sub(at) <= RECENT_MS)
                {
                    let count: u64 = connection
                        .observations()
                        .filter(|s| !s.forward)
                        .map(|s| s.stats.zero_windows)
                        .max()
                        .unwrap_or(0);
                    facts.zero_window.push(json!({
                        "connection": conn_name(connection),
                        "zero_windows": count,
                        "last_s_ago": secs(now.saturating_sub(at)),
                    }));
                }
            }
        }
        facts
    }
}

/// SYNs without a SYN-ACK, or a reset answering the SYN.
pub fn peer_unreachable(subject: &Subject, facts: &Facts) -> Option<Reason> {
    let (syn_unanswered, refused) = (&facts.syn_unanswered, &facts.refused);
    if syn_unanswered.is_empty() && refused.is_empty() {
        return None;
    }
    let f = subject.figures;
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
    Some(PEER_UNREACHABLE.raise(
        message,
        json!({ "syn_unanswered": syn_unanswered, "refused": refused }),
    ))
}

/// Full-size segments retransmitted and never acknowledged after the
/// handshake.
pub fn mtu_blackhole(facts: &Facts) -> Option<Reason> {
    let mtu = &facts.mtu;
    if mtu.is_empty() {
        return None;
    }
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
    Some(MTU_BLACKHOLE.raise(
        message,
        json!({ "connections": mtu, "interface_mtus": interface_mtus }),
    ))
}

/// A stream that moved, then stopped being acknowledged while its sender
/// retransmits.
pub fn blackhole(subject: &Subject, facts: &Facts) -> Option<Reason> {
    let blackhole = &facts.blackhole;
    if blackhole.is_empty() {
        return None;
    }
    let (group, f) = (subject.group, subject.figures);
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
    Some(BLACKHOLE.raise(message, json!({ "connections": blackhole })))
}

/// Resets right after connecting, before the stream moved more than a
/// handshake's worth.
pub fn reset_after_connect(facts: &Facts) -> Option<Reason> {
    let resets = &facts.resets;
    if resets.is_empty() {
        return None;
    }
    Some(RESET_AFTER_CONNECT.raise(
        format!(
            "{} connection(s) were reset within {} s of connecting, after at most {} of payload: a proxy or \
             the TLS set-up breaks the connection (certificates, a TLS-intercepting proxy, a port not meant \
             for migration)",
            resets.len(),
            RESET_WINDOW_MS / 1000,
            bytes(HANDSHAKE_PAYLOAD)
        ),
        json!({ "connections": resets }),
    ))
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

pub(super) fn slot_name(slots: &[Option<SlotInfo>], slot: u8) -> String {
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

pub(super) fn established(connection: &Connection) -> bool {
    connection.seen() & SEEN_SYN_ACK != 0
        || (connection.seen() & SEEN_SYN == 0 && connection.payload_bytes() > 0)
}

fn conn_name(connection: &Connection) -> String {
    format!("{} -> {}", connection.key.client, connection.key.server)
}
