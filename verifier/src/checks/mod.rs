//! `migverify check`: verify the migration network's configuration before
//! any migration runs: the objects an operator wrote (NetworkAttachment-
//! Definitions, HyperConverged, KubeVirt, MigrationPolicy, VMIs) and the
//! node they landed on (`host`).
//!
//! One module per concern: `findings` holds the catalogue of checks,
//! `fields` the typed reads, `objects` what every object gets (its kind,
//! its metadata, placeholders), `settings` each kind's own settings, `cni`
//! and `ipam` the CNI config semantics, `networks` the main networks,
//! `crossobject` what spans objects, `migrations` VMIs and VMIMs, `budget`
//! the budget lines, `host` and `netlink` the node. What the objects mean
//! (kinds, limits, the migration network, budgets) is [`crate::intent`]'s.

pub mod budget;
pub mod cni;
pub mod crossobject;
mod fields;
pub mod findings;
pub mod host;
pub mod hostflags;
pub mod ipam;
pub mod migrations;
pub(crate) mod netlink;
pub mod networks;
pub mod objects;
pub mod render;
pub mod settings;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_real;

use self::{
    budget::BudgetLine,
    findings::{Findings, IPAM_MAIN_NETWORKS_UNKNOWN},
    networks::MainNetworks,
};
use crate::{
    config::{documents::Object, quantity::Quantity, Cidr},
    intent::{kinds, Nad},
    verdict::{Severity, Verdict},
};

/// The kinds `check` reads (a ConfigMap only when it is KubeVirt's legacy
/// `kubevirt-config`; Nodes are counted).
pub const KINDS: &[&str] = &[
    kinds::NAD.name,
    kinds::HYPERCONVERGED.name,
    kinds::KUBEVIRT.name,
    kinds::MIGRATION_POLICY.name,
    kinds::VMI.name,
    kinds::VMIM.name,
    kinds::NETWORK_CONFIG.name,
    kinds::CONFIG_MAP.name,
    kinds::NODE.name,
];

/// What the objects alone do not say.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Main networks given as flags; Network objects add to them.
    pub main: MainNetworks,
    /// `--vm-memory`: the VM size to compute the budget for.
    pub vm_memory: Option<Quantity>,
    /// `--cidr`: the migration network's range, as `verify` takes it.
    pub migration: Vec<Cidr>,
    /// `--nodes`: how many nodes run virt-handler (Node objects count too).
    pub nodes: Option<usize>,
}

/// Everything `check` found in the objects.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Findings,
    pub budgets: Vec<BudgetLine>,
    /// The main networks in force, from flags and objects.
    pub main: MainNetworks,
    /// What the NetworkAttachmentDefinitions set up (the host checks use them).
    pub nads: Vec<Nad>,
    /// Which of `nads` HyperConverged or KubeVirt names as the migration network.
    pub migration_nad: Option<usize>,
}

impl Report {
    /// FAIL with an error-level finding, WARN with warnings, else PASS.
    pub fn verdict(&self) -> Verdict {
        Verdict::of(self.findings.0.iter().map(|f| f.severity))
    }

    /// The migration NAD among the inputs: the one named as the migration
    /// network, else the only one given.
    pub fn given_nad(&self) -> Option<Nad> {
        self.migration_nad
            .map(|i| self.nads[i].clone())
            .or_else(|| (self.nads.len() == 1).then(|| self.nads[0].clone()))
    }

    pub fn count(&self, severity: Severity) -> usize {
        self.findings
            .0
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Runs every object check over `objects`.
pub fn check_objects(objects: &[Object], options: &Options) -> Report {
    let mut findings = Findings::default();
    let mut main = options.main.clone();
    // The kinds migverify reads, near misses under the kind meant.
    let objects = &objects::recognized(objects, &mut findings)[..];
    for object in objects {
        if networks::is_network_config(object) {
            networks::read(object, &mut findings, &mut main);
        } else {
            settings::check(object, &mut findings);
        }
    }
    let nads: Vec<Nad> = objects
        .iter()
        .filter(|o| o.kind == "NetworkAttachmentDefinition")
        .map(|o| {
            cni::check_nad(o, &mut findings, &main);
            Nad::read(o)
        })
        .collect();
    let has_ranges = nads.iter().any(|n| !n.ranges().is_empty());
    if has_ranges && main.is_empty() {
        if let Some(first) = objects
            .iter()
            .find(|o| o.kind == "NetworkAttachmentDefinition")
        {
            findings.object(
                first,
                IPAM_MAIN_NETWORKS_UNKNOWN,
                "spec.config.ipam",
                "the main networks are unknown, so overlaps of the ranges with them were not checked".into(),
                "pass the cluster Network config (`oc get network.config cluster -o yaml`) or --pod-cidr, \
                 --service-cidr, --machine-cidr"
                    .into(),
            );
        }
    }
    let cross = crossobject::check(objects, &nads, &main, options, &mut findings);
    Report {
        findings,
        budgets: cross.budgets,
        main,
        nads,
        migration_nad: cross.migration_nad,
    }
}
