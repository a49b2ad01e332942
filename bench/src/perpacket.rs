//! Per-packet cost through BPF_PROG_TEST_RUN: each frame shape through the
//! empty program (the floor), the observer, and the naive baseline,
//! interleaved round by round.

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

pub const REPEAT: u32 = 1_000_000;

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
}

fn ns_per_packet(program: &SchedClassifier, frame: &[u8]) -> anyhow::Result<u64> {
    let result = program.test_run(TestRunOptions {
        data_in: Some(frame),
        repeat: REPEAT,
        ..TestRunOptions::new()
    })?;
    // The kernel reports the mean duration of one repeat.
    Ok(result.duration.as_nanos() as u64)
}

fn best_and_median(samples: &mut [u64]) -> (u64, u64) {
    samples.sort_unstable();
    (samples[0], samples[samples.len() / 2])
}

pub fn run(rounds: usize) -> anyhow::Result<Vec<Shape>> {
    let mut dataplane = Dataplane::load()?;
    dataplane.load_classifier()?;
    for name in ["empty", "ingress_00"] {
        dataplane
            .program_mut(name)
            .load()
            .with_context(|| format!("loading {name}"))?;
    }
    let mut baseline = Ebpf::load(BENCH_BASELINE).context("loading the baseline object")?;
    let naive: &mut SchedClassifier = baseline
        .program_mut("naive_lru")
        .context("the baseline object has naive_lru")?
        .try_into()?;
    naive.load()?;
    let naive: &SchedClassifier = baseline.program("naive_lru").expect("loaded").try_into()?;

    // What a verify run loads: the published endpoints and the migration CIDRs.
    for endpoint in ["10.200.5.12:49152", "[fd00:200:5::12]:49152"] {
        dataplane.add_endpoint(&endpoint.parse()?)?;
    }
    dataplane.add_cidr("10.200.5.0/24".parse()?)?;
    dataplane.add_cidr("fd00:200:5::/64".parse()?)?;
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
    let shapes: [(&'static str, Vec<u8>, Option<u64>); 5] = [
        ("known migration segment, ipv4", migration.frame(), Some(40)),
        (
            "known migration segment, 802.1Q",
            migration.clone().vlan(100).frame(),
            Some(40),
        ),
        (
            "known migration segment, ipv6",
            migration6.frame(),
            Some(40),
        ),
        ("unrelated tcp", unrelated.frame(), Some(25)),
        ("non-ip (arp)", frames::arp_frame(), Some(10)),
    ];

    // Rounds outside, shapes inside: a disturbance on the machine (the
    // previous process's maps being freed, say) spreads over every shape
    // instead of landing on the first, and the median drops it.
    let mut samples = vec![[const { Vec::new() }; 4]; shapes.len()];
    for _ in 0..rounds {
        for ((_, frame, _), [floor, observer, classifier, naive_ns]) in
            shapes.iter().zip(samples.iter_mut())
        {
            floor.push(ns_per_packet(dataplane.program_mut("empty"), frame)?);
            observer.push(ns_per_packet(dataplane.program_mut("ingress_00"), frame)?);
            classifier.push(ns_per_packet(
                dataplane.program_mut("classify_packet"),
                frame,
            )?);
            naive_ns.push(ns_per_packet(naive, frame)?);
        }
    }
    let mut results = Vec::new();
    for ((frame_name, _, target), [floor, observer, classifier, naive_ns]) in
        shapes.into_iter().zip(samples.iter_mut())
    {
        let (empty_best_ns, empty_median_ns) = best_and_median(floor);
        let (observer_best_ns, observer_median_ns) = best_and_median(observer);
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
            target_above_floor_ns: target,
        });
    }
    Ok(results)
}
