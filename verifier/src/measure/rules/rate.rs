//! The rate a migration moves at: flat at a limit (a shaper, a policer,
//! `bandwidthPerMigration`), or held back by a receiver that stops reading;
//! and the live rates and stalls `watch` shows.

use serde_json::json;

use super::{
    connection::{Facts, STALL_EVIDENCE_MS},
    Phase, Scene, Subject, NEAR_BUDGET,
};
use crate::{
    measure::{
        budget::Projection,
        reasons::{Reason, RATE_CAP, RECEIVER_BOUND},
        series::Interval,
    },
    units::{bytes, rate},
    verdict::Severity,
};

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
pub const RECENT_MS: u64 = 5000;

/// Zero windows from the target matter when the migration is too slow for
/// its budget or has stopped: the target, not the network, holds it back.
/// A fast migration whose receiver is the bottleneck is healthy.
pub fn receiver_bound(
    scene: &Scene,
    subject: &Subject,
    facts: &Facts,
    capped: bool,
) -> Option<Reason> {
    let zero_window = &facts.zero_window;
    if zero_window.is_empty() {
        return None;
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
        return None;
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
        return None;
    }
    Some(RECEIVER_BOUND.raise(
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
    ))
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

/// A rate flat at a limit, named, with what it means for the budget.
pub fn rate_cap(scene: &Scene, subject: &Subject) -> Option<Reason> {
    let f = subject.figures;
    let b = subject.budget;
    let (cap_bps, held_s) = flat_rate(&f.progress, scene.phase, scene.now_ms)?;
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
        Some(p) if budget_s > 0.0 && p > NEAR_BUDGET * budget_s => Severity::Warning,
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
    Some(RATE_CAP.raise_at(
        severity,
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
    ))
}
