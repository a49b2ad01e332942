//! The lab as the tests drive it: one lab at a time, `lab run` and its
//! report, and a host left clean whatever happens.

use std::{
    process::{Command, Output},
    sync::Mutex,
};

use serde_json::Value;

use super::sh;

/// The lab has fixed names: one at a time, whatever the harness does.
pub static LAB: Mutex<()> = Mutex::new(());

pub fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// Takes the lab lock and leaves a clean host behind, even on panic.
pub struct LabGuard<'a>(#[allow(dead_code)] std::sync::MutexGuard<'a, ()>);

impl LabGuard<'_> {
    pub fn take() -> Self {
        LabGuard(LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }
}

impl Drop for LabGuard<'_> {
    fn drop(&mut self) {
        let _ = migverify(&["lab", "down"]);
    }
}

pub fn lab_namespaces() -> Vec<String> {
    sh(&["ip", "netns", "list"])
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("mvlab-"))
        .map(str::to_string)
        .collect()
}

/// Live (not zombie) QEMU processes of the lab.
pub fn lab_qemus() -> Vec<String> {
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

pub fn assert_nothing_left(context: &str) {
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

/// `lab run ARGS -o json`: its report and exit code, and nothing of the
/// lab left behind.
///
/// One run again when the guest's kernel panicked on the target after the
/// switch-over (`LabError::GuestPanicked`): QEMU 7.2 under TCG damages a
/// throttled guest's memory now and then (docs/lab.md, "The running
/// guest"), which says nothing about migverify. Said on stderr, and a
/// second panic fails the test.
pub fn run(args: &[&str]) -> (Value, Option<i32>) {
    let mut all = vec!["lab", "run", "-o", "json"];
    all.extend_from_slice(args);
    let mut out = migverify(&all);
    if out.stdout.is_empty()
        && String::from_utf8_lossy(&out.stderr).contains("the guest panicked on the target")
    {
        eprintln!(
            "lab run {args:?}: the guest panicked on the target (QEMU under TCG); running it once more"
        );
        assert_nothing_left(&format!("{args:?}, after the guest's panic"));
        out = migverify(&all);
    }
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "lab run {args:?}: {e}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_nothing_left(&format!("{args:?}"));
    (report, out.status.code())
}

pub fn reason_ids(report: &Value) -> Vec<String> {
    report["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}
