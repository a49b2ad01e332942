//! The terminal summary: the verdict first, then why, then a table per
//! migration.

use std::fmt::Write as _;

use super::Report;
use crate::{
    measure::series::Throughput,
    units::{bytes, rate},
};

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let out_verdict = report.verdict.as_str();
    let _ = writeln!(out, "verdict: {out_verdict}");
    for reason in &report.reasons {
        let severity = format!("{:?}", reason.severity).to_lowercase();
        let _ = writeln!(
            out,
            "  {severity:<7} {:<26} {}",
            reason.id(),
            reason.message
        );
    }
    for assumption in &report.assumptions {
        let _ = writeln!(out, "  assumed {assumption}");
    }
    for migration in &report.migrations {
        let f = &migration.figures;
        let b = &migration.budget;
        let _ = writeln!(out, "\nmigration {} -> {}", f.id, f.targets.join(", "));
        let _ = writeln!(
            out,
            "  bytes by role   migration {}  bridge {}  primary {}  other {}",
            f.bytes_by_role.migration,
            f.bytes_by_role.bridge,
            f.bytes_by_role.primary,
            f.bytes_by_role.other
        );
        let _ = writeln!(
            out,
            "  payload         {} in {} connections ({} to the target), {} retransmits, {} resets",
            bytes(f.payload_bytes),
            f.connections,
            bytes(f.forward_payload_bytes),
            f.retransmits,
            f.resets
        );
        if f.channels.len() > 1 || f.channels.iter().any(|c| c.channel != "memory") {
            let channels: Vec<String> = f
                .channels
                .iter()
                .map(|c| {
                    format!(
                        "{} {} ({} conn{})",
                        c.channel,
                        bytes(c.forward_payload_bytes),
                        c.connections,
                        if c.connections == 1 { "" } else { "s" }
                    )
                })
                .collect();
            let _ = writeln!(
                out,
                "  channels        {} to the target",
                channels.join(", ")
            );
        }
        let _ = writeln!(out, "  throughput      {}", spread(&f.throughput_bps));
        let r = &f.rtt_us;
        let _ = writeln!(
            out,
            "  rtt (wire)      p50 {} us  p90 {} us  p99 {} us  min {} us  ({} samples)",
            r.p50, r.p90, r.p99, r.min, r.samples
        );
        let s = &f.srtt_us;
        let _ = writeln!(
            out,
            "  srtt (wire)     p50 {} us  p90 {} us  p99 {} us  (the same smoothed as TCP does, {} reads)",
            s.p50, s.p90, s.p99, s.samples
        );
        if let Some(k) = &f.kernel_srtt_us {
            let _ = writeln!(
                out,
                "  srtt (kernel)   p50 {} us  p90 {} us  p99 {} us  min {} us  ({} reads of the source's sockets)",
                k.p50, k.p90, k.p99, k.min, k.samples
            );
        }
        let _ = writeln!(
            out,
            "  duration        {:.2} s, longest stall {:.2} s (progressTimeout {} s)",
            f.duration_s, f.longest_stall_s, b.progress_timeout_s
        );
        let projected = b
            .projected_s
            .map_or_else(|| "-".to_string(), |p| format!("{p:.1} s"));
        let parallel = b
            .parallel_outbound_supported
            .map_or_else(|| "-".into(), |p| p.to_string());
        let _ = writeln!(
            out,
            "  budget          size {} ({}), completion {} s, needs >= {}, projected {projected}; \
             {parallel} parallel migrations fit at that rate (per node allowed: {})",
            bytes(b.size_bytes),
            b.size_source,
            b.completion_timeout_s,
            rate(b.min_rate_bps),
            b.parallel_outbound_migrations_per_node
        );
        let _ = writeln!(
            out,
            "  {:<14} {:<14} {:<10} {:>6} {:>14}",
            "INTERFACE", "NETNS", "ROLE", "VLAN", "BYTES"
        );
        for i in &f.bytes_by_interface {
            let vlan = f
                .flows
                .iter()
                .find(|row| row.interface == i.interface && row.netns == i.netns)
                .and_then(|row| row.vlan)
                .map_or_else(|| "-".into(), |v| v.to_string());
            let _ = writeln!(
                out,
                "  {:<14} {:<14} {:<10} {:>6} {:>14}",
                i.interface,
                i.netns.as_deref().unwrap_or("-"),
                i.role.as_str(),
                vlan,
                i.bytes
            );
        }
    }
    if report.migrations.is_empty() {
        let _ = writeln!(out, "\nno migration traffic seen");
    }
    for node in report.nodes.iter().filter(|n| n.migrations > 1) {
        nodes(&mut out, node);
    }
    if let Some(lab) = &report.lab {
        lab_summary(&mut out, report, lab);
    }
    out
}

/// A source node's migrations together: the parallel budget and the queue.
fn nodes(out: &mut String, n: &crate::measure::node::NodeFigures) {
    let _ = writeln!(
        out,
        "\nnode {}: {} migrations, at most {} at once (parallelOutboundMigrationsPerNode {})",
        n.source, n.migrations, n.peak_parallel, n.parallel_limit
    );
    let _ = writeln!(
        out,
        "  parallel        {} at once ({}) need >= {} on the migration NIC; the link gave {} while they ran together",
        n.peak_parallel,
        n.peak_migrations.join(", "),
        rate(n.need_bps),
        n.gave_bps.map_or_else(|| "-".into(), rate)
    );
    let _ = writeln!(out, "  node rate       {}", spread(&n.aggregate_bps));
    for (i, span) in n.timeline.iter().enumerate() {
        let waited = match (&span.started_after, span.gap_s) {
            (Some(after), Some(gap)) => {
                format!(", once {after} had finished ({gap:.2} s after it): queued")
            }
            _ => format!(", with {} running", span.running_at_start),
        };
        let _ = writeln!(
            out,
            "  {:<15} {} started +{:.2} s, ended +{:.2} s{waited}",
            if i == 0 { "order" } else { "" },
            span.id,
            span.after_first_s,
            span.end_s - span.start_s + span.after_first_s
        );
    }
}

/// QEMU's own account beside migverify's: the whole run, then each
/// migration that carries its own (a drain's, or one with a disk or the
/// control channel).
fn lab_summary(out: &mut String, report: &Report, lab: &serde_json::Value) {
    let q = &lab["qemu"];
    let seen: u64 = report
        .migrations
        .iter()
        .map(|m| m.figures.forward_payload_bytes)
        .sum();
    if q["status"].is_null() {
        // No VM in this scenario (the bench): no QEMU figures to show.
        let _ = writeln!(
            out,
            "\nlab scenario {}: no QEMU migration; migverify saw {} sent to the target",
            lab["scenario"].as_str().unwrap_or("?"),
            bytes(seen)
        );
        return;
    }
    let transferred = q["transferred_bytes"].as_u64().unwrap_or(0);
    let expected: u64 = report
        .migrations
        .iter()
        .filter_map(|m| m.lab.as_ref()?["expected_bytes"].as_u64())
        .sum::<u64>()
        .max(transferred);
    let percent = |seen: u64, of: u64| {
        if of > 0 {
            (seen as f64 / of as f64 - 1.0) * 100.0
        } else {
            0.0
        }
    };
    let drain = &lab["drain"];
    let what = if drain.is_object() {
        format!(
            "{} migrations, at most {} at once (parallelOutboundMigrationsPerNode), all over in {} ms: QEMU {}",
            drain["migrations"].as_array().map_or(0, Vec::len),
            drain["parallel"],
            drain["total_time_ms"],
            q["status"].as_str().unwrap_or("?"),
        )
    } else {
        format!(
            "QEMU {}, {} transferred in {} ms",
            q["status"].as_str().unwrap_or("?"),
            bytes(transferred),
            q["total_time_ms"]
        )
    };
    let _ = writeln!(
        out,
        "\nlab scenario {}: {what} ({} multifd channels, TLS {}); migverify saw {} sent to the target ({:+.2}% of \
         what the lab's parts sent)",
        lab["scenario"].as_str().unwrap_or("?"),
        q["multifd_channels"],
        if q["tls"] == true { "on" } else { "off" },
        bytes(seen),
        percent(seen, expected)
    );
    let own: Vec<_> = report
        .migrations
        .iter()
        .filter_map(|m| Some((m, m.lab.as_ref()?)))
        .filter(|(_, l)| {
            drain.is_object()
                || !l["disk_copied_bytes"].is_null()
                || !l["control_sent_bytes"].is_null()
        })
        .collect();
    for (m, l) in own {
        let mut parts = vec![format!(
            "{} memory",
            bytes(l["transferred_bytes"].as_u64().unwrap_or(0))
        )];
        if let Some(disk) = l["disk_copied_bytes"].as_u64() {
            parts.push(format!("{} disk (NBD)", bytes(disk)));
        }
        if let Some(control) = l["control_sent_bytes"].as_u64() {
            parts.push(format!("{} control", bytes(control)));
        }
        let queue = &l["queue"];
        let queued = match queue["waited_for"].as_str() {
            Some(after) => format!(
                "; queued {:.1} s, until {after} was done",
                queue["waited_ms"].as_f64().unwrap_or(0.0) / 1000.0
            ),
            None if queue.is_object() => "; started at once".to_string(),
            None => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:<22} QEMU {} in {} ms: {}; migverify saw {} ({:+.2}%){queued}",
            m.figures.id,
            l["status"].as_str().unwrap_or("?"),
            l["total_time_ms"],
            parts.join(" + "),
            bytes(m.figures.forward_payload_bytes),
            percent(
                m.figures.forward_payload_bytes,
                l["expected_bytes"].as_u64().unwrap_or(0)
            )
        );
    }
}

/// A rate's percentiles over its intervals, on one line.
fn spread(t: &Throughput) -> String {
    format!(
        "p5 {}  p50 {}  p95 {}  max {}  mean {}  ({} intervals)",
        rate(t.p5),
        rate(t.p50),
        rate(t.p95),
        rate(t.max),
        rate(t.mean),
        t.intervals
    )
}
