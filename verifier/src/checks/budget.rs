//! The completion budget KubeVirt gives a migration, and the rate it needs.
//!
//! KubeVirt cancels a migration that runs longer than
//! `completionTimeoutPerGiB x size`, where size is the guest memory rounded
//! *up* to whole units of 10^9 bytes (`ScaledValue(resource.Giga)`, despite
//! the "GiB" in the name). Moving `size` bytes in that time takes at least
//! `bytes / budget` bytes per second, and that is a floor: pages the guest
//! dirties meanwhile are sent again.

use serde::Serialize;

use crate::config::quantity::Quantity;

pub use crate::measure::budget::{
    DEFAULT_COMPLETION_TIMEOUT_PER_GIB, DEFAULT_PARALLEL_OUTBOUND_PER_NODE,
    DEFAULT_PARALLEL_PER_CLUSTER, DEFAULT_PROGRESS_TIMEOUT,
};

const GIGA: u128 = 1_000_000_000;

/// The migration limits in force, each with whether it was set or assumed.
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub completion_timeout_per_gib: Option<i64>,
    pub progress_timeout: Option<i64>,
    pub parallel_per_cluster: Option<i64>,
    pub parallel_outbound_per_node: Option<i64>,
    /// Bytes per second; 0 is unlimited.
    pub bandwidth: Option<i128>,
}

/// One budget line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    /// Where the limits came from (an object, or "KubeVirt defaults").
    pub source: String,
    /// The VM size as given (`16Gi`) or the VMI it was read from.
    pub vm: String,
    pub size_bytes: u128,
    /// Size in the units KubeVirt multiplies by: 10^9 bytes, rounded up.
    pub size_units: u128,
    pub completion_timeout_per_gib_s: i64,
    pub completion_timeout_s: i128,
    /// Bytes per second needed to move the memory once within the budget.
    pub min_rate_bytes_per_s: u128,
    pub progress_timeout_s: i64,
    /// `bandwidthPerMigration` in bytes per second; `None` is unlimited.
    pub bandwidth_bytes_per_s: Option<i128>,
    pub parallel_outbound_per_node: i64,
    /// What a node drain needs on one node's migration NIC: the per-node
    /// parallelism times the minimum rate.
    pub node_drain_rate_bytes_per_s: u128,
    /// Every value that was not in the inputs and was assumed.
    pub assumptions: Vec<String>,
}

impl Budget {
    /// `None` if the size does not fit the arithmetic or the timeout is not
    /// positive (reported elsewhere).
    pub fn compute(source: String, vm: String, size: &Quantity, limits: &Limits) -> Option<Budget> {
        let mut assumptions = Vec::new();
        let mut or_default = |value: Option<i64>, default: i64, name: &str, note: &str| {
            value.unwrap_or_else(|| {
                assumptions.push(format!(
                    "{name} not set: KubeVirt's default {default}{note}"
                ));
                default
            })
        };
        let per_gib = or_default(
            limits.completion_timeout_per_gib,
            DEFAULT_COMPLETION_TIMEOUT_PER_GIB,
            "completionTimeoutPerGiB",
            " s (KubeVirt >= 1.4; 800 before, and HyperConverged releases set their own)",
        );
        let progress = or_default(
            limits.progress_timeout,
            DEFAULT_PROGRESS_TIMEOUT,
            "progressTimeout",
            " s",
        );
        let per_node = or_default(
            limits.parallel_outbound_per_node,
            DEFAULT_PARALLEL_OUTBOUND_PER_NODE,
            "parallelOutboundMigrationsPerNode",
            "",
        );
        if limits.bandwidth.is_none() {
            assumptions.push("bandwidthPerMigration not set: unlimited".into());
        }
        assumptions.push(
            "size is guest memory only: add the disks for a storage (block) migration, and pages dirtied \
             during the migration are sent again"
                .into(),
        );
        let size_bytes = u128::try_from(size.value()?).ok()?;
        let size_units = u128::try_from(size.ceil_in_units(GIGA)?).ok()?;
        if per_gib <= 0 || size_units == 0 {
            return None;
        }
        let completion = i128::from(per_gib).checked_mul(i128::try_from(size_units).ok()?)?;
        let seconds = u128::try_from(completion).ok()?;
        let min_rate = size_bytes.div_ceil(seconds);
        Some(Budget {
            source,
            vm,
            size_bytes,
            size_units,
            completion_timeout_per_gib_s: per_gib,
            completion_timeout_s: completion,
            min_rate_bytes_per_s: min_rate,
            progress_timeout_s: progress,
            bandwidth_bytes_per_s: limits.bandwidth.filter(|b| *b > 0),
            parallel_outbound_per_node: per_node,
            node_drain_rate_bytes_per_s: min_rate
                .saturating_mul(u128::try_from(per_node.max(1)).unwrap_or(1)),
            assumptions,
        })
    }

    /// Whether `bandwidthPerMigration` caps the rate below what the budget needs.
    pub fn capped_below_need(&self) -> bool {
        self.bandwidth_bytes_per_s
            .is_some_and(|cap| u128::try_from(cap).is_ok_and(|cap| cap < self.min_rate_bytes_per_s))
    }
}

/// A rate for people: MiB/s and Mbit/s.
pub fn rate(bytes_per_s: u128) -> String {
    format!(
        "{:.1} MiB/s ({:.0} Mbit/s)",
        bytes_per_s as f64 / f64::from(1u32 << 20),
        bytes_per_s as f64 * 8.0 / 1e6
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(text: &str) -> Quantity {
        text.parse().unwrap()
    }

    #[test]
    fn sixteen_gib_at_the_defaults() {
        let b = Budget::compute(
            "defaults".into(),
            "16Gi".into(),
            &q("16Gi"),
            &Limits::default(),
        )
        .unwrap();
        // 16 GiB = 17.18e9 bytes: 18 units of 10^9 bytes.
        assert_eq!(b.size_units, 18);
        assert_eq!(b.completion_timeout_s, 150 * 18);
        assert_eq!(b.min_rate_bytes_per_s, (16u128 << 30).div_ceil(2700));
        assert_eq!(b.node_drain_rate_bytes_per_s, 2 * b.min_rate_bytes_per_s);
        assert_eq!(b.progress_timeout_s, 150);
        assert!(b
            .assumptions
            .iter()
            .any(|a| a.starts_with("completionTimeoutPerGiB not set")));
        assert_eq!(b.bandwidth_bytes_per_s, None);
    }

    #[test]
    fn the_seeds_800_per_gib_and_a_bandwidth_cap() {
        let limits = Limits {
            completion_timeout_per_gib: Some(800),
            progress_timeout: Some(150),
            parallel_per_cluster: Some(5),
            parallel_outbound_per_node: Some(2),
            bandwidth: Some(1 << 20),
        };
        let b = Budget::compute("hco".into(), "1G".into(), &q("1G"), &limits).unwrap();
        assert_eq!((b.size_units, b.completion_timeout_s), (1, 800));
        assert_eq!(b.min_rate_bytes_per_s, 1_250_000);
        assert!(b.capped_below_need()); // 1 MiB/s < 1.25 MB/s
        assert!(!b.assumptions.iter().any(|a| a.contains("not set")));
    }

    #[test]
    fn rounding_is_up_in_units_of_ten_to_the_ninth() {
        let b =
            Budget::compute("d".into(), "x".into(), &q("1000000001"), &Limits::default()).unwrap();
        assert_eq!((b.size_units, b.completion_timeout_s), (2, 300));
        assert!(Budget::compute("d".into(), "x".into(), &q("0"), &Limits::default()).is_none());
    }
}
