//! The migration budgets as KubeVirt applies them, against what was seen.
//!
//! KubeVirt cancels a migration running longer than
//! `completionTimeoutPerGiB x size`, size being guest memory (plus migrated
//! disks) rounded *up* to whole units of 10^9 bytes
//! (`ScaledValue(resource.Giga)`); and one whose remaining data has not
//! dropped for `progressTimeout` seconds.

use serde::Serialize;

use super::migration::Figures;

const GIGA: u64 = 1_000_000_000;

/// KubeVirt's defaults (since 1.4) for fields a config leaves out.
pub const DEFAULT_COMPLETION_TIMEOUT_PER_GIB: i64 = 150;
pub const DEFAULT_PROGRESS_TIMEOUT: i64 = 150;
pub const DEFAULT_PARALLEL_PER_CLUSTER: i64 = 5;
pub const DEFAULT_PARALLEL_OUTBOUND_PER_NODE: i64 = 2;

/// The limits in force, each set or assumed (assumptions are reported).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BudgetSettings {
    pub completion_timeout_per_gib: u64,
    pub progress_timeout_s: u64,
    /// Bytes per second; `None` is unlimited (`0Mi`).
    pub bandwidth_per_migration: Option<u64>,
    pub parallel_migrations_per_cluster: u64,
    pub parallel_outbound_migrations_per_node: u64,
    /// Where they came from ("flags", an object, "KubeVirt defaults").
    pub source: String,
}

impl BudgetSettings {
    /// The settings of a HyperConverged, KubeVirt or MigrationPolicy object
    /// (as `check` reads them); what it leaves out is KubeVirt's default,
    /// named in `assumptions`.
    pub fn from_limits(
        source: String,
        limits: &crate::checks::budget::Limits,
        assumptions: &mut Vec<String>,
    ) -> Self {
        let defaults = BudgetSettings::default();
        let mut take = |value: Option<i64>, default: u64, name: &str| match value {
            Some(v) if v > 0 => v as u64,
            _ => {
                assumptions.push(format!(
                    "{source}: {name} not set: KubeVirt's default {default}"
                ));
                default
            }
        };
        BudgetSettings {
            completion_timeout_per_gib: take(
                limits.completion_timeout_per_gib,
                defaults.completion_timeout_per_gib,
                "completionTimeoutPerGiB",
            ),
            progress_timeout_s: take(
                limits.progress_timeout,
                defaults.progress_timeout_s,
                "progressTimeout",
            ),
            parallel_migrations_per_cluster: take(
                limits.parallel_per_cluster,
                defaults.parallel_migrations_per_cluster,
                "parallelMigrationsPerCluster",
            ),
            parallel_outbound_migrations_per_node: take(
                limits.parallel_outbound_per_node,
                defaults.parallel_outbound_migrations_per_node,
                "parallelOutboundMigrationsPerNode",
            ),
            // 0 is unlimited, as `0Mi` is.
            bandwidth_per_migration: limits
                .bandwidth
                .filter(|b| *b > 0)
                .and_then(|b| u64::try_from(b).ok()),
            source,
        }
    }
}

impl Default for BudgetSettings {
    /// KubeVirt's defaults since 1.4.
    fn default() -> Self {
        BudgetSettings {
            completion_timeout_per_gib: DEFAULT_COMPLETION_TIMEOUT_PER_GIB as u64,
            progress_timeout_s: DEFAULT_PROGRESS_TIMEOUT as u64,
            bandwidth_per_migration: None,
            parallel_migrations_per_cluster: DEFAULT_PARALLEL_PER_CLUSTER as u64,
            parallel_outbound_migrations_per_node: DEFAULT_PARALLEL_OUTBOUND_PER_NODE as u64,
            source: "KubeVirt defaults".into(),
        }
    }
}

/// The size a migration's budget is computed from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VmSize {
    pub bytes: u64,
    /// Where it came from: a VMI's field, a flag, or the named assumption
    /// that the data moved is the size.
    pub source: String,
}

impl VmSize {
    /// The size KubeVirt budgets a VMI by: `spec.domain.memory.guest`, else
    /// `spec.domain.resources.requests.memory`; `None` when it has neither.
    pub fn of_vmi(vmi: &serde_json::Value) -> Result<Option<VmSize>, String> {
        for field in [
            "/spec/domain/memory/guest",
            "/spec/domain/resources/requests/memory",
        ] {
            let Some(text) = vmi.pointer(field).and_then(|v| v.as_str()) else {
                continue;
            };
            let name = field.trim_start_matches('/').replace('/', ".");
            let bytes = text
                .parse::<crate::config::quantity::Quantity>()
                .ok()
                .and_then(|q| q.value())
                .and_then(|v| u64::try_from(v).ok())
                .ok_or_else(|| format!("{name} {text:?} is not a memory size"))?;
            return Ok(Some(VmSize {
                bytes,
                source: format!("VMI {name} {text}"),
            }));
        }
        Ok(None)
    }
}

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

/// `bytes` in units of 10^9, rounded up, as `ScaledValue(resource.Giga)`.
pub fn size_units(bytes: u64) -> u64 {
    bytes.div_ceil(GIGA)
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
}

pub fn budget(settings: &BudgetSettings, size: &VmSize, figures: &Figures) -> BudgetReport {
    let units = size_units(size.bytes);
    let completion_timeout_s = settings.completion_timeout_per_gib * units;
    let min_rate_bps = if completion_timeout_s == 0 {
        0
    } else {
        (u128::from(size.bytes) * 8).div_ceil(u128::from(completion_timeout_s)) as u64
    };
    let observed = figures.throughput_bps.p50;
    // A migration that is over took what it took. Extrapolating from its
    // intervals would misjudge a short one: the few intervals of its
    // connection and TLS set-up can be half of them, and its median rate
    // then a set-up rate. Over means closed cleanly with at least its size
    // moved; a reset or a short one (aborted, or mostly zero pages) is
    // still extrapolated.
    let (projected_s, projection) =
        if figures.finished && figures.forward_payload_bytes >= size.bytes {
            (Some(figures.duration_s), Projection::Duration)
        } else {
            (
                (observed > 0).then(|| size.bytes as f64 * 8.0 / observed as f64),
                Projection::MedianRate,
            )
        };
    let best = figures.throughput_bps.p95;
    BudgetReport {
        size_bytes: size.bytes,
        size_source: size.source.clone(),
        size_units: units,
        completion_timeout_per_gib: settings.completion_timeout_per_gib,
        completion_timeout_s,
        min_rate_bps,
        observed_rate_bps: observed,
        projected_s,
        projection,
        longest_stall_s: figures.longest_stall_s,
        progress_timeout_s: settings.progress_timeout_s,
        bandwidth_per_migration_bps: settings.bandwidth_per_migration.map(|b| b * 8),
        parallel_outbound_supported: (min_rate_bps > 0 && best > 0).then(|| best / min_rate_bps),
        parallel_outbound_migrations_per_node: settings.parallel_outbound_migrations_per_node,
        parallel_migrations_per_cluster: settings.parallel_migrations_per_cluster,
        settings_source: settings.source.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_in_units_of_ten_to_the_ninth() {
        assert_eq!(size_units(0), 0);
        assert_eq!(size_units(1), 1);
        assert_eq!(size_units(1_000_000_000), 1);
        assert_eq!(size_units(1_000_000_001), 2);
        // 16Gi is 17.18e9 bytes: 18 units, not 16.
        assert_eq!(size_units(16 << 30), 18);
        // 256Mi: one unit.
        assert_eq!(size_units(256 << 20), 1);
    }
}
