//! Round-trip times of one connection: the kernel's timestamp-echo samples
//! per hook and leg, and the RTT of the migration path made from them.
//!
//! A hook times two legs of every connection: a TSval leaving towards the
//! target and the target's echo coming back (hook -> target -> hook), and a
//! TSval leaving towards the source and the source's echo coming back (hook
//! -> source -> hook). At the source's own interface the first leg is the
//! whole path and the second only the source's turnaround (microseconds: an
//! ACK arrives, the next data segment echoes it); at the target's interface
//! it is the other way round; on a forwarder in between each leg holds part
//! of the path. The two legs added are the round trip of the path from any
//! hook: what a network engineer means by the RTT between source and target.

use std::collections::BTreeMap;

/// Which end a leg's echo came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Leg {
    /// hook -> target -> hook: the TSval of source-to-target packets,
    /// echoed by the target.
    Target,
    /// hook -> source -> hook: the TSval of target-to-source packets,
    /// echoed by the source.
    Source,
}

impl Leg {
    fn other(self) -> Leg {
        match self {
            Leg::Target => Leg::Source,
            Leg::Source => Leg::Target,
        }
    }
}

/// One sample: when it was taken (ms since the collection started) and
/// the round trip, microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    pub at_ms: u64,
    pub us: u32,
}

/// The samples of one connection, per hook (slot) and leg, in time order.
#[derive(Clone, Debug, Default)]
pub struct RttSamples {
    legs: BTreeMap<(u8, Leg), Vec<Sample>>,
    len: usize,
    /// Samples not kept (over the cap).
    pub dropped: u64,
}

impl RttSamples {
    /// Samples kept, both legs, every hook.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a sample; over `cap` kept samples it is only counted.
    pub fn record(&mut self, slot: u8, leg: Leg, sample: Sample, cap: usize) {
        if self.len >= cap {
            self.dropped += 1;
            return;
        }
        let samples = self.legs.entry((slot, leg)).or_default();
        // Events of several CPUs can reach the reader slightly out of
        // order, so the place is found from the end, where nearly every
        // sample goes: a binary search of a leg's samples (up to megabytes)
        // missed the cache at every step, half the reader's CPU time.
        let later = samples
            .iter()
            .rev()
            .take_while(|s| s.at_ms > sample.at_ms)
            .count();
        samples.insert(samples.len() - later, sample);
        self.len += 1;
    }

    /// Takes in the samples of `other`: the same connection, first taken
    /// the other way round (client for server), so its legs swap.
    pub fn absorb_turned(&mut self, other: RttSamples, cap: usize) {
        self.dropped += other.dropped;
        for ((slot, leg), samples) in other.legs {
            for sample in samples {
                self.record(slot, leg.other(), sample, cap);
            }
        }
    }

    /// The samples of one hook and leg.
    pub fn leg(&self, slot: u8, leg: Leg) -> &[Sample] {
        self.legs.get(&(slot, leg)).map_or(&[], Vec::as_slice)
    }

    /// The hooks that timed a leg.
    pub fn hooks(&self) -> impl Iterator<Item = u8> + '_ {
        let mut last = None;
        self.legs.keys().filter_map(move |&(slot, _)| {
            if last == Some(slot) {
                return None;
            }
            last = Some(slot);
            Some(slot)
        })
    }

    /// The RTT of the path at one hook, in time order, from every sample
    /// taken there at or after `since_ms`: the sample plus the other leg's
    /// (the latest taken before it, else the first after). A hook that
    /// timed only one leg gives nothing: half a round trip is no RTT.
    pub fn hook_path(&self, slot: u8, since_ms: u64) -> Vec<Sample> {
        let mut path = Vec::new();
        for leg in [Leg::Target, Leg::Source] {
            let (samples, other) = (self.leg(slot, leg), self.leg(slot, leg.other()));
            if other.is_empty() {
                continue;
            }
            let from = samples.partition_point(|s| s.at_ms < since_ms);
            for sample in &samples[from..] {
                let before = other.partition_point(|s| s.at_ms <= sample.at_ms);
                let partner = other[before.saturating_sub(1)];
                path.push(Sample {
                    at_ms: sample.at_ms,
                    us: sample.us.saturating_add(partner.us),
                });
            }
        }
        path.sort_by_key(|s| s.at_ms);
        path
    }

    /// The RTT of the path at every hook, from the samples taken at or
    /// after `since_ms`, in time order.
    pub fn path(&self, since_ms: u64) -> Vec<Sample> {
        let mut path: Vec<Sample> = self
            .hooks()
            .flat_map(|slot| self.hook_path(slot, since_ms))
            .collect();
        path.sort_by_key(|s| s.at_ms);
        path
    }

    /// The path's RTT smoothed per hook as a TCP sender smooths its own
    /// samples (RFC 6298's SRTT, gain 1/8): one value per sample, what
    /// `ss -ti` would have shown as `rtt` at that moment.
    pub fn smoothed(&self) -> Vec<u32> {
        let mut smoothed = Vec::new();
        for slot in self.hooks() {
            let mut srtt: Option<f64> = None;
            for sample in self.hook_path(slot, 0) {
                let us = f64::from(sample.us);
                let next = srtt.map_or(us, |s| s + (us - s) / 8.0);
                srtt = Some(next);
                smoothed.push(next.round() as u32);
            }
        }
        smoothed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64, us: u32) -> Sample {
        Sample { at_ms, us }
    }

    #[test]
    fn the_path_is_both_legs_at_one_hook() {
        let mut rtt = RttSamples::default();
        // At the source: 20 ms to the target and back, 5 us of turnaround.
        rtt.record(0, Leg::Target, at(10, 20_000), 100);
        rtt.record(0, Leg::Source, at(12, 5), 100);
        rtt.record(0, Leg::Target, at(40, 21_000), 100);
        // On a forwarder half way: 10 ms each side.
        rtt.record(1, Leg::Target, at(11, 10_000), 100);
        rtt.record(1, Leg::Source, at(15, 10_100), 100);
        // A hook that timed one leg only says nothing.
        rtt.record(2, Leg::Target, at(11, 300), 100);
        let path: Vec<u32> = rtt.path(0).iter().map(|s| s.us).collect();
        assert_eq!(path, [20_005, 20_100, 20_005, 20_100, 21_005]);
        assert_eq!(rtt.path(20).len(), 1);
        assert_eq!(rtt.len(), 6);
        assert_eq!(rtt.hooks().collect::<Vec<_>>(), [0, 1, 2]);
        // Smoothed per hook: 20005, then 1/8 of the way to each next one.
        assert_eq!(rtt.smoothed(), [20_005, 20_005, 20_130, 20_100, 20_100]);
    }

    #[test]
    fn samples_stay_in_time_order_and_under_the_cap() {
        let mut rtt = RttSamples::default();
        rtt.record(0, Leg::Target, at(30, 3), 3);
        rtt.record(0, Leg::Target, at(10, 1), 3);
        rtt.record(0, Leg::Target, at(20, 2), 3);
        rtt.record(0, Leg::Target, at(40, 4), 3);
        assert_eq!(rtt.leg(0, Leg::Target), [at(10, 1), at(20, 2), at(30, 3)]);
        assert_eq!(rtt.dropped, 1);
    }
}
