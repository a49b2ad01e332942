//! `migverify checkup` end to end against the replay API server: the
//! ConfigMap read, the NAD checked, the two bench pods created, their
//! status followed, the client's log read, the status written back.
//!
//! The replay server has no kubelet: [`Kubelet`] plays one. It runs each
//! pod the checkup creates as the real migverify with the pod's arguments,
//! inside the network namespace of the node the pod is pinned to (the lab's
//! virt-handler namespaces, where `migration0` is), reports the pod's
//! migration address as Multus would (network-status annotation), its
//! readiness, its end, and serves its output as the pod's log.
//!
//! Unprivileged: a bad field, a missing NAD, and the whole path on loopback.
//! In the lab (privileged, `flock /tmp/mvlab-test.lock`): across node A's
//! and node B's migration networks with the shaper at 200 Mbit/s, and an
//! unreachable server address.

mod support;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    process::{Child, Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use serde_json::{json, Value};
use support::{apiserver::ApiServer, privileged};
use verifier::{intent::budget::largest_fitting, lab::topology};

const NS: &str = "migverify";
const CM: &str = "mv-checkup";
const CM_PATH: &str = "/api/v1/namespaces/migverify/configmaps/mv-checkup";

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migverify-checkup-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn configmap(data: &[(&str, &str)]) -> Value {
    let data: BTreeMap<&str, &str> = data.iter().copied().collect();
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": { "name": CM, "namespace": NS },
        "data": data,
    })
}

fn nad() -> Value {
    json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "migration-network", "namespace": NS },
        "spec": { "config": r#"{"cniVersion":"0.3.1","type":"macvlan","master":"eth1","mode":"bridge","ipam":{"type":"whereabouts","range":"10.200.5.0/24"}}"# },
    })
}

/// How the fake kubelet places pods: node name -> (network namespace or
/// None for this one, the address Multus reports for migration0).
type Nodes = BTreeMap<String, (Option<String>, IpAddr)>;

/// Runs the checkup's pods; stops (and kills them) when dropped.
struct Kubelet {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Every pod it ran: name -> its arguments.
    ran: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
}

struct Running {
    uid: String,
    child: Child,
    log: PathBuf,
    ready: bool,
}

impl Kubelet {
    fn start(server: Arc<ApiServer>, nodes: Nodes, dir: PathBuf) -> Kubelet {
        let stop = Arc::new(AtomicBool::new(false));
        let ran = Arc::new(Mutex::new(BTreeMap::new()));
        let (stop2, ran2) = (stop.clone(), ran.clone());
        let thread = std::thread::spawn(move || {
            let mut running: BTreeMap<String, Running> = BTreeMap::new();
            while !stop2.load(Ordering::Relaxed) {
                for role in ["server", "client"] {
                    let name = format!("{CM}-{role}");
                    let path = format!("/api/v1/namespaces/{NS}/pods/{name}");
                    let pod = server.get(&path);
                    let uid = pod
                        .as_ref()
                        .and_then(|p| p["metadata"]["uid"].as_str().map(String::from));
                    // Deleted, or replaced by a new pod of the same name: kill.
                    if running
                        .get(&name)
                        .is_some_and(|r| Some(&r.uid) != uid.as_ref())
                    {
                        let mut gone = running.remove(&name).unwrap();
                        let _ = gone.child.kill();
                        let _ = gone.child.wait();
                    }
                    let Some(mut pod) = pod else { continue };
                    if !running.contains_key(&name) {
                        if pod["status"]["phase"].is_string() {
                            continue; // already ended
                        }
                        let r = Self::run_pod(&pod, &nodes, &dir, &name);
                        ran2.lock().unwrap().insert(name.clone(), Self::args(&pod));
                        let node = Self::node(&pod);
                        let address = nodes[&node].1;
                        pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/network-status"] = json!(json!([
                            {"name": "default", "interface": "eth0", "ips": ["10.128.0.9"], "default": true},
                            {"name": format!("{NS}/migration-network"), "interface": "migration0",
                             "ips": [address.to_string()]}
                        ])
                        .to_string());
                        pod["status"] = json!({"phase": "Running", "conditions": [
                            {"type": "PodScheduled", "status": "True"},
                            {"type": "Ready", "status": "False"}]});
                        server.apply(pod.clone());
                        running.insert(name.clone(), r);
                        continue;
                    }
                    let r = running.get_mut(&name).unwrap();
                    let log = std::fs::read_to_string(&r.log).unwrap_or_default();
                    // What `kubectl logs` shows of a running container.
                    server.set_log(NS, &name, &log);
                    if let Some(status) = r.child.try_wait().unwrap() {
                        let code = status.code().unwrap_or(137);
                        server.set_log(NS, &name, &log);
                        pod["status"] = json!({
                            "phase": if code == 0 { "Succeeded" } else { "Failed" },
                            "containerStatuses": [{"name": "bench", "image": "x", "imageID": "", "ready": false,
                                "restartCount": 0,
                                "state": {"terminated": {"exitCode": code,
                                    "reason": if code == 0 { "Completed" } else { "Error" }}}}]});
                        server.apply(pod);
                        running.remove(&name);
                    } else if !r.ready && (role == "client" || log.contains("listening")) {
                        // The readiness probe: the server listens.
                        r.ready = true;
                        pod["status"]["conditions"][1]["status"] = json!("True");
                        server.apply(pod);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            for (_, mut r) in running {
                let _ = r.child.kill();
                let _ = r.child.wait();
            }
        });
        Kubelet {
            stop,
            thread: Some(thread),
            ran,
        }
    }

    fn node(pod: &Value) -> String {
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"][0]["matchFields"][0]["values"][0]
            .as_str()
            .expect("the pod is pinned to a node")
            .to_string()
    }

    fn args(pod: &Value) -> Vec<String> {
        serde_json::from_value(pod["spec"]["containers"][0]["args"].clone()).unwrap()
    }

    /// The container's entrypoint is migverify (the image's ENTRYPOINT).
    fn run_pod(pod: &Value, nodes: &Nodes, dir: &std::path::Path, name: &str) -> Running {
        let annotation: Value = serde_json::from_str(
            pod["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
                .as_str()
                .expect("the pod asks for the migration network"),
        )
        .unwrap();
        assert_eq!(annotation[0]["interface"], "migration0");
        let (netns, _) = &nodes[&Self::node(pod)];
        let log = dir.join(format!("{name}.log"));
        let file = std::fs::File::create(&log).unwrap();
        let mut command = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_migverify")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_migverify")),
        };
        let child = command
            .args(Self::args(pod))
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("run the pod's command");
        Running {
            uid: pod["metadata"]["uid"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            child,
            log,
            ready: false,
        }
    }
}

impl Drop for Kubelet {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn checkup(server: &ApiServer, dir: &std::path::Path) -> Output {
    let kubeconfig = server.kubeconfig(dir);
    let out = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(["checkup", "--kubeconfig"])
        .arg(kubeconfig)
        .args([
            "--image",
            "registry.example.invalid/migverify/migverify:test",
            "-o",
            "json",
        ])
        .env("CONFIGMAP_NAME", CM)
        .env("CONFIGMAP_NAMESPACE", NS)
        .env("POD_NAME", "migverify-checkup-x1")
        .env("POD_UID", "uid-of-the-checkup-pod")
        .output()
        .expect("run migverify checkup");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The ConfigMap's data as the server holds it after the checkup.
fn data(server: &ApiServer) -> BTreeMap<String, String> {
    serde_json::from_value(server.get(CM_PATH).unwrap()["data"].clone()).unwrap()
}

/// The status keys the checkup wrote last (the final merge patch).
fn last_patch(server: &ApiServer) -> Value {
    server
        .writes()
        .into_iter()
        .rev()
        .find(|w| w.method == "PATCH" && w.path == CM_PATH)
        .expect("the checkup patched its ConfigMap")
        .body
}

fn base() -> Vec<(&'static str, &'static str)> {
    vec![
        ("spec.timeout", "2m"),
        (
            "spec.param.networkAttachmentDefinitionName",
            "migration-network",
        ),
        ("spec.param.sourceNode", "node-a"),
        ("spec.param.targetNode", "node-b"),
        ("spec.param.vmMemory", "1Gi"),
        ("spec.param.duration", "3s"),
    ]
}

#[test]
fn a_bad_field_is_named_in_the_failure_reason() {
    let dir = scratch("bad-field");
    let server = ApiServer::start();
    let mut fields = base();
    fields.push(("spec.param.vmMemory", "lots"));
    // A stale result of an earlier run, which must go.
    fields.push(("status.result.verdict", "PASS"));
    server.apply(configmap(&fields));
    let out = checkup(&server, &dir);
    assert_eq!(out.status.code(), Some(1));
    let data = data(&server);
    assert_eq!(data["status.succeeded"], "false");
    assert!(
        data["status.failureReason"]
            .starts_with("spec.param.vmMemory: \"lots\" is not a Kubernetes quantity"),
        "{data:#?}"
    );
    assert!(data.contains_key("status.startTimestamp"));
    assert!(data.contains_key("status.completionTimestamp"));
    assert!(
        !data.contains_key("status.result.verdict"),
        "stale results removed"
    );
    assert_eq!(data["spec.param.vmMemory"], "lots", "spec untouched");
    // No pod was created.
    assert!(!server.writes().iter().any(|w| w.path.contains("/pods")));
    // The JSON on stdout is the status written.
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed["status.succeeded"], "false");
}

#[test]
fn a_missing_nad_and_a_missing_configmap() {
    let dir = scratch("missing");
    let server = ApiServer::start();
    // No ConfigMap: nothing to write into, exit 2.
    let out = checkup(&server, &dir);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("ConfigMap migverify/mv-checkup: reading: 404"));
    server.apply(configmap(&base()));
    let out = checkup(&server, &dir);
    assert_eq!(out.status.code(), Some(1));
    let data = data(&server);
    assert_eq!(data["status.succeeded"], "false");
    assert_eq!(
        data["status.failureReason"],
        "spec.param.networkAttachmentDefinitionName: NetworkAttachmentDefinition migverify/migration-network not found"
    );
    assert_eq!(data["status.result.sourceNode"], "node-a");
}

/// Every pod request the checkup made, and the pods gone at the end.
fn assert_pods_cleaned_up(server: &ApiServer) {
    let writes = server.writes();
    let created: Vec<&str> = writes
        .iter()
        .filter(|w| w.method == "POST" && w.path.ends_with("/pods"))
        .map(|w| w.body["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(created, [format!("{CM}-server"), format!("{CM}-client")]);
    for w in writes.iter().filter(|w| w.method == "POST") {
        assert_eq!(
            w.body["metadata"]["ownerReferences"][0]["uid"],
            "uid-of-the-checkup-pod"
        );
    }
    for role in ["server", "client"] {
        assert!(
            server
                .get(&format!("/api/v1/namespaces/{NS}/pods/{CM}-{role}"))
                .is_none(),
            "{role} pod removed"
        );
    }
}

#[test]
fn the_whole_path_on_loopback() {
    let dir = scratch("loopback");
    let server = Arc::new(ApiServer::start());
    server.apply(nad());
    // A leftover of an earlier run: removed before the new pods.
    server.apply(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": format!("{CM}-client"), "namespace": NS},
        "spec": {"containers": [{"name": "bench", "image": "old"}]},
        "status": {"phase": "Succeeded"},
    }));
    server.apply(configmap(&base()));
    let loopback: IpAddr = "127.0.0.1".parse().unwrap();
    let nodes = Nodes::from([
        ("node-a".into(), (None, loopback)),
        ("node-b".into(), (None, loopback)),
    ]);
    let kubelet = Kubelet::start(server.clone(), nodes, dir.clone());
    let out = checkup(&server, &dir);
    let data = data(&server);
    drop(kubelet);
    assert_eq!(out.status.code(), Some(0), "{data:#?}");
    assert_eq!(data["status.succeeded"], "true");
    assert_eq!(data["status.failureReason"], "");
    assert_eq!(data["status.result.verdict"], "PASS");
    assert_eq!(data["status.result.rateSource"], "sender");
    assert_eq!(data["status.result.targetAddress"], "127.0.0.1:9440");
    assert_eq!(
        data["status.result.vmMemoryBytes"],
        (1u64 << 30).to_string()
    );
    assert_eq!(data["status.result.completionTimeoutSeconds"], "300");
    let p50: u64 = data["status.result.medianRateBitsPerSecond"]
        .parse()
        .unwrap();
    assert!(p50 > 100_000_000, "{p50}");
    assert_pods_cleaned_up(&server);
    let patch = last_patch(&server);
    assert_eq!(patch["data"]["status.succeeded"], "true");
    // The delete of the leftover came before the creates.
    let writes = server.writes();
    let delete = writes.iter().position(|w| w.method == "DELETE").unwrap();
    let create = writes.iter().position(|w| w.method == "POST").unwrap();
    assert!(delete < create);
}

/// The lab has fixed names: one at a time (and run the test binary under
/// `flock /tmp/mvlab-test.lock`, other suites use the same lab).
static LAB: Mutex<()> = Mutex::new(());

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// Builds the bench lab (shaped at 200 Mbit/s), runs `f`, tears it down.
fn in_lab<T>(f: impl FnOnce() -> T) -> T {
    let _lab = LAB.lock().unwrap_or_else(|p| p.into_inner());
    let out = migverify(&[
        "lab",
        "up",
        "--scenario",
        "bench",
        "--rate",
        "200",
        "--no-tls",
    ]);
    assert!(
        out.status.success(),
        "lab up: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let _ = migverify(&["lab", "down"]);
    result.unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn lab_nodes(target: IpAddr) -> Nodes {
    Nodes::from([
        (
            "node-a".into(),
            (
                Some(topology::NODE_A.virt_handler.to_string()),
                IpAddr::V4(topology::NODE_A.migration_v4),
            ),
        ),
        (
            "node-b".into(),
            (Some(topology::NODE_B.virt_handler.to_string()), target),
        ),
    ])
}

#[test]
fn lab_checkup_across_the_migration_networks_measures_the_shaper() {
    if !privileged("lab_checkup_across_the_migration_networks_measures_the_shaper") {
        return;
    }
    let dir = scratch("lab");
    let server = Arc::new(ApiServer::start());
    server.apply(nad());
    let mut fields = base();
    fields.extend([
        ("spec.param.duration", "5s"),
        ("spec.param.observeWire", "true"),
    ]);
    server.apply(configmap(&fields));
    let (out, data, ran) = in_lab(|| {
        let kubelet = Kubelet::start(
            server.clone(),
            lab_nodes(IpAddr::V4(topology::NODE_B.migration_v4)),
            dir.clone(),
        );
        let out = checkup(&server, &dir);
        let ran = kubelet.ran.lock().unwrap().clone();
        (out, data(&server), ran)
    });
    eprintln!("the ConfigMap after the checkup:\n{data:#?}");
    assert_eq!(out.status.code(), Some(0), "{data:#?}");
    assert_eq!(data["status.succeeded"], "true");
    assert_eq!(data["status.failureReason"], "");
    assert_eq!(data["status.result.verdict"], "PASS");
    // The client observed its own migration0: figures from the wire.
    assert_eq!(data["status.result.rateSource"], "wire");
    assert!(ran[&format!("{CM}-client")]
        .join(" ")
        .contains("--iface migration:migration0"));
    let target = format!("{}:9440", topology::NODE_B.migration_v4);
    assert_eq!(data["status.result.targetAddress"], target);
    // The shaper counts frames: 200 Mbit/s of 1514-byte frames carry
    // 1448 bytes of TCP payload each.
    let payload_limit = 200e6 * 1448.0 / 1514.0;
    let figure = |key: &str| -> f64 { data[&format!("status.result.{key}")].parse().unwrap() };
    for key in ["medianRateBitsPerSecond", "meanReceivedBitsPerSecond"] {
        let rate = figure(key);
        assert!(
            (rate - payload_limit).abs() <= payload_limit * 0.05,
            "{key} {rate} vs {payload_limit:.0}"
        );
    }
    // 1 GiB is 2 units of 10^9 bytes: 300 s at KubeVirt's 150 s/GiB.
    assert_eq!(figure("completionTimeoutSeconds"), 300.0);
    let p50 = figure("medianRateBitsPerSecond");
    let completion = figure("completionSecondsAtMedianRate");
    assert!(
        (completion - (1u64 << 33) as f64 / p50).abs() < 0.1,
        "{completion}"
    );
    let largest = largest_fitting(150, p50 as u64).map_or("any".to_string(), |b| b.to_string());
    assert_eq!(data["status.result.largestVmBytesAtMedianRate"], largest);
    // ceil(2^33 / 300) bits per second is the least rate for the VM.
    let min_rate = figure("minimumRateBitsPerSecond");
    assert_eq!(min_rate, ((1u64 << 33) as f64 / 300.0).ceil());
    assert_eq!(
        figure("parallelMigrationsSupported"),
        (p50 / min_rate).floor()
    );
    assert_pods_cleaned_up(&server);
}

#[test]
fn lab_checkup_with_an_unreachable_server_fails_with_a_reason() {
    if !privileged("lab_checkup_with_an_unreachable_server_fails_with_a_reason") {
        return;
    }
    let dir = scratch("lab-unreachable");
    let server = Arc::new(ApiServer::start());
    server.apply(nad());
    server.apply(configmap(&base()));
    // Multus reports an address on the migration network nobody holds.
    let nobody: IpAddr = match topology::NODE_B.migration_v4.octets() {
        [a, b, c, _] => IpAddr::from([a, b, c, 213]),
    };
    let (out, data) = in_lab(|| {
        let _kubelet = Kubelet::start(server.clone(), lab_nodes(nobody), dir.clone());
        let out = checkup(&server, &dir);
        (out, data(&server))
    });
    eprintln!("the ConfigMap after the checkup:\n{data:#?}");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(data["status.succeeded"], "false");
    let reason = &data["status.failureReason"];
    assert!(
        reason.starts_with(&format!(
            "the bench client pod {CM}-client ended with exit code 2 (Error) and no report"
        )) && reason.contains(&nobody.to_string()),
        "{reason}"
    );
    assert_pods_cleaned_up(&server);
}
