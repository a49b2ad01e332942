//! Benchmarks of migverify itself, measured side by side in one run
//! (ratios, not absolute times: these machines are shared and noisy):
//! per-packet cost, a real migration's duration and iperf3's throughput
//! with and without the observers, migverify's own CPU and memory, the
//! flow table under a flood, time to attach.
//!
//! Writes `bench/results/<time>.json` and `latest.json`, and rewrites
//! `docs/benchmarks.md`. Run with `cargo xtask bench` (as root).

mod inplace;
mod interval;
mod labbench;
mod markdown;
mod perpacket;
mod provenance;
mod reference;
mod soak;
mod targets;
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
    /// Another build of the eBPF programs (an object file) to measure beside
    /// this one, in the same rounds: per-packet and in place. Repeatable.
    #[arg(long = "build", value_name = "NAME=OBJECT", value_parser = parse_build)]
    builds: Vec<Build>,
    /// Rounds of the per-packet, in-place and iperf3-points parts (default:
    /// 7, 15 and 8, or fewer with --quick).
    #[arg(long, value_name = "N")]
    rounds: Option<usize>,
}

/// Another build of the eBPF programs, compared with this one.
#[derive(Debug, Clone)]
pub struct Build {
    pub name: String,
    pub object: Vec<u8>,
}

fn parse_build(arg: &str) -> Result<Build, String> {
    let (name, path) = arg
        .split_once('=')
        .ok_or_else(|| format!("{arg}: expected NAME=OBJECT"))?;
    let object = std::fs::read(path).map_err(|e| format!("reading {path}: {e}"))?;
    Ok(Build {
        name: name.to_string(),
        object,
    })
}

/// The parts of a run, for `--only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Part {
    PerPacket,
    Attach,
    Flood,
    Migration,
    /// Migrations with the kernel's run-time statistics on: the hooks
    /// against the empty program on the same hooks.
    HooksInPlace,
    Iperf3,
    /// iperf3 (one stream, offloads off) with the observers on every
    /// observation point, one node's and one interface: what each adds.
    Iperf3Points,
    Footprint,
    /// What the kernel's verifier does with each program: load time,
    /// instructions verified, JIT size.
    Verifier,
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
    /// The code measured (commit, clean or not).
    #[serde(default)]
    pub provenance: provenance::Provenance,
    pub quick: bool,
    pub per_packet: Vec<perpacket::Shape>,
    pub migration: labbench::MigrationBench,
    pub in_place: inplace::InPlaceBench,
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
    // iperf3: paired rounds with offloads off (the targets), then on.
    let (rounds, migration_rounds, memory, iperf_rounds, iperf_seconds, footprint_s) = if args.quick
    {
        (3, 2, 256, (2, 1), 2, 10.0)
    } else {
        (7, 11, 512, (8, 3), 5, 60.0)
    };
    let in_place_rounds = args.rounds.unwrap_or(if args.quick { 1 } else { 15 });
    let rounds = args.rounds.unwrap_or(rounds);
    let builds = &args.builds;

    let provenance = provenance::of_checkout(&args.root);
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
            Part::PerPacket => serde_json::to_value(perpacket::run(
                rounds,
                &with_reference(&args.root, builds)?,
            )?),
            Part::Attach => serde_json::to_value(labbench::attach_time(rounds)?),
            Part::Flood => serde_json::to_value(userspace::flood(100_000)?),
            Part::Migration => serde_json::to_value(labbench::migration(migration_rounds, memory)?),
            Part::HooksInPlace => {
                serde_json::to_value(in_place(&args.root, in_place_rounds, memory, builds)?)
            }
            Part::Iperf3 => serde_json::to_value(labbench::iperf(
                iperf_rounds.0,
                iperf_rounds.1,
                iperf_seconds,
            )?),
            Part::Iperf3Points => serde_json::to_value(labbench::iperf_points(
                args.rounds.unwrap_or(iperf_rounds.0),
                iperf_seconds,
            )?),
            Part::Verifier => serde_json::to_value(userspace::verifier_cost(builds)?),
            Part::Footprint => {
                serde_json::to_value(userspace::footprint(&migverify, 16, footprint_s)?)
            }
            Part::AgentSoak => unreachable!("handled above"),
        }?;
        let json = serde_json::to_string_pretty(&serde_json::json!({
            "machine": machine(),
            "provenance": provenance,
            "part": format!("{part:?}"),
            "builds": builds.iter().map(|b| &b.name).collect::<Vec<_>>(),
            "figures": figures,
        }))?;
        // Every run is kept, parts too.
        let dir = args.root.join("bench/results/parts");
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{part:?}.json", machine().date.replace(':', "")));
        std::fs::write(&path, &json).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
        println!("{json}");
        return Ok(());
    }
    eprintln!(
        "bench: per-packet cost ({rounds} rounds of {} repeats)",
        perpacket::REPEAT
    );
    // Built (or read) once for both parts that measure it.
    let builds = &with_reference(&args.root, builds)?;
    let per_packet = perpacket::run(rounds, builds)?;
    eprintln!("bench: time to attach");
    let attach = labbench::attach_time(rounds)?;
    eprintln!("bench: flow table flood");
    let flood = userspace::flood(100_000)?;
    eprintln!(
        "bench: migrations, {migration_rounds} rounds of {} variants",
        labbench::Variant::ALL.len()
    );
    let migration = labbench::migration(migration_rounds, memory)?;
    eprintln!("bench: in place, {in_place_rounds} rounds");
    let in_place = inplace::run(in_place_rounds, memory, builds, Some(reference::COMMIT))?;
    eprintln!("bench: iperf3");
    let iperf3 = labbench::iperf(iperf_rounds.0, iperf_rounds.1, iperf_seconds)?;
    eprintln!("bench: footprint of a verify process, {footprint_s} s");
    let footprint = userspace::footprint(&migverify, 16, footprint_s)?;
    eprintln!("bench: the agent, {soak_migrations} migrations");
    let soak = soak::run(&migverify, soak_migrations, 20)?;

    let results = Results {
        machine: machine(),
        provenance,
        quick: args.quick,
        per_packet,
        migration,
        in_place,
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
    let history = targets::history(root);
    let page = markdown::render(results, &history);
    std::fs::write(&docs, &page).with_context(|| format!("writing {}", docs.display()))?;
    eprintln!("bench: wrote {}", docs.display());
    print!("{page}");
    Ok(())
}

/// The in-place part: this build, `builds`, and the reference programs the
/// target is set against, in the same rounds.
fn in_place(
    root: &Path,
    rounds: usize,
    memory_mib: u64,
    builds: &[Build],
) -> anyhow::Result<inplace::InPlaceBench> {
    inplace::run(
        rounds,
        memory_mib,
        &with_reference(root, builds)?,
        Some(reference::COMMIT),
    )
}

/// `builds` and the reference programs (crate::reference), which the
/// per-packet and in-place parts measure beside this build: what they cost
/// on this machine is what its figures compare with.
fn with_reference(root: &Path, builds: &[Build]) -> anyhow::Result<Vec<Build>> {
    let mut all = builds.to_vec();
    all.push(reference::build(root)?);
    Ok(all)
}
