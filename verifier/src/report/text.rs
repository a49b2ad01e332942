//! The terminal summary: the verdict first, then why, then a table per
//! migration.

use std::fmt::Write as _;

use super::Report;
use crate::units::{bytes, rate};

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
        let t = &f.throughput_bps;
        let _ = writeln!(
            out,
            "  throughput      p5 {}  p50 {}  p95 {}  max {}  mean {}  ({} intervals)",
            rate(t.p5),
            rate(t.p50),
            rate(t.p95),
            rate(t.max),
            rate(t.mean),
            t.intervals
        );
        let r = &f.rtt_us;
        let _ = writeln!(
            out,
            "  rtt (wire)      p50 {} us  p90 {} us  p99 {} us  min {} us  ({} samples)",
            r.p50, r.p90, r.p99, r.min, r.samples
        );
        let s = &f.srtt_us;
        let _ = writeln!(
            out,
            "  srtt (wire)     p50 {} us  p90 {} us  p99 {} us  (the same, smoothed as TCP does)",
            s.p50, s.p90, s.p99
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
    if let Some(lab) = &report.lab {
        let q = &lab["qemu"];
        let seen: u64 = report
            .migrations
            .iter()
            .map(|m| m.figures.forward_payload_bytes)
            .sum();
        let transferred = q["transferred_bytes"].as_u64().unwrap_or(0);
        if q["status"].is_null() {
            // No VM in this scenario (the bench): no QEMU figures to show.
            let _ = writeln!(
                out,
                "\nlab scenario {}: no QEMU migration; migverify saw {} sent to the target",
                lab["scenario"].as_str().unwrap_or("?"),
                bytes(seen)
            );
            return out;
        }
        let _ = writeln!(
            out,
            "\nlab scenario {}: QEMU {}, {} transferred in {} ms ({} multifd channels, TLS {}); migverify saw {} \
             sent to the target ({:+.2}%)",
            lab["scenario"].as_str().unwrap_or("?"),
            q["status"].as_str().unwrap_or("?"),
            bytes(transferred),
            q["total_time_ms"],
            q["multifd_channels"],
            if q["tls"] == true { "on" } else { "off" },
            bytes(seen),
            if transferred > 0 { (seen as f64 / transferred as f64 - 1.0) * 100.0 } else { 0.0 }
        );
    }
    out
}
