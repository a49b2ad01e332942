//! The bench's figures turned into migration answers: how long a VM of a
//! given size takes, the largest VM that fits `completionTimeoutPerGiB`,
//! how many outbound migrations per node the link carries at the budget's
//! minimum rate, and whether `bandwidthPerMigration` is what limits.

use serde::Serialize;
use serde_json::json;

use crate::{
    intent::{budget::largest_fitting, Budget, Limits, VmSize},
    measure::{
        reasons::{
            Reason, BENCH_BANDWIDTH_PER_MIGRATION, BENCH_COMPLETION, BENCH_COMPLETION_NEAR,
            BENCH_PARALLEL,
        },
        rules::NEAR_BUDGET,
    },
    units::rate,
};

/// The answers at one measured rate.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AtRate {
    /// The measured rate, bits per second.
    pub rate_bps: u64,
    /// What one migration gets: the rate, capped by bandwidthPerMigration.
    pub effective_rate_bps: u64,
    /// How long the VM takes at the effective rate; `None`: nothing moved.
    pub completion_s: Option<f64>,
    /// Whether that is within the completion budget.
    pub fits: bool,
    /// The largest VM (bytes) that completes within its budget at the
    /// effective rate; `None` when every size does.
    pub largest_vm_bytes: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Answers {
    pub size_bytes: u64,
    pub size_source: String,
    /// KubeVirt's units: 10^9 bytes, rounded up.
    pub size_units: u64,
    pub completion_timeout_s: u64,
    /// The least sustained rate that moves the VM within its budget.
    pub min_rate_bps: u64,
    pub at_p50: AtRate,
    /// The sustained (5th percentile) rate: the conservative answer.
    pub at_p5: AtRate,
    /// Migrations at `min_rate_bps` the link carries at its median rate.
    pub parallel_supported: u64,
    pub parallel_outbound_migrations_per_node: u64,
    pub bandwidth_per_migration_bps: Option<u64>,
    /// bandwidthPerMigration is below the median rate: it, not the link,
    /// sets a migration's speed.
    pub bandwidth_per_migration_limits: bool,
}

fn at_rate(limits: &Limits, budget: &Budget, rate_bps: u64) -> AtRate {
    let effective = limits
        .bandwidth_bps()
        .map_or(rate_bps, |cap| cap.min(rate_bps));
    let completion = budget.seconds_at(effective);
    AtRate {
        rate_bps,
        effective_rate_bps: effective,
        completion_s: completion,
        fits: completion.is_some_and(|s| s <= budget.completion_timeout_s as f64),
        largest_vm_bytes: largest_fitting(limits.completion_timeout_per_gib, effective),
    }
}

pub fn answers(limits: &Limits, size: &VmSize, p5_bps: u64, p50_bps: u64) -> Answers {
    let budget = Budget::new(limits.completion_timeout_per_gib, size.bytes);
    let cap = limits.bandwidth_bps();
    Answers {
        size_bytes: size.bytes,
        size_source: size.source.clone(),
        size_units: budget.size_units,
        completion_timeout_s: budget.completion_timeout_s,
        min_rate_bps: budget.min_rate_bps,
        at_p50: at_rate(limits, &budget, p50_bps),
        at_p5: at_rate(limits, &budget, p5_bps),
        parallel_supported: p50_bps.checked_div(budget.min_rate_bps).unwrap_or(0),
        parallel_outbound_migrations_per_node: limits.parallel_outbound_migrations_per_node,
        bandwidth_per_migration_bps: cap,
        bandwidth_per_migration_limits: cap.is_some_and(|cap| cap < p50_bps),
    }
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "never".into(), |s| format!("{s:.1} s"))
}

/// PASS/WARN/FAIL reasons from the answers: the same thresholds verify
/// applies to a real migration's projection.
pub fn reasons(answers: &Answers) -> Vec<Reason> {
    let mut reasons = Vec::new();
    let evidence = json!({ "answers": answers });
    let (p50, p5) = (&answers.at_p50, &answers.at_p5);
    let timeout = answers.completion_timeout_s as f64;
    let about = format!(
        "a VM of {} bytes ({} units, budget {} s)",
        answers.size_bytes, answers.size_units, answers.completion_timeout_s
    );
    if !p50.fits {
        reasons.push(BENCH_COMPLETION.raise(
            format!(
                "{about} takes {} at the median rate {}: over its completion budget",
                seconds(p50.completion_s),
                rate(p50.effective_rate_bps)
            ),
            evidence.clone(),
        ));
    } else if !p5.fits || p50.completion_s.is_some_and(|s| s > NEAR_BUDGET * timeout) {
        reasons.push(BENCH_COMPLETION_NEAR.raise(
            format!(
                "{about} takes {} at the median rate and {} at the sustained (p5) rate {}: near or over its budget",
                seconds(p50.completion_s),
                seconds(p5.completion_s),
                rate(p5.effective_rate_bps)
            ),
            evidence.clone(),
        ));
    }
    if answers.parallel_supported < answers.parallel_outbound_migrations_per_node {
        reasons.push(BENCH_PARALLEL.raise(
            format!(
                "the link carries {} migration(s) at the budget's minimum rate {}, fewer than \
                 parallelOutboundMigrationsPerNode {}: concurrent migrations of this size would time out",
                answers.parallel_supported,
                rate(answers.min_rate_bps),
                answers.parallel_outbound_migrations_per_node
            ),
            evidence.clone(),
        ));
    }
    if answers.bandwidth_per_migration_limits {
        reasons.push(BENCH_BANDWIDTH_PER_MIGRATION.raise(
            format!(
                "bandwidthPerMigration ({}) is below the link's median rate ({}): it sets each migration's speed",
                rate(answers.bandwidth_per_migration_bps.unwrap_or(0)),
                rate(p50.rate_bps)
            ),
            evidence,
        ));
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(per_gib: u64, bandwidth: Option<u64>) -> Limits {
        Limits {
            completion_timeout_per_gib: per_gib,
            bandwidth_per_migration: bandwidth,
            ..Limits::default()
        }
    }

    fn size(bytes: u64) -> VmSize {
        VmSize {
            bytes,
            source: "test".into(),
        }
    }

    #[test]
    fn answers_for_a_16gi_vm_on_a_gigabit_link() {
        // 16Gi = 17179869184 bytes = 18 units; budget 150 x 18 = 2700 s.
        let a = answers(
            &settings(150, None),
            &size(16 << 30),
            900_000_000,
            1_000_000_000,
        );
        assert_eq!(a.size_units, 18);
        assert_eq!(a.completion_timeout_s, 2700);
        // ceil(17179869184 x 8 / 2700) = ceil(50903316.1)
        assert_eq!(a.min_rate_bps, 50_903_317);
        // 137.44 s at 1 Gbit/s, 152.71 s at 0.9.
        assert!((a.at_p50.completion_s.unwrap() - 137.438_953_472).abs() < 1e-6);
        assert!((a.at_p5.completion_s.unwrap() - 152.709_948_302).abs() < 1e-6);
        assert!(a.at_p50.fits && a.at_p5.fits);
        assert_eq!(a.at_p50.largest_vm_bytes, None);
        // floor(1e9 / 50903317) = 19
        assert_eq!(a.parallel_supported, 19);
        assert!(!a.bandwidth_per_migration_limits);
        assert!(reasons(&a).is_empty());
    }

    #[test]
    fn bandwidth_per_migration_caps_each_migration() {
        // 64 MiB/s = 536870912 bit/s: 16Gi takes exactly 256 s.
        let a = answers(
            &settings(150, Some(64 << 20)),
            &size(16 << 30),
            900_000_000,
            1_000_000_000,
        );
        assert!(a.bandwidth_per_migration_limits);
        assert_eq!(a.at_p50.effective_rate_bps, 536_870_912);
        assert_eq!(a.at_p50.completion_s, Some(256.0));
        let ids: Vec<_> = reasons(&a).iter().map(Reason::id).collect();
        assert_eq!(ids, ["bench.bandwidth-per-migration"]);
    }

    #[test]
    fn a_slow_link_fails_and_a_marginal_one_warns() {
        // 20 s/unit, 2e9 bytes: 40 s budget, needs 400 Mbit/s.
        let s = settings(20, None);
        let slow = answers(&s, &size(2_000_000_000), 150_000_000, 200_000_000);
        assert_eq!(slow.at_p50.completion_s, Some(80.0));
        assert!(!slow.at_p50.fits);
        assert_eq!(slow.parallel_supported, 0);
        let ids: Vec<_> = reasons(&slow).iter().map(Reason::id).collect();
        assert_eq!(ids, ["bench.completion", "bench.parallel"]);
        // 36 s of 40 at the median: within 80% no more.
        let near = answers(&s, &size(2_000_000_000), 440_000_000, 444_444_445);
        assert!(near.at_p50.fits);
        let ids: Vec<_> = reasons(&near).iter().map(Reason::id).collect();
        assert_eq!(ids, ["bench.completion-near", "bench.parallel"]);
    }
}
