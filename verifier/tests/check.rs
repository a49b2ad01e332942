//! `migverify check` as a user runs it: the examples in docs/examples, bad
//! input, and (privileged) the host checks on the lab's scenarios, before
//! any migration runs.

mod support;

use std::{
    io::Write as _,
    process::{Command, Output, Stdio},
    sync::Mutex,
};

use serde_json::Value;
use support::privileged;

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples");

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .current_dir(EXAMPLES)
        .output()
        .expect("run migverify")
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ids(report: &Value) -> Vec<String> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_seeds_objects_check_clean_with_exit_0() {
    let out = migverify(&[
        "check",
        "migration-network.yaml",
        "cluster-network.yaml",
        "bridge-net.yaml",
        "vmi-migrated.yaml",
        "--vm-memory",
        "16Gi",
        "-o",
        "json",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = json(&out);
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["verdict"], "PASS");
    assert_eq!(ids(&report), ["MV-BRIDGE-012", "MV-VMI-001"]);
    for finding in report["findings"].as_array().unwrap() {
        for field in ["id", "severity", "object", "path", "message", "fix"] {
            assert!(finding[field].is_string(), "{field} in {finding}");
        }
    }
    let budgets = report["budgets"].as_array().unwrap();
    assert_eq!(budgets[0]["completion_timeout_s"], 14400);
    assert_eq!(budgets[0]["size_units"], 18);
}

#[test]
fn broken_objects_fail_with_exit_1_and_name_file_and_line() {
    let out = migverify(&[
        "check",
        "broken-migration-network.yaml",
        "cluster-network.yaml",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("error   MV-MIG-001 network-not-found  spec.liveMigrationConfig.network  (broken-migration-network.yaml:31)"), "{text}");
    assert!(text.contains("fix: did you mean `isGateway`?"), "{text}");
    assert!(
        text.trim_end()
            .ends_with("5 error(s), 3 warning(s), 0 info: FAIL"),
        "{text}"
    );

    let out = migverify(&[
        "check",
        "migration-network.yaml",
        "vmi-pod-network.yaml",
        "--pod-cidr",
        "10.128.0.0/14",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(ids(&json(&out)), ["MV-VMI-002"]);
}

/// Every command's table: 0 pass, 1 fail, 2 unreadable, 3 warnings only
/// (`check` exited 0 on warnings before issue 16); `--fail-on` moves the bar.
#[test]
fn exit_status_follows_the_one_table() {
    for (args, status) in [
        // Alone, the VMI's target is on no known network: a warning.
        (&["vmi-migrated.yaml"][..], 3),
        (&["vmi-migrated.yaml", "--fail-on", "error"], 0),
        (&["vmi-migrated.yaml", "--fail-on", "never"], 0),
        (&["broken-migration-network.yaml", "--fail-on", "error"], 1),
        (&["broken-migration-network.yaml", "--fail-on", "never"], 0),
        // --cidr names the migration range: inside it is PASS, outside FAIL.
        (&["vmi-migrated.yaml", "--cidr", "10.200.5.0/24"], 0),
        (&["vmi-pod-network.yaml", "--cidr", "10.200.5.0/24"], 1),
    ] {
        let mut argv = vec!["check"];
        argv.extend(args);
        let out = migverify(&argv);
        assert_eq!(
            out.status.code(),
            Some(status),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn standard_input_and_lists_are_read() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(["check", "-", "-o", "json"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let list = r#"{"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration", "metadata": {"name": "m"}, "spec": {}}]}"#;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(list.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let report = json(&out);
    assert_eq!(ids(&report), ["MV-MIG-013"]);
    assert_eq!(report["findings"][0]["location"], "-:2");
}

#[test]
fn unreadable_input_exits_2_with_file_line_and_column() {
    let dir = std::env::temp_dir().join(format!("migverify-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, bytes: &[u8]| {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path.to_str().unwrap().to_string()
    };
    let cases = [
        (
            file("syntax.yaml", b"kind: X\nspec:\n  a: [1, 2\n"),
            "syntax.yaml:4:1:",
        ),
        (file("empty.yaml", b""), "empty: no Kubernetes object in it"),
        (file("binary", b"\x7fELF\x02\x01\x01\x00"), "not text"),
        (
            file("deep.json", "[".repeat(10_000).as_bytes()),
            "deep.json:1:",
        ),
        (
            file(
                "describe.txt",
                b"Name:         vm1\nNamespace:    prod\nAPI Version:  kubevirt.io/v1\nKind:         VirtualMachineInstance\n",
            ),
            "describe.txt:1: this is `kubectl describe` output, not a Kubernetes object: check what \
             `kubectl get virtualmachineinstance vm1 -n prod -o yaml` prints",
        ),
    ];
    for (path, expected) in &cases {
        let out = migverify(&["check", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
        assert!(stderr.contains(expected), "{path}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    let out = migverify(&["check", "/nonexistent/nad.yaml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/nad.yaml: cannot read"));
    let out = migverify(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The lab has fixed names: one at a time in this binary; across processes
/// run these tests under `flock /tmp/mvlab-test.lock`.
static LAB: Mutex<()> = Mutex::new(());

/// Holds the lab lock, and takes the lab down when dropped, also on panic.
struct LabUp<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl LabUp<'_> {
    fn scenario(name: &str) -> Self {
        let guard = LabUp(LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner()));
        let out = migverify(&["lab", "up", "--scenario", name]);
        assert!(
            out.status.success(),
            "lab up {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        guard
    }
}

impl Drop for LabUp<'_> {
    fn drop(&mut self) {
        let _ = migverify(&["lab", "down"]);
    }
}

/// Builds the scenario's lab (no migration is started), runs `check --lab`.
fn check_lab(scenario: &str) -> (Option<i32>, Value) {
    let _lab = LabUp::scenario(scenario);
    let out = migverify(&["check", "--lab", "--timeout", "1", "-o", "json"]);
    (out.status.code(), json(&out))
}

fn findings_of<'a>(report: &'a Value, id: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["id"] == id)
        .collect()
}

#[test]
fn host_checks_pass_on_the_healthy_lab_scenarios() {
    if !privileged("host_checks_pass_on_the_healthy_lab_scenarios") {
        return;
    }
    for scenario in ["secondary", "bridge-vlan"] {
        let (code, report) = check_lab(scenario);
        assert_eq!(code, Some(0), "{scenario}: {report:#}");
        assert_eq!(report["summary"]["errors"], 0, "{scenario}: {report:#}");
        assert_eq!(report["summary"]["warnings"], 0, "{scenario}: {report:#}");
        assert_eq!(
            findings_of(&report, "MV-HOST-016").len(),
            2,
            "{scenario}: {report:#}"
        );
        assert_eq!(
            findings_of(&report, "MV-HOST-015").len(),
            2,
            "{scenario}: {report:#}"
        );
    }
}

#[test]
fn host_checks_catch_the_pod_network_fallback() {
    if !privileged("host_checks_catch_the_pod_network_fallback") {
        return;
    }
    let (code, report) = check_lab("pod-network-fallback");
    assert_eq!(code, Some(1), "{report:#}");
    let fallback = findings_of(&report, "MV-HOST-001");
    assert_eq!(fallback.len(), 2, "{report:#}");
    assert!(fallback[1]["message"]
        .as_str()
        .unwrap()
        .contains("virt-handler advertises 10.128.0.12"));
}

#[test]
fn host_checks_catch_the_vlan_mismatch() {
    if !privileged("host_checks_catch_the_vlan_mismatch") {
        return;
    }
    let (code, report) = check_lab("vlan-mismatch");
    assert_eq!(code, Some(1), "{report:#}");
    let mismatch = findings_of(&report, "MV-HOST-009");
    assert_eq!(mismatch.len(), 1, "{report:#}");
    assert_eq!(mismatch[0]["object"], "node node-b");
    assert!(
        mismatch[0]["message"]
            .as_str()
            .unwrap()
            .contains("VLAN 200"),
        "{report:#}"
    );
    assert_eq!(findings_of(&report, "MV-HOST-011").len(), 2, "{report:#}");
}

#[test]
fn host_checks_catch_the_mtu_mismatch() {
    if !privileged("host_checks_catch_the_mtu_mismatch") {
        return;
    }
    let (code, report) = check_lab("mtu-mismatch");
    assert_eq!(code, Some(1), "{report:#}");
    let path = findings_of(&report, "MV-HOST-006");
    let where_: Vec<_> = path.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(
        where_,
        [
            "migration:mig-a@mvlab-fabric",
            "migration:mig-b@mvlab-fabric"
        ],
        "{report:#}"
    );
    assert_eq!(findings_of(&report, "MV-HOST-012").len(), 2, "{report:#}");
}

#[test]
fn lab_checks_without_a_lab_are_a_usage_error() {
    if !privileged("lab_checks_without_a_lab_are_a_usage_error") {
        return;
    }
    let _lock = LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let _ = migverify(&["lab", "down"]);
    let out = migverify(&["check", "--lab"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no lab is up"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn host_mode_checks_one_node_against_the_given_nad() {
    if !privileged("host_mode_checks_one_node_against_the_given_nad") {
        return;
    }
    let _lab = LabUp::scenario("secondary");
    // Node A of the lab as a real node would be given: virt-handler's
    // namespace, the path, a peer, and the seed's NAD (same range).
    let out = migverify(&[
        "check",
        "--host",
        "--netns",
        "mvlab-vh-a",
        "-i",
        "migration:eth1@mvlab-node-a",
        "-i",
        "migration:mig-a@mvlab-fabric",
        "--peer",
        "10.200.5.12",
        "--sync-peer",
        "10.200.5.12",
        "--timeout",
        "1",
        "migration-network.yaml",
        "-o",
        "json",
    ]);
    let report = json(&out);
    // Nothing listens on 9185 in the lab: the one error.
    assert_eq!(out.status.code(), Some(1), "{report:#}");
    let mut found = ids(&report);
    found.sort();
    assert_eq!(
        found,
        ["MV-HOST-013", "MV-HOST-015", "MV-HOST-016", "MV-IPAM-008"],
        "{report:#}"
    );
    assert!(findings_of(&report, "MV-HOST-016")[0]["message"]
        .as_str()
        .unwrap()
        .contains("10.200.5.11/24, inside the NAD's range"));
    assert!(findings_of(&report, "MV-HOST-013")[0]["message"]
        .as_str()
        .unwrap()
        .contains("10.200.5.12:9185"));

    // A missing interface on the path is named.
    let out = migverify(&[
        "check",
        "--host",
        "--netns",
        "mvlab-vh-a",
        "-i",
        "eth9@mvlab-node-a",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(ids(&json(&out)).contains(&"MV-HOST-002".to_string()));
}

/// The fuzzer's kept corpus (fuzz/corpus/check), replayed on stable: every
/// input the fuzzer found interesting goes through the reader and every
/// object check without a panic.
#[test]
fn the_fuzz_corpus_replays_without_a_panic() {
    use verifier::{
        checks::{check_objects, networks::MainRole, Options},
        config::documents::load_bytes,
    };
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fuzz/corpus/check");
    let mut options = Options::default();
    options.main.add(
        MainRole::Pod,
        "10.128.0.0/14".parse().unwrap(),
        "test".into(),
    );
    options.vm_memory = Some("16Gi".parse().unwrap());
    let mut replayed = 0;
    for entry in std::fs::read_dir(dir).expect("fuzz corpus") {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        if let Ok(objects) = load_bytes("corpus", &bytes) {
            let report = check_objects(&objects, &options);
            serde_json::to_string(&report.findings.0).unwrap();
        }
        replayed += 1;
    }
    assert!(replayed > 100, "only {replayed} corpus inputs");
}
