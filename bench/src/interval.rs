//! Medians with a 95% confidence interval, by bootstrap over paired rounds:
//! a ratio or a difference is taken within each round (the variants of a
//! round ran back to back, so drift on the machine hits both), and the
//! rounds are resampled with replacement. The generator is seeded, so the
//! same rounds give the same interval when a page is rendered again.

use serde::{Deserialize, Serialize};

/// Resamples per interval.
const RESAMPLES: usize = 4000;

/// A median over rounds and the 95% interval around it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub median: f64,
    pub low: f64,
    pub high: f64,
    pub rounds: usize,
}

impl Interval {
    pub fn width(&self) -> f64 {
        self.high - self.low
    }
}

pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// xorshift64*: small, seeded, good enough to pick indexes.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as usize % n
    }
}

/// The median of `values` (one per round) with its 95% percentile
/// bootstrap interval.
pub fn median_interval(values: &[f64]) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval {
            median: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
            rounds: 0,
        };
    }
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ n as u64);
    let mut medians: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let sample: Vec<f64> = (0..n).map(|_| values[rng.below(n)]).collect();
            median(&sample)
        })
        .collect();
    medians.sort_by(f64::total_cmp);
    Interval {
        median: median(values),
        low: medians[RESAMPLES * 25 / 1000],
        high: medians[RESAMPLES * 975 / 1000 - 1],
        rounds: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn the_interval_holds_the_median_and_narrows_with_rounds() {
        let noisy: Vec<f64> = (0..10).map(|i| 1.0 + (i % 5) as f64 * 0.01).collect();
        let few = median_interval(&noisy);
        assert!(few.low <= few.median && few.median <= few.high);
        let many: Vec<f64> = noisy.iter().cycle().take(200).copied().collect();
        assert!(median_interval(&many).width() <= few.width());
        // Seeded: the same rounds give the same interval.
        assert_eq!(median_interval(&noisy), few);
    }
}
