//! The HTML report: the artefact people attach to a change ticket. One
//! self-contained page (no scripts, no external resources; plots are
//! inline SVG) that reads on screen and on paper: a summary a manager can
//! read first (which network, how fast, within budget or not and by how
//! much), then the findings, then per migration its figures in human
//! units, its path, its throughput over time against the budget, its
//! distributions and its connections, and last the assumptions made and
//! where every setting came from.

mod charts;

use std::fmt::Write as _;

use serde_json::Value;

use super::{live::rfc3339, MigrationReport, Place, Report};
use crate::{
    dataplane::Role,
    measure::budget::Projection,
    units::{bytes, micros, rate, seconds},
    verdict::Severity,
};

pub(super) fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const STYLE: &str = r#"
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:62em;padding:0 1em;color:#1d2430;line-height:1.4}
h1{font-size:1.6em;margin:0 0 .2em}h2{font-size:1.25em;margin:1.6em 0 .5em;border-bottom:1px solid #d5dbe3;padding-bottom:.2em}
h3{font-size:1.05em;margin:1.2em 0 .4em}.meta{color:#5a6472;margin:.2em 0 1em}
.verdict{display:inline-block;padding:.1em .7em;border-radius:.3em;color:#fff;font-weight:bold;vertical-align:middle;font-size:.8em}
.PASS{background:#2a7d2a}.WARN{background:#b8860b}.FAIL{background:#b22222}
.summary{font-size:1.1em;border-left:6px solid #2a7d2a;background:#f2f7f2;padding:.7em 1em;margin:1em 0}
.summary.WARN{border-color:#b8860b;background:#fbf6e9}.summary.FAIL{border-color:#b22222;background:#fbefef}
.summary p{margin:.3em 0}
.cards{display:flex;flex-wrap:wrap;gap:.6em;margin:.8em 0}
.card{border:1px solid #d5dbe3;border-radius:.4em;padding:.4em .8em;min-width:9em}
.card b{display:block;font-size:1.3em}.card span{color:#5a6472;font-size:.85em}
table{border-collapse:collapse;margin:.5em 0;font-size:.92em}td,th{border:1px solid #d5dbe3;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f3f5f8;font-weight:600}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
ul.findings{padding-left:0;list-style:none}ul.findings li{margin:.35em 0;padding:.3em .6em;border-left:4px solid #8a94a3;background:#f6f7f9}
li.error{border-color:#b22222!important}li.warning{border-color:#b8860b!important}li.info{border-color:#3b73b9!important}
.sev{font-weight:bold;text-transform:uppercase;font-size:.8em;margin-right:.4em}.why{color:#5a6472;font-size:.88em}
figure{margin:1em 0;break-inside:avoid}figcaption{font-weight:600;margin-bottom:.2em}
svg{width:100%;max-width:760px;display:block}
.plot{fill:#f3f6fa}.grid{stroke:#dfe5ec;stroke-width:1}.axis{stroke:#5a6472;stroke-width:1}
.tick{font-size:11px;fill:#3a4350}.label{font-size:12px;fill:#3a4350}
.series{fill:none;stroke:#1f77b4;stroke-width:2}.area{fill:#1f77b4;fill-opacity:.18}.bar{fill:#1f77b4}
.budget{stroke:#d9822b;stroke-width:2;stroke-dasharray:7 4}.budget-label{font-size:11px;fill:#a65d12;font-weight:600}
.stall{fill:#d62728;fill-opacity:.18}.stall-label{font-size:11px;fill:#a31d1e;font-weight:600}
.hop{stroke-width:2}.hop-migration{fill:#e9f4e9;stroke:#2a7d2a}.hop-bridge{fill:#e6f2f4;stroke:#1b7f8c}
.hop-primary{fill:#fbe9e9;stroke:#b22222}.hop-other{fill:#f1f2f4;stroke:#8a94a3}
.hop-name{font-size:14px;font-weight:700;fill:#1d2430}.hop-node{font-size:12px;font-weight:600;fill:#3a4350}.hop-ns{font-size:11px;fill:#3a4350}.hop-bytes{font-size:11px;fill:#3a4350}
.link{fill:none;stroke:#5a6472;stroke-width:1.5}.arrowhead{fill:#5a6472}
.role-migration{color:#2a7d2a;font-weight:600}.role-primary{color:#b22222;font-weight:600}.role-bridge{color:#1b7f8c;font-weight:600}
footer{margin-top:2em;color:#8a94a3;font-size:.85em}
@media print{body{margin:0;max-width:none;font-size:10.5pt}h2{break-after:avoid}table,figure,.summary,.cards{break-inside:avoid}
.summary,.card,th,.plot,.hop,.verdict{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"#;

/// "2025-01-01 12:34:56 UTC" from an RFC 3339 stamp.
fn when(report: &Report) -> Option<String> {
    let stamp = rfc3339(report.started_at?);
    Some(format!("{} {} UTC", &stamp[..10], &stamp[11..19]))
}

fn interfaces_of(migration: &MigrationReport, places: &[Place], role: Role) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (hop, _) in charts::path_order(&migration.figures.bytes_by_interface, places) {
        if hop.role == role && !names.contains(&hop.interface) {
            names.push(hop.interface.clone());
        }
    }
    names
}

/// One sentence a manager can read: which network, how fast, within its
/// budget or not and by how much.
fn sentence(m: &MigrationReport, places: &[Place]) -> String {
    let (f, b) = (&m.figures, &m.budget);
    let network = if f.bytes_by_role.primary > 0 {
        format!(
            "crossed the <b>pod network</b> ({}; {} on it), not the migration network",
            interfaces_of(m, places, Role::Primary).join(", "),
            bytes(f.bytes_by_role.primary)
        )
    } else if f.bytes_by_role.migration + f.bytes_by_role.bridge > 0 {
        format!(
            "used the <b>migration network</b> ({})",
            interfaces_of(m, places, Role::Migration).join(", ")
        )
    } else {
        "was seen on no interface with a role".to_string()
    };
    let speed = format!(
        "{} at <b>{}</b> median ({} at best)",
        bytes(f.forward_payload_bytes),
        rate(f.throughput_bps.p50),
        rate(f.throughput_bps.max)
    );
    let budget = b.completion_timeout_s as f64;
    let verb = if b.projection == Projection::Duration {
        "took"
    } else {
        "would take"
    };
    let completion = match b.projected_s {
        Some(p) if p <= budget => format!(
            "It {verb} <b>{}</b> of its {} completion budget: <b>within budget</b>, {:.1}% of it used, {} to spare.",
            seconds(p),
            seconds(budget),
            p / budget.max(1e-9) * 100.0,
            seconds(budget - p)
        ),
        Some(p) => format!(
            "It {verb} <b>{}</b>: <b>over</b> its {} completion budget by {} ({:.1} times the budget).",
            seconds(p),
            seconds(budget),
            seconds(p - budget),
            p / budget.max(1e-9)
        ),
        None => "Nothing moved, so no completion can be projected.".to_string(),
    };
    let stall = if f.longest_stall_s > b.progress_timeout_s as f64 {
        format!(
            " It stood still for <b>{}</b>, longer than progressTimeout ({} s): KubeVirt cancels such a migration.",
            seconds(f.longest_stall_s),
            b.progress_timeout_s
        )
    } else {
        String::new()
    };
    format!(
        "Migration <b>{}</b> {network}: {speed}. {completion}{stall}",
        escape(&f.id)
    )
}

fn summary(out: &mut String, report: &Report) {
    let verdict = report.verdict.as_str();
    let _ = write!(out, r#"<div class="summary {verdict}">"#);
    if report.migrations.is_empty() {
        let _ = write!(
            out,
            "<p><b>{verdict}</b>: no migration traffic was seen in {}.</p>",
            seconds(report.dataplane.observed_s)
        );
    }
    for m in &report.migrations {
        let _ = write!(out, "<p>{}</p>", sentence(m, &report.places));
    }
    if let Some(first) = report
        .reasons
        .iter()
        .find(|r| r.severity == Severity::Error)
    {
        let _ = write!(
            out,
            "<p><b>{verdict}</b> because: {}</p>",
            escape(&first.message)
        );
    }
    out.push_str("</div>");
}

fn findings(out: &mut String, report: &Report) {
    out.push_str(r#"<h2>Findings</h2><ul class="findings">"#);
    for reason in &report.reasons {
        let severity = reason.severity.as_str();
        let _ = write!(
            out,
            r#"<li class="{severity}"><span class="sev">{severity}</span>{}<br><span class="why">{} ({})</span></li>"#,
            escape(&reason.message),
            escape(reason.kind.when),
            escape(reason.id())
        );
    }
    if report.reasons.is_empty() {
        out.push_str(
            r#"<li class="info">Nothing to report: every migration byte crossed the migration network, within its budgets.</li>"#,
        );
    }
    out.push_str("</ul>");
}

fn card(out: &mut String, value: String, what: &str) {
    let _ = write!(
        out,
        r#"<div class="card"><b>{value}</b><span>{}</span></div>"#,
        escape(what)
    );
}

fn row(out: &mut String, name: &str, value: String) {
    let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
}

fn role(role: Role) -> String {
    format!(r#"<span class="role-{0}">{0}</span>"#, role.as_str())
}

fn migration(out: &mut String, m: &MigrationReport, places: &[Place]) {
    let (f, b) = (&m.figures, &m.budget);
    let _ = write!(
        out,
        "<h2>Migration {} &rarr; {}</h2>",
        escape(&f.id),
        escape(&f.targets.join(", "))
    );
    out.push_str(r#"<div class="cards">"#);
    card(out, bytes(f.forward_payload_bytes), "sent to the target");
    card(out, rate(f.throughput_bps.p50), "median rate");
    card(
        out,
        seconds(f.duration_s),
        &format!("duration, of a {} s budget", b.completion_timeout_s),
    );
    card(
        out,
        seconds(f.longest_stall_s),
        &format!("longest stall, of {} s allowed", b.progress_timeout_s),
    );
    card(out, micros(f.rtt_us.p50), "round trip, median");
    out.push_str("</div>");
    let hops = charts::path_order(&f.bytes_by_interface, places);
    out.push_str(&charts::path(&hops));
    out.push_str(&charts::timeline(
        &f.progress,
        b.min_rate_bps,
        b.completion_timeout_s,
    ));
    let t = &f.throughput_bps;
    out.push_str("<table>");
    row(
        out,
        "throughput",
        format!(
            "median {}, p5 {}, p95 {}, peak {}, mean {} ({} intervals)",
            rate(t.p50),
            rate(t.p5),
            rate(t.p95),
            rate(t.max),
            rate(t.mean),
            t.intervals
        ),
    );
    let r = &f.rtt_us;
    row(
        out,
        "round-trip time",
        format!(
            "median {}, p90 {}, p99 {}, max {} ({} samples)",
            micros(r.p50),
            micros(r.p90),
            micros(r.p99),
            micros(r.max),
            r.samples
        ),
    );
    row(
        out,
        "completion budget",
        format!(
            "{} s = completionTimeoutPerGiB {} s &times; {} (units of 10<sup>9</sup> bytes, rounded up) for {} ({}); needs at least {}",
            b.completion_timeout_s,
            b.completion_timeout_per_gib,
            b.size_units,
            bytes(b.size_bytes),
            escape(&b.size_source),
            rate(b.min_rate_bps)
        ),
    );
    row(
        out,
        "projected completion",
        b.projected_s.map_or_else(
            || "-".into(),
            |p| {
                let on = match b.projection {
                    Projection::Duration => "how long it took",
                    Projection::MedianRate => "its size at the median rate",
                    Projection::Resending => {
                        "its first pass and as long again as it has been re-sending"
                    }
                };
                format!("{} ({on})", seconds(p))
            },
        ),
    );
    row(
        out,
        "by role",
        format!(
            "{} migration, {} bridge, {} primary, {} other (frame bytes, each direction's best view)",
            bytes(f.bytes_by_role.migration),
            bytes(f.bytes_by_role.bridge),
            bytes(f.bytes_by_role.primary),
            bytes(f.bytes_by_role.other)
        ),
    );
    if !f.bytes_by_vlan.is_empty() {
        let vlans: Vec<String> = (f.bytes_by_vlan.iter())
            .map(|(vlan, n)| format!("{vlan}: {}", bytes(*n)))
            .collect();
        row(out, "VLANs", vlans.join(", "));
    }
    row(
        out,
        "retransmits, zero windows, resets",
        format!("{}, {}, {}", f.retransmits, f.zero_windows, f.resets),
    );
    out.push_str("</table>");
    histograms(out, m);
    out.push_str("<h3>Connections</h3><table><tr><th>channel</th><th>from &rarr; to</th><th>state</th><th>payload</th><th>retransmits</th><th>RTT median</th></tr>");
    for c in &f.per_connection {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{} &rarr; {}</td><td>{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td></tr>"#,
            c.channel,
            escape(&c.src),
            escape(&c.dst),
            c.state,
            bytes(c.payload_bytes),
            c.retransmits,
            c.rtt_p50_us.map_or_else(
                || "-".into(),
                |us| format!("{} ({} samples)", micros(us), c.rtt_samples)
            )
        );
    }
    out.push_str("</table><h3>Interfaces</h3><table><tr><th>interface</th><th>namespace</th><th>node</th><th>role</th><th>frame bytes</th></tr>");
    for (i, node) in &hops {
        let _ = write!(
            out,
            r#"<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#,
            escape(&i.interface),
            escape(i.netns.as_deref().unwrap_or("this host")),
            escape(node.as_deref().unwrap_or("-")),
            role(i.role),
            bytes(i.bytes)
        );
    }
    out.push_str("</table>");
}

fn histograms(out: &mut String, m: &MigrationReport) {
    let f = &m.figures;
    let rates: Vec<(f64, u64)> = (f.progress.iter())
        .map(|i| (i.bits_per_second() as f64, 1))
        .collect();
    let peak = rates.iter().map(|r| r.0).fold(0.0, f64::max);
    if peak > 0.0 {
        let unit = charts::rate_unit(peak);
        let shown: Vec<(f64, u64)> = rates.iter().map(|(r, n)| (r / unit.size, *n)).collect();
        out.push_str(&charts::histogram(
            "How often each rate was reached (per interval)",
            &charts::bins(&shown, peak / unit.size, 20),
            unit.name,
            "intervals",
        ));
    }
    if let Some(h) = f.rtt_histogram.as_ref().filter(|h| !h.is_empty()) {
        let samples: Vec<(f64, u64)> = h
            .iter_recorded()
            .map(|v| (v.value_iterated_to() as f64 / 1000.0, v.count_at_value()))
            .collect();
        let p99 = h.value_at_quantile(0.99) as f64 / 1000.0;
        out.push_str(&charts::histogram(
            &format!(
                "Round-trip times ({} samples; those above p99 in the last bar)",
                h.len()
            ),
            &charts::bins(&samples, p99.max(0.001), 24),
            "ms",
            "samples",
        ));
    }
}

fn assumptions(out: &mut String, report: &Report) {
    let l = &report.budget_settings;
    out.push_str("<h2>Assumptions and sources</h2><ul>");
    let _ = write!(
        out,
        "<li>Budgets from <b>{}</b>: completionTimeoutPerGiB {} s, progressTimeout {} s, bandwidthPerMigration {}, \
         parallelMigrationsPerCluster {}, parallelOutboundMigrationsPerNode {}.</li>",
        escape(&l.source),
        l.completion_timeout_per_gib,
        l.progress_timeout_s,
        l.bandwidth_per_migration
            .map_or_else(|| "unlimited".into(), |b| rate(b * 8)),
        l.parallel_migrations_per_cluster,
        l.parallel_outbound_migrations_per_node
    );
    for m in &report.migrations {
        let _ = write!(
            out,
            "<li>Size of {}: {} from {}.</li>",
            escape(&m.figures.id),
            bytes(m.budget.size_bytes),
            escape(&m.budget.size_source)
        );
    }
    for a in &report.assumptions {
        let _ = write!(out, "<li>{}</li>", escape(a));
    }
    out.push_str("</ul>");
}

fn observation(out: &mut String, report: &Report) {
    let d = &report.dataplane;
    out.push_str("<h2>Observation</h2><table>");
    if let Some(at) = when(report) {
        row(out, "started", at);
    }
    row(out, "observed for", seconds(d.observed_s));
    row(out, "connections seen", d.connections.to_string());
    row(
        out,
        "lost by the observers",
        d.stats
            .losses(d.events_dropped)
            .map_or_else(|| "nothing".into(), |l| escape(&l)),
    );
    out.push_str("</table>");
    if let Some(lab) = &report.lab {
        lab_table(out, lab);
    }
}

/// The lab's scenario and QEMU's own account, in words.
fn lab_table(out: &mut String, lab: &Value) {
    let q = &lab["qemu"];
    out.push_str("<h3>The lab</h3><table>");
    let text = |v: &Value| v.as_str().map(escape).unwrap_or_else(|| "-".into());
    row(out, "scenario", text(&lab["scenario"]));
    if let Some(cni) = lab["config"]["cni"].as_str() {
        row(out, "migration network", format!("{} CNI", escape(cni)));
    }
    if !q.is_null() {
        row(
            out,
            "QEMU's migration",
            format!(
                "{}: {} in {} (downtime {}), {} multifd channels, TLS {}, {}",
                text(&q["status"]),
                bytes(q["transferred_bytes"].as_u64().unwrap_or(0)),
                seconds(q["total_time_ms"].as_f64().unwrap_or(0.0) / 1000.0),
                q["downtime_ms"]
                    .as_u64()
                    .map_or_else(|| "-".into(), |ms| micros(ms * 1000)),
                q["multifd_channels"],
                if q["tls"] == true { "on" } else { "off" },
                text(&q["accelerator"])
            ),
        );
        if let Some(error) = q["error"].as_str() {
            row(out, "QEMU's error", escape(error));
        }
    }
    out.push_str("</table>");
}

pub fn render(report: &Report) -> String {
    let verdict = report.verdict.as_str();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1"><title>Live-migration network report: {verdict}</title><style>{STYLE}</style></head><body>"#
    );
    let _ = write!(
        out,
        r#"<header><h1>Live-migration network report <span class="verdict {verdict}">{verdict}</span></h1><p class="meta">{} &middot; observed for {} &middot; {} migration(s) &middot; migverify {}</p></header>"#,
        when(report).unwrap_or_else(|| "no start time".into()),
        seconds(report.dataplane.observed_s),
        report.migrations.len(),
        env!("CARGO_PKG_VERSION")
    );
    summary(&mut out, report);
    findings(&mut out, report);
    for m in &report.migrations {
        migration(&mut out, m, &report.places);
    }
    assumptions(&mut out, report);
    observation(&mut out, report);
    out.push_str(
        "<footer>Made by migverify from what its eBPF observers saw on the wire. Roles: \
         <span class=\"role-migration\">migration</span> (the migration network), \
         <span class=\"role-bridge\">bridge</span>, <span class=\"role-primary\">primary</span> \
         (the pod network: migration bytes there are a fallback).</footer></body></html>\n",
    );
    out
}
