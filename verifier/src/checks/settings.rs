//! Each kind's own settings, as the API server and KubeVirt take them: the
//! migration limits' types and values (HyperConverged v1beta1 and v1,
//! KubeVirt, MigrationPolicy), where each API version keeps its blocks,
//! MigrationPolicy selectors, and the legacy `kubevirt-config` ConfigMap.

use serde_json::{Map, Value};

use super::{
    fields::{field, past_i64, Ctx},
    findings::*,
    objects::strings,
};
use crate::{
    config::{
        documents::{join, Object},
        quantity::Quantity,
    },
    intent::limits::{self, MigrationConfig, Source},
};

const HCO_FIELDS: &[&str] = &[
    "allowAutoConverge",
    "allowPostCopy",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
    "network",
    "parallelMigrationsPerCluster",
    "parallelOutboundMigrationsPerNode",
    "progressTimeout",
];
/// KubeVirt's MigrationConfiguration beyond HyperConverged's fields.
const KUBEVIRT_EXTRA_FIELDS: &[&str] = &[
    "disableTLS",
    "nodeDrainTaintKey",
    "unsafeMigrationOverride",
    "matchSELinuxLevelOnMigration",
    "allowWorkloadDisruption",
    "maxDowntimeMs",
    "utilityVolumesTimeout",
];
/// MigrationPolicySpec (migrations.kubevirt.io/v1alpha1).
const POLICY_FIELDS: &[&str] = &[
    "selectors",
    "allowAutoConverge",
    "allowPostCopy",
    "allowWorkloadDisruption",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
    "maxDowntimeMs",
];
/// The CRD's bounds of `maxDowntimeMs`.
const MAX_DOWNTIME_MS: std::ops::RangeInclusive<i64> = 1..=2_000_000;
/// HyperConverged v1's `spec` (api/v1/hyperconverged_types.go,
/// kubevirt/hyperconverged-cluster-operator@01f98160).
const HCO_V1_SPEC: &[&str] = &[
    "featureGates",
    "virtualization",
    "storage",
    "networking",
    "workloadSources",
    "security",
    "deployment",
];
/// HyperConverged v1's VirtualizationConfig (same source).
const HCO_V1_VIRTUALIZATION: &[&str] = &[
    "tuningPolicy",
    "liveMigrationConfig",
    "permittedHostDevices",
    "mediatedDevicesConfiguration",
    "workloadUpdateStrategy",
    "obsoleteCPUModels",
    "evictionStrategy",
    "virtualMachineOptions",
    "higherWorkloadDensity",
    "liveUpdateConfiguration",
    "ksmConfiguration",
    "changedBlockTrackingLabelSelectors",
    "hypervisors",
    "roleAggregationStrategy",
    "vmiCPUAllocationRatio",
    "autoCPULimitNamespaceLabelSelector",
];
/// The kubevirt-config ConfigMap's migration settings, in its `migrations` block.
const LEGACY_SETTINGS: &[&str] = &[
    "parallelMigrationsPerCluster",
    "parallelOutboundMigrationsPerNode",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
    "progressTimeout",
    "network",
    "allowAutoConverge",
    "allowPostCopy",
    "unsafeMigrationOverride",
    "nodeDrainTaintKey",
];

/// What the kind itself requires or keeps where, beyond the migration
/// settings ([`lint_config`]).
pub fn check(object: &Object, findings: &mut Findings) {
    let mut ctx = Ctx {
        object,
        findings,
        reader: "",
        api: true,
    };
    let Some(root) = object.value.as_object() else {
        return;
    };
    match object.kind.as_str() {
        "HyperConverged" => hyperconverged(&mut ctx, root),
        "KubeVirt" => kubevirt(&mut ctx, root),
        "MigrationPolicy" => policy(&mut ctx, root),
        "ConfigMap" => legacy_config_map(&mut ctx, root),
        _ => {}
    }
}

/// v1beta1 keeps the live-migration block at `spec.liveMigrationConfig`,
/// v1 at `spec.virtualization.liveMigrationConfig`; the other layout's
/// field is pruned.
fn hyperconverged(ctx: &mut Ctx, root: &Map<String, Value>) {
    let version = ctx.object.api_version.clone();
    ctx.reader = if version == "hco.kubevirt.io/v1" {
        "HyperConverged hco.kubevirt.io/v1"
    } else {
        "HyperConverged hco.kubevirt.io/v1beta1"
    };
    let Some(spec) = ctx.map(root, "spec", "") else {
        return;
    };
    if version == "hco.kubevirt.io/v1" {
        let misplaced: Vec<String> = spec
            .keys()
            .filter(|k| *k == "liveMigrationConfig")
            .cloned()
            .collect();
        for key in misplaced {
            ctx.unknown(
                &join("spec", &key),
                "in hco.kubevirt.io/v1 the block is `spec.virtualization.liveMigrationConfig`: move it there (or \
                 write apiVersion: hco.kubevirt.io/v1beta1)"
                    .into(),
            );
        }
        let rest: Map<String, Value> = spec
            .iter()
            .filter(|(k, _)| *k != "liveMigrationConfig")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ctx.unknown_fields(&rest, HCO_V1_SPEC, "spec", false);
        if let Some(virtualization) = ctx.map(spec, "virtualization", "spec") {
            ctx.unknown_fields(
                virtualization,
                HCO_V1_VIRTUALIZATION,
                "spec.virtualization",
                false,
            );
        }
    } else if spec.contains_key("virtualization") {
        ctx.unknown(
            "spec.virtualization",
            "`spec.virtualization` is hco.kubevirt.io/v1's layout: write `apiVersion: hco.kubevirt.io/v1`, or move \
             its liveMigrationConfig to `spec.liveMigrationConfig`"
                .into(),
        );
    }
}

/// A misnamed migrations block in `spec.configuration` (`migrationConfiguration`)
/// is pruned, and the settings in it never apply.
fn kubevirt(ctx: &mut Ctx, root: &Map<String, Value>) {
    ctx.reader = "KubeVirtConfiguration";
    let Some(configuration) = root
        .get("spec")
        .and_then(Value::as_object)
        .and_then(|spec| ctx.map(spec, "configuration", "spec"))
    else {
        return;
    };
    let misnamed: Vec<&String> = configuration
        .keys()
        .filter(|k| *k != "migrations" && k.to_ascii_lowercase().contains("migrat"))
        .collect();
    for key in misnamed {
        ctx.unknown(
            &join("spec.configuration", key),
            format!("did you mean `migrations`? KubeVirt reads the migration settings from `spec.configuration.migrations` only; rename `{key}`"),
        );
    }
}

/// `spec.selectors` is required, and a selector's values are strings.
fn policy(ctx: &mut Ctx, root: &Map<String, Value>) {
    ctx.reader = "the MigrationPolicy API";
    let Some(spec) = ctx.map(root, "spec", "") else {
        return;
    };
    let Some(selectors) = ctx.map(spec, "selectors", "spec") else {
        if field(spec, "selectors").is_none() {
            ctx.raise(
                MIG_POLICY_NO_SELECTORS,
                "spec.selectors",
                "no `spec.selectors`: the CRD requires it (MigrationPolicySpec.Selectors has no omitempty), and a \
                 policy that selects nothing applies to no VM"
                    .into(),
                "add `selectors:` with `namespaceSelector:` and/or `virtualMachineInstanceSelector:` labels".into(),
            );
        }
        return;
    };
    let kinds = ["namespaceSelector", "virtualMachineInstanceSelector"];
    ctx.unknown_fields(selectors, &kinds, "spec.selectors", false);
    for key in kinds {
        let path = join("spec.selectors", key);
        if let Some(labels) = ctx.map(selectors, key, "spec.selectors") {
            strings(
                ctx,
                labels,
                &path,
                "selector values are strings (LabelSelector map[string]string)",
            );
        }
    }
}

/// The `kubevirt-config` ConfigMap: values must be strings (the API server
/// refuses others), and nothing reads it any more.
fn legacy_config_map(ctx: &mut Ctx, root: &Map<String, Value>) {
    ctx.reader = "ConfigMap";
    let data = ctx.map(root, "data", "").cloned().unwrap_or_default();
    strings(
        ctx,
        &data,
        "data",
        "ConfigMap data values are strings (map[string]string)",
    );
    let fell_out: Vec<&str> = LEGACY_SETTINGS
        .iter()
        .copied()
        .filter(|k| data.contains_key(*k))
        .collect();
    let empty = data
        .get("migrations")
        .is_some_and(|m| m.as_str().is_some_and(|t| t.trim().is_empty()));
    let mut message = "the kubevirt-config ConfigMap is obsolete: KubeVirt has not read it since v0.48 (deprecated \
                       since 0.34) and HyperConverged deletes it, so its settings have no effect"
        .to_string();
    if empty && !fell_out.is_empty() {
        message += &format!(
            "; besides, its `migrations` block is empty: {} are not indented under `migrations: |-`, so YAML made \
             them keys of `data`",
            fell_out.join(", ")
        );
    }
    let at = if data.contains_key("migrations") {
        "data.migrations"
    } else {
        "metadata.name"
    };
    ctx.raise(
        MIG_LEGACY_CONFIGMAP,
        at,
        message,
        "put the settings in the KubeVirt CR's `spec.configuration.migrations` (HyperConverged: \
         `spec.liveMigrationConfig`), feature gates in `spec.configuration.developerConfiguration.featureGates`, \
         and delete the ConfigMap"
            .into(),
    );
}

/// The types and values of one object's migration settings, as the API
/// server and KubeVirt would take them.
pub fn lint_config(config: &MigrationConfig, findings: &mut Findings) {
    let (reader, known): (_, Vec<&str>) = match config.source {
        Source::HyperConverged => ("the HyperConverged API", HCO_FIELDS.to_vec()),
        Source::KubeVirt => (
            "the KubeVirt API",
            HCO_FIELDS
                .iter()
                .chain(KUBEVIRT_EXTRA_FIELDS)
                .copied()
                .collect(),
        ),
        Source::Policy => ("the MigrationPolicy API", POLICY_FIELDS.to_vec()),
    };
    let path = config.path;
    let mut ctx = Ctx {
        object: config.object,
        findings,
        reader,
        api: true,
    };
    let mut map: Option<&Map<String, Value>> = config.object.value.as_object();
    let mut walked = String::new();
    for key in path.split('.') {
        map = match map {
            Some(m) => ctx.map(m, key, &walked),
            None => None,
        };
        walked = join(&walked, key);
    }
    let empty = Map::new();
    let map = map.unwrap_or(&empty);
    ctx.unknown_fields(map, &known, path, false);
    for key in [
        "allowAutoConverge",
        "allowPostCopy",
        "allowWorkloadDisruption",
        "disableTLS",
        "unsafeMigrationOverride",
    ] {
        ctx.bool(map, key, path);
    }
    if config.source != Source::Policy {
        ctx.str(map, "network", path);
    }
    positive(&mut ctx, map, path, "completionTimeoutPerGiB");
    if config.source != Source::Policy {
        positive(&mut ctx, map, path, "progressTimeout");
        let set_cluster = parallel(&mut ctx, map, path, "parallelMigrationsPerCluster");
        let set_node = parallel(&mut ctx, map, path, "parallelOutboundMigrationsPerNode");
        let (cluster, node) = (
            set_cluster.unwrap_or(limits::DEFAULT_PARALLEL_PER_CLUSTER as i64),
            set_node.unwrap_or(limits::DEFAULT_PARALLEL_OUTBOUND_PER_NODE as i64),
        );
        if node > cluster && (set_cluster.is_some() || set_node.is_some()) {
            let assumed = |set: Option<i64>| if set.is_some() { "" } else { " (default)" };
            ctx.raise(
                MIG_PARALLEL_LIMITS,
                &format!("{path}.parallelOutboundMigrationsPerNode"),
                format!(
                    "parallelOutboundMigrationsPerNode {node}{} is above parallelMigrationsPerCluster {cluster}{}: \
                     a node can never send that many at once",
                    assumed(set_node),
                    assumed(set_cluster)
                ),
                format!("set parallelOutboundMigrationsPerNode to at most {cluster}, or raise parallelMigrationsPerCluster"),
            );
        }
    }
    bandwidth(&mut ctx, map, path, config.source);
    if config.source != Source::HyperConverged {
        max_downtime(&mut ctx, map, path);
    }
}

/// `maxDowntimeMs`: an unsigned count of milliseconds the CRD bounds.
fn max_downtime(ctx: &mut Ctx, map: &Map<String, Value>, path: &str) {
    let at = join(path, "maxDowntimeMs");
    let Some(value) = field(map, "maxDowntimeMs") else {
        return;
    };
    let out = match value.as_i64() {
        Some(ms) => !MAX_DOWNTIME_MS.contains(&ms),
        None if past_i64(value) => true,
        None => {
            // Not an integer: the wrong-type finding.
            ctx.int(map, "maxDowntimeMs", path);
            return;
        }
    };
    if out {
        ctx.raise(
            MIG_MAX_DOWNTIME,
            &at,
            format!(
                "`maxDowntimeMs` {value} is outside 1..=2000000, the CRD's bounds: the API server refuses the object"
            ),
            "set the longest pause of the VM you accept at switch-over, in milliseconds (KubeVirt's default is 300)"
                .into(),
        );
    }
}

/// A timeout in seconds, which must be positive.
fn positive(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, key: &str) {
    if let Some(value) = ctx.int(map, key, path).filter(|v| *v <= 0) {
        ctx.raise(
            MIG_TIMEOUT,
            &join(path, key),
            format!(
                "`{key}` {value} is not positive: KubeVirt would cancel every migration at once"
            ),
            format!("set `{key}` to seconds above 0 (KubeVirt's default is 150), or remove it"),
        );
    }
}

/// A parallelism limit (an unsigned count), which must be at least 1.
fn parallel(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
    let value = ctx.int(map, key, path)?;
    if value <= 0 {
        ctx.raise(
            MIG_PARALLEL_ZERO,
            &join(path, key),
            format!("`{key}` {value}: no migration can start, so node drains never finish"),
            format!("set `{key}` to at least 1 (defaults: parallelMigrationsPerCluster 5, parallelOutboundMigrationsPerNode 2)"),
        );
        return None;
    }
    Some(value)
}

/// `bandwidthPerMigration`: a quantity of bytes per second (0 = unlimited).
fn bandwidth(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, source: Source) {
    let at = join(path, "bandwidthPerMigration");
    let Some(value) = field(map, "bandwidthPerMigration") else {
        return;
    };
    let text = match value {
        Value::String(s) => s.clone(),
        // KubeVirt's Quantity also takes a bare number; HCO's field is a string.
        Value::Number(n) if source != Source::HyperConverged => n.to_string(),
        _ => {
            // Not text: raises the wrong-type finding.
            ctx.str(map, "bandwidthPerMigration", path);
            return;
        }
    };
    let invalid = |ctx: &mut Ctx, why: String| {
        ctx.raise(
            MIG_BANDWIDTH_INVALID,
            &at,
            format!("`bandwidthPerMigration` {text:?} {why}; the API server refuses the object"),
            "write a quantity in bytes per second such as \"64Mi\" (0 is unlimited)".into(),
        );
    };
    let quantity = match text.parse::<Quantity>() {
        Ok(q) => q,
        Err(e) => return invalid(ctx, format!("is not valid: {e}")),
    };
    if quantity.is_negative() {
        return invalid(ctx, "is negative".into());
    }
    let Some(bytes) = quantity.value() else {
        return invalid(ctx, "is too large".into());
    };
    if bytes > 0 && bytes < 1 << 20 {
        ctx.raise(
            MIG_BANDWIDTH_TINY,
            &at,
            format!(
                "`bandwidthPerMigration` {text:?} is {bytes} bytes per second: a migration of any real VM \
                 would take days and hit its completion timeout"
            ),
            {
                let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
                if digits == text {
                    format!("write the unit: \"{text}Mi\" is {text} MiB/s (0 is unlimited)")
                } else {
                    format!("the value is bytes per second: \"{digits}Mi\" is {digits} MiB/s (0 is unlimited)")
                }
            },
        );
    }
}
