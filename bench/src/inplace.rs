//! What the hooks cost in place: real lab migrations with the kernel's BPF
//! run-time statistics on (`BPF_ENABLE_STATS`), migverify's programs on
//! every observation point against the empty program on the same hooks
//! (the in-place floor: what the kernel's hook, the call into a program and
//! the statistics' own clock reads cost), alternating round by round, the
//! order reversed every other round.

use std::time::Duration;

use anyhow::Context as _;
use aya::programs::{tc::TcAttachOptions, LinkOrder, TcAttachType};
use serde::{Deserialize, Serialize};
use verifier::{
    dataplane::{netns, AttachSpec, Dataplane},
    lab::{self, topology, LabConfig},
};

use crate::{
    interval::{median_interval, Interval},
    labbench::{attach_with, bench_config, quiet},
    Build,
};

/// The name of the floor's rows.
pub const FLOOR: &str = "empty";
/// The name of this build's rows.
pub const THIS_BUILD: &str = "migverify";

/// One migration of one variant.
#[derive(Debug, Serialize, Deserialize)]
pub struct InPlaceRun {
    pub round: usize,
    pub variant: String,
    pub migration_ms: u64,
    /// Runs of the programs on the hooks, and the time the kernel counted.
    pub runs: u64,
    pub run_time_ns: u64,
    pub ns_per_run: f64,
    /// Segments of kept flows that missed their CPU's flow cache (not for
    /// the floor).
    pub flow_cache_misses: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InPlaceSummary {
    pub variant: String,
    /// ns per hook run, over the rounds.
    pub ns_per_run: Interval,
    /// ns per hook run above the floor of the same round.
    pub above_floor: Interval,
    /// Above the floor, as a share of the reference's above the floor in
    /// the same round (when a reference build ran).
    pub to_reference: Option<Interval>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct InPlaceBench {
    pub memory_mib: u64,
    pub rounds: usize,
    pub runs: Vec<InPlaceRun>,
    pub summary: Vec<InPlaceSummary>,
    /// The build `to_reference` divides by, if one ran.
    pub reference: Option<String>,
}

/// `rounds` rounds of one migration per variant (the floor, this build and
/// `builds`) on a lab of its own.
pub fn run(
    rounds: usize,
    memory_mib: u64,
    builds: &[Build],
    reference: Option<&str>,
) -> anyhow::Result<InPlaceBench> {
    let config = bench_config(memory_mib);
    lab::up(&config, &quiet)?;
    let result = rounds_on(&config, rounds, builds);
    lab::down()?;
    let runs = result?;
    let mut names = vec![FLOOR.to_string(), THIS_BUILD.to_string()];
    names.extend(builds.iter().map(|b| b.name.clone()));
    let summary = names
        .iter()
        .map(|name| summarize(name, &runs, reference))
        .collect();
    Ok(InPlaceBench {
        memory_mib,
        rounds,
        runs,
        summary,
        reference: reference.map(str::to_string),
    })
}

fn rounds_on(
    config: &LabConfig,
    rounds: usize,
    builds: &[Build],
) -> anyhow::Result<Vec<InPlaceRun>> {
    let mut order: Vec<Option<&Build>> = vec![None, None];
    order.extend(builds.iter().map(Some));
    let mut runs = Vec::new();
    for round in 0..rounds {
        let mut this_round: Vec<(usize, Option<&Build>)> =
            order.iter().copied().enumerate().collect();
        if round % 2 == 1 {
            this_round.reverse();
        }
        for (i, variant) in this_round {
            let name = match (i, variant) {
                (0, _) => FLOOR,
                (_, None) => THIS_BUILD,
                (_, Some(v)) => v.name.as_str(),
            };
            eprintln!("bench: in place, round {}/{rounds}, {name}", round + 1);
            let run = if i == 0 {
                floor_run(config)?
            } else {
                let dataplane = match variant {
                    None => Dataplane::load()?,
                    Some(v) => Dataplane::load_variant(&v.object)?,
                };
                observed_run(config, dataplane)?
            };
            runs.push(InPlaceRun {
                round,
                variant: name.to_string(),
                ..run
            });
        }
    }
    Ok(runs)
}

/// Statistics on, the observers attached with the migration CIDR loaded (as
/// the migration benchmark's `ProgramsOnly`), one migration.
fn observed_run(config: &LabConfig, dataplane: Dataplane) -> anyhow::Result<InPlaceRun> {
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("turning the kernel's BPF run-time statistics on")?;
    let mut dataplane = attach_with(config, dataplane)?;
    let outcome = lab::migrate(config, &quiet, &mut |_| Ok(()))?;
    let slots: Vec<u32> = dataplane.attachments().iter().map(|a| a.slot).collect();
    let (mut runs, mut time) = (0, Duration::ZERO);
    for slot in slots {
        for name in [format!("ingress_{slot:02}"), format!("egress_{slot:02}")] {
            let info = dataplane.program_mut(&name).info()?;
            runs += info.run_count();
            time += info.run_time();
        }
    }
    drop(stats);
    Ok(InPlaceRun {
        round: 0,
        variant: String::new(),
        migration_ms: outcome.total_time_ms,
        runs,
        run_time_ns: time.as_nanos() as u64,
        ns_per_run: time.as_nanos() as f64 / runs.max(1) as f64,
        flow_cache_misses: Some(dataplane.stats()?.flow_cache_misses),
    })
}

/// The empty program on the same hooks, both directions, statistics on.
fn floor_run(config: &LabConfig) -> anyhow::Result<InPlaceRun> {
    let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
        .context("turning the kernel's BPF run-time statistics on")?;
    let mut dataplane = empty_on(&topology::observation_points(config))?;
    let outcome = lab::migrate(config, &quiet, &mut |_| Ok(()))?;
    let info = dataplane.program_mut(FLOOR).info()?;
    drop(stats);
    // Dropping the data plane closes the program and its tcx links.
    drop(dataplane);
    Ok(InPlaceRun {
        round: 0,
        variant: String::new(),
        migration_ms: outcome.total_time_ms,
        runs: info.run_count(),
        run_time_ns: info.run_time().as_nanos() as u64,
        ns_per_run: info.run_time().as_nanos() as f64 / info.run_count().max(1) as f64,
        flow_cache_misses: None,
    })
}

/// The empty program on `points`, both directions: the hooks' floor.
/// Dropping the data plane detaches it.
pub fn empty_on(points: &[AttachSpec]) -> anyhow::Result<Dataplane> {
    let mut dataplane = Dataplane::load()?;
    let program = dataplane.program_mut(FLOOR);
    program.load().context("loading the empty program")?;
    for point in points {
        attach_empty(program, point)?;
    }
    Ok(dataplane)
}

fn attach_empty(
    program: &mut aya::programs::SchedClassifier,
    point: &AttachSpec,
) -> anyhow::Result<()> {
    netns::run_in(point.netns.as_ref(), || -> anyhow::Result<()> {
        for direction in [TcAttachType::Ingress, TcAttachType::Egress] {
            program
                .attach_with_options(
                    &point.iface,
                    direction,
                    TcAttachOptions::TcxOrder(LinkOrder::first()),
                )
                .with_context(|| format!("attaching the empty program to {point}"))?;
        }
        Ok(())
    })?
}

fn summarize(name: &str, runs: &[InPlaceRun], reference: Option<&str>) -> InPlaceSummary {
    let of = |variant: &str, round: usize| {
        runs.iter()
            .find(|r| r.variant == variant && r.round == round)
            .map(|r| r.ns_per_run)
    };
    let rounds: Vec<usize> = runs
        .iter()
        .filter(|r| r.variant == name)
        .map(|r| r.round)
        .collect();
    let ns: Vec<f64> = rounds.iter().filter_map(|&r| of(name, r)).collect();
    let above: Vec<f64> = rounds
        .iter()
        .filter_map(|&r| Some(of(name, r)? - of(FLOOR, r)?))
        .collect();
    let to_reference = reference.map(|reference| {
        let shares: Vec<f64> = rounds
            .iter()
            .filter_map(|&r| {
                let floor = of(FLOOR, r)?;
                Some((of(name, r)? - floor) / (of(reference, r)? - floor))
            })
            .collect();
        median_interval(&shares)
    });
    InPlaceSummary {
        variant: name.to_string(),
        ns_per_run: median_interval(&ns),
        above_floor: median_interval(&above),
        to_reference,
    }
}
