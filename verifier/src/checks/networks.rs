//! The cluster's main networks (pods, services, machines), which a
//! migration range must not overlap and which a migration must not use:
//! from flags, from the cluster Network config (`config.openshift.io/v1`,
//! or the operator's `operator.openshift.io/v1`), or from an
//! install-config's `networking` section.

use std::{fmt, net::IpAddr};

use serde_json::{Map, Value};

use super::{
    fields::Ctx,
    findings::{Findings, IPAM_RANGE_INVALID},
};
use crate::config::{documents::Object, Cidr};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MainRole {
    Pod,
    Service,
    Machine,
}

impl fmt::Display for MainRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MainRole::Pod => "pod network",
            MainRole::Service => "service network",
            MainRole::Machine => "machine network",
        })
    }
}

/// One main-network CIDR and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MainNetwork {
    pub role: MainRole,
    pub cidr: Cidr,
    /// `--pod-cidr`, or the object and field that named it.
    pub origin: String,
}

#[derive(Clone, Debug, Default)]
pub struct MainNetworks(pub Vec<MainNetwork>);

impl MainNetworks {
    pub fn add(&mut self, role: MainRole, cidr: Cidr, origin: String) {
        if !self.0.iter().any(|n| n.role == role && n.cidr == cidr) {
            self.0.push(MainNetwork { role, cidr, origin });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first main network that overlaps `cidr`.
    pub fn overlapping(&self, cidr: &Cidr) -> Option<&MainNetwork> {
        self.0.iter().find(|n| overlaps(&n.cidr, cidr))
    }

    pub fn containing(&self, ip: IpAddr) -> Option<&MainNetwork> {
        self.0.iter().find(|n| n.cidr.contains(ip))
    }
}

/// Whether two prefixes share any address.
pub fn overlaps(a: &Cidr, b: &Cidr) -> bool {
    a.contains(b.addr) || b.contains(a.addr)
}

/// Whether `kind` carries main networks migverify reads.
pub fn is_network_config(object: &Object) -> bool {
    let network_group = ["config.openshift.io/", "operator.openshift.io/"]
        .iter()
        .any(|group| object.api_version.starts_with(group));
    (object.kind == "Network" && network_group) || is_install_config(object)
}

/// An OpenShift install-config: no kind, a `networking` section.
pub fn is_install_config(object: &Object) -> bool {
    object.kind.is_empty()
        && object.value.get("networking").is_some()
        && object.value.get("baseDomain").is_some()
}

/// Reads the main networks an object declares into `networks`.
pub fn read(object: &Object, findings: &mut Findings, networks: &mut MainNetworks) {
    let mut ctx = Ctx {
        object,
        findings,
        reader: "the cluster network operator",
        api: true,
    };
    let Some(root) = object.value.as_object() else {
        return;
    };
    if is_install_config(object) {
        if let Some(networking) = ctx.map(root, "networking", "") {
            read_entries(&mut ctx, networking, "networking", networks);
        }
        return;
    }
    // The spec is what was asked for; the status what is in force.
    for section in ["spec", "status"] {
        if let Some(map) = ctx.map(root, section, "") {
            read_entries(&mut ctx, map, section, networks);
        }
    }
}

fn read_entries(ctx: &mut Ctx, map: &Map<String, Value>, path: &str, networks: &mut MainNetworks) {
    for (key, role) in [
        ("clusterNetwork", MainRole::Pod),
        ("serviceNetwork", MainRole::Service),
        ("machineNetwork", MainRole::Machine),
    ] {
        let list_path = format!("{path}.{key}");
        let Some(list) = ctx.list(map, key, path) else {
            continue;
        };
        for (n, entry) in list.iter().enumerate() {
            let entry_path = format!("{list_path}[{n}]");
            // serviceNetwork is a list of strings, the others of {cidr: ...}.
            let (text, at) = match entry {
                Value::String(text) => (Some(text.as_str()), entry_path),
                Value::Object(m) => (
                    ctx.str(m, "cidr", &entry_path),
                    format!("{entry_path}.cidr"),
                ),
                _ => (None, entry_path),
            };
            let Some(text) = text else { continue };
            match text.parse::<Cidr>() {
                Ok(cidr) => networks.add(role, cidr, format!("{} {at}", ctx.object.describe())),
                Err(_) => ctx.raise(
                    IPAM_RANGE_INVALID,
                    &at,
                    format!("`{at}` {text:?} is not a CIDR, so the {role} is unknown"),
                    format!("write the {role} as ADDRESS/PREFIX, e.g. 10.128.0.0/14"),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::documents::load_bytes;

    #[test]
    fn reads_cluster_network_config_and_install_config() {
        let text = "apiVersion: config.openshift.io/v1\nkind: Network\nmetadata: {name: cluster}\nspec:\n  \
                    clusterNetwork:\n  - cidr: 10.128.0.0/14\n    hostPrefix: 23\n  serviceNetwork:\n  - 172.30.0.0/16\n\
                    ---\nbaseDomain: example.com\nmetadata: {name: c}\nnetworking:\n  machineNetwork:\n  - cidr: 192.168.10.0/24\n";
        let objects = load_bytes("net.yaml", text.as_bytes()).unwrap();
        let (mut findings, mut networks) = (Findings::default(), MainNetworks::default());
        for object in &objects {
            assert!(is_network_config(object));
            read(object, &mut findings, &mut networks);
        }
        let roles: Vec<_> = networks
            .0
            .iter()
            .map(|n| (n.role, n.cidr.to_string()))
            .collect();
        assert_eq!(
            roles,
            [
                (MainRole::Pod, "10.128.0.0/14".to_string()),
                (MainRole::Service, "172.30.0.0/16".to_string()),
                (MainRole::Machine, "192.168.10.0/24".to_string()),
            ]
        );
        assert!(findings.0.is_empty());
        assert!(networks.containing("10.129.2.7".parse().unwrap()).is_some());
        assert!(networks
            .overlapping(&"10.200.5.0/24".parse().unwrap())
            .is_none());
        assert_eq!(
            networks
                .overlapping(&"10.0.0.0/8".parse().unwrap())
                .map(|n| n.role),
            Some(MainRole::Pod)
        );
    }
}
