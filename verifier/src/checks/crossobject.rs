//! Checks across objects: the migration network named by HyperConverged or
//! KubeVirt exists where KubeVirt looks for it and can give every node an
//! address; the migration limits agree; the budget a VM of a given size
//! gets; and where a VMI's migration target actually listened.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{
    budget::{self, Budget, Limits},
    cni::Nad,
    fields::{field, Ctx},
    findings::*,
    ipam::IpamKind,
    networks::MainNetworks,
};
use crate::config::{
    documents::{join, Object},
    quantity::Quantity,
    Cidr,
};

/// Where HyperConverged lives when a manifest does not say (OpenShift).
pub const HCO_DEFAULT_NAMESPACE: &str = "openshift-cnv";

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
const KUBEVIRT_EXTRA_FIELDS: &[&str] = &[
    "disableTLS",
    "nodeDrainTaintKey",
    "unsafeMigrationOverride",
    "matchSELinuxLevelOnMigration",
    "allowWorkloadDisruption",
];
const POLICY_FIELDS: &[&str] = &[
    "selectors",
    "allowAutoConverge",
    "allowPostCopy",
    "allowWorkloadDisruption",
    "bandwidthPerMigration",
    "completionTimeoutPerGiB",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    HyperConverged,
    KubeVirt,
    Policy,
}

/// One object's migration settings.
struct MigrationConfig<'a> {
    object: &'a Object,
    source: Source,
    /// `spec.liveMigrationConfig`, `spec.configuration.migrations`, `spec`.
    path: &'static str,
    /// Where KubeVirt looks for the NAD; `None` when the manifest has no namespace.
    install_namespace: Option<String>,
    network: Option<String>,
    limits: Limits,
}

/// What the cross-object checks found besides findings.
pub struct Cross {
    /// For `--vm-memory` and for each VMI of known memory.
    pub budgets: Vec<Budget>,
    /// The limits in force and the object they come from: a given
    /// MigrationPolicy over the cluster's, else HyperConverged, else KubeVirt.
    pub limits: Option<(String, Limits)>,
    /// The index in `nads` of the migration network in force.
    pub migration_nad: Option<usize>,
}

/// Every cross-object check.
pub fn check(
    objects: &[Object],
    nads: &[Nad],
    main: &MainNetworks,
    vm_memory: Option<&Quantity>,
    findings: &mut Findings,
) -> Cross {
    let mut configs = Vec::new();
    for object in objects {
        let source = match object.kind.as_str() {
            "HyperConverged" => Source::HyperConverged,
            "KubeVirt" => Source::KubeVirt,
            "MigrationPolicy" => Source::Policy,
            _ => continue,
        };
        configs.push(read_config(object, source, findings));
    }
    let mut migration_ranges: Vec<Cidr> = Vec::new();
    let mut migration_nad = None;
    let has_hco = configs.iter().any(|c| c.source == Source::HyperConverged);
    for config in &configs {
        // HyperConverged overwrites the KubeVirt CR's network: judge the one in force.
        if config.source == Source::Policy || (config.source == Source::KubeVirt && has_hco) {
            continue;
        }
        if let Some(index) = check_network(config, nads, findings) {
            migration_ranges.extend(
                nads[index]
                    .ipam
                    .iter()
                    .flat_map(|i| i.ranges.iter().copied()),
            );
            migration_nad = migration_nad.or(Some(index));
        }
    }
    check_agreement(&configs, findings);
    // Without a named migration network, every NAD range given is a candidate.
    let ranges_named = !migration_ranges.is_empty();
    if !ranges_named {
        migration_ranges.extend(
            nads.iter()
                .flat_map(|n| n.ipam.iter().flat_map(|i| i.ranges.iter().copied())),
        );
    }

    let mut budgets = Vec::new();
    let cluster = configs
        .iter()
        .find(|c| c.source == Source::HyperConverged)
        .or_else(|| configs.iter().find(|c| c.source == Source::KubeVirt));
    if let Some(size) = vm_memory {
        let sources: Vec<&MigrationConfig> = configs.iter().collect();
        if sources.is_empty() {
            budgets.extend(Budget::compute(
                "KubeVirt defaults (no HyperConverged, KubeVirt or MigrationPolicy given)".into(),
                size.to_string(),
                size,
                &Limits::default(),
            ));
        }
        for config in sources {
            let limits = effective(config, cluster);
            if let Some(budget) =
                Budget::compute(config.object.describe(), size.to_string(), size, &limits)
            {
                unreachable_budget(config, &budget, findings);
                budgets.push(budget);
            }
        }
    }
    for object in objects {
        match object.kind.as_str() {
            "VirtualMachineInstance" => {
                target_address(object, &migration_ranges, ranges_named, main, findings);
                if let Some(budget) = vmi_budget(object, cluster) {
                    budgets.push(budget);
                }
            }
            "VirtualMachineInstanceMigration" => {
                let has_vmi = object.value["spec"]["vmiName"]
                    .as_str()
                    .is_some_and(|n| !n.is_empty());
                if !has_vmi {
                    findings.object(
                        object,
                        MIG_VMIM_NO_VMI,
                        "spec.vmiName",
                        "no `spec.vmiName`: the migration names no VMI to move".into(),
                        "set `spec.vmiName` to the VirtualMachineInstance's name".into(),
                    );
                }
                if object.value["status"]["migrationState"].is_object() {
                    target_address(object, &migration_ranges, ranges_named, main, findings);
                }
            }
            _ => {}
        }
    }
    let policy = configs.iter().find(|c| c.source == Source::Policy);
    let limits = policy
        .or(cluster)
        .map(|config| (config.object.describe(), effective(config, cluster)));
    Cross {
        budgets,
        limits,
        migration_nad,
    }
}

fn read_config<'a>(
    object: &'a Object,
    source: Source,
    findings: &mut Findings,
) -> MigrationConfig<'a> {
    let (path, reader, known): (&'static str, _, Vec<&str>) = match source {
        Source::HyperConverged => (
            "spec.liveMigrationConfig",
            "the HyperConverged API",
            HCO_FIELDS.to_vec(),
        ),
        Source::KubeVirt => (
            "spec.configuration.migrations",
            "the KubeVirt API",
            HCO_FIELDS
                .iter()
                .chain(KUBEVIRT_EXTRA_FIELDS)
                .copied()
                .collect(),
        ),
        Source::Policy => ("spec", "the MigrationPolicy API", POLICY_FIELDS.to_vec()),
    };
    let mut ctx = Ctx {
        object,
        findings,
        reader,
    };
    let mut map: Option<&Map<String, Value>> = object.value.as_object();
    let mut walked = String::new();
    for key in path.split('.') {
        map = match map {
            Some(m) => ctx.map(m, key, &walked),
            None => None,
        };
        walked = join(&walked, key);
    }
    let install_namespace = match source {
        Source::HyperConverged => Some(
            object
                .namespace
                .clone()
                .unwrap_or_else(|| HCO_DEFAULT_NAMESPACE.into()),
        ),
        _ => object.namespace.clone(),
    };
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
    let network = match source {
        Source::Policy => None,
        _ => ctx
            .str(map, "network", path)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    };
    let mut limits = Limits {
        completion_timeout_per_gib: positive(&mut ctx, map, path, "completionTimeoutPerGiB"),
        progress_timeout: match source {
            Source::Policy => None,
            _ => positive(&mut ctx, map, path, "progressTimeout"),
        },
        ..Limits::default()
    };
    if source != Source::Policy {
        limits.parallel_per_cluster = parallel(&mut ctx, map, path, "parallelMigrationsPerCluster");
        limits.parallel_outbound_per_node =
            parallel(&mut ctx, map, path, "parallelOutboundMigrationsPerNode");
        let (cluster, node) = (
            limits
                .parallel_per_cluster
                .unwrap_or(budget::DEFAULT_PARALLEL_PER_CLUSTER),
            limits
                .parallel_outbound_per_node
                .unwrap_or(budget::DEFAULT_PARALLEL_OUTBOUND_PER_NODE),
        );
        if node > cluster
            && (limits.parallel_per_cluster.is_some()
                || limits.parallel_outbound_per_node.is_some())
        {
            let assumed = |set: Option<i64>| if set.is_some() { "" } else { " (default)" };
            ctx.raise(
                MIG_PARALLEL_LIMITS,
                &format!("{path}.parallelOutboundMigrationsPerNode"),
                format!(
                    "parallelOutboundMigrationsPerNode {node}{} is above parallelMigrationsPerCluster {cluster}{}: \
                     a node can never send that many at once",
                    assumed(limits.parallel_outbound_per_node),
                    assumed(limits.parallel_per_cluster)
                ),
                format!("set parallelOutboundMigrationsPerNode to at most {cluster}, or raise parallelMigrationsPerCluster"),
            );
        }
    }
    limits.bandwidth = bandwidth(&mut ctx, map, path, source);
    MigrationConfig {
        object,
        source,
        path,
        install_namespace,
        network,
        limits,
    }
}

/// A timeout in seconds, which must be positive.
fn positive(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, key: &str) -> Option<i64> {
    let value = ctx.int(map, key, path)?;
    if value <= 0 {
        ctx.raise(
            MIG_TIMEOUT,
            &join(path, key),
            format!(
                "`{key}` {value} is not positive: KubeVirt would cancel every migration at once"
            ),
            format!("set `{key}` to seconds above 0 (KubeVirt's default is 150), or remove it"),
        );
        return None;
    }
    Some(value)
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

/// `bandwidthPerMigration` in bytes per second (0 = unlimited).
fn bandwidth(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, source: Source) -> Option<i128> {
    let at = join(path, "bandwidthPerMigration");
    let text = match field(map, "bandwidthPerMigration")? {
        Value::String(s) => s.clone(),
        // KubeVirt's Quantity also takes a bare number; HCO's field is a string.
        Value::Number(n) if source != Source::HyperConverged => n.to_string(),
        _ => {
            // Not text: raises the wrong-type finding.
            ctx.str(map, "bandwidthPerMigration", path);
            return None;
        }
    };
    let invalid = |ctx: &mut Ctx, why: String| {
        ctx.raise(
            MIG_BANDWIDTH_INVALID,
            &at,
            format!("`bandwidthPerMigration` {text:?} {why}; the API server refuses the object"),
            "write a quantity in bytes per second such as \"64Mi\" (0 is unlimited)".into(),
        );
        None
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
            format!("write the unit: \"{text}Mi\" is {text} MiB/s (0 is unlimited)"),
        );
    }
    Some(bytes)
}

/// The named migration NAD must exist in the install namespace and be able
/// to give each node its own address. Returns its index when found.
fn check_network(config: &MigrationConfig, nads: &[Nad], findings: &mut Findings) -> Option<usize> {
    let object = config.object;
    let at = format!("{}.network", config.path);
    let Some(name) = &config.network else {
        findings.object(
            object,
            MIG_NO_NETWORK,
            &at,
            "no migration network: virt-handler advertises its pod IP and every migration crosses the pod network"
                .into(),
            format!(
                "create a NetworkAttachmentDefinition for the migration NICs and name it in `{at}` (docs/examples/migration-nad.yaml)"
            ),
        );
        return None;
    };
    let in_namespace = |nad: &&Nad| {
        nad.name.as_deref() == Some(name)
            && match (&config.install_namespace, &nad.namespace) {
                (Some(want), Some(have)) => want == have,
                _ => true,
            }
    };
    let namespace = config
        .install_namespace
        .as_deref()
        .unwrap_or("(the install namespace)");
    let Some(index) = nads.iter().position(|n| in_namespace(&n)) else {
        if let Some(other) = nads.iter().find(|n| n.name.as_deref() == Some(name)) {
            findings.object(
                object,
                MIG_NAD_WRONG_NAMESPACE,
                &at,
                format!(
                    "NetworkAttachmentDefinition {name} is in namespace {}, but KubeVirt looks for it in {namespace}; \
                     virt-handler pods would not start",
                    other.namespace.as_deref().unwrap_or("?")
                ),
                format!("create the NetworkAttachmentDefinition in namespace {namespace}"),
            );
        } else if nads.is_empty() {
            findings.object(
                object,
                MIG_NAD_NOT_GIVEN,
                &at,
                format!("the migration network {namespace}/{name} was not among the inputs, so it was not checked"),
                format!("add it: `oc get net-attach-def {name} -n {namespace} -o yaml > nad.yaml` and pass nad.yaml too"),
            );
        } else {
            findings.object(
                object,
                MIG_NAD_NOT_FOUND,
                &at,
                format!(
                    "no NetworkAttachmentDefinition {namespace}/{name} among the inputs (there are: {}); virt-handler \
                     pods would fail to start",
                    nads.iter()
                        .map(|n| format!("{}/{}", n.namespace.as_deref().unwrap_or("?"), n.name.as_deref().unwrap_or("?")))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("set `{at}` to the NetworkAttachmentDefinition's name, or create {namespace}/{name}"),
            );
        }
        return None;
    };
    let ipam_problem = match nads[index].ipam.as_ref().map(|i| &i.kind) {
        None | Some(IpamKind::None) => Some(
            "has no IPAM: migration0 gets no address and virt-handler has nothing to advertise".to_string(),
        ),
        Some(IpamKind::Static) => Some(
            "uses static IPAM: every node's virt-handler gets the same address, and migrations go to the wrong node \
             or nowhere"
                .into(),
        ),
        Some(IpamKind::HostLocal) => Some(
            "uses host-local IPAM: each node allocates from the range on its own, so nodes get the same addresses"
                .into(),
        ),
        _ => None,
    };
    if let Some(problem) = ipam_problem {
        findings.object(
            object,
            MIG_NAD_IPAM,
            &at,
            format!("the migration network {namespace}/{name} {problem}"),
            format!(
                "give {name} whereabouts IPAM with one cluster-wide range: `\"ipam\": {{\"type\": \"whereabouts\", \"range\": \"10.200.5.0/24\"}}`"
            ),
        );
    }
    Some(index)
}

fn check_agreement(configs: &[MigrationConfig], findings: &mut Findings) {
    let hco = configs.iter().find(|c| c.source == Source::HyperConverged);
    let kubevirt = configs.iter().find(|c| c.source == Source::KubeVirt);
    if let (Some(hco), Some(kubevirt)) = (hco, kubevirt) {
        if hco.network != kubevirt.network {
            let show = |n: &Option<String>| n.clone().unwrap_or_else(|| "none".into());
            findings.object(
                kubevirt.object,
                MIG_HCO_KUBEVIRT_DISAGREE,
                "spec.configuration.migrations.network",
                format!(
                    "the KubeVirt CR names migration network {}, HyperConverged {}: the HyperConverged operator \
                     overwrites the KubeVirt CR, so {} is what will be used",
                    show(&kubevirt.network),
                    show(&hco.network),
                    show(&hco.network)
                ),
                "set the network in HyperConverged `spec.liveMigrationConfig.network` only".into(),
            );
        }
    }
}

/// A MigrationPolicy's own limits over the cluster's.
fn effective(config: &MigrationConfig, cluster: Option<&MigrationConfig>) -> Limits {
    let mut limits = config.limits.clone();
    if config.source == Source::Policy {
        if let Some(cluster) = cluster {
            let c = &cluster.limits;
            limits.completion_timeout_per_gib = limits
                .completion_timeout_per_gib
                .or(c.completion_timeout_per_gib);
            limits.progress_timeout = c.progress_timeout;
            limits.parallel_per_cluster = c.parallel_per_cluster;
            limits.parallel_outbound_per_node = c.parallel_outbound_per_node;
            limits.bandwidth = limits.bandwidth.or(c.bandwidth);
        }
    }
    limits
}

fn unreachable_budget(config: &MigrationConfig, budget: &Budget, findings: &mut Findings) {
    if !budget.capped_below_need() {
        return;
    }
    findings.object(
        config.object,
        MIG_BUDGET_UNREACHABLE,
        &join(config.path, "bandwidthPerMigration"),
        format!(
            "bandwidthPerMigration caps a migration at {}, but a {} VM needs at least {} to finish within its {} s \
             budget ({} s/GiB x {} units of 10^9 bytes): it would always be cancelled",
            budget::rate(budget.bandwidth_bytes_per_s.unwrap_or(0).unsigned_abs()),
            budget.vm,
            budget::rate(budget.min_rate_bytes_per_s),
            budget.completion_timeout_s,
            budget.completion_timeout_per_gib_s,
            budget.size_units
        ),
        format!(
            "raise bandwidthPerMigration above {} (or \"0\" for unlimited), or raise completionTimeoutPerGiB",
            budget::rate(budget.min_rate_bytes_per_s)
        ),
    );
}

/// The budget of a VMI of known memory, under the limits KubeVirt applied
/// (`status.migrationState.migrationConfiguration`) or the cluster's.
fn vmi_budget(object: &Object, cluster: Option<&MigrationConfig>) -> Option<Budget> {
    let domain = &object.value["spec"]["domain"];
    let memory = domain["memory"]["guest"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            domain["resources"]["requests"]["memory"]
                .as_str()
                .map(str::to_string)
        })?;
    let size: Quantity = memory.parse().ok()?;
    let applied = &object.value["status"]["migrationState"]["migrationConfiguration"];
    let (limits, source) = if applied.is_object() {
        let number = |key: &str| applied[key].as_i64();
        (
            Limits {
                completion_timeout_per_gib: number("completionTimeoutPerGiB"),
                progress_timeout: number("progressTimeout"),
                parallel_per_cluster: number("parallelMigrationsPerCluster"),
                parallel_outbound_per_node: number("parallelOutboundMigrationsPerNode"),
                bandwidth: applied["bandwidthPerMigration"]
                    .as_str()
                    .and_then(|b| b.parse::<Quantity>().ok())
                    .and_then(|q| q.value()),
            },
            format!(
                "{} status.migrationState.migrationConfiguration",
                object.describe()
            ),
        )
    } else if let Some(cluster) = cluster {
        (cluster.limits.clone(), cluster.object.describe())
    } else {
        (Limits::default(), "KubeVirt defaults".into())
    };
    Budget::compute(
        source,
        format!("{} ({memory})", object.describe()),
        &size,
        &limits,
    )
}

/// The seed's verification step, made exact: where did the target listen?
fn target_address(
    object: &Object,
    migration: &[Cidr],
    named: bool,
    main: &MainNetworks,
    findings: &mut Findings,
) {
    let path = "status.migrationState.targetNodeAddress";
    let state = &object.value["status"]["migrationState"];
    let Some(text) = state["targetNodeAddress"]
        .as_str()
        .filter(|t| !t.is_empty())
    else {
        findings.object(
            object,
            VMI_NO_TARGET,
            path,
            "no targetNodeAddress: no migration has reached its target yet, so there is nothing to confirm".into(),
            "check again during or after a migration: `oc get vmi NAME -o yaml`".into(),
        );
        return;
    };
    let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        findings.object(
            object,
            VMI_TARGET_INVALID,
            path,
            format!("targetNodeAddress {text:?} is not an IP address"),
            "read it again from the cluster; KubeVirt writes a plain IP".into(),
        );
        return;
    };
    let which = if named {
        "the migration network"
    } else {
        "a secondary network given"
    };
    if let Some(range) = migration.iter().find(|r| r.contains(ip)) {
        findings.object(
            object,
            VMI_TARGET_ON_MIGRATION_NETWORK,
            path,
            format!("PASS: the target listened on {ip}, inside {which}'s range {range}: the migration used it"),
            "nothing to fix".into(),
        );
    } else if let Some(network) = main.containing(ip) {
        findings.object(
            object,
            VMI_TARGET_ON_POD_NETWORK,
            path,
            format!(
                "FAIL: the target listened on {ip}, inside the {} {}: the migration crossed the main network, not the \
                 migration network (virt-handler had no migration0 and advertised its pod IP)",
                network.role, network.cidr
            ),
            "check the migration NetworkAttachmentDefinition and that virt-handler pods restarted with migration0: \
             `migverify check --host` on a node"
                .into(),
        );
    } else {
        let known = if migration.is_empty() && main.is_empty() {
            "no migration range or main network was given to compare with".to_string()
        } else {
            format!(
                "it is outside {} and every known main network",
                if migration.is_empty() {
                    "any migration range".to_string()
                } else {
                    format!("{which}'s range")
                }
            )
        };
        findings.object(
            object,
            VMI_TARGET_UNKNOWN_NETWORK,
            path,
            format!("the target listened on {ip}, but {known}: which network carried the migration is unknown"),
            "pass the migration NetworkAttachmentDefinition and the cluster Network config (or --pod-cidr) too".into(),
        );
    }
}
