//! Per-packet cost through BPF_PROG_TEST_RUN: each frame shape through the
//! empty program (the floor), the observer, and the naive baseline,
//! interleaved round by round.
//!
//! Every shape but one replays one frame a million times in one call, as
//! the targets were set. For a known migration segment that makes every run
//! after the first a retransmission to the observer (the same sequence
//! again), so one more shape measures what a migration stream mostly is, a
//! segment carrying new payload: one test run per call, each call's segment
//! taking up where the last one ended, with its own floor measured the same
//! way.

use std::net::SocketAddr;

use anyhow::Context as _;
use aya::{
    programs::{SchedClassifier, TestRun as _, TestRunOptions},
    Ebpf,
};
use serde::{Deserialize, Serialize};
use verifier::{
    dataplane::{Dataplane, BENCH_BASELINE},
    frames::{self, TcpSegment},
};

use crate::Build;

pub const REPEAT: u32 = 1_000_000;

/// Test runs of one call each per figure, for the shape whose every run
/// must carry new payload.
const CALLS: usize = 20_000;

/// The shape whose every run carries new payload.
const NEW_PAYLOAD_SHAPE: &str = "migration segment with new payload, ipv4, one run per call";

/// What a shape's runs are given.
enum Frames {
    /// One frame, replayed `REPEAT` times in one call.
    Replayed(Vec<u8>),
    /// A segment of a migration stream, `CALLS` calls of one run each,
    /// every call's sequence number where the previous payload ended.
    Advancing(TcpSegment),
}

/// The next sequence number of the advancing shape's flow: every build's
/// data plane sees it only go forward (jumping over what the other builds
/// were given, once per figure, as after a loss).
struct Stream {
    next_seq: u32,
}

impl Stream {
    /// The kernel's figure for `program` on `frames`: the mean of `REPEAT`
    /// runs, or the median of `CALLS` single runs (a single run's time is
    /// exact to the nanosecond, and an interrupt in one does not move the
    /// median).
    fn ns_per_packet(&mut self, program: &SchedClassifier, frames: &Frames) -> anyhow::Result<u64> {
        let segment = match frames {
            Frames::Replayed(frame) => return ns_per_packet(program, frame, REPEAT),
            Frames::Advancing(segment) => segment,
        };
        let mut segment = segment.clone();
        let mut runs = Vec::with_capacity(CALLS);
        for _ in 0..CALLS {
            segment.seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(segment.payload.len() as u32);
            runs.push(ns_per_packet(program, &segment.frame(), 1)?);
        }
        Ok(best_and_median(&mut runs).1)
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Shape {
    pub frame: String,
    pub empty_best_ns: u64,
    pub empty_median_ns: u64,
    pub observer_best_ns: u64,
    pub observer_median_ns: u64,
    /// The shared classifier run on its own, without the hook's program
    /// and the tail call in front of it (the hook it sees: slot 0 ingress).
    pub classifier_median_ns: u64,
    pub baseline_median_ns: u64,
    /// Observer median minus empty median.
    pub above_floor_ns: u64,
    pub baseline_above_floor_ns: u64,
    pub target_above_floor_ns: Option<u64>,
    /// The empty program with the kernel's run-time statistics on: the
    /// floor plus what the statistics cost every program run.
    #[serde(default)]
    pub empty_stats_median_ns: u64,
    /// Every round's figures: empty, observer.
    #[serde(default)]
    pub empty_ns: Vec<u64>,
    #[serde(default)]
    pub observer_ns: Vec<u64>,
    /// Other builds of the programs, measured in the same rounds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub builds: Vec<BuildFigure>,
}

/// Another build's observer on one frame.
#[derive(Debug, Serialize, Deserialize)]
pub struct BuildFigure {
    pub name: String,
    pub observer_median_ns: u64,
    pub above_floor_ns: u64,
    pub observer_ns: Vec<u64>,
}

fn ns_per_packet(program: &SchedClassifier, frame: &[u8], repeat: u32) -> anyhow::Result<u64> {
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat,
        ..TestRunOptions::new()
    })?;
    // The kernel reports the mean duration of one repeat.
    Ok(result.duration.as_nanos() as u64)
}

fn best_and_median(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2])
}

/// A data plane loaded as a verify run loads it (two endpoints, two CIDRs)
/// with the classifier, `empty` and `ingress_00` ready to run.
fn loaded(mut dataplane: Dataplane) -> anyhow::Result<Dataplane> {
    dataplane.load_classifier()?;
    for name in ["empty", "ingress_00"] {
        dataplane
            .program_mut(name)
            .load()
            .with_context(|| format!("loading {name}"))?;
    }
    for endpoint in ["10.200.5.12:49152", "[fd00:200:5::12]:49152"] {
        dataplane.add_endpoint(&endpoint.parse()?)?;
    }
    dataplane.add_cidr("10.200.5.0/24".parse()?)?;
    dataplane.add_cidr("fd00:200:5::/64".parse()?)?;
    Ok(dataplane)
}

pub fn run(rounds: usize, builds: &[Build]) -> anyhow::Result<Vec<Shape>> {
    let mut dataplane = loaded(Dataplane::load()?)?;
    let mut others = builds
        .iter()
        .map(|b| loaded(Dataplane::load_variant(&b.object)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut baseline = Ebpf::load(BENCH_BASELINE).context("loading the baseline object")?;
    let naive: &mut SchedClassifier = baseline
        .program_mut("naive_lru")
        .context("the baseline object has naive_lru")?
        .try_into()?;
    naive.load()?;
    let naive: &SchedClassifier = baseline.program("naive_lru").expect("loaded").try_into()?;

    let addr = |s: &str| s.parse::<SocketAddr>().expect("literal address");
    let migration = TcpSegment::new(addr("10.200.5.11:41000"), addr("10.200.5.12:49152"))
        .payload(&[0x17; 1400])
        .timestamps(1000, 2000);
    let migration6 = TcpSegment::new(
        addr("[fd00:200:5::11]:41000"),
        addr("[fd00:200:5::12]:49152"),
    )
    .payload(&[0x17; 1400])
    .timestamps(1000, 2000);
    let unrelated =
        TcpSegment::new(addr("10.128.0.5:41000"), addr("10.128.0.6:8080")).payload(&[0x17; 1400]);
    // Targets by name: crate::targets::per_packet_ns.
    let shapes: [(&'static str, Frames); 6] = [
        (
            "known migration segment, ipv4",
            Frames::Replayed(migration.frame()),
        ),
        (
            "known migration segment, 802.1Q",
            Frames::Replayed(migration.clone().vlan(100).frame()),
        ),
        (
            "known migration segment, ipv6",
            Frames::Replayed(migration6.frame()),
        ),
        (NEW_PAYLOAD_SHAPE, Frames::Advancing(migration)),
        ("unrelated tcp", Frames::Replayed(unrelated.frame())),
        ("non-ip (arp)", Frames::Replayed(frames::arp_frame())),
    ];
    let mut stream = Stream { next_seq: 1 << 20 };

    // Rounds outside, shapes inside: a disturbance on the machine (the
    // previous process's maps being freed, say) spreads over every shape
    // instead of landing on the first, and the median drops it.
    let mut samples = vec![[const { Vec::new() }; 5]; shapes.len()];
    let mut build_samples = vec![vec![Vec::new(); builds.len()]; shapes.len()];
    for round in 0..rounds {
        for (((_, frame), [floor, observer, classifier, naive_ns, stats_on]), of_builds) in shapes
            .iter()
            .zip(samples.iter_mut())
            .zip(build_samples.iter_mut())
        {
            floor.push(stream.ns_per_packet(dataplane.program_mut("empty"), frame)?);
            // This build and the others, in turns: first one way, then the other.
            let mut turns: Vec<Option<usize>> = std::iter::once(None)
                .chain((0..others.len()).map(Some))
                .collect();
            if round % 2 == 1 {
                turns.reverse();
            }
            for turn in turns {
                match turn {
                    None => observer
                        .push(stream.ns_per_packet(dataplane.program_mut("ingress_00"), frame)?),
                    Some(i) => of_builds[i]
                        .push(stream.ns_per_packet(others[i].program_mut("ingress_00"), frame)?),
                }
            }
            classifier.push(stream.ns_per_packet(dataplane.program_mut("classify_packet"), frame)?);
            naive_ns.push(stream.ns_per_packet(naive, frame)?);
            let stats = aya::sys::enable_stats(aya::sys::Stats::RunTime)
                .context("turning the kernel's BPF run-time statistics on")?;
            stats_on.push(stream.ns_per_packet(dataplane.program_mut("empty"), frame)?);
            drop(stats);
        }
    }
    let mut results = Vec::new();
    for (((frame_name, _), [floor, observer, classifier, naive_ns, stats_on]), of_builds) in shapes
        .into_iter()
        .zip(samples.iter_mut())
        .zip(build_samples)
    {
        let (empty_ns, observer_ns) = (floor.clone(), observer.clone());
        let (empty_best_ns, empty_median_ns) = best_and_median(floor);
        let (observer_best_ns, observer_median_ns) = best_and_median(observer);
        let (_, empty_stats_median_ns) = best_and_median(stats_on);
        let builds = builds
            .iter()
            .zip(of_builds)
            .map(|(build, mut ns)| {
                let observer_ns = ns.clone();
                let (_, median) = best_and_median(&mut ns);
                BuildFigure {
                    name: build.name.clone(),
                    observer_median_ns: median,
                    above_floor_ns: median.saturating_sub(empty_median_ns),
                    observer_ns,
                }
            })
            .collect();
        let (_, baseline_median_ns) = best_and_median(naive_ns);
        let (_, classifier_median_ns) = best_and_median(classifier);
        results.push(Shape {
            frame: frame_name.to_string(),
            empty_best_ns,
            empty_median_ns,
            observer_best_ns,
            observer_median_ns,
            classifier_median_ns,
            baseline_median_ns,
            above_floor_ns: observer_median_ns.saturating_sub(empty_median_ns),
            baseline_above_floor_ns: baseline_median_ns.saturating_sub(empty_median_ns),
            target_above_floor_ns: crate::targets::per_packet_ns(frame_name),
            empty_stats_median_ns,
            empty_ns,
            observer_ns,
            builds,
        });
    }
    Ok(results)
}
