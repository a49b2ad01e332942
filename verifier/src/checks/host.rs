//! Host checks: the node (or the lab) as the migration network needs it,
//! before any migration runs. Read over netlink from inside virt-handler's
//! network namespace and the namespaces of the interfaces on the path, and
//! probed with a few bounded packets to the peers' migration addresses:
//!
//! - `migration0` exists (else virt-handler silently advertises its pod IP),
//!   is up with carrier, and has an address in the NAD's range that overlaps
//!   no other interface;
//! - no interface on the path (NIC, bridge, ports, fabric) has a smaller MTU
//!   than `migration0`; the bridge filters VLANs and the uplink carries the
//!   NAD's VLAN; each port applies the VLAN the NAD asks for;
//! - the route to each peer leaves through `migration0`, the peer answers
//!   (a TCP reset is an answer), and a full-MTU datagram with DF set gets
//!   through as a small one does (an ICMP port-unreachable proves arrival);
//! - for cross-cluster migration, the synchronization controller port answers.

use std::{
    io,
    net::{IpAddr, SocketAddr, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    time::Duration,
};

use super::{
    findings::*,
    netlink::{self, Address, Link, RT_SCOPE_UNIVERSE},
};
use crate::{
    config::Cidr,
    dataplane::{netns::run_in, AttachSpec, Netns, Role},
    intent::network::Nad,
};

/// A port to probe that nothing listens on: the answer is a TCP reset or an
/// ICMP port-unreachable, either of which proves the packet arrived.
pub const PROBE_PORT: u16 = 9;

/// A peer cluster's synchronization controller, `ADDR[:PORT]` (`[ADDR]:PORT`
/// for IPv6); without a port, the cluster's synchronization port.
#[derive(Clone, Copy, Debug)]
pub struct SyncPeer {
    ip: IpAddr,
    port: Option<u16>,
}

impl std::str::FromStr for SyncPeer {
    type Err = String;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        if let Ok(addr) = spec.parse::<SocketAddr>() {
            return Ok(SyncPeer {
                ip: addr.ip(),
                port: Some(addr.port()),
            });
        }
        spec.trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .map(|ip| SyncPeer { ip, port: None })
            .map_err(|_| format!("{spec}: expected ADDR or ADDR:PORT ([ADDR]:PORT for IPv6)"))
    }
}

impl SyncPeer {
    pub fn addr(self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.ip, self.port.unwrap_or(default_port))
    }
}

/// One node to check: virt-handler's namespace and the migration path.
#[derive(Clone, Debug)]
pub struct NodePlan {
    pub name: String,
    /// virt-handler's network namespace (`None`: this one).
    pub netns: Option<Netns>,
    pub migration_iface: String,
    /// Interfaces along the migration path, in their namespaces.
    pub path: Vec<AttachSpec>,
    /// The other nodes' migration addresses.
    pub peers: Vec<IpAddr>,
    /// The VLAN each migration port applies, when the ports tag frames
    /// themselves rather than through bridge VLAN filtering (the lab's
    /// access-port programs, as the lab recorded them). `Some` skips the
    /// `vlan_filtering` and `bridge vlan` membership checks.
    pub port_vlans: Option<Vec<(String, u16)>>,
}

#[derive(Clone, Debug)]
pub struct HostPlan {
    pub nodes: Vec<NodePlan>,
    /// The migration NetworkAttachmentDefinition, if known.
    pub nad: Option<Nad>,
    /// Cross-cluster: synchronization controllers to reach.
    pub sync_peers: Vec<SocketAddr>,
    pub timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error("cannot enter network namespace {netns}: {source}")]
    Netns {
        netns: Netns,
        #[source]
        source: io::Error,
    },
    #[error("reading {what} over netlink{}: {source}", in_netns(.netns.as_ref()))]
    Netlink {
        what: &'static str,
        netns: Option<Netns>,
        #[source]
        source: io::Error,
    },
}

fn in_netns(netns: Option<&Netns>) -> String {
    netns.map(|n| format!(" in {n}")).unwrap_or_default()
}

/// Whether a probe got an answer.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Reach {
    /// A reply, a reset or an ICMP port-unreachable: the packet arrived.
    Answered,
    /// A TCP connection was accepted (something listens).
    Accepted,
    /// Nothing came back within the timeout.
    Silent,
    /// The kernel refused to send, or reported the destination unreachable.
    Failed(String),
}

/// What was read and probed inside virt-handler's namespace.
struct Seen {
    links: Vec<Link>,
    addresses: Vec<Address>,
    /// Per peer: the route's interface, the TCP probe, the small and the
    /// full-size datagram probes.
    peers: Vec<(IpAddr, Option<u32>, Reach, Reach, Reach)>,
    sync: Vec<(SocketAddr, Reach)>,
}

/// Runs every host check of `plan`.
pub fn check(plan: &HostPlan, findings: &mut Findings) -> Result<(), HostError> {
    for node in &plan.nodes {
        check_node(plan, node, findings)?;
    }
    Ok(())
}

fn netlink_error<'a>(
    what: &'static str,
    netns: Option<&'a Netns>,
) -> impl FnOnce(io::Error) -> HostError + 'a {
    move |source| HostError::Netlink {
        what,
        netns: netns.cloned(),
        source,
    }
}

fn enter<T: Send>(netns: Option<&Netns>, work: impl FnOnce() -> T + Send) -> Result<T, HostError> {
    run_in(netns, work).map_err(|source| HostError::Netns {
        netns: netns
            .cloned()
            .unwrap_or_else(|| Netns::parse("/proc/self/ns/net")),
        source,
    })
}

fn check_node(plan: &HostPlan, node: &NodePlan, findings: &mut Findings) -> Result<(), HostError> {
    let netns = node.netns.as_ref();
    let timeout = plan.timeout;
    let seen = enter(netns, || -> io::Result<Seen> {
        let links = netlink::links()?;
        let addresses = netlink::addresses()?;
        let mut peers = Vec::new();
        let mut sync = Vec::new();
        if let Some(migration) = links.iter().find(|l| l.name == node.migration_iface) {
            for peer in &node.peers {
                let oif = netlink::route_to(*peer)?;
                let tcp = tcp_probe(SocketAddr::new(*peer, PROBE_PORT), timeout);
                let small = udp_probe(*peer, 64, timeout);
                let full = udp_probe(*peer, payload_for(migration.mtu, *peer), timeout);
                peers.push((*peer, oif, tcp, small, full));
            }
            for target in &plan.sync_peers {
                sync.push((*target, tcp_probe(*target, timeout)));
            }
        }
        Ok(Seen {
            links,
            addresses,
            peers,
            sync,
        })
    })?
    .map_err(netlink_error("links and addresses", netns))?;

    let here = |iface: &str| match netns {
        Some(ns) => format!("{iface}@{ns}"),
        None => iface.to_string(),
    };
    let object = format!("node {}", node.name);
    let mut raise = |check: Check, path: String, message: String, fix: String| {
        findings.other(check, object.clone(), &path, message, fix)
    };
    let Some(migration) = seen.links.iter().find(|l| l.name == node.migration_iface) else {
        let pod_ip = seen
            .addresses
            .iter()
            .find(|a| {
                a.scope == RT_SCOPE_UNIVERSE
                    && seen
                        .links
                        .iter()
                        .any(|l| l.index == a.index && l.name != "lo")
            })
            .map(|a| a.addr.to_string())
            .unwrap_or_else(|| "its pod IP".into());
        raise(
            HOST_NO_MIGRATION0,
            here(&node.migration_iface),
            format!(
                "no {} in virt-handler's namespace: virt-handler advertises {pod_ip} and every migration to or \
                 from this node silently crosses the pod network",
                node.migration_iface
            ),
            "make virt-handler attach the migration network: name the NetworkAttachmentDefinition in HyperConverged \
             `spec.liveMigrationConfig.network` (same namespace), then restart virt-handler: \
             `oc delete pod -n openshift-cnv -l kubevirt.io=virt-handler`"
                .into(),
        );
        return Ok(());
    };
    let mig_name = here(&migration.name);
    if !migration.is_up() || !migration.has_carrier() {
        raise(
            HOST_DOWN,
            mig_name.clone(),
            format!("{} is {}: nothing crosses it", migration.name, state(migration)),
            format!("bring it up (`ip link set dev {} up`) and check the migration NIC's cable and switch port", migration.name),
        );
    }
    let own: Vec<&Address> = seen
        .addresses
        .iter()
        .filter(|a| a.index == migration.index && a.scope == RT_SCOPE_UNIVERSE)
        .collect();
    let ranges = plan
        .nad
        .as_ref()
        .and_then(|n| n.ipam.as_ref())
        .map(|i| i.ranges.clone())
        .unwrap_or_default();
    if own.is_empty() {
        raise(
            HOST_NO_ADDRESS,
            mig_name.clone(),
            format!("{} has no global address: virt-handler has no migration IP to advertise", migration.name),
            "check the NetworkAttachmentDefinition's IPAM (whereabouts range, free addresses) and the virt-handler \
             pod's events"
                .into(),
        );
    } else {
        let outside: Vec<String> = own
            .iter()
            .filter(|a| !ranges.is_empty() && !ranges.iter().any(|r| r.contains(a.addr)))
            .map(|a| format!("{}/{}", a.addr, a.prefix))
            .collect();
        if !outside.is_empty() {
            raise(
                HOST_ADDRESS_OUTSIDE_RANGE,
                mig_name.clone(),
                format!(
                    "{} has {} outside the NetworkAttachmentDefinition's range {}",
                    migration.name,
                    outside.join(", "),
                    ranges.iter().map(Cidr::to_string).collect::<Vec<_>>().join(", ")
                ),
                "the address did not come from the migration NAD: check which network virt-handler attached, or \
                 correct the NAD's range"
                    .into(),
            );
        } else if migration.is_up() && migration.has_carrier() {
            raise(
                HOST_MIGRATION0_OK,
                mig_name.clone(),
                format!(
                    "PASS: {} is up, MTU {}, with {}{}",
                    migration.name,
                    migration.mtu,
                    own.iter()
                        .map(|a| format!("{}/{}", a.addr, a.prefix))
                        .collect::<Vec<_>>()
                        .join(", "),
                    if ranges.is_empty() {
                        " (no NAD range given to compare with)"
                    } else {
                        ", inside the NAD's range"
                    }
                ),
                "nothing to fix".into(),
            );
        }
    }
    for mine in &own {
        let mine_cidr = Cidr {
            addr: mine.addr,
            prefix: mine.prefix,
        };
        for other in seen
            .addresses
            .iter()
            .filter(|a| a.index != migration.index && a.scope == RT_SCOPE_UNIVERSE)
        {
            let theirs = Cidr {
                addr: other.addr,
                prefix: other.prefix,
            };
            if super::networks::overlaps(&mine_cidr, &theirs) {
                let name = seen
                    .links
                    .iter()
                    .find(|l| l.index == other.index)
                    .map_or("?", |l| l.name.as_str());
                raise(
                    HOST_ADDRESS_OVERLAP,
                    mig_name.clone(),
                    format!(
                        "{}'s {}/{} overlaps {name}'s {}/{}: the kernel may route peers' migration addresses \
                         through {name}",
                        migration.name, mine.addr, mine.prefix, other.addr, other.prefix
                    ),
                    "give the migration network a range no other network of the node uses".into(),
                );
            }
        }
    }
    if let Some(mtu) = plan.nad.as_ref().and_then(|n| n.mtu) {
        if migration.mtu != mtu {
            raise(
                HOST_MTU_NAD,
                mig_name.clone(),
                format!(
                    "{} has MTU {}, the NetworkAttachmentDefinition asks for {mtu}",
                    migration.name, migration.mtu
                ),
                "restart virt-handler after changing the NAD; the MTU is set when the pod starts"
                    .into(),
            );
        }
    }
    check_path(plan, node, migration, &mut raise)?;
    let vlan = plan.nad.as_ref().and_then(|n| n.vlan);
    for (port, vid) in node.port_vlans.iter().flatten() {
        if let Some(want) = vlan.filter(|want| want != vid) {
            raise(
                HOST_VLAN_MISMATCH,
                port.clone(),
                format!(
                    "port {port} puts migration0's frames in VLAN {vid}, the NetworkAttachmentDefinition asks for \
                     VLAN {want}: this node cannot reach the others on the migration network"
                ),
                format!("recreate the port in VLAN {want}: restart virt-handler on this node (the bridge CNI tags it at attach time)"),
            );
        }
    }
    for (peer, oif, tcp, small, full) in &seen.peers {
        let through = |index: u32| {
            seen.links
                .iter()
                .find(|l| l.index == index)
                .map_or("?".into(), |l| l.name.clone())
        };
        match oif {
            Some(index) if *index == migration.index => {}
            other => raise(
                HOST_ROUTE,
                mig_name.clone(),
                match other {
                    Some(index) => format!(
                        "the route to peer {peer} leaves through {}, not {}: migration traffic to it would cross \
                         another network",
                        through(*index),
                        migration.name
                    ),
                    None => format!("no route to peer {peer}"),
                },
                format!(
                    "the peer's address must be inside {}'s subnet (same NAD range on every node); check `ip route get {peer}` in virt-handler's namespace",
                    migration.name
                ),
            ),
        }
        match tcp {
            Reach::Answered | Reach::Accepted => {}
            Reach::Silent | Reach::Failed(_) => {
                raise(
                    HOST_PEER_UNREACHABLE,
                    mig_name.clone(),
                    format!(
                        "peer {peer} does not answer on the migration network ({}): migrations between the two \
                         nodes would fail to connect",
                        describe(tcp, plan.timeout)
                    ),
                    "check that both nodes' migration NICs are in the same VLAN and the switch ports are up; \
                     compare `bridge vlan show` on both nodes"
                        .into(),
                );
                continue;
            }
        }
        let blackhole =
            *small == Reach::Answered && matches!(full, Reach::Silent | Reach::Failed(_));
        if blackhole {
            raise(
                HOST_PATH_MTU_BLACKHOLE,
                mig_name.clone(),
                format!(
                    "a {}-byte packet (migration0's MTU) with Don't Fragment does not reach {peer}, a small one does: \
                     something on the path has a smaller MTU, so full-size migration segments are dropped after \
                     the handshake and the migration stalls",
                    migration.mtu
                ),
                format!(
                    "raise the MTU of every NIC and switch port on the path to {}, or lower the NAD's `mtu` to the \
                     path's",
                    migration.mtu
                ),
            );
        } else {
            raise(
                HOST_PEER_REACHABLE,
                mig_name.clone(),
                format!(
                    "PASS: peer {peer} answers through {}{}",
                    migration.name,
                    if *small == Reach::Answered {
                        format!(", {}-byte packets included", migration.mtu)
                    } else {
                        " (no ICMP answer to datagrams: the path MTU was not probed)".into()
                    }
                ),
                "nothing to fix".into(),
            );
        }
    }
    for (target, reach) in &seen.sync {
        if *reach != Reach::Accepted {
            raise(
                HOST_SYNC_PORT,
                mig_name.clone(),
                format!(
                    "the synchronization controller at {target} does not accept connections ({}): cross-cluster \
                     migrations cannot be coordinated",
                    describe(reach, plan.timeout)
                ),
                format!(
                    "open TCP port {} between the clusters' migration networks and check virt-synchronization-controller is running",
                    target.port()
                ),
            );
        }
    }
    Ok(())
}

/// The interfaces on the path: present, up, MTU no smaller than
/// migration0's, VLAN filtering and membership where the NAD has a VLAN.
fn check_path(
    plan: &HostPlan,
    node: &NodePlan,
    migration: &Link,
    raise: &mut impl FnMut(Check, String, String, String),
) -> Result<(), HostError> {
    let vlan = plan.nad.as_ref().and_then(|n| n.vlan);
    for spec in &node.path {
        let netns = spec.netns.as_ref();
        let (links, vlans) = enter(netns, || -> io::Result<_> {
            Ok((netlink::links()?, netlink::bridge_vlans()?))
        })?
        .map_err(netlink_error("links", netns))?;
        let name = spec.to_string();
        let Some(link) = links.iter().find(|l| l.name == spec.iface) else {
            raise(
                HOST_NO_INTERFACE,
                name,
                format!("interface {} does not exist{}", spec.iface, in_netns(netns)),
                "check the interface name (the NAD's `master`, the bridge's uplink)".into(),
            );
            continue;
        };
        if !link.is_up() || !link.has_carrier() {
            raise(
                HOST_DOWN,
                name.clone(),
                format!(
                    "{} is {}: the migration path is broken there",
                    spec.iface,
                    state(link)
                ),
                format!(
                    "`ip link set dev {} up`, and check its cable or peer",
                    spec.iface
                ),
            );
        }
        if link.mtu < migration.mtu {
            raise(
                HOST_MTU_PATH,
                name.clone(),
                format!(
                    "{} has MTU {}, {} has {}: full-size migration segments are dropped at {}, after the TCP \
                     handshake succeeded, and the migration stalls",
                    spec.iface, link.mtu, migration.name, migration.mtu, spec.iface
                ),
                format!(
                    "`ip link set dev {} mtu {}` (and the switch ports), or set the NAD's `\"mtu\": {}`",
                    spec.iface, migration.mtu, link.mtu
                ),
            );
        }
        let Some(vid) = vlan.filter(|_| node.port_vlans.is_none()) else {
            continue;
        };
        if spec.role == Role::Bridge && link.vlan_filtering == Some(false) {
            raise(
                HOST_VLAN_FILTERING_OFF,
                name.clone(),
                format!("bridge {} does not filter VLANs, but the NAD asks for VLAN {vid}: its ports are not tagged", spec.iface),
                format!("`ip link set dev {} type bridge vlan_filtering 1` (the bridge CNI does this when it creates the bridge)", spec.iface),
            );
        }
        let memberships = vlans
            .iter()
            .find(|p| p.index == link.index)
            .map(|p| &p.vids);
        if let Some(vids) = memberships.filter(|v| !v.is_empty()) {
            if link.master.is_some() && !vids.contains(&vid) {
                raise(
                    HOST_VLAN_MISMATCH,
                    name,
                    format!(
                        "bridge port {} is not a member of VLAN {vid} (it carries {}): tagged migration frames \
                         cannot leave or enter the node through it",
                        spec.iface,
                        vids.iter().map(u16::to_string).collect::<Vec<_>>().join(", ")
                    ),
                    format!("`bridge vlan add vid {vid} dev {}`", spec.iface),
                );
            }
        }
    }
    Ok(())
}

fn state(link: &Link) -> &'static str {
    if !link.is_up() {
        "down"
    } else {
        "up without carrier"
    }
}

fn describe(reach: &Reach, timeout: Duration) -> String {
    match reach {
        Reach::Answered => "it refused the connection".into(),
        Reach::Accepted => "it accepted".into(),
        Reach::Silent => format!("no answer within {} ms", timeout.as_millis()),
        Reach::Failed(why) => why.clone(),
    }
}

/// The UDP payload that makes an IP packet of `mtu` bytes.
fn payload_for(mtu: u32, peer: IpAddr) -> usize {
    let headers = if peer.is_ipv4() { 20 + 8 } else { 40 + 8 };
    (mtu as usize).saturating_sub(headers).max(1)
}

fn tcp_probe(target: SocketAddr, timeout: Duration) -> Reach {
    match TcpStream::connect_timeout(&target, timeout) {
        Ok(_) => Reach::Accepted,
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reach::Answered,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock
            ) =>
        {
            Reach::Silent
        }
        Err(e) => Reach::Failed(e.to_string()),
    }
}

/// Sends one datagram of `size` bytes with Don't Fragment to a closed port
/// of `peer`; an ICMP port-unreachable back proves it arrived whole.
fn udp_probe(peer: IpAddr, size: usize, timeout: Duration) -> Reach {
    let attempt = || -> io::Result<Reach> {
        let local: SocketAddr = if peer.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .expect("literal");
        let socket = UdpSocket::bind(local)?;
        let (level, option, value) = if peer.is_ipv4() {
            (
                libc::IPPROTO_IP,
                libc::IP_MTU_DISCOVER,
                libc::IP_PMTUDISC_PROBE,
            )
        } else {
            (
                libc::IPPROTO_IPV6,
                libc::IPV6_MTU_DISCOVER,
                libc::IPV6_PMTUDISC_PROBE,
            )
        };
        // SAFETY: setsockopt with an int option on a socket we own.
        let set = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as u32,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
        socket.connect(SocketAddr::new(peer, PROBE_PORT))?;
        socket.set_read_timeout(Some(timeout))?;
        socket.send(&vec![0u8; size])?;
        let mut reply = [0u8; 64];
        Ok(match socket.recv(&mut reply) {
            Ok(_) => Reach::Answered,
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Reach::Answered,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                Reach::Silent
            }
            Err(e) => Reach::Failed(e.to_string()),
        })
    };
    attempt().unwrap_or_else(|e| Reach::Failed(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_payloads_fill_the_mtu() {
        assert_eq!(payload_for(1500, "10.0.0.1".parse().unwrap()), 1472);
        assert_eq!(payload_for(9000, "fd00::1".parse().unwrap()), 8952);
    }

    #[test]
    fn probes_answer_on_loopback() {
        // Nothing listens on the probe port of 127.0.0.1: a reset and an ICMP
        // port-unreachable are answers.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            tcp_probe(SocketAddr::new(lo, PROBE_PORT), Duration::from_secs(1)),
            Reach::Answered
        );
        assert_eq!(
            udp_probe(lo, payload_for(1500, lo), Duration::from_secs(1)),
            Reach::Answered
        );
    }
}
