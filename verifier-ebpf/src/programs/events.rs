//! Flow events on the `EVENTS` ring buffer: new flow, wrong role, RST, RTT
//! sample. A full buffer is counted, never silent.

use verifier_ebpf::{stat, FlowEvent, SlotRole};

use super::{
    maps::{bump, EVENTS, SLOT_CONFIG},
    parse::Segment,
};

/// What an event says beyond the segment it is about.
pub(super) struct EventTag {
    /// An `EventKind` value.
    pub(super) kind: u8,
    pub(super) now: u64,
    /// The RTT of an `EventKind::Rtt`.
    pub(super) value_ns: u64,
    /// 0 wakes the reader at once; `BPF_RB_NO_WAKEUP` leaves the event for
    /// its next periodic drain (frequent events must not cost a wakeup each).
    pub(super) flags: u64,
}

impl EventTag {
    pub(super) fn new(kind: u8, now: u64) -> Self {
        EventTag {
            kind,
            now,
            value_ns: 0,
            flags: 0,
        }
    }
}

/// Out of line (BPF calls take at most five arguments, hence the tag).
#[inline(never)]
pub(super) fn emit(segment: &Segment, tag: &EventTag) {
    let key = &segment.key;
    let role = SLOT_CONFIG
        .get(u32::from(key.slot))
        .map_or(SlotRole::Other as u8, |c| c.role);
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            entry.write(FlowEvent {
                key: *key,
                ts_ns: tag.now,
                value_ns: tag.value_ns,
                kind: tag.kind,
                role,
                channel: segment.channel,
                reason: segment.reason,
                vlan: segment.vlan,
                tcp_flags: segment.flags,
                _pad: 0,
            });
            entry.submit(tag.flags);
        }
        None => bump(stat::EVENTS_LOST),
    }
}
