//! The budget lines `check` prints: a VM size under the limits of each
//! object that sets them (or KubeVirt's defaults), the rate it needs, and
//! what a node drain needs on one node's migration NIC.

use serde::Serialize;

use crate::intent::{Budget, Limits, LimitsSet};

/// One budget line of the report.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BudgetLine {
    /// Where the limits came from (an object, or "KubeVirt defaults").
    pub source: String,
    /// The VM size as given (`16Gi`) or the VMI it was read from.
    pub vm: String,
    #[serde(flatten)]
    pub budget: Budget,
    pub progress_timeout_s: u64,
    /// `bandwidthPerMigration` in bits per second; `None` is unlimited.
    pub bandwidth_per_migration_bps: Option<u64>,
    pub parallel_outbound_per_node: u64,
    /// What a node drain needs on one node's migration NIC: the per-node
    /// parallelism times the minimum rate.
    pub node_drain_rate_bps: u64,
    /// Every value that was not in the inputs and was assumed.
    pub assumptions: Vec<String>,
}

impl BudgetLine {
    /// `None` for a size of 0 bytes, which has no budget.
    pub fn new(source: String, vm: String, size_bytes: u64, set: &LimitsSet) -> Option<BudgetLine> {
        let mut assumptions = Vec::new();
        let limits = Limits::resolve(source, set, &mut assumptions);
        assumptions.push(
            "size is guest memory only: add the disks for a storage (block) migration, and pages dirtied \
             during the migration are sent again"
                .into(),
        );
        let budget = Budget::new(limits.completion_timeout_per_gib, size_bytes);
        (budget.size_units > 0).then(|| BudgetLine {
            vm,
            budget,
            progress_timeout_s: limits.progress_timeout_s,
            bandwidth_per_migration_bps: limits.bandwidth_bps(),
            parallel_outbound_per_node: limits.parallel_outbound_migrations_per_node,
            node_drain_rate_bps: budget
                .min_rate_bps
                .saturating_mul(limits.parallel_outbound_migrations_per_node),
            source: limits.source,
            assumptions,
        })
    }

    /// Whether `bandwidthPerMigration` caps the rate below what the budget needs.
    pub fn capped_below_need(&self) -> bool {
        self.bandwidth_per_migration_bps
            .is_some_and(|cap| cap < self.budget.min_rate_bps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sixteen_gib_at_the_defaults() {
        let b = BudgetLine::new(
            "defaults".into(),
            "16Gi".into(),
            16 << 30,
            &LimitsSet::default(),
        )
        .unwrap();
        // 16 GiB = 17.18e9 bytes: 18 units of 10^9 bytes.
        assert_eq!(b.budget.size_units, 18);
        assert_eq!(b.budget.completion_timeout_s, 150 * 18);
        assert_eq!(b.node_drain_rate_bps, 2 * b.budget.min_rate_bps);
        assert_eq!(b.progress_timeout_s, 150);
        assert!(b
            .assumptions
            .iter()
            .any(|a| a.starts_with("completionTimeoutPerGiB not set")));
        assert_eq!(b.bandwidth_per_migration_bps, None);
    }

    #[test]
    fn the_seeds_800_per_gib_and_a_bandwidth_cap() {
        let set = LimitsSet {
            completion_timeout_per_gib: Some(800),
            progress_timeout: Some(150),
            parallel_per_cluster: Some(5),
            parallel_outbound_per_node: Some(2),
            bandwidth: Some(1 << 20),
        };
        let b = BudgetLine::new("hco".into(), "1G".into(), 1_000_000_000, &set).unwrap();
        assert_eq!(
            (b.budget.size_units, b.budget.completion_timeout_s),
            (1, 800)
        );
        assert_eq!(b.budget.min_rate_bps, 10_000_000);
        assert!(b.capped_below_need()); // 1 MiB/s = 8.4 Mbit/s < 10 Mbit/s
        assert!(!b.assumptions.iter().any(|a| a.contains("not set")));
    }

    #[test]
    fn a_zero_size_has_no_budget() {
        assert!(BudgetLine::new("d".into(), "x".into(), 0, &LimitsSet::default()).is_none());
        let b =
            BudgetLine::new("d".into(), "x".into(), 1_000_000_001, &LimitsSet::default()).unwrap();
        assert_eq!(
            (b.budget.size_units, b.budget.completion_timeout_s),
            (2, 300)
        );
    }
}
