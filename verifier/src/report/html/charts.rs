//! The report's plots as inline SVG: axes with round intermediate ticks in
//! human units, the throughput timeline (the budget's least rate as a line,
//! stalls marked), histograms, and the path the migration took.

use std::fmt::Write as _;

use super::escape;
use crate::{
    dataplane::Role,
    measure::{migration::InterfaceBytes, series::Interval},
    report::Place,
    units::bytes,
};

const WIDTH: f64 = 720.0;
const HEIGHT: f64 = 240.0;
/// The plot area inside the figure: left, top, right, bottom margins.
const LEFT: f64 = 64.0;
const TOP: f64 = 14.0;
const RIGHT: f64 = 16.0;
const BOTTOM: f64 = 40.0;

/// Shorter stalls are ordinary jitter of the intervals, not marked.
const MARKED_STALL_MS: u64 = 500;

/// A unit to show values in: its name and how many base units it is.
#[derive(Clone, Copy)]
pub struct Unit {
    pub name: &'static str,
    pub size: f64,
}

/// Bits per second in Gbit/s, Mbit/s or kbit/s, as `max` suits.
pub fn rate_unit(max_bps: f64) -> Unit {
    match max_bps {
        m if m >= 1e9 => Unit {
            name: "Gbit/s",
            size: 1e9,
        },
        m if m >= 1e6 => Unit {
            name: "Mbit/s",
            size: 1e6,
        },
        _ => Unit {
            name: "kbit/s",
            size: 1e3,
        },
    }
}

/// Round ticks from 0 to at least `max`: steps of 1, 2, 2.5 or 5 times a
/// power of ten, four to seven of them.
pub fn ticks(max: f64) -> Vec<f64> {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| max / s <= 6.0)
        .unwrap_or(10.0 * power);
    let count = (max / step).ceil() as usize;
    (0..=count)
        .map(|i| (i as f64 * step * 1e9).round() / 1e9)
        .collect()
}

/// A tick's label: as few decimals as the step needs.
fn label(value: f64, step: f64) -> String {
    let decimals = (0..4)
        .find(|d| {
            let scaled = step * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-6
        })
        .unwrap_or(3) as usize;
    format!("{value:.decimals$}")
}

/// The frame of a plot: background, grid, axes, ticks and labels. `x` and
/// `y` are the ticks (in the shown unit); returns the mapping from values
/// to coordinates.
struct Frame {
    x_max: f64,
    y_max: f64,
}

impl Frame {
    fn x(&self, v: f64) -> f64 {
        LEFT + v / self.x_max * (WIDTH - LEFT - RIGHT)
    }

    fn y(&self, v: f64) -> f64 {
        HEIGHT - BOTTOM - v / self.y_max * (HEIGHT - TOP - BOTTOM)
    }
}

fn open(
    out: &mut String,
    title: &str,
    x: &[f64],
    y: &[f64],
    x_label: &str,
    y_label: &str,
) -> Frame {
    let frame = Frame {
        x_max: *x.last().unwrap_or(&1.0),
        y_max: *y.last().unwrap_or(&1.0),
    };
    let (x0, x1, y0, y1) = (LEFT, WIDTH - RIGHT, HEIGHT - BOTTOM, TOP);
    let _ = write!(
        out,
        r#"<figure><figcaption>{}</figcaption><svg viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{}">"#,
        escape(title),
        escape(title)
    );
    let _ = write!(
        out,
        r#"<rect class="plot" x="{x0}" y="{y1}" width="{}" height="{}"/>"#,
        x1 - x0,
        y0 - y1
    );
    let y_step = y.get(1).copied().unwrap_or(1.0);
    for &v in y {
        let at = frame.y(v);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{x0}" y1="{at:.1}" x2="{x1}" y2="{at:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            x0 - 6.0,
            at + 4.0,
            label(v, y_step)
        );
    }
    let x_step = x.get(1).copied().unwrap_or(1.0);
    for &v in x {
        let at = frame.x(v);
        let _ = write!(
            out,
            r#"<line class="axis" x1="{at:.1}" y1="{y0}" x2="{at:.1}" y2="{}"/><text class="tick" x="{at:.1}" y="{}" text-anchor="middle">{}</text>"#,
            y0 + 4.0,
            y0 + 16.0,
            label(v, x_step)
        );
    }
    let _ = write!(
        out,
        r#"<line class="axis" x1="{x0}" y1="{y0}" x2="{x1}" y2="{y0}"/><line class="axis" x1="{x0}" y1="{y0}" x2="{x0}" y2="{y1}"/>"#
    );
    let _ = write!(
        out,
        r#"<text class="label" x="{:.1}" y="{}" text-anchor="middle">{}</text><text class="label" x="14" y="{:.1}" transform="rotate(-90 14 {:.1})" text-anchor="middle">{}</text>"#,
        (x0 + x1) / 2.0,
        HEIGHT - 4.0,
        escape(x_label),
        (y0 + y1) / 2.0,
        (y0 + y1) / 2.0,
        escape(y_label)
    );
    frame
}

fn close(out: &mut String) {
    out.push_str("</svg></figure>");
}

/// Throughput over time: one point per interval, the budget's least rate
/// as a dashed line, stalls (no payload for [`MARKED_STALL_MS`] or more)
/// shaded.
pub fn timeline(progress: &[Interval], min_rate_bps: u64, budget_s: u64) -> String {
    let start = progress
        .first()
        .map_or(0, |i| i.at_ms.saturating_sub(i.length_ms));
    let points: Vec<(f64, f64)> = progress
        .iter()
        .map(|i| {
            (
                (i.at_ms - start) as f64 / 1000.0,
                i.bits_per_second() as f64,
            )
        })
        .collect();
    let peak = points.iter().map(|p| p.1).fold(0.0, f64::max);
    let unit = rate_unit(peak.max(min_rate_bps as f64));
    let y = ticks(peak.max(min_rate_bps as f64) * 1.05 / unit.size);
    let x = ticks(points.last().map_or(1.0, |p| p.0));
    let mut out = String::new();
    let frame = open(
        &mut out,
        "Throughput over time",
        &x,
        &y,
        "seconds since the first payload",
        unit.name,
    );
    // Stalls first, under the line.
    let mut run: Option<(u64, u64)> = None;
    let mut stalls = Vec::new();
    for i in progress {
        if i.bytes == 0 {
            let from = i.at_ms.saturating_sub(i.length_ms);
            run = Some(run.map_or((from, i.at_ms), |(s, _)| (s, i.at_ms)));
        } else if let Some(r) = run.take() {
            stalls.push(r);
        }
    }
    stalls.extend(run);
    for (from, to) in stalls.into_iter().filter(|(f, t)| t - f >= MARKED_STALL_MS) {
        let (a, b) = (
            frame.x((from - start) as f64 / 1000.0),
            frame.x((to - start) as f64 / 1000.0),
        );
        let _ = write!(
            out,
            r#"<rect class="stall" x="{a:.1}" y="{TOP}" width="{:.1}" height="{}"><title>stall</title></rect><text class="stall-label" x="{:.1}" y="{}" text-anchor="middle">stall {:.1} s</text>"#,
            (b - a).max(1.0),
            HEIGHT - TOP - BOTTOM,
            (a + b) / 2.0,
            TOP + 12.0,
            (to - from) as f64 / 1000.0
        );
    }
    let coords: Vec<String> = points
        .iter()
        .map(|(t, r)| format!("{:.1},{:.1}", frame.x(*t), frame.y(r / unit.size)))
        .collect();
    if let (Some(first), Some(last)) = (points.first(), points.last()) {
        let _ = write!(
            out,
            r#"<polygon class="area" points="{:.1},{:.1} {} {:.1},{:.1}"/><polyline class="series" points="{}"/>"#,
            frame.x(first.0),
            frame.y(0.0),
            coords.join(" "),
            frame.x(last.0),
            frame.y(0.0),
            coords.join(" ")
        );
    }
    if min_rate_bps > 0 {
        let at = frame.y(min_rate_bps as f64 / unit.size);
        let _ = write!(
            out,
            r#"<line class="budget" x1="{LEFT}" y1="{at:.1}" x2="{}" y2="{at:.1}"/><text class="budget-label" x="{}" y="{:.1}" text-anchor="end">least rate for the {budget_s} s budget: {}</text>"#,
            WIDTH - RIGHT,
            WIDTH - RIGHT - 4.0,
            at - 5.0,
            crate::units::rate(min_rate_bps)
        );
    }
    close(&mut out);
    out
}

/// Bars of `(lower edge, upper edge, count)`, the x axis in `x_label`.
pub fn histogram(title: &str, bins: &[(f64, f64, u64)], x_label: &str, y_label: &str) -> String {
    let x = ticks(bins.last().map_or(1.0, |b| b.1));
    let y = ticks(bins.iter().map(|b| b.2).max().unwrap_or(1) as f64);
    let mut out = String::new();
    let frame = open(&mut out, title, &x, &y, x_label, y_label);
    for &(from, to, count) in bins.iter().filter(|b| b.2 > 0) {
        let (a, b) = (frame.x(from), frame.x(to));
        let top = frame.y(count as f64);
        let _ = write!(
            out,
            r#"<rect class="bar" x="{:.1}" y="{top:.1}" width="{:.1}" height="{:.1}"><title>{} to {}: {count}</title></rect>"#,
            a + 0.5,
            (b - a - 1.0).max(1.0),
            frame.y(0.0) - top,
            label(from, (to - from).max(1e-9)),
            label(to, (to - from).max(1e-9)),
        );
    }
    close(&mut out);
    out
}

/// `count` equal bins from 0 to the round tick at or above `top` of
/// `(value, how many)`; values above go to the last bin.
pub fn bins(values: &[(f64, u64)], top: f64, count: usize) -> Vec<(f64, f64, u64)> {
    if values.is_empty() || top <= 0.0 || count == 0 {
        return Vec::new();
    }
    let top = *ticks(top).last().unwrap_or(&top);
    let width = top / count as f64;
    let mut counts = vec![0u64; count];
    for (v, n) in values {
        counts[((v / width) as usize).min(count - 1)] += n;
    }
    counts
        .into_iter()
        .enumerate()
        .map(|(i, c)| (i as f64 * width, (i + 1) as f64 * width, c))
        .collect()
}

fn role_class(role: Role) -> &'static str {
    match role {
        Role::Migration => "hop-migration",
        Role::Bridge => "hop-bridge",
        Role::Primary => "hop-primary",
        Role::Other => "hop-other",
    }
}

/// The interfaces that carried the migration, source to target, each with
/// its node (and side) when known: the source's node first (its pod's
/// namespace, then the node's), then the target's (the node's namespace,
/// then its pod's); in a namespace, where the packets came in before where
/// they left. Namespaces of no known node come last.
pub fn path_order<'a>(
    interfaces: &'a [InterfaceBytes],
    places: &[Place],
) -> Vec<(&'a InterfaceBytes, Option<String>)> {
    let place = |i: &InterfaceBytes| places.iter().find(|p| p.netns == i.netns);
    // A node sends when its pod's interfaces send.
    let sending = |node: &str| {
        interfaces.iter().any(|i| {
            i.bytes > 0
                && i.sends == Some(true)
                && place(i).is_some_and(|p| p.pod && p.node == node)
        })
    };
    let mut hops: Vec<_> = (interfaces.iter())
        .filter(|i| i.bytes > 0)
        .map(|i| {
            let out = u8::from(i.sends == Some(true));
            match place(i) {
                Some(p) => {
                    let source = sending(&p.node);
                    let side = if source { "source" } else { "target" };
                    (
                        (
                            u8::from(!source),
                            p.node.clone(),
                            u8::from(p.pod != source),
                            out,
                        ),
                        i,
                        Some(format!("{} ({side})", p.node)),
                    )
                }
                None => ((2, String::new(), 0, out), i, None),
            }
        })
        .collect();
    hops.sort_by(|a, b| {
        (&a.0, &a.1.netns, &a.1.interface).cmp(&(&b.0, &b.1.netns, &b.1.interface))
    });
    hops.into_iter().map(|(_, i, node)| (i, node)).collect()
}

/// The path drawn: every interface that carried the migration in
/// [`path_order`], with its namespace, role and bytes, and its node above
/// where the node changes.
pub fn path(hops: &[(&InterfaceBytes, Option<String>)]) -> String {
    let (box_w, box_h, gap, label_h) = (140.0, 64.0, 26.0, 18.0);
    let per_row = 5usize;
    let rows = hops.len().div_ceil(per_row).max(1);
    let width = (per_row.min(hops.len().max(1)) as f64) * (box_w + gap) - gap + 20.0;
    let row_h = label_h + box_h + 30.0;
    let height = rows as f64 * row_h + 6.0;
    let mut out = format!(
        r#"<figure><figcaption>The path: where the source's packets went, interface by interface</figcaption><svg class="path" viewBox="0 0 {width:.0} {height:.0}" style="max-width:{width:.0}px" role="img" aria-label="path"><defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>"#
    );
    let at = |n: usize| {
        let (row, col) = (n / per_row, n % per_row);
        (
            10.0 + col as f64 * (box_w + gap),
            6.0 + label_h + row as f64 * row_h,
        )
    };
    for (n, (hop, node)) in hops.iter().enumerate() {
        let (x, y) = at(n);
        if let Some(node) = node
            .as_ref()
            .filter(|node| n == 0 || hops[n - 1].1.as_ref() != Some(*node))
        {
            let _ = write!(
                out,
                r#"<text class="hop-node" x="{x:.1}" y="{:.1}">{}</text>"#,
                y - 6.0,
                escape(node)
            );
        }
        let _ = write!(
            out,
            r#"<rect class="hop {}" x="{x:.1}" y="{y:.1}" width="{box_w}" height="{box_h}" rx="6"/><text class="hop-name" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="hop-ns" x="{:.1}" y="{:.1}" text-anchor="middle">{}</text><text class="hop-bytes" x="{:.1}" y="{:.1}" text-anchor="middle">{} · {}</text>"#,
            role_class(hop.role),
            x + box_w / 2.0,
            y + 20.0,
            escape(&hop.interface),
            x + box_w / 2.0,
            y + 36.0,
            escape(hop.netns.as_deref().unwrap_or("this host")),
            x + box_w / 2.0,
            y + 54.0,
            hop.role.as_str(),
            bytes(hop.bytes)
        );
        if n + 1 < hops.len() {
            let (nx, ny) = at(n + 1);
            let path = if ny > y {
                // On to the next row: down and back to its start.
                let mid = y + box_h + 12.0;
                format!(
                    "M{:.1},{:.1} L{:.1},{mid:.1} L{:.1},{mid:.1} L{:.1},{:.1}",
                    x + box_w / 2.0,
                    y + box_h,
                    x + box_w / 2.0,
                    nx + box_w / 2.0,
                    nx + box_w / 2.0,
                    ny - 1.0
                )
            } else {
                let mid = y + box_h / 2.0;
                format!("M{:.1},{mid:.1} L{:.1},{mid:.1}", x + box_w, nx - 1.0)
            };
            let _ = write!(
                out,
                r#"<path class="link" d="{path}" marker-end="url(#arrow)"/>"#
            );
        }
    }
    if hops.is_empty() {
        out.push_str(
            r#"<text class="label" x="10" y="40">no interface carried payload of this migration</text>"#,
        );
    }
    out.push_str("</svg></figure>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_maximum() {
        assert_eq!(ticks(10.0), [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
        assert_eq!(ticks(1.7), [0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(ticks(0.93), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(ticks(230.0), [0.0, 50.0, 100.0, 150.0, 200.0, 250.0]);
        let t = ticks(7.3);
        assert!(t.len() >= 4 && *t.last().unwrap() >= 7.3, "{t:?}");
        assert_eq!(ticks(0.0), [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]);
        assert_eq!(label(2.5, 2.5), "2.5");
        assert_eq!(label(0.4, 0.2), "0.4");
        assert_eq!(label(150.0, 50.0), "150");
    }

    #[test]
    fn the_path_runs_from_the_sources_pod_to_the_targets() {
        let hop = |interface: &str, netns: &str, sends: bool| InterfaceBytes {
            interface: interface.into(),
            netns: Some(netns.into()),
            role: Role::Migration,
            bytes: 1000,
            sends: Some(sends),
        };
        let place = |netns: &str, node: &str, pod: bool| Place {
            netns: Some(netns.into()),
            node: node.into(),
            pod,
        };
        let places = [
            place("vh-a", "node-a", true),
            place("node-a", "node-a", false),
            place("vh-b", "node-b", true),
            place("node-b", "node-b", false),
        ];
        // The bridge CNI, as the report lists interfaces (by name).
        let interfaces = [
            hop("eth1", "node-a", true),
            hop("eth1", "node-b", false),
            hop("migration0", "vh-a", true),
            hop("migration0", "vh-b", false),
            hop("vh-mig", "node-a", false),
            hop("vh-mig", "node-b", true),
        ];
        let order: Vec<String> = path_order(&interfaces, &places)
            .iter()
            .map(|(i, node)| {
                format!(
                    "{}@{} {}",
                    i.interface,
                    i.netns.as_deref().unwrap(),
                    node.as_deref().unwrap()
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                "migration0@vh-a node-a (source)",
                "vh-mig@node-a node-a (source)",
                "eth1@node-a node-a (source)",
                "eth1@node-b node-b (target)",
                "vh-mig@node-b node-b (target)",
                "migration0@vh-b node-b (target)",
            ]
        );
        let svg = path(&path_order(&interfaces, &places));
        assert_eq!(svg.matches(r#"class="hop "#).count(), 6);
        assert_eq!(svg.matches(r#"class="hop-node""#).count(), 2, "{svg}");
    }

    #[test]
    fn stalls_and_the_budget_line_are_drawn() {
        let mut progress = Vec::new();
        for (n, bytes) in [5_000_000u64, 5_000_000, 0, 0, 0, 0, 0, 0, 5_000_000]
            .iter()
            .enumerate()
        {
            progress.push(Interval {
                at_ms: (n as u64 + 1) * 100,
                length_ms: 100,
                bytes: *bytes,
            });
        }
        let svg = timeline(&progress, 100_000_000, 150);
        assert!(
            svg.contains(r#"class="stall""#) && svg.contains("stall 0.6 s"),
            "{svg}"
        );
        assert!(
            svg.contains(r#"class="budget""#) && svg.contains("100.0 Mbit/s"),
            "{svg}"
        );
        assert!(svg.contains("Mbit/s"));
    }
}
