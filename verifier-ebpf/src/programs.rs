//! The observers: count every packet per hook, and classify and account
//! live-migration TCP flows per flow x hook.
//!
//! The per-packet path is built to be cheap for the traffic that is not
//! migration: direct packet access only, array maps (inlined by the
//! verifier) as prefilters in front of every hash lookup, and the coarse
//! clock only for flows that are kept.
//!
//! Each hook runs a small program of its own (`ingress_NN`/`egress_NN`, the
//! slot compiled in) that counts the packet and tail-calls the one shared
//! classifier for anything that may be IP. The kernel verifies the
//! classifier once however many hooks there are: verifying it per hook cost
//! over 100 ms each.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, BPF_RB_NO_WAKEUP, TC_ACT_UNSPEC},
    helpers::{bpf_ktime_get_coarse_ns, bpf_ktime_get_ns},
    macros::{classifier, map},
    maps::{
        lpm_trie::Key, Array, HashMap, LpmTrie, LruHashMap, PerCpuArray, ProgramArray, Queue,
        RingBuf,
    },
    programs::TcContext,
};
use verifier_ebpf::{
    flow_cache_set, hook_index, stat, Addr, Channel, CidrData, CidrTable, Direction, EndpointInfo,
    EndpointKey, FlowEntry, FlowEvent, FlowKey, FlowKeyV4, FlowStats, HookCounters, NeighborKey,
    NeighborStats, Reason, SlotConfig, SlotRole, CLASSIFIER_INDEX, EVENT_NEW_FLOW, EVENT_RST,
    EVENT_RTT, EVENT_WRONG_ROLE, FAMILY_V4, FAMILY_V6, FAST_CIDRS, FLOW_CACHE_ENTRIES,
    HOOK_ENTRIES, MAX_FLOWS, MAX_SLOTS, NEIGHBOR_ENTRIES, PORT_FILTER_WORDS, RTT_SAMPLE_SPACING_NS,
    SEEN_FIN, SEEN_RST, SEEN_SYN, SEEN_SYN_ACK,
};

/// Per-CPU so concurrent CPUs never contend; user space sums the CPUs.
#[map]
static HOOK_COUNTERS: PerCpuArray<HookCounters> = PerCpuArray::with_max_entries(HOOK_ENTRIES, 0);

#[map]
static SLOT_CONFIG: Array<SlotConfig> = Array::with_max_entries(MAX_SLOTS, 0);

/// One bit per TCP port that some endpoint uses.
#[map]
static PORT_FILTER: Array<u64> = Array::with_max_entries(PORT_FILTER_WORDS, 0);

#[map]
static ENDPOINTS: HashMap<EndpointKey, EndpointInfo> = HashMap::with_max_entries(4096, 0);

/// Migration network CIDRs and known virt-handler migration addresses.
#[map]
static MIGRATION_CIDRS: LpmTrie<CidrData, u8> = LpmTrie::with_max_entries(1024, BPF_F_NO_PREALLOC);

#[map]
static CIDR_TABLE: Array<CidrTable> = Array::with_max_entries(1, 0);

/// The kept flows, found by index (see [`FlowEntry`]).
#[map]
static FLOW_ENTRIES: Array<FlowEntry> = Array::with_max_entries(MAX_FLOWS, 0);

/// Flow keys to their index in `FLOW_ENTRIES`, one table per family:
/// IPv4 keys are short and hash fast.
#[map]
static FLOW_INDEX_V4: HashMap<FlowKeyV4, u32> = HashMap::with_max_entries(MAX_FLOWS, 0);

#[map]
static FLOW_INDEX_V6: HashMap<FlowKey, u32> = HashMap::with_max_entries(MAX_FLOWS, 0);

/// The first entry never handed out; new flows take it by fetch-add, so
/// user space reads no further than this.
#[map]
static NEXT_FLOW: Array<u64> = Array::with_max_entries(1, 0);

/// Entries user space freed (a judged migration's flows), handed out again
/// before new ones.
#[map]
static FREE_FLOWS: Queue<u32> = Queue::with_max_entries(MAX_FLOWS, 0);

/// Per CPU, two slots at [`flow_cache_set`]: the `FLOW_ENTRIES` indexes of
/// the last two flows seen there. Most segments find their flow through
/// them, without a hash lookup.
#[map]
static FLOW_CACHE: PerCpuArray<u32> = PerCpuArray::with_max_entries(FLOW_CACHE_ENTRIES, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// ARP requests and replies per address and hook: how an unreachable peer
/// (or a VLAN that does not reach it) shows when no SYN can leave.
#[map]
static NEIGHBORS: LruHashMap<NeighborKey, NeighborStats> =
    LruHashMap::with_max_entries(NEIGHBOR_ENTRIES, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// The shared classifier, at index [`CLASSIFIER_INDEX`]; user space puts it
/// there before it attaches any hook.
#[map]
static CLASSIFIER: ProgramArray = ProgramArray::with_max_entries(1, 0);

/// The hook (slot and direction) whose program tail-called the classifier
/// on this CPU. Written right before the tail call and read right after it:
/// a TC hook runs to completion on its CPU with bottom halves off, so no
/// other packet can come in between.
#[map]
static CURRENT_HOOK: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const ETH_P_ARP: u16 = 0x0806;
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;
/// TCP option kind of the maximum segment size, and its length.
const TCP_OPT_MSS: [u8; 2] = [2, 4];
const IPPROTO_TCP: u8 = 6;
/// NOP, NOP, kind 8 (timestamps), length 10.
const TS_OPTION_PREFIX: [u8; 4] = [1, 1, 8, 10];
/// What a full hash map answers to an insert.
const E2BIG: i32 = -7;
const TCP_FIN: u8 = 0x01;
const TCP_SYN: u8 = 0x02;
const TCP_RST: u8 = 0x04;
const TCP_ACK: u8 = 0x10;
/// QEMU's migration stream: "QEVM", version 3.
const QEMU_VM_MAGIC: u64 = 0x5145_564d_0000_0003;
/// A multifd channel's first packet: magic 0x11223344, version 1.
const MULTIFD_MAGIC: u64 = 0x1122_3344_0000_0001;

#[inline(always)]
fn bump(index: u32) {
    if let Some(counter) = STATS.get_ptr_mut(index) {
        // SAFETY: this CPU's own entry.
        unsafe { *counter += 1 };
    }
}

/// A `T` at `offset` in the packet, if the linear data holds all of it.
#[inline(always)]
fn load<T: Copy>(ctx: &TcContext, offset: usize) -> Option<T> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked just above against data_end.
    Some(unsafe { (start as *const T).read_unaligned() })
}

/// The TCP facts of one packet.
#[repr(C, align(8))]
struct Segment {
    key: FlowKey,
    /// TCP timestamps option (TSval, TSecr), in the layout every Linux
    /// sender uses (NOP, NOP, TS right after the fixed header).
    has_timestamps: bool,
    ts_val: u32,
    ts_ecr: u32,
    seq: u32,
    flags: u8,
    window: u16,
    payload_len: u32,
    payload_offset: usize,
    vlan: u16,
    /// Set by `classify`.
    channel: u8,
    reason: u8,
    /// The MSS option of a SYN (0 otherwise).
    mss: u16,
}

/// Zeroes `*value` with word stores, in place. LLVM turns zero-initialising
/// a struct (or moving a zeroed one) into a call to `memset`, which on BPF
/// is a byte-at-a-time loop costing tens of nanoseconds per packet;
/// volatile stores are never merged into one.
///
/// # Safety
/// `value` is valid for writes; all-zero is a valid `T`.
#[inline(always)]
unsafe fn zero_in_place<T>(value: *mut T) {
    const { assert!(core::mem::size_of::<T>().is_multiple_of(8) && core::mem::align_of::<T>() >= 8) };
    let words = value as *mut u64;
    for i in 0..core::mem::size_of::<T>() / 8 {
        // SAFETY: in bounds and aligned, per the assertion and the contract.
        unsafe { core::ptr::write_volatile(words.add(i), 0) };
    }
}

/// A hook's own work: count the packet, count ARP about the migration
/// network, and hand what may be IP to the classifier. Everything else
/// leaves here.
#[inline(always)]
fn enter(ctx: &TcContext, slot: u32, direction: Direction) -> i32 {
    let hook = hook_index(slot, direction);
    if let Some(counters) = HOOK_COUNTERS.get_ptr_mut(hook) {
        // SAFETY: this CPU's own entry; TC runs with preemption off.
        let counters = unsafe { &mut *counters };
        counters.packets += 1;
        counters.bytes += u64::from(ctx.len());
    }
    let Some(eth) = bytes::<14>(ctx, 0) else {
        bump(stat::TRUNCATED);
        return TC_ACT_UNSPEC;
    };
    let ethertype = be16([eth[12], eth[13]]);
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
        return TC_ACT_UNSPEC;
    }
    if let Some(current) = CURRENT_HOOK.get_ptr_mut(0) {
        // SAFETY: this CPU's own entry.
        unsafe { *current = hook_of(slot as u8, direction as u8) };
    }
    // SAFETY: the context is the one this program was called with; on
    // success the call does not return.
    unsafe { CLASSIFIER.tail_call(ctx, CLASSIFIER_INDEX) };
    // Only when the classifier is not in place: counted, never silent.
    bump(stat::UNCLASSIFIED);
    TC_ACT_UNSPEC
}

/// The classifier every hook's program tail-calls.
#[classifier]
pub fn classify_packet(ctx: TcContext) -> i32 {
    let Some(hook) = CURRENT_HOOK.get(0).copied() else {
        return TC_ACT_UNSPEC;
    };
    observe(&ctx, hook)
}

/// Parses a packet the hook `hook` (see [`hook_of`]) passed on, and
/// classifies and accounts it if it belongs to a migration.
#[inline(always)]
fn observe(ctx: &TcContext, hook: u32) -> i32 {
    let mut segment = core::mem::MaybeUninit::<Segment>::uninit();
    // SAFETY: a local, all-zero is a valid Segment; used only after zeroing.
    let segment = unsafe {
        zero_in_place(segment.as_mut_ptr());
        &mut *segment.as_mut_ptr()
    };
    segment.key.slot = (hook >> 8) as u8;
    segment.key.direction = hook as u8 & 1;
    if parse(ctx, segment).is_none() {
        return TC_ACT_UNSPEC;
    }
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
            return TC_ACT_UNSPEC;
        }
    }
    if let Some((channel, reason)) = classify(ctx, segment, candidate) {
        segment.channel = channel;
        segment.reason = reason;
        if let Some(stats) = insert_flow(segment) {
            account(ctx, segment, stats);
        }
    }
    TC_ACT_UNSPEC
}

/// `N` bytes at `offset`, in place: one bounds check, every read through
/// the pointer the verifier checked, nothing copied to the (small) stack.
#[inline(always)]
fn bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Option<&[u8; N]> {
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return None;
    }
    // SAFETY: bounds checked just above; packet memory outlives the program run.
    Some(unsafe { &*(start as *const [u8; N]) })
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Fills `segment` (its key's slot and direction already set) from the
/// packet, in place: out of line, and writing into the caller's frame, so
/// its header work costs no stack on the path that accounts the segment.
#[inline(always)]
fn parse(ctx: &TcContext, segment: &mut Segment) -> Option<()> {
    // SAFETY: reads of the context the kernel handed us.
    let skb = unsafe { &*ctx.skb.skb };
    // An offloaded tag (outermost) lives in the metadata; in-band tags in
    // the frame, up to two (802.1ad outer, 802.1Q inner).
    let mut vlan = if skb.vlan_present != 0 {
        (skb.vlan_tci & 0x0fff) as u16
    } else {
        0
    };
    let eth = bytes::<14>(ctx, 0)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut offset = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tag = bytes::<4>(ctx, offset)?;
        if vlan == 0 {
            vlan = be16([tag[0], tag[1]]) & 0x0fff;
        }
        ethertype = be16([tag[2], tag[3]]);
        offset += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            let inner = bytes::<4>(ctx, offset)?;
            ethertype = be16([inner[2], inner[3]]);
            offset += 4;
        }
    }

    let key = &mut segment.key;
    let l4 = match ethertype {
        ETH_P_IP => {
            let ip = bytes::<20>(ctx, offset)?;
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            if ihl < 20 {
                bump(stat::TRUNCATED);
                return None;
            }
            if ip[9] != IPPROTO_TCP {
                bump(stat::NOT_TCP);
                return None;
            }
            // A fragment other than the first carries no TCP header.
            if be16([ip[6], ip[7]]) & 0x1fff != 0 {
                bump(stat::FRAGMENT);
                return None;
            }
            key.family = FAMILY_V4;
            key.src[..4].copy_from_slice(&ip[12..16]);
            key.dst[..4].copy_from_slice(&ip[16..20]);
            offset + ihl
        }
        ETH_P_IPV6 => {
            let ip = bytes::<40>(ctx, offset)?;
            key.family = FAMILY_V6;
            key.src.copy_from_slice(&ip[8..24]);
            key.dst.copy_from_slice(&ip[24..40]);
            let mut next = ip[6];
            let mut l4 = offset + 40;
            // Hop-by-hop, routing and destination options; fragment.
            for _ in 0..4 {
                if next != 0 && next != 43 && next != 60 && next != 44 {
                    break;
                }
                // Keeps the offset provably small for the verifier.
                if l4 > 512 {
                    bump(stat::TRUNCATED);
                    return None;
                }
                let ext = bytes::<8>(ctx, l4)?;
                if next == 44 {
                    if be16([ext[2], ext[3]]) >> 3 != 0 {
                        bump(stat::FRAGMENT);
                        return None;
                    }
                    l4 += 8;
                } else {
                    l4 += (usize::from(ext[1]) + 1) * 8;
                }
                next = ext[0];
            }
            if next != IPPROTO_TCP {
                bump(stat::NOT_TCP);
                return None;
            }
            l4
        }
        _ => {
            // ARP behind an in-band tag (an offloaded tag left the
            // ethertype as is and was handled in `observe`).
            if ethertype == ETH_P_ARP {
                if let Some((addr, reply)) = arp_of_interest(ctx, offset) {
                    count_neighbor(ctx, addr, reply, vlan, hook_of(key.slot, key.direction));
                }
            }
            bump(stat::NOT_IP);
            return None;
        }
    };
    if l4 > 1024 {
        bump(stat::TRUNCATED);
        return None;
    }
    let Some(tcp) = bytes::<20>(ctx, l4) else {
        bump(stat::TRUNCATED);
        return None;
    };
    key.sport = be16([tcp[0], tcp[1]]);
    key.dport = be16([tcp[2], tcp[3]]);
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    let payload_offset = l4 + data_offset;
    let len = ctx.len() as usize;
    if data_offset < 20 || payload_offset > len {
        bump(stat::TRUNCATED);
        return None;
    }
    if data_offset >= 32 {
        if let Some(o) = bytes::<12>(ctx, l4 + 20) {
            if o[..4] == TS_OPTION_PREFIX {
                segment.has_timestamps = true;
                segment.ts_val = u32::from_be_bytes([o[4], o[5], o[6], o[7]]);
                segment.ts_ecr = u32::from_be_bytes([o[8], o[9], o[10], o[11]]);
            }
        }
    }
    // Linux puts the MSS first in a SYN's options; only SYNs pay for this.
    if tcp[13] & TCP_SYN != 0 && data_offset >= 24 {
        if let Some(o) = bytes::<4>(ctx, l4 + 20) {
            if o[..2] == TCP_OPT_MSS {
                segment.mss = be16([o[2], o[3]]);
            }
        }
    }
    segment.seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    segment.flags = tcp[13];
    segment.window = be16([tcp[14], tcp[15]]);
    segment.payload_len = (len - payload_offset) as u32;
    segment.payload_offset = payload_offset;
    segment.vlan = vlan;
    Some(())
}

#[inline(always)]
fn port_listed(port: u16) -> bool {
    PORT_FILTER
        .get(u32::from(port) / 64)
        .is_some_and(|word| word & (1 << (port % 64)) != 0)
}

#[inline(always)]
fn endpoint(addr: &Addr, port: u16, family: u8) -> Option<EndpointInfo> {
    if !port_listed(port) {
        return None;
    }
    let key = EndpointKey {
        addr: *addr,
        port,
        family,
        _pad: 0,
    };
    // SAFETY: the value is copied out at once.
    unsafe { ENDPOINTS.get(key) }.copied()
}

/// Whether either end is a published endpoint port or inside a fast CIDR:
/// a few inlined array reads, no hash or trie lookup.
#[inline(always)]
fn is_candidate(key: &FlowKey) -> bool {
    port_listed(key.dport) || port_listed(key.sport) || in_fast_cidr(key)
}

#[inline(always)]
fn words(addr: &Addr) -> [u64; 2] {
    // SAFETY: FlowKey is 8-aligned and its addresses sit at offsets 0 and 16.
    unsafe { *(addr.as_ptr() as *const [u64; 2]) }
}

#[inline(always)]
fn in_fast_cidr(key: &FlowKey) -> bool {
    let Some(table) = CIDR_TABLE.get(0) else {
        return false;
    };
    let (src, dst) = (words(&key.src), words(&key.dst));
    for i in 0..FAST_CIDRS {
        if i as u32 >= table.fast {
            break;
        }
        let cidr = &table.entries[i];
        if cidr.family != key.family {
            continue;
        }
        let inside =
            |a: [u64; 2]| a[0] & cidr.mask[0] == cidr.net[0] && a[1] & cidr.mask[1] == cidr.net[1];
        if inside(dst) || inside(src) {
            return true;
        }
    }
    false
}

/// Whether an IPv4 address (its bytes as in the packet, read as one
/// native word) is inside a fast CIDR.
#[inline(always)]
fn v4_in_fast_cidr(addr: u32) -> bool {
    let Some(table) = CIDR_TABLE.get(0) else {
        return false;
    };
    let [a, b, c, d] = addr.to_ne_bytes();
    let word = u64::from_ne_bytes([a, b, c, d, 0, 0, 0, 0]);
    for i in 0..FAST_CIDRS {
        if i as u32 >= table.fast {
            break;
        }
        let cidr = &table.entries[i];
        if cidr.family == FAMILY_V4 && word & cidr.mask[0] == cidr.net[0] {
            return true;
        }
    }
    false
}

/// The prefixes beyond the fast table, in the LPM trie.
#[inline(always)]
fn in_migration_trie(addr: &Addr, family: u8) -> bool {
    let mut data = [0u8; 17];
    data[0] = family;
    data[1..].copy_from_slice(addr);
    MIGRATION_CIDRS.get(Key::new(8 + 128, data)).is_some()
}

/// The channel and reason of a segment of a flow not kept yet; `None` for
/// traffic that is not migration. `candidate`: the prefilters matched.
#[inline(always)]
fn classify(ctx: &TcContext, segment: &Segment, candidate: bool) -> Option<(u8, u8)> {
    let key = &segment.key;
    if candidate {
        // Either direction of a connection to a published endpoint.
        if let Some(info) = endpoint(&key.dst, key.dport, key.family)
            .or_else(|| endpoint(&key.src, key.sport, key.family))
        {
            return Some((info.channel, info.reason));
        }
        if in_fast_cidr(key) {
            return Some((Channel::Unknown as u8, Reason::Cidr as u8));
        }
    }
    if CIDR_TABLE.get(0).is_some_and(|t| t.trie > 0)
        && (in_migration_trie(&key.dst, key.family) || in_migration_trie(&key.src, key.family))
    {
        return Some((Channel::Unknown as u8, Reason::Cidr as u8));
    }
    // Cleartext streams announce themselves in their first eight bytes.
    if segment.payload_len >= 8 {
        let magic = u64::from_be(load::<u64>(ctx, segment.payload_offset)?);
        if magic == QEMU_VM_MAGIC || magic == MULTIFD_MAGIC {
            learn_endpoint(&key.dst, key.dport, key.family);
            return Some((Channel::Memory as u8, Reason::Signature as u8));
        }
    }
    None
}

/// Remembers the target of a stream recognised by its magic, so the rest
/// of the connection (and the other channels to it) match as endpoints.
#[inline(always)]
fn learn_endpoint(addr: &Addr, port: u16, family: u8) {
    let key = EndpointKey {
        addr: *addr,
        port,
        family,
        _pad: 0,
    };
    let info = EndpointInfo {
        channel: Channel::Memory as u8,
        reason: Reason::Signature as u8,
        _pad: [0; 2],
    };
    match ENDPOINTS.insert(key, info, u64::from(BPF_NOEXIST)) {
        Ok(()) => {}
        Err(E2BIG) => {
            bump(stat::ENDPOINTS_FULL);
            return;
        }
        // Already known.
        Err(_) => return,
    }
    // A plain read-modify-write (the target has no atomic OR): user space
    // sets the bit again when it sees the flow's event, should a
    // concurrent update of the same word have lost it.
    if let Some(word) = PORT_FILTER.get_ptr_mut(u32::from(port) / 64) {
        // SAFETY: an aligned u64 inside the array's value area.
        unsafe { *word |= 1 << (port % 64) };
    }
}

#[inline(always)]
fn account(ctx: &TcContext, segment: &Segment, stats: *mut FlowStats) {
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
    // run; the counters are added to atomically.
    unsafe {
        add(&raw mut (*stats).bytes, u64::from(ctx.len()));
        add(&raw mut (*stats).packets, u64::from(segments));
        if segment.window == 0 && flags & TCP_RST == 0 {
            add(&raw mut (*stats).zero_windows, 1);
        }
        if mss > (*stats).largest_segment {
            (*stats).largest_segment = mss;
        }
        if segment.mss != 0 {
            (*stats).mss = segment.mss;
        }
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
        if flags & TCP_RST != 0 {
            seen |= SEEN_RST;
            if (*stats).seen & SEEN_RST == 0 {
                emit(
                    segment,
                    &EventTag::new(EVENT_RST, bpf_ktime_get_coarse_ns()),
                );
            }
        }
        (*stats).seen |= seen;
        (*stats).tcp_flags |= flags;
        track_sequence(stats, segment);
        // Out of line, and only when the timestamps moved (about once a
        // millisecond per direction): most segments repeat the last ones.
        if segment.has_timestamps
            && (segment.ts_ecr != (*stats).last_ts_ecr
                || ((*stats).ts_val_ns == 0 && segment.ts_val != (*stats).ts_val))
        {
            track_rtt(stats, segment);
        }
    }
}

/// The entry of a kept flow: where this CPU's flow cache points if the key
/// there matches, else through the index table of its family (and the
/// cache remembers it).
#[inline(always)]
fn kept_flow(key: &FlowKey) -> Option<*mut FlowStats> {
    let set = flow_cache_set(key);
    if let Some(stats) = cached_flow(FLOW_CACHE.get_ptr_mut(set)?, key) {
        return Some(stats);
    }
    if let Some(stats) = cached_flow(FLOW_CACHE.get_ptr_mut(set + 1)?, key) {
        return Some(stats);
    }
    // SAFETY: the value is copied out at once.
    let index = unsafe {
        if key.family == FAMILY_V4 {
            FLOW_INDEX_V4.get(FlowKeyV4::from_key(key)).copied()
        } else {
            FLOW_INDEX_V6.get(key).copied()
        }
    }?;
    let entry = FLOW_ENTRIES.get_ptr_mut(index)?;
    // SAFETY: a live array value. The index and the entry can disagree for
    // an instant while user space frees the flow: then it is gone.
    if unsafe { !same_key(&(*entry).key, key) } {
        return None;
    }
    bump(stat::FLOW_CACHE_MISSES);
    remember(set, index);
    // SAFETY: as above.
    Some(unsafe { &raw mut (*entry).stats })
}

/// The entry a cache slot points to, if it holds `key`.
#[inline(always)]
fn cached_flow(slot: *mut u32, key: &FlowKey) -> Option<*mut FlowStats> {
    // SAFETY: this CPU's own cache slot; TC runs with preemption off.
    let entry = FLOW_ENTRIES.get_ptr_mut(unsafe { *slot })?;
    // SAFETY: a live array value. A freed or reused entry holds another key
    // (or none), so a stale index only misses.
    unsafe { same_key(&(*entry).key, key).then_some(&raw mut (*entry).stats) }
}

/// Puts `index` in the first slot of cache set `set`, moving the flow
/// there to the second, which forgets its own.
#[inline(always)]
fn remember(set: u32, index: u32) {
    if let (Some(first), Some(second)) =
        (FLOW_CACHE.get_ptr_mut(set), FLOW_CACHE.get_ptr_mut(set + 1))
    {
        // SAFETY: this CPU's own cache slots.
        unsafe {
            *second = *first;
            *first = index;
        }
    }
}

/// A key as the five words it is made of.
#[inline(always)]
fn key_words(key: &FlowKey) -> &[u64; 5] {
    const { assert!(core::mem::size_of::<FlowKey>() == 40 && core::mem::align_of::<FlowKey>() == 8) };
    // SAFETY: a FlowKey is five aligned words, per the assertion.
    unsafe { &*(key as *const FlowKey as *const [u64; 5]) }
}

/// Key equality in five word compares, without branches or `memcmp`.
#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (key_words(a), key_words(b));
    (a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3]) | (a[4] ^ b[4]) == 0
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
fn insert_flow(segment: &Segment) -> Option<*mut FlowStats> {
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
        let words = &raw mut (*entry).key as *mut u64;
        for (i, word) in key_words(key).iter().enumerate() {
            core::ptr::write_volatile(words.add(i), *word);
        }
    }
    let inserted = if key.family == FAMILY_V4 {
        FLOW_INDEX_V4.insert(FlowKeyV4::from_key(key), index, u64::from(BPF_NOEXIST))
    } else {
        FLOW_INDEX_V6.insert(key, index, u64::from(BPF_NOEXIST))
    };
    if inserted.is_ok() {
        bump(stat::CLASSIFIED);
        emit(segment, &EventTag::new(EVENT_NEW_FLOW, now));
        let role = SLOT_CONFIG
            .get(u32::from(key.slot))
            .map_or(SlotRole::Other as u8, |c| c.role);
        if role == SlotRole::Primary as u8 || role == SlotRole::Other as u8 {
            emit(segment, &EventTag::new(EVENT_WRONG_ROLE, now));
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

/// The address an ARP packet at `offset` asks for (request) or answers
/// for (reply, gratuitous announcement), if the migration network's.
/// Inlined and map-free: ARP about other networks costs a few compares.
#[inline(always)]
fn arp_of_interest(ctx: &TcContext, offset: usize) -> Option<(u32, bool)> {
    let arp = bytes::<28>(ctx, offset)?;
    // Ethernet hardware addresses (type 1, length 6), IPv4 protocol
    // addresses (0x0800, length 4), an opcode below 256: byte compares, as
    // the BPF target reads the packet byte by byte anyway.
    if arp[0] != 0
        || arp[1] != 1
        || arp[2] != 8
        || arp[3] != 0
        || arp[4] != 6
        || arp[5] != 4
        || arp[6] != 0
    {
        return None;
    }
    // Words from here on: the compares and the CIDR check work on them.
    let sender = u32::from_ne_bytes([arp[14], arp[15], arp[16], arp[17]]);
    let target = u32::from_ne_bytes([arp[24], arp[25], arp[26], arp[27]]);
    let (addr, reply) = match u16::from(arp[7]) {
        // A probe (sender 0.0.0.0) checks an address is free: no answer is due.
        ARP_REQUEST if sender == 0 => return None,
        // Gratuitous: the sender announces itself, as good as a reply.
        ARP_REQUEST if sender == target => (sender, true),
        ARP_REQUEST => (target, false),
        ARP_REPLY => (sender, true),
        _ => return None,
    };
    v4_in_fast_cidr(addr).then_some((addr, reply))
}

/// Slot and direction in one argument (BPF calls take at most five).
#[inline(always)]
fn hook_of(slot: u8, direction: u8) -> u32 {
    u32::from(slot) << 8 | u32::from(direction)
}

/// Counts an ARP request for, or a reply from, a migration network
/// address at one hook. Out of line: only such ARP frames, which are rare,
/// pay for the clock and the LRU map. `vlan` is an in-band tag (0: read
/// the offloaded one).
#[inline(never)]
fn count_neighbor(ctx: &TcContext, addr: u32, reply: bool, vlan: u16, hook: u32) {
    let vlan = if vlan != 0 {
        vlan
    } else {
        // SAFETY: reads of the context the kernel handed us.
        let skb = unsafe { &*ctx.skb.skb };
        if skb.vlan_present != 0 {
            (skb.vlan_tci & 0x0fff) as u16
        } else {
            0
        }
    };
    let key = NeighborKey {
        addr,
        slot: (hook >> 8) as u8,
        direction: hook as u8,
        _pad: [0; 2],
    };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let stats = match NEIGHBORS.get_ptr_mut(key) {
        Some(stats) => stats,
        None => {
            let fresh = NeighborStats {
                first_request_ns: if reply { 0 } else { now },
                ..NeighborStats::default()
            };
            // Another CPU may have made it first; either way, look again.
            let _ = NEIGHBORS.insert(key, fresh, u64::from(BPF_NOEXIST));
            match NEIGHBORS.get_ptr_mut(key) {
                Some(stats) => stats,
                None => return,
            }
        }
    };
    // SAFETY: `stats` points into a live map value.
    unsafe {
        if reply {
            add(&raw mut (*stats).replies, 1);
            (*stats).last_reply_ns = now;
        } else {
            add(&raw mut (*stats).requests, 1);
            (*stats).last_request_ns = now;
            if (*stats).first_request_ns == 0 {
                (*stats).first_request_ns = now;
            }
        }
        (*stats).vlan = vlan;
    }
}

/// Adds to a counter shared by every CPU (BPF_ATOMIC_ADD). The BPF target
/// offers no `AtomicU64::fetch_add`; the intrinsic is what it lowers to.
///
/// # Safety
/// `counter` points into a live map value.
#[inline(always)]
unsafe fn add(counter: *mut u64, value: u64) {
    // SAFETY: per the function's contract.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(counter, value) };
}

/// Adds to a counter shared by every CPU and returns what it held before
/// (BPF_ATOMIC_ADD with BPF_FETCH, kernel 5.12). LLVM emits the fetching
/// form only for BPF CPU v3, and aya-build fixes the CPU to `generic`; the
/// kernel checks the instruction, not the CPU it was built for.
///
/// # Safety
/// `counter` points into a live map value.
#[inline(always)]
unsafe fn fetch_add(counter: *mut u64, value: u64) -> u64 {
    let mut value = value;
    // SAFETY: per the function's contract; the instruction touches only
    // `*counter` and the register it returns in.
    unsafe {
        core::arch::asm!(
            "{value} = atomic_fetch_add((u64 *)({counter} + 0), {value})",
            value = inout(reg) value,
            counter = in(reg) counter,
            options(nostack),
        )
    };
    value
}

/// Round-trip times from TCP timestamps, as the hook sees them: a TSval
/// leaving in one direction, then its echo (TSecr) coming back the other
/// way. Works wherever the hook sits: on a host, a bridge or a forwarder.
/// The precise clock is read only when a new TSval or a new echo shows up
/// (at most once a millisecond per direction with Linux senders).
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(never)]
unsafe fn track_rtt(stats: *mut FlowStats, segment: &Segment) {
    let (ts_val, ts_ecr) = (segment.ts_val, segment.ts_ecr);
    // SAFETY: per the function's contract.
    unsafe {
        if (*stats).ts_val_ns == 0 && ts_val != (*stats).ts_val {
            (*stats).ts_val = ts_val;
            (*stats).ts_val_ns = bpf_ktime_get_ns();
        }
        if ts_ecr == (*stats).last_ts_ecr {
            return;
        }
        (*stats).last_ts_ecr = ts_ecr;
    }
    // SAFETY: helper without arguments.
    let now_coarse = unsafe { bpf_ktime_get_coarse_ns() };
    // SAFETY: per the function's contract.
    if now_coarse < unsafe { (*stats).last_rtt_ns } + RTT_SAMPLE_SPACING_NS {
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
        if (*sent).ts_val_ns == 0 {
            return;
        }
        // A receiver echoes the TSval of the oldest segment it has not
        // acknowledged yet; with delayed or cumulative ACKs it can skip the
        // one we wait for. An echo past it frees the measurement for the
        // next TSval instead of waiting forever.
        let ahead = ts_ecr.wrapping_sub((*sent).ts_val) as i32;
        if ahead != 0 {
            if ahead > 0 {
                (*sent).ts_val_ns = 0;
            }
            return;
        }
        let now = bpf_ktime_get_ns();
        let rtt = now.saturating_sub((*sent).ts_val_ns);
        (*sent).ts_val_ns = 0;
        (*stats).last_rtt_ns = now_coarse;
        let tag = EventTag {
            kind: EVENT_RTT,
            now,
            value_ns: rtt,
            flags: u64::from(BPF_RB_NO_WAKEUP),
        };
        emit(segment, &tag);
    }
}

/// Payload that moves the sequence forward counts once; payload at or
/// below the highest sequence seen is a retransmission, unless it fills the
/// gap a reordering left (one gap is tracked: the newest).
///
/// The sequence state is kept with plain stores: the target has no
/// compare-and-swap. Two CPUs racing on the same entry (segments of one
/// flow handled on two CPUs at the same instant) can leave a stale gap; the
/// byte counters stay exact regardless, and the next gap replaces it.
///
/// # Safety
/// `stats` points into a live flow table value.
#[inline(always)]
unsafe fn track_sequence(stats: *mut FlowStats, segment: &Segment) {
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
            add(&raw mut (*stats).unique_payload_bytes, u64::from(fresh));
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

/// What an event says beyond the segment it is about.
struct EventTag {
    kind: u8,
    now: u64,
    /// The RTT of an `EVENT_RTT`.
    value_ns: u64,
    /// 0 wakes the reader at once; `BPF_RB_NO_WAKEUP` leaves the event for
    /// its next periodic drain (frequent events must not cost a wakeup each).
    flags: u64,
}

impl EventTag {
    fn new(kind: u8, now: u64) -> Self {
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
fn emit(segment: &Segment, tag: &EventTag) {
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

/// One ingress and one egress program per slot, the slot a constant.
macro_rules! slot_programs {
    ($($slot:literal: $ingress:ident, $egress:ident;)*) => {$(
        #[classifier]
        pub fn $ingress(ctx: TcContext) -> i32 {
            enter(&ctx, $slot, Direction::Ingress)
        }

        #[classifier]
        pub fn $egress(ctx: TcContext) -> i32 {
            enter(&ctx, $slot, Direction::Egress)
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
