//! Records the series the alert tests replay (verifier/tests/alerts/): the
//! metrics endpoint of `migverify watch` scraped every second while a real
//! lab migration runs, for the scenarios the alerts are about, and of
//! `migverify agent` waiting for, then finding, virt-handler. Only the
//! families the rules read are kept, written as promtool `input_series`
//! with a header saying how and when they were recorded.
//!
//! Not part of the normal run (it rewrites test data): run it on purpose,
//! as root, under the lab lock:
//! `flock /tmp/migverify-lab.lock cargo test -p verifier --test watch record_series -- --ignored --test-threads=1`

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::{Command, Stdio},
    thread,
    time::Duration,
};

use serde_json::json;

use crate::{
    exposition::{parse_exposition, scrape},
    harness::{migverify, Lab, Watch},
    support::{apiserver::ApiServer, privileged},
};

/// The families the rules and the dashboard read.
const KEPT: &[&str] = &[
    "migverify_migration_bytes_total",
    "migverify_diagnosis",
    "migverify_migration_stall_seconds",
    "migverify_migration_progress_timeout_seconds",
    "migverify_migration_completion_budget_seconds",
    "migverify_migration_projected_completion_seconds",
    "migverify_events_lost_total",
    "migverify_flow_table_full_total",
    "migverify_unclassified_packets_total",
    "migverify_attached",
    "migverify_agent_virt_handler_attached",
    "migverify_build_info",
];

/// The node label the ServiceMonitor's relabeling adds; the lab's watch
/// observes both nodes, the agent one.
fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/alerts")
}

/// Scrapes `addr` every second while `running` says so.
fn scrape_while(addr: &str, running: impl Fn() -> bool) -> Vec<BTreeMap<String, f64>> {
    let mut pages = Vec::new();
    while running() {
        pages.push(parse_exposition(&scrape(addr)).1);
        thread::sleep(Duration::from_secs(1));
    }
    pages
}

/// Writes the scrapes as promtool input series, one value per second
/// (`_` where a series was absent), with `node` added.
fn write(name: &str, how: &str, node: &str, pages: &[BTreeMap<String, f64>]) {
    let mut series: BTreeMap<String, Vec<Option<f64>>> = BTreeMap::new();
    for (i, page) in pages.iter().enumerate() {
        for (key, value) in page {
            let family = key.split('{').next().unwrap();
            if !KEPT.contains(&family) {
                continue;
            }
            let labelled = match key.strip_suffix('}') {
                Some(open) => format!("{open},node=\"{node}\"}}"),
                None => format!("{key}{{node=\"{node}\"}}"),
            };
            series
                .entry(labelled)
                .or_insert_with(|| vec![None; pages.len()])[i] = Some(*value);
        }
    }
    let uname = Command::new("uname").arg("-r").output().unwrap();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    let mut text = format!(
        "# Recorded from a real lab run: {how}.\n# {} scrapes, one a second; recorded {} on Linux {} by migverify {}\n\
         # with `cargo test -p verifier --test watch record_series -- --ignored`\n\
         # (verifier/tests/watch/record.rs). `node` is added as the ServiceMonitor's relabeling would.\n\
         interval: 1s\ninput_series:\n",
        pages.len(),
        String::from_utf8_lossy(&date.stdout).trim(),
        String::from_utf8_lossy(&uname.stdout).trim(),
        verifier::REVISION,
    );
    for (key, values) in series {
        let values: Vec<String> = values
            .iter()
            .map(|v| v.map_or("_".to_string(), |v| format!("{v}")))
            .collect();
        text.push_str(&format!(
            "  - series: '{key}'\n    values: '{}'\n",
            values.join(" ")
        ));
    }
    std::fs::create_dir_all(out_dir()).unwrap();
    std::fs::write(out_dir().join(format!("{name}.yaml")), text).unwrap();
}

/// `watch` with its metrics endpoint over one lab migration of `scenario`.
fn record_watch(name: &str, scenario: &'static str, lab_args: &[&str], watch_args: &[&str]) {
    let lab = Lab::up(scenario, lab_args);
    let port = "19480";
    let mut args = vec!["--metrics-listen", port];
    args.extend_from_slice(watch_args);
    let watch = Watch::start(&lab.watch_args(&args));
    let migrate = thread::spawn(move || migverify(&["lab", "migrate", "-o", "json"]));
    let mut pages = scrape_while(&format!("127.0.0.1:{port}"), || !migrate.is_finished());
    // The end, as Prometheus keeps scraping after it.
    for _ in 0..5 {
        thread::sleep(Duration::from_secs(1));
        pages.push(parse_exposition(&scrape(&format!("127.0.0.1:{port}"))).1);
    }
    let _ = migrate.join();
    let _ = watch.stop();
    let how = format!(
        "lab scenario {scenario} ({}), `migverify {}` scraped",
        lab_args.join(" "),
        lab.watch_args(&args).join(" ")
    );
    write(name, &how, "lab", &pages);
}

/// `migverify agent` against the replay API server: no virt-handler pod at
/// first (not attached), then node A's (attached in mvlab-vh-a).
fn record_agent() {
    let _lab = Lab::up("secondary", &["--memory", "128"]);
    let server = ApiServer::start();
    let dir = std::env::temp_dir().join(format!("migverify-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    server.apply(json!({
        "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
        "metadata": { "name": "migration-network", "namespace": "kubevirt" },
        "spec": { "config": json!({
            "cniVersion": "0.3.1", "name": "migration-network", "type": "macvlan",
            "master": "eth1", "mode": "bridge",
            "ipam": { "type": "whereabouts", "range": "10.200.5.0/24" },
        }).to_string() },
    }));
    let kubeconfig = server.kubeconfig(&dir);
    let port = "19481";
    let mut agent = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(["agent", "--kubeconfig"])
        .arg(&kubeconfig)
        .args(["--node-netns", "mvlab-node-a", "--metrics-listen", port])
        .env("NODE_NAME", "node-a")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    thread::sleep(Duration::from_secs(2));
    let start = std::time::Instant::now();
    let addr = format!("127.0.0.1:{port}");
    let mut pages = Vec::new();
    let mut applied = false;
    while start.elapsed() < Duration::from_secs(20) {
        if !applied && start.elapsed() > Duration::from_secs(8) {
            server.apply(json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": { "name": "virt-handler-node-a", "namespace": "kubevirt",
                              "labels": { "kubevirt.io": "virt-handler" } },
                "spec": { "nodeName": "node-a", "containers": [{ "name": "virt-handler" }] },
                "status": { "phase": "Running", "podIP": "10.128.0.11" },
            }));
            applied = true;
        }
        pages.push(parse_exposition(&scrape(&addr)).1);
        thread::sleep(Duration::from_secs(1));
    }
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(agent.id() as i32, libc::SIGTERM) };
    let _ = agent.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let how = "`migverify agent --node-netns mvlab-node-a --metrics-listen 19481` for node-a against the \
               replay API server with the lab's migration NAD; node-a's virt-handler pod appears after 8 s";
    write("agent-attaches", how, "node-a", &pages);
}

#[test]
#[ignore = "rewrites verifier/tests/alerts/: run on purpose"]
fn record_series_for_the_alert_tests() {
    if !privileged("record_series_for_the_alert_tests") {
        return;
    }
    record_watch("secondary", "secondary", &["--memory", "256"], &[]);
    record_watch(
        "pod-network-fallback",
        "pod-network-fallback",
        &["--memory", "256"],
        &[],
    );
    record_watch("stall", "stall", &["--memory", "256"], &[]);
    // A 64 GiB VM on a 100 Mbit/s link with 2 s per 10^9 bytes: hopeless.
    record_watch(
        "over-budget",
        "rate-limited",
        &["--memory", "256", "--rate", "100"],
        &["--vm-memory", "64Gi", "--completion-timeout-per-gib", "2"],
    );
    record_agent();
}
