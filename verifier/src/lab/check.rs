//! The host checks' plan for the lab that is up: `check --lab` checks its
//! two nodes as `check --host` checks a real one.

use std::{net::IpAddr, time::Duration};

use super::{topology, Cni, LabConfig};
use crate::{
    checks::host::{HostPlan, NodePlan},
    config::Cidr,
    dataplane::{AttachSpec, Netns, Role},
    intent::network::{Ipam, IpamKind, Nad},
};

/// The host plan for the lab that is up, and the NAD the lab stands for
/// (macvlan on eth1, or a bridge with node A's access VLAN; whereabouts
/// over the lab's migration range). The VLAN each port applies is what the
/// lab recorded when it loaded its access-port program: this kernel has no
/// bridge VLAN filtering, so there is no `bridge vlan show` to read.
pub fn host_plan(config: &LabConfig, timeout: Duration) -> (HostPlan, Nad) {
    let spec = |role, iface: &str, ns: &str| AttachSpec {
        role,
        iface: iface.to_string(),
        netns: Some(Netns::parse(ns)),
    };
    let address = |node: &topology::Node| -> IpAddr {
        if config.ipv6 {
            node.migration_v6.into()
        } else {
            node.migration_v4.into()
        }
    };
    let nodes = [
        (topology::NODE_A, topology::NODE_B, config.vid_a),
        (topology::NODE_B, topology::NODE_A, config.vid_b),
    ]
    .iter()
    .map(|(node, peer, vid)| {
        let mut path = vec![spec(Role::Migration, "eth1", node.netns)];
        let mut port_vlans = None;
        if config.cni == Cni::Bridge {
            path.push(spec(Role::Bridge, "br-mig", node.netns));
            path.push(spec(Role::Migration, "vh-mig", node.netns));
            port_vlans = Some(vec![(format!("vh-mig@{}", node.netns), *vid)]);
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
    let range: Cidr = config
        .migration_cidr()
        .parse()
        .expect("the lab's CIDR parses");
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
            ranges: vec![range],
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
            sync_peers: Vec::new(),
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
        let (plan, nad) = host_plan(&Scenario::VlanMismatch.config(), Duration::from_secs(1));
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
        let (plan, nad) = host_plan(&Scenario::Secondary.config(), Duration::from_secs(1));
        assert_eq!((nad.vlan, nad.master.as_deref()), (None, Some("eth1")));
        assert!(plan
            .nodes
            .iter()
            .all(|n| n.port_vlans.is_none() && n.path.len() == 2));
        let (_, nad) = host_plan(&Scenario::MtuMismatch.config(), Duration::from_secs(1));
        assert_eq!(nad.mtu, Some(9000));
    }
}
