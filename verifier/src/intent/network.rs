//! The migration network: the NetworkAttachmentDefinition HyperConverged or
//! KubeVirt names, and what its CNI config sets up (the plugin, its master
//! or bridge, the VLAN and MTU, the ranges its IPAM hands out).
//!
//! Read as the components read it, and tolerant: a field of the wrong type
//! is left out here (`check` reports it). Field names in the CNI JSON are
//! matched ignoring case, as the plugins' Go `encoding/json` matches them.

use serde_json::{Map, Value};

use super::limits::MigrationConfig;
use crate::config::{documents::Object, endpoints::number_of, Cidr};

/// What a NetworkAttachmentDefinition sets up.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Nad {
    pub name: Option<String>,
    pub namespace: Option<String>,
    /// The interface-making plugin (the first of a list).
    pub plugin: Option<String>,
    /// `None` when the config has no `ipam` at all.
    pub ipam: Option<Ipam>,
    /// The VLAN id the plugin tags the port with (1 to 4094; 0 is none).
    pub vlan: Option<u16>,
    /// The MTU it sets (0 and values Linux refuses are the kernel's default).
    pub mtu: Option<u32>,
    pub master: Option<String>,
    pub bridge: Option<String>,
    /// Where the main plugin sits: `spec.config` or `spec.config.plugins[0]`.
    pub plugin_path: String,
}

/// What an IPAM section hands out, as far as migverify can tell.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ipam {
    pub kind: IpamKind,
    /// The networks (host bits cleared) addresses come from.
    pub ranges: Vec<Cidr>,
    /// For a cluster-wide pool (whereabouts, OVN-Kubernetes' subnets): how
    /// many addresses it hands out in all, after bounds and exclusions.
    pub capacity: Option<u128>,
    /// whereabouts `node_slice_size` (its prefix length), when it slices the
    /// range per node, and how many slices the range holds.
    pub node_slices: Option<(u8, u128)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamKind {
    Whereabouts,
    HostLocal,
    Static,
    Dhcp,
    /// OVN-Kubernetes' own allocation from the plugin's `subnets`
    /// (cluster-wide, no `ipam` section).
    Ovn,
    Other(String),
    /// An empty `ipam` (L2 only) or a section without `type`.
    None,
}

impl Nad {
    /// What `object`'s `spec.config` sets up.
    pub fn read(object: &Object) -> Nad {
        let mut nad = Nad {
            name: object.name.clone(),
            namespace: object.namespace.clone(),
            plugin_path: "spec.config".into(),
            ..Nad::default()
        };
        let Some(Value::String(text)) = object.value.pointer("/spec/config") else {
            return nad;
        };
        let Ok(Value::Object(config)) = serde_json::from_str::<Value>(text) else {
            return nad;
        };
        let main = match get(&config, "plugins") {
            Some(Value::Array(plugins)) => {
                nad.plugin_path = "spec.config.plugins[0]".into();
                plugins.first().and_then(Value::as_object)
            }
            _ => Some(&config),
        };
        if let Some(plugin) = main {
            nad.plugin = text_of(plugin, "type");
            nad.master = text_of(plugin, "master");
            nad.bridge = match nad.plugin.as_deref() {
                // The bridge plugin's default bridge.
                Some("bridge") => Some(text_of(plugin, "bridge").unwrap_or_else(|| "cni0".into())),
                _ => None,
            };
            nad.vlan = get(plugin, "vlan")
                .and_then(Value::as_u64)
                .and_then(|v| u16::try_from(v).ok())
                .filter(|v| (1..=4094).contains(v));
            nad.mtu = get(plugin, "mtu")
                .and_then(Value::as_u64)
                .and_then(|m| u32::try_from(m).ok())
                .filter(|m| (68..=65535).contains(m));
            nad.ipam = get(plugin, "ipam")
                .and_then(Value::as_object)
                .map(Ipam::read)
                .or_else(|| Ipam::ovn(plugin));
        }
        nad
    }

    /// The ranges addresses come from (none without IPAM).
    pub fn ranges(&self) -> &[Cidr] {
        self.ipam.as_ref().map_or(&[], |i| i.ranges.as_slice())
    }

    /// `namespace/name`, as people write it.
    pub fn id(&self) -> String {
        format!(
            "{}/{}",
            self.namespace.as_deref().unwrap_or("?"),
            self.name.as_deref().unwrap_or("?")
        )
    }
}

impl Ipam {
    /// OVN-Kubernetes' secondary networks allocate from `subnets` (a
    /// comma-separated list of CIDRs) less `excludeSubnets`.
    fn ovn(plugin: &Map<String, Value>) -> Option<Ipam> {
        if !str_of(plugin, "type")?.starts_with("ovn-k8s-cni") {
            return None;
        }
        let cidrs = |key: &str| -> Vec<Cidr> {
            str_of(plugin, key)
                .unwrap_or_default()
                .split(',')
                .filter_map(|c| c.trim().parse::<Cidr>().ok())
                .collect()
        };
        let ranges: Vec<Cidr> = cidrs("subnets").into_iter().map(Cidr::network).collect();
        let excluded: Vec<(u128, u128)> =
            cidrs("excludeSubnets").iter().map(|c| c.bounds()).collect();
        let capacity = ranges
            .iter()
            .map(|r| {
                let (first, last) = host_bounds(*r);
                assignable(first, last, &excluded)
            })
            .sum();
        (!ranges.is_empty()).then_some(Ipam {
            kind: IpamKind::Ovn,
            ranges,
            capacity: Some(capacity),
            node_slices: None,
        })
    }

    fn read(section: &Map<String, Value>) -> Ipam {
        let kind = match text_of(section, "type").as_deref() {
            None => IpamKind::None,
            Some("whereabouts") => IpamKind::Whereabouts,
            Some("host-local") => IpamKind::HostLocal,
            Some("static") => IpamKind::Static,
            Some("dhcp") => IpamKind::Dhcp,
            Some(other) => IpamKind::Other(other.into()),
        };
        let mut ranges = Vec::new();
        let mut add = |text: Option<&str>| {
            // whereabouts also takes `FIRST-CIDR`: a start address before the range.
            let cidr = text.map(|t| t.rsplit_once('-').map_or(t, |(_, cidr)| cidr));
            if let Some(cidr) = cidr
                .filter(|c| c.contains('/'))
                .and_then(|c| c.parse::<Cidr>().ok())
            {
                ranges.push(cidr.network());
            }
        };
        let mut capacity = None;
        let mut node_slices = None;
        let maps = |key: &str| -> Vec<&Map<String, Value>> {
            match get(section, key) {
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_object).collect(),
                _ => Vec::new(),
            }
        };
        match kind {
            IpamKind::Whereabouts => {
                let listed = maps("ipRanges");
                let mut entries = Vec::new();
                if get(section, "range").is_some() || listed.is_empty() {
                    entries.push(section);
                }
                entries.extend(listed);
                let mut total: u128 = 0;
                for entry in entries {
                    add(str_of(entry, "range"));
                    total = total.saturating_add(whereabouts_capacity(entry).unwrap_or(0));
                }
                capacity = Some(total);
                node_slices = node_slice(section, ranges.first().copied());
            }
            IpamKind::HostLocal => {
                add(str_of(section, "subnet"));
                if let Some(Value::Array(sets)) = get(section, "ranges") {
                    for range in sets.iter().filter_map(Value::as_array).flatten() {
                        add(range.as_object().and_then(|r| str_of(r, "subnet")));
                    }
                }
            }
            IpamKind::Static => {
                for entry in maps("addresses") {
                    add(str_of(entry, "address"));
                }
            }
            _ => {}
        }
        Ipam {
            kind,
            ranges,
            capacity,
            node_slices,
        }
    }
}

/// The addresses one whereabouts range entry hands out: the range less the
/// network (and IPv4 broadcast) address, from `range_start` (or the
/// `FIRST-` of `FIRST-CIDR`) to `range_end`, less `exclude`.
fn whereabouts_capacity(entry: &Map<String, Value>) -> Option<u128> {
    let text = str_of(entry, "range")?;
    let (inline_start, cidr) = match text.split_once('-') {
        Some((start, cidr)) => (Some(start), cidr),
        None => (None, text),
    };
    let cidr = cidr.parse::<Cidr>().ok()?.network();
    let address = |t: &str| t.trim().parse::<std::net::IpAddr>().ok().map(number_of);
    let (low, high) = host_bounds(cidr);
    let first = str_of(entry, "range_start")
        .or(inline_start)
        .and_then(address)
        .unwrap_or(low);
    let last = str_of(entry, "range_end").and_then(address).unwrap_or(high);
    let excluded: Vec<(u128, u128)> = match get(entry, "exclude") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|t| t.parse::<Cidr>().ok())
            .map(|c| c.bounds())
            .collect(),
        _ => Vec::new(),
    };
    Some(assignable(first, last, &excluded))
}

/// `node_slice_size` ("/24" or "24") and the number of such slices in
/// `range`, when it is one whereabouts accepts.
fn node_slice(section: &Map<String, Value>, range: Option<Cidr>) -> Option<(u8, u128)> {
    let size = node_slice_size(str_of(section, "node_slice_size")?)?;
    let range = range?;
    let width = if range.addr.is_ipv4() { 32 } else { 128 };
    (size >= range.prefix && size <= width).then(|| {
        let bits = u32::from(size - range.prefix);
        (
            size,
            if bits >= 128 {
                u128::MAX
            } else {
                1u128 << bits
            },
        )
    })
}

/// whereabouts' `node_slice_size`: a prefix length, with or without `/`.
pub fn node_slice_size(text: &str) -> Option<u8> {
    text.trim().trim_start_matches('/').parse().ok()
}

/// The first and last address IPAM plugins hand out from `cidr`: IPv4
/// skips the network and broadcast addresses (not in a /31 or /32), IPv6
/// the network (subnet-router anycast) address.
pub fn host_bounds(cidr: Cidr) -> (u128, u128) {
    let (network, broadcast) = cidr.bounds();
    if cidr.addr.is_ipv4() && cidr.prefix < 31 {
        (network + 1, broadcast - 1)
    } else if cidr.addr.is_ipv6() && cidr.prefix < 127 {
        (network + 1, broadcast)
    } else {
        (network, broadcast)
    }
}

/// How many addresses of `first..=last` are left after `excluded`
/// (inclusive intervals, in any order, overlapping or not).
pub fn assignable(first: u128, last: u128, excluded: &[(u128, u128)]) -> u128 {
    if first > last {
        return 0;
    }
    let mut intervals: Vec<(u128, u128)> = excluded
        .iter()
        .map(|&(lo, hi)| (lo.max(first), hi.min(last)))
        .filter(|(lo, hi)| lo <= hi)
        .collect();
    intervals.sort_unstable();
    let mut removed: u128 = 0;
    let mut covered_to: Option<u128> = None;
    for (lo, hi) in intervals {
        let lo = match covered_to {
            Some(c) if c >= hi => continue,
            Some(c) if c >= lo => c + 1,
            _ => lo,
        };
        removed = removed.saturating_add(hi - lo + 1);
        covered_to = Some(hi);
    }
    (last - first).saturating_add(1).saturating_sub(removed)
}

/// A field as Go's encoding/json finds it: the exact name first, then any
/// other case; JSON `null` is absent.
fn get<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m Value> {
    map.get(key)
        .or_else(|| {
            map.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v)
        })
        .filter(|v| !v.is_null())
}

fn str_of<'m>(map: &'m Map<String, Value>, key: &str) -> Option<&'m str> {
    get(map, key).and_then(Value::as_str)
}

fn text_of(map: &Map<String, Value>, key: &str) -> Option<String> {
    str_of(map, key).map(str::to_string)
}

/// Where the NAD a migration config names is among `nads`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The config names no network: migrations use the pod network.
    NoNetwork,
    /// In the namespace KubeVirt looks in (index into `nads`).
    Found(usize),
    /// A NAD of that name, in another namespace.
    WrongNamespace(usize),
    /// Not among the inputs (which hold other NADs, or none).
    Missing,
}

/// Finds the NAD `config` names where KubeVirt looks for it: its install
/// namespace (a NAD or config without a namespace matches any).
pub fn lookup(config: &MigrationConfig, nads: &[Nad]) -> Lookup {
    let Some(name) = &config.network else {
        return Lookup::NoNetwork;
    };
    let named = |nad: &Nad| nad.name.as_deref() == Some(name.as_str());
    let in_namespace = |nad: &Nad| match (&config.install_namespace, &nad.namespace) {
        (Some(want), Some(have)) => want == have,
        _ => true,
    };
    if let Some(index) = nads.iter().position(|n| named(n) && in_namespace(n)) {
        Lookup::Found(index)
    } else if let Some(index) = nads.iter().position(named) {
        Lookup::WrongNamespace(index)
    } else {
        Lookup::Missing
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::documents::load_bytes;

    fn nad(config: &str) -> Nad {
        let yaml = format!(
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\n\
             metadata: {{name: migration-network, namespace: openshift-cnv}}\nspec:\n  config: '{config}'\n"
        );
        Nad::read(&load_bytes("nad.yaml", yaml.as_bytes()).unwrap()[0])
    }

    #[test]
    fn the_seeds_macvlan_with_whereabouts() {
        let n = nad(
            r#"{"cniVersion": "0.3.1", "name": "migration-bridge", "type": "macvlan", "master": "eth1",
                "mode": "bridge", "ipam": {"type": "whereabouts", "range": "10.200.5.0/24"}}"#,
        );
        assert_eq!(n.plugin.as_deref(), Some("macvlan"));
        assert_eq!(n.master.as_deref(), Some("eth1"));
        assert_eq!(n.ranges(), &["10.200.5.0/24".parse::<Cidr>().unwrap()]);
        assert_eq!(n.ipam.as_ref().unwrap().kind, IpamKind::Whereabouts);
        assert_eq!(n.id(), "openshift-cnv/migration-network");
    }

    #[test]
    fn a_bridge_with_a_vlan_in_a_plugin_list() {
        let n = nad(
            r#"{"cniVersion": "0.3.1", "plugins": [{"type": "bridge", "bridge": "br1", "VLAN": 100,
                "ipam": {"type": "whereabouts", "ipRanges": [{"range": "10.200.5.10-10.200.5.0/24"},
                {"range": "fd00:200:5::/64"}]}}]}"#,
        );
        assert_eq!(n.plugin_path, "spec.config.plugins[0]");
        assert_eq!((n.bridge.as_deref(), n.vlan), (Some("br1"), Some(100)));
        assert_eq!(n.ranges().len(), 2);
        assert_eq!(n.ranges()[0].to_string(), "10.200.5.0/24");
    }

    #[test]
    fn host_local_and_static_ranges_and_no_ipam() {
        let n = nad(
            r#"{"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.9.0.7/16"}]]}}"#,
        );
        assert_eq!(n.bridge.as_deref(), Some("cni0"));
        assert_eq!(n.ranges()[0].to_string(), "10.9.0.0/16");
        let n = nad(
            r#"{"type": "macvlan", "ipam": {"type": "static", "addresses": [{"address": "10.1.1.5/24"}]}}"#,
        );
        assert_eq!(n.ipam.as_ref().unwrap().kind, IpamKind::Static);
        assert_eq!(n.ranges()[0].to_string(), "10.1.1.0/24");
        assert_eq!(nad(r#"{"type": "macvlan"}"#).ipam, None);
        assert_eq!(nad("not json").plugin, None);
    }

    #[test]
    fn what_a_cluster_wide_pool_hands_out() {
        let n = nad(
            r#"{"type": "macvlan", "ipam": {"type": "whereabouts", "range": "192.168.2.225/28",
                "exclude": ["192.168.2.229/30", "192.168.2.236/32"]}}"#,
        );
        // .225 to .238 is 14, less .228-.231 (the /30 masked) and .236.
        assert_eq!(n.ipam.as_ref().unwrap().capacity, Some(14 - 4 - 1));
        let n = nad(
            r#"{"type": "bridge", "ipam": {"type": "whereabouts", "range": "10.0.0.0/20", "node_slice_size": "/24"}}"#,
        );
        assert_eq!(n.ipam.as_ref().unwrap().node_slices, Some((24, 16)));
        let n = nad(
            r#"{"type": "ovn-k8s-cni-overlay", "topology": "localnet", "subnets": "192.168.100.0/29"}"#,
        );
        let ipam = n.ipam.unwrap();
        assert_eq!((ipam.kind, ipam.capacity), (IpamKind::Ovn, Some(6)));
        assert_eq!(
            assignable(10, 20, &[(0, 12), (15, 15), (14, 16), (30, 40)]),
            5
        );
    }
}
