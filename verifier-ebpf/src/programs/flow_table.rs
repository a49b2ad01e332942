//! Where a kept flow's counters live: one array of entries (`FLOW_ENTRIES`)
//! found through the hook's last flow on this CPU or each CPU's two-way
//! flow cache, and through the per-family index tables only on a cache
//! miss; new entries come from the free queue or a fetch-and-add on the
//! next unused index.

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns};
use verifier_ebpf::{
    flow_cache_set, stat, EventKind, FlowKey, FlowKeyV4, FlowStats, HookState, SlotRole, FAMILY_V4,
    MAX_FLOWS,
};

use super::{
    events::{emit, EventTag},
    key::{same_key, words},
    maps::{
        bump, FLOW_CACHE, FLOW_ENTRIES, FLOW_INDEX_V4, FLOW_INDEX_V6, FREE_FLOWS, NEXT_FLOW,
        SLOT_CONFIG,
    },
    mem::{fetch_add, zero_in_place},
    parse::Segment,
};

/// The entry of a kept flow: where this CPU's flow cache points if the key
/// there matches, else through the index table of its family (and the
/// cache remembers it).
#[inline(always)]
pub(super) fn kept_flow(key: &FlowKey) -> Option<*mut FlowStats> {
    if let Some((_, stats)) = cached_flow(key) {
        return Some(stats);
    }
    let set = flow_cache_set(key);
    // SAFETY: the value is copied out at once.
    let index = unsafe {
        if key.family == FAMILY_V4 {
            FLOW_INDEX_V4.get(FlowKeyV4::from_key(key)).copied()
        } else {
            FLOW_INDEX_V6.get(key).copied()
        }
    }?;
    // The index and the entry can disagree for an instant while user space
    // frees the flow: then it is gone.
    let stats = flow_at(index, key)?;
    bump(stat::FLOW_CACHE_MISSES);
    remember(set, index);
    Some(stats)
}

/// The entry of a kept flow for a hook's own program: the flow this hook
/// met last on this CPU (most segments come in runs of one flow), else the
/// one this CPU's flow cache points to, which the hook then remembers. No
/// hash lookup: the hooks' own programs look no further.
#[inline(always)]
pub(super) fn hook_flow(hook: &mut HookState, key: &FlowKey) -> Option<*mut FlowStats> {
    let ports = key.ports();
    if hook.last_ports == ports {
        if let Some(stats) = flow_at(hook.last_flow, key) {
            return Some(stats);
        }
    }
    let (index, stats) = cached_flow(key)?;
    hook.last_flow = index;
    hook.last_ports = ports;
    Some(stats)
}

/// The index and entry of a kept flow if this CPU's flow cache points to
/// it.
#[inline(always)]
fn cached_flow(key: &FlowKey) -> Option<(u32, *mut FlowStats)> {
    let [first, second] = cache_set(flow_cache_set(key))?;
    // SAFETY: this CPU's own cache slots; TC runs with preemption off.
    let (first, second) = unsafe { (*first, *second) };
    if let Some(stats) = flow_at(first, key) {
        return Some((first, stats));
    }
    flow_at(second, key).map(|stats| (second, stats))
}

/// The two slots of this CPU's flow cache set `set`.
#[inline(always)]
fn cache_set(set: u32) -> Option<[*mut u32; 2]> {
    let cache = FLOW_CACHE.get_ptr_mut(0)?;
    let set = set as usize;
    // SAFETY: this CPU's own cache; `set` is below FLOW_CACHE_ENTRIES - 1
    // (see flow_cache_set), and checked against it for the verifier.
    unsafe {
        let slots = (*cache).get_mut(set..set + 2)?;
        Some([&raw mut slots[0], &raw mut slots[1]])
    }
}

/// The entry at `index`, if it holds `key`.
#[inline(always)]
fn flow_at(index: u32, key: &FlowKey) -> Option<*mut FlowStats> {
    let entry = FLOW_ENTRIES.get_ptr_mut(index)?;
    // SAFETY: a live array value. A freed or reused entry holds another key
    // (or none), so a stale index only misses.
    unsafe { same_key(&(*entry).key, key).then_some(&raw mut (*entry).stats) }
}

/// Puts `index` in the first slot of cache set `set`, moving the flow
/// there to the second, which forgets its own.
#[inline(always)]
fn remember(set: u32, index: u32) {
    if let Some([first, second]) = cache_set(set) {
        // SAFETY: this CPU's own cache slots.
        unsafe {
            *second = *first;
            *first = index;
        }
    }
}

/// An unused `FLOW_ENTRIES` index: one user space freed, else one never
/// handed out.
#[inline(always)]
fn allocate_flow() -> Option<u32> {
    if let Ok(Some(index)) = FREE_FLOWS.pop() {
        return Some(index);
    }
    let next = NEXT_FLOW.get_ptr_mut(0)?;
    // SAFETY: a live array value.
    let index = unsafe { fetch_add(next, 1) };
    (index < u64::from(MAX_FLOWS)).then_some(index as u32)
}

/// The entry of a flow just classified: a new one, announced on the ring
/// buffer, unless the flow is kept already. Kept out of line: its stack
/// frame (an event) must not add to the hot path's.
#[inline(never)]
pub(super) fn insert_flow(segment: &Segment) -> Option<*mut FlowStats> {
    let key = &segment.key;
    // Flows the prefilters do not see (a CIDR in the trie) come here with
    // every segment.
    if let Some(stats) = kept_flow(key) {
        return Some(stats);
    }
    let Some(entry) = allocate_flow().and_then(|i| Some((i, FLOW_ENTRIES.get_ptr_mut(i)?))) else {
        bump(stat::FLOW_TABLE_FULL);
        return None;
    };
    let (index, entry) = entry;
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: an entry no other flow owns; all-zero is a valid FlowStats.
    // The key goes in last, in volatile stores the compiler keeps after the
    // others, so a CPU whose cache still points here matches only a
    // finished entry (on x86; weakly ordered CPUs may see the stores in
    // another order, which needs that CPU to meet the same flow at the same
    // index within this run).
    unsafe {
        let stats = &raw mut (*entry).stats;
        zero_in_place(stats);
        core::ptr::write_volatile(&raw mut (*stats).first_seen_ns, now);
        core::ptr::write_volatile(&raw mut (*stats).channel, segment.channel);
        core::ptr::write_volatile(&raw mut (*stats).reason, segment.reason);
        core::ptr::write_volatile(&raw mut (*stats).vlan, segment.vlan);
        let entry_key = &raw mut (*entry).key as *mut u64;
        for (i, word) in words(key).iter().enumerate() {
            core::ptr::write_volatile(entry_key.add(i), *word);
        }
    }
    let inserted = if key.family == FAMILY_V4 {
        FLOW_INDEX_V4.insert(FlowKeyV4::from_key(key), index, u64::from(BPF_NOEXIST))
    } else {
        FLOW_INDEX_V6.insert(key, index, u64::from(BPF_NOEXIST))
    };
    if inserted.is_ok() {
        bump(stat::CLASSIFIED);
        emit(segment, &EventTag::new(EventKind::NewFlow as u8, now));
        let role = SLOT_CONFIG
            .get(u32::from(key.slot))
            .map_or(SlotRole::Other as u8, |c| c.role);
        if role == SlotRole::Primary as u8 || role == SlotRole::Other as u8 {
            emit(segment, &EventTag::new(EventKind::WrongRole as u8, now));
        }
        remember(flow_cache_set(key), index);
        // SAFETY: the entry just made.
        return Some(unsafe { &raw mut (*entry).stats });
    }
    // Another CPU kept the flow first (or the index table is full): the
    // entry goes back, and the other CPU's is looked up. The queue holds
    // every index and takes pushes under a plain spin lock, so it has room
    // and does not fail.
    // SAFETY: the entry is still this run's alone; an all-zero key is free.
    unsafe { zero_in_place(&raw mut (*entry).key) };
    let _ = FREE_FLOWS.push(index, 0);
    let stats = kept_flow(key);
    if stats.is_none() {
        bump(stat::FLOW_TABLE_FULL);
    }
    stats
}
