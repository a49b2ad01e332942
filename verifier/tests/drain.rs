//! End to end: a node drain in the lab. Three VMs with a local disk leave
//! node A, two at a time, over the same target address; each migration is
//! judged on its own (its bytes against its own QEMU's, its channels from
//! the ports it published, its budget with memory and disk), the third one
//! waits for a slot, and the node's aggregate is judged against the
//! parallel budget. On the macvlan network, IPv6, and the bridge CNI.

mod support;

use std::{process::Command, sync::Mutex};

use serde_json::Value;
use support::privileged;

static LAB: Mutex<()> = Mutex::new(());

const MEMORY_MIB: u64 = 128;
const DISK_MIB: u64 = 64;

fn migverify(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// Takes the lab lock and leaves a clean host behind, even on panic.
struct LabGuard<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let _ = migverify(&["lab", "down"]);
    }
}

fn drain(extra: &[&str]) -> (Value, Option<i32>, String) {
    let (memory, disk) = (MEMORY_MIB.to_string(), DISK_MIB.to_string());
    let mut args = vec![
        "lab",
        "run",
        "--scenario",
        "drain",
        "--vms",
        "3",
        "--parallel-outbound-migrations-per-node",
        "2",
        "--memory",
        &memory,
        "--disk",
        &disk,
        // Node A's migration NIC shaped to 600 Mbit/s, as a node's link
        // is shared: the first two overlap on the wire however busy this
        // host is (each alone would take about a second).
        "--rate",
        "600",
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    let out = migverify(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lab run drain {extra:?}: {e}: {stderr}"));
    (report, out.status.code(), stderr)
}

fn ids(values: &[Value], key: &str) -> Vec<String> {
    values
        .iter()
        .map(|v| v[key].as_str().unwrap().to_string())
        .collect()
}

/// Everything the issue asks of one drain, whatever the network.
fn assert_judged_on_their_own(case: &str, report: &Value) {
    let migrations = report["migrations"].as_array().unwrap();
    assert_eq!(
        ids(migrations, "id"),
        [
            "default/mvlab-vm1",
            "default/mvlab-vm2",
            "default/mvlab-vm3"
        ],
        "{case}: three migrations"
    );
    let drain = &report["lab"]["drain"];
    let multifd = report["lab"]["qemu"]["multifd_channels"].as_u64().unwrap();
    for m in migrations {
        let id = m["id"].as_str().unwrap();
        let qemu = &drain["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["id"] == id)
            .unwrap_or_else(|| panic!("{case}: {id} in lab.drain"))["qemu"];
        assert_eq!(qemu["status"], "completed", "{case}: {id}: {qemu}");
        // Its own bytes: what its QEMU sent on the memory port, what its
        // mirror copied over NBD, what the control stand-in sent.
        let storage = &qemu["storage"];
        assert_eq!(storage["copied_bytes"], DISK_MIB << 20, "{case}: {id}");
        assert_eq!(storage["completed"], true, "{case}: {id}");
        let own = qemu["transferred_bytes"].as_u64().unwrap()
            + storage["copied_bytes"].as_u64().unwrap()
            + qemu["control"]["sent_bytes"].as_u64().unwrap();
        let seen = m["forward_payload_bytes"].as_u64().unwrap();
        let ratio = seen as f64 / own as f64;
        assert!(
            (1.0..1.01).contains(&ratio),
            "{case}: {id}: migverify {seen} vs its QEMU {own} ({ratio:.4})"
        );
        eprintln!("{case}: {id}: payload/QEMU = {ratio:.4}");
        // Channels from the ports it published: one control connection, the
        // main and multifd memory connections, one NBD connection.
        let channels: Vec<(String, u64)> = m["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["channel"].as_str().unwrap().to_string(),
                    c["connections"].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            channels,
            [
                ("control".into(), 1),
                ("memory".into(), multifd + 1),
                ("disk".into(), 1)
            ],
            "{case}: {id}"
        );
        for flow in m["flows"].as_array().unwrap() {
            assert_eq!(flow["reason"], "endpoint", "{case}: {id}: {flow}");
            assert_eq!(flow["role"], "migration", "{case}: {id}: {flow}");
        }
        let disk = &m["channels"][2];
        assert!(
            disk["forward_payload_bytes"].as_u64().unwrap() >= DISK_MIB << 20,
            "{case}: {id}: the disk crossed its storage channel: {disk}"
        );
        // The budget's size is memory plus disk: 192 MiB, one unit of 10^9.
        let budget = &m["budget"];
        assert_eq!(
            budget["size_bytes"],
            (MEMORY_MIB + DISK_MIB) << 20,
            "{case}: {id}"
        );
        assert_eq!(budget["size_units"], 1, "{case}: {id}");
    }
    // The queue, as the lab ran it: two at once, the third only once one
    // of the first two was over.
    assert_eq!(
        (drain["parallel"].as_u64(), drain["peak_parallel"].as_u64()),
        (Some(2), Some(2)),
        "{case}"
    );
    let lab: &Vec<Value> = drain["migrations"].as_array().unwrap();
    let first_done = lab[0]["finished_ms"]
        .as_u64()
        .unwrap()
        .min(lab[1]["finished_ms"].as_u64().unwrap());
    assert!(
        lab[2]["started_ms"].as_u64().unwrap() >= first_done,
        "{case}: the third started before a slot was free: {drain}"
    );
    let freed = lab[2]["waited_for"].as_str().unwrap();
    assert!(
        ["default/mvlab-vm1", "default/mvlab-vm2"].contains(&freed),
        "{case}: {freed}"
    );
    // And as the wire shows it: two at once from node A's address, the
    // third after one of them ended.
    let node = &report["nodes"][0];
    assert_eq!(node["migrations"], 3, "{case}: {node}");
    assert_eq!(node["peak_parallel"], 2, "{case}: {node}");
    assert_eq!(node["parallel_limit"], 2, "{case}: {node}");
    // Together they need 2 x 192 MiB in 150 s, 21.5 Mbit/s; the shaped
    // link gave them about its 600 Mbit/s.
    let (need, gave) = (
        node["need_bps"].as_u64().unwrap(),
        node["gave_bps"].as_u64().unwrap(),
    );
    assert_eq!(
        need,
        2 * (((MEMORY_MIB + DISK_MIB) << 20) * 8).div_ceil(150),
        "{case}"
    );
    assert!(
        (300_000_000..=650_000_000).contains(&gave),
        "{case}: {node}"
    );
    let timeline = node["timeline"].as_array().unwrap();
    let third = &timeline[2];
    assert_eq!(third["id"], "default/mvlab-vm3", "{case}: {node}");
    let after = third["started_after"].as_str().unwrap();
    let before = timeline.iter().find(|s| s["id"] == after).unwrap();
    assert!(
        third["start_s"].as_f64().unwrap() >= before["end_s"].as_f64().unwrap(),
        "{case}: {node}"
    );
    // It took a freed slot: at most one other was still moving.
    assert!(
        third["running_at_start"].as_u64().unwrap() <= 1,
        "{case}: {node}"
    );
}

#[test]
fn a_drain_is_judged_migration_by_migration() {
    if !privileged("a_drain_is_judged_migration_by_migration") {
        return;
    }
    let _lab = LabGuard(LAB.lock().unwrap_or_else(|p| p.into_inner()));
    for (case, extra) in [
        ("macvlan", &[][..]),
        ("ipv6", &["--ipv6"][..]),
        ("bridge", &["--cni", "bridge"][..]),
    ] {
        let (report, code, stderr) = drain(extra);
        let reasons: Vec<&str> = report["reasons"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap())
            .collect();
        assert_eq!(code, Some(0), "{case}: {reasons:?}\n{stderr}");
        assert_eq!(report["verdict"], "PASS", "{case}: {reasons:?}");
        assert_eq!(report["lab"]["scenario"], "drain");
        assert_judged_on_their_own(case, &report);
        let target = report["migrations"][0]["targets"][0].as_str().unwrap();
        match case {
            "ipv6" => assert!(target.starts_with("[fd00:200:5::12]:"), "{target}"),
            _ => assert!(target.starts_with("10.200.5.12:"), "{target}"),
        }
        if case == "bridge" {
            let vlans = &report["migrations"][2]["bytes_by_vlan"];
            assert!(vlans["100"].as_u64().unwrap() > DISK_MIB << 20, "{vlans}");
        }
    }
}

#[test]
fn lab_up_honours_the_parallel_limit_and_keeps_the_vmi_list() {
    if !privileged("lab_up_honours_the_parallel_limit_and_keeps_the_vmi_list") {
        return;
    }
    let _lab = LabGuard(LAB.lock().unwrap_or_else(|p| p.into_inner()));
    // Three at once when the limit allows three: nobody waits.
    let out = migverify(&[
        "lab",
        "up",
        "--scenario",
        "drain",
        "--memory",
        "64",
        "--parallel-outbound-migrations-per-node",
        "3",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = migverify(&["lab", "migrate", "-o", "json"]);
    let drain: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{drain}");
    let drain = &drain["drain"];
    assert_eq!(drain["peak_parallel"], 3, "{drain}");
    assert!(drain["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["waited_for"].is_null()));
    // The List the lab kept: every VM on node B, its ports published.
    let vmi: Value =
        serde_json::from_str(&std::fs::read_to_string("/run/mvlab/vmi.json").unwrap()).unwrap();
    for item in vmi["items"].as_array().unwrap() {
        assert_eq!(item["status"]["nodeName"], "node-b", "{item}");
        assert_eq!(item["status"]["migrationState"]["completed"], true);
        let ports = item["status"]["migrationState"]["targetDirectMigrationNodePorts"]
            .as_object()
            .unwrap();
        let mut labels: Vec<u64> = ports.values().map(|v| v.as_u64().unwrap()).collect();
        labels.sort();
        assert_eq!(labels, [0, 49152], "{item}");
    }
}
