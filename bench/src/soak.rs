//! The agent for a long run: `migverify agent` on the lab's node A against
//! the replay API server (the one the tests use), fed a thousand
//! migrations as KubeVirt would show them: VMIMs created, the VMI's
//! migrationState (target labelled, target listening, completed), VMIMs
//! succeeded and deleted, VMIs reused and deleted, the watches expired
//! (410) and listed again, and virt-handler restarted with its network
//! namespace changing between the lab's `mvlab-vh-a` and a second one.
//! One migration in `lab_every` carries real TCP traffic across the lab's
//! migration network (`bench run` to a `bench serve` on node B, at the
//! endpoints the VMI publishes). The agent's RSS, open file descriptors,
//! BPF links and metrics series are sampled throughout: they must level
//! off, not grow with the migrations seen.

#[path = "../../verifier/tests/support/apiserver/mod.rs"]
mod apiserver;

use std::{
    fs,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use verifier::lab::{self, Scenario};

use self::apiserver::ApiServer;

/// The second namespace virt-handler "restarts" into, with its pod IP.
const OTHER_NETNS: &str = "mvsoak-vh";
const OTHER_POD_IP: &str = "10.128.0.91";
const LAB_POD_IP: &str = "10.128.0.11";
const TARGET: &str = "10.200.5.12";
const BENCH_PORT: u16 = 19440;
const METRICS: &str = "127.0.0.1:19490";
/// Distinct VMIs the migrations cycle through: each is migrated again and again.
pub const VMIS: usize = 40;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakSample {
    pub migrations: usize,
    pub elapsed_s: f64,
    pub rss_kib: u64,
    pub fds: usize,
    /// BPF links the agent holds (its tcx attachments, two per interface).
    pub bpf_links: usize,
    /// `migverify_attached` series: interfaces observed.
    pub attached: usize,
    /// Samples on the metrics page.
    pub series: usize,
    /// Migrations with series on the page.
    pub migrations_on_page: usize,
    /// Verdict lines printed so far.
    pub verdicts: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SoakBench {
    pub date: String,
    pub kernel: String,
    pub migrations: usize,
    pub lab_migrations: usize,
    pub virt_handler_restarts: usize,
    pub watch_expiries: usize,
    pub retention_s: u64,
    pub seconds: f64,
    pub events_posted: usize,
    pub samples: Vec<SoakSample>,
}

/// Undoes what the soak made, whatever happens.
struct Cleanup {
    children: Vec<Child>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        for child in &mut self.children {
            // SAFETY: plain syscall on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", OTHER_NETNS])
            .status();
        let _ = lab::down();
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("ip").args(args).status()?;
    anyhow::ensure!(status.success(), "ip {args:?} failed");
    Ok(())
}

/// A namespace like a virt-handler pod's: eth0 with the pod IP, migration0.
fn other_namespace() -> anyhow::Result<()> {
    let _ = Command::new("ip")
        .args(["netns", "del", OTHER_NETNS])
        .status();
    ip(&["netns", "add", OTHER_NETNS])?;
    // veth pairs (this kernel has no dummy interfaces), both ends inside.
    for (name, peer, addr) in [
        ("eth0", "eth0-peer", OTHER_POD_IP),
        ("migration0", "mig0-peer", "10.200.5.91"),
    ] {
        ip(&[
            "-n",
            OTHER_NETNS,
            "link",
            "add",
            name,
            "type",
            "veth",
            "peer",
            "name",
            peer,
        ])?;
        ip(&[
            "-n",
            OTHER_NETNS,
            "addr",
            "add",
            &format!("{addr}/32"),
            "dev",
            name,
        ])?;
        for end in [name, peer] {
            ip(&["-n", OTHER_NETNS, "link", "set", end, "up"])?;
        }
    }
    Ok(())
}

fn handler(uid: usize, ip: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "virt-handler-node-a", "namespace": "kubevirt",
                      "uid": format!("aaaaaaaa-0000-4000-8000-{uid:012}"),
                      "labels": { "kubevirt.io": "virt-handler" } },
        "spec": { "nodeName": "node-a", "containers": [{ "name": "virt-handler" }] },
        "status": { "phase": "Running", "podIP": ip },
    })
}

fn vmi(name: &str, node: &str, state: Option<Value>) -> Value {
    let mut labels = json!({ "kubevirt.io/nodeName": node });
    let mut status = json!({ "phase": "Running", "nodeName": node });
    if let Some(state) = state {
        if state["completed"] != json!(true) {
            labels["kubevirt.io/migrationTargetNodeName"] = state["targetNode"].clone();
        }
        status["migrationState"] = state;
    }
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": { "name": name, "namespace": "soak", "labels": labels },
        "spec": { "domain": { "memory": { "guest": "1Gi" } } },
        "status": status,
    })
}

fn vmim(name: &str, uid: &str, vmi: &str, phase: &str) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
        "metadata": { "name": name, "namespace": "soak", "uid": uid,
                      "labels": { "kubevirt.io/vmi-name": vmi } },
        "spec": { "vmiName": vmi },
        "status": { "phase": phase },
    })
}

fn proc_status(pid: u32, key: &str) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// (open fds, of which BPF links).
fn fds(pid: u32) -> (usize, usize) {
    let Ok(entries) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return (0, 0);
    };
    let targets: Vec<String> = entries
        .filter_map(|e| fs::read_link(e.ok()?.path()).ok())
        .map(|t| t.display().to_string())
        .collect();
    let links = targets
        .iter()
        .filter(|t| *t == "anon_inode:bpf_link")
        .count();
    (targets.len(), links)
}

fn scrape() -> String {
    use std::io::{Read as _, Write as _};
    let Ok(mut stream) = std::net::TcpStream::connect(METRICS) else {
        return String::new();
    };
    let _ = stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: agent\r\n\r\n");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

fn sample(pid: u32, migrations: usize, started: Instant, stdout: &Path) -> SoakSample {
    let page = scrape();
    let series: Vec<&str> = page
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .collect();
    let mut on_page: Vec<&str> = series
        .iter()
        .filter_map(|l| l.split("migration=\"").nth(1)?.split('"').next())
        .collect();
    on_page.sort_unstable();
    on_page.dedup();
    let (fds, bpf_links) = fds(pid);
    SoakSample {
        migrations,
        elapsed_s: started.elapsed().as_secs_f64(),
        rss_kib: proc_status(pid, "VmRSS:"),
        fds,
        bpf_links,
        attached: series
            .iter()
            .filter(|l| l.starts_with("migverify_attached{"))
            .count(),
        series: series.len(),
        migrations_on_page: on_page.len(),
        verdicts: fs::read_to_string(stdout).map_or(0, |t| t.lines().count()),
    }
}

/// Waits for the `n`th line of the agent's log that contains `what`.
fn wait_for(log: &Path, what: &str, n: usize, timeout: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        let text = fs::read_to_string(log).unwrap_or_default();
        if text.lines().filter(|l| l.contains(what)).count() >= n {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the agent did not say {what:?} ({n} times) within {timeout:?}")
}

/// Runs the soak: `migrations` in all, one in `lab_every` with real traffic.
pub fn run(migverify: &Path, migrations: usize, lab_every: usize) -> anyhow::Result<SoakBench> {
    let retention = Duration::from_secs(30);
    let mut config = Scenario::Secondary.config();
    config.memory_mib = 64;
    lab::up(&config, &|_: &str| {}).context("lab up")?;
    let mut cleanup = Cleanup {
        children: Vec::new(),
    };
    other_namespace()?;
    let dir = std::env::temp_dir().join(format!("migverify-soak-{}", std::process::id()));
    fs::create_dir_all(&dir)?;
    let server = ApiServer::start();
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
        "spec": { "liveMigrationConfig": { "network": "migration-network" } },
    }));
    server.apply(handler(0, LAB_POD_IP));
    let kubeconfig = server.kubeconfig(&dir);
    let (stdout, stderr): (PathBuf, PathBuf) = (dir.join("agent.stdout"), dir.join("agent.stderr"));
    let agent = Command::new(migverify)
        .args(["agent", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--node-netns", "mvlab-node-a", "--metrics-listen", METRICS])
        .args(["--metrics-retention", &retention.as_secs().to_string()])
        .env("NODE_NAME", "node-a")
        .stdout(fs::File::create(&stdout)?)
        .stderr(fs::File::create(&stderr)?)
        .spawn()
        .context("starting the agent")?;
    let pid = agent.id();
    cleanup.children.push(agent);
    let serve = Command::new("ip")
        .args(["netns", "exec", "mvlab-vh-b"])
        .arg(migverify)
        .args([
            "bench",
            "serve",
            "--listen",
            &format!("{TARGET}:{BENCH_PORT}"),
            "--no-tls",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    cleanup.children.push(serve);
    wait_for(
        &stderr,
        "attached to migration:eth1@mvlab-node-a",
        1,
        Duration::from_secs(60),
    )?;

    let started = Instant::now();
    let mut samples = vec![sample(pid, 0, started, &stdout)];
    let (mut restarts, mut expiries, mut lab_migrations) = (0, 0, 0);
    for i in 0..migrations {
        let name = format!("soak-vm-{}", i % VMIS);
        let uid = format!("5d7e0c1a-0000-4000-8000-{i:012}");
        let mig = format!("soak-mig-{i}");
        let lab = i % lab_every == lab_every - 1;
        let port = if lab {
            BENCH_PORT
        } else {
            30000 + (i % 20000) as u16
        };
        let state = |extra: Value| {
            let mut state = json!({
                "migrationUid": uid, "sourceNode": "node-a", "targetNode": "node-b",
                "mode": "PreCopy", "startTimestamp": "2026-01-01T00:00:01Z",
            });
            for (k, v) in extra.as_object().unwrap() {
                state[k] = v.clone();
            }
            state
        };
        server.apply(vmim(&mig, &uid, &name, "Scheduling"));
        server.apply(vmi(&name, "node-a", Some(state(json!({})))));
        server.apply(vmi(
            &name,
            "node-a",
            Some(state(json!({
                "targetNodeAddress": TARGET,
                "targetDirectMigrationNodePorts": { port.to_string(): 49152 },
            }))),
        ));
        if lab {
            // The endpoints into the kernel first, then the traffic.
            std::thread::sleep(Duration::from_millis(400));
            let out = Command::new("ip")
                .args(["netns", "exec", "mvlab-vh-a"])
                .arg(migverify)
                .args([
                    "bench",
                    "run",
                    "--peer",
                    &format!("{TARGET}:{BENCH_PORT}"),
                    "--no-tls",
                ])
                .args(["--duration", "1", "--streams", "2", "-o", "json"])
                .output()?;
            anyhow::ensure!(
                matches!(out.status.code(), Some(0 | 1 | 3)),
                "bench run: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            lab_migrations += 1;
        } else {
            std::thread::sleep(Duration::from_millis(30));
        }
        let done = state(json!({
            "targetNodeAddress": TARGET,
            "targetDirectMigrationNodePorts": { port.to_string(): 49152 },
            "completed": true, "endTimestamp": "2026-01-01T00:00:09Z",
        }));
        server.apply(vmi(&name, "node-b", Some(done)));
        server.apply(vmim(&mig, &uid, &name, "Succeeded"));
        // KubeVirt's garbage collection of old migration objects.
        if i >= 5 {
            server.delete(&vmim(&format!("soak-mig-{}", i - 5), "", &name, ""));
        }
        if i % VMIS == VMIS - 1 {
            server.delete(&vmi(
                &format!("soak-vm-{}", (i / VMIS) % VMIS),
                "node-b",
                None,
            ));
        }
        if i % 100 == 99 {
            server.compact();
            expiries += 1;
        }
        if i % 200 == 199 {
            restarts += 1;
            let ip = if restarts % 2 == 1 {
                OTHER_POD_IP
            } else {
                LAB_POD_IP
            };
            server.apply(handler(restarts, ip));
            // Each namespace's line once more: the lab's first at the start.
            let (netns, nth) = if restarts % 2 == 1 {
                (OTHER_NETNS, restarts.div_ceil(2))
            } else {
                ("mvlab-vh-a", 1 + restarts / 2)
            };
            wait_for(
                &stderr,
                &format!("is in network namespace {netns} "),
                nth,
                Duration::from_secs(30),
            )?;
        }
        if (i + 1) % 25 == 0 {
            samples.push(sample(pid, i + 1, started, &stdout));
            eprintln!("bench: soak {:?}", samples.last().unwrap());
        }
    }
    // Past the retention: the last migrations' series leave too.
    std::thread::sleep(retention + Duration::from_secs(5));
    samples.push(sample(pid, migrations, started, &stdout));
    let events_posted = server
        .writes()
        .iter()
        .filter(|w| w.method == "POST" && w.path.ends_with("/events") && w.status == 201)
        .count();
    drop(cleanup);
    let _ = fs::remove_dir_all(&dir);
    let machine = crate::machine();
    Ok(SoakBench {
        date: machine.date,
        kernel: machine.kernel,
        migrations,
        lab_migrations,
        virt_handler_restarts: restarts,
        watch_expiries: expiries,
        retention_s: retention.as_secs(),
        seconds: started.elapsed().as_secs_f64(),
        events_posted,
        samples,
    })
}
