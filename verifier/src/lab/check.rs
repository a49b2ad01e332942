//! `check --lab`: the lab that is up, as the host checks see a cluster's
//! nodes: each virt-handler's namespace, the interfaces on the path between
//! the nodes, the peers to probe, the NAD the lab stands for, and the VLAN
//! each access port applies as the node shows it.

use std::{net::IpAddr, time::Duration};

use super::{switch, topology, wan, Cni, LabConfig, LabError};
use crate::{
    checks::host::{HostPlan, NodePlan},
    dataplane::{AttachSpec, Netns, Role},
    intent::network::{Ipam, IpamKind, Nad},
};

/// The host plan for the lab that is up, and the NAD the lab stands for
/// (macvlan on eth1, or a bridge with node A's access VLAN; whereabouts
/// over the lab's migration ranges). The VLAN each access port applies is
/// read from the node: the VID in the data of the access-port program
/// attached to the port (this kernel has no bridge VLAN filtering, so there
/// is no `bridge vlan show` to read); a port without one applies none.
pub fn host_plan(config: &LabConfig, timeout: Duration) -> Result<(HostPlan, Nad), LabError> {
    let mut vids = Vec::new();
    if config.cni == Cni::Bridge && config.migration0 {
        for node in topology::NODES {
            vids.push(switch::applied_vid(&Netns::parse(node.netns), ACCESS_PORT)?.unwrap_or(0));
        }
    }
    Ok(plan_with(config, timeout, &vids))
}

/// The port the bridge CNI's access VLAN is applied on.
const ACCESS_PORT: &str = "vh-mig";

/// [`host_plan`] with the VLAN each node's access port applies (node A's,
/// node B's; none without the bridge CNI).
fn plan_with(config: &LabConfig, timeout: Duration, vids: &[u16]) -> (HostPlan, Nad) {
    let spec = |role, iface: &str, ns: &str| AttachSpec {
        role,
        iface: iface.to_string(),
        netns: Some(Netns::parse(ns)),
    };
    let address = |node: &topology::Node| -> IpAddr {
        if config.ipv6 {
            node.migration_v6.into()
        } else {
            config
                .migration_v4(node.name == topology::NODE_B.name)
                .into()
        }
    };
    let nodes = [
        (topology::NODE_A, topology::NODE_B, vids.first()),
        (topology::NODE_B, topology::NODE_A, vids.get(1)),
    ]
    .iter()
    .map(|(node, peer, vid)| {
        let mut path = vec![spec(Role::Migration, "eth1", node.netns)];
        let mut port_vlans = None;
        if config.cni == Cni::Bridge {
            path.push(spec(Role::Bridge, "br-mig", node.netns));
            path.push(spec(Role::Migration, ACCESS_PORT, node.netns));
            port_vlans = vid.map(|vid| vec![(format!("{ACCESS_PORT}@{}", node.netns), *vid)]);
        }
        if config.has_router() && node.name == topology::NODE_A.name {
            // Across the router namespace: the delay line's ports.
            for port in ["wan-a", "tap-a", "tap-b", "wan-f"] {
                path.push(spec(Role::Migration, port, wan::WAN));
            }
        }
        path.push(spec(
            Role::Migration,
            node.fabric_migration_port,
            topology::FABRIC,
        ));
        NodePlan {
            name: node.name.to_string(),
            netns: Some(Netns::parse(node.virt_handler)),
            migration_iface: "migration0".into(),
            path,
            peers: vec![address(peer)],
            port_vlans,
        }
    })
    .collect();
    // Cross-cluster, each cluster's NAD has its own range; the lab's NAD
    // stands for both.
    let nad = Nad {
        name: Some("lab-migration".into()),
        namespace: Some(topology::PREFIX.trim_end_matches('-').into()),
        plugin: Some(
            if config.cni == Cni::Bridge {
                "bridge"
            } else {
                "macvlan"
            }
            .into(),
        ),
        ipam: Some(Ipam {
            kind: IpamKind::Whereabouts,
            ranges: config.migration_cidrs(),
            capacity: None,
            node_slices: None,
        }),
        vlan: (config.cni == Cni::Bridge).then_some(config.vid_a),
        mtu: config.jumbo_mtu,
        master: (config.cni == Cni::Macvlan).then(|| "eth1".into()),
        bridge: (config.cni == Cni::Bridge).then(|| "br-mig".into()),
        plugin_path: "spec.config".into(),
    };
    (
        HostPlan {
            nodes,
            nad: Some(nad.clone()),
            sync_peers: config.sync_controllers(),
            timeout,
        },
        nad,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lab::Scenario;

    #[test]
    fn the_lab_plan_follows_the_scenario() {
        let (plan, nad) = plan_with(
            &Scenario::VlanMismatch.config(),
            Duration::from_secs(1),
            &[100, 200],
        );
        assert_eq!(nad.vlan, Some(100));
        assert_eq!(
            plan.nodes[1].port_vlans,
            Some(vec![("vh-mig@mvlab-node-b".to_string(), 200)])
        );
        assert_eq!(
            plan.nodes[0].peers,
            ["10.200.5.12".parse::<IpAddr>().unwrap()]
        );
        let paths: Vec<String> = plan.nodes[0].path.iter().map(ToString::to_string).collect();
        assert_eq!(
            paths,
            [
                "migration:eth1@mvlab-node-a",
                "bridge:br-mig@mvlab-node-a",
                "migration:vh-mig@mvlab-node-a",
                "migration:mig-a@mvlab-fabric"
            ]
        );
        let (plan, nad) = plan_with(&Scenario::Secondary.config(), Duration::from_secs(1), &[]);
        assert_eq!((nad.vlan, nad.master.as_deref()), (None, Some("eth1")));
        assert!(plan
            .nodes
            .iter()
            .all(|n| n.port_vlans.is_none() && n.path.len() == 2));
        let (_, nad) = plan_with(&Scenario::MtuMismatch.config(), Duration::from_secs(1), &[]);
        assert_eq!(nad.mtu, Some(9000));
        let (plan, nad) = plan_with(
            &Scenario::CrossCluster.config(),
            Duration::from_secs(1),
            &[],
        );
        assert_eq!(
            plan.nodes[0].peers,
            ["10.201.5.12".parse::<IpAddr>().unwrap()]
        );
        let ranges: Vec<String> = nad
            .ipam
            .unwrap()
            .ranges
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(ranges, ["10.200.5.0/24", "10.201.5.0/24"]);
        assert_eq!(plan.sync_peers.len(), 2);
        let paths: Vec<String> = plan.nodes[0].path.iter().map(ToString::to_string).collect();
        assert!(
            paths.contains(&"migration:tap-a@mvlab-wan".to_string()),
            "{paths:?}"
        );
    }
}
