//! End to end: the lab's scenarios with real QEMU migrations, judged by the
//! kernel's own interface counters, and the lab's clean-up after success,
//! failure and kill -9.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::{privileged, sh};

/// The lab has fixed names: one at a time, whatever the harness does.
static LAB: Mutex<()> = Mutex::new(());

const MEMORY_MIB: &str = "64";

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// Takes the lab lock and leaves a clean host behind, even on panic.
struct LabGuard<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl LabGuard<'_> {
    fn take() -> Self {
        LabGuard(LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let _ = migverify(&["lab", "down"]);
    }
}

fn lab_namespaces() -> Vec<String> {
    sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("mvlab-"))
        .map(str::to_string)
        .collect()
}

/// Live (not zombie) QEMU processes of the lab.
fn lab_qemus() -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| {
            let pid: i32 = e.ok()?.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim();
            (comm.starts_with("mvlab-") && verifier::lab::is_running(pid)).then(|| comm.to_string())
        })
        .collect()
}

fn assert_nothing_left(context: &str) {
    assert_eq!(
        lab_namespaces(),
        Vec::<String>::new(),
        "{context}: namespaces left"
    );
    assert_eq!(
        lab_qemus(),
        Vec::<String>::new(),
        "{context}: QEMU processes left"
    );
    for dir in ["/run/mvlab", "/dev/shm/mvlab"] {
        assert!(!std::path::Path::new(dir).exists(), "{context}: {dir} left");
    }
}

/// Received bytes of a virt-handler interface, as the kernel counts them.
fn rx_bytes(netns: &str, iface: &str) -> Option<u64> {
    let out = Command::new("ip")
        .args(["-n", netns, "-s", "-j", "link", "show", "dev", iface])
        .output()
        .ok()?;
    let value: Value = serde_json::from_slice(&out.stdout).ok()?;
    value[0]["stats64"]["rx"]["bytes"].as_u64()
}

struct Migration {
    qemu: Value,
    /// Bytes the target virt-handler received on migration0 and eth0.
    on_migration0: Option<u64>,
    on_eth0: u64,
}

/// `lab up` + `lab migrate`, with the kernel's counters read around it.
fn migrate(scenario: &str, extra: &[&str]) -> Migration {
    let mut up = vec!["lab", "up", "--scenario", scenario, "--memory", MEMORY_MIB];
    up.extend_from_slice(extra);
    let out = migverify(&up);
    assert!(
        out.status.success(),
        "lab up {scenario}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = (
        rx_bytes("mvlab-vh-b", "migration0"),
        rx_bytes("mvlab-vh-b", "eth0").unwrap(),
    );
    let out = migverify(&["lab", "migrate", "-o", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lab migrate {scenario}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let after = (
        rx_bytes("mvlab-vh-b", "migration0"),
        rx_bytes("mvlab-vh-b", "eth0").unwrap(),
    );
    let qemu = report["qemu"].clone();
    assert_eq!(
        out.status.code(),
        Some(if qemu["status"] == "completed" { 0 } else { 1 }),
        "exit code follows QEMU's outcome"
    );
    Migration {
        qemu,
        on_migration0: after.0.zip(before.0).map(|(a, b)| a - b),
        on_eth0: after.1 - before.1,
    }
}

fn transferred(m: &Migration) -> u64 {
    m.qemu["transferred_bytes"].as_u64().unwrap()
}

fn assert_completed_over_migration0(scenario: &str, m: &Migration) {
    assert_eq!(m.qemu["status"], "completed", "{scenario}: {}", m.qemu);
    let sent = transferred(m);
    assert!(sent >= 64 << 20, "{scenario}: every page crossed: {sent}");
    let on_migration0 = m.on_migration0.expect("migration0 exists");
    assert!(
        on_migration0 >= sent,
        "{scenario}: migration0 received {on_migration0} < {sent}"
    );
    assert!(
        m.on_eth0 < sent / 100,
        "{scenario}: the pod network carried {}",
        m.on_eth0
    );
}

#[test]
fn healthy_scenarios_migrate_over_the_migration_network() {
    if !privileged("healthy_scenarios_migrate_over_the_migration_network") {
        return;
    }
    let _lab = LabGuard::take();
    for scenario in ["secondary", "bridge-vlan", "ipv6"] {
        let m = migrate(scenario, &[]);
        assert_completed_over_migration0(scenario, &m);
        assert_eq!(m.qemu["multifd_channels"], 8);
        assert_eq!(m.qemu["tls"], true);
    }
    let target = migrate("ipv6", &[]).qemu["target"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(target.starts_with("[fd00:200:5::12]:"), "{target}");
    // Cleartext and other options are overrides of any scenario.
    let m = migrate(
        "bridge-vlan",
        &["--no-tls", "--multifd", "2", "--vlan", "42"],
    );
    assert_completed_over_migration0("bridge-vlan cleartext", &m);
    assert_eq!(
        (m.qemu["tls"].as_bool(), m.qemu["multifd_channels"].as_u64()),
        (Some(false), Some(2))
    );
}

#[test]
fn the_fallback_crosses_the_pod_network() {
    if !privileged("the_fallback_crosses_the_pod_network") {
        return;
    }
    let _lab = LabGuard::take();
    let m = migrate("pod-network-fallback", &[]);
    assert_eq!(m.qemu["status"], "completed");
    assert!(
        m.on_migration0.is_none(),
        "no migration0 in the fallback scenario"
    );
    assert!(
        m.qemu["target"]
            .as_str()
            .unwrap()
            .starts_with("10.128.0.12:"),
        "{}",
        m.qemu
    );
    assert!(
        m.on_eth0 >= transferred(&m),
        "eth0 received {} < {}",
        m.on_eth0,
        transferred(&m)
    );
}

#[test]
fn the_rate_limit_holds_the_migration_to_it() {
    if !privileged("the_rate_limit_holds_the_migration_to_it") {
        return;
    }
    let _lab = LabGuard::take();
    let m = migrate("rate-limited", &["--rate", "100"]);
    assert_completed_over_migration0("rate-limited", &m);
    let mbit = transferred(&m) as f64 * 8.0 / m.qemu["total_time_ms"].as_f64().unwrap() / 1000.0;
    assert!(
        (80.0..=105.0).contains(&mbit),
        "100 Mbit/s limit, QEMU moved {mbit:.1} Mbit/s"
    );
}

#[test]
fn broken_networks_break_the_migration() {
    if !privileged("broken_networks_break_the_migration") {
        return;
    }
    let _lab = LabGuard::take();
    for scenario in ["vlan-mismatch", "mtu-mismatch", "stall"] {
        let m = migrate(scenario, &["--timeout", "6"]);
        assert_ne!(m.qemu["status"], "completed", "{scenario}: {}", m.qemu);
        assert!(transferred(&m) < 64 << 20, "{scenario}: {}", m.qemu);
        if scenario != "vlan-mismatch" {
            assert_eq!(
                m.qemu["cancelled_by_timeout"], true,
                "{scenario}: {}",
                m.qemu
            );
        }
    }
}

#[test]
fn lab_run_reports_json_verdicts_and_cleans_up() {
    if !privileged("lab_run_reports_json_verdicts_and_cleans_up") {
        return;
    }
    let _lab = LabGuard::take();
    for (scenario, code, reason) in [
        ("secondary", 0, None),
        ("pod-network-fallback", 1, Some("fallback-pod-network")),
        ("vlan-mismatch", 1, Some("migration-not-completed")),
    ] {
        let out = migverify(&[
            "lab",
            "run",
            "--scenario",
            scenario,
            "--memory",
            MEMORY_MIB,
            "--timeout",
            "6",
            "-o",
            "json",
        ]);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{scenario}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
        assert_eq!(report["schema_version"], 1);
        assert_eq!(report["lab"]["scenario"], scenario);
        let reasons: Vec<&str> = report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(reasons.first().copied(), reason, "{scenario}: {reasons:?}");
        let vmi = &report["lab"]["vmi"]["status"]["migrationState"];
        let port = report["lab"]["qemu"]["target"]
            .as_str()
            .unwrap()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string();
        assert_eq!(vmi["targetDirectMigrationNodePorts"][&port], 49152, "{vmi}");
        assert_nothing_left(scenario);
    }
}

#[test]
fn lab_down_cleans_up_after_kill_9() {
    if !privileged("lab_down_cleans_up_after_kill_9") {
        return;
    }
    let _lab = LabGuard::take();
    let mut run = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args([
            "lab",
            "run",
            "--scenario",
            "rate-limited",
            "--rate",
            "20",
            "--memory",
            MEMORY_MIB,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the migration is under way, then kill without warning.
    let deadline = Instant::now() + Duration::from_secs(60);
    for line in BufReader::new(run.stderr.take().unwrap()).lines() {
        if line.unwrap().contains("migration active") || Instant::now() > deadline {
            break;
        }
    }
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(lab_qemus().len(), 2, "both QEMUs outlive the killed run");
    assert!(!lab_namespaces().is_empty());

    // `lab up` on the dirty host cleans first, then builds anew.
    let out = migverify(&["lab", "up", "--scenario", "secondary"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("removed leftovers of an earlier lab"));
    assert_eq!(lab_qemus(), Vec::<String>::new());

    let out = migverify(&["lab", "down"]);
    assert!(out.status.success());
    assert_nothing_left("after lab down");
}
