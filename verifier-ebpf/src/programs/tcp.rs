//! What one TCP segment adds to its flow's entry: byte and segment
//! counters, flags, the sequence state that tells new payload from
//! retransmissions, and RTT samples from timestamp echoes.

use aya_ebpf::{
    bindings::BPF_RB_NO_WAKEUP,
    helpers::{bpf_get_smp_processor_id, bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    programs::TcContext,
};
use verifier_ebpf::{
    CpuShare, EventKind, FlowKey, FlowStats, CPU_SHARES, RTT_SAMPLE_SPACING_TICKS, SEEN_FIN,
    SEEN_RST, SEEN_SYN, SEEN_SYN_ACK, TS_ANCHOR_MAX_AGE_NS, TS_ECHO_MAX_TICKS, TS_TICK_NS,
};

use super::{
    events::{emit, EventTag},
    flow_table::kept_flow,
    mem::{add, compare_exchange},
    parse::{Segment, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN},
};

#[inline(always)]
pub(super) fn account(ctx: &TcContext, segment: &Segment, stats: *mut FlowStats) {
    // SAFETY: reads of the context the kernel handed us.
    let skb = unsafe { &*ctx.skb.skb };
    let segments = skb.gso_segs.max(1);
    let mss = if skb.gso_size != 0 {
        skb.gso_size
    } else {
        segment.payload_len
    };
    let flags = segment.flags;
    // SAFETY: `stats` points into the map value, valid for this program
    // run; its shared counters are added to atomically, this CPU's share
    // only by this CPU.
    unsafe {
        let share = own_share(stats);
        match share {
            Some(share) => {
                (*share).bytes += u64::from(ctx.len());
                (*share).packets += u64::from(segments);
            }
            None => {
                add(&raw mut (*stats).bytes, u64::from(ctx.len()));
                add(&raw mut (*stats).packets, u64::from(segments));
            }
        }
        if segment.window == 0 && flags & TCP_RST == 0 {
            add(&raw mut (*stats).zero_windows, 1);
        }
        if mss > (*stats).largest_segment {
            (*stats).largest_segment = mss;
        }
        // Most segments carry ACK (and PSH) alone: the connection's
        // opening and closing flags take the out-of-line path.
        if flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
            note_state_flags(stats, segment);
        }
        // Stored only when it changes: the entry is shared by every CPU
        // that handles the flow.
        if (*stats).tcp_flags | flags != (*stats).tcp_flags {
            (*stats).tcp_flags |= flags;
        }
        track_sequence(stats, segment, share);
        // Out of line, and only when the timestamps moved (about once a
        // millisecond per direction): most segments repeat the last ones.
        if segment.has_timestamps
            && (segment.ts_ecr != (*stats).last_ts_ecr || segment.ts_val != (*stats).ts_val)
        {
            track_rtt(stats, segment);
        }
    }
}

/// This CPU's share of the entry: the one it claimed before, else one
/// no CPU has claimed yet (claimed now); `None` when other CPUs hold them
/// all, and this one adds to the shared counters.
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(always)]
unsafe fn own_share(stats: *mut FlowStats) -> Option<*mut CpuShare> {
    // SAFETY: helper without arguments (inlined by the verifier on x86-64
    // and arm64 since kernel 6.10).
    let cpu = u64::from(unsafe { bpf_get_smp_processor_id() }) + 1;
    for i in 0..CPU_SHARES {
        // SAFETY: per the function's contract; `i` is below CPU_SHARES.
        unsafe {
            let share = &raw mut (*stats).shares[i];
            let holder = (*share).cpu;
            if holder == cpu || (holder == 0 && compare_exchange(&raw mut (*share).cpu, 0, cpu)) {
                return Some(share);
            }
        }
    }
    None
}

/// What a SYN, FIN or RST says: the `SEEN_*` bits, a SYN's MSS option,
/// and the event of a flow's first RST.
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(never)]
unsafe fn note_state_flags(stats: *mut FlowStats, segment: &Segment) {
    let flags = segment.flags;
    let mut seen = 0;
    if flags & TCP_SYN != 0 {
        seen |= if flags & TCP_ACK != 0 {
            SEEN_SYN_ACK
        } else {
            SEEN_SYN
        };
    }
    if flags & TCP_FIN != 0 {
        seen |= SEEN_FIN;
    }
    // SAFETY: per the function's contract.
    unsafe {
        if segment.mss != 0 {
            (*stats).mss = segment.mss;
        }
        if flags & TCP_RST != 0 {
            seen |= SEEN_RST;
            if (*stats).seen & SEEN_RST == 0 {
                emit(
                    segment,
                    &EventTag::new(EventKind::Rst as u8, bpf_ktime_get_coarse_ns()),
                );
            }
        }
        (*stats).seen |= seen;
    }
}

/// Payload that moves the sequence forward counts once; payload at or
/// below the highest sequence seen is a retransmission, unless it fills the
/// gap a reordering left (one gap is tracked: the newest).
///
/// The sequence state is kept with plain stores: a compare-and-swap on
/// every segment would cost what the CPU shares save. Two CPUs racing on the same entry (segments of one
/// flow handled on two CPUs at the same instant) can leave a stale gap; the
/// byte counters stay exact regardless, and the next gap replaces it.
///
/// `share`: this CPU's share of the entry, if it has one.
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(always)]
unsafe fn track_sequence(stats: *mut FlowStats, segment: &Segment, share: Option<*mut CpuShare>) {
    // SYN and FIN take one sequence number each.
    let syn = u32::from(segment.flags & TCP_SYN != 0);
    let start = segment.seq.wrapping_add(syn);
    let len = segment.payload_len;
    let end = start.wrapping_add(len);
    // SAFETY: per the function's contract.
    unsafe {
        if (*stats).seq_valid == 0 {
            // The first segment we see: everything in it counts.
            (*stats).seq_high = start;
            (*stats).seq_valid = 1;
        }
        if len == 0 {
            return;
        }
        let high = (*stats).seq_high;
        let advance = end.wrapping_sub(high) as i32;
        if advance > 0 {
            if start.wrapping_sub(high) as i32 > 0 {
                // Segments in between are late (or lost): remember the gap.
                (*stats).hole_start = high;
                (*stats).hole_end = start;
            }
            (*stats).seq_high = end;
            let fresh = (advance as u32).min(len);
            match share {
                Some(share) => (*share).unique_payload_bytes += u64::from(fresh),
                None => add(&raw mut (*stats).unique_payload_bytes, u64::from(fresh)),
            }
            if fresh < len {
                // Partly old data: the part below the highest sequence was resent.
                add(
                    &raw mut (*stats).retransmitted_bytes,
                    u64::from(len - fresh),
                );
            }
            return;
        }
        if (*stats).hole_start == (*stats).hole_end {
            add(&raw mut (*stats).retransmits, 1);
            add(&raw mut (*stats).retransmitted_bytes, u64::from(len));
            return;
        }
        fill_gap(stats, start, end, len);
    }
}

/// A segment at or below the highest sequence while a gap is open: the
/// part of it inside the gap is new payload, the rest a retransmission.
/// Out of line: only reordered traffic comes here.
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(never)]
unsafe fn fill_gap(stats: *mut FlowStats, start: u32, end: u32, len: u32) {
    // SAFETY: per the function's contract.
    unsafe {
        let (hole_start, hole_end) = ((*stats).hole_start, (*stats).hole_end);
        // The overlap [low, high) of the segment and the gap.
        let low = if start.wrapping_sub(hole_start) as i32 > 0 {
            start
        } else {
            hole_start
        };
        let high = if (end.wrapping_sub(hole_end) as i32) < 0 {
            end
        } else {
            hole_end
        };
        let filled = high.wrapping_sub(low) as i32;
        if filled <= 0 {
            add(&raw mut (*stats).retransmits, 1);
            add(&raw mut (*stats).retransmitted_bytes, u64::from(len));
            return;
        }
        // What is left of the gap: the part above the segment, or below it
        // when the segment reached the gap's end. (When it fell in the
        // middle, the part below is forgotten: it would count as resent.)
        if high == hole_end {
            (*stats).hole_end = low;
        } else {
            (*stats).hole_start = high;
        }
        let filled = filled as u32;
        add(&raw mut (*stats).unique_payload_bytes, u64::from(filled));
        if filled < len {
            add(
                &raw mut (*stats).retransmitted_bytes,
                u64::from(len - filled),
            );
        }
    }
}

/// Round-trip times from TCP timestamps, as the hook sees them: a segment
/// leaving in one direction, then the echo of its TSval (TSecr) coming back
/// the other way: the time from this hook to the end that echoes and back.
///
/// A receiver echoes the TSval of the oldest segment a new ACK acknowledges
/// (RFC 7323), the segment whose send time the kernel's own RTT estimator
/// uses too. Linux's TSval ticks once a millisecond, so a TSval names a
/// millisecond of segments, not one. Each direction keeps an anchor on its
/// sender's clock: the time the first segment of a tick passed this hook.
/// An echo of tick E was then sent at the anchor plus (E - anchor) ticks or
/// a little later in that millisecond: every new echo gives a sample, an
/// upper bound of the acknowledged segment's round trip by less than a
/// tick. (Matching only echoes of one awaited tick instead leaves samples
/// to chance: a receiver that acknowledges many milliseconds at once,
/// delayed, rarely echoes the one awaited, and the slow round trips go
/// missing.) The anchor is the tick whose first segment came earliest
/// against its tick over the last few milliseconds, so a sender idle at a
/// tick's start does not bias it, and a queue between the sender and this
/// hook (whose delay moves) or clock drift between hosts is followed. The
/// precise clock is read only when a new TSval or a new echo shows up
/// (about once a millisecond per direction).
///
/// Both directions are timed at every hook; user space tells the legs apart
/// and adds them (see verifier/src/flows/rtt.rs).
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(never)]
unsafe fn track_rtt(stats: *mut FlowStats, segment: &Segment) {
    let (ts_val, ts_ecr) = (segment.ts_val, segment.ts_ecr);
    // SAFETY: per the function's contract.
    unsafe {
        if ts_val != (*stats).ts_val {
            (*stats).ts_val = ts_val;
            let now = bpf_ktime_get_ns();
            let anchor_ns = (*stats).anchor_ns;
            let ticks = i64::from(ts_val.wrapping_sub((*stats).anchor_val) as i32);
            // How much later against its tick this first segment came than
            // the anchor's did.
            let later = now as i64 - (anchor_ns as i64 + ticks * TS_TICK_NS);
            if anchor_ns == 0 || later < 0 || now - anchor_ns > TS_ANCHOR_MAX_AGE_NS {
                (*stats).anchor_val = ts_val;
                (*stats).anchor_ns = now;
            }
        }
        if ts_ecr == (*stats).last_ts_ecr {
            return;
        }
        (*stats).last_ts_ecr = ts_ecr;
    }
    // SAFETY: per the function's contract.
    let last = unsafe { (*stats).last_rtt_echo };
    if last != 0 && (ts_ecr.wrapping_sub(last as u32) as i32) < RTT_SAMPLE_SPACING_TICKS {
        return;
    }
    let key = &segment.key;
    let reverse = FlowKey {
        src: key.dst,
        dst: key.src,
        sport: key.dport,
        dport: key.sport,
        family: key.family,
        slot: key.slot,
        direction: key.direction ^ 1,
        _pad: 0,
    };
    let Some(sent) = kept_flow(&reverse) else {
        return;
    };
    // SAFETY: `sent` points into a live flow table value; `stats` per contract.
    unsafe {
        let anchor_ns = (*sent).anchor_ns;
        if anchor_ns == 0 {
            return;
        }
        let ticks = ts_ecr.wrapping_sub((*sent).anchor_val) as i32;
        // An echo of a tick not sent yet here, or too far from the anchor to
        // trust the extrapolation (or an echo of something else).
        let latest = (*sent).ts_val.wrapping_sub((*sent).anchor_val) as i32;
        if ticks > latest || ticks < -TS_ECHO_MAX_TICKS {
            return;
        }
        let now = bpf_ktime_get_ns();
        let rtt = now as i64 - (anchor_ns as i64 + i64::from(ticks) * TS_TICK_NS);
        if rtt <= 0 {
            return;
        }
        (*stats).last_rtt_echo = 1 << 32 | u64::from(ts_ecr);
        let tag = EventTag {
            kind: EventKind::Rtt as u8,
            now,
            value_ns: rtt as u64,
            flags: u64::from(BPF_RB_NO_WAKEUP),
        };
        emit(segment, &tag);
    }
}
