//! A self-contained HTML report: no scripts, no external resources; plots
//! are inline SVG, so the file opens anywhere, offline, and can be attached
//! to a ticket as is.

use std::fmt::Write as _;

use super::{MigrationReport, Report};
use crate::units::{bytes, rate};

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 48.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn axes(out: &mut String, x_label: &str, y_label: &str, y_max: f64, y_unit: &str) {
    let (x0, y0, x1, y1) = (MARGIN, HEIGHT - MARGIN / 1.5, WIDTH - 10.0, 10.0);
    let _ = write!(
        out,
        r#"<line x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}" class="axis"/><line x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}" class="axis"/>"#
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" class="label" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 4.0,
        escape(x_label)
    );
    let _ = write!(
        out,
        r#"<text x="12" y="{}" class="label" transform="rotate(-90 12 {})" text-anchor="middle">{}</text>"#,
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(y_label)
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" class="tick" text-anchor="end">{y_max:.0}{y_unit}</text>"#,
        x0 - 4.0,
        y1 + 8.0
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{y0}" class="tick" text-anchor="end">0</text>"#,
        x0 - 4.0
    );
}

/// A line through `points` (x, y), both axes from 0.
fn line_chart(
    title: &str,
    points: &[(f64, f64)],
    x_label: &str,
    y_label: &str,
    y_unit: &str,
) -> String {
    let mut out = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img">"#,
        escape(title)
    );
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    axes(&mut out, x_label, y_label, y_max, y_unit);
    let (plot_w, plot_h) = (WIDTH - MARGIN - 10.0, HEIGHT - MARGIN / 1.5 - 10.0);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| {
            format!(
                "{:.1},{:.1}",
                MARGIN + x / x_max * plot_w,
                HEIGHT - MARGIN / 1.5 - y / y_max * plot_h
            )
        })
        .collect();
    let _ = write!(
        out,
        r#"<polyline class="line" points="{}"/>"#,
        path.join(" ")
    );
    let _ = write!(
        out,
        r#"<text x="{}" y="{}" class="tick" text-anchor="end">{x_max:.1}</text>"#,
        WIDTH - 10.0,
        HEIGHT - MARGIN / 1.5 + 14.0
    );
    out.push_str("</svg></figure>");
    out
}

/// Bars of `counts`, labelled below.
fn bar_chart(title: &str, bars: &[(String, u64)], x_label: &str) -> String {
    let mut out = format!(
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img">"#,
        escape(title)
    );
    let y_max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    axes(&mut out, x_label, "count", y_max, "");
    let (plot_w, plot_h) = (WIDTH - MARGIN - 10.0, HEIGHT - MARGIN / 1.5 - 10.0);
    let width = plot_w / bars.len().max(1) as f64;
    for (i, (label, count)) in bars.iter().enumerate() {
        let h = *count as f64 / y_max * plot_h;
        let x = MARGIN + i as f64 * width;
        let _ = write!(
            out,
            r#"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{h:.1}"><title>{}: {count}</title></rect>"#,
            x + 1.0,
            HEIGHT - MARGIN / 1.5 - h,
            (width - 2.0).max(1.0),
            escape(label)
        );
        if bars.len() <= 12 || i % (bars.len() / 8).max(1) == 0 {
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" class="tick" text-anchor="middle">{}</text>"#,
                x + width / 2.0,
                HEIGHT - MARGIN / 1.5 + 12.0,
                escape(label)
            );
        }
    }
    out.push_str("</svg></figure>");
    out
}

fn throughput_bars(migration: &MigrationReport) -> Vec<(String, u64)> {
    let rates: Vec<f64> = migration
        .figures
        .progress
        .iter()
        .map(|i| i.bits_per_second() as f64 / 1e6)
        .collect();
    let max = rates.iter().copied().fold(0.0, f64::max);
    if rates.is_empty() || max <= 0.0 {
        return Vec::new();
    }
    const BINS: usize = 20;
    let width = max / BINS as f64;
    let mut counts = vec![0u64; BINS];
    for r in rates {
        counts[((r / width) as usize).min(BINS - 1)] += 1;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (format!("{:.0}", (i as f64 + 0.5) * width), c))
        .collect()
}

fn rtt_bars(migration: &MigrationReport) -> Vec<(String, u64)> {
    let Some(histogram) = migration
        .figures
        .rtt_histogram
        .as_ref()
        .filter(|h| !h.is_empty())
    else {
        return Vec::new();
    };
    histogram
        .iter_log(1, 2.0)
        .skip_while(|v| v.count_since_last_iteration() == 0)
        .map(|v| {
            (
                format!("{}", v.value_iterated_to()),
                v.count_since_last_iteration(),
            )
        })
        .collect()
}

pub fn render(report: &Report) -> String {
    let verdict = report.verdict.as_str();
    let mut out = String::new();
    let _ = write!(
        out,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>migverify report: {verdict}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em;color:#222}}
.verdict{{display:inline-block;padding:.2em .8em;border-radius:.3em;color:#fff;font-weight:bold}}
.PASS{{background:#2a7d2a}}.WARN{{background:#b8860b}}.FAIL{{background:#b22222}}
table{{border-collapse:collapse;margin:.5em 0}}td,th{{border:1px solid #ccc;padding:.2em .6em;text-align:left}}
td.n{{text-align:right;font-variant-numeric:tabular-nums}}
svg{{width:100%;max-width:{WIDTH}px;background:#fafafa}}.axis{{stroke:#444}}.line{{fill:none;stroke:#1f77b4;stroke-width:1.5}}
.bar{{fill:#1f77b4}}.label,.tick{{font-size:11px;fill:#444}}figure{{margin:1em 0}}figcaption{{font-weight:bold}}
</style></head><body><h1>migverify report <span class="verdict {verdict}">{verdict}</span></h1>"#
    );
    out.push_str("<h2>Reasons</h2><ul>");
    for reason in &report.reasons {
        let _ = write!(
            out,
            "<li><b>{:?}</b> <code>{}</code> {}</li>",
            reason.severity,
            escape(reason.id()),
            escape(&reason.message)
        );
    }
    if report.reasons.is_empty() {
        out.push_str(
            "<li>every migration byte crossed the migration network, within its budgets</li>",
        );
    }
    out.push_str("</ul>");
    if !report.assumptions.is_empty() {
        out.push_str("<h2>Assumptions</h2><ul>");
        for a in &report.assumptions {
            let _ = write!(out, "<li>{}</li>", escape(a));
        }
        out.push_str("</ul>");
    }
    for migration in &report.migrations {
        let f = &migration.figures;
        let b = &migration.budget;
        let _ = write!(
            out,
            "<h2>Migration {} &rarr; {}</h2><table>",
            escape(&f.id),
            escape(&f.targets.join(", "))
        );
        let rows = [
            (
                "bytes on migration / bridge / primary / other interfaces",
                format!(
                    "{} / {} / {} / {}",
                    f.bytes_by_role.migration,
                    f.bytes_by_role.bridge,
                    f.bytes_by_role.primary,
                    f.bytes_by_role.other
                ),
            ),
            (
                "payload (each connection once)",
                format!(
                    "{} in {} connections",
                    bytes(f.payload_bytes),
                    f.connections
                ),
            ),
            (
                "throughput p5 / p50 / p95 / max",
                format!(
                    "{} / {} / {} / {}",
                    rate(f.throughput_bps.p5),
                    rate(f.throughput_bps.p50),
                    rate(f.throughput_bps.p95),
                    rate(f.throughput_bps.max)
                ),
            ),
            (
                "RTT on the wire p50 / p90 / p99 (samples)",
                format!(
                    "{} / {} / {} us ({})",
                    f.rtt_us.p50, f.rtt_us.p90, f.rtt_us.p99, f.rtt_us.samples
                ),
            ),
            (
                "srtt p50 / p90: wire, kernel",
                format!(
                    "{} / {} us, {}",
                    f.srtt_us.p50,
                    f.srtt_us.p90,
                    f.kernel_srtt_us.as_ref().map_or_else(
                        || "not seen (the source's namespace is not observed)".to_string(),
                        |k| format!("{} / {} us ({} reads)", k.p50, k.p90, k.samples),
                    )
                ),
            ),
            (
                "duration, longest stall",
                format!(
                    "{:.2} s, {:.2} s (progressTimeout {} s)",
                    f.duration_s, f.longest_stall_s, b.progress_timeout_s
                ),
            ),
            (
                "completion budget",
                format!(
                    "{} s for {} ({}), needs at least {}; projected {}",
                    b.completion_timeout_s,
                    bytes(b.size_bytes),
                    escape(&b.size_source),
                    rate(b.min_rate_bps),
                    b.projected_s
                        .map_or_else(|| "-".into(), |p| format!("{p:.1} s"))
                ),
            ),
            (
                "retransmits, resets",
                format!("{}, {}", f.retransmits, f.resets),
            ),
        ];
        for (name, value) in rows {
            let _ = write!(out, "<tr><th>{name}</th><td>{value}</td></tr>");
        }
        out.push_str("</table><table><tr><th>interface</th><th>namespace</th><th>role</th><th>bytes</th></tr>");
        for i in &f.bytes_by_interface {
            let _ = write!(
                out,
                r#"<tr><td>{}</td><td>{}</td><td>{}</td><td class="n">{}</td></tr>"#,
                escape(&i.interface),
                escape(i.netns.as_deref().unwrap_or("-")),
                i.role.as_str(),
                i.bytes
            );
        }
        out.push_str("</table>");
        // Time from the start of the first interval that moved payload.
        let start = f
            .progress
            .first()
            .map_or(0, |i| i.at_ms.saturating_sub(i.length_ms));
        let points: Vec<(f64, f64)> = f
            .progress
            .iter()
            .map(|i| {
                (
                    (i.at_ms - start) as f64 / 1000.0,
                    i.bits_per_second() as f64 / 1e6,
                )
            })
            .collect();
        out.push_str(&line_chart(
            "Throughput over time",
            &points,
            "seconds since the first payload",
            "Mbit/s",
            "",
        ));
        out.push_str(&bar_chart(
            "Throughput per interval (histogram)",
            &throughput_bars(migration),
            "Mbit/s",
        ));
        out.push_str(&bar_chart(
            "Round-trip time (histogram, log2 buckets)",
            &rtt_bars(migration),
            "us",
        ));
    }
    if let Some(lab) = &report.lab {
        let _ = write!(
            out,
            "<h2>Lab</h2><pre>{}</pre>",
            escape(&serde_json::to_string_pretty(&lab["qemu"]).unwrap_or_default())
        );
    }
    out.push_str("</body></html>\n");
    out
}
