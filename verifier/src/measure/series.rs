//! Throughput and latency figures from what the collector gathered:
//! per-interval rates and RTT samples, summarised through HdrHistogram.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::flows::Connection;

/// Per-interval throughput of a set of connections, bits per second.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// How many intervals the figures rest on.
    pub intervals: u64,
    pub min: u64,
    pub p1: u64,
    pub p5: u64,
    pub p50: u64,
    pub p95: u64,
    pub max: u64,
    pub mean: u64,
}

/// Round-trip times, microseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Rtt {
    /// How many samples the figures rest on.
    pub samples: u64,
    pub min: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

/// One interval of a migration's progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Interval {
    /// End of the interval, ms since collection started.
    pub at_ms: u64,
    /// Length of the interval, ms.
    pub length_ms: u64,
    /// Payload bytes moved in it.
    pub bytes: u64,
}

impl Interval {
    pub fn bits_per_second(&self) -> u64 {
        (u128::from(self.bytes) * 8 * 1000 / u128::from(self.length_ms.max(1))) as u64
    }
}

/// The payload progress of `connections`, interval by interval, from the
/// first interval that moved payload until the last connection closed, or
/// to the end of the observation while one is open: a migration that stops
/// moving while its connections stay up is stalled, not finished.
pub fn progress(connections: &[&Connection], default_interval_ms: u64) -> Vec<Interval> {
    let mut by_time: BTreeMap<u64, u64> = BTreeMap::new();
    for connection in connections {
        for &(at_ms, bytes) in &connection.history {
            *by_time.entry(at_ms).or_default() += bytes;
        }
    }
    let mut intervals = Vec::with_capacity(by_time.len());
    let mut previous: Option<u64> = None;
    for (at_ms, bytes) in by_time {
        let length_ms = previous
            .map_or(default_interval_ms, |p| at_ms.saturating_sub(p))
            .max(1);
        intervals.push(Interval {
            at_ms,
            length_ms,
            bytes,
        });
        previous = Some(at_ms);
    }
    let Some(first) = intervals.iter().position(|i| i.bytes > 0) else {
        return Vec::new();
    };
    // The migration lasts until its last connection closed; while one is
    // open, until the end of the observation.
    let end_ms = connections
        .iter()
        .map(|c| c.closed_at_ms)
        .try_fold(0u64, |end, closed| closed.map(|c| end.max(c)));
    let last_moved = intervals
        .iter()
        .rposition(|i| i.bytes > 0)
        .expect("one moved");
    let last = match end_ms {
        None => intervals.len() - 1,
        Some(end) => intervals
            .iter()
            .rposition(|i| i.at_ms <= end)
            .unwrap_or(last_moved)
            .max(last_moved),
    };
    intervals[first..=last].to_vec()
}

/// Throughput percentiles over the intervals.
pub fn throughput(intervals: &[Interval]) -> Throughput {
    // Up to 1 Tbit/s at two significant digits (1%): three cost 0.6 MiB each.
    let mut histogram =
        Histogram::<u64>::new_with_bounds(1, 1_000_000_000_000, 2).expect("valid bounds");
    for interval in intervals {
        histogram.saturating_record(interval.bits_per_second().max(1));
    }
    if histogram.is_empty() {
        return Throughput::default();
    }
    let total_bytes: u64 = intervals.iter().map(|i| i.bytes).sum();
    let total_ms: u64 = intervals.iter().map(|i| i.length_ms).sum();
    Throughput {
        intervals: histogram.len(),
        min: histogram.min(),
        p1: histogram.value_at_quantile(0.01),
        p5: histogram.value_at_quantile(0.05),
        p50: histogram.value_at_quantile(0.50),
        p95: histogram.value_at_quantile(0.95),
        max: histogram.max(),
        mean: (u128::from(total_bytes) * 8 * 1000 / u128::from(total_ms.max(1))) as u64,
    }
}

/// Percentiles of the path's RTT over every sample of `connections` (both
/// legs at a hook added: see [`crate::flows::rtt`]).
pub fn rtt(connections: &[&Connection]) -> (Rtt, Histogram<u64>) {
    rtt_of(
        connections
            .iter()
            .flat_map(|c| c.rtt.path(0))
            .map(|s| u64::from(s.us)),
    )
}

/// Percentiles of the path's RTT smoothed as TCP smooths it (per hook,
/// RFC 6298's gain of 1/8), read every `interval_ms` while each of
/// `connections` was open, as the kernel's own is read.
pub fn srtt(connections: &[&Connection], interval_ms: u64) -> Rtt {
    rtt_of(
        connections
            .iter()
            .flat_map(|c| c.rtt.smoothed(interval_ms, c.closed_at_ms))
            .map(u64::from),
    )
    .0
}

/// Percentiles of `samples`, microseconds.
pub fn rtt_of(samples: impl Iterator<Item = u64>) -> (Rtt, Histogram<u64>) {
    // 1 us to 60 s, two significant digits.
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 2).expect("valid bounds");
    for sample in samples {
        histogram.saturating_record(sample);
    }
    if histogram.is_empty() {
        return (Rtt::default(), histogram);
    }
    let summary = Rtt {
        samples: histogram.len(),
        min: histogram.min(),
        p50: histogram.value_at_quantile(0.50),
        p90: histogram.value_at_quantile(0.90),
        p99: histogram.value_at_quantile(0.99),
        max: histogram.max(),
    };
    (summary, histogram)
}

/// The longest run of intervals without payload progress, seconds.
pub fn longest_stall_s(intervals: &[Interval]) -> f64 {
    let (mut longest, mut current) = (0u64, 0u64);
    for interval in intervals {
        if interval.bytes == 0 {
            current += interval.length_ms;
            longest = longest.max(current);
        } else {
            current = 0;
        }
    }
    longest as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn intervals(bytes: &[u64]) -> Vec<Interval> {
        bytes
            .iter()
            .enumerate()
            .map(|(i, &b)| Interval {
                at_ms: (i as u64 + 1) * 100,
                length_ms: 100,
                bytes: b,
            })
            .collect()
    }

    #[test]
    fn rates_and_percentiles() {
        // 1.25 MB per 100 ms is 100 Mbit/s.
        let series = intervals(&[1_250_000, 1_250_000, 2_500_000, 0, 1_250_000]);
        assert_eq!(series[0].bits_per_second(), 100_000_000);
        let t = throughput(&series);
        assert_eq!(t.intervals, 5);
        assert_eq!(t.min, 1);
        assert!((198_000_000..=202_000_000).contains(&t.max), "{t:?}");
        assert!((99_000_000..=101_000_000).contains(&t.p50), "{t:?}");
        // 6.25 MB in 0.5 s.
        assert_eq!(t.mean, 100_000_000);
    }

    #[test]
    fn the_longest_stall_is_the_longest_run_without_progress() {
        let series = intervals(&[5, 0, 0, 5, 0, 0, 0, 5]);
        assert_eq!(longest_stall_s(&series), 0.3);
        assert_eq!(longest_stall_s(&intervals(&[1, 2, 3])), 0.0);
    }

    #[test]
    fn nothing_measured_is_all_zero() {
        assert_eq!(throughput(&[]), Throughput::default());
    }
}
