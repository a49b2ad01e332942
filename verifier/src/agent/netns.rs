//! Finding virt-handler's network namespace on this node.
//!
//! virt-handler is not on the host network: `migration0` and its `eth0`
//! live in its pod's namespace. The API says which pod it is and its IP
//! (`status.podIP`); the namespace is the one whose interfaces carry that
//! address. Candidates are every process's namespace (`/proc/PID/ns/net`,
//! which hostPID makes the node's processes) and the namespaces the
//! container runtime (or `ip netns`) pins under /var/run/netns, each entered
//! once however many processes share it.

use std::{
    collections::HashSet,
    fs,
    net::IpAddr,
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
};

use crate::{checks::netlink, dataplane::Netns};

/// Where `ip netns` and CNI runtimes pin namespaces.
const PINNED: &str = "/var/run/netns";

/// A namespace found, with what it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Found {
    pub netns: Netns,
    /// Device and inode of the namespace: the same namespace through any path.
    pub identity: (u64, u64),
    /// Its interfaces' names.
    pub interfaces: Vec<String>,
}

/// Every namespace on the host, once each: pinned ones first (by name),
/// then those of processes.
fn candidates() -> Vec<(Netns, (u64, u64))> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    let mut add = |netns: Netns, path: &Path| {
        if let Ok(meta) = fs::metadata(path) {
            if seen.insert((meta.dev(), meta.ino())) {
                found.push((netns, (meta.dev(), meta.ino())));
            }
        }
    };
    if let Ok(entries) = fs::read_dir(PINNED) {
        let mut names: Vec<String> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        for name in names {
            add(Netns::parse(&name), &Path::new(PINNED).join(&name));
        }
    }
    if let Ok(entries) = fs::read_dir("/proc") {
        let mut pids: Vec<u32> = entries
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        pids.sort();
        for pid in pids {
            let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
            add(Netns::parse(&path.display().to_string()), &path);
        }
    }
    found
}

/// The namespace whose interfaces carry `address`, if any.
pub fn find_by_address(address: IpAddr) -> Option<Found> {
    for (netns, identity) in candidates() {
        let Ok(Ok((links, addresses))) =
            netns.run(|| Ok::<_, std::io::Error>((netlink::links()?, netlink::addresses()?)))
        else {
            // Gone meanwhile, or not enterable: not the one.
            continue;
        };
        if addresses.iter().any(|a| a.addr == address) {
            return Some(Found {
                netns,
                identity,
                interfaces: links.into_iter().map(|l| l.name).collect(),
            });
        }
    }
    None
}

/// The ports of `bridge` in `netns` (this namespace when `None`).
pub fn bridge_ports(netns: Option<&Netns>, bridge: &str) -> std::io::Result<Vec<String>> {
    let links = crate::dataplane::netns::run_in(netns, netlink::links)??;
    let Some(index) = links.iter().find(|l| l.name == bridge).map(|l| l.index) else {
        return Ok(Vec::new());
    };
    Ok(links
        .into_iter()
        .filter(|l| l.master == Some(index))
        .map(|l| l.name)
        .collect())
}

/// Whether `netns` (this namespace when `None`) has an interface `name`.
pub fn has_interface(netns: Option<&Netns>, name: &str) -> bool {
    crate::dataplane::netns::run_in(netns, netlink::links)
        .ok()
        .and_then(Result::ok)
        .is_some_and(|links| links.iter().any(|l| l.name == name))
}
