//! Benchmarks of migverify itself, measured side by side in one run
//! (ratios, not absolute times: these machines are shared and noisy):
//! per-packet cost, a real migration's duration and iperf3's throughput
//! with and without the observers, migverify's own CPU and memory, the
//! flow table under a flood, time to attach.
//!
//! Writes `bench/results/<time>.json` and `latest.json`, and rewrites
//! `docs/benchmarks.md`. Run with `cargo xtask bench` (as root).

mod labbench;
mod markdown;
mod perpacket;
mod soak;
mod userspace;

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Parser;
use serde::{Deserialize, Serialize};

#[derive(Debug, Parser)]
#[command(about = "migverify's benchmarks")]
struct Args {
    /// Fewer rounds and shorter runs: a smoke test, not figures to quote.
    #[arg(long)]
    pub quick: bool,
    /// Run one part and print its figures as JSON; nothing is written.
    #[arg(long, value_enum, value_name = "PART")]
    only: Option<Part>,
    /// Write docs/benchmarks.md again from a run's JSON; nothing is run.
    #[arg(long, value_name = "JSON", conflicts_with = "only")]
    render: Option<PathBuf>,
    /// The migverify binary the footprint benchmark runs.
    #[arg(long, value_name = "PATH")]
    migverify: Option<PathBuf>,
    /// Workspace root (results and docs are written there).
    #[arg(long, value_name = "DIR", default_value = ".")]
    root: PathBuf,
}

/// The parts of a run, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    PerPacket,
    Attach,
    Flood,
    Migration,
    /// One migration with the kernel's run-time statistics on.
    HooksInPlace,
    Iperf3,
    Footprint,
    /// The agent against the replay API server for 1000 migrations; its
    /// figures go into the latest results and docs/benchmarks.md.
    AgentSoak,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Machine {
    pub date: String,
    pub kernel: String,
    pub cpus: usize,
    pub cpu_model: String,
    pub memory_gib: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Results {
    pub machine: Machine,
    pub quick: bool,
    pub per_packet: Vec<perpacket::Shape>,
    pub migration: labbench::MigrationBench,
    pub iperf3: labbench::IperfBench,
    pub attach: labbench::AttachTime,
    pub footprint: userspace::FootprintBench,
    pub flood: userspace::FloodBench,
    /// Absent from runs made before the soak existed.
    #[serde(default)]
    pub soak: Option<soak::SoakBench>,
}

fn command_output(cmd: &str, args: &[&str]) -> String {
    std::process::Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        date: command_output("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]),
        kernel: command_output("uname", &["-r"]),
        cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        cpu_model: cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_string())
            .unwrap_or_default(),
        memory_gib: meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map_or(0.0, |kib| kib / (1024.0 * 1024.0)),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let Some(path) = &args.render {
        let json = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let results: Results = serde_json::from_slice(&json)
            .with_context(|| format!("{} is not a bench run's JSON", path.display()))?;
        return write_docs(&args.root, &results);
    }
    verifier::dataplane::privileges::check().map_err(anyhow::Error::msg)?;
    let migverify = match &args.migverify {
        Some(path) => path.clone(),
        None => std::env::current_exe()?.with_file_name("migverify"),
    };
    anyhow::ensure!(
        migverify.exists(),
        "{} is missing: build it (cargo build --release -p verifier)",
        migverify.display()
    );
    let (rounds, migration_rounds, memory, iperf_rounds, iperf_seconds, footprint_s) = if args.quick
    {
        (3, 2, 256, 1, 2, 10.0)
    } else {
        (7, 9, 512, 3, 5, 60.0)
    };

    let soak_migrations = if args.quick { 200 } else { 1000 };
    if args.only == Some(Part::AgentSoak) {
        // Its figures join the latest full run's: docs/benchmarks.md keeps
        // every part, bench/results/ every run.
        let latest = args.root.join("bench/results/latest.json");
        let json =
            std::fs::read(&latest).with_context(|| format!("reading {}", latest.display()))?;
        let mut results: Results = serde_json::from_slice(&json)?;
        results.soak = Some(soak::run(&migverify, soak_migrations, 20)?);
        return write(
            &args.root,
            &results,
            &results.soak.as_ref().unwrap().date.clone(),
        );
    }
    if let Some(part) = args.only {
        let figures = match part {
            Part::PerPacket => serde_json::to_value(perpacket::run(rounds)?),
            Part::Attach => serde_json::to_value(labbench::attach_time(rounds)?),
            Part::Flood => serde_json::to_value(userspace::flood(100_000)?),
            Part::Migration => serde_json::to_value(labbench::migration(migration_rounds, memory)?),
            Part::HooksInPlace => serde_json::to_value(labbench::hooks_in_place_alone(memory)?),
            Part::Iperf3 => serde_json::to_value(labbench::iperf(iperf_rounds, iperf_seconds)?),
            Part::Footprint => {
                serde_json::to_value(userspace::footprint(&migverify, 16, footprint_s)?)
            }
            Part::AgentSoak => unreachable!("handled above"),
        }?;
        println!("{}", serde_json::to_string_pretty(&figures)?);
        return Ok(());
    }
    eprintln!(
        "bench: per-packet cost ({rounds} rounds of {} repeats)",
        perpacket::REPEAT
    );
    let per_packet = perpacket::run(rounds)?;
    eprintln!("bench: time to attach");
    let attach = labbench::attach_time(rounds)?;
    eprintln!("bench: flow table flood");
    let flood = userspace::flood(100_000)?;
    eprintln!(
        "bench: migrations, {migration_rounds} rounds of {} variants",
        labbench::Variant::ALL.len()
    );
    let migration = labbench::migration(migration_rounds, memory)?;
    eprintln!("bench: iperf3");
    let iperf3 = labbench::iperf(iperf_rounds, iperf_seconds)?;
    eprintln!("bench: footprint of a verify process, {footprint_s} s");
    let footprint = userspace::footprint(&migverify, 16, footprint_s)?;
    eprintln!("bench: the agent, {soak_migrations} migrations");
    let soak = soak::run(&migverify, soak_migrations, 20)?;

    let results = Results {
        machine: machine(),
        quick: args.quick,
        per_packet,
        migration,
        iperf3,
        attach,
        footprint,
        flood,
        soak: Some(soak),
    };
    write(&args.root, &results, &results.machine.date)
}

/// The run's JSON as `bench/results/<date>.json` and `latest.json`, then the page.
fn write(root: &Path, results: &Results, date: &str) -> anyhow::Result<()> {
    let dir = root.join("bench/results");
    std::fs::create_dir_all(&dir)?;
    let json = serde_json::to_string_pretty(results)?;
    let stamp = date.replace(':', "");
    for name in [format!("{stamp}.json"), "latest.json".to_string()] {
        let path = dir.join(name);
        std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
    }
    eprintln!("bench: wrote {}", dir.join("latest.json").display());
    write_docs(root, results)
}

fn write_docs(root: &Path, results: &Results) -> anyhow::Result<()> {
    let docs = root.join("docs/benchmarks.md");
    let page = markdown::render(results);
    std::fs::write(&docs, &page).with_context(|| format!("writing {}", docs.display()))?;
    eprintln!("bench: wrote {}", docs.display());
    print!("{page}");
    Ok(())
}
