//! `migverify watch` on the lab: every broken scenario gets its named cause
//! within seconds of the fault showing on the wire, in the timestamped lines
//! and in the JSON lines; a healthy migration raises no alarm; the metrics
//! endpoint is scraped while a migration runs; the full-screen view is
//! driven in a pseudo-terminal.
//!
//! The lab has fixed names: run under `flock /tmp/mvlab-test.lock`, as every
//! lab test here is.

mod support;

use std::{
    collections::BTreeMap,
    io::{BufRead as _, BufReader, Read as _, Write as _},
    net::TcpStream,
    process::{Child, Command, Output, Stdio},
    sync::{mpsc, Mutex},
    thread,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use support::privileged;

/// One lab at a time within this binary, too.
static LAB: Mutex<()> = Mutex::new(());

/// A cause must be on the wire's heels: this long after the fault at most.
const WITHIN: Duration = Duration::from_secs(5);

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .output()
        .expect("run migverify")
}

/// The lab of one test, always torn down.
struct Lab<'a> {
    _lock: std::sync::MutexGuard<'a, ()>,
    scenario: &'static str,
}

impl Lab<'_> {
    fn up(scenario: &'static str, extra: &[&str]) -> Self {
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
    fn interfaces(&self) -> Vec<String> {
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

    fn watch_args(&self, extra: &[&str]) -> Vec<String> {
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
    fn migrate(&self) -> Migration {
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

struct Migration {
    qemu: Value,
    progress: Vec<(SystemTime, String)>,
}

impl Migration {
    /// When the lab said `what` (the fault's start, the source's start).
    fn when(&self, what: &str) -> SystemTime {
        self.progress
            .iter()
            .find(|(_, line)| line.contains(what))
            .unwrap_or_else(|| panic!("no {what:?} in {:?}", self.progress))
            .0
    }
}

/// A running `migverify watch`, its stdout and stderr collected line by line.
struct Watch {
    child: Child,
    lines: mpsc::Receiver<String>,
    errors: mpsc::Receiver<String>,
}

fn lines_of(pipe: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    lines
}

impl Watch {
    fn start(args: &[String]) -> Self {
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
    fn stop(mut self) -> (Vec<String>, Option<i32>, String) {
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
fn parse_time(stamp: &str) -> SystemTime {
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
fn first_cause<'a>(lines: &'a [String], id: &str) -> Option<(SystemTime, &'a str)> {
    lines.iter().find_map(|line| {
        let (stamp, rest) = line.split_once(' ')?;
        let rest = rest.strip_prefix("cause ")?;
        let mut words = rest.split_whitespace();
        let (_severity, found) = (words.next()?, words.next()?);
        (found == id).then(|| (parse_time(stamp), line.as_str()))
    })
}

/// (severity, id) of every cause line.
fn causes(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|line| {
            let rest = line.split_once(' ')?.1.strip_prefix("cause ")?;
            let mut words = rest.split_whitespace();
            Some((words.next()?.to_string(), words.next()?.to_string()))
        })
        .collect()
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

fn assert_soon(what: &str, fault: SystemTime, seen: SystemTime) {
    let after = seen.duration_since(fault).unwrap_or_default();
    assert!(
        after <= WITHIN,
        "{what}: diagnosed {:.1} s after the fault showed",
        after.as_secs_f64()
    );
}

/// What a broken scenario must show.
struct Expected {
    id: &'static str,
    /// The lab's progress line that marks the fault reaching the wire.
    fault: &'static str,
    verdict: &'static str,
    code: i32,
}

/// One broken scenario: a text watch and a JSON watch side by side during
/// one migration; the cause named in both within 5 s of the fault.
fn diagnosed(
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
    assert_soon(scenario, fault_at, at);
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

fn fails(id: &'static str, fault: &'static str) -> Expected {
    Expected {
        id,
        fault,
        verdict: "FAIL",
        code: 1,
    }
}

const SOURCE_STARTS: &str = "starting the source QEMU";

#[test]
fn stall_is_a_black_hole() {
    let lines = diagnosed(
        "stall",
        &["--memory", "256", "--timeout", "8"],
        &[],
        fails("cause.blackhole", "fault: dropping migration packets"),
    );
    if let Some((_, line)) = first_cause(&lines, "cause.blackhole") {
        assert!(line.contains("retransmitted"), "{line}");
    }
}

#[test]
fn mtu_mismatch_is_an_mtu_black_hole() {
    let lines = diagnosed(
        "mtu-mismatch",
        &["--memory", "64", "--timeout", "6"],
        &[],
        fails("cause.mtu-blackhole", SOURCE_STARTS),
    );
    if let Some((_, line)) = first_cause(&lines, "cause.mtu-blackhole") {
        // The segment and the MSS the jumbo MTU allows, against what arrived.
        assert!(
            line.contains("8948 B") && line.contains("MSS 8960"),
            "{line}"
        );
        assert!(line.contains("MTU 9000"), "{line}");
    }
}

#[test]
fn vlan_mismatch_is_an_unreachable_peer() {
    let lines = diagnosed(
        "vlan-mismatch",
        &["--memory", "64"],
        &[],
        fails("cause.peer-unreachable", SOURCE_STARTS),
    );
    if let Some((_, line)) = first_cause(&lines, "cause.peer-unreachable") {
        assert!(line.contains("10.200.5.12 never answered ARP"), "{line}");
        assert!(line.contains("VLAN 100"), "{line}");
    }
}

#[test]
fn rate_limit_is_a_rate_cap() {
    // 256 MiB at 200 Mbit/s take about 11 s: within KubeVirt's default
    // budget a note, beyond a 10 s/GiB budget (10 s) an error.
    let lines = diagnosed(
        "rate-limited",
        &["--memory", "256"],
        &["--completion-timeout-per-gib", "10"],
        fails("cause.rate-cap", SOURCE_STARTS),
    );
    if let Some((_, line)) = first_cause(&lines, "cause.rate-cap") {
        assert!(line.contains(" error cause.rate-cap "), "{line}");
        assert!(
            line.contains("flat at 1") && line.contains("Mbit/s"),
            "{line}"
        );
        assert!(line.contains("a shaper"), "{line}");
        assert!(line.contains("completion budget of 10 s"), "{line}");
    }
}

#[test]
fn pod_network_fallback_is_a_fallback() {
    diagnosed(
        "pod-network-fallback",
        &["--memory", "256"],
        &[],
        fails("fallback.primary-network", SOURCE_STARTS),
    );
}

#[test]
fn a_healthy_migration_raises_no_alarm() {
    if !privileged("a_healthy_migration_raises_no_alarm") {
        return;
    }
    let lab = Lab::up("secondary", &["--memory", "256"]);
    let watch = Watch::start(&lab.watch_args(&[]));
    let migration = lab.migrate();
    assert_eq!(migration.qemu["status"], "completed");
    thread::sleep(Duration::from_millis(2500));
    let (lines, code, stderr) = watch.stop();
    assert_eq!(
        causes(&lines),
        Vec::<(String, String)>::new(),
        "{}",
        lines.join("\n")
    );
    let migration_lines: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(" migration default/mvlab-vm "))
        .collect();
    assert!(
        migration_lines
            .iter()
            .any(|l| l.contains("state=completed")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("  flow ") && l.contains("role=migration")),
        "{}",
        lines.join("\n")
    );
    assert!(
        lines.iter().any(|l| l == "verdict: PASS"),
        "{}",
        lines.join("\n")
    );
    assert_eq!(code, Some(0), "{stderr}");
}

/// A strict reader of the Prometheus text format: every sample belongs to
/// a family announced by `# TYPE` (histograms by their `_bucket`, `_sum`,
/// `_count`), names and labels are well formed, values are numbers.
fn parse_exposition(text: &str) -> (BTreeMap<String, String>, BTreeMap<String, f64>) {
    let mut types: BTreeMap<String, String> = BTreeMap::new();
    let mut samples = BTreeMap::new();
    let name_ok = |n: &str| {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
            && !n.starts_with(|c: char| c.is_ascii_digit())
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE name kind");
            assert!(name_ok(name), "bad family name {name:?}");
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "bad type {kind:?}"
            );
            assert!(
                types.insert(name.into(), kind.into()).is_none(),
                "{name} twice"
            );
            continue;
        }
        if line.starts_with("# HELP ") || line.is_empty() {
            continue;
        }
        assert!(!line.starts_with('#'), "unknown comment {line:?}");
        let (series, value) = line.rsplit_once(' ').expect("series value");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line:?}")),
        };
        let name = series.split('{').next().unwrap();
        assert!(name_ok(name), "bad metric name in {line:?}");
        if let Some(labels) = series.strip_prefix(name) {
            if !labels.is_empty() {
                let inner = labels
                    .strip_prefix('{')
                    .and_then(|l| l.strip_suffix('}'))
                    .unwrap_or_else(|| panic!("bad labels in {line:?}"));
                // label="value" pairs; values may hold escaped quotes.
                let mut rest = inner;
                while !rest.is_empty() {
                    let (label, after) = rest.split_once("=\"").expect("label=\"value\"");
                    assert!(name_ok(label), "bad label {label:?} in {line:?}");
                    let mut end = None;
                    let mut escaped = false;
                    for (i, c) in after.char_indices() {
                        match (escaped, c) {
                            (true, _) => escaped = false,
                            (false, '\\') => escaped = true,
                            (false, '"') => {
                                end = Some(i);
                                break;
                            }
                            _ => {}
                        }
                    }
                    let end = end.unwrap_or_else(|| panic!("unterminated value in {line:?}"));
                    rest = after[end + 1..]
                        .strip_prefix(',')
                        .unwrap_or(&after[end + 1..]);
                }
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "{name} has no # TYPE");
        assert!(
            samples.insert(series.to_string(), value).is_none(),
            "{series} twice"
        );
    }
    (types, samples)
}

fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: migverify\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("HTTP head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

#[test]
fn metrics_are_scraped_while_a_migration_runs() {
    if !privileged("metrics_are_scraped_while_a_migration_runs") {
        return;
    }
    let lab = Lab::up("rate-limited", &["--memory", "128"]);
    let addr = "127.0.0.1:19464";
    let watch = Watch::start(&lab.watch_args(&["--metrics-listen", "19464"]));
    // verify serves the same metrics while it waits for the migration to end.
    // It reads its VMI once, at the start, before the lab publishes one:
    // the migration CIDR finds the migration.
    let mut verify_args = lab.watch_args(&["--metrics-listen", "127.0.0.1:19465"]);
    verify_args[0] = "verify".into();
    let vmi = verify_args.iter().position(|a| a == "--vmi").unwrap();
    verify_args.drain(vmi..vmi + 2);
    verify_args.extend(["--migrations", "1", "-o", "json"].map(String::from));
    let verify = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(&verify_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run migverify verify");
    thread::sleep(Duration::from_secs(2));
    let migrate = thread::spawn(move || migverify(&["lab", "migrate", "-o", "json"]));
    let mut scrapes = Vec::new();
    let mut verify_scrape = None;
    let moved_on_migration = |series: &BTreeMap<String, f64>| {
        series.iter().any(|(s, v)| {
            s.starts_with("migverify_migration_bytes_total{")
                && s.contains("role=\"migration\"")
                && *v > 0.0
        })
    };
    while !migrate.is_finished() {
        scrapes.push(parse_exposition(&scrape(addr)));
        // Mid-migration: once watch has seen migration bytes (QEMU takes a
        // few seconds to start), and a refresh later for verify's page.
        let watch_saw_bytes = scrapes
            .iter()
            .filter(|(_, s)| moved_on_migration(s))
            .count();
        if verify_scrape.is_none() && watch_saw_bytes == 3 {
            verify_scrape = Some(parse_exposition(&scrape("127.0.0.1:19465")));
        }
        thread::sleep(Duration::from_millis(500));
    }
    thread::sleep(Duration::from_millis(1500));
    scrapes.push(parse_exposition(&scrape(addr)));
    assert!(migrate.join().unwrap().status.success());
    let (_, code, stderr) = watch.stop();
    assert_eq!(code, Some(0), "{stderr}");
    let verified = verify.wait_with_output().unwrap();
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    let (_, mid) = verify_scrape.expect("verify scraped mid-migration");
    let moved = mid
        .iter()
        .find(|(s, _)| {
            s.starts_with("migverify_migration_bytes_total{") && s.contains("role=\"migration\"")
        })
        .map(|(_, v)| *v);
    assert!(moved.is_some_and(|v| v > 0.0), "verify's page: {mid:#?}");
    assert!(scrapes.len() >= 8, "{} scrapes", scrapes.len());

    // Counters (and histogram buckets, sums, counts) never go down.
    for pair in scrapes.windows(2) {
        let ((types, before), (_, after)) = (&pair[0], &pair[1]);
        for (series, value) in before {
            let name = series.split('{').next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s))
                .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
                .unwrap_or(name);
            if types[family] == "gauge" {
                continue;
            }
            let now = after.get(series).copied().unwrap_or(0.0);
            assert!(now >= *value, "{series} went down: {value} -> {now}");
        }
    }
    let (types, last) = scrapes.last().unwrap();
    let value = |series: &str| {
        last.get(series)
            .copied()
            .unwrap_or_else(|| panic!("no {series} in {last:#?}"))
    };
    let m = "migration=\"default/mvlab-vm\"";
    assert!(
        value(&format!(
            "migverify_migration_bytes_total{{{m},role=\"migration\"}}"
        )) > 128e6
    );
    assert_eq!(
        value(&format!(
            "migverify_migration_bytes_total{{{m},role=\"primary\"}}"
        )),
        0.0
    );
    assert!(
        value(&format!(
            "migverify_migration_packets_total{{{m},role=\"migration\"}}"
        )) > 1e4
    );
    assert!(
        value(&format!(
            "migverify_migration_payload_bytes_total{{{m},direction=\"to_target\"}}"
        )) >= 128.0 * 1024.0 * 1024.0
    );
    // Throughput and RTT histograms filled; most intervals near 200 Mbit/s.
    let count = value(&format!(
        "migverify_migration_throughput_bytes_per_second_count{{{m}}}"
    ));
    assert!(count >= 30.0, "{count} intervals");
    let below_12_5 = value(&format!(
        "migverify_migration_throughput_bytes_per_second_bucket{{{m},le=\"12500000\"}}"
    ));
    let below_31 = value(&format!(
        "migverify_migration_throughput_bytes_per_second_bucket{{{m},le=\"31250000\"}}"
    ));
    assert!(
        below_31 - below_12_5 >= count * 0.6,
        "{below_12_5} {below_31} of {count}"
    );
    assert!(value(&format!("migverify_migration_rtt_seconds_count{{{m}}}")) > 10.0);
    assert_eq!(types["migverify_migration_rtt_seconds"], "histogram");
    assert_eq!(
        value(&format!("migverify_migration_stall_seconds{{{m}}}")),
        0.0
    );
    // The rate cap was diagnosed while it ran, and is a labelled gauge.
    let cap = format!("migverify_diagnosis{{{m},id=\"cause.rate-cap\",severity=\"info\"}}");
    assert!(
        scrapes.iter().any(|(_, s)| s.get(&cap) == Some(&1.0)),
        "rate cap never reported"
    );
    assert_eq!(value("migverify_verdict{verdict=\"PASS\"}"), 1.0);
    assert_eq!(value("migverify_verdict{verdict=\"FAIL\"}"), 0.0);
    // Health: every attachment, nothing lost.
    let attached = last
        .keys()
        .filter(|s| s.starts_with("migverify_attached{"))
        .count();
    assert_eq!(attached, lab.interfaces().len());
    assert_eq!(value("migverify_events_lost_total"), 0.0);
    assert_eq!(value("migverify_flow_table_full_total"), 0.0);
    // The flow cache serves the bulk: a flow misses it when it shows up on
    // another CPU or meets a colliding flow, not segment by segment.
    let packets: f64 = last
        .iter()
        .filter(|(s, _)| s.starts_with("migverify_interface_packets_total{"))
        .map(|(_, v)| v)
        .sum();
    let misses = value("migverify_flow_cache_misses_total");
    assert!(
        misses * 100.0 < packets,
        "{misses} flow cache misses in {packets} packets"
    );
}

#[test]
fn the_terminal_view_shows_the_migration_row() {
    if !privileged("the_terminal_view_shows_the_migration_row") {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        panic!("`script` (util-linux) is needed to drive a pseudo-terminal");
    }
    let lab = Lab::up("stall", &["--memory", "256", "--timeout", "6"]);
    let args = lab.watch_args(&[]);
    // A terminal of 160 x 50: the view fits its lines to it.
    let command = std::iter::once(format!(
        "stty cols 160 rows 50; exec {}",
        env!("CARGO_BIN_EXE_migverify")
    ))
    .chain(args)
    .collect::<Vec<_>>()
    .join(" ");
    // script gives the command a pseudo-terminal; what we write to its
    // stdin is typed on it (0x03 is Ctrl-C), what it shows comes back.
    let mut script = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run script");
    let mut screen_out = script.stdout.take().unwrap();
    let reader = thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = screen_out.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    });
    thread::sleep(Duration::from_secs(3));
    let migration = lab.migrate();
    assert_ne!(migration.qemu["status"], "completed");
    thread::sleep(Duration::from_millis(1500));
    let mut stdin = script.stdin.take().unwrap();
    stdin.write_all(b"\x03").unwrap();
    stdin.flush().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while script.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "watch did not stop on Ctrl-C");
        thread::sleep(Duration::from_millis(100));
    }
    drop(stdin);
    let screen = reader.join().unwrap();
    // The alternate screen, entered and left; redrawn in place.
    assert!(screen.contains("\x1b[?1049h") && screen.contains("\x1b[?1049l"));
    assert!(screen.contains("\x1b[H"));
    assert!(screen.contains("migverify watch"), "{screen}");
    assert!(
        screen.contains("MIGRATION default/mvlab-vm  -> 10.200.5.12:"),
        "{screen}"
    );
    assert!(
        screen.contains("MOVING") && screen.contains("STALLED"),
        "{screen}"
    );
    assert!(screen.contains("of progressTimeout 150 s"), "{screen}");
    assert!(
        screen.contains("FLOW") && screen.contains("established"),
        "{screen}"
    );
    assert!(screen.contains("ERROR   cause.blackhole"), "{screen}");
    // Then the summary verify prints, on the normal screen.
    let after = screen.rsplit("\x1b[?1049l").next().unwrap();
    assert!(after.contains("verdict: FAIL"), "{after}");
    assert!(after.contains("cause.blackhole"), "{after}");
}
