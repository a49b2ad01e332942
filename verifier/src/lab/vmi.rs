//! The VMI documents the lab publishes, in the shape of `oc get vmi NAME -o
//! json`, so the same code reads the lab and a cluster: where the target
//! listens and what each port carries (`targetDirectMigrationNodePorts`:
//! 0 the libvirt control channel, 49152 memory, 49153 the disk's NBD), the
//! memory and, for a block migration, the disk KubeVirt budgets by; in a
//! drain, a List of every VM in the state it is in.

use std::net::SocketAddr;

use serde_json::{json, Value};

use super::{
    config::LabConfig,
    topology::{NODE_A, NODE_B},
};

/// The namespace of the lab's VMIs.
pub const NAMESPACE: &str = "default";

/// The ports one target published, by what they carry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ports {
    pub control: Option<u16>,
    pub memory: u16,
    pub storage: Option<u16>,
}

/// Where a VM stands in a drain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Waiting for a free slot under the parallel limits: KubeVirt has
    /// marked it for evacuation, no target listens yet.
    Queued,
    /// The target listens on these ports.
    Migrating(SocketAddr, Ports),
}

/// One VM's document; `name` is its VMI name (`mvlab-vm`, `mvlab-vm2`).
pub fn document(config: &LabConfig, name: &str, state: State) -> Value {
    let mut spec =
        json!({ "domain": { "memory": { "guest": format!("{}Mi", config.memory_mib) } } });
    if let Some(mib) = config.disk_mib {
        spec["domain"]["devices"] =
            json!({ "disks": [{ "name": "scratch", "disk": { "bus": "virtio" } }] });
        spec["volumes"] =
            json!([{ "name": "scratch", "emptyDisk": { "capacity": format!("{mib}Mi") } }]);
    }
    let mut status = json!({ "nodeName": NODE_A.name, "phase": "Running" });
    if config.disk_mib.is_some() {
        // A local disk moves with the VM: KubeVirt's block migration.
        status["migrationMethod"] = json!("BlockMigration");
    }
    match state {
        State::Queued => status["evacuationNodeName"] = json!(NODE_A.name),
        State::Migrating(target, ports) => {
            let mut published = serde_json::Map::new();
            if let Some(port) = ports.control {
                published.insert(port.to_string(), json!(0));
            }
            // 49152 labels the memory stream (main + multifd channels).
            published.insert(ports.memory.to_string(), json!(49152));
            if let Some(port) = ports.storage {
                published.insert(port.to_string(), json!(49153));
            }
            let migration = json!({
                "sourceNode": NODE_A.name,
                "targetNode": NODE_B.name,
                "targetNodeAddress": target.ip().to_string(),
                "targetDirectMigrationNodePorts": published,
            });
            status["migrationState"] = migration;
        }
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": { "name": name, "namespace": NAMESPACE },
        "spec": spec,
        "status": status,
    })
}

/// Marks a VM's migration over: completed (the VM runs on node B now) or
/// failed. A VM whose migration never started stays as it was.
pub fn finished(document: &mut Value, completed: bool) {
    let status = &mut document["status"];
    if !status["migrationState"].is_object() {
        return;
    }
    status["migrationState"][if completed { "completed" } else { "failed" }] = json!(true);
    if completed {
        status["nodeName"] = json!(NODE_B.name);
        if let Some(status) = status.as_object_mut() {
            status.remove("evacuationNodeName");
        }
    }
}

/// Several VMIs as `oc get vmi -o json` lists them.
pub fn list(items: Vec<Value>) -> Value {
    json!({ "apiVersion": "v1", "kind": "List", "items": items })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::endpoints::endpoints_from_vmi, intent::VmSize, lab::Scenario};

    #[test]
    fn every_published_port_is_read_back_with_its_channel_and_the_disk_counts() {
        let config = LabConfig {
            disk_mib: Some(64),
            ..Scenario::Drain.config()
        };
        let target: SocketAddr = "10.200.5.12:40001".parse().unwrap();
        let ports = Ports {
            control: Some(40011),
            memory: 40001,
            storage: Some(40021),
        };
        let vmi = document(&config, "mvlab-vm2", State::Migrating(target, ports));
        let mut endpoints = endpoints_from_vmi(&vmi, "vmi.json".as_ref()).unwrap();
        endpoints.sort_by_key(|e| e.addr.port());
        let read: Vec<(u16, &str, &str)> = endpoints
            .iter()
            .map(|e| {
                (
                    e.addr.port(),
                    e.channel.name(),
                    e.migration.as_deref().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            read,
            [
                (40001, "memory", "default/mvlab-vm2"),
                (40011, "control", "default/mvlab-vm2"),
                (40021, "disk", "default/mvlab-vm2"),
            ]
        );
        let size = VmSize::of_vmi(&vmi).unwrap().unwrap();
        assert_eq!(size.bytes, (256 + 64) << 20);
        // Queued: marked for evacuation, nothing published.
        let queued = document(&config, "mvlab-vm3", State::Queued);
        assert_eq!(queued["status"]["evacuationNodeName"], "node-a");
        assert!(queued["status"]["migrationState"].is_null());
    }
}
