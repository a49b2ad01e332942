//! Shared pieces of the privileged integration tests: the privilege gate and
//! throw-away network namespaces that remove themselves.
#![allow(dead_code)] // each test binary uses its own subset

pub mod apiserver;
pub mod lab;

use std::{
    io::Write as _,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

use verifier::dataplane::{privileges, Netns};

/// Whether a privileged test may run. Under `cargo xtask test`
/// (MIGVERIFY_PRIVILEGED_TESTS=1) a test that cannot run fails; elsewhere
/// it is skipped with the reason on stderr.
pub fn privileged(test: &str) -> bool {
    match privileges::check() {
        Ok(()) => true,
        Err(why) if std::env::var_os("MIGVERIFY_PRIVILEGED_TESTS").is_some() => {
            panic!("{test}: privileged test cannot run: {why}")
        }
        Err(why) => {
            // Straight to fd 2: the test harness captures eprintln! of passing tests.
            let _ = writeln!(
                std::io::stderr(),
                "skipping {test}: {why} (run `cargo xtask test` as root)"
            );
            false
        }
    }
}

/// Runs a command, panicking with its output when it fails.
pub fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace named `mvt-<pid>-<n>`, deleted on drop (which also
/// destroys every interface in it), so a failing test leaves nothing behind.
pub struct TestNetns {
    pub name: String,
}

impl TestNetns {
    pub fn new() -> Self {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "mvt-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        sh(&["ip", "netns", "add", &name]);
        let ns = TestNetns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        // No IPv6 autoconfiguration chatter (router solicitations, DAD, MLD)
        // to disturb exact counts.
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"]);
        ns.exec(&["sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"]);
        ns
    }

    pub fn netns(&self) -> Netns {
        Netns::parse(&self.name)
    }

    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "-n", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    pub fn exec(&self, args: &[&str]) -> String {
        let mut all = vec!["ip", "netns", "exec", &self.name];
        all.extend_from_slice(args);
        sh(&all)
    }

    /// The kernel's own counters of `iface`: (rx packets, rx bytes, tx packets, tx bytes).
    pub fn link_stats(&self, iface: &str) -> (u64, u64, u64, u64) {
        let json = self.ip(&["-s", "-j", "link", "show", "dev", iface]);
        let value: serde_json::Value = serde_json::from_str(&json).expect("ip -j prints JSON");
        let stats = &value[0]["stats64"];
        let n = |dir: &str, what: &str| stats[dir][what].as_u64().expect("stats64 counter");
        (
            n("rx", "packets"),
            n("rx", "bytes"),
            n("tx", "packets"),
            n("tx", "bytes"),
        )
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Two namespaces joined by a veth pair `va` (10.99.0.1) -- `vb` (10.99.0.2).
pub struct VethPair {
    pub a: TestNetns,
    pub b: TestNetns,
}

impl VethPair {
    pub fn new() -> Self {
        let (a, b) = (TestNetns::new(), TestNetns::new());
        a.ip(&[
            "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns", &b.name,
        ]);
        a.ip(&["addr", "add", "10.99.0.1/24", "dev", "va"]);
        b.ip(&["addr", "add", "10.99.0.2/24", "dev", "vb"]);
        a.ip(&["link", "set", "va", "up"]);
        b.ip(&["link", "set", "vb", "up"]);
        VethPair { a, b }
    }
}
