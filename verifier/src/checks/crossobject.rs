//! Checks across objects: the migration network named by HyperConverged or
//! KubeVirt exists where KubeVirt looks for it and can give every node an
//! address; the migration limits agree; the budget a VM of a given size
//! gets; and (through [`super::migrations`]) where a VMI's migration target
//! actually listened.

use serde_json::Value;

use super::{
    budget::BudgetLine,
    findings::*,
    migrations::{self, MigrationNetwork},
    networks::MainNetworks,
    objects::placeholder,
    settings::lint_config,
    Options,
};
use crate::{
    config::{
        documents::{join, Object},
        quantity::Quantity,
    },
    intent::{
        self,
        limits::{self, LimitsSet, MigrationConfig, Source},
        network::{lookup, IpamKind, Lookup, Nad},
        VmSize,
    },
    units::rate_and_bytes,
};

/// What the cross-object checks found besides findings.
pub struct Cross {
    /// For `--vm-memory` and for each VMI of known memory.
    pub budgets: Vec<BudgetLine>,
    /// The index in `nads` of the migration network in force.
    pub migration_nad: Option<usize>,
}

/// Every cross-object check. `main` is the main networks in force (the
/// options' and the Network configs').
pub fn check(
    objects: &[Object],
    nads: &[Nad],
    main: &MainNetworks,
    options: &Options,
    findings: &mut Findings,
) -> Cross {
    let vm_memory = options.vm_memory.as_ref();
    let configs = limits::configs(objects);
    for config in &configs {
        lint_config(config, findings);
    }
    let cluster = limits::cluster(&configs);
    let nodes = options.nodes.or_else(|| intent::node_count(objects));
    let mut network = MigrationNetwork {
        ranges: options.migration.clone(),
        named: cluster.is_some_and(|c| c.network.is_some()),
        ..MigrationNetwork::default()
    };
    let mut migration_nad = None;
    // HyperConverged overwrites the KubeVirt CR's network: judge the one in force.
    if let Some(index) = cluster.and_then(|config| check_network(config, nads, nodes, findings)) {
        network.ranges.extend(nads[index].ranges());
        migration_nad = Some(index);
    }
    check_agreement(&configs, findings);
    // Without a configured migration range, every NAD range given is a candidate.
    network.configured = !network.ranges.is_empty();
    if !network.configured {
        network
            .ranges
            .extend(nads.iter().flat_map(|n| n.ranges().iter().copied()));
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
                migrations::check(object, &network, main, findings);
                if let Some(budget) = vmi_budget(object, cluster) {
                    budgets.push(budget);
                }
            }
            "VirtualMachineInstanceMigration" => {
                migrations::check(object, &network, main, findings)
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

/// The named migration NAD must exist in the install namespace and be able
/// to give each of `nodes` its own address. Returns its index when found.
fn check_network(
    config: &MigrationConfig,
    nads: &[Nad],
    nodes: Option<usize>,
    findings: &mut Findings,
) -> Option<usize> {
    let object = config.object;
    let at = format!("{}.network", config.path);
    let name = config.network.as_deref().unwrap_or_default();
    if placeholder(name).is_some() {
        // Raised as the placeholder it is; no NAD can have that name.
        return None;
    }
    let namespace = config
        .install_namespace
        .as_deref()
        .unwrap_or("(the install namespace)");
    // `namespace/name`, or the name alone when the manifest has no namespace.
    let (id, get) = match config.install_namespace.as_deref() {
        Some(ns) => (
            format!("{ns}/{name}"),
            format!("oc get net-attach-def {name} -n {ns} -o yaml"),
        ),
        None => (
            format!("{name} (in the install namespace; the manifest names none)"),
            format!("oc get net-attach-def -A --field-selector metadata.name={name} -o yaml"),
        ),
    };
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
                format!(
                    "the migration network {id} was not among the inputs, so it was not checked"
                ),
                format!("add it: `{get} > nad.yaml` and pass nad.yaml too"),
            );
            return None;
        }
        Lookup::Missing => {
            findings.object(
                object,
                MIG_NAD_NOT_FOUND,
                &at,
                format!(
                    "no NetworkAttachmentDefinition {id} among the inputs (there are: {}); virt-handler pods would \
                     fail to start",
                    nads.iter().map(Nad::id).collect::<Vec<_>>().join(", ")
                ),
                format!("set `{at}` to the NetworkAttachmentDefinition's name, or create {name} there"),
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
            format!("the migration network {id} {problem}"),
            format!(
                "give {name} whereabouts IPAM with one cluster-wide range: `\"ipam\": {{\"type\": \"whereabouts\", \"range\": \"10.200.5.0/24\"}}`"
            ),
        );
    }
    suitability(config, &nads[index], nodes, findings);
    Some(index)
}

/// What else makes a NAD a poor migration network: DHCP, host-device, and
/// fewer addresses (or node slices) than nodes.
fn suitability(config: &MigrationConfig, nad: &Nad, nodes: Option<usize>, findings: &mut Findings) {
    let (object, at) = (config.object, format!("{}.network", config.path));
    let id = nad.id();
    let ipam = nad.ipam.as_ref();
    if ipam.is_some_and(|i| i.kind == IpamKind::Dhcp) {
        findings.object(
            object,
            MIG_NAD_DHCP,
            &at,
            format!(
                "the migration network {id} uses DHCP IPAM: migration0 gets an address only while the CNI dhcp \
                 daemon runs on every node and a DHCP server answers on the migration segment (with a lease for \
                 each node), and there is no range to check target addresses against"
            ),
            "run the dhcp daemon on every node (`/opt/cni/bin/dhcp daemon`, socket /run/cni/dhcp.sock) and a DHCP \
             server on the migration VLAN, or use whereabouts with a cluster-wide range"
                .into(),
        );
    }
    if nad.plugin.as_deref() == Some("host-device") {
        let device = nad.master.as_deref().unwrap_or("the device");
        findings.object(
            object,
            MIG_NAD_HOST_DEVICE,
            &at,
            format!(
                "the migration network {id} uses host-device: the plugin moves {device} out of the node into the \
                 virt-handler pod's namespace, so the node itself no longer has that NIC while virt-handler runs"
            ),
            format!("use macvlan (`\"master\": \"{device}\"`) or a bridge on {device}, which share the NIC"),
        );
    }
    let (Some(nodes), Some(ipam)) = (nodes, ipam) else {
        return;
    };
    let nodes_u = nodes as u128;
    let shortfall = match (ipam.node_slices, ipam.capacity) {
        (Some((size, slices)), _) if slices < nodes_u => Some(format!(
            "its whereabouts range holds {slices} node slices of /{size}, one per node"
        )),
        (None, Some(capacity)) if capacity < nodes_u => {
            Some(format!("its range hands out {capacity} addresses"))
        }
        _ => None,
    };
    if let Some(shortfall) = shortfall {
        findings.object(
            object,
            MIG_NAD_TOO_SMALL,
            &at,
            format!(
                "the migration network {id} is too small: {shortfall}, but {nodes} nodes each run a virt-handler that \
                 needs its own: the rest get no migration0 address and do not start"
            ),
            "widen the range (or the node slices' range), or exclude fewer addresses".into(),
        );
    }
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
