//! The checkup's input: the `spec.*` keys of its ConfigMap's `data`, in the
//! kiagnose style. Every value is a string; every mistake names its key.

use std::{collections::BTreeMap, time::Duration};

use crate::config::quantity::Quantity;

/// The keys the checkup reads; any other `spec.` key is refused (a typo
/// would otherwise fall back to a default without a word).
pub const TIMEOUT: &str = "spec.timeout";
pub const NAD_NAME: &str = "spec.param.networkAttachmentDefinitionName";
pub const NAD_NAMESPACE: &str = "spec.param.networkAttachmentDefinitionNamespace";
pub const SOURCE_NODE: &str = "spec.param.sourceNode";
pub const TARGET_NODE: &str = "spec.param.targetNode";
pub const VM_MEMORY: &str = "spec.param.vmMemory";
pub const DURATION: &str = "spec.param.duration";
pub const STREAMS: &str = "spec.param.streams";
pub const PORT: &str = "spec.param.port";
pub const COMPLETION_TIMEOUT_PER_GIB: &str = "spec.param.completionTimeoutPerGiB";
pub const PROGRESS_TIMEOUT: &str = "spec.param.progressTimeout";
pub const BANDWIDTH_PER_MIGRATION: &str = "spec.param.bandwidthPerMigration";
pub const PARALLEL_OUTBOUND: &str = "spec.param.parallelOutboundMigrationsPerNode";
pub const OBSERVE_WIRE: &str = "spec.param.observeWire";

const KNOWN: &[&str] = &[
    TIMEOUT,
    NAD_NAME,
    NAD_NAMESPACE,
    SOURCE_NODE,
    TARGET_NODE,
    VM_MEMORY,
    DURATION,
    STREAMS,
    PORT,
    COMPLETION_TIMEOUT_PER_GIB,
    PROGRESS_TIMEOUT,
    BANDWIDTH_PER_MIGRATION,
    PARALLEL_OUTBOUND,
    OBSERVE_WIRE,
];

/// The bench's default length and streams (`bench run`'s defaults).
const DEFAULT_DURATION: Duration = Duration::from_secs(10);
const DEFAULT_STREAMS: u16 = 8;
pub const DEFAULT_PORT: u16 = 9440;

/// A field the checkup cannot use, named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

fn error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_string(),
        message: message.into(),
    }
}

/// What one checkup run does.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub timeout: Duration,
    pub nad_name: String,
    pub nad_namespace: String,
    pub source_node: String,
    pub target_node: String,
    /// Bytes; `None`: `bench run`'s default (10^9 bytes).
    pub vm_memory: Option<u64>,
    pub duration: Duration,
    pub streams: u16,
    pub port: u16,
    pub completion_timeout_per_gib: Option<u64>,
    pub progress_timeout: Option<u64>,
    /// MiB per second; `Some(0)` is unlimited, as KubeVirt's `0Mi`.
    pub bandwidth_per_migration_mib: Option<u64>,
    pub parallel_outbound_migrations_per_node: Option<u64>,
    /// Run the client privileged with the observers on its migration0: the
    /// rates then come from the wire instead of the sender.
    pub observe_wire: bool,
}

impl Config {
    /// Reads the `spec.*` keys of `data`; `namespace` is the ConfigMap's,
    /// the NAD's default.
    pub fn parse(data: &BTreeMap<String, String>, namespace: &str) -> Result<Config, FieldError> {
        if let Some(unknown) = data
            .keys()
            .find(|k| k.starts_with("spec.") && !KNOWN.contains(&k.as_str()))
        {
            return Err(error(
                unknown,
                format!("unknown field (the checkup reads {})", KNOWN.join(", ")),
            ));
        }
        let get = |key: &str| data.get(key).map(|v| v.trim()).filter(|v| !v.is_empty());
        let required = |key: &str| get(key).ok_or_else(|| error(key, "required"));
        let timeout = go_duration(required(TIMEOUT)?).map_err(|m| error(TIMEOUT, m))?;
        let nad_name = name(NAD_NAME, required(NAD_NAME)?, 253)?;
        let nad_namespace = match get(NAD_NAMESPACE) {
            Some(ns) => name(NAD_NAMESPACE, ns, 63)?,
            None => namespace.to_string(),
        };
        let source_node = name(SOURCE_NODE, required(SOURCE_NODE)?, 253)?;
        let target_node = name(TARGET_NODE, required(TARGET_NODE)?, 253)?;
        if source_node == target_node {
            return Err(error(
                TARGET_NODE,
                format!("{target_node:?} is also the source node: the bench must cross the network between two nodes"),
            ));
        }
        let vm_memory = get(VM_MEMORY)
            .map(|v| {
                let q: Quantity = v.parse().map_err(|e| error(VM_MEMORY, format!("{e}")))?;
                match q.value() {
                    Some(bytes) if bytes > 0 => u64::try_from(bytes)
                        .map_err(|_| error(VM_MEMORY, format!("{v:?} is too large"))),
                    _ => Err(error(
                        VM_MEMORY,
                        format!("{v:?}: give a positive size such as 16Gi"),
                    )),
                }
            })
            .transpose()?;
        let duration = match get(DURATION) {
            Some(v) => go_duration(v).map_err(|m| error(DURATION, m))?,
            None => DEFAULT_DURATION,
        };
        if duration >= timeout {
            return Err(error(
                DURATION,
                format!(
                    "{:?} does not fit in spec.timeout {:?} (the pods need time to start too)",
                    get(DURATION).unwrap_or("10s"),
                    get(TIMEOUT).unwrap_or_default()
                ),
            ));
        }
        let number = |key: &str, max: u64| -> Result<Option<u64>, FieldError> {
            get(key)
                .map(|v| match v.parse::<u64>() {
                    Ok(n) if n <= max => Ok(n),
                    _ => Err(error(
                        key,
                        format!("{v:?} is not a whole number from 0 to {max}"),
                    )),
                })
                .transpose()
        };
        let positive = |key: &str, max: u64| -> Result<Option<u64>, FieldError> {
            match number(key, max)? {
                Some(0) => Err(error(key, "must be positive")),
                n => Ok(n),
            }
        };
        let streams = number(STREAMS, 64)?.map_or(DEFAULT_STREAMS, |n| n as u16);
        let port = positive(PORT, 65535)?.map_or(DEFAULT_PORT, |n| n as u16);
        let completion_timeout_per_gib = positive(COMPLETION_TIMEOUT_PER_GIB, 1 << 32)?;
        let progress_timeout = positive(PROGRESS_TIMEOUT, 1 << 32)?;
        let parallel_outbound_migrations_per_node = positive(PARALLEL_OUTBOUND, 1 << 16)?;
        let bandwidth_per_migration_mib = get(BANDWIDTH_PER_MIGRATION)
            .map(|v| {
                let q: Quantity = v
                    .parse()
                    .map_err(|e| error(BANDWIDTH_PER_MIGRATION, format!("{e}")))?;
                match q.value() {
                    Some(0) => Ok(0),
                    Some(bytes) if bytes >= 1 << 20 => Ok((bytes >> 20) as u64),
                    _ => Err(error(
                        BANDWIDTH_PER_MIGRATION,
                        format!("{v:?}: bytes per second, 0Mi (unlimited) or at least 1Mi"),
                    )),
                }
            })
            .transpose()?;
        let observe_wire = match get(OBSERVE_WIRE) {
            None | Some("false") => false,
            Some("true") => true,
            Some(v) => return Err(error(OBSERVE_WIRE, format!("{v:?}: \"true\" or \"false\""))),
        };
        Ok(Config {
            timeout,
            nad_name,
            nad_namespace,
            source_node,
            target_node,
            vm_memory,
            duration,
            streams,
            port,
            completion_timeout_per_gib,
            progress_timeout,
            bandwidth_per_migration_mib,
            parallel_outbound_migrations_per_node,
            observe_wire,
        })
    }
}

/// A Kubernetes object name: lowercase letters, digits, '-' and '.',
/// starting and ending with a letter or digit.
fn name(field: &str, value: &str, max: usize) -> Result<String, FieldError> {
    let ok = !value.is_empty()
        && value.len() <= max
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && value.as_bytes()[0].is_ascii_alphanumeric()
        && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric();
    if ok {
        Ok(value.to_string())
    } else {
        Err(error(
            field,
            format!("{value:?} is not a Kubernetes object name"),
        ))
    }
}

/// A Go duration as Kubernetes writes them: `90s`, `10m`, `1h30m`, `1.5h`,
/// `500ms` (units h, m, s, ms, us, µs, ns). Positive only.
pub fn go_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("{text:?} is not a duration (such as 90s, 10m, 1h30m)");
    let mut rest = text;
    let mut total = 0f64;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .ok_or_else(bad)?;
        let (number, after) = rest.split_at(number_end);
        let value: f64 = number.parse().map_err(|_| bad())?;
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let seconds = match unit {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += value * seconds;
        rest = next;
    }
    Duration::try_from_secs_f64(total)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn minimal() -> BTreeMap<String, String> {
        data(&[
            (TIMEOUT, "5m"),
            (NAD_NAME, "migration-network"),
            (SOURCE_NODE, "worker-0"),
            (TARGET_NODE, "worker-1"),
        ])
    }

    #[test]
    fn durations_as_go_writes_them() {
        assert_eq!(go_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(go_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "10", "m", "5 m", "1d", "0s", "-5s", "1h-5m"] {
            assert!(go_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn defaults_and_a_full_config() {
        let config = Config::parse(&minimal(), "migverify").unwrap();
        assert_eq!(config.nad_namespace, "migverify");
        assert_eq!(config.duration, Duration::from_secs(10));
        assert_eq!((config.streams, config.port), (8, 9440));
        assert_eq!(config.vm_memory, None);
        assert!(!config.observe_wire);

        let mut full = minimal();
        full.extend(data(&[
            (NAD_NAMESPACE, "kubevirt"),
            (VM_MEMORY, "16Gi"),
            (DURATION, "30s"),
            (STREAMS, "0"),
            (PORT, "9500"),
            (COMPLETION_TIMEOUT_PER_GIB, "20"),
            (PROGRESS_TIMEOUT, "150"),
            (BANDWIDTH_PER_MIGRATION, "64Mi"),
            (PARALLEL_OUTBOUND, "1"),
            (OBSERVE_WIRE, "true"),
            ("status.succeeded", "true"),
        ]));
        let config = Config::parse(&full, "migverify").unwrap();
        assert_eq!(config.nad_namespace, "kubevirt");
        assert_eq!(config.vm_memory, Some(16 << 30));
        assert_eq!(config.duration, Duration::from_secs(30));
        assert_eq!((config.streams, config.port), (0, 9500));
        assert_eq!(config.completion_timeout_per_gib, Some(20));
        assert_eq!(config.bandwidth_per_migration_mib, Some(64));
        assert_eq!(config.parallel_outbound_migrations_per_node, Some(1));
        assert!(config.observe_wire);
    }

    #[test]
    fn every_bad_field_is_named() {
        let cases: &[(&str, &str)] = &[
            (TIMEOUT, "soon"),
            (NAD_NAME, "Migration_Net"),
            (SOURCE_NODE, ""),
            (TARGET_NODE, "worker-0"),
            (VM_MEMORY, "16 GiB"),
            (VM_MEMORY, "0"),
            (DURATION, "10m"),
            (STREAMS, "65"),
            (PORT, "0"),
            (COMPLETION_TIMEOUT_PER_GIB, "-1"),
            (BANDWIDTH_PER_MIGRATION, "100k"),
            (OBSERVE_WIRE, "yes"),
            ("spec.param.sourcenode", "worker-0"),
        ];
        for (key, value) in cases {
            let mut d = minimal();
            d.insert(key.to_string(), value.to_string());
            let e = Config::parse(&d, "ns").unwrap_err();
            assert_eq!(e.field, *key, "{key}={value:?}: {e}");
        }
        for key in [TIMEOUT, NAD_NAME, SOURCE_NODE, TARGET_NODE] {
            let mut d = minimal();
            d.remove(key);
            assert_eq!(
                Config::parse(&d, "ns").unwrap_err().to_string(),
                format!("{key}: required")
            );
        }
    }
}
