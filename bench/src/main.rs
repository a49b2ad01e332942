//! Per-packet cost of the observers, through BPF_PROG_TEST_RUN.
//!
//! Each shape of frame runs through the empty program (the floor: the hook
//! itself) and through an attached slot program, interleaved, several rounds
//! of a million repeats each; we report the best and median ns per packet and
//! the median above the floor. Side by side in one run, because absolute
//! times on shared machines drift.

use std::net::SocketAddr;

use anyhow::Context as _;
use aya::programs::{TestRun as _, TestRunOptions};
use verifier::{
    dataplane::Dataplane,
    frames::{self, TcpSegment},
};

const REPEAT: u32 = 1_000_000;
const ROUNDS: usize = 7;

fn main() -> anyhow::Result<()> {
    let mut dataplane = Dataplane::load()?;
    for name in ["empty", "ingress_00"] {
        dataplane
            .program_mut(name)
            .load()
            .with_context(|| format!("loading {name}"))?;
    }
    let addr = |s: &str| s.parse::<SocketAddr>().expect("literal address");
    // What a verify run loads: the published endpoints and the migration CIDRs.
    for endpoint in ["10.200.5.12:49152", "[fd00:200:5::12]:49152"] {
        dataplane.add_endpoint(&endpoint.parse()?)?;
    }
    dataplane.add_cidr("10.200.5.0/24".parse()?)?;
    dataplane.add_cidr("fd00:200:5::/64".parse()?)?;

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
    let shapes = [
        ("migration ipv4", migration.frame()),
        ("migration ipv4 vlan", migration.clone().vlan(100).frame()),
        ("migration ipv6", migration6.frame()),
        ("unrelated tcp", unrelated.frame()),
        ("non-ip (arp)", frames::arp_frame()),
    ];

    println!("per-packet cost, ns (BPF_PROG_TEST_RUN, {REPEAT} repeats x {ROUNDS} rounds)");
    println!(
        "{:<20} {:>11} {:>11} {:>13} {:>13} {:>10}",
        "frame", "empty best", "empty med", "observer best", "observer med", "above"
    );
    for (shape, frame) in &shapes {
        let mut floor = Vec::with_capacity(ROUNDS);
        let mut observer = Vec::with_capacity(ROUNDS);
        for _ in 0..ROUNDS {
            floor.push(ns_per_packet(&mut dataplane, "empty", frame)?);
            observer.push(ns_per_packet(&mut dataplane, "ingress_00", frame)?);
        }
        let (floor_best, floor_median) = best_and_median(&mut floor);
        let (best, median) = best_and_median(&mut observer);
        println!(
            "{shape:<20} {floor_best:>11} {floor_median:>11} {best:>13} {median:>13} {:>10}",
            median.saturating_sub(floor_median)
        );
    }
    Ok(())
}

fn ns_per_packet(dataplane: &mut Dataplane, program: &str, frame: &[u8]) -> anyhow::Result<u64> {
    let result = dataplane.program_mut(program).test_run(TestRunOptions {
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
