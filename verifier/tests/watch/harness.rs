//! The lab, `lab migrate` and `watch` as the tests drive them, and the
//! reading of `watch`'s lines.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Child, Command, Output, Stdio},
    sync::{mpsc, Mutex},
    thread,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;

use crate::{
    exposition::{parse_exposition, scrape},
    support::privileged,
};

/// One lab at a time within this binary, too.
pub static LAB: Mutex<()> = Mutex::new(());

/// A cause must be on the wire's heels: this long after the fault at most.
pub const WITHIN: Duration = Duration::from_secs(5);

pub fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// The lab of one test, always torn down.
pub struct Lab<'a> {
    pub _lock: std::sync::MutexGuard<'a, ()>,
    pub scenario: &'static str,
}

impl Lab<'_> {
    pub fn up(scenario: &'static str, extra: &[&str]) -> Self {
        let lock = LAB.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let lab = Lab {
            _lock: lock,
            scenario,
        };
        let mut args = vec!["lab", "up", "--scenario", scenario];
        args.extend_from_slice(extra);
        let out = migverify(&args);
        assert!(
            out.status.success(),
            "lab up {scenario}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        lab
    }

    /// Every interface migration traffic can cross, as an operator gives them.
    pub fn interfaces(&self) -> Vec<String> {
        let bridge = self.scenario == "vlan-mismatch";
        let mut specs = Vec::new();
        for node in ["a", "b"] {
            if self.scenario != "pod-network-fallback" {
                specs.push(format!("migration:migration0@mvlab-vh-{node}"));
            }
            specs.push(format!("primary:eth0@mvlab-vh-{node}"));
            specs.push(format!("migration:eth1@mvlab-node-{node}"));
            specs.push(format!("primary:eth0@mvlab-node-{node}"));
            if bridge {
                specs.push(format!("bridge:br-mig@mvlab-node-{node}"));
                specs.push(format!("migration:vh-mig@mvlab-node-{node}"));
            }
        }
        specs
    }

    pub fn watch_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = vec!["watch".to_string()];
        for spec in self.interfaces() {
            args.extend(["-i".to_string(), spec]);
        }
        for arg in ["--cidr", "10.200.5.0/24", "--vmi", "/run/mvlab/vmi.json"] {
            args.push(arg.to_string());
        }
        // The NAD's VLAN, where the migration network has one.
        if self.scenario == "vlan-mismatch" {
            args.extend(["--vlan".to_string(), "100".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    /// `lab migrate`, its progress lines stamped as they arrive.
    pub fn migrate(&self) -> Migration {
        let mut child = Command::new(env!("CARGO_BIN_EXE_migverify"))
            .args(["lab", "migrate", "-o", "json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run lab migrate");
        let stderr = child.stderr.take().unwrap();
        let progress = thread::spawn(move || {
            BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
                .map(|line| (SystemTime::now(), line))
                .collect::<Vec<_>>()
        });
        let mut stdout = String::new();
        child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut stdout)
            .unwrap();
        child.wait().unwrap();
        let progress = progress.join().unwrap();
        let qemu: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("lab migrate {}: {e}: {progress:?}", self.scenario));
        Migration {
            qemu: qemu["qemu"].clone(),
            progress,
        }
    }
}

impl Drop for Lab<'_> {
    fn drop(&mut self) {
        let _ = migverify(&["lab", "down"]);
    }
}

pub struct Migration {
    pub qemu: Value,
    pub progress: Vec<(SystemTime, String)>,
}

impl Migration {
    /// When the lab said `what` (the fault's start, the source's start).
    pub fn when(&self, what: &str) -> SystemTime {
        self.progress
            .iter()
            .find(|(_, line)| line.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in {:?}", self.progress))
            .0
    }
}

/// A running `migverify watch`, its stdout and stderr collected line by line.
pub struct Watch {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub errors: mpsc::Receiver<String>,
}

pub fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    lines
}

impl Watch {
    pub fn start(args: &[String]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_migverify"))
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run migverify watch");
        let lines = lines_of(child.stdout.take().unwrap());
        let errors = lines_of(child.stderr.take().unwrap());
        let watch = Watch {
            child,
            lines,
            errors,
        };
        // It says so on stderr once every observer is attached.
        match watch.errors.recv_timeout(Duration::from_secs(30)) {
            Ok(line) if line.starts_with("migverify: watching ") => watch,
            other => panic!("watch did not start: {other:?}"),
        }
    }

    /// Ctrl-C, then everything it printed and its exit code.
    pub fn stop(mut self) -> (Vec<String>, Option<i32>, String) {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        let status = self.child.wait().unwrap();
        // The readers end with the pipes.
        let mut lines = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        let errors: Vec<String> = self.errors.iter().collect();
        (lines, status.code(), errors.join("\n"))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `2025-01-31T12:34:56.789Z` back to a time.
pub fn parse_time(stamp: &str) -> SystemTime {
    let n = |range: std::ops::Range<usize>| -> i64 { stamp[range].parse().unwrap() };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    // Days from 1970-01-01, counting years from March.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + n(11..13) * 3600 + n(14..16) * 60 + n(17..19);
    UNIX_EPOCH + Duration::from_millis(secs as u64 * 1000 + n(20..23) as u64)
}

/// The first `cause` line naming `id`: its time and text.
pub fn first_cause<'a>(lines: &'a [String], id: &str) -> Option<(SystemTime, &'a str)> {
    lines.iter().find_map(|line| {
        let (stamp, rest) = line.split_once(' ')?;
        let rest = rest.strip_prefix("cause ")?;
        let mut words = rest.split_whitespace();
        let (_severity, found) = (words.next()?, words.next()?);
        (found == id).then(|| (parse_time(stamp), line.as_str()))
    })
}

/// (severity, id) of every cause line.
pub fn causes(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.strip_prefix("cause ")?;
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

pub fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

pub fn assert_soon(what: &str, fault: SystemTime, seen: SystemTime, within: Duration) {
    let after = seen.duration_since(fault).unwrap_or_default();
    assert!(
        after <= within,
        "{what}: diagnosed {:.1} s after the fault showed",
        after.as_secs_f64()
    );
}

/// What a broken scenario must show.
pub struct Expected {
    pub id: &'static str,
    /// The lab's progress line that marks the fault reaching the wire.
    pub fault: &'static str,
    pub verdict: &'static str,
    pub code: i32,
    /// How soon after the fault the cause must be named.
    pub within: Duration,
}

/// One broken scenario: a text watch and a JSON watch side by side during
/// one migration; the cause named in both soon after the fault.
pub fn diagnosed(
    scenario: &'static str,
    up: &[&str],
    watch: &[&str],
    expected: Expected,
) -> Vec<String> {
    let Expected {
        id,
        fault,
        verdict,
        code: exit,
        within,
    } = expected;
    if !privileged(&format!("watch {scenario}")) {
        return Vec::new();
    }
    let lab = Lab::up(scenario, up);
    // The text watcher also serves metrics, scraped all along.
    let metrics = "127.0.0.1:19466";
    let mut text_args = watch.to_vec();
    text_args.extend(["--metrics-listen", metrics]);
    let text = Watch::start(&lab.watch_args(&text_args));
    let mut json_args = watch.to_vec();
    json_args.extend(["-o", "json"]);
    let json = Watch::start(&lab.watch_args(&json_args));
    let scraping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    let scraper = {
        let scraping = scraping.clone();
        thread::spawn(move || {
            let mut pages = Vec::new();
            while scraping.load(std::sync::atomic::Ordering::Relaxed) {
                pages.push(parse_exposition(&scrape(metrics)).1);
                thread::sleep(Duration::from_millis(500));
            }
            pages
        })
    };
    let migration = lab.migrate();
    let fault_at = migration.when(fault);
    // Let a second refresh pass after the end.
    thread::sleep(Duration::from_millis(1500));
    scraping.store(false, std::sync::atomic::Ordering::Relaxed);
    let pages = scraper.join().unwrap();
    let (lines, code, stderr) = text.stop();
    let (json_out, json_code, _) = json.stop();

    // In the metrics while it happened: the cause's gauge at 1.
    let gauge = format!("migverify_diagnosis{{migration=\"default/mvlab-vm\",id=\"{id}\",");
    assert!(
        pages
            .iter()
            .any(|page| page.iter().any(|(s, v)| s.starts_with(&gauge) && *v == 1.0)),
        "{scenario}: {id} never at 1 in the metrics"
    );

    let (at, line) = first_cause(&lines, id)
        .unwrap_or_else(|| panic!("{scenario}: no {id} in\n{}\n{stderr}", lines.join("\n")));
    assert_soon(scenario, fault_at, at, within);
    assert!(line.contains("default/mvlab-vm"), "{line}");
    // No other alarm than the right one.
    for (severity, other) in causes(&lines) {
        assert!(
            other == id || severity == "info",
            "{scenario}: also {severity} {other}:\n{}",
            lines.join("\n")
        );
    }
    // The summary verify would print, and its exit status.
    assert!(
        lines.iter().any(|l| *l == format!("verdict: {verdict}")),
        "{}",
        lines.join("\n")
    );
    assert!(lines
        .iter()
        .any(|l| l.contains(id) && !l.contains(" cause ")));
    assert_eq!(code, Some(exit), "{stderr}");

    let values = json_lines(&json_out);
    let cause = values
        .iter()
        .find(|v| v["kind"] == "cause" && v["cause"]["id"] == id)
        .unwrap_or_else(|| panic!("{scenario}: no {id} among the JSON lines"));
    assert_soon(
        scenario,
        fault_at,
        parse_time(cause["time"].as_str().unwrap()),
        within,
    );
    assert!(cause["cause"]["evidence"].is_object());
    assert!(values.iter().any(|v| v["kind"] == "snapshot"
        && v["migrations"][0]["causes"]
            .as_array()
            .is_some_and(|c| c.iter().any(|c| c["id"] == id))));
    let summary = values.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["report"]["verdict"], verdict);
    assert_eq!(summary["report"]["schema_version"], 1);
    assert!(summary["report"]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["id"] == id));
    assert_eq!(json_code, Some(exit));
    let _ = migration.qemu;
    lines
}
