//! The programs: one per hook (slot x direction) that counts the packet
//! and accounts a segment of a flow it met last or its CPU's flow cache
//! knows, all in place; the shared classifier the hooks tail-call for everything else
//! (new flows, flows the cache forgot, IPv6 extension headers); and the
//! empty program benchmarks use as their floor. User space loads and
//! attaches them by these names.

use aya_ebpf::{bindings::TC_ACT_UNSPEC, macros::classifier, programs::TcContext};
use verifier_ebpf::{hook_index, stat, Direction, CLASSIFIER_INDEX};

use super::{
    arp::{arp_of_interest, count_neighbor},
    classify::{classify, is_candidate, may_be_migration},
    flow_table::{hook_flow, insert_flow, kept_flow},
    maps::{bump, CLASSIFIER, CURRENT_HOOK, HOOK_STATE},
    mem::zero_in_place,
    packet::Bytes,
    parse::{
        parse, Parsed, Segment, Skip, ETH_HLEN, ETH_P_8021AD, ETH_P_8021Q, ETH_P_ARP, ETH_P_IP,
        ETH_P_IPV6,
    },
    tcp::account,
};

/// A hook's program: its own work, then the classifier for whatever it
/// cannot finish. Whatever happens the packet goes on (`TC_ACT_UNSPEC`).
#[inline(always)]
fn hook(ctx: &TcContext, slot: u32, direction: Direction) -> i32 {
    // `Err` only says the packet was looked at no further.
    let _ = try_hook(ctx, slot, direction);
    TC_ACT_UNSPEC
}

/// A hook's own work: count the packet, count ARP about the migration
/// network, and parse what may be TCP. A segment of a flow this hook met
/// last on this CPU, or this CPU's flow cache knows, is accounted here; one the prefilters say may be a
/// migration's goes to the classifier (which does not return here); the
/// rest (unrelated traffic) leaves here.
#[inline(always)]
fn try_hook(ctx: &TcContext, slot: u32, direction: Direction) -> Result<(), Skip> {
    let hooks = HOOK_STATE.get_ptr_mut(0).ok_or(Skip)?;
    // SAFETY: this CPU's own value; TC runs with preemption off. The index
    // is a constant of this program, below HOOK_ENTRIES.
    let state = unsafe { &mut (*hooks)[hook_index(slot, direction) as usize] };
    state.counters.packets += 1;
    state.counters.bytes += u64::from(ctx.len());
    let Ok(eth) = Bytes::<ETH_HLEN>::at(ctx, 0) else {
        bump(stat::TRUNCATED);
        return Err(Skip);
    };
    let ethertype = eth.be16::<12>();
    if !matches!(
        ethertype,
        ETH_P_IP | ETH_P_IPV6 | ETH_P_8021Q | ETH_P_8021AD
    ) {
        if ethertype == ETH_P_ARP {
            if let Some((addr, reply)) = arp_of_interest(ctx, ETH_HLEN) {
                count_neighbor(ctx, addr, reply, 0, hook_of(slot as u8, direction as u8));
            }
        }
        bump(stat::NOT_IP);
        return Err(Skip);
    }
    let hook = hook_of(slot as u8, direction as u8);
    let mut segment = core::mem::MaybeUninit::<Segment>::uninit();
    // SAFETY: a local, all-zero is a valid Segment; used only after zeroing.
    let segment = unsafe {
        zero_in_place(segment.as_mut_ptr());
        &mut *segment.as_mut_ptr()
    };
    segment.key.slot = slot as u8;
    segment.key.direction = direction as u8;
    if parse::<false>(ctx, ethertype, segment)? == Parsed::NeedsFullParse {
        return to_classifier(ctx, hook);
    }
    // A flow already kept, found where this hook or this CPU's flow cache
    // points: no prefilter needed (its entry says what it is), no hash
    // lookup.
    if let Some(stats) = hook_flow(state, &segment.key) {
        // SAFETY: a live flow table value.
        unsafe {
            segment.channel = (*stats).channel;
            segment.reason = (*stats).reason;
        }
        account(ctx, segment, stats);
        return Ok(());
    }
    if may_be_migration(ctx, segment) {
        return to_classifier(ctx, hook);
    }
    Ok(())
}

/// Tail-calls the shared classifier with `hook` in this CPU's
/// `CURRENT_HOOK`. Returns only when the classifier is not in place.
#[inline(always)]
fn to_classifier(ctx: &TcContext, hook: u32) -> Result<(), Skip> {
    if let Some(current) = CURRENT_HOOK.get_ptr_mut(0) {
        // SAFETY: this CPU's own entry.
        unsafe { *current = hook };
    }
    // SAFETY: the context is the one this program was called with; on
    // success the call does not return.
    unsafe { CLASSIFIER.tail_call(ctx, CLASSIFIER_INDEX) };
    // Only when the classifier is not in place: counted, never silent.
    bump(stat::UNCLASSIFIED);
    Err(Skip)
}

/// The classifier every hook's program tail-calls.
#[classifier]
pub fn classify_packet(ctx: TcContext) -> i32 {
    // `Err` only says the packet was looked at no further; it goes on
    // either way.
    let _ = try_classify_packet(&ctx);
    TC_ACT_UNSPEC
}

/// Parses a packet the hook in `CURRENT_HOOK` (see [`hook_of`]) passed on,
/// and classifies and accounts it if it belongs to a migration.
#[inline(always)]
fn try_classify_packet(ctx: &TcContext) -> Result<(), Skip> {
    let hook = CURRENT_HOOK.get(0).copied().ok_or(Skip)?;
    let mut segment = core::mem::MaybeUninit::<Segment>::uninit();
    // SAFETY: a local, all-zero is a valid Segment; used only after zeroing.
    let segment = unsafe {
        zero_in_place(segment.as_mut_ptr());
        &mut *segment.as_mut_ptr()
    };
    segment.key.slot = (hook >> 8) as u8;
    segment.key.direction = hook as u8 & 1;
    let ethertype = Bytes::<ETH_HLEN>::at(ctx, 0)?.be16::<12>();
    parse::<true>(ctx, ethertype, segment)?;
    // A flow already kept: its entry says what it is. Only segments that
    // pass the cheap prefilters pay for that lookup.
    let candidate = is_candidate(&segment.key);
    if candidate {
        if let Some(stats) = kept_flow(&segment.key) {
            // SAFETY: a live flow table value.
            unsafe {
                segment.channel = (*stats).channel;
                segment.reason = (*stats).reason;
            }
            account(ctx, segment, stats);
            return Ok(());
        }
    }
    if let Some((channel, reason)) = classify(ctx, segment, candidate) {
        segment.channel = channel;
        segment.reason = reason;
        if let Some(stats) = insert_flow(segment) {
            account(ctx, segment, stats);
        }
    }
    Ok(())
}

/// Slot and direction in one argument (BPF calls take at most five).
#[inline(always)]
pub(super) fn hook_of(slot: u8, direction: u8) -> u32 {
    u32::from(slot) << 8 | u32::from(direction)
}

/// One ingress and one egress program per slot, the slot a constant.
macro_rules! slot_programs {
    ($($slot:literal: $ingress:ident, $egress:ident;)*) => {$(
        #[classifier]
        pub fn $ingress(ctx: TcContext) -> i32 {
            hook(&ctx, $slot, Direction::Ingress)
        }

        #[classifier]
        pub fn $egress(ctx: TcContext) -> i32 {
            hook(&ctx, $slot, Direction::Egress)
        }
    )*};
}

slot_programs! {
    0: ingress_00, egress_00;
    1: ingress_01, egress_01;
    2: ingress_02, egress_02;
    3: ingress_03, egress_03;
    4: ingress_04, egress_04;
    5: ingress_05, egress_05;
    6: ingress_06, egress_06;
    7: ingress_07, egress_07;
    8: ingress_08, egress_08;
    9: ingress_09, egress_09;
    10: ingress_10, egress_10;
    11: ingress_11, egress_11;
    12: ingress_12, egress_12;
    13: ingress_13, egress_13;
    14: ingress_14, egress_14;
    15: ingress_15, egress_15;
    16: ingress_16, egress_16;
    17: ingress_17, egress_17;
    18: ingress_18, egress_18;
    19: ingress_19, egress_19;
    20: ingress_20, egress_20;
    21: ingress_21, egress_21;
    22: ingress_22, egress_22;
    23: ingress_23, egress_23;
    24: ingress_24, egress_24;
    25: ingress_25, egress_25;
    26: ingress_26, egress_26;
    27: ingress_27, egress_27;
    28: ingress_28, egress_28;
    29: ingress_29, egress_29;
    30: ingress_30, egress_30;
    31: ingress_31, egress_31;
}

/// The floor for per-packet cost benchmarks: the same hook, no work.
#[classifier]
pub fn empty(_ctx: TcContext) -> i32 {
    TC_ACT_UNSPEC
}
