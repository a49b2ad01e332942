//! The emulated two-node cluster network, built from network namespaces.
//!
//! ```text
//!  mvlab-vh-a                 mvlab-node-a         mvlab-fabric          mvlab-node-b               mvlab-vh-b
//!  eth0 ──veth── vh-eth0 ─ br-pod ─ eth0 ──veth── pod-a ─ br-pod ─ pod-b ──veth── eth0 ─ br-pod ─ vh-eth0 ──veth── eth0
//!  migration0 ── (macvlan on eth1 | vh-mig ─ br-mig) ─ eth1 ── mig-a ─ br-mig ─ mig-b ── eth1 ─ ... ── migration0
//! ```
//!
//! Nodes and the fabric are pure L2 (no addresses, no IPv6); only the
//! virt-handler namespaces have addresses. Nothing routes or NATs to the
//! host's network: no namespace has a default route or a link outside.

use std::net::IpAddr;

use super::{
    cmd::{add_bridge, exec, ip, run},
    config::{addr, Cni, LabConfig},
    switch, wan, LabError,
};
use crate::dataplane::{AttachSpec, Netns, Role};

/// Every namespace, link-holding process and file of the lab carries this.
pub const PREFIX: &str = "mvlab-";
pub const FABRIC: &str = "mvlab-fabric";

/// One emulated node and its virt-handler pod.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    pub name: &'static str,
    pub netns: &'static str,
    pub virt_handler: &'static str,
    /// This node's ports in the fabric.
    pub fabric_pod_port: &'static str,
    pub fabric_migration_port: &'static str,
    pub pod_ip: std::net::Ipv4Addr,
    pub migration_v4: std::net::Ipv4Addr,
    pub migration_v6: std::net::Ipv6Addr,
}

pub const NODE_A: Node = Node {
    name: "node-a",
    netns: "mvlab-node-a",
    virt_handler: "mvlab-vh-a",
    fabric_pod_port: "pod-a",
    fabric_migration_port: "mig-a",
    pod_ip: addr::POD_A,
    migration_v4: addr::MIGRATION_V4_A,
    migration_v6: addr::MIGRATION_V6_A,
};

pub const NODE_B: Node = Node {
    name: "node-b",
    netns: "mvlab-node-b",
    virt_handler: "mvlab-vh-b",
    fabric_pod_port: "pod-b",
    fabric_migration_port: "mig-b",
    pod_ip: addr::POD_B,
    migration_v4: addr::MIGRATION_V4_B,
    migration_v6: addr::MIGRATION_V6_B,
};

pub const NODES: [Node; 2] = [NODE_A, NODE_B];

/// The standard MTU the fabric keeps, whatever the endpoints use.
const FABRIC_MTU: u32 = 1500;

/// Builds the topology `config` describes. The caller has cleaned up first.
pub fn build(config: &LabConfig, progress: &dyn Fn(&str)) -> Result<(), LabError> {
    progress("creating namespaces");
    let all_ns = [
        FABRIC,
        NODE_A.netns,
        NODE_B.netns,
        NODE_A.virt_handler,
        NODE_B.virt_handler,
    ];
    for ns in all_ns {
        run(&["ip", "netns", "add", ns])?;
        ip(ns, &["link", "set", "lo", "up"])?;
    }
    // L2-only namespaces stay quiet: no IPv6 link-local chatter.
    let quiet: &[&str] = if config.ipv6 {
        &[FABRIC, NODE_A.netns, NODE_B.netns]
    } else {
        &all_ns
    };
    for ns in quiet {
        exec(ns, &["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"])?;
        exec(
            ns,
            &["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"],
        )?;
    }

    progress("building the fabric switches");
    for bridge in ["br-pod", "br-mig"] {
        add_bridge(FABRIC, bridge)?;
        ip(FABRIC, &["link", "set", bridge, "up"])?;
    }

    if config.has_router() {
        wan::create()?;
    }
    for (node, vid) in [(NODE_A, config.vid_a), (NODE_B, config.vid_b)] {
        progress(&format!("wiring {}", node.name));
        build_node(config, node, vid)?;
    }
    if config.has_router() {
        progress(&format!(
            "starting the delay line in {} ({} ms round trip{})",
            wan::WAN,
            config.rtt_ms.unwrap_or(0),
            if config.cross_cluster {
                ", routing between the clusters"
            } else {
                ""
            }
        ));
        wan::build(config, FABRIC, NODE_A.fabric_migration_port)?;
        ip(
            FABRIC,
            &[
                "link",
                "set",
                NODE_A.fabric_migration_port,
                "master",
                "br-mig",
                "up",
            ],
        )?;
    }

    if let Some(rate) = config.rate_bps {
        // Bucket of 10 ms at the rate, never less than a 64 KiB GSO packet.
        let burst = (rate / 8 / 100).max(128 * 1024).to_string();
        let rate = rate.to_string();
        ip_tc(
            NODE_A.netns,
            &[
                "qdisc",
                "add",
                "dev",
                "eth1",
                "root",
                "tbf",
                "rate",
                &format!("{rate}bit"),
                "burst",
                &burst,
                "latency",
                "100ms",
            ],
        )?;
    }
    if !config.offloads {
        progress("turning segmentation offloads off");
        for (ns, iface) in veth_ends(config) {
            exec(
                ns,
                &[
                    "ethtool", "-K", iface, "tso", "off", "gso", "off", "gro", "off",
                ],
            )?;
        }
    }
    Ok(())
}

fn ip_tc(netns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["tc", "-n", netns];
    all.extend_from_slice(args);
    run(&all)
}

fn build_node(config: &LabConfig, node: Node, vid: u16) -> Result<(), LabError> {
    let ns = node.netns;
    let vh = node.virt_handler;
    // The node's two NICs, cabled to the fabric; node A's migration NIC to
    // the router namespace when there is one (the WAN side of the lab).
    let behind_router = node.name == NODE_A.name && config.has_router();
    let (mig_ns, mig_port) = if behind_router {
        (wan::WAN, "wan-a")
    } else {
        (FABRIC, node.fabric_migration_port)
    };
    for (port_ns, port, nic, bridge) in [
        (FABRIC, node.fabric_pod_port, "eth0", Some("br-pod")),
        (
            mig_ns,
            mig_port,
            "eth1",
            (!behind_router).then_some("br-mig"),
        ),
    ] {
        ip(
            port_ns,
            &[
                "link", "add", port, "type", "veth", "peer", "name", nic, "netns", ns,
            ],
        )?;
        if let Some(bridge) = bridge {
            ip(port_ns, &["link", "set", port, "master", bridge, "up"])?;
        }
    }
    let jumbo = config.jumbo_mtu.map(|mtu| mtu.to_string());
    if let Some(mtu) = &jumbo {
        // The NIC takes jumbo frames; its fabric port does not.
        ip(ns, &["link", "set", "eth1", "mtu", mtu])?;
        ip(
            mig_ns,
            &["link", "set", mig_port, "mtu", &FABRIC_MTU.to_string()],
        )?;
    }
    ip(ns, &["link", "set", "eth0", "up"])?;
    ip(ns, &["link", "set", "eth1", "up"])?;

    // Pod network: the virt-handler's eth0 bridged onto the node's eth0.
    add_bridge(ns, "br-pod")?;
    ip(ns, &["link", "set", "eth0", "master", "br-pod"])?;
    ip(
        ns,
        &[
            "link", "add", "vh-eth0", "type", "veth", "peer", "name", "eth0", "netns", vh,
        ],
    )?;
    ip(ns, &["link", "set", "vh-eth0", "master", "br-pod", "up"])?;
    ip(ns, &["link", "set", "br-pod", "up"])?;
    ip(
        vh,
        &[
            "addr",
            "add",
            &format!("{}/{}", node.pod_ip, addr::POD_PREFIX),
            "dev",
            "eth0",
        ],
    )?;
    ip(vh, &["link", "set", "eth0", "up"])?;

    if !config.migration0 {
        return Ok(());
    }
    match config.cni {
        Cni::Macvlan => {
            ip(
                ns,
                &[
                    "link",
                    "add",
                    "migration0",
                    "link",
                    "eth1",
                    "type",
                    "macvlan",
                    "mode",
                    "bridge",
                ],
            )?;
            ip(ns, &["link", "set", "migration0", "netns", vh])?;
        }
        Cni::Bridge => {
            add_bridge(ns, "br-mig")?;
            ip(ns, &["link", "set", "eth1", "master", "br-mig"])?;
            ip(
                ns,
                &[
                    "link",
                    "add",
                    "vh-mig",
                    "type",
                    "veth",
                    "peer",
                    "name",
                    "migration0",
                    "netns",
                    vh,
                ],
            )?;
            if let Some(mtu) = &jumbo {
                ip(ns, &["link", "set", "vh-mig", "mtu", mtu])?;
                ip(ns, &["link", "set", "br-mig", "mtu", mtu])?;
            }
            ip(ns, &["link", "set", "vh-mig", "master", "br-mig", "up"])?;
            ip(ns, &["link", "set", "br-mig", "up"])?;
            switch::attach_access_port(&Netns::parse(ns), "vh-mig", vid)?;
        }
    }
    if let Some(mtu) = &jumbo {
        ip(vh, &["link", "set", "migration0", "mtu", mtu])?;
    }
    let node_b = node.name == NODE_B.name;
    let address = if config.ipv6 {
        format!("{}/{}", node.migration_v6, addr::MIGRATION_V6_PREFIX)
    } else {
        format!(
            "{}/{}",
            config.migration_v4(node_b),
            addr::MIGRATION_V4_PREFIX
        )
    };
    // nodad: a tentative address cannot be bound, and QEMU binds at once.
    let mut add = vec!["addr", "add", address.as_str(), "dev", "migration0"];
    if config.ipv6 {
        add.push("nodad");
    }
    ip(vh, &add)?;
    ip(vh, &["link", "set", "migration0", "up"])?;
    if config.cross_cluster {
        // The other cluster's migration network, through the router.
        let (other, gateway) = if node_b {
            ("10.200.5.0/24", addr::ROUTER_V4_B)
        } else {
            ("10.201.5.0/24", addr::ROUTER_V4_A)
        };
        ip(
            vh,
            &[
                "route",
                "add",
                other,
                "via",
                &gateway.to_string(),
                "dev",
                "migration0",
            ],
        )?;
    }
    Ok(())
}

/// Every veth end of the lab, as (namespace, interface).
fn veth_ends(config: &LabConfig) -> Vec<(&'static str, &'static str)> {
    let mut ends = Vec::new();
    for node in NODES {
        ends.extend([
            (FABRIC, node.fabric_pod_port),
            (FABRIC, node.fabric_migration_port),
            (node.netns, "eth0"),
            (node.netns, "eth1"),
            (node.netns, "vh-eth0"),
            (node.virt_handler, "eth0"),
        ]);
        if config.migration0 && config.cni == Cni::Bridge {
            ends.extend([(node.netns, "vh-mig"), (node.virt_handler, "migration0")]);
        }
    }
    if config.has_router() {
        ends.extend(wan::veth_ends());
    }
    ends
}

/// Where migverify observes the lab: every interface migration traffic
/// could cross, with the role a cluster operator would give it.
pub fn observation_points(config: &LabConfig) -> Vec<AttachSpec> {
    let spec = |role, iface: &str, ns: &str| AttachSpec {
        role,
        iface: iface.to_string(),
        netns: Some(Netns::parse(ns)),
    };
    let mut points = Vec::new();
    for node in NODES {
        if config.migration0 {
            points.push(spec(Role::Migration, "migration0", node.virt_handler));
        }
        points.push(spec(Role::Primary, "eth0", node.virt_handler));
        points.push(spec(Role::Migration, "eth1", node.netns));
        points.push(spec(Role::Primary, "eth0", node.netns));
        if config.migration0 && config.cni == Cni::Bridge {
            points.push(spec(Role::Bridge, "br-mig", node.netns));
            points.push(spec(Role::Migration, "vh-mig", node.netns));
        }
    }
    points
}

/// Which node each namespace is on, and which are virt-handler's.
pub fn places() -> Vec<crate::report::Place> {
    NODES
        .iter()
        .flat_map(|node| {
            [(node.virt_handler, true), (node.netns, false)].map(|(netns, pod)| {
                crate::report::Place {
                    netns: Some(netns.to_string()),
                    node: node.name.to_string(),
                    pod,
                }
            })
        })
        .collect()
}

/// The lab's namespaces present on this host.
pub fn namespaces() -> Result<Vec<String>, LabError> {
    let list = run(&["ip", "netns", "list"])?;
    Ok(list
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .filter(|name| name.starts_with(PREFIX))
        .map(str::to_string)
        .collect())
}

/// Deletes every lab namespace, which destroys every link, qdisc and
/// program attachment inside it.
pub fn destroy() -> Result<Vec<String>, LabError> {
    let namespaces = namespaces()?;
    for ns in &namespaces {
        run(&["ip", "netns", "del", ns])?;
    }
    Ok(namespaces)
}

/// The target's address as the virt-handler namespace actually has it.
pub fn has_address(netns: &str, address: IpAddr) -> Result<bool, LabError> {
    let out = ip(netns, &["-br", "addr", "show"])?;
    Ok(out
        .split_whitespace()
        .any(|word| word.split('/').next() == Some(&address.to_string())))
}
