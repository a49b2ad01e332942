//! HdrHistogram interval logs (the standard `.hlog` format), so users can
//! feed the figures to the tools they already have (HistogramLogAnalyzer,
//! hdr-plot, ...). One tagged line per second of throughput per migration,
//! and one RTT histogram over the whole run; `StartTime` and `BaseTime` are
//! the observation's wall-clock start.

use std::{
    io,
    time::{Duration, SystemTime},
};

use hdrhistogram::{
    serialization::{interval_log, V2DeflateSerializer},
    Histogram,
};

use super::Report;

/// Tags may not contain spaces or commas.
fn tag_text(migration: &str, what: &str) -> String {
    format!("{migration}.{what}").replace([' ', ',', '/'], "_")
}

pub fn write_hdr_log(report: &Report, out: &mut impl io::Write) -> io::Result<()> {
    let mut serializer = V2DeflateSerializer::new();
    // Interval timestamps are seconds since the observation started: that
    // is the log's StartTime and BaseTime, so tools show real dates.
    let started = report.started_at.unwrap_or_else(SystemTime::now);
    let mut log = interval_log::IntervalLogWriterBuilder::new()
        .add_comment(
            "migverify: throughput in bits/s per 100 ms interval, RTT in microseconds; \
             timestamps in seconds since the observation started",
        )
        .with_start_time(started)
        .with_base_time(started)
        .begin_log_with(out, &mut serializer)?;
    let failed = |e: interval_log::IntervalLogWriterError<_>| io::Error::other(format!("{e:?}"));
    for migration in &report.migrations {
        let f = &migration.figures;
        let tag = tag_text(&f.id, "throughput_bps");
        let mut second: Option<u64> = None;
        let mut histogram =
            Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 3).expect("valid bounds");
        let mut flush = |histogram: &mut Histogram<u64>, second: u64| -> io::Result<()> {
            if !histogram.is_empty() {
                log.write_histogram(
                    histogram,
                    Duration::from_secs(second),
                    Duration::from_secs(1),
                    interval_log::Tag::new(&tag),
                )
                .map_err(failed)?;
                histogram.reset();
            }
            Ok(())
        };
        for interval in &f.progress {
            let this = interval.at_ms / 1000;
            if second.is_some_and(|s| s != this) {
                flush(&mut histogram, second.expect("checked"))?;
            }
            second = Some(this);
            histogram.saturating_record(interval.bits_per_second().max(1));
        }
        if let Some(s) = second {
            flush(&mut histogram, s)?;
        }
        if let Some(rtt) = f.rtt_histogram.as_ref().filter(|h| !h.is_empty()) {
            let rtt_tag = tag_text(&f.id, "rtt_us");
            log.write_histogram(
                rtt,
                Duration::ZERO,
                Duration::from_secs_f64(f.duration_s.max(0.001)),
                interval_log::Tag::new(&rtt_tag),
            )
            .map_err(failed)?;
        }
    }
    Ok(())
}
