//! migverify's own footprint: CPU and memory of a `verify` process while
//! many migration-shaped connections run, and the flow table under a flood
//! of flows (its map-full path).

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use aya::programs::{TestRun as _, TestRunOptions};
use serde::{Deserialize, Serialize};
use verifier::{
    dataplane::{Dataplane, Netns},
    frames::TcpSegment,
    lab::{self, topology, Scenario},
};

#[derive(Debug, Serialize, Deserialize)]
pub struct FootprintBench {
    pub migrations: usize,
    pub connections: usize,
    pub seconds: f64,
    pub payload_bytes: u64,
    /// CPU time of the verify process over wall time, in % of one core.
    pub cpu_percent_of_one_core: f64,
    pub peak_rss_mib: f64,
    /// Peak RSS one second after start: attached, before any traffic.
    pub rss_attached_mib: f64,
    /// Flow entries the process read at each poll by the end (both tables).
    pub flow_entries: u64,
    pub verdict: String,
    /// What raised the verdict above PASS: each warning or error reason's
    /// id, with how many times it was raised.
    #[serde(default)]
    pub reasons: Vec<String>,
    pub connections_reported: u64,
}

fn proc_field(pid: u32, file: &str, key: &str) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// utime + stime of `pid`, seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks as f64 / hz)
}

/// `migrations` x 9 paced TCP connections (one main and eight multifd
/// channels each) from node A's virt-handler to node B's, for `seconds`,
/// with a real `migverify verify` process watching every hook.
pub fn footprint(
    migverify: &Path,
    migrations: usize,
    seconds: f64,
) -> anyhow::Result<FootprintBench> {
    let config = Scenario::Secondary.config();
    lab::up(&config, &|_| {})?;
    let result = footprint_up(migverify, &config, migrations, seconds);
    lab::down()?;
    result
}

fn footprint_up(
    migverify: &Path,
    config: &lab::LabConfig,
    migrations: usize,
    seconds: f64,
) -> anyhow::Result<FootprintBench> {
    let mut args: Vec<String> = vec![
        "verify".into(),
        "-o".into(),
        "json".into(),
        "--idle".into(),
        "3".into(),
    ];
    for point in topology::observation_points(config) {
        args.extend(["-i".into(), point.to_string()]);
    }
    args.extend(["--cidr".into(), config.migration_cidr()]);
    // All of them at once is the load measured, not a drain over the limit.
    for limit in [
        "--parallel-outbound-migrations-per-node",
        "--parallel-migrations-per-cluster",
    ] {
        args.extend([limit.into(), migrations.to_string()]);
    }
    let verify = Command::new(migverify)
        .args(&args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {}", migverify.display()))?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = verify.id();
    let cpu_before = cpu_seconds(pid).context("reading the verify process's CPU time")?;
    let rss_attached_kib = proc_field(pid, "status", "VmHWM:").context("reading VmHWM")?;

    let target = config.target_address();
    let server_ns = Netns::parse(topology::NODE_B.virt_handler);
    let client_ns = Netns::parse(topology::NODE_A.virt_handler);
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let started = Instant::now();
    for m in 0..migrations {
        let addr = SocketAddr::new(target, 20000 + m as u16);
        let listener = server_ns.run(|| TcpListener::bind(addr))??;
        threads.push(std::thread::spawn(move || {
            let mut total = 0u64;
            for conn in listener.incoming().take(9).flatten() {
                let mut conn = conn;
                let mut buf = vec![0u8; 1 << 16];
                std::thread::spawn(move || while matches!(conn.read(&mut buf), Ok(n) if n > 0) {});
                total += 1;
            }
            total
        }));
        for _ in 0..9 {
            let stream = client_ns.run(|| TcpStream::connect(addr))??;
            let stop = stop.clone();
            threads.push(std::thread::spawn(move || {
                // About 100 KB/s per connection: steady, not CPU-bound.
                let chunk = vec![0x5au8; 10_000];
                let mut sent = 0u64;
                let mut stream = stream;
                while !stop.load(Ordering::Relaxed) {
                    if stream.write_all(&chunk).is_err() {
                        break;
                    }
                    sent += chunk.len() as u64;
                    std::thread::sleep(Duration::from_millis(100));
                }
                sent
            }));
        }
    }
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = cpu_seconds(pid).context("reading CPU time")? - cpu_before;
    let peak_rss_kib = proc_field(pid, "status", "VmHWM:").context("reading VmHWM")?;
    let mut payload = 0;
    for thread in threads {
        payload += thread.join().unwrap_or(0);
    }
    let out = verify.wait_with_output()?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("verify's JSON report")?;
    Ok(FootprintBench {
        migrations,
        connections: migrations * 9,
        seconds: elapsed,
        payload_bytes: payload,
        cpu_percent_of_one_core: cpu / elapsed * 100.0,
        peak_rss_mib: peak_rss_kib as f64 / 1024.0,
        rss_attached_mib: rss_attached_kib as f64 / 1024.0,
        flow_entries: report["dataplane"]["flows_classified"]
            .as_u64()
            .unwrap_or(0),
        verdict: report["verdict"].as_str().unwrap_or("?").to_string(),
        reasons: raised(&report),
        connections_reported: report["dataplane"]["connections"].as_u64().unwrap_or(0),
    })
}

/// The warning and error reasons of a verify report, as `id xN`.
fn raised(report: &serde_json::Value) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for reason in report["reasons"].as_array().into_iter().flatten() {
        if matches!(reason["severity"].as_str(), Some("warning" | "error")) {
            *counts
                .entry(reason["id"].as_str().unwrap_or("?").to_string())
                .or_default() += 1;
        }
    }
    counts
        .into_iter()
        .map(|(id, n)| format!("{id} x{n}"))
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
pub struct FloodBench {
    pub flows_offered: u64,
    pub flows_kept: u64,
    /// Segments of flows that found the table full (counted, not silent).
    pub flow_table_full: u64,
    /// The migration flow made before the flood is still counted after it.
    pub migration_flow_kept: bool,
    pub migration_flow_packets: u64,
    pub seconds: f64,
}

/// 100 000 flows inside the migration CIDR through the classifier: the
/// flow table (65 536 entries) fills, the rest is counted, and a
/// migration flow made before keeps being counted.
pub fn flood(flows: u32) -> anyhow::Result<FloodBench> {
    let mut dataplane = Dataplane::load()?;
    dataplane.load_classifier()?;
    dataplane.program_mut("ingress_00").load()?;
    dataplane.add_endpoint(&"10.200.5.12:49152".parse()?)?;
    dataplane.add_cidr("10.0.0.0/8".parse()?)?;
    let migration = TcpSegment::new("10.200.5.11:41000".parse()?, "10.200.5.12:49152".parse()?)
        .payload(&[1; 100])
        .frame();
    let run = |dataplane: &mut Dataplane, frame: &[u8]| -> anyhow::Result<()> {
        dataplane
            .program_mut("ingress_00")
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })?;
        Ok(())
    };
    run(&mut dataplane, &migration)?;
    let started = Instant::now();
    for i in 0..flows {
        let src = SocketAddr::from((
            [10, 1, (i >> 16) as u8, (i >> 8) as u8],
            1024 + (i & 0xff) as u16,
        ));
        let frame = TcpSegment::new(src, "10.2.0.1:80".parse()?).frame();
        run(&mut dataplane, &frame)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    run(&mut dataplane, &migration)?;
    let all = dataplane.flows()?;
    let kept = all
        .iter()
        .find(|(k, _)| k.dport == 49152)
        .map(|(_, s)| s.packets);
    Ok(FloodBench {
        flows_offered: u64::from(flows),
        flows_kept: all.len() as u64,
        flow_table_full: dataplane.stats()?.flow_table_full,
        migration_flow_kept: kept.is_some(),
        migration_flow_packets: kept.unwrap_or(0),
        seconds,
    })
}

/// One program's load: the kernel's verifier and JIT.
#[derive(Debug, Serialize, Deserialize)]
pub struct ProgramCost {
    pub build: String,
    pub program: String,
    pub load_ms: f64,
    pub verified_insns: Option<u32>,
    pub jited_bytes: u32,
}

/// Loads every TC program of this build and `builds`, one by one.
pub fn verifier_cost(builds: &[crate::Build]) -> anyhow::Result<Vec<ProgramCost>> {
    let mut costs = Vec::new();
    let this = std::iter::once(("migverify".to_string(), None));
    let others = builds.iter().map(|b| (b.name.clone(), Some(&b.object)));
    for (build, object) in this.chain(others) {
        let mut dataplane = match object {
            None => Dataplane::load()?,
            Some(object) => Dataplane::load_variant(object)?,
        };
        for program in ["classify_packet", "ingress_00", "egress_00", "empty"] {
            if !dataplane.has_program(program) {
                continue;
            }
            let started = Instant::now();
            dataplane.program_mut(program).load()?;
            let load_ms = started.elapsed().as_secs_f64() * 1000.0;
            let info = dataplane.program_mut(program).info()?;
            costs.push(ProgramCost {
                build: build.clone(),
                program: program.to_string(),
                load_ms,
                verified_insns: info.verified_instruction_count(),
                jited_bytes: info.size_jitted(),
            });
        }
    }
    Ok(costs)
}
