//! End to end: `migverify agent` on both of the lab's nodes, fed by the
//! replay API server as KubeVirt would feed it. Each agent finds its
//! virt-handler's namespace from the pod IP the API gives, attaches there
//! and to the NAD's master, learns the migration from the VMI watch as the
//! target prepares, sees a real QEMU migration, and posts its verdict as an
//! Event on the VirtualMachineInstanceMigration.
//!
//! And the agent's least privilege: it runs with exactly the capabilities
//! the DaemonSet grants (CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE, the
//! bounding set cut with setpriv), and with any one fewer it stops at once
//! naming the missing one; the kernel's own refusals are shown beside.
//!
//! Privileged and serial: run under the lab lock,
//! `flock /tmp/migverify-lab.lock cargo test -p verifier --test agent -- --test-threads=1`.

mod support;

use std::{
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::{json, Value};
use support::{apiserver::ApiServer, privileged};
use verifier::lab::{self, LabConfig, Scenario};

/// The lab has fixed names: one at a time, whatever the harness does.
static LAB: Mutex<()> = Mutex::new(());

const MEMORY_MIB: u64 = 256;
const RESTARTED_UID: &str = "bbbbbbbb-0000-4000-8000-0000000000b2";
const VMIM_UID: &str = "5d7e0c1a-7a52-4d0e-9a43-0c0f3b1e2a11";
const VMI_UID: &str = "0b4c1f0e-2f6a-4d55-8f1e-6a9d3c2b1a00";

/// Takes the lab lock and leaves a clean host behind, even on panic.
struct LabGuard<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let _ = lab::down();
    }
}

/// An agent process, its output in files; stopped (SIGTERM) on drop.
struct Agent {
    node: &'static str,
    child: Child,
    stderr: PathBuf,
    stdout: PathBuf,
}

impl Agent {
    fn start(node: &'static str, netns: &str, kubeconfig: &Path, dir: &Path) -> Agent {
        let stderr = dir.join(format!("{node}.stderr"));
        let stdout = dir.join(format!("{node}.stdout"));
        let child = Command::new(env!("CARGO_BIN_EXE_migverify"))
            .args(["agent", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--node-netns", netns, "--metrics-listen", "0"])
            .env("NODE_NAME", node)
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start migverify agent");
        Agent {
            node,
            child,
            stderr,
            stdout,
        }
    }

    fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.stderr) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Waits for a line of the log containing `what`.
    fn wait_for(&mut self, what: &str, timeout: Duration) -> String {
        self.wait_for_nth(what, 1, timeout)
    }

    /// Waits for the `n`th line of the log containing `what`.
    fn wait_for_nth(&mut self, what: &str, n: usize, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().filter(|l| l.contains(what)).nth(n - 1) {
                return line.to_string();
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "agent {} exited ({status}) before {what:?}:\n{}",
                    self.node,
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "agent {}: no {what:?} within {timeout:?}:\n{}",
                self.node,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then its exit status and the JSON lines it printed.
    fn stop(&mut self) -> (Option<i32>, Vec<Value>) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let lines = fs::read_to_string(&self.stdout)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
            .collect();
        (status, lines)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The cluster around the lab, as KubeVirt and Multus shape its objects:
/// the migration NAD (the lab's macvlan on eth1), the HyperConverged that
/// names it, virt-handler on each node with its pod IP, the VMI running on
/// node A and the migration object.
fn cluster(server: &ApiServer) {
    server.apply(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "migration-network", "namespace": "kubevirt" },
        "spec": { "config": json!({
            "cniVersion": "0.3.1", "name": "migration-network", "type": "macvlan",
            "master": "eth1", "mode": "bridge",
            "ipam": { "type": "whereabouts", "range": "10.200.5.0/24" },
        }).to_string() },
    }));
    server.apply(json!({
        "apiVersion": "hco.kubevirt.io/v1beta1", "kind": "HyperConverged",
        "metadata": { "name": "kubevirt-hyperconverged", "namespace": "kubevirt" },
        "spec": { "liveMigrationConfig": {
            "network": "migration-network", "completionTimeoutPerGiB": 150, "progressTimeout": 150,
            "parallelMigrationsPerCluster": 5, "parallelOutboundMigrationsPerNode": 2,
        } },
    }));
    for (node, ip, uid) in [
        (
            "node-a",
            "10.128.0.11",
            "aaaaaaaa-0000-4000-8000-000000000001",
        ),
        (
            "node-b",
            "10.128.0.12",
            "bbbbbbbb-0000-4000-8000-000000000002",
        ),
    ] {
        server.apply(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": { "name": format!("virt-handler-{node}"), "namespace": "kubevirt", "uid": uid,
                          "labels": { "kubevirt.io": "virt-handler", "app.kubernetes.io/component": "kubevirt" } },
            "spec": { "nodeName": node, "hostPID": true, "containers": [{ "name": "virt-handler" }] },
            "status": { "phase": "Running", "podIP": ip, "podIPs": [{ "ip": ip }] },
        }));
    }
    server.apply(vmi(None, "node-a"));
    server.apply(json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": { "name": "mvlab-vm-migration", "namespace": "default", "uid": VMIM_UID,
                      "labels": { "kubevirt.io/vmi-name": "mvlab-vm" } },
        "spec": { "vmiName": "mvlab-vm" },
        "status": { "phase": "Scheduling" },
    }));
}

/// The lab's VM as KubeVirt shows it: on `node`, with `state` as its
/// `status.migrationState` and the labels KubeVirt sets for it.
fn vmi(state: Option<Value>, node: &str) -> Value {
    let mut labels = json!({ "kubevirt.io/nodeName": node });
    let mut status = json!({ "phase": "Running", "nodeName": node });
    if let Some(state) = state {
        if state["completed"] != json!(true) && state["failed"] != json!(true) {
            labels["kubevirt.io/migrationTargetNodeName"] = state["targetNode"].clone();
        }
        status["migrationState"] = state;
    }
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": { "name": "mvlab-vm", "namespace": "default", "uid": VMI_UID, "labels": labels },
        "spec": { "domain": { "memory": { "guest": format!("{MEMORY_MIB}Mi") } } },
        "status": status,
    })
}

fn migration_state(extra: Value) -> Value {
    let mut state = json!({
        "migrationUid": VMIM_UID, "sourceNode": "node-a", "targetNode": "node-b",
        "targetPod": "virt-launcher-mvlab-vm-b", "mode": "PreCopy",
        "startTimestamp": "2026-01-01T00:00:01Z",
    });
    for (k, v) in extra.as_object().unwrap() {
        state[k] = v.clone();
    }
    state
}

/// Runs `scenario` with an agent per node; returns the Events posted and
/// each agent's verdict line.
fn run(scenario: Scenario, test: &str) -> Option<(Vec<Value>, Vec<Value>)> {
    if !privileged(test) {
        return None;
    }
    let _lab = LabGuard(LAB.lock().unwrap_or_else(|p| p.into_inner()));
    let mut config: LabConfig = scenario.config();
    // The lab's default: about a second over the migration network, ten
    // throughput intervals, enough for a median that is not the ramp-up.
    config.memory_mib = MEMORY_MIB;
    let progress = |line: &str| eprintln!("lab: {line}");
    lab::up(&config, &progress).expect("lab up");
    let dir = std::env::temp_dir().join(format!("migverify-agent-{}-{test}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let server = ApiServer::start();
    cluster(&server);
    let kubeconfig = server.kubeconfig(&dir);
    let mut agents = [
        Agent::start("node-a", "mvlab-node-a", &kubeconfig, &dir),
        Agent::start("node-b", "mvlab-node-b", &kubeconfig, &dir),
    ];
    // Each agent finds its own virt-handler's namespace from the pod IP.
    for (agent, vh) in agents.iter_mut().zip(["mvlab-vh-a", "mvlab-vh-b"]) {
        let line = agent.wait_for("is in network namespace", Duration::from_secs(30));
        assert!(line.contains(&format!("network namespace {vh} ")), "{line}");
        eprintln!("{}: {line}", agent.node);
        let primary = agent.wait_for(
            &format!("attached to primary:eth0@{vh}"),
            Duration::from_secs(10),
        );
        eprintln!("{}: {primary}", agent.node);
        agent.wait_for(
            &format!("attached to migration:eth1@mvlab-node-{}", &agent.node[5..]),
            Duration::from_secs(10),
        );
        if config.migration0 {
            agent.wait_for(
                &format!("attached to migration:migration0@{vh}"),
                Duration::from_secs(10),
            );
        } else {
            agent.wait_for(
                &format!("has no migration0 in {vh}"),
                Duration::from_secs(10),
            );
        }
    }
    // virt-handler on node B restarts (as a migration-network change does):
    // a new pod, the agent attaches again.
    let mut pod = server
        .get("/api/v1/namespaces/kubevirt/pods/virt-handler-node-b")
        .unwrap();
    pod["metadata"]["uid"] = json!(RESTARTED_UID);
    pod["metadata"]["resourceVersion"] = Value::Null;
    server.apply(pod);
    agents[1].wait_for(
        "virt-handler changed: attaching again",
        Duration::from_secs(10),
    );
    let line = agents[1].wait_for(
        &format!("(uid {RESTARTED_UID}, 10.128.0.12) is in network namespace mvlab-vh-b"),
        Duration::from_secs(10),
    );
    eprintln!("node-b: {line}");
    agents[1].wait_for_nth(
        "attached to migration:eth1@mvlab-node-b",
        2,
        Duration::from_secs(10),
    );
    // The target prepares: KubeVirt labels the VMI for node B.
    server.apply(vmi(Some(migration_state(json!({}))), "node-a"));
    let outcome = lab::migrate(&config, &progress, &mut |published| {
        // The target listens: KubeVirt publishes where, in the VMI.
        let state = &published["status"]["migrationState"];
        server.apply(vmi(
            Some(migration_state(json!({
                "targetNodeAddress": state["targetNodeAddress"],
                "targetDirectMigrationNodePorts": state["targetDirectMigrationNodePorts"],
            }))),
            "node-a",
        ));
        // Both agents have the endpoints in the kernel before the source
        // sends a byte.
        for agent in agents.iter_mut() {
            let line = agent.wait_for(
                &format!(
                    "endpoints of default/mvlab-vm/{VMIM_UID} loaded: {}",
                    state["targetNodeAddress"].as_str().unwrap()
                ),
                Duration::from_secs(10),
            );
            eprintln!("{}: {line}", agent.node);
        }
        Ok(())
    })
    .expect("the lab migration runs");
    eprintln!(
        "lab: QEMU {} {} bytes in {} ms",
        outcome.status, outcome.transferred_bytes, outcome.total_time_ms
    );
    assert_eq!(outcome.status, "completed");
    // KubeVirt records the end: the VMI runs on node B, the migration succeeded.
    server.apply(vmi(
        Some(migration_state(
            json!({ "completed": true, "endTimestamp": "2026-01-01T00:00:09Z" }),
        )),
        "node-b",
    ));
    let mut vmim = server.get("/apis/kubevirt.io/v1/namespaces/default/virtualmachineinstancemigrations/mvlab-vm-migration").unwrap();
    vmim["status"]["phase"] = json!("Succeeded");
    vmim["metadata"]["resourceVersion"] = Value::Null;
    server.apply(vmim);
    let events = |writes: &[support::apiserver::Write]| -> Vec<Value> {
        writes
            .iter()
            .filter(|w| {
                w.method == "POST"
                    && w.path == "/api/v1/namespaces/default/events"
                    && w.status == 201
            })
            .map(|w| w.body.clone())
            .collect()
    };
    let writes = server.wait_for_writes(Duration::from_secs(30), |w| events(w).len() >= 2);
    let mut verdicts = Vec::new();
    for agent in agents.iter_mut() {
        let (status, lines) = agent.stop();
        assert_eq!(
            status,
            Some(0),
            "agent {} exit status:\n{}",
            agent.node,
            agent.log()
        );
        verdicts.extend(lines);
    }
    let writes = writes.unwrap_or_else(|| {
        panic!(
            "two Events within 30 s; got {:?}\nnode-a:\n{}\nnode-b:\n{}",
            server.writes(),
            agents[0].log(),
            agents[1].log()
        )
    });
    let _ = fs::remove_dir_all(&dir);
    Some((events(&writes), verdicts))
}

/// The checks both scenarios share: one Event per node on the VMIM, and
/// a verdict line per node with the migration's payload.
fn check(events: &[Value], verdicts: &[Value], reason: &str, event_type: &str) {
    assert_eq!(events.len(), 2, "{events:#?}");
    let mut hosts: Vec<&str> = events
        .iter()
        .map(|e| e["source"]["host"].as_str().unwrap())
        .collect();
    hosts.sort();
    assert_eq!(hosts, ["node-a", "node-b"]);
    for event in events {
        eprintln!(
            "Event: {} {} {}",
            event["type"], event["reason"], event["message"]
        );
        assert_eq!(event["reason"], reason, "{event:#}");
        assert_eq!(event["type"], event_type, "{event:#}");
        let involved = &event["involvedObject"];
        assert_eq!(involved["kind"], "VirtualMachineInstanceMigration");
        assert_eq!(involved["name"], "mvlab-vm-migration");
        assert_eq!(involved["uid"], VMIM_UID);
        assert_eq!(event["reportingComponent"], "migverify-agent");
    }
    assert_eq!(verdicts.len(), 2, "{verdicts:#?}");

    for verdict in verdicts {
        assert_eq!(verdict["kind"], "verdict");
        assert_eq!(verdict["outcome"], "completed");
        assert_eq!(verdict["vmi"], "default/mvlab-vm");
        let migration = &verdict["report"]["migrations"][0];
        let payload = migration["payload_bytes"].as_u64().unwrap();
        // The random guest memory crossed, seen from each side.
        assert!(
            payload > MEMORY_MIB << 20,
            "{}: payload {payload}",
            verdict["node"]
        );
        eprintln!(
            "{} ({}): {} payload {} bytes, by role {}, p50 {} bit/s, RTT p50 {} us ({} samples)",
            verdict["node"],
            verdict["side"],
            verdict["report"]["verdict"],
            payload,
            migration["bytes_by_role"],
            migration["throughput_bps"]["p50"],
            migration["rtt_us"]["p50"],
            migration["rtt_us"]["samples"]
        );
    }
}

#[test]
fn agents_verify_the_secondary_network_and_post_migration_network_verified() {
    let Some((events, verdicts)) = run(Scenario::Secondary, "agent_secondary") else {
        return;
    };
    check(&events, &verdicts, "MigrationNetworkVerified", "Normal");
    for verdict in &verdicts {
        let roles = &verdict["report"]["migrations"][0]["bytes_by_role"];
        assert_eq!(roles["primary"], 0, "{verdict:#}");
        assert!(roles["migration"].as_u64().unwrap() > MEMORY_MIB << 20);
    }
}

#[test]
fn agents_catch_the_pod_network_fallback_and_post_migration_network_fallback() {
    let Some((events, verdicts)) = run(Scenario::PodNetworkFallback, "agent_fallback") else {
        return;
    };
    check(&events, &verdicts, "MigrationNetworkFallback", "Warning");
    for verdict in &verdicts {
        let report = &verdict["report"];
        assert_eq!(report["verdict"], "FAIL");
        let ids: Vec<&str> = report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(&"fallback.primary-network"), "{ids:?}");
        assert!(
            report["migrations"][0]["bytes_by_role"]["primary"]
                .as_u64()
                .unwrap()
                > MEMORY_MIB << 20
        );
    }
    for event in &events {
        assert!(
            event["message"]
                .as_str()
                .unwrap()
                .starts_with("FAIL on node-"),
            "{event:#}"
        );
    }
}

/// The agent's capabilities as setpriv names them (no CAP_ prefix, lower case).
fn agent_caps() -> Vec<String> {
    verifier::dataplane::privileges::AGENT
        .iter()
        .map(|need| {
            need.capability
                .name()
                .trim_start_matches("CAP_")
                .to_lowercase()
        })
        .collect()
}

/// `migverify ARGS` with the bounding set cut to `caps` (root gets exactly
/// these, as a container whose securityContext drops ALL and adds them).
fn with_caps(caps: &[String], args: &[&str]) -> Command {
    let bounding: String = std::iter::once("-all".to_string())
        .chain(caps.iter().map(|c| format!("+{c}")))
        .collect::<Vec<_>>()
        .join(",");
    let mut command = Command::new("setpriv");
    command
        .arg(format!("--bounding-set={bounding}"))
        .args(["--inh-caps=-all", "--"])
        .arg(env!("CARGO_BIN_EXE_migverify"))
        .args(args);
    command
}

/// A root process with every capability in node A's namespace: what
/// `/proc/1/ns/net` (the node's init, through hostPID) is on a node.
struct NodeInit(Child);

impl NodeInit {
    fn start() -> NodeInit {
        NodeInit(
            Command::new("ip")
                .args(["netns", "exec", "mvlab-node-a", "sleep", "300"])
                .spawn()
                .expect("sleep in mvlab-node-a"),
        )
    }

    fn netns(&self) -> String {
        format!("/proc/{}/ns/net", self.0.id())
    }
}

impl Drop for NodeInit {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_agent_runs_with_its_three_capabilities_and_names_a_missing_one() {
    if !privileged("agent_caps") {
        return;
    }
    let _lab = LabGuard(LAB.lock().unwrap_or_else(|p| p.into_inner()));
    let mut config: LabConfig = Scenario::Secondary.config();
    config.memory_mib = 64;
    lab::up(&config, &|line: &str| eprintln!("lab: {line}")).expect("lab up");
    let dir = std::env::temp_dir().join(format!("migverify-agent-caps-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let server = ApiServer::start();
    cluster(&server);
    let kubeconfig = server.kubeconfig(&dir);
    let init = NodeInit::start();
    let node_netns = init.netns();
    let caps = agent_caps();
    eprintln!("the agent's capabilities: {caps:?}");
    let kubeconfig_arg = kubeconfig.to_str().unwrap();
    let agent_args = [
        "agent",
        "--kubeconfig",
        kubeconfig_arg,
        "--node-netns",
        &node_netns,
        // The clsact fallback of RHEL 9 / RHCOS: what needs CAP_NET_ADMIN.
        "--hooks",
        "clsact",
        "--duration",
        "60",
    ];

    // Exactly these: it finds virt-handler, attaches (clsact) in its
    // namespace and in the node's, and stops cleanly.
    let stderr = dir.join("agent.stderr");
    let child = with_caps(&caps, &agent_args)
        .env("NODE_NAME", "node-a")
        .stdout(fs::File::create(dir.join("agent.stdout")).unwrap())
        .stderr(fs::File::create(&stderr).unwrap())
        .spawn()
        .unwrap();
    let mut agent = Agent {
        node: "node-a",
        child,
        stderr,
        stdout: dir.join("agent.stdout"),
    };
    agent.wait_for(
        "is in network namespace mvlab-vh-a",
        Duration::from_secs(30),
    );
    agent.wait_for(
        "attached to migration:migration0@mvlab-vh-a",
        Duration::from_secs(20),
    );
    let line = agent.wait_for(
        &format!("attached to migration:eth1@{node_netns}"),
        Duration::from_secs(20),
    );
    eprintln!("with {caps:?}: {line}");
    let status = proc_status(agent.child.id());
    eprintln!("its capabilities: {status}");
    let qdiscs = |ns: &str, dev: &str| {
        support::sh(&["ip", "netns", "exec", ns, "tc", "qdisc", "show", "dev", dev])
    };
    assert!(qdiscs("mvlab-node-a", "eth1").contains("clsact"));
    let (code, _) = agent.stop();
    assert_eq!(code, Some(0), "{}", agent.log());
    assert!(
        !qdiscs("mvlab-node-a", "eth1").contains("clsact"),
        "the clsact qdisc went with the agent (rtnetlink, no tc)"
    );

    // One fewer: a one-line refusal naming it, before anything is attached.
    for missing in &caps {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let out = with_caps(&fewer, &agent_args)
            .env("NODE_NAME", "node-a")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        eprintln!(
            "without {missing}: exit {:?}: {}",
            out.status.code(),
            text.trim()
        );
        assert_eq!(out.status.code(), Some(2), "{text}");
        assert!(
            text.contains(&format!(
                "missing capability CAP_{}",
                missing.to_uppercase()
            )),
            "{text}"
        );
    }

    // And the kernel, asked without the agent's check in the way (the
    // observers alone, `counters`), refuses each for its reason.
    let kernel = |caps: &[&str], args: &[&str]| {
        let caps: Vec<String> = caps.iter().map(|c| c.to_string()).collect();
        let out = with_caps(&caps, args).output().unwrap();
        assert_ne!(out.status.code(), Some(0));
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    };
    let no_setns = kernel(
        &["bpf", "perfmon", "net_admin", "sys_ptrace"],
        &["counters", "-i", "eth0@mvlab-vh-a", "-d", "0.2"],
    );
    eprintln!("no CAP_SYS_ADMIN, the kernel: {no_setns}");
    assert!(no_setns.contains("cannot enter network namespace mvlab-vh-a: Operation not permitted"));
    let eth1 = format!("eth1@{node_netns}");
    let no_ptrace = kernel(
        &["sys_admin", "net_admin"],
        &["counters", "-i", &eth1, "-d", "0.2"],
    );
    eprintln!("no CAP_SYS_PTRACE, the kernel: {no_ptrace}");
    assert!(no_ptrace.contains("Permission denied"), "{no_ptrace}");
    let no_net_admin = kernel(
        &["sys_admin", "sys_ptrace"],
        &[
            "counters",
            "--hooks",
            "clsact",
            "-i",
            "eth0@mvlab-vh-a",
            "-d",
            "0.2",
        ],
    );
    eprintln!("no CAP_NET_ADMIN, the kernel: {no_net_admin}");
    assert!(
        no_net_admin.contains("Operation not permitted"),
        "{no_net_admin}"
    );
    let _ = fs::remove_dir_all(&dir);
}

/// The Cap* lines of a process's status.
fn proc_status(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("CapEff") || l.starts_with("CapBnd"))
        .collect::<Vec<_>>()
        .join(", ")
}
