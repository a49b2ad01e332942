//! Pre-copy as the wire shows it: the first pass over the guest's memory,
//! then the pages the guest dirtied meanwhile, sent again, pass after pass.
//!
//! The wire cannot see QEMU's passes, but it sees the payload: once a
//! migration has moved its whole size, everything after is memory sent
//! again. A guest that writes slower than the link lets the passes shrink
//! and the migration converges within about the time the first pass took
//! (a series q + q^2 + ... of the first pass, q being the dirty rate over
//! the link's, stays under 1 while q is under 1/2); a guest that writes as
//! fast as the link keeps the link busy re-sending for good.

use serde::Serialize;

use super::series::Interval;

/// The stream's own framing (QEMU's page headers, TLS records, multifd
/// packet headers): measured at 0.55-0.6% in the lab; a pass is over once
/// the payload is past the size by more than that.
const FRAMING: f64 = 0.02;
/// Re-sending for less than this says nothing yet, however short the
/// first pass was.
const MIN_RESENDING_S: f64 = 3.0;

/// What a migration past its first pass shows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Precopy {
    /// How long the first pass took, from the first payload.
    pub first_pass_s: f64,
    /// Payload sent after the first pass: memory sent again.
    pub resent_bytes: u64,
    /// From the end of the first pass to the last payload (or now).
    pub resending_s: f64,
    /// What was re-sent per second: the guest dirtied at least this much.
    pub resend_rate_bps: u64,
}

impl Precopy {
    /// Pre-copy is not converging: it has been re-sending for longer than
    /// the first pass took and has sent the whole size again. A guest that
    /// dirties under half the link's rate is done by then.
    pub fn not_converging(&self, size_bytes: u64) -> bool {
        self.resending_s >= self.first_pass_s.max(MIN_RESENDING_S)
            && self.resent_bytes >= size_bytes
    }
}

/// The first pass and what came after, from the payload `progress` of a
/// migration of `size_bytes`, up to `until_ms` (now, live; the end of the
/// observation otherwise). `None` until the payload is past the size.
pub fn precopy(progress: &[Interval], size_bytes: u64, until_ms: u64) -> Option<Precopy> {
    let first = progress.iter().find(|i| i.bytes > 0)?;
    let start_ms = first.at_ms.saturating_sub(first.length_ms);
    let pass = size_bytes as f64 * (1.0 + FRAMING);
    let mut moved = 0u64;
    let mut crossed: Option<u64> = None;
    let mut last_ms = start_ms;
    for interval in progress.iter().filter(|i| i.at_ms <= until_ms) {
        moved += interval.bytes;
        if interval.bytes > 0 {
            last_ms = interval.at_ms;
        }
        if crossed.is_none() && moved as f64 >= pass {
            crossed = Some(interval.at_ms);
        }
    }
    let crossed_ms = crossed?;
    let resending_ms = last_ms.saturating_sub(crossed_ms);
    let resent_bytes = (moved as f64 - pass) as u64;
    Some(Precopy {
        first_pass_s: crossed_ms.saturating_sub(start_ms) as f64 / 1000.0,
        resent_bytes,
        resending_s: resending_ms as f64 / 1000.0,
        resend_rate_bps: (u128::from(resent_bytes) * 8 * 1000 / u128::from(resending_ms.max(1)))
            as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `rate` bytes per 100 ms interval for `ticks` intervals from 1 s on.
    fn steady(rate: u64, ticks: u64) -> Vec<Interval> {
        (1..=ticks)
            .map(|t| Interval {
                at_ms: 1000 + t * 100,
                length_ms: 100,
                bytes: rate,
            })
            .collect()
    }

    #[test]
    fn nothing_before_the_first_pass_is_over() {
        // 100 MB in 10 intervals of 10 MB: not past a 100 MB size by 2%.
        assert_eq!(
            precopy(&steady(10_000_000, 10), 100_000_000, u64::MAX),
            None
        );
    }

    #[test]
    fn a_guest_writing_as_fast_as_the_link_keeps_it_resending() {
        // 5 MB per 100 ms (400 Mbit/s) for 10 s over a 100 MB guest: the
        // pass ends past 102 MB, in the 21st interval (105 MB at 3.1 s),
        // 2.1 s after the first payload (at 1.0 s, the start of the first
        // interval); 395 MB more, and the 3 MB beyond 102 MB in that one.
        let p = precopy(&steady(5_000_000, 100), 100_000_000, u64::MAX).unwrap();
        assert_eq!(p.first_pass_s, 2.1);
        assert_eq!(p.resent_bytes, 398_000_000);
        assert_eq!(p.resending_s, 7.9);
        // 398 MB in 7.9 s: 403.0 Mbit/s.
        assert_eq!(p.resend_rate_bps, 403_037_974);
        assert!(p.not_converging(100_000_000));
    }

    #[test]
    fn a_pass_of_resends_that_ends_soon_is_convergence() {
        // The same link, the migration over 1 s after its first pass.
        let p = precopy(&steady(5_000_000, 31), 100_000_000, u64::MAX).unwrap();
        assert_eq!(p.resending_s, 1.0);
        assert!(!p.not_converging(100_000_000));
        // Live, only what came until now counts.
        let early = precopy(&steady(5_000_000, 100), 100_000_000, 4_100).unwrap();
        assert_eq!(early.resending_s, 1.0);
    }
}
