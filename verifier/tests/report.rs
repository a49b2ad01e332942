//! The report files of a lab run as their readers meet them: the HTML page
//! rendered by a real browser (headless Chromium) with every plot drawn,
//! and the HdrHistogram log read back by the hdrhistogram crate with the
//! observation's real start as StartTime and BaseTime.

mod support;

use std::{
    io::Read as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::Value;
use support::privileged;

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migverify-report-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `lab run` of a rate-limited migration against a tight budget, so the
/// budget's least rate shows in the timeline; its JSON report.
fn lab_run(html: &Path, hlog: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args([
            "lab",
            "run",
            "--scenario",
            "rate-limited",
            "--rate",
            "200",
            "--memory",
            "128",
            "--completion-timeout-per-gib",
            "20",
            "-o",
            "json",
            "--report",
        ])
        .arg(html)
        .arg("--hdr-log")
        .arg(hlog)
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("lab run: {e}: {}", String::from_utf8_lossy(&out.stderr)))
}

/// An RGB(A) PNG as Chromium writes it: 8 bits, not interlaced.
struct Image {
    width: usize,
    height: usize,
    /// RGB, row by row.
    pixels: Vec<[u8; 3]>,
}

impl Image {
    fn decode(png: &[u8]) -> Image {
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
        let (mut at, mut header, mut data) = (8, None, Vec::new());
        while at + 8 <= png.len() {
            let len = u32::from_be_bytes(png[at..at + 4].try_into().unwrap()) as usize;
            let kind = &png[at + 4..at + 8];
            let body = &png[at + 8..at + 8 + len];
            match kind {
                b"IHDR" => header = Some(body.to_vec()),
                b"IDAT" => data.extend_from_slice(body),
                b"IEND" => break,
                _ => {}
            }
            at += 12 + len;
        }
        let header = header.expect("IHDR");
        let width = u32::from_be_bytes(header[0..4].try_into().unwrap()) as usize;
        let height = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        assert_eq!((header[8], header[12]), (8, 0), "8 bits, not interlaced");
        let channels = match header[9] {
            2 => 3,
            6 => 4,
            other => panic!("PNG color type {other}"),
        };
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(&data[..])
            .read_to_end(&mut raw)
            .unwrap();
        let stride = width * channels;
        let mut rows: Vec<Vec<u8>> = Vec::with_capacity(height);
        for y in 0..height {
            let line = &raw[y * (stride + 1)..(y + 1) * (stride + 1)];
            let (filter, line) = (line[0], &line[1..]);
            let mut row = vec![0u8; stride];
            for x in 0..stride {
                let a = if x >= channels { row[x - channels] } else { 0 };
                let b = if y > 0 { rows[y - 1][x] } else { 0 };
                let c = if y > 0 && x >= channels {
                    rows[y - 1][x - channels]
                } else {
                    0
                };
                let predicted = match filter {
                    0 => 0,
                    1 => a,
                    2 => b,
                    3 => ((u16::from(a) + u16::from(b)) / 2) as u8,
                    4 => {
                        let p = i16::from(a) + i16::from(b) - i16::from(c);
                        let (pa, pb, pc) = (
                            (p - i16::from(a)).abs(),
                            (p - i16::from(b)).abs(),
                            (p - i16::from(c)).abs(),
                        );
                        if pa <= pb && pa <= pc {
                            a
                        } else if pb <= pc {
                            b
                        } else {
                            c
                        }
                    }
                    other => panic!("PNG filter {other}"),
                };
                row[x] = line[x].wrapping_add(predicted);
            }
            rows.push(row);
        }
        let pixels = rows
            .iter()
            .flat_map(|row| row.chunks(channels).map(|p| [p[0], p[1], p[2]]))
            .collect();
        Image {
            width,
            height,
            pixels,
        }
    }

    fn at(&self, x: usize, y: usize) -> [u8; 3] {
        self.pixels[y * self.width + x]
    }

    /// The plots' boxes (x0, y0, x1, y1): runs of rows with at least 200
    /// pixels of the plot's background (or its fill), extending from the
    /// leftmost to the rightmost of them, joined across the few rows a grid
    /// line takes. Plots stack vertically, never side by side.
    fn boxes(
        &self,
        is_plot: impl Fn([u8; 3]) -> bool,
        min_h: usize,
    ) -> Vec<(usize, usize, usize, usize)> {
        let mut boxes: Vec<(usize, usize, usize, usize)> = Vec::new();
        for y in 0..self.height {
            let xs: Vec<usize> = (0..self.width)
                .filter(|&x| is_plot(self.at(x, y)))
                .collect();
            if xs.len() < 200 {
                continue;
            }
            let (left, right) = (xs[0], xs[xs.len() - 1]);
            match boxes.last_mut().filter(|b| b.3 + 6 >= y) {
                Some(b) => *b = (b.0.min(left), b.1, b.2.max(right), y),
                None => boxes.push((left, y, right, y)),
            }
        }
        boxes.retain(|b| b.3 - b.1 >= min_h);
        boxes
    }

    /// Pixels in `b` for which `is` holds.
    fn count(&self, b: (usize, usize, usize, usize), is: impl Fn([u8; 3]) -> bool) -> usize {
        (b.1..=b.3)
            .flat_map(|y| (b.0..b.2).map(move |x| (x, y)))
            .filter(|&(x, y)| is(self.at(x, y)))
            .count()
    }
}

/// The plot areas' background (`.plot` in the page's style), and the
/// throughput's fill over it (#1f77b4 at 18%).
fn plot_area(p: [u8; 3]) -> bool {
    let near = |c: [u8; 3]| p.iter().zip(c).all(|(a, b)| a.abs_diff(b) <= 2);
    near([0xf3, 0xf6, 0xfa]) || near([205, 223, 237])
}

fn blue(p: [u8; 3]) -> bool {
    i32::from(p[2]) - i32::from(p[0]) > 80
}

fn orange(p: [u8; 3]) -> bool {
    i32::from(p[0]) - i32::from(p[2]) > 100
}

#[test]
fn the_html_report_renders_its_plots_in_a_browser_and_the_hdr_log_has_real_dates() {
    if !privileged("the_html_report_renders_its_plots_in_a_browser_and_the_hdr_log_has_real_dates")
    {
        return;
    }
    let dir = scratch();
    let (html, hlog, png) = (
        dir.join("report.html"),
        dir.join("report.hlog"),
        dir.join("report.png"),
    );
    let before = SystemTime::now();
    let report = lab_run(&html, &hlog);
    assert_eq!(report["verdict"], "PASS", "{}", report["reasons"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(!page.contains("<script"), "no scripts");
    assert!(!page.contains("\"qemu\""), "nothing raw");
    assert!(page.contains("within budget"), "the summary says it");

    let chromium = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,3600",
        ])
        .arg(format!("--screenshot={}", png.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .expect("chromium runs (cargo xtask setup installs it)");
    assert!(
        chromium.status.success(),
        "{}",
        String::from_utf8_lossy(&chromium.stderr)
    );
    let image = Image::decode(&std::fs::read(&png).unwrap());
    let used = (0..image.height)
        .rev()
        .find(|&y| (0..image.width).any(|x| image.at(x, y) != [255, 255, 255]))
        .unwrap_or(0);
    assert!(used + 50 < image.height, "the page fits the window: {used}");
    let plots = image.boxes(plot_area, 120);
    assert_eq!(plots.len(), 3, "the timeline and two histograms: {plots:?}");
    for (n, plot) in plots.iter().enumerate() {
        let drawn = image.count(*plot, blue);
        eprintln!("plot {n} at {plot:?}: {drawn} pixels of data");
        assert!(drawn > 500, "plot {n} at {plot:?}: {drawn} pixels of data");
    }
    let budget_line = image.count(plots[0], orange);
    eprintln!("the budget's least rate: {budget_line} pixels");
    assert!(
        budget_line > 150,
        "the budget's least rate: {budget_line} pixels"
    );
    // For the docs: the page again, the window as tall as it.
    if let Some(to) = std::env::var_os("MIGVERIFY_SCREENSHOT_TO") {
        let shot = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
            ])
            .arg(format!("--window-size=1000,{}", used + 24))
            .arg(format!("--screenshot={}", Path::new(&to).display()))
            .arg(format!("file://{}", html.display()))
            .output()
            .unwrap();
        assert!(shot.status.success());
    }

    // The log read back: StartTime and BaseTime are when the observation
    // started, the intervals' timestamps count from it.
    let bytes = std::fs::read(&hlog).unwrap();
    let (mut start, mut base, mut throughput, mut rtt) = (None, None, 0u64, 0u64);
    use hdrhistogram::serialization::{interval_log, Deserializer};
    let mut deserializer = Deserializer::new();
    for entry in interval_log::IntervalLogIterator::new(&bytes) {
        match entry.expect("a well-formed log") {
            interval_log::LogEntry::StartTime(at) => start = Some(at),
            interval_log::LogEntry::BaseTime(at) => base = Some(at),
            interval_log::LogEntry::Interval(interval) => {
                use base64::Engine as _;
                let encoded = base64::engine::general_purpose::STANDARD
                    .decode(interval.encoded_histogram())
                    .unwrap();
                let histogram: hdrhistogram::Histogram<u64> =
                    deserializer.deserialize(&mut &encoded[..]).unwrap();
                let tag = interval.tag().unwrap().as_str().to_string();
                assert!(
                    interval.start_timestamp() < Duration::from_secs(600),
                    "{tag}"
                );
                if tag.ends_with("throughput_bps") {
                    throughput += histogram.len();
                } else if tag.ends_with("rtt_us") {
                    rtt += histogram.len();
                }
            }
        }
    }
    let since_epoch = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap();
    let start = start.expect("StartTime");
    assert_eq!(Some(start), base, "BaseTime is StartTime");
    assert!(
        start >= since_epoch(before) && start <= since_epoch(SystemTime::now()),
        "StartTime {start:?} is when the observation started"
    );
    let m = &report["migrations"][0];
    assert_eq!(
        throughput,
        m["progress"].as_array().unwrap().len() as u64,
        "one throughput value per interval"
    );
    assert_eq!(rtt, m["rtt_us"]["samples"].as_u64().unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}
