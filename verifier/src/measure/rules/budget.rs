//! A migration against its budgets: a stall against `progressTimeout`, the
//! projected completion against `completionTimeoutPerGiB`, and whether its
//! latency figures rest on enough samples.

use serde_json::json;

use super::{Subject, NEAR_BUDGET};
use crate::{
    measure::{
        budget::Projection,
        migration::Figures,
        reasons::{
            Reason, BUDGET_COMPLETION, BUDGET_COMPLETION_NEAR, BUDGET_STALL, BUDGET_STALL_NEAR,
            RTT_FEW_SAMPLES,
        },
    },
    units::{bytes, rate},
};

/// Fewer RTT samples than this and the latency figures are not worth much.
pub const MIN_RTT_SAMPLES: u64 = 10;

/// No payload for longer than `progressTimeout` (or most of it).
pub fn stall(subject: &Subject) -> Option<Reason> {
    let stall = subject.figures.longest_stall_s;
    let b = subject.budget;
    let progress_timeout = b.progress_timeout_s as f64;
    let evidence = json!({ "longest_stall_s": stall, "progress_timeout_s": b.progress_timeout_s });
    if stall > progress_timeout {
        Some(BUDGET_STALL.raise(
            format!(
                "no payload moved for {stall:.1} s, longer than progressTimeout {progress_timeout:.0} s: KubeVirt \
                 aborts such a migration as stuck"
            ),
            evidence,
        ))
    } else if stall > NEAR_BUDGET * progress_timeout {
        Some(BUDGET_STALL_NEAR.raise(
            format!("no payload moved for {stall:.1} s, over 80% of progressTimeout {progress_timeout:.0} s"),
            evidence,
        ))
    } else {
        None
    }
}

/// The projected completion over the completion budget (or most of it).
pub fn completion(subject: &Subject) -> Option<Reason> {
    let b = subject.budget;
    let projected = b.projected_s?;
    let limit = b.completion_timeout_s as f64;
    let evidence = json!({
        "projected_s": projected,
        "projection": b.projection,
        "completion_timeout_s": b.completion_timeout_s,
        "observed_rate_bps": b.observed_rate_bps,
        "min_rate_bps": b.min_rate_bps,
        "size_bytes": b.size_bytes,
    });
    if projected > limit {
        // Histograms record at least 1 bit/s: a median of 1 is no rate, it
        // is a migration that stood still most of the time.
        let message = if b.projection == Projection::Duration {
            format!(
                "the {} migration took {projected:.1} s, beyond its completion budget of {limit:.0} s \
                 (completionTimeoutPerGiB {} x {} units of 10^9 bytes); it needs at least {}",
                bytes(b.size_bytes),
                b.completion_timeout_per_gib,
                b.size_units,
                rate(b.min_rate_bps)
            )
        } else if b.projection == Projection::Resending {
            format!(
                "the {} migration is still re-sending memory its guest dirtied: at this pace it takes at least \
                 {projected:.0} s, beyond its completion budget of {limit:.0} s (completionTimeoutPerGiB {} x {} \
                 units of 10^9 bytes)",
                bytes(b.size_bytes),
                b.completion_timeout_per_gib,
                b.size_units
            )
        } else if b.observed_rate_bps <= 1 {
            format!(
                "no payload moved in most intervals (median rate 0): at that rate a {} migration never \
                 completes within its budget of {limit:.0} s; it needs at least {}",
                bytes(b.size_bytes),
                rate(b.min_rate_bps)
            )
        } else {
            format!(
                "at the observed {} a {} migration takes {projected:.0} s, beyond its completion budget of \
                 {limit:.0} s (completionTimeoutPerGiB {} x {} units of 10^9 bytes); it needs at least {}",
                rate(b.observed_rate_bps),
                bytes(b.size_bytes),
                b.completion_timeout_per_gib,
                b.size_units,
                rate(b.min_rate_bps)
            )
        };
        Some(BUDGET_COMPLETION.raise(message, evidence))
    } else if projected > NEAR_BUDGET * limit {
        let message = if b.projection == Projection::Duration {
            format!("the migration took {projected:.1} s, over 80% of its {limit:.0} s budget")
        } else if b.projection == Projection::Resending {
            format!(
                "the migration is still re-sending memory: at this pace it takes at least {projected:.0} s, over \
                 80% of its {limit:.0} s budget"
            )
        } else {
            format!(
                "at the observed {} the migration takes {projected:.0} s, over 80% of its {limit:.0} s budget",
                rate(b.observed_rate_bps)
            )
        };
        Some(BUDGET_COMPLETION_NEAR.raise(message, evidence))
    } else {
        None
    }
}

/// Too few RTT samples for the latency figures to mean much.
pub fn few_rtt_samples(f: &Figures) -> Option<Reason> {
    (f.rtt_us.samples < MIN_RTT_SAMPLES).then(|| {
        RTT_FEW_SAMPLES.raise(
            format!(
                "only {} RTT samples (TCP timestamp echoes): the latency figures rest on too little",
                f.rtt_us.samples
            ),
            json!({ "samples": f.rtt_us.samples }),
        )
    })
}
