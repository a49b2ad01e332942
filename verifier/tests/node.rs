//! A first result on a node in one command: `verify` with no interface
//! flags finds virt-handler (the lab's stand-ins), its namespace, migration0,
//! the pod interface and the node-side devices under them, on both lab
//! nodes, and judges a migration as `lab run` does; `--vmi` reads the lab's
//! VMI as YAML.

mod support;

use std::{
    collections::BTreeSet,
    io::{BufRead as _, BufReader, Read as _},
    process::{Command, Output, Stdio},
    sync::Mutex,
    time::{Duration, Instant},
};

use serde_json::Value;
use support::privileged;

/// The lab has fixed names: one at a time, whatever the harness does.
static LAB: Mutex<()> = Mutex::new(());

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

fn json_of(what: &str, out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{what}: {e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn reason_ids(report: &Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// Where the migration's connections were seen: interface@netns and role.
fn seen_on(report: &Value) -> BTreeSet<String> {
    report["migrations"][0]["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}:{}@{}",
                f["role"].as_str().unwrap(),
                f["interface"].as_str().unwrap(),
                f["netns"].as_str().unwrap()
            )
        })
        .collect()
}

/// `verify --migrations 1 -o json` with no interface flags, started before
/// `lab migrate` on the lab that is up: its report, what it said on stderr,
/// and QEMU's account of the migration.
fn verify_while_migrating() -> (Value, String, Value) {
    let mut verify = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args([
            "verify",
            "--migrations",
            "1",
            "--duration",
            "120",
            "-o",
            "json",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(verify.stderr.take().unwrap());
    let mut said = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !said.contains("waiting for migrations") {
        let mut line = String::new();
        if stderr.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            let _ = verify.kill();
            panic!("verify did not start: {said}");
        }
        said.push_str(&line);
    }
    let migrate = migverify(&["lab", "migrate", "-o", "json"]);
    let qemu = json_of("lab migrate", &migrate)["qemu"].clone();
    let mut stdout = String::new();
    verify
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    stderr.read_to_string(&mut said).unwrap();
    let status = verify.wait().unwrap();
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("verify: {e}: {stdout}{said}"));
    assert_eq!(
        status.code(),
        Some(if report["verdict"] == "PASS" { 0 } else { 1 }),
        "{said}"
    );
    (report, said, qemu)
}

#[test]
fn verify_without_interface_flags_finds_both_nodes_and_judges_as_lab_run() {
    if !privileged("verify_without_interface_flags_finds_both_nodes_and_judges_as_lab_run") {
        return;
    }
    let _lab = LabGuard::take();
    let attached: &[(&str, &[&str])] = &[
        (
            "secondary",
            &[
                "attaching migration:migration0@mvlab-vh-a: virt-handler's migration interface (macvlan, 10.200.5.11/24)",
                "attaching migration:eth1@mvlab-node-a: the node's migration NIC: migration0 is a macvlan on it",
                "attaching primary:eth0@mvlab-vh-a: virt-handler's pod interface",
                "attaching primary:eth0@mvlab-node-a: uplink of br-pod",
                "attaching migration:eth1@mvlab-node-b: the node's migration NIC",
                "migration CIDR 10.200.5.0/24: migration0's own address prefix",
            ],
        ),
        (
            "bridge-vlan",
            &[
                "attaching migration:vh-mig@mvlab-node-a: migration0's veth peer",
                "attaching bridge:br-mig@mvlab-node-a: the bridge migration0's veth peer vh-mig is a port of",
                "attaching migration:eth1@mvlab-node-a: uplink of br-mig",
                "attaching migration:eth1@mvlab-node-b: uplink of br-mig",
            ],
        ),
    ];
    for (scenario, lines) in attached {
        let run = migverify(&[
            "lab",
            "run",
            "--scenario",
            scenario,
            "--memory",
            "128",
            "-o",
            "json",
        ]);
        let by_lab = json_of("lab run", &run);

        let up = migverify(&["lab", "up", "--scenario", scenario, "--memory", "128"]);
        assert!(
            up.status.success(),
            "{}",
            String::from_utf8_lossy(&up.stderr)
        );
        let (by_verify, said, qemu) = verify_while_migrating();
        for line in lines.iter() {
            assert!(
                said.contains(line),
                "{scenario}: `{line}` not said:\n{said}"
            );
        }
        assert_eq!(said.matches("found virt-handler pid").count(), 2, "{said}");
        assert_eq!(
            (by_verify["verdict"].as_str(), reason_ids(&by_verify)),
            (by_lab["verdict"].as_str(), reason_ids(&by_lab)),
            "{scenario}: verify and lab run judge alike"
        );
        assert_eq!(by_verify["verdict"], "PASS", "{scenario}");
        assert_eq!(
            seen_on(&by_verify),
            seen_on(&by_lab),
            "{scenario}: the same interfaces saw the migration"
        );
        let (v, l) = (&by_verify["migrations"][0], &by_lab["migrations"][0]);
        assert_eq!(v["connections"], l["connections"], "{scenario}");
        assert_eq!(v["bytes_by_role"]["primary"], 0, "{scenario}");
        let ratio = v["forward_payload_bytes"].as_f64().unwrap()
            / qemu["transferred_bytes"].as_f64().unwrap();
        assert!(
            (1.0..1.01).contains(&ratio),
            "{scenario}: verify counted {ratio:.4} of what QEMU sent"
        );
        eprintln!(
            "{scenario}: verify {} {} connections, {} B sent (QEMU {} B), p50 {} bit/s; lab run {} {} connections, \
             {} B sent (QEMU {} B), p50 {} bit/s",
            by_verify["verdict"],
            v["connections"],
            v["forward_payload_bytes"],
            qemu["transferred_bytes"],
            v["throughput_bps"]["p50"],
            by_lab["verdict"],
            l["connections"],
            l["forward_payload_bytes"],
            by_lab["lab"]["qemu"]["transferred_bytes"],
            l["throughput_bps"]["p50"],
        );

        if *scenario == "secondary" {
            vmi_as_yaml();
        }
        let _ = migverify(&["lab", "down"]);
    }
}

/// The lab's VMI (as `lab migrate` left it) converted to YAML is read by
/// `--vmi`: its endpoint is expected (and, nothing moving now, not seen),
/// and `-o yaml` prints the report as YAML.
fn vmi_as_yaml() {
    let vmi: Value =
        serde_json::from_slice(&std::fs::read("/run/mvlab/vmi.json").unwrap()).unwrap();
    let path = std::env::temp_dir().join(format!("migverify-vmi-{}.yaml", std::process::id()));
    std::fs::write(&path, serde_yaml_ng::to_string(&vmi).unwrap()).unwrap();
    let out = migverify(&[
        "verify",
        "--vmi",
        path.to_str().unwrap(),
        "--duration",
        "1",
        "-o",
        "yaml",
    ]);
    std::fs::remove_file(&path).unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("with 1 endpoint(s)"), "{said}");
    let report: Value = serde_yaml_ng::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("-o yaml: {e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["verdict"], "FAIL", "{said}");
    assert!(reason_ids(&report).contains(&"traffic.none".to_string()));
    assert_eq!(out.status.code(), Some(1));
}
