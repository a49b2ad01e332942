//! The Prometheus text exposition format (version 0.0.4): one `# HELP` and
//! `# TYPE` per family, then its samples, label values escaped.

use std::fmt::Write as _;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// Builds one exposition page.
#[derive(Default)]
pub struct Page {
    text: String,
}

/// Label pairs of one sample.
pub type Labels<'a> = &'a [(&'a str, &'a str)];

impl Page {
    /// Starts a family; its samples follow.
    pub fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {}", kind.as_str());
    }

    pub fn sample(&mut self, name: &str, labels: Labels, value: f64) {
        self.text.push_str(name);
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(value));
    }

    /// The `_bucket`, `_sum` and `_count` samples of one histogram.
    pub fn histogram(&mut self, name: &str, labels: Labels, histogram: &Histogram) {
        let mut cumulative = 0;
        for (bound, count) in histogram.bounds.iter().zip(&histogram.counts) {
            cumulative += count;
            self.text.push_str(name);
            self.text.push_str("_bucket");
            write_labels(&mut self.text, labels, Some(&number(*bound)));
            let _ = writeln!(self.text, " {cumulative}");
        }
        cumulative += histogram.counts.last().copied().unwrap_or(0);
        let _ = write!(self.text, "{name}_bucket");
        write_labels(&mut self.text, labels, Some("+Inf"));
        let _ = writeln!(self.text, " {cumulative}");
        let _ = write!(self.text, "{name}_sum");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {}", number(histogram.sum));
        let _ = write!(self.text, "{name}_count");
        write_labels(&mut self.text, labels, None);
        let _ = writeln!(self.text, " {cumulative}");
    }

    pub fn finish(self) -> String {
        self.text
    }
}

/// Observations counted into fixed buckets, as Prometheus histograms are:
/// the counts only grow.
#[derive(Clone, Debug, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending; `+Inf` is implicit.
    bounds: &'static [f64],
    /// One count per bound, and one past the last (the `+Inf` bucket).
    counts: Vec<u64>,
    sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        let index = self
            .bounds
            .iter()
            .position(|bound| value <= *bound)
            .unwrap_or(self.bounds.len());
        self.counts[index] += 1;
        self.sum += value;
    }
}

fn write_labels(out: &mut String, labels: Labels, le: Option<&str>) {
    if labels.is_empty() && le.is_none() {
        return;
    }
    out.push('{');
    let mut first = true;
    for (name, value) in labels.iter().copied().chain(le.map(|le| ("le", le))) {
        if !first {
            out.push(',');
        }
        first = false;
        let _ = write!(out, "{name}=\"{}\"", escape_value(value));
    }
    out.push('}');
}

/// Integers print without a fraction; the rest as Rust prints floats
/// (which Prometheus reads), infinities as Prometheus spells them.
fn number(value: f64) -> String {
    if value.is_infinite() {
        if value > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else if value.is_nan() {
        "NaN".to_string()
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

fn escape_value(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_samples_and_histograms_in_the_text_format() {
        let mut page = Page::default();
        page.family("x_bytes_total", Kind::Counter, "Bytes.\nSecond line.");
        page.sample(
            "x_bytes_total",
            &[("iface", "eth\"0\\"), ("role", "primary")],
            1234.0,
        );
        page.family("x_seconds", Kind::Histogram, "Seconds.");
        let mut h = Histogram::new(&[0.001, 0.01]);
        for v in [0.0005, 0.005, 0.005, 7.0] {
            h.observe(v);
        }
        page.histogram("x_seconds", &[("m", "a")], &h);
        assert_eq!(
            page.finish(),
            "# HELP x_bytes_total Bytes.\\nSecond line.\n# TYPE x_bytes_total counter\n\
             x_bytes_total{iface=\"eth\\\"0\\\\\",role=\"primary\"} 1234\n\
             # HELP x_seconds Seconds.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{m=\"a\",le=\"0.001\"} 1\nx_seconds_bucket{m=\"a\",le=\"0.01\"} 3\n\
             x_seconds_bucket{m=\"a\",le=\"+Inf\"} 4\nx_seconds_sum{m=\"a\"} 7.0105\nx_seconds_count{m=\"a\"} 4\n"
        );
    }
}
