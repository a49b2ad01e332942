//! KubeVirt's completion budget, the one place its formula is written.
//!
//! KubeVirt cancels a migration running longer than
//! `completionTimeoutPerGiB x size`, where size is the guest memory (plus
//! migrated disks) rounded *up* to whole units of 10^9 bytes
//! (`ScaledValue(resource.Giga)`, despite the "GiB" in the name). Moving
//! `size` in that time takes at least `size / budget`; that is a floor,
//! because pages the guest dirties meanwhile are sent again.

use serde::Serialize;

const GIGA: u64 = 1_000_000_000;

/// `bytes` in units of 10^9, rounded up, as `ScaledValue(resource.Giga)`.
pub fn size_units(bytes: u64) -> u64 {
    bytes.div_ceil(GIGA)
}

/// The completion budget of one VM size.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Budget {
    pub size_bytes: u64,
    /// `size_bytes` in KubeVirt's units: 10^9 bytes, rounded up.
    pub size_units: u64,
    pub completion_timeout_per_gib: u64,
    pub completion_timeout_s: u64,
    /// The least sustained rate, bits per second, that moves `size_bytes`
    /// within the budget (0 when the budget is 0).
    pub min_rate_bps: u64,
}

impl Budget {
    pub fn new(completion_timeout_per_gib: u64, size_bytes: u64) -> Budget {
        let size_units = size_units(size_bytes);
        let completion_timeout_s = completion_timeout_per_gib.saturating_mul(size_units);
        let min_rate_bps = if completion_timeout_s == 0 {
            0
        } else {
            u64::try_from((u128::from(size_bytes) * 8).div_ceil(u128::from(completion_timeout_s)))
                .unwrap_or(u64::MAX)
        };
        Budget {
            size_bytes,
            size_units,
            completion_timeout_per_gib,
            completion_timeout_s,
            min_rate_bps,
        }
    }

    /// How many seconds `size_bytes` take at `rate_bps` (`None`: at rate 0).
    pub fn seconds_at(&self, rate_bps: u64) -> Option<f64> {
        (rate_bps > 0).then(|| self.size_bytes as f64 * 8.0 / rate_bps as f64)
    }
}

/// The largest size whose migration at `rate_bps` completes within
/// `per_gib x units(size)` seconds; `None` when every size does.
///
/// At `c = per_gib x rate / 8` bytes per unit of budget, a size of `u`
/// units fits up to `u x c` bytes; a unit holds sizes above `(u-1) x 10^9`,
/// so `u` is feasible while `u x (10^9 - c) < 10^9`. When `c >= 10^9` every
/// size fits; otherwise the largest is `u_max x c`.
pub fn largest_fitting(per_gib: u64, rate_bps: u64) -> Option<u64> {
    let giga = u128::from(GIGA);
    let c = u128::from(per_gib) * u128::from(rate_bps) / 8;
    if c >= giga {
        return None;
    }
    if c == 0 {
        return Some(0);
    }
    let units = (giga - 1) / (giga - c);
    Some(u64::try_from(units * c).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_round_up_in_units_of_ten_to_the_ninth() {
        assert_eq!(size_units(0), 0);
        assert_eq!(size_units(1), 1);
        assert_eq!(size_units(1_000_000_000), 1);
        assert_eq!(size_units(1_000_000_001), 2);
        // 16Gi is 17.18e9 bytes: 18 units, not 16.
        assert_eq!(size_units(16 << 30), 18);
        // 256Mi: one unit.
        assert_eq!(size_units(256 << 20), 1);
    }

    #[test]
    fn sixteen_gib_at_the_default_150_s() {
        let b = Budget::new(150, 16 << 30);
        assert_eq!((b.size_units, b.completion_timeout_s), (18, 2700));
        assert_eq!(b.min_rate_bps, ((16u64 << 30) * 8).div_ceil(2700));
    }

    #[test]
    fn one_gigabyte_at_the_seeds_800_s() {
        let b = Budget::new(800, 1_000_000_000);
        assert_eq!((b.size_units, b.completion_timeout_s), (1, 800));
        // 10^9 bytes in 800 s: 1.25 MB/s, 10 Mbit/s.
        assert_eq!(b.min_rate_bps, 10_000_000);
        assert_eq!(b.seconds_at(20_000_000), Some(400.0));
        assert_eq!(b.seconds_at(0), None);
    }

    #[test]
    fn the_largest_vm_that_fits_follows_the_rounding_up() {
        // 150 s/unit at 40 Mbit/s moves 0.75e9 bytes per unit of budget:
        // 3 units (2.25e9 bytes in 450 s) fit; 4 would need 3e9+1 bytes in 600 s.
        assert_eq!(largest_fitting(150, 40_000_000), Some(2_250_000_000));
        // 20 s/unit at 200 Mbit/s (the lab's shaper): 0.5e9 bytes in 20 s.
        assert_eq!(largest_fitting(20, 200_000_000), Some(500_000_000));
        // At 8e9/150 bit/s or more, a unit's worth moves within a unit's budget: any size fits.
        assert_eq!(largest_fitting(150, 53_333_334), None);
        assert_eq!(largest_fitting(150, 100_000_000), None);
        assert_eq!(largest_fitting(150, 0), Some(0));
    }

    #[test]
    fn a_zero_budget_needs_no_rate() {
        assert_eq!(Budget::new(0, 1 << 30).min_rate_bps, 0);
        assert_eq!(Budget::new(150, 0).completion_timeout_s, 0);
    }
}
