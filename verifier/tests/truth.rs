//! Measurement truth: migverify's figures against what the lab knows
//! independently of them. RTT against the delay line the lab owns and the
//! kernel's own smoothed RTT of the same connections; payload rates against
//! the token-bucket shaper; QEMU's settings as QEMU reports them.

mod support;

use serde_json::Value;
use support::{lab::*, privileged};

/// TCP payload per frame at MTU 1500 (IPv4, TCP with timestamps: 1448 of
/// 1514 bytes): the share of a shaper's rate, which counts frames, that a
/// migration's payload can have.
const PAYLOAD_SHARE: f64 = 1448.0 / 1514.0;

/// The TSval clock ticks once a millisecond: each RTT sample is good to a
/// tick (see docs/verify.md).
const TICK_US: f64 = 1000.0;

fn migration(report: &Value) -> &Value {
    let migrations = report["migrations"].as_array().expect("migrations");
    assert_eq!(migrations.len(), 1, "{migrations:?}");
    &migrations[0]
}

fn figure(m: &Value, which: &str, at: &str) -> f64 {
    m[which][at]
        .as_f64()
        .unwrap_or_else(|| panic!("{which}.{at} in {}", m[which]))
}

fn within(what: &str, value: f64, expected: f64, share: f64) {
    eprintln!(
        "{what}: {value:.0} against {expected:.0} ({:+.1}%)",
        (value / expected - 1.0) * 100.0
    );
    assert!(
        (value - expected).abs() <= expected * share,
        "{what}: {value:.0} against {expected:.0} (more than {:.0}% off)",
        share * 100.0
    );
}

/// A completed migration's report, `lab run` with 128 MiB (or `memory`).
fn completed(args: &[&str]) -> Value {
    let (report, code) = run(args);
    assert_eq!(report["lab"]["qemu"]["status"], "completed", "{args:?}");
    assert_eq!(code, Some(0), "{args:?}: {:?}", reason_ids(&report));
    report
}

#[test]
fn the_rtt_is_the_delay_line_plus_the_path() {
    if !privileged("the_rtt_is_the_delay_line_plus_the_path") {
        return;
    }
    let _lab = LabGuard::take();
    let base = completed(&["--scenario", "secondary", "--memory", "128"]);
    let base = migration(&base);
    let base_p50 = figure(base, "rtt_us", "p50");
    // The kernel's own base: its srtt of the same path without the line.
    let kernel_base_p50 = figure(base, "kernel_srtt_us", "p50");
    eprintln!("without the line: RTT p50 {base_p50} us, kernel srtt p50 {kernel_base_p50} us");
    for (scenario, rtt_ms) in [("secondary", 20), ("cross-cluster", 50)] {
        let rtt = rtt_ms.to_string();
        let report = completed(&["--scenario", scenario, "--rtt-ms", &rtt, "--memory", "128"]);
        let m = migration(&report);
        let added = f64::from(rtt_ms) * 1000.0;
        let what = format!("{scenario} --rtt-ms {rtt_ms}");
        within(
            &format!("{what}: RTT p50"),
            figure(m, "rtt_us", "p50"),
            added + base_p50,
            0.10,
        );
        // The line holds every frame half the time each way: nothing comes
        // back sooner (to the TSval clock's tick).
        let least = figure(m, "rtt_us", "min");
        eprintln!("{what}: least RTT sample {least} us");
        assert!(
            least >= added - TICK_US,
            "{what}: a sample of {least} us, under the line's {added} us"
        );
        // The kernel agrees.
        within(
            &format!("{what}: kernel srtt p50"),
            figure(m, "kernel_srtt_us", "p50"),
            added + kernel_base_p50,
            0.10,
        );
        assert_eq!(report["lab"]["config"]["rtt_ms"], rtt_ms);
        assert_eq!(report["lab"]["wan"]["dropped"], serde_json::json!([0, 0]));
    }
}

#[test]
fn a_shaper_sets_the_rate_and_its_queue_the_rtt() {
    if !privileged("a_shaper_sets_the_rate_and_its_queue_the_rtt") {
        return;
    }
    let _lab = LabGuard::take();
    for (mbit, memory) in [("100", "128"), ("300", "256")] {
        let report = completed(&[
            "--scenario",
            "rate-limited",
            "--rate",
            mbit,
            "--memory",
            memory,
        ]);
        let m = migration(&report);
        let shaper: f64 = mbit.parse::<f64>().unwrap() * 1e6;
        // The payload's rate per interval: the shaper's, less the headers.
        within(
            &format!("{mbit} Mbit/s: payload rate p50"),
            figure(m, "throughput_bps", "p50"),
            shaper * PAYLOAD_SHARE,
            0.05,
        );
        eprintln!(
            "{mbit} Mbit/s: RTT p50 {} us, srtt p50 {} us, kernel srtt p50 {} us",
            figure(m, "rtt_us", "p50"),
            figure(m, "srtt_us", "p50"),
            figure(m, "kernel_srtt_us", "p50")
        );
        // A queue stands in front of the shaper: the wire's RTT smoothed as
        // TCP smooths it is the kernel's own.
        within(
            &format!("{mbit} Mbit/s: srtt p50 from the wire"),
            figure(m, "srtt_us", "p50"),
            figure(m, "kernel_srtt_us", "p50"),
            0.10,
        );
    }
}

#[test]
fn qemu_reports_its_own_settings() {
    if !privileged("qemu_reports_its_own_settings") {
        return;
    }
    let _lab = LabGuard::take();
    let report = completed(&[
        "--scenario",
        "secondary",
        "--memory",
        "64",
        "--multifd",
        "3",
        "--no-tls",
    ]);
    let qemu = &report["lab"]["qemu"];
    assert_eq!(
        (qemu["multifd_channels"].as_u64(), qemu["tls"].as_bool()),
        (Some(3), Some(false))
    );
    assert_eq!(migration(&report)["connections"].as_u64(), Some(4));
}
