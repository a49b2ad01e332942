//! What the cluster's objects say about migrations: the limits in force and
//! where they come from, the migration network (its NAD, range and VLAN),
//! the size of a VM, and KubeVirt's budget formula.
//!
//! Everything that needs the objects' meaning reads it here: `verify`, the
//! agent and the checks alike. `check` lints the same objects on top of
//! this (field types, unknown fields, what the components would refuse).

pub mod budget;
pub mod kinds;
pub mod limits;
pub mod network;
pub mod size;
pub mod vmi;

pub use self::{
    budget::Budget,
    limits::{Limits, LimitsSet},
    network::Nad,
    size::VmSize,
};
use serde::Serialize;

use crate::config::documents::Object;

/// How a migration ended, by the account of whoever ran it: QEMU in the
/// lab, KubeVirt's VMI or VMIM status on a cluster. The wire alone cannot
/// tell a completed migration from a cancelled one: both close their
/// connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ended {
    Completed,
    Failed,
}

/// The intent of a set of objects.
#[derive(Clone, Debug, Default)]
pub struct Intent {
    /// The limits in force, `None` when no object sets migration limits.
    pub limits: Option<Limits>,
    /// The migration network in force, when it is among the objects.
    pub network: Option<Nad>,
    /// What [`Intent::limits`] assumed for the fields left out.
    pub assumptions: Vec<String>,
}

/// virt-synchronization-controller's port unless a KubeVirt CR moves it
/// (`spec.synchronizationPort`): cross-cluster migration's control plane.
pub const DEFAULT_SYNC_PORT: u16 = 9185;

/// The synchronization port a KubeVirt CR among `objects` sets, else the
/// default.
pub fn sync_port(objects: &[Object]) -> u16 {
    objects
        .iter()
        .filter(|o| o.kind == "KubeVirt")
        .find_map(|o| o.value["spec"]["synchronizationPort"].as_u64())
        .and_then(|port| u16::try_from(port).ok())
        .unwrap_or(DEFAULT_SYNC_PORT)
}

/// How many nodes the inputs hold (`kind: Node`, as `oc get nodes -o yaml`
/// prints them): each runs a virt-handler that needs its own migration
/// address. `None` when none is given.
pub fn node_count(objects: &[Object]) -> Option<usize> {
    let count = objects
        .iter()
        .filter(|o| o.kind == kinds::NODE.name && o.api_version == "v1")
        .count();
    (count > 0).then_some(count)
}

/// Reads the intent of `objects` (NADs, HyperConverged, KubeVirt,
/// MigrationPolicy; other kinds are ignored).
pub fn read(objects: &[Object]) -> Intent {
    let configs = limits::configs(objects);
    let nads: Vec<Nad> = objects
        .iter()
        .filter(|o| o.kind == "NetworkAttachmentDefinition")
        .map(Nad::read)
        .collect();
    let mut assumptions = Vec::new();
    let limits = limits::in_force(&configs)
        .map(|(source, set)| Limits::resolve(source, &set, &mut assumptions));
    let network =
        limits::cluster(&configs).and_then(|config| match network::lookup(config, &nads) {
            network::Lookup::Found(index) => Some(nads[index].clone()),
            _ => None,
        });
    Intent {
        limits,
        network,
        assumptions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::documents::load_path;

    #[test]
    fn the_seeds_objects() {
        let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples/");
        let objects = load_path(format!("{examples}migration-network.yaml").as_ref()).unwrap();
        let intent = read(&objects);
        let limits = intent.limits.unwrap();
        assert_eq!(limits.completion_timeout_per_gib, 800);
        let network = intent.network.unwrap();
        assert_eq!(network.master.as_deref(), Some("eth1"));
        assert_eq!(network.ranges()[0].to_string(), "10.200.5.0/24");
    }
}
