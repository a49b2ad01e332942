//! The migration network: the NetworkAttachmentDefinition HyperConverged or
//! KubeVirt names, and what its CNI config sets up (the plugin, its master
//! or bridge, the VLAN and MTU, the ranges its IPAM hands out).
//!
//! Read as the components read it, and tolerant: a field of the wrong type
//! is left out here (`check` reports it). Field names in the CNI JSON are
//! matched ignoring case, as the plugins' Go `encoding/json` matches them.

use serde_json::{Map, Value};

use super::limits::MigrationConfig;
use crate::config::{documents::Object, Cidr};

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
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamKind {
    Whereabouts,
    HostLocal,
    Static,
    Dhcp,
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
                .map(Ipam::read);
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
        let maps = |key: &str| -> Vec<&Map<String, Value>> {
            match get(section, key) {
                Some(Value::Array(list)) => list.iter().filter_map(Value::as_object).collect(),
                _ => Vec::new(),
            }
        };
        match kind {
            IpamKind::Whereabouts => {
                let listed = maps("ipRanges");
                if get(section, "range").is_some() || listed.is_empty() {
                    add(str_of(section, "range"));
                }
                for entry in listed {
                    add(str_of(entry, "range"));
                }
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
        Ipam { kind, ranges }
    }
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
}
