//! A migration's budgets against what was seen: the completion budget of
//! its size (KubeVirt's formula is [`crate::intent::budget`]'s) against the
//! rate it moved at, and its longest stall against `progressTimeout`.

use serde::Serialize;

use super::{migration::Figures, precopy::precopy};
use crate::intent::{Budget, Limits, VmSize};

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetReport {
    pub size_bytes: u64,
    pub size_source: String,
    /// `size_bytes` in KubeVirt's units: 10^9 bytes, rounded up.
    pub size_units: u64,
    pub completion_timeout_per_gib: u64,
    pub completion_timeout_s: u64,
    /// The least sustained rate that moves `size_bytes` within the budget.
    pub min_rate_bps: u64,
    /// The median interval rate observed.
    pub observed_rate_bps: u64,
    /// How long `size_bytes` takes (`None`: nothing moved).
    pub projected_s: Option<f64>,
    /// What `projected_s` rests on.
    pub projection: Projection,
    pub longest_stall_s: f64,
    pub progress_timeout_s: u64,
    /// bandwidthPerMigration, bits per second; `None` is unlimited.
    pub bandwidth_per_migration_bps: Option<u64>,
    /// How many migrations at `min_rate_bps` the best rate seen (p95) carries.
    pub parallel_outbound_supported: Option<u64>,
    pub parallel_outbound_migrations_per_node: u64,
    pub parallel_migrations_per_cluster: u64,
    pub settings_source: String,
}

/// What a budget's projected completion rests on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Projection {
    /// The migration moved its whole size and closed cleanly: how long it
    /// took.
    Duration,
    /// Extrapolated from the median interval rate.
    MedianRate,
    /// Still running past its first pass, re-sending what the guest
    /// dirtied: at least what it has run, and as long again as it has been
    /// re-sending (see [`super::precopy`]).
    Resending,
}

pub fn budget(limits: &Limits, size: &VmSize, figures: &Figures) -> BudgetReport {
    let budget = Budget::new(limits.completion_timeout_per_gib, size.bytes);
    let observed = figures.throughput_bps.p50;
    // A migration that is over took what it took. Extrapolating from its
    // intervals would misjudge a short one: the few intervals of its
    // connection and TLS set-up can be half of them, and its median rate
    // then a set-up rate. Over means closed cleanly with at least its size
    // moved; a reset or a short one (aborted, or mostly zero pages) is
    // still extrapolated.
    let end_ms = figures.progress.last().map_or(0, |i| i.at_ms);
    let (projected_s, projection) =
        if figures.finished && figures.forward_payload_bytes >= size.bytes {
            (Some(figures.duration_s), Projection::Duration)
        } else if let Some(p) = precopy(&figures.progress, size.bytes, end_ms) {
            (
                Some(p.first_pass_s + 2.0 * p.resending_s),
                Projection::Resending,
            )
        } else {
            (budget.seconds_at(observed), Projection::MedianRate)
        };
    let best = figures.throughput_bps.p95;
    BudgetReport {
        size_bytes: size.bytes,
        size_source: size.source.clone(),
        size_units: budget.size_units,
        completion_timeout_per_gib: budget.completion_timeout_per_gib,
        completion_timeout_s: budget.completion_timeout_s,
        min_rate_bps: budget.min_rate_bps,
        observed_rate_bps: observed,
        projected_s,
        projection,
        longest_stall_s: figures.longest_stall_s,
        progress_timeout_s: limits.progress_timeout_s,
        bandwidth_per_migration_bps: limits.bandwidth_bps(),
        parallel_outbound_supported: (budget.min_rate_bps > 0 && best > 0)
            .then(|| best / budget.min_rate_bps),
        parallel_outbound_migrations_per_node: limits.parallel_outbound_migrations_per_node,
        parallel_migrations_per_cluster: limits.parallel_migrations_per_cluster,
        settings_source: limits.source.clone(),
    }
}
