//! Migration endpoints: where a target listens and what each port carries,
//! from VMI documents (`oc get vmi NAME -o json`, one object or a List) or
//! given on the command line; and migration network CIDRs.

use std::{
    fmt,
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    str::FromStr,
};

use serde_json::Value;
use verifier_ebpf::Channel;

/// A target endpoint and the channel it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub channel: Channel,
    /// Which migration it belongs to (`namespace/name` of the VMI), if known.
    pub migration: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: not valid JSON: {message}")]
    Json {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {object}: {message}")]
    Field {
        path: PathBuf,
        object: String,
        message: String,
    },
    #[error("{0}")]
    Flag(String),
}

/// KubeVirt's labels in `targetDirectMigrationNodePorts`.
pub fn channel_for_label(label: u64) -> Option<Channel> {
    match label {
        0 => Some(Channel::Control),
        49152 => Some(Channel::Memory),
        49153 => Some(Channel::Disk),
        _ => None,
    }
}

/// A JSON document from a file, as `oc get ... -o json` prints it.
pub fn read_json(path: &Path) -> Result<Value, InputError> {
    let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| InputError::Json {
        path: path.to_path_buf(),
        line: e.line(),
        column: e.column(),
        message: e.to_string(),
    })
}

/// The migration a VMI's endpoints belong to: `namespace/name`, as the
/// endpoints carry it (`?` for a missing namespace, `items[N]` for a
/// missing name).
pub fn vmi_id(vmi: &Value, index: usize) -> String {
    format!(
        "{}/{}",
        vmi["metadata"]["namespace"].as_str().unwrap_or("?"),
        vmi["metadata"]["name"]
            .as_str()
            .map_or_else(|| format!("items[{index}]"), str::to_string)
    )
}

/// The endpoints of a VMI document or a `List` of them.
pub fn endpoints_from_vmi(value: &Value, path: &Path) -> Result<Vec<Endpoint>, InputError> {
    let field = |object: String, message: String| InputError::Field {
        path: path.to_path_buf(),
        object,
        message,
    };
    let items: Vec<&Value> = match value["kind"].as_str() {
        Some("List") | Some("VirtualMachineInstanceList") => value["items"]
            .as_array()
            .map(|items| items.iter().collect())
            .unwrap_or_default(),
        Some("VirtualMachineInstance") => vec![value],
        Some(other) => {
            return Err(field(
                "document".into(),
                format!("kind {other} is not a VirtualMachineInstance"),
            ))
        }
        None => {
            return Err(field(
                "document".into(),
                "no `kind` (is this `oc get vmi -o json` output?)".into(),
            ))
        }
    };
    let mut endpoints = Vec::new();
    for (index, vmi) in items.iter().enumerate() {
        let name = format!("VirtualMachineInstance {}", vmi_id(vmi, index));
        let state = &vmi["status"]["migrationState"];
        if state.is_null() {
            return Err(field(
                name,
                "has no status.migrationState (no migration started yet?)".into(),
            ));
        }
        let address = state["targetNodeAddress"].as_str().ok_or_else(|| {
            field(
                name.clone(),
                "status.migrationState.targetNodeAddress is missing (target not ready yet?)".into(),
            )
        })?;
        let ip: IpAddr = address.parse().map_err(|_| {
            field(
                name.clone(),
                format!("status.migrationState.targetNodeAddress {address:?} is not an IP address"),
            )
        })?;
        let ports = state["targetDirectMigrationNodePorts"]
            .as_object()
            .ok_or_else(|| {
                field(
                    name.clone(),
                    "status.migrationState.targetDirectMigrationNodePorts is missing".into(),
                )
            })?;
        for (port, label) in ports {
            let at = format!("status.migrationState.targetDirectMigrationNodePorts[{port:?}]");
            let port: u16 =
                port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    field(name.clone(), format!("{at}: {port:?} is not a TCP port"))
                })?;
            let channel = label.as_u64().and_then(channel_for_label).ok_or_else(|| {
                field(
                    name.clone(),
                    format!("{at}: label {label} is none of 0, 49152, 49153"),
                )
            })?;
            endpoints.push(Endpoint {
                addr: SocketAddr::new(ip, port),
                channel,
                migration: Some(
                    name.trim_start_matches("VirtualMachineInstance ")
                        .to_string(),
                ),
            });
        }
    }
    Ok(endpoints)
}

/// `ADDR:PORT[=CHANNEL]` from the command line; IPv6 as `[ADDR]:PORT`.
impl FromStr for Endpoint {
    type Err = InputError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (addr, channel) = match spec.split_once('=') {
            Some((addr, channel)) => (addr, channel),
            None => (spec, "memory"),
        };
        let addr: SocketAddr = addr.parse().map_err(|_| {
            InputError::Flag(format!(
                "--endpoint {spec}: expected ADDR:PORT[=CHANNEL], [ADDR]:PORT for IPv6"
            ))
        })?;
        let Some(channel) = [Channel::Control, Channel::Memory, Channel::Disk]
            .into_iter()
            .find(|c| c.name() == channel)
        else {
            return Err(InputError::Flag(format!(
                "--endpoint {spec}: channel {channel:?} is none of control, memory, disk"
            )));
        };
        Ok(Endpoint {
            addr,
            channel,
            migration: None,
        })
    }
}

/// An address prefix such as `10.200.5.0/24` or `fd00:200:5::/64`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Cidr {
    /// The prefix with host bits cleared (`10.200.5.7/24` is in `10.200.5.0/24`).
    pub fn network(self) -> Cidr {
        let (first, _) = self.bounds();
        Cidr {
            addr: address_of(first, self.addr.is_ipv4()),
            prefix: self.prefix,
        }
    }

    /// First and last address of the prefix, as numbers.
    pub fn bounds(self) -> (u128, u128) {
        let width = if self.addr.is_ipv4() { 32 } else { 128 };
        let host_bits = width - u32::from(self.prefix);
        let host_mask = if host_bits == 128 {
            u128::MAX
        } else {
            (1u128 << host_bits) - 1
        };
        let n = number_of(self.addr);
        (n & !host_mask, n | host_mask)
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        fn bits(ip: IpAddr) -> (u128, u8) {
            match ip {
                IpAddr::V4(a) => (u128::from(u32::from(a)) << 96, 32),
                IpAddr::V6(a) => (u128::from(a), 128),
            }
        }
        let ((net, width), (addr, addr_width)) = (bits(self.addr), bits(ip));
        if width != addr_width {
            return false;
        }
        let mask = if self.prefix == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(self.prefix))
        };
        net & mask == addr & mask
    }
}

/// An address as a number (IPv4 in the low 32 bits).
pub fn number_of(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address a number stands for.
pub fn address_of(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4((n as u32).into())
    } else {
        IpAddr::V6(n.into())
    }
}

impl FromStr for Cidr {
    type Err = InputError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let bad = |why: &str| InputError::Flag(format!("CIDR {spec:?}: {why}"));
        let (addr, prefix) = spec.split_once('/').unwrap_or((spec, ""));
        let addr: IpAddr = addr.parse().map_err(|_| bad("not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| bad("prefix length out of range"))?
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn vmi(state: Value) -> Value {
        json!({
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": { "name": "vm1", "namespace": "prod" },
            "status": { "migrationState": state }
        })
    }

    #[test]
    fn reads_the_published_ports_with_their_channels() {
        let doc = vmi(json!({
            "targetNodeAddress": "10.200.5.12",
            "targetDirectMigrationNodePorts": { "41000": 0, "41001": 49152, "41002": 49153 }
        }));
        let mut endpoints = endpoints_from_vmi(&doc, Path::new("vmi.json")).unwrap();
        endpoints.sort_by_key(|e| e.addr);
        let summary: Vec<_> = endpoints
            .iter()
            .map(|e| (e.addr.to_string(), e.channel))
            .collect();
        assert_eq!(
            summary,
            [
                ("10.200.5.12:41000".to_string(), Channel::Control),
                ("10.200.5.12:41001".to_string(), Channel::Memory),
                ("10.200.5.12:41002".to_string(), Channel::Disk),
            ]
        );
        assert_eq!(endpoints[0].migration.as_deref(), Some("prod/vm1"));
    }

    #[test]
    fn reads_every_item_of_a_list() {
        let one = vmi(
            json!({ "targetNodeAddress": "fd00::2", "targetDirectMigrationNodePorts": { "5000": 49152 } }),
        );
        let list = json!({ "kind": "List", "items": [one.clone(), one] });
        assert_eq!(endpoints_from_vmi(&list, Path::new("x")).unwrap().len(), 2);
    }

    #[test]
    fn bad_documents_name_the_file_object_and_field() {
        let path = Path::new("vmi.json");
        let err = |doc: Value| endpoints_from_vmi(&doc, path).unwrap_err().to_string();
        assert_eq!(
            err(json!({ "kind": "VirtualMachineInstance", "metadata": { "name": "vm1", "namespace": "prod" } })),
            "vmi.json: VirtualMachineInstance prod/vm1: has no status.migrationState (no migration started yet?)"
        );
        assert!(err(vmi(json!({ "targetNodeAddress": "node-b" })))
            .contains("\"node-b\" is not an IP address"));
        assert!(err(vmi(
            json!({ "targetNodeAddress": "10.0.0.1", "targetDirectMigrationNodePorts": { "x": 0 } })
        ))
        .contains("[\"x\"]: \"x\" is not a TCP port"));
        assert!(err(vmi(
            json!({ "targetNodeAddress": "10.0.0.1", "targetDirectMigrationNodePorts": { "1": 7 } })
        ))
        .contains("label 7 is none of 0, 49152, 49153"));
        assert!(err(json!({ "kind": "Pod" })).contains("kind Pod is not a VirtualMachineInstance"));
    }

    #[test]
    fn malformed_json_names_line_and_column() {
        let dir = std::env::temp_dir().join(format!("migverify-vmi-{}", std::process::id()));
        std::fs::write(&dir, "{\n  \"kind\": \n}").unwrap();
        let error = read_json(&dir).unwrap_err().to_string();
        std::fs::remove_file(&dir).unwrap();
        assert!(error.contains(":3:1: not valid JSON"), "{error}");
    }

    #[test]
    fn endpoint_flags_and_cidrs_parse() {
        let e: Endpoint = "[fd00::2]:5000=disk".parse().unwrap();
        assert_eq!((e.addr.port(), e.channel), (5000, Channel::Disk));
        assert_eq!(
            "10.0.0.1:1".parse::<Endpoint>().unwrap().channel,
            Channel::Memory
        );
        assert!("10.0.0.1:1=video".parse::<Endpoint>().is_err());
        let cidr: Cidr = "10.200.5.0/24".parse().unwrap();
        assert!(cidr.contains("10.200.5.99".parse().unwrap()));
        assert!(!cidr.contains("10.200.6.1".parse().unwrap()));
        assert!(!cidr.contains("fd00::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("fd00::1".parse::<Cidr>().unwrap().prefix, 128);
    }
}
