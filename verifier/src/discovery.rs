//! What to observe on this node, found without flags: the virt-handler
//! process(es), their pod's network namespace, `migration0` and the pod
//! interface inside it, and the node-side devices under them.
//!
//! - `migration0` a macvlan (the seed's NAD): its lower device, the
//!   migration NIC (`IFLA_LINK`, in the namespace `IFLA_LINK_NETNSID` names).
//! - `migration0` a veth (the bridge CNI): its peer, the peer's bridge, and
//!   the bridge's uplink port(s), with the VLAN the NAD puts on the peer.
//! - The pod interface: the uplink of the bridge its veth peer sits on, else
//!   the node's default-route device (its primary NIC) where that can be told.
//!
//! A namespace id names a namespace only inside the namespace that gave it,
//! so it is resolved as `ip` does: virt-handler's namespace is asked for the
//! id of each candidate (every namespace pinned under /var/run/netns, and
//! the host's, /proc/1/ns/net) until one matches. Every attachment comes
//! with why it was chosen, for the user to read.

use std::{
    collections::{HashMap, HashSet},
    fmt, fs,
    os::{fd::AsFd as _, unix::fs::MetadataExt as _},
    path::{Path, PathBuf},
};

use crate::{
    checks::netlink::{self, Address, Link, RT_SCOPE_UNIVERSE},
    config::Cidr,
    dataplane::{netns::run_in, AttachSpec, Netns, Role},
    report,
};

/// virt-handler's process name (`comm`).
pub const PROCESS_NAME: &str = "virt-handler";
/// Where `ip netns` and container runtimes pin namespaces.
const PINNED: &str = "/var/run/netns";
/// The interface KubeVirt gives virt-handler from the migration NAD.
pub const MIGRATION_IFACE: &str = "migration0";

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error(
        "no process named {PROCESS_NAME} on this node (is KubeVirt's virt-handler running here, \
         and is /proc the host's? In a debug pod: hostPID). Give --virt-handler-pid PID or the \
         interfaces with -i [ROLE:]IFACE[@NETNS]"
    )]
    NoVirtHandler,
    #[error("found nothing to observe{0}; give the interfaces with -i [ROLE:]IFACE[@NETNS]")]
    Nothing(String),
    #[error("virt-handler pid {pid}: {message}")]
    Process { pid: u32, message: String },
    #[error("reading the interfaces of {netns}: {source}")]
    Netlink {
        netns: String,
        #[source]
        source: std::io::Error,
    },
}

/// Where `verify` and `watch` observe: the interfaces given, else those
/// found on this node.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// virt-handler's process id, when it does not run as `virt-handler`
    /// (repeat for more). Without -i, the interfaces to observe are found
    /// on this node: virt-handler's namespace, migration0, the pod
    /// interface and the node's devices under them.
    #[arg(long, value_name = "PID", conflicts_with = "ifaces")]
    pub virt_handler_pid: Vec<u32>,
}

impl Options {
    /// The interfaces given (`-i`), else those found (with why, to be said).
    pub fn resolve(
        &self,
        given: &[AttachSpec],
    ) -> Result<(Vec<AttachSpec>, Option<Discovery>), DiscoveryError> {
        if !given.is_empty() {
            return Ok((given.to_vec(), None));
        }
        let found = discover(&virt_handlers(&self.virt_handler_pid)?)?;
        Ok((found.specs(), Some(found)))
    }
}

/// One interface to observe and why it was chosen.
#[derive(Clone, Debug)]
pub struct Found {
    pub spec: AttachSpec,
    pub why: String,
}

/// What discovery found on this node.
#[derive(Clone, Debug, Default)]
pub struct Discovery {
    /// The virt-handler processes, with the namespace each is in.
    pub handlers: Vec<(u32, String)>,
    pub attach: Vec<Found>,
    /// migration0's own address prefixes: the migration network's range
    /// when no flag or manifest gives one.
    pub cidrs: Vec<Cidr>,
    /// The VLAN the bridge CNI puts on migration0's bridge port.
    pub vlan: Option<u16>,
    /// What could not be told, and what that means.
    pub notes: Vec<String>,
    /// Which virt-handler's node each namespace found is on.
    pub places: Vec<report::Place>,
}

impl Discovery {
    pub fn specs(&self) -> Vec<AttachSpec> {
        self.attach.iter().map(|f| f.spec.clone()).collect()
    }

    /// One line per finding, for the user.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self
            .handlers
            .iter()
            .map(|(pid, netns)| {
                format!("found {PROCESS_NAME} pid {pid}, network namespace {netns}")
            })
            .collect();
        lines.extend(
            self.attach
                .iter()
                .map(|f| format!("attaching {}: {}", f.spec, f.why)),
        );
        lines.extend(self.notes.iter().cloned());
        lines
    }

    fn locate(&mut self, place: &Place, node: &str, pod: bool) {
        let netns = place.netns.as_ref().map(ToString::to_string);
        if !self.places.iter().any(|p| p.netns == netns) {
            self.places.push(report::Place {
                netns,
                node: node.to_string(),
                pod,
            });
        }
    }

    fn add(&mut self, role: Role, iface: &str, netns: &Place, why: String) {
        let spec = AttachSpec {
            role,
            iface: iface.to_string(),
            netns: netns.netns.clone(),
        };
        if !self
            .attach
            .iter()
            .any(|f| f.spec.iface == spec.iface && f.spec.netns == spec.netns)
        {
            self.attach.push(Found { spec, why });
        }
    }
}

/// A namespace: how to enter it (`None`: this one) and its name for people.
#[derive(Clone, Debug)]
struct Place {
    netns: Option<Netns>,
    identity: (u64, u64),
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.netns {
            Some(netns) => write!(f, "{netns}"),
            None => f.write_str("this namespace"),
        }
    }
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// The namespaces a namespace id may name: the pinned ones (by name), and
/// the host's; the one this process is in is `None`.
fn candidates() -> Vec<(Place, PathBuf)> {
    let here = identity(Path::new("/proc/self/ns/net"));
    let mut paths: Vec<PathBuf> = fs::read_dir(PINNED)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    paths.sort();
    paths.push(PathBuf::from("/proc/1/ns/net"));
    let mut seen = HashSet::new();
    paths
        .into_iter()
        .filter_map(|path| {
            let identity = identity(&path)?;
            seen.insert(identity).then(|| {
                let netns =
                    (Some(identity) != here).then(|| Netns::parse(&path.display().to_string()));
                (Place { netns, identity }, path)
            })
        })
        .collect()
}

/// The processes named virt-handler, or the ones given.
pub fn virt_handlers(given: &[u32]) -> Result<Vec<u32>, DiscoveryError> {
    if !given.is_empty() {
        for pid in given {
            fs::metadata(format!("/proc/{pid}/ns/net")).map_err(|e| DiscoveryError::Process {
                pid: *pid,
                message: e.to_string(),
            })?;
        }
        return Ok(given.to_vec());
    }
    let mut pids: Vec<u32> = fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|pid| {
                    fs::read_to_string(format!("/proc/{pid}/comm"))
                        .is_ok_and(|comm| comm.trim_end() == PROCESS_NAME)
                })
                .collect()
        })
        .unwrap_or_default();
    pids.sort();
    if pids.is_empty() {
        return Err(DiscoveryError::NoVirtHandler);
    }
    Ok(pids)
}

/// Discovers what to observe for the virt-handlers `pids` (see
/// [`virt_handlers`]).
pub fn discover(pids: &[u32]) -> Result<Discovery, DiscoveryError> {
    let candidates = candidates();
    let mut found = Discovery::default();
    let mut done = HashSet::new();
    for &pid in pids {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        let Some(id) = identity(&path) else {
            return Err(DiscoveryError::Process {
                pid,
                message: "gone, or its namespace cannot be read".into(),
            });
        };
        // Named as it is pinned when it is (the lab's, a runtime's).
        let place = candidates
            .iter()
            .find(|(place, _)| place.identity == id)
            .map(|(place, _)| place.clone())
            .unwrap_or(Place {
                netns: Some(Netns::parse(&path.display().to_string())),
                identity: id,
            });
        found.handlers.push((pid, place.to_string()));
        if done.insert(id) {
            Node::new(pid, place, &candidates)?.discover(&mut found)?;
        }
    }
    if found.attach.is_empty() {
        return Err(DiscoveryError::Nothing(
            found.notes.iter().map(|n| format!(": {n}")).collect(),
        ));
    }
    Ok(found)
}

fn read(place: &Place) -> Result<(Vec<Link>, Vec<Address>), DiscoveryError> {
    let failed = |source| DiscoveryError::Netlink {
        netns: place.to_string(),
        source,
    };
    run_in(place.netns.as_ref(), || {
        Ok::<_, std::io::Error>((netlink::links()?, netlink::addresses()?))
    })
    .map_err(failed)?
    .map_err(failed)
}

fn global(addresses: &[Address], link: &Link) -> Vec<Address> {
    addresses
        .iter()
        .filter(|a| a.index == link.index && a.scope == RT_SCOPE_UNIVERSE)
        .copied()
        .collect()
}

fn shown(addresses: &[Address]) -> String {
    addresses
        .iter()
        .map(|a| format!("{}/{}", a.addr, a.prefix))
        .collect::<Vec<_>>()
        .join(", ")
}

/// One virt-handler's namespace and the namespaces its ids name.
struct Node {
    pid: u32,
    place: Place,
    links: Vec<Link>,
    addresses: Vec<Address>,
    /// Namespace id (as virt-handler's namespace numbers it) -> namespace.
    ids: HashMap<i32, Place>,
}

impl Node {
    fn new(
        pid: u32,
        place: Place,
        candidates: &[(Place, PathBuf)],
    ) -> Result<Node, DiscoveryError> {
        let (links, addresses) = read(&place)?;
        let files: Vec<(Place, fs::File)> = candidates
            .iter()
            .filter_map(|(p, path)| Some((p.clone(), fs::File::open(path).ok()?)))
            .collect();
        // Asked inside virt-handler's namespace: the ids are its own.
        let ids = run_in(place.netns.as_ref(), || {
            files
                .iter()
                .filter_map(|(p, file)| Some((netlink::nsid_of(file.as_fd()).ok()??, p.clone())))
                .collect::<HashMap<_, _>>()
        })
        .unwrap_or_default();
        Ok(Node {
            pid,
            place,
            links,
            addresses,
            ids,
        })
    }

    /// The node's name in the report: whose virt-handler it runs.
    fn node(&self) -> String {
        format!("node of virt-handler {}", self.pid)
    }

    fn discover(&self, found: &mut Discovery) -> Result<(), DiscoveryError> {
        let (pid, place) = (self.pid, &self.place);
        found.locate(place, &self.node(), true);
        match self.links.iter().find(|l| l.name == MIGRATION_IFACE) {
            Some(m0) => {
                let addresses = global(&self.addresses, m0);
                for a in &addresses {
                    let cidr = Cidr {
                        addr: a.addr,
                        prefix: a.prefix,
                    }
                    .network();
                    if !found.cidrs.contains(&cidr) {
                        found.cidrs.push(cidr);
                    }
                }
                found.add(
                    Role::Migration,
                    &m0.name,
                    place,
                    format!(
                        "virt-handler's migration interface ({}, {})",
                        m0.kind.as_deref().unwrap_or("device"),
                        if addresses.is_empty() {
                            "no global address".into()
                        } else {
                            shown(&addresses)
                        }
                    ),
                );
                self.node_side(m0, Role::Migration, found)?;
            }
            None => found.notes.push(format!(
                "virt-handler pid {pid} has no {MIGRATION_IFACE}: its migrations use the pod network \
                 (KubeVirt's silent fallback; is the migration network configured?)"
            )),
        }
        let default = run_in(place.netns.as_ref(), netlink::default_route)
            .ok()
            .and_then(Result::ok)
            .flatten();
        let pod = self
            .links
            .iter()
            .filter(|l| l.name != MIGRATION_IFACE && l.name != "lo")
            .find(|l| Some(l.index) == default)
            .map(|l| (l, "holds its default route"))
            .or_else(|| {
                (self.links.iter().find(|l| l.name == "eth0"))
                    .map(|l| (l, "the pod's first interface"))
            });
        match pod {
            Some((pod, how)) => {
                found.add(
                    Role::Primary,
                    &pod.name,
                    place,
                    format!(
                        "virt-handler's pod interface ({how}; {})",
                        shown(&global(&self.addresses, pod))
                    ),
                );
                self.node_side(pod, Role::Primary, found)?;
            }
            None => found.notes.push(format!(
                "virt-handler pid {pid}: no pod interface found (no default route, no eth0): the pod \
                 network is not observed"
            )),
        }
        Ok(())
    }

    /// The devices on the node side of `link` (a macvlan's lower device, a
    /// veth's peer and its bridge).
    fn node_side(
        &self,
        link: &Link,
        role: Role,
        found: &mut Discovery,
    ) -> Result<(), DiscoveryError> {
        let Some(index) = link.link else {
            found.notes.push(format!(
                "{} in {} rests on no other device ({}): only it is observed there",
                link.name,
                self.place,
                link.kind
                    .as_deref()
                    .unwrap_or("a device of its own, e.g. an SR-IOV VF")
            ));
            return Ok(());
        };
        let place = match link.link_netnsid {
            None => self.place.clone(),
            Some(id) => match self.ids.get(&id) {
                Some(place) => place.clone(),
                None => {
                    found.notes.push(format!(
                        "{}'s {} is in namespace id {id} of {}, which is none of {PINNED}/* or the host's: \
                         not observed",
                        link.name,
                        if link.kind.as_deref() == Some("veth") { "peer" } else { "lower device" },
                        self.place
                    ));
                    return Ok(());
                }
            },
        };
        let (links, _) = read(&place)?;
        found.locate(&place, &self.node(), false);
        let Some(other) = links.iter().find(|l| l.index == index) else {
            return Ok(());
        };
        let kind = link.kind.as_deref().unwrap_or("");
        if kind != "veth" {
            found.add(
                role,
                &other.name,
                &place,
                format!(
                    "the node's {} NIC: {} is a {kind} on it (IFLA_LINK)",
                    if role == Role::Migration {
                        "migration"
                    } else {
                        "pod network"
                    },
                    link.name
                ),
            );
            return Ok(());
        }
        let bridge = other
            .master
            .and_then(|m| links.iter().find(|l| l.index == m))
            .filter(|m| m.kind.as_deref() == Some("bridge"));
        if role == Role::Migration {
            found.add(
                role,
                &other.name,
                &place,
                format!("{}'s veth peer", link.name),
            );
        }
        let Some(bridge) = bridge else {
            if role == Role::Primary {
                self.default_route_device(&place, &links, found);
            }
            return Ok(());
        };
        if role == Role::Migration {
            found.add(
                Role::Bridge,
                &bridge.name,
                &place,
                format!(
                    "the bridge {}'s veth peer {} is a port of",
                    link.name, other.name
                ),
            );
            found.vlan = found.vlan.or_else(|| port_vlan(&place, other.index));
        }
        let ports: Vec<&Link> = links
            .iter()
            .filter(|l| l.master == Some(bridge.index) && l.index != other.index)
            .collect();
        // A node's uplink is its NIC (or bond, VLAN device); other veths are
        // other pods. With none (nested set-ups, the lab), every other port.
        let nics: Vec<&Link> = ports
            .iter()
            .copied()
            .filter(|l| l.kind.as_deref() != Some("veth"))
            .collect();
        for uplink in if nics.is_empty() { ports } else { nics } {
            found.add(
                role,
                &uplink.name,
                &place,
                format!(
                    "uplink of {}, the bridge of {}'s veth peer {}",
                    bridge.name, link.name, other.name
                ),
            );
        }
        Ok(())
    }

    /// The node's primary NIC, where it can be told: the default route's.
    fn default_route_device(&self, place: &Place, links: &[Link], found: &mut Discovery) {
        let index = run_in(place.netns.as_ref(), netlink::default_route)
            .ok()
            .and_then(Result::ok)
            .flatten();
        if let Some(nic) = index.and_then(|i| links.iter().find(|l| l.index == i)) {
            found.add(
                Role::Primary,
                &nic.name,
                place,
                format!("the node's primary NIC (its default route, in {place})"),
            );
        }
    }
}

/// The VLAN a bridge port is in, other than the default VLAN 1.
fn port_vlan(place: &Place, port: u32) -> Option<u16> {
    let vlans = run_in(place.netns.as_ref(), netlink::bridge_vlans)
        .ok()?
        .ok()?;
    let vids: Vec<u16> = vlans
        .into_iter()
        .find(|p| p.index == port)?
        .vids
        .into_iter()
        .filter(|vid| *vid != 1)
        .collect();
    (vids.len() == 1).then(|| vids[0])
}
