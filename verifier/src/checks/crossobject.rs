//! Checks across objects: the migration network named by HyperConverged or
//! KubeVirt exists where KubeVirt looks for it and can give every node an
//! address; the migration limits agree; the budget a VM of a given size
//! gets; and where a VMI's migration target actually listened.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{
    budget::BudgetLine,
    fields::{field, Ctx},
    findings::*,
    networks::MainNetworks,
};
use crate::{
    config::{
        documents::{join, Object},
        quantity::Quantity,
        Cidr,
    },
    intent::{
        limits::{self, LimitsSet, MigrationConfig, Source},
        network::{lookup, IpamKind, Lookup, Nad},
        VmSize,
    },
    units::rate_and_bytes,
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

/// What the cross-object checks found besides findings.
pub struct Cross {
    /// For `--vm-memory` and for each VMI of known memory.
    pub budgets: Vec<BudgetLine>,
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
    let configs = limits::configs(objects);
    for config in &configs {
        lint_config(config, findings);
    }
    let cluster = limits::cluster(&configs);
    let mut migration_ranges: Vec<Cidr> = Vec::new();
    let mut migration_nad = None;
    // HyperConverged overwrites the KubeVirt CR's network: judge the one in force.
    if let Some(index) = cluster.and_then(|config| check_network(config, nads, findings)) {
        migration_ranges.extend(nads[index].ranges());
        migration_nad = Some(index);
    }
    check_agreement(&configs, findings);
    // Without a named migration network, every NAD range given is a candidate.
    let ranges_named = !migration_ranges.is_empty();
    if !ranges_named {
        migration_ranges.extend(nads.iter().flat_map(|n| n.ranges().iter().copied()));
    }

    let mut budgets = Vec::new();
    if let Some(size) = vm_memory.and_then(bytes_of) {
        let vm = vm_memory.map(ToString::to_string).unwrap_or_default();
        if configs.is_empty() {
            budgets.extend(BudgetLine::new(
                "KubeVirt defaults (no HyperConverged, KubeVirt or MigrationPolicy given)".into(),
                vm.clone(),
                size,
                &LimitsSet::default(),
            ));
        }
        for config in &configs {
            let set = limits::effective(config, cluster);
            if let Some(budget) = BudgetLine::new(config.object.describe(), vm.clone(), size, &set)
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
    Cross {
        budgets,
        migration_nad,
    }
}

/// A quantity in bytes, when it is a non-negative one that fits.
fn bytes_of(quantity: &Quantity) -> Option<u64> {
    quantity.value().and_then(|v| u64::try_from(v).ok())
}

/// The types and values of one object's migration settings, as the API
/// server and KubeVirt would take them.
fn lint_config(config: &MigrationConfig, findings: &mut Findings) {
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
            format!("write the unit: \"{text}Mi\" is {text} MiB/s (0 is unlimited)"),
        );
    }
}

/// The named migration NAD must exist in the install namespace and be able
/// to give each node its own address. Returns its index when found.
fn check_network(config: &MigrationConfig, nads: &[Nad], findings: &mut Findings) -> Option<usize> {
    let object = config.object;
    let at = format!("{}.network", config.path);
    let name = config.network.as_deref().unwrap_or_default();
    let namespace = config
        .install_namespace
        .as_deref()
        .unwrap_or("(the install namespace)");
    let index = match lookup(config, nads) {
        Lookup::Found(index) => index,
        Lookup::NoNetwork => {
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
        }
        Lookup::WrongNamespace(other) => {
            findings.object(
                object,
                MIG_NAD_WRONG_NAMESPACE,
                &at,
                format!(
                    "NetworkAttachmentDefinition {name} is in namespace {}, but KubeVirt looks for it in {namespace}; \
                     virt-handler pods would not start",
                    nads[other].namespace.as_deref().unwrap_or("?")
                ),
                format!("create the NetworkAttachmentDefinition in namespace {namespace}"),
            );
            return None;
        }
        Lookup::Missing if nads.is_empty() => {
            findings.object(
                object,
                MIG_NAD_NOT_GIVEN,
                &at,
                format!("the migration network {namespace}/{name} was not among the inputs, so it was not checked"),
                format!("add it: `oc get net-attach-def {name} -n {namespace} -o yaml > nad.yaml` and pass nad.yaml too"),
            );
            return None;
        }
        Lookup::Missing => {
            findings.object(
                object,
                MIG_NAD_NOT_FOUND,
                &at,
                format!(
                    "no NetworkAttachmentDefinition {namespace}/{name} among the inputs (there are: {}); virt-handler \
                     pods would fail to start",
                    nads.iter().map(Nad::id).collect::<Vec<_>>().join(", ")
                ),
                format!("set `{at}` to the NetworkAttachmentDefinition's name, or create {namespace}/{name}"),
            );
            return None;
        }
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

fn unreachable_budget(config: &MigrationConfig, line: &BudgetLine, findings: &mut Findings) {
    if !line.capped_below_need() {
        return;
    }
    let budget = &line.budget;
    findings.object(
        config.object,
        MIG_BUDGET_UNREACHABLE,
        &join(config.path, "bandwidthPerMigration"),
        format!(
            "bandwidthPerMigration caps a migration at {}, but a {} VM needs at least {} to finish within its {} s \
             budget ({} s/GiB x {} units of 10^9 bytes): it would always be cancelled",
            rate_and_bytes(line.bandwidth_per_migration_bps.unwrap_or(0)),
            line.vm,
            rate_and_bytes(budget.min_rate_bps),
            budget.completion_timeout_s,
            budget.completion_timeout_per_gib,
            budget.size_units
        ),
        format!(
            "raise bandwidthPerMigration above {} (or \"0\" for unlimited), or raise completionTimeoutPerGiB",
            rate_and_bytes(budget.min_rate_bps)
        ),
    );
}

/// The budget of a VMI of known memory, under the limits KubeVirt applied
/// (`status.migrationState.migrationConfiguration`) or the cluster's.
fn vmi_budget(object: &Object, cluster: Option<&MigrationConfig>) -> Option<BudgetLine> {
    let size = VmSize::of_vmi(&object.value).ok().flatten()?;
    let memory = size.source.rsplit(' ').next().unwrap_or_default();
    let applied = object
        .value
        .pointer("/status/migrationState/migrationConfiguration")
        .and_then(Value::as_object);
    let (set, source) = match (applied, cluster) {
        (Some(applied), _) => (
            LimitsSet::read(applied, Source::KubeVirt),
            format!(
                "{} status.migrationState.migrationConfiguration",
                object.describe()
            ),
        ),
        (None, Some(cluster)) => (cluster.set.clone(), cluster.object.describe()),
        (None, None) => (LimitsSet::default(), limits::DEFAULTS_SOURCE.into()),
    };
    BudgetLine::new(
        source,
        format!("{} ({memory})", object.describe()),
        size.bytes,
        &set,
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
