//! Every map of the object. User space finds each one by its name (the
//! static's name is the symbol), so the names here are an interface: renaming
//! one breaks `verifier/src/dataplane`. Kept together, as NetObserv keeps
//! its map definitions, so the whole shared state shows at a glance.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_F_NO_PREALLOC},
    macros::map,
    maps::{Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, Queue, RingBuf},
};
use verifier_ebpf::{
    stat, CidrData, CidrTable, EndpointInfo, EndpointKey, FlowEntry, FlowKey, FlowKeyV4, HookState,
    NeighborKey, NeighborStats, SlotConfig, FLOW_CACHE_ENTRIES, HOOK_ENTRIES, MAX_FLOWS, MAX_SLOTS,
    NEIGHBOR_ENTRIES, PORT_FILTER_WORDS,
};

/// Per-CPU so concurrent CPUs never contend; user space sums the CPUs'
/// counters. One value holding every hook's state: its address is one load
/// away (one per-CPU pointer, which every packet reads), where one value per
/// hook would cost every packet a pointer of its own.
#[map]
pub(super) static HOOK_STATE: PerCpuArray<[HookState; HOOK_ENTRIES as usize]> =
    PerCpuArray::with_max_entries(1, 0);

#[map]
pub(super) static SLOT_CONFIG: Array<SlotConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// One bit per TCP port that some endpoint uses.
#[map]
pub(super) static PORT_FILTER: Array<u64> = Array::with_max_entries(PORT_FILTER_WORDS, 0);

#[map]
pub(super) static ENDPOINTS: HashMap<EndpointKey, EndpointInfo> =
    HashMap::with_max_entries(4096, 0);

/// Migration network CIDRs and known virt-handler migration addresses.
#[map]
pub(super) static MIGRATION_CIDRS: LpmTrie<CidrData, u8> =
    LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map]
pub(super) static CIDR_TABLE: Array<CidrTable> = Array::with_max_entries(1, 0);

/// The kept flows, found by index (see [`FlowEntry`]). Mappable only so
/// that its values start on a page, and each entry on its own lines.
#[map]
pub(super) static FLOW_ENTRIES: Array<FlowEntry> =
    Array::with_max_entries(MAX_FLOWS, BPF_F_MMAPABLE);

/// Flow keys to their index in `FLOW_ENTRIES`, one table per family:
/// IPv4 keys are short and hash fast.
#[map]
pub(super) static FLOW_INDEX_V4: HashMap<FlowKeyV4, u32> = HashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
pub(super) static FLOW_INDEX_V6: HashMap<FlowKey, u32> = HashMap::with_max_entries(MAX_FLOWS, 0);

/// The first entry never handed out; new flows take it by fetch-add, so
/// user space reads no further than this.
#[map]
pub(super) static NEXT_FLOW: Array<u64> = Array::with_max_entries(1, 0);

/// Entries user space freed (a judged migration's flows), handed out again
/// before new ones.
#[map]
pub(super) static FREE_FLOWS: Queue<u32> = Queue::with_max_entries(MAX_FLOWS, 0);

/// Per CPU, two slots at [`flow_cache_set`](verifier_ebpf::flow_cache_set): the `FLOW_ENTRIES` indexes of
/// the last two flows seen there. Most segments find their flow through
/// them, without a hash lookup.
///
/// One value per CPU holding the whole cache, for the same reason as
/// `HOOK_STATE`. A hook looks here only when its `last_flow` is another
/// flow's.
#[map]
pub(super) static FLOW_CACHE: PerCpuArray<[u32; FLOW_CACHE_ENTRIES as usize]> =
    PerCpuArray::with_max_entries(1, 0);

#[map]
pub(super) static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// ARP requests and replies per address and hook: how an unreachable peer
/// (or a VLAN that does not reach it) shows when no SYN can leave.
#[map]
pub(super) static NEIGHBORS: LruHashMap<NeighborKey, NeighborStats> =
    LruHashMap::with_max_entries(NEIGHBOR_ENTRIES, 0);

#[map]
pub(super) static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// The shared classifier, at index
/// [`CLASSIFIER_INDEX`](verifier_ebpf::CLASSIFIER_INDEX); user space puts it
/// there before it attaches any hook.
#[map]
pub(super) static CLASSIFIER: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The hook (slot and direction) whose program tail-called the classifier
/// on this CPU. Written right before the tail call and read right after it:
/// a TC hook runs to completion on its CPU with bottom halves off, so no
/// other packet can come in between.
#[map]
pub(super) static CURRENT_HOOK: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

/// What a full hash map answers to an insert.
pub(super) const E2BIG: i32 = -7;

/// Counts one packet or datum in `STATS` (an index from [`stat`]).
#[inline(always)]
pub(super) fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's own entry.
        unsafe { *counter += 1 };
    }
}
