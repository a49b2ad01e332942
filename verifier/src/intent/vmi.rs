//! What a VMI document says: the endpoints its migration target published
//! and the size KubeVirt budgets it by. `watch` reads the files again
//! whenever they change: a migration publishes its target endpoints when
//! the target listens, and the file may not exist when watching starts.

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
    time::SystemTime,
};

use anyhow::Context as _;
use serde_json::Value;

use super::{Ended, VmSize};
use crate::config::{
    endpoints::{endpoints_from_vmi, read_json},
    Endpoint,
};

/// What the files say now.
pub struct Loaded {
    pub endpoints: Vec<Endpoint>,
    pub size: Option<VmSize>,
    /// The files read, for messages.
    pub from: String,
}

/// The `--vmi` files and what each looked like when last read.
pub struct VmiFiles {
    paths: Vec<PathBuf>,
    /// Modification time and length: a change of either is a new version.
    seen: HashMap<PathBuf, Option<(SystemTime, u64)>>,
    /// What the files said last: a file rewritten with the same content
    /// (a loop of `oc get`) is no news.
    last: Option<Vec<Endpoint>>,
}

impl VmiFiles {
    pub fn new(paths: Vec<PathBuf>) -> Self {
        VmiFiles {
            paths,
            seen: HashMap::new(),
            last: None,
        }
    }

    /// The files that do not exist (yet).
    pub fn missing(&self) -> impl Iterator<Item = &PathBuf> {
        self.paths.iter().filter(|p| !p.exists())
    }

    /// Everything the files say, when what they say changed since the last
    /// call; `None` when it did not. A file that vanished keeps what it said
    /// (a finished migration's endpoints stay known).
    pub fn poll(&mut self) -> anyhow::Result<Option<Loaded>> {
        let mut changed = false;
        for path in &self.paths {
            let now = std::fs::metadata(path)
                .ok()
                .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
            let before = self.seen.insert(path.clone(), now);
            changed |= now.is_some() && before.flatten() != now;
        }
        if !changed {
            return Ok(None);
        }
        let mut loaded = Loaded {
            endpoints: Vec::new(),
            size: None,
            from: String::new(),
        };
        let mut from = Vec::new();
        for path in self.paths.iter().filter(|p| p.exists()) {
            let (endpoints, size) = read(path)?;
            loaded.endpoints.extend(endpoints);
            loaded.size = loaded.size.or(size);
            from.push(path.display().to_string());
        }
        loaded.from = from.join(", ");
        if self.last.as_ref() == Some(&loaded.endpoints) {
            return Ok(None);
        }
        self.last = Some(loaded.endpoints.clone());
        Ok(Some(loaded))
    }
}

/// The endpoints every VMI in a file published (each must have: a VMI not
/// migrating is an error), and the size KubeVirt budgets the first one by.
pub fn published(path: &Path) -> anyhow::Result<(Vec<Endpoint>, Option<VmSize>)> {
    let value = read_json(path)?;
    Ok((endpoints_from_vmi(&value, path)?, size(&value, path)?))
}

/// How the migration of each VMI in a file ended, where its
/// `status.migrationState` says (`completed` or `failed`, each omitted
/// while false), by the VMI's `namespace/name`.
pub fn ended(path: &Path) -> anyhow::Result<BTreeMap<String, Ended>> {
    let value = read_json(path)?;
    let items = match value["items"].as_array() {
        Some(items) => items.iter().collect(),
        None => vec![&value],
    };
    Ok(items
        .into_iter()
        .filter_map(|vmi| {
            let state = &vmi["status"]["migrationState"];
            let ended = if state["completed"] == true {
                Ended::Completed
            } else if state["failed"] == true {
                Ended::Failed
            } else {
                return None;
            };
            let id = format!(
                "{}/{}",
                vmi["metadata"]["namespace"].as_str()?,
                vmi["metadata"]["name"].as_str()?
            );
            Some((id, ended))
        })
        .collect())
}

/// The size KubeVirt budgets the first VMI of a document (or List) by.
fn size(value: &Value, path: &Path) -> anyhow::Result<Option<VmSize>> {
    let first = if value["kind"] == "List" {
        &value["items"][0]
    } else {
        value
    };
    VmSize::of_vmi(first).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

/// The endpoints of the VMIs that are migrating (the others are waited
/// for), and the size KubeVirt budgets the first one by.
fn read(path: &Path) -> anyhow::Result<(Vec<Endpoint>, Option<VmSize>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.trim().is_empty() {
        // Being written (`oc get ... > FILE` truncates first): next time.
        return Ok((Vec::new(), None));
    }
    let mut value: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not valid JSON", path.display()))?;
    let size = size(&value, path)?;
    let migrating = |vmi: &Value| {
        vmi.pointer("/status/migrationState/targetNodeAddress")
            .is_some_and(|a| !a.is_null())
    };
    if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        items.retain(migrating);
    } else if !migrating(&value) {
        return Ok((Vec::new(), size));
    }
    Ok((endpoints_from_vmi(&value, path)?, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi(port: Option<u16>) -> String {
        let state = match port {
            Some(port) => format!(
                r#""migrationState": {{ "targetNodeAddress": "10.200.5.12",
                    "targetDirectMigrationNodePorts": {{ "{port}": 49152 }} }}"#
            ),
            None => r#""phase": "Running""#.to_string(),
        };
        format!(
            r#"{{ "kind": "VirtualMachineInstance", "metadata": {{ "name": "vm", "namespace": "ns" }},
                 "spec": {{ "domain": {{ "memory": {{ "guest": "1Gi" }} }} }}, "status": {{ {state} }} }}"#
        )
    }

    #[test]
    fn a_vmi_is_waited_for_and_read_again_when_it_says_something_new() {
        let dir = std::env::temp_dir().join(format!("migverify-watch-vmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmi.json");
        let mut files = VmiFiles::new(vec![path.clone()]);
        // Not there yet, then there but not migrating: nothing to load.
        assert!(files.poll().unwrap().is_none());
        assert_eq!(files.missing().count(), 1);
        std::fs::write(&path, vmi(None)).unwrap();
        let waiting = files.poll().unwrap().expect("first version");
        assert!(waiting.endpoints.is_empty());
        assert_eq!(waiting.size.unwrap().bytes, 1 << 30);
        // The target listens: its endpoint arrives, once.
        std::fs::write(&path, vmi(Some(40000))).unwrap();
        let loaded = files.poll().unwrap().expect("the endpoint");
        assert_eq!(
            loaded.endpoints[0].addr,
            "10.200.5.12:40000".parse().unwrap()
        );
        assert_eq!(loaded.endpoints[0].migration.as_deref(), Some("ns/vm"));
        std::fs::write(&path, format!("{}\n", vmi(Some(40000)))).unwrap();
        assert!(files.poll().unwrap().is_none(), "same endpoints: no news");
        // Garbage is an error naming the file.
        std::fs::write(&path, "{ not json").unwrap();
        let error = format!("{:#}", files.poll().err().expect("an error"));
        assert!(error.contains("vmi.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
