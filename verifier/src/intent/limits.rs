//! The migration limits: where each object keeps them, KubeVirt's defaults,
//! which object's are in force, and the resolved values a budget uses.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::config::{documents::Object, quantity::Quantity};

/// KubeVirt's defaults (since 1.4) for the fields a config leaves out.
pub const DEFAULT_COMPLETION_TIMEOUT_PER_GIB: u64 = 150;
pub const DEFAULT_PROGRESS_TIMEOUT: u64 = 150;
pub const DEFAULT_PARALLEL_PER_CLUSTER: u64 = 5;
pub const DEFAULT_PARALLEL_OUTBOUND_PER_NODE: u64 = 2;

/// Where OpenShift Virtualization installs HyperConverged (upstream HCO:
/// `kubevirt-hyperconverged`). A manifest without a namespace is applied
/// wherever the operator runs, so it is not assumed: any namespace matches.
pub const HCO_OPENSHIFT_NAMESPACE: &str = "openshift-cnv";

/// The kinds of object that carry migration settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    HyperConverged,
    KubeVirt,
    Policy,
}

/// The limits one object sets, as written; `None`: not set (or not of a
/// type KubeVirt reads, which `check` reports).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LimitsSet {
    pub completion_timeout_per_gib: Option<i64>,
    pub progress_timeout: Option<i64>,
    pub parallel_per_cluster: Option<i64>,
    pub parallel_outbound_per_node: Option<i64>,
    /// Bytes per second; 0 is unlimited.
    pub bandwidth: Option<u64>,
}

/// One object's migration settings.
#[derive(Clone, Debug)]
pub struct MigrationConfig<'a> {
    pub object: &'a Object,
    pub source: Source,
    /// Where the block is: `spec.liveMigrationConfig` (HyperConverged
    /// v1beta1), `spec.virtualization.liveMigrationConfig` (v1),
    /// `spec.configuration.migrations` (KubeVirt), `spec` (MigrationPolicy).
    pub path: &'static str,
    /// Where KubeVirt looks for the migration NAD: the CR's own namespace
    /// (KubeVirt and HyperConverged live in the install namespace); `None`
    /// when the manifest has none.
    pub install_namespace: Option<String>,
    /// The migration network's NAD name.
    pub network: Option<String>,
    pub set: LimitsSet,
}

/// The settings of every HyperConverged, KubeVirt and MigrationPolicy among
/// `objects`.
pub fn configs(objects: &[Object]) -> Vec<MigrationConfig<'_>> {
    objects.iter().filter_map(config).collect()
}

fn config(object: &Object) -> Option<MigrationConfig<'_>> {
    let (source, path) = match object.kind.as_str() {
        "HyperConverged" if object.api_version == "hco.kubevirt.io/v1" => (
            Source::HyperConverged,
            "spec.virtualization.liveMigrationConfig",
        ),
        "HyperConverged" => (Source::HyperConverged, "spec.liveMigrationConfig"),
        "KubeVirt" => (Source::KubeVirt, "spec.configuration.migrations"),
        "MigrationPolicy" => (Source::Policy, "spec"),
        _ => return None,
    };
    let empty = Map::new();
    let block = path
        .split('.')
        .try_fold(&object.value, |value, key| value.get(key))
        .and_then(Value::as_object)
        .unwrap_or(&empty);
    let install_namespace = match source {
        Source::Policy => None,
        _ => object.namespace.clone(),
    };
    Some(MigrationConfig {
        object,
        source,
        path,
        install_namespace,
        network: match source {
            Source::Policy => None,
            _ => block
                .get("network")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .map(str::to_string),
        },
        set: LimitsSet::read(block, source),
    })
}

impl LimitsSet {
    /// The limits a block of `source`'s migration settings sets (also the
    /// `status.migrationState.migrationConfiguration` KubeVirt applied,
    /// which has the KubeVirt CR's shape).
    pub fn read(block: &Map<String, Value>, source: Source) -> LimitsSet {
        let int = |key: &str| block.get(key).and_then(Value::as_i64);
        let cluster_wide = |key: &str| {
            if source == Source::Policy {
                None
            } else {
                int(key)
            }
        };
        LimitsSet {
            completion_timeout_per_gib: int("completionTimeoutPerGiB"),
            progress_timeout: cluster_wide("progressTimeout"),
            parallel_per_cluster: cluster_wide("parallelMigrationsPerCluster"),
            parallel_outbound_per_node: cluster_wide("parallelOutboundMigrationsPerNode"),
            bandwidth: bandwidth(block.get("bandwidthPerMigration"), source),
        }
    }
}

/// `bandwidthPerMigration` in bytes per second: a quantity string, or for
/// KubeVirt's int-or-string also a bare number (HyperConverged's field is a
/// string).
fn bandwidth(value: Option<&Value>, source: Source) -> Option<u64> {
    let text = match value? {
        Value::String(s) => s.clone(),
        Value::Number(n) if source != Source::HyperConverged => n.to_string(),
        _ => return None,
    };
    let quantity: Quantity = text.parse().ok()?;
    if quantity.is_negative() {
        return None;
    }
    u64::try_from(quantity.value()?).ok()
}

/// The cluster's own settings: HyperConverged overwrites the KubeVirt CR.
pub fn cluster<'c, 'a>(configs: &'c [MigrationConfig<'a>]) -> Option<&'c MigrationConfig<'a>> {
    configs
        .iter()
        .find(|c| c.source == Source::HyperConverged)
        .or_else(|| configs.iter().find(|c| c.source == Source::KubeVirt))
}

/// A MigrationPolicy's own limits over the cluster's; the cluster's own
/// as they are.
pub fn effective(config: &MigrationConfig, cluster: Option<&MigrationConfig>) -> LimitsSet {
    let mut set = config.set.clone();
    if let (Source::Policy, Some(cluster)) = (config.source, cluster) {
        let c = &cluster.set;
        set.completion_timeout_per_gib = set
            .completion_timeout_per_gib
            .or(c.completion_timeout_per_gib);
        set.progress_timeout = c.progress_timeout;
        set.parallel_per_cluster = c.parallel_per_cluster;
        set.parallel_outbound_per_node = c.parallel_outbound_per_node;
        set.bandwidth = set.bandwidth.or(c.bandwidth);
    }
    set
}

/// The limits in force among `configs` and the object they come from: a
/// MigrationPolicy given over the cluster's, else HyperConverged, else
/// KubeVirt.
pub fn in_force(configs: &[MigrationConfig]) -> Option<(String, LimitsSet)> {
    let cluster = cluster(configs);
    configs
        .iter()
        .find(|c| c.source == Source::Policy)
        .or(cluster)
        .map(|config| (config.object.describe(), effective(config, cluster)))
}

/// The limits a budget is judged by, each set or assumed (assumptions are
/// reported).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Limits {
    pub completion_timeout_per_gib: u64,
    pub progress_timeout_s: u64,
    /// Bytes per second; `None` is unlimited (`0Mi`).
    pub bandwidth_per_migration: Option<u64>,
    pub parallel_migrations_per_cluster: u64,
    pub parallel_outbound_migrations_per_node: u64,
    /// Where they came from ("flags", an object, "KubeVirt defaults").
    pub source: String,
}

/// The source of [`Limits::default`].
pub const DEFAULTS_SOURCE: &str = "KubeVirt defaults";

impl Default for Limits {
    /// KubeVirt's defaults since 1.4.
    fn default() -> Self {
        Limits {
            completion_timeout_per_gib: DEFAULT_COMPLETION_TIMEOUT_PER_GIB,
            progress_timeout_s: DEFAULT_PROGRESS_TIMEOUT,
            bandwidth_per_migration: None,
            parallel_migrations_per_cluster: DEFAULT_PARALLEL_PER_CLUSTER,
            parallel_outbound_migrations_per_node: DEFAULT_PARALLEL_OUTBOUND_PER_NODE,
            source: DEFAULTS_SOURCE.into(),
        }
    }
}

impl Limits {
    /// What `set` sets; KubeVirt's default for the rest (a value that is
    /// not positive is not one KubeVirt would run with), each default named
    /// in `assumptions`.
    pub fn resolve(source: String, set: &LimitsSet, assumptions: &mut Vec<String>) -> Limits {
        let defaults = Limits::default();
        let mut take = |value: Option<i64>, default: u64, name: &str, note: &str| match value {
            Some(v) if v > 0 => v as u64,
            Some(v) => {
                assumptions.push(format!(
                    "{name} {v} in {source} is not positive: KubeVirt's default {default}{note} assumed"
                ));
                default
            }
            None => {
                assumptions.push(format!(
                    "{name} not set in {source}: KubeVirt's default {default}{note}"
                ));
                default
            }
        };
        let limits = Limits {
            completion_timeout_per_gib: take(
                set.completion_timeout_per_gib,
                defaults.completion_timeout_per_gib,
                "completionTimeoutPerGiB",
                " s (KubeVirt >= 1.4; 800 before, and HyperConverged releases set their own)",
            ),
            progress_timeout_s: take(
                set.progress_timeout,
                defaults.progress_timeout_s,
                "progressTimeout",
                " s",
            ),
            parallel_migrations_per_cluster: take(
                set.parallel_per_cluster,
                defaults.parallel_migrations_per_cluster,
                "parallelMigrationsPerCluster",
                "",
            ),
            parallel_outbound_migrations_per_node: take(
                set.parallel_outbound_per_node,
                defaults.parallel_outbound_migrations_per_node,
                "parallelOutboundMigrationsPerNode",
                "",
            ),
            // 0 is unlimited, as `0Mi` is.
            bandwidth_per_migration: set.bandwidth.filter(|b| *b > 0),
            source: source.clone(),
        };
        if set.bandwidth.is_none() {
            assumptions.push(format!(
                "bandwidthPerMigration not set in {source}: unlimited"
            ));
        }
        limits
    }

    /// Whether every value is KubeVirt's default because nothing gave any.
    pub fn are_defaults(&self) -> bool {
        self.source == DEFAULTS_SOURCE
    }

    /// bandwidthPerMigration in bits per second; `None` is unlimited.
    pub fn bandwidth_bps(&self) -> Option<u64> {
        self.bandwidth_per_migration.map(|b| b.saturating_mul(8))
    }
}

/// The migration limits as flags (defaults: KubeVirt's), for the
/// commands that judge without the cluster's objects.
#[derive(Debug, Clone, clap::Args)]
pub struct LimitFlags {
    /// completionTimeoutPerGiB, seconds per 10^9 bytes of VM size.
    #[arg(long, value_name = "SECONDS")]
    completion_timeout_per_gib: Option<u64>,
    /// progressTimeout, seconds without progress before KubeVirt gives up.
    #[arg(long, value_name = "SECONDS")]
    progress_timeout: Option<u64>,
    /// parallelMigrationsPerCluster.
    #[arg(long, value_name = "N")]
    parallel_migrations_per_cluster: Option<u64>,
    /// parallelOutboundMigrationsPerNode.
    #[arg(long, value_name = "N")]
    parallel_outbound_migrations_per_node: Option<u64>,
    /// bandwidthPerMigration in MiB/s (0: unlimited, the default).
    #[arg(long, value_name = "MIB_PER_S")]
    bandwidth_per_migration: Option<u64>,
}

impl LimitFlags {
    /// The limits the flags give, KubeVirt's defaults for the rest; `None`
    /// when no budget flag was given.
    pub fn limits(&self) -> Result<Option<Limits>, FlagError> {
        let mut limits = Limits::default();
        let mut given = false;
        for (value, field) in [
            (
                self.completion_timeout_per_gib,
                &mut limits.completion_timeout_per_gib,
            ),
            (self.progress_timeout, &mut limits.progress_timeout_s),
            (
                self.parallel_migrations_per_cluster,
                &mut limits.parallel_migrations_per_cluster,
            ),
            (
                self.parallel_outbound_migrations_per_node,
                &mut limits.parallel_outbound_migrations_per_node,
            ),
        ] {
            if let Some(value) = value {
                if value == 0 {
                    return Err(FlagError::Zero);
                }
                *field = value;
                given = true;
            }
        }
        if let Some(mib) = self.bandwidth_per_migration {
            limits.bandwidth_per_migration = (mib > 0).then_some(mib << 20);
            given = true;
        }
        if given {
            limits.source = "flags (KubeVirt defaults for the rest)".into();
        }
        Ok(given.then_some(limits))
    }

    /// The flags' limits, else KubeVirt's defaults.
    pub fn limits_or_defaults(&self) -> Result<Limits, FlagError> {
        Ok(self.limits()?.unwrap_or_default())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FlagError {
    #[error("budget flags take positive values (got 0)")]
    Zero,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::documents::load_bytes;

    fn objects(yaml: &str) -> Vec<Object> {
        load_bytes("test.yaml", yaml.as_bytes()).unwrap()
    }

    #[test]
    fn hyperconverged_v1_and_v1beta1_keep_the_block_in_different_places() {
        let both = objects(
            "apiVersion: hco.kubevirt.io/v1beta1\nkind: HyperConverged\nmetadata: {name: a}\n\
             spec: {liveMigrationConfig: {completionTimeoutPerGiB: 800, network: mig}}\n---\n\
             apiVersion: hco.kubevirt.io/v1\nkind: HyperConverged\nmetadata: {name: b, namespace: cnv}\n\
             spec: {virtualization: {liveMigrationConfig: {completionTimeoutPerGiB: 20, parallelOutboundMigrationsPerNode: 1}}}\n",
        );
        let configs = configs(&both);
        assert_eq!(configs[0].path, "spec.liveMigrationConfig");
        assert_eq!(configs[0].set.completion_timeout_per_gib, Some(800));
        assert_eq!(configs[0].network.as_deref(), Some("mig"));
        // No namespace in the manifest: where it is applied is not known.
        assert_eq!(configs[0].install_namespace, None);
        assert_eq!(configs[1].path, "spec.virtualization.liveMigrationConfig");
        assert_eq!(configs[1].set.completion_timeout_per_gib, Some(20));
        assert_eq!(configs[1].set.parallel_outbound_per_node, Some(1));
        assert_eq!(configs[1].install_namespace.as_deref(), Some("cnv"));
    }

    #[test]
    fn a_policy_takes_the_clusters_for_what_it_cannot_set() {
        let both = objects(
            "apiVersion: kubevirt.io/v1\nkind: KubeVirt\nmetadata: {name: kv, namespace: kubevirt}\n\
             spec: {configuration: {migrations: {progressTimeout: 300, bandwidthPerMigration: 64Mi, \
             completionTimeoutPerGiB: 800}}}\n---\n\
             apiVersion: migrations.kubevirt.io/v1alpha1\nkind: MigrationPolicy\nmetadata: {name: p}\n\
             spec: {completionTimeoutPerGiB: 40, progressTimeout: 9, selectors: {}}\n",
        );
        let configs = configs(&both);
        let (source, set) = in_force(&configs).unwrap();
        assert!(source.contains("MigrationPolicy"), "{source}");
        assert_eq!(set.completion_timeout_per_gib, Some(40));
        // A policy has no progressTimeout: the cluster's is in force.
        assert_eq!(set.progress_timeout, Some(300));
        assert_eq!(set.bandwidth, Some(64 << 20));
    }

    #[test]
    fn resolving_names_every_default_it_assumes() {
        let mut assumptions = Vec::new();
        let set = LimitsSet {
            completion_timeout_per_gib: Some(20),
            progress_timeout: Some(0),
            bandwidth: Some(0),
            ..LimitsSet::default()
        };
        let limits = Limits::resolve("HyperConverged x".into(), &set, &mut assumptions);
        assert_eq!(limits.completion_timeout_per_gib, 20);
        assert_eq!(limits.progress_timeout_s, 150);
        assert_eq!(limits.bandwidth_per_migration, None);
        assert_eq!(assumptions.len(), 3, "{assumptions:?}");
        assert!(assumptions[0].starts_with("progressTimeout 0 in HyperConverged x is not positive"));
    }
}
