//! What VMI documents say: the endpoints their migration targets published
//! and the size KubeVirt budgets each by. They come as people have them:
//! a file (YAML or JSON, one object, several documents or a List, as `oc
//! get vmi -o yaml|json` prints them), standard input (`-`), or
//! `namespace/name` read through the Kubernetes API. `watch` reads them
//! again whenever they change: a migration publishes its target endpoints
//! when the target listens, and a file may not exist when watching starts.

use std::{
    collections::{BTreeMap, HashMap},
    fmt,
    io::Read as _,
    path::{Path, PathBuf},
    str::FromStr,
    time::SystemTime,
};

use anyhow::Context as _;
use serde_json::{json, Value};

use super::{Ended, VmSize};
use crate::config::{
    documents::{load_bytes, MAX_INPUT_BYTES},
    endpoints::{endpoints_from_vmi, vmi_id},
    Endpoint,
};

/// Where VMIs are read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmiSource {
    File(PathBuf),
    /// `-`: read once.
    Stdin,
    /// `namespace/name`, read through the Kubernetes API.
    Api {
        namespace: String,
        name: String,
    },
}

impl FromStr for VmiSource {
    type Err = String;

    /// `-` is standard input; a path that exists is a file; `NS/NAME`
    /// (two DNS labels, no file suffix) is a VMI in the API; anything else
    /// is a file (`watch` waits for it).
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.is_empty() {
            return Err("empty --vmi: give a file, `-` or NAMESPACE/NAME".into());
        }
        if text == "-" {
            return Ok(VmiSource::Stdin);
        }
        let path = Path::new(text);
        let label = |s: &str| {
            !s.is_empty()
                && s.len() <= 253
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
                && !s.starts_with(['-', '.'])
        };
        let suffix = [".json", ".yaml", ".yml"]
            .iter()
            .any(|suffix| text.ends_with(suffix));
        match text.split_once('/') {
            Some((namespace, name))
                if !path.exists() && !suffix && label(namespace) && label(name) =>
            {
                Ok(VmiSource::Api {
                    namespace: namespace.into(),
                    name: name.into(),
                })
            }
            _ => Ok(VmiSource::File(path.into())),
        }
    }
}

impl fmt::Display for VmiSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmiSource::File(path) => write!(f, "{}", path.display()),
            VmiSource::Stdin => f.write_str("-"),
            VmiSource::Api { namespace, name } => write!(f, "vmi {namespace}/{name}"),
        }
    }
}

/// Reads VMIs through the Kubernetes API for `NAMESPACE/NAME` sources
/// (implemented by `cluster::vmi`).
pub trait ApiReader {
    /// The VMI now, waiting for the answer; `None` when it does not exist.
    fn get(&mut self, namespace: &str, name: &str) -> anyhow::Result<Option<Value>>;
    /// The newest answer without waiting (asking again in the background);
    /// `None` before the first answer.
    fn latest(&mut self, namespace: &str, name: &str) -> Option<anyhow::Result<Option<Value>>>;
}

/// The VMIs in `bytes` (YAML or JSON; one object, several documents or a
/// List) as one value: the object itself, or a List of them.
pub fn parse(source: &str, bytes: &[u8]) -> anyhow::Result<Value> {
    let mut objects = load_bytes(source, bytes)?;
    if objects.len() == 1 {
        return Ok(objects.remove(0).value);
    }
    Ok(json!({
        "kind": "List",
        "items": objects.into_iter().map(|o| o.value).collect::<Vec<_>>(),
    }))
}

/// The VMIs of a document or List.
fn items(value: &Value) -> Vec<&Value> {
    match value["items"].as_array() {
        Some(items) if value["kind"].as_str().is_some_and(|k| k.ends_with("List")) => {
            items.iter().collect()
        }
        _ => vec![value],
    }
}

/// The size KubeVirt budgets each VMI by, keyed by the migration id its
/// endpoints carry (`namespace/name`).
pub fn sizes(value: &Value, source: &str) -> anyhow::Result<BTreeMap<String, VmSize>> {
    let mut sizes = BTreeMap::new();
    for (index, vmi) in items(value).into_iter().enumerate() {
        let id = vmi_id(vmi, index);
        if let Some(size) =
            VmSize::of_vmi(vmi).map_err(|why| anyhow::anyhow!("{source}: {id}: {why}"))?
        {
            sizes.insert(id, size);
        }
    }
    Ok(sizes)
}

/// How the migration of each VMI ended, where its `status.migrationState`
/// says (`completed` or `failed`, each omitted while false), by the VMI's
/// `namespace/name`.
pub fn ended(value: &Value) -> BTreeMap<String, Ended> {
    items(value)
        .into_iter()
        .enumerate()
        .filter_map(|(index, vmi)| {
            let state = &vmi["status"]["migrationState"];
            let ended = if state["completed"] == true {
                Ended::Completed
            } else if state["failed"] == true {
                Ended::Failed
            } else {
                return None;
            };
            Some((vmi_id(vmi, index), ended))
        })
        .collect()
}

/// How the migrations of `sources` ended, read again now (a file that
/// does not exist yet, and standard input, which reads once, say nothing).
pub fn ended_now(
    sources: &[VmiSource],
    mut api: Option<&mut dyn ApiReader>,
) -> anyhow::Result<BTreeMap<String, Ended>> {
    let mut all = BTreeMap::new();
    for source in sources {
        let value = match (source, api.as_mut()) {
            (VmiSource::File(path), _) if path.exists() => Some(read_now(source, &mut None)?),
            (VmiSource::Api { namespace, name }, Some(api)) => api.get(namespace, name)?,
            _ => None,
        };
        all.extend(value.as_ref().map(ended).unwrap_or_default());
    }
    Ok(all)
}

/// What the sources say now.
#[derive(Debug, Default)]
pub struct Loaded {
    pub endpoints: Vec<Endpoint>,
    /// Each VMI's size, by migration id.
    pub sizes: BTreeMap<String, VmSize>,
    /// VMIs waiting in KubeVirt's queue: marked for evacuation
    /// (`status.evacuationNodeName`), no target yet; `namespace/name`.
    pub queued: Vec<String>,
    /// How the migrations that ended did, where their VMI says.
    pub ended: BTreeMap<String, Ended>,
    /// The sources read, for messages.
    pub from: String,
}

fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    let limit = MAX_INPUT_BYTES as u64 + 1;
    if path == Path::new("-") {
        std::io::stdin().lock().take(limit).read_to_end(&mut bytes)
    } else {
        std::fs::File::open(path).and_then(|file| file.take(limit).read_to_end(&mut bytes))
    }
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(bytes)
}

/// The VMI `source` names, now.
fn read_now(source: &VmiSource, api: &mut Option<&mut dyn ApiReader>) -> anyhow::Result<Value> {
    match source {
        VmiSource::File(path) => parse(&path.display().to_string(), &read_bytes(path)?),
        VmiSource::Stdin => parse("-", &read_bytes(Path::new("-"))?),
        VmiSource::Api { namespace, name } => {
            let api = api.as_mut().with_context(|| {
                format!("{source}: reading a VMI from the API needs a cluster (--kubeconfig)")
            })?;
            api.get(namespace, name)?
                .with_context(|| format!("{source}: no such VirtualMachineInstance"))
        }
    }
}

/// The endpoints every VMI of `sources` published (each must have: a VMI
/// not migrating is an error), and each VMI's size.
pub fn published(
    sources: &[VmiSource],
    mut api: Option<&mut dyn ApiReader>,
) -> anyhow::Result<Loaded> {
    let mut loaded = Loaded::default();
    for source in sources {
        let value = read_now(source, &mut api)?;
        let name = source.to_string();
        loaded
            .endpoints
            .extend(endpoints_from_vmi(&value, Path::new(&name))?);
        loaded.sizes.extend(sizes(&value, &name)?);
    }
    loaded.from = sources
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    Ok(loaded)
}

/// The endpoints of the VMIs that are migrating (the others are waited
/// for), every VMI's size, how each migration ended where its VMI says,
/// and the VMIs queued for evacuation.
fn migrating(value: &mut Value, name: &str) -> anyhow::Result<Loaded> {
    let sizes = sizes(value, name)?;
    let how_ended = ended(value);
    let is_migrating = |vmi: &Value| {
        vmi.pointer("/status/migrationState/targetNodeAddress")
            .is_some_and(|a| !a.is_null())
    };
    let queued = items(value)
        .into_iter()
        .enumerate()
        .filter(|(_, vmi)| !is_migrating(vmi))
        .filter(|(_, vmi)| {
            vmi.pointer("/status/evacuationNodeName")
                .and_then(Value::as_str)
                .is_some_and(|node| !node.is_empty())
        })
        .map(|(index, vmi)| vmi_id(vmi, index))
        .collect();
    let endpoints = if let Some(items) = value.get_mut("items").and_then(Value::as_array_mut) {
        items.retain(is_migrating);
        endpoints_from_vmi(value, Path::new(name))?
    } else if is_migrating(value) {
        endpoints_from_vmi(value, Path::new(name))?
    } else {
        Vec::new()
    };
    Ok(Loaded {
        endpoints,
        sizes,
        queued,
        ended: how_ended,
        from: name.into(),
    })
}

/// What the sources said, as far as news goes: endpoints, sizes, the queue,
/// how migrations ended.
type Said = (
    Vec<Endpoint>,
    BTreeMap<String, VmSize>,
    Vec<String>,
    BTreeMap<String, Ended>,
);

/// What one source said when last read.
#[derive(Default)]
struct Seen {
    /// A file's modification time and length: a change of either is a new version.
    stamp: Option<(SystemTime, u64)>,
    /// An API answer, to tell a new version from the same one.
    value: Option<Value>,
    loaded: Option<Loaded>,
}

/// The `--vmi` sources `watch` follows, and what each said when last read.
pub struct VmiFiles {
    sources: Vec<VmiSource>,
    seen: HashMap<usize, Seen>,
    /// What the sources said last: a file rewritten with the same content
    /// (a loop of `oc get`) is no news.
    last: Option<Said>,
}

impl VmiFiles {
    pub fn new(sources: Vec<VmiSource>) -> Self {
        VmiFiles {
            sources,
            seen: HashMap::new(),
            last: None,
        }
    }

    /// The files that do not exist (yet) and the API objects not read yet.
    pub fn missing(&self) -> impl Iterator<Item = &VmiSource> {
        self.sources.iter().enumerate().filter_map(|(i, s)| {
            let absent = match s {
                VmiSource::File(path) => !path.exists(),
                VmiSource::Stdin => false,
                VmiSource::Api { .. } => self.seen.get(&i).is_none_or(|s| s.loaded.is_none()),
            };
            absent.then_some(s)
        })
    }

    /// Reads `index` again if it changed; whether it did.
    fn refresh(
        &mut self,
        index: usize,
        api: &mut Option<&mut dyn ApiReader>,
    ) -> anyhow::Result<bool> {
        let source = &self.sources[index];
        let seen = self.seen.entry(index).or_default();
        let name = source.to_string();
        let value = match source {
            VmiSource::File(path) => {
                let now = std::fs::metadata(path)
                    .ok()
                    .map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()));
                let before = std::mem::replace(&mut seen.stamp, now);
                if now.is_none() || before == now {
                    return Ok(false);
                }
                let bytes = read_bytes(path)?;
                if bytes.iter().all(u8::is_ascii_whitespace) {
                    // Being written (`oc get ... > FILE` truncates first): next time.
                    return Ok(false);
                }
                parse(&name, &bytes)?
            }
            VmiSource::Stdin if seen.loaded.is_some() => return Ok(false),
            VmiSource::Stdin => parse("-", &read_bytes(Path::new("-"))?)?,
            VmiSource::Api {
                namespace,
                name: vmi,
            } => {
                let Some(api) = api.as_mut() else {
                    anyhow::bail!("{source}: reading a VMI from the API needs a cluster");
                };
                match api.latest(namespace, vmi) {
                    None | Some(Ok(None)) => return Ok(false),
                    Some(Err(error)) => return Err(error),
                    Some(Ok(Some(value))) if seen.value.as_ref() == Some(&value) => {
                        return Ok(false)
                    }
                    Some(Ok(Some(value))) => {
                        seen.value = Some(value.clone());
                        value
                    }
                }
            }
        };
        seen.loaded = Some(migrating(&mut value.clone(), &name)?);
        Ok(true)
    }

    /// Everything the sources say, when what they say changed since the
    /// last call; `None` when it did not. A file that vanished keeps what
    /// it said (a finished migration's endpoints stay known).
    pub fn poll(&mut self, mut api: Option<&mut dyn ApiReader>) -> anyhow::Result<Option<Loaded>> {
        let mut changed = false;
        for index in 0..self.sources.len() {
            changed |= self.refresh(index, &mut api)?;
        }
        if !changed {
            return Ok(None);
        }
        let mut all = Loaded::default();
        let mut from = Vec::new();
        for (index, source) in self.sources.iter().enumerate() {
            if let Some(loaded) = self.seen.get(&index).and_then(|s| s.loaded.as_ref()) {
                all.endpoints.extend(loaded.endpoints.iter().cloned());
                all.sizes
                    .extend(loaded.sizes.iter().map(|(k, v)| (k.clone(), v.clone())));
                all.queued.extend(loaded.queued.iter().cloned());
                all.ended
                    .extend(loaded.ended.iter().map(|(k, v)| (k.clone(), *v)));
                from.push(source.to_string());
            }
        }
        all.from = from.join(", ");
        let now = (
            all.endpoints.clone(),
            all.sizes.clone(),
            all.queued.clone(),
            all.ended.clone(),
        );
        if self.last.as_ref() == Some(&now) {
            return Ok(None);
        }
        self.last = Some(now);
        Ok(Some(all))
    }
}

/// What a VMI's or VMIM's status says about its (last) migration, read as
/// KubeVirt writes it: the booleans are omitted when false, a VMIM may be
/// `Failed` with no `migrationState` at all.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrationStatus {
    /// A VMIM's `status.phase`.
    pub phase: Option<String>,
    /// Whether `status.migrationState` is there.
    pub has_state: bool,
    pub completed: bool,
    pub failed: bool,
    pub failure_reason: Option<String>,
    pub target_address: Option<String>,
    /// `migrationNetworkType`: `Pod` or `Migration` (KubeVirt >= 1.5).
    pub network_type: Option<String>,
    /// The types of the VMIM's conditions whose status is "True".
    pub conditions: Vec<String>,
}

/// VMIM phases after which nothing changes (`IsFinal` in KubeVirt).
pub const FINAL_PHASES: [&str; 2] = ["Succeeded", "Failed"];

impl MigrationStatus {
    pub fn read(object: &Value) -> MigrationStatus {
        let status = &object["status"];
        let state = &status["migrationState"];
        let text = |v: &Value| v.as_str().filter(|t| !t.is_empty()).map(str::to_string);
        MigrationStatus {
            phase: text(&status["phase"]),
            has_state: state.is_object(),
            completed: state["completed"] == Value::Bool(true),
            failed: state["failed"] == Value::Bool(true),
            failure_reason: text(&state["failureReason"]),
            target_address: text(&state["targetNodeAddress"]),
            network_type: text(&state["migrationNetworkType"]),
            conditions: status["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|c| c["status"] == "True")
                // Only the type's first word: pasted objects carry notes.
                .filter_map(|c| c["type"].as_str()?.split_whitespace().next())
                .map(str::to_string)
                .collect(),
        }
    }

    /// Whether a VMIM's phase is not a final one.
    pub fn unfinished(&self) -> bool {
        self.phase
            .as_deref()
            .is_some_and(|p| !FINAL_PHASES.contains(&p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmi(name: &str, memory: &str, port: Option<u16>) -> String {
        let state = match port {
            Some(port) => format!(
                r#""migrationState": {{ "targetNodeAddress": "10.200.5.12",
                    "targetDirectMigrationNodePorts": {{ "{port}": 49152 }} }}"#
            ),
            None => r#""phase": "Running""#.to_string(),
        };
        format!(
            r#"{{ "kind": "VirtualMachineInstance", "metadata": {{ "name": "{name}", "namespace": "ns" }},
                 "spec": {{ "domain": {{ "memory": {{ "guest": "{memory}" }} }} }}, "status": {{ {state} }} }}"#
        )
    }

    #[test]
    fn sources_are_files_stdin_or_api_names() {
        let parse = |s: &str| s.parse::<VmiSource>().unwrap();
        assert_eq!(parse("-"), VmiSource::Stdin);
        assert_eq!(
            parse("vms/fedora-1"),
            VmiSource::Api {
                namespace: "vms".into(),
                name: "fedora-1".into()
            }
        );
        for file in [
            "vmi.json",
            "out/vmi.yaml",
            "/tmp/x/y",
            "./a/b",
            "a/b/c",
            "A/b",
        ] {
            assert_eq!(parse(file), VmiSource::File(file.into()), "{file}");
        }
        assert!("".parse::<VmiSource>().is_err());
    }

    #[test]
    fn yaml_and_lists_give_each_vmi_its_size() {
        let yaml = "apiVersion: kubevirt.io/v1\nkind: VirtualMachineInstance\nmetadata:\n  name: a\n  namespace: ns\n\
                    spec:\n  domain:\n    memory:\n      guest: 2Gi\nstatus:\n  migrationState:\n    \
                    targetNodeAddress: 10.200.5.12\n    targetDirectMigrationNodePorts:\n      \"40000\": 49152\n";
        let value = parse("vmi.yaml", yaml.as_bytes()).unwrap();
        let endpoints = endpoints_from_vmi(&value, Path::new("vmi.yaml")).unwrap();
        assert_eq!(endpoints[0].migration.as_deref(), Some("ns/a"));
        assert_eq!(sizes(&value, "vmi.yaml").unwrap()["ns/a"].bytes, 2 << 30);

        let list = format!(
            r#"{{ "kind": "List", "items": [{}, {}] }}"#,
            vmi("a", "1Gi", Some(40000)),
            vmi("b", "4Gi", Some(40001))
        );
        let value = parse("list.json", list.as_bytes()).unwrap();
        let sizes = sizes(&value, "list.json").unwrap();
        assert_eq!(
            (sizes["ns/a"].bytes, sizes["ns/b"].bytes),
            (1 << 30, 4 << 30)
        );
        // Two YAML documents are a List too.
        let two = format!("{}\n---\n{}", vmi("a", "1Gi", None), vmi("b", "1Gi", None));
        assert_eq!(
            parse("two.yaml", two.as_bytes()).unwrap()["items"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_vmi_is_waited_for_and_read_again_when_it_says_something_new() {
        let dir = std::env::temp_dir().join(format!("migverify-watch-vmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmi.json");
        let mut files = VmiFiles::new(vec![VmiSource::File(path.clone())]);
        // Not there yet, then there but not migrating: nothing to load.
        assert!(files.poll(None).unwrap().is_none());
        assert_eq!(files.missing().count(), 1);
        std::fs::write(&path, vmi("vm", "1Gi", None)).unwrap();
        let waiting = files.poll(None).unwrap().expect("first version");
        assert!(waiting.endpoints.is_empty());
        assert_eq!(waiting.sizes["ns/vm"].bytes, 1 << 30);
        // The target listens: its endpoint arrives, once.
        std::fs::write(&path, vmi("vm", "1Gi", Some(40000))).unwrap();
        let loaded = files.poll(None).unwrap().expect("the endpoint");
        assert_eq!(
            loaded.endpoints[0].addr,
            "10.200.5.12:40000".parse().unwrap()
        );
        assert_eq!(loaded.endpoints[0].migration.as_deref(), Some("ns/vm"));
        std::fs::write(&path, format!("{}\n", vmi("vm", "1Gi", Some(40000)))).unwrap();
        assert!(
            files.poll(None).unwrap().is_none(),
            "same endpoints: no news"
        );
        // Garbage is an error naming the file.
        std::fs::write(&path, "{ not json").unwrap();
        let error = format!("{:#}", files.poll(None).expect_err("an error"));
        assert!(error.contains("vmi.json"), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn vmis_marked_for_evacuation_without_a_target_are_queued() {
        let dir = std::env::temp_dir().join(format!("migverify-queue-vmi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("vmi.json");
        let migrating: Value = serde_json::from_str(&vmi("vm", "1Gi", Some(40000))).unwrap();
        let mut queued: Value = serde_json::from_str(&vmi("vm3", "1Gi", None)).unwrap();
        queued["status"]["evacuationNodeName"] = "node-a".into();
        let list = serde_json::json!({ "kind": "List", "items": [migrating, queued] });
        std::fs::write(&path, list.to_string()).unwrap();
        let mut files = VmiFiles::new(vec![VmiSource::File(path.clone())]);
        let loaded = files.poll(None).unwrap().unwrap();
        assert_eq!(loaded.endpoints.len(), 1);
        assert_eq!(loaded.queued, ["ns/vm3"]);
        // It leaves the queue (its target listens): news, though the other
        // endpoints stay the same.
        let mut list = list;
        list["items"][1]["status"] = serde_json::json!({ "phase": "Running" });
        std::fs::write(&path, format!("{list}\n")).unwrap();
        let loaded = files.poll(None).unwrap().expect("the queue changed");
        assert!(loaded.queued.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    struct Replay(Option<Value>);

    impl ApiReader for Replay {
        fn get(&mut self, _: &str, _: &str) -> anyhow::Result<Option<Value>> {
            Ok(self.0.clone())
        }
        fn latest(&mut self, _: &str, _: &str) -> Option<anyhow::Result<Option<Value>>> {
            Some(Ok(self.0.clone()))
        }
    }

    #[test]
    fn api_sources_are_read_through_the_reader() {
        let source: VmiSource = "ns/vm".parse().unwrap();
        let mut api = Replay(Some(
            serde_json::from_str(&vmi("vm", "3Gi", Some(40000))).unwrap(),
        ));
        let loaded = published(std::slice::from_ref(&source), Some(&mut api)).unwrap();
        assert_eq!(loaded.endpoints.len(), 1);
        assert_eq!(loaded.sizes["ns/vm"].bytes, 3 << 30);
        let mut files = VmiFiles::new(vec![source.clone()]);
        assert!(files.poll(Some(&mut api)).unwrap().is_some());
        assert!(files.poll(Some(&mut api)).unwrap().is_none(), "same answer");
        let error = published(&[source], Some(&mut Replay(None))).unwrap_err();
        assert!(format!("{error:#}").contains("no such"), "{error:#}");
    }
}
