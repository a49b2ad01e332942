//! Round-trip times of one connection: the kernel's timestamp-echo samples
//! per hook and leg, and the RTT of the migration path made from them.
//!
//! A hook times two legs of every connection: a TSval leaving towards the
//! target and the target's echo coming back (hook -> target -> hook), and a
//! TSval leaving towards the source and the source's echo coming back (hook
//! -> source -> hook). At the source's own interface the first leg is the
//! whole path and the second only the source's turnaround (microseconds at
//! its least: an ACK arrives, the next data segment echoes it); at the
//! target's interface it is the other way round. The leg that carries the
//! path plus the other leg's floor is the round trip from that hook: what a
//! network engineer means by the RTT between source and target, and what
//! the source's kernel times (measured against it: docs/verify.md).

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
    /// Each leg's least sample, microseconds.
    least: BTreeMap<(u8, Leg), u32>,
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
        self.least
            .entry((slot, leg))
            .and_modify(|least| *least = (*least).min(sample.us))
            .or_insert(sample.us);
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

    /// The leg that carries the path at a hook: the one whose least sample
    /// is the larger. The other is the near end's turnaround. `None` for a
    /// hook that timed only one leg: half a round trip is no RTT.
    fn path_leg(&self, slot: u8) -> Option<Leg> {
        let least = |leg| self.least.get(&(slot, leg)).copied();
        match (least(Leg::Target)?, least(Leg::Source)?) {
            (target, source) if target >= source => Some(Leg::Target),
            _ => Some(Leg::Source),
        }
    }

    /// The hooks the path is timed at: those beside the source (where the
    /// leg to the target carries the path) when there are any, as the
    /// source's kernel times its own round trips; else every hook that
    /// timed both legs.
    fn path_hooks(&self) -> Vec<u8> {
        let timed: Vec<(u8, Leg)> = self
            .hooks()
            .filter_map(|slot| Some((slot, self.path_leg(slot)?)))
            .collect();
        let beside_source = timed.iter().any(|&(_, leg)| leg == Leg::Target);
        timed
            .into_iter()
            .filter(|&(_, leg)| !beside_source || leg == Leg::Target)
            .map(|(slot, _)| slot)
            .collect()
    }

    /// The RTT of the path at one hook, in time order, from the samples
    /// taken there at or after `since_ms`: each sample of the leg that
    /// carries the path plus the other leg's least.
    ///
    /// The other leg's least, not its latest sample: that leg is the near
    /// end's own stack (hook to socket and back), which does not move, plus
    /// the near end waiting, which is not the network. At the source it is
    /// the time from an ACK to the source's next segment, which carries the
    /// echo: microseconds while the source has data to send, and up to the
    /// whole pause while QEMU has none (a main channel between its
    /// messages: hundreds of milliseconds). The source's kernel counts none
    /// of it in its RTT.
    pub fn hook_path(&self, slot: u8, since_ms: u64) -> Vec<Sample> {
        let Some(leg) = self.path_leg(slot) else {
            return Vec::new();
        };
        let near_end = self.least[&(slot, leg.other())];
        let samples = self.leg(slot, leg);
        let from = samples.partition_point(|s| s.at_ms < since_ms);
        samples[from..]
            .iter()
            .map(|sample| Sample {
                at_ms: sample.at_ms,
                us: sample.us.saturating_add(near_end),
            })
            .collect()
    }

    /// The RTT of the path, from the samples taken at or after `since_ms`,
    /// in time order (see [`RttSamples::hook_path`]).
    pub fn path(&self, since_ms: u64) -> Vec<Sample> {
        let mut path: Vec<Sample> = self
            .path_hooks()
            .into_iter()
            .flat_map(|slot| self.hook_path(slot, since_ms))
            .collect();
        path.sort_by_key(|s| s.at_ms);
        path
    }

    /// The path's RTT smoothed per hook as a TCP sender smooths its own
    /// samples (RFC 6298's SRTT, gain 1/8), read every `every_ms` from the
    /// first sample until `until_ms` (else the last sample): what `ss -ti`
    /// would have shown as `rtt` at each read.
    ///
    /// Read on a clock, not once per sample, because the kernel's figure
    /// is read so: where the RTT moves, the two weightings differ by more
    /// than the smoothing (a source's own per-ACK RTT samples, p50 22 ms,
    /// against its smoothed RTT read every 100 ms, p50 42 ms, behind a
    /// 300 Mbit/s shaper: a standing queue brings fewer ACKs, and its
    /// smoothed value holds between them).
    pub fn smoothed(&self, every_ms: u64, until_ms: Option<u64>) -> Vec<u32> {
        let every_ms = every_ms.max(1);
        let mut reads = Vec::new();
        for slot in self.path_hooks() {
            let path = self.hook_path(slot, 0);
            let (Some(first), Some(last)) = (path.first(), path.last()) else {
                continue;
            };
            let until_ms = until_ms.unwrap_or(last.at_ms);
            let mut srtt: Option<f64> = None;
            let mut samples = path.iter().peekable();
            let mut at_ms = first.at_ms;
            while at_ms <= until_ms {
                while let Some(sample) = samples.next_if(|s| s.at_ms <= at_ms) {
                    let us = f64::from(sample.us);
                    srtt = Some(srtt.map_or(us, |s| s + (us - s) / 8.0));
                }
                if let Some(srtt) = srtt {
                    reads.push(srtt.round() as u32);
                }
                at_ms += every_ms;
            }
        }
        reads
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_ms: u64, us: u32) -> Sample {
        Sample { at_ms, us }
    }

    #[test]
    fn the_path_is_the_far_leg_plus_the_near_ends_floor() {
        let mut rtt = RttSamples::default();
        // At the source: 20 ms to the target and back; the source's
        // turnaround is 5 us, or 300 ms while QEMU had nothing to send.
        rtt.record(0, Leg::Target, at(10, 20_000), 100);
        rtt.record(0, Leg::Source, at(12, 5), 100);
        rtt.record(0, Leg::Source, at(30, 300_000), 100);
        rtt.record(0, Leg::Target, at(40, 21_000), 100);
        rtt.record(0, Leg::Target, at(1_500, 22_000), 100);
        let path: Vec<u32> = rtt.path(0).iter().map(|s| s.us).collect();
        // The wait is not the path.
        assert_eq!(path, [20_005, 21_005, 22_005]);
        assert_eq!(rtt.path(20).len(), 2);
        // Smoothed, read every 10 ms from the first sample to 60 ms.
        assert_eq!(
            rtt.smoothed(10, Some(60)),
            [20_005, 20_005, 20_005, 20_130, 20_130, 20_130]
        );
    }

    #[test]
    fn the_hooks_beside_the_source_time_the_path() {
        let mut rtt = RttSamples::default();
        // At the target: the source's leg carries the path.
        rtt.record(4, Leg::Source, at(10, 30_000), 100);
        rtt.record(4, Leg::Target, at(11, 40), 100);
        // A hook that timed one leg only says nothing.
        rtt.record(6, Leg::Target, at(11, 300), 100);
        assert_eq!(rtt.path(0), [at(10, 30_040)]);
        // With a hook beside the source, only it counts: the source's
        // kernel times its round trips from there.
        rtt.record(0, Leg::Target, at(12, 29_000), 100);
        rtt.record(0, Leg::Source, at(13, 4), 100);
        assert_eq!(rtt.path(0), [at(12, 29_004)]);
        assert_eq!(rtt.hooks().collect::<Vec<_>>(), [0, 4, 6]);
        assert_eq!(rtt.len(), 5);
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
