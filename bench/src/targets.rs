//! The targets a run is judged against, and every run kept in
//! `bench/results/` judged against them: the page says how many runs were
//! made and how many met each target, not only what the latest run did.
//!
//! A figure measured over paired rounds carries a 95% interval, and meets
//! its target only when the interval's far end does (a ratio's low end
//! for ">=", a cost's high end for "<="). Runs made before intervals were
//! recorded are judged by their median, and the page says so.

use std::path::Path;

use serde_json::Value;

use crate::interval::Interval;

/// Per-packet targets by the start of a frame's name: ns above the empty
/// program, and what f357094's programs took on the machine where the
/// target was set (docs/benchmarks.md before this work), which makes the
/// target a fraction of the code it was set against.
const PER_PACKET: [(&str, u64, u64); 3] = [
    ("known migration segment", 12, 18),
    ("unrelated tcp", 10, 14),
    ("non-ip", 5, 7),
];

fn per_packet(frame: &str) -> Option<(u64, u64)> {
    PER_PACKET
        .iter()
        .find(|(prefix, _, _)| frame.starts_with(prefix))
        .map(|&(_, target, set_against)| (target, set_against))
}

/// The per-packet target of a frame, ns above the empty program.
pub fn per_packet_ns(frame: &str) -> Option<u64> {
    per_packet(frame).map(|(target, _)| target)
}

/// What f357094's programs took on that frame where its target was set.
pub fn per_packet_set_against_ns(frame: &str) -> Option<u64> {
    per_packet(frame).map(|(_, set_against)| set_against)
}

/// The migration's duration observed over unobserved, at most.
pub const MIGRATION_RATIO: f64 = 1.02;
/// iperf3 attached over unobserved, offloads off, at least.
pub const IPERF_RATIO: f64 = 0.98;
/// In place, ns per hook run above the in-place floor before this work:
/// the median of five paired rounds at f357094 (bench/results/parts/
/// 2026-12-04T175346Z-HooksInPlace.json and ...183219Z...: 67.8, 73.8,
/// 67.9, 72.3, 65.4 ns).
pub const IN_PLACE_BEFORE_NS: f64 = 67.9;
/// In place above the floor, at most: half of [`IN_PLACE_BEFORE_NS`]. How
/// runs made before the reference programs were measured beside today's are
/// judged.
pub const IN_PLACE_NS: f64 = IN_PLACE_BEFORE_NS / 2.0;
/// In place above the floor, over the reference programs' above the floor
/// in the same rounds (crate::reference), at most.
pub const IN_PLACE_TO_REFERENCE: f64 = 0.5;

/// Whether an interval meets "at most `target`" / "at least `target`".
pub fn at_most(i: &Interval, target: f64) -> bool {
    i.high <= target
}

pub fn at_least(i: &Interval, target: f64) -> bool {
    i.low >= target
}

/// One target across the kept runs.
#[derive(Debug, Default)]
pub struct Tally {
    pub target: String,
    /// Runs that measured the figure.
    pub measured: usize,
    pub met: usize,
    /// Of those, judged by the median alone (no interval recorded).
    pub by_median: usize,
}

#[derive(Debug, Default)]
pub struct History {
    /// Full runs (`bench/results/<date>.json`) and single parts
    /// (`bench/results/parts/`), `latest.json` not counted twice.
    pub full_runs: usize,
    pub part_runs: usize,
    pub tallies: Vec<Tally>,
}

fn interval(v: &Value) -> Option<Interval> {
    serde_json::from_value(v.clone()).ok()
}

/// Each target this run's figures say something about: (target, met,
/// judged by the median only).
pub fn judge(part: Option<&str>, figures: &Value) -> Vec<(String, bool, bool)> {
    let mut out = Vec::new();
    // A full run holds every part under its name; a part file, one.
    let of = |name: &str, part_name: &str| -> Option<&Value> {
        match part {
            None => figures.get(name),
            Some(p) if p == part_name => Some(figures),
            Some(_) => None,
        }
    };
    let per_packet = of("per_packet", "PerPacket");
    for shape in per_packet.and_then(Value::as_array).into_iter().flatten() {
        let (Some(frame), Some(ns)) = (shape["frame"].as_str(), shape["above_floor_ns"].as_u64())
        else {
            continue;
        };
        if let Some(target) = per_packet_ns(frame) {
            out.push((
                format!("per-packet, {frame}: <= {target} ns above the floor"),
                ns <= target,
                false,
            ));
        }
    }
    if let Some(summary) = of("migration", "Migration").and_then(|m| m["summary"].as_array()) {
        if let Some(mv) = summary.iter().find(|s| s["variant"] == "migverify") {
            let name = format!("migration, migverify's duration ratio <= {MIGRATION_RATIO}");
            match interval(&mv["ratio"]) {
                Some(i) => out.push((name, at_most(&i, MIGRATION_RATIO), false)),
                None => {
                    if let Some(r) = mv["median_ratio"].as_f64() {
                        out.push((name, r <= MIGRATION_RATIO, true));
                    }
                }
            }
        }
    }
    let iperf = of("iperf3", "Iperf3");
    for s in iperf
        .and_then(|i| i["summary"].as_array())
        .into_iter()
        .flatten()
    {
        if s["offloads"].as_bool() == Some(true) {
            continue;
        }
        let name = format!(
            "iperf3, {} stream(s), offloads off: ratio >= {IPERF_RATIO}",
            s["streams"]
        );
        match interval(&s["ratio_interval"]) {
            Some(i) => out.push((name, at_least(&i, IPERF_RATIO), false)),
            None => {
                if let Some(r) = s["ratio"].as_f64() {
                    out.push((name, r >= IPERF_RATIO, true));
                }
            }
        }
    }
    let in_place = of("in_place", "HooksInPlace");
    if let Some(mv) = in_place
        .and_then(|i| i["summary"].as_array())
        .and_then(|s| s.iter().find(|s| s["variant"] == "migverify"))
    {
        let measured_beside_reference =
            in_place.is_some_and(|i| i["reference"].as_str() == Some(crate::reference::COMMIT));
        match interval(&mv["to_reference"]).filter(|_| measured_beside_reference) {
            Some(i) => out.push((
                format!(
                    "in place, above the floor, over {}'s in the same rounds <= {IN_PLACE_TO_REFERENCE}",
                    crate::reference::COMMIT
                ),
                at_most(&i, IN_PLACE_TO_REFERENCE),
                false,
            )),
            None => {
                if let Some(i) = interval(&mv["above_floor"]) {
                    out.push((
                        format!(
                            "in place, ns per hook run above the in-place floor <= {IN_PLACE_NS:.1}"
                        ),
                        at_most(&i, IN_PLACE_NS),
                        false,
                    ));
                }
            }
        }
    }
    out
}

/// Every run in `root/bench/results/`, judged.
pub fn history(root: &Path) -> History {
    let mut h = History::default();
    let dir = root.join("bench/results");
    let mut files: Vec<(bool, std::path::PathBuf)> = Vec::new();
    for (part, dir) in [(false, dir.clone()), (true, dir.join("parts"))] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let path = e.path();
            if path.extension().is_some_and(|x| x == "json")
                && path.file_name().is_some_and(|n| n != "latest.json")
            {
                files.push((part, path));
            }
        }
    }
    files.sort();
    for (is_part, path) in files {
        let Some(v) = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        else {
            continue;
        };
        let judged = if is_part {
            h.part_runs += 1;
            judge(v["part"].as_str(), &v["figures"])
        } else {
            h.full_runs += 1;
            judge(None, &v)
        };
        for (target, met, by_median) in judged {
            let i = match h.tallies.iter().position(|t| t.target == target) {
                Some(i) => i,
                None => {
                    h.tallies.push(Tally {
                        target,
                        ..Tally::default()
                    });
                    h.tallies.len() - 1
                }
            };
            let t = &mut h.tallies[i];
            t.measured += 1;
            t.met += usize::from(met);
            t.by_median += usize::from(by_median);
        }
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_interval_straddling_the_target_does_not_meet_it() {
        let i = Interval {
            median: 0.985,
            low: 0.975,
            high: 0.99,
            rounds: 8,
        };
        assert!(!at_least(&i, IPERF_RATIO));
        assert!(at_least(&i, 0.97));
        assert!(!at_most(&i, 0.985));
    }

    #[test]
    fn old_runs_are_judged_by_their_median() {
        let run = serde_json::json!({
            "per_packet": [{"frame": "unrelated tcp", "above_floor_ns": 14}],
            "migration": {"summary": [{"variant": "migverify", "median_ratio": 0.97}]},
            "iperf3": {"summary": [{"streams": 1, "ratio": 0.967}]},
        });
        let judged = judge(None, &run);
        assert_eq!(judged.len(), 3);
        assert!(!judged[0].1 && !judged[0].2);
        assert!(judged[1].1 && judged[1].2);
        assert!(!judged[2].1 && judged[2].2);
    }

    #[test]
    fn the_kept_runs_are_all_counted() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let h = history(&root);
        assert!(h.full_runs > 0);
        assert!(h.tallies.iter().all(|t| t.met <= t.measured));
    }
}
