//! The observers: count every packet per hook, and classify and account
//! live-migration TCP flows per flow x hook.
//!
//! The per-packet path is built to be cheap for the traffic that is not
//! migration: direct packet access only, array maps (inlined by the
//! verifier) as prefilters in front of every hash lookup, and the coarse
//! clock only for flows that are kept.

use core::intrinsics::{atomic_xadd, AtomicOrdering};

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST, TC_ACT_UNSPEC},
    helpers::bpf_ktime_get_coarse_ns,
    macros::{classifier, map},
    maps::{lpm_trie::Key, Array, HashMap, LpmTrie, PerCpuArray, RingBuf},
    programs::TcContext,
};
use verifier_ebpf::{
    hook_index, stat, Addr, Channel, CidrData, Direction, EndpointInfo, EndpointKey, FlowEvent, FlowKey,
    FlowStats, HookCounters, Reason, SlotConfig, SlotRole, EVENT_NEW_FLOW, EVENT_RST, EVENT_WRONG_ROLE,
    FAMILY_V4, FAMILY_V6, HOOK_ENTRIES, MAX_SLOTS, PORT_FILTER_WORDS, SEEN_FIN, SEEN_RST, SEEN_SYN,
    SEEN_SYN_ACK,
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

/// `[0]`: how many entries MIGRATION_CIDRS holds (0 skips the trie).
#[map]
static CONFIG: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static FLOWS: HashMap<FlowKey, FlowStats> = HashMap::with_max_entries(65536, 0);

#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(256 * 1024, 0);

#[map]
static STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

const ETH_HLEN: usize = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const IPPROTO_TCP: u8 = 6;
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
struct Segment {
    key: FlowKey,
    seq: u32,
    flags: u8,
    window: u16,
    payload_len: u32,
    payload_offset: usize,
    vlan: u16,
}

#[inline(always)]
fn observe(ctx: &TcContext, slot: u32, direction: Direction) -> i32 {
    if let Some(counters) = HOOK_COUNTERS.get_ptr_mut(hook_index(slot, direction)) {
        // SAFETY: this CPU's own entry; TC runs with preemption off.
        let counters = unsafe { &mut *counters };
        counters.packets += 1;
        counters.bytes += u64::from(ctx.len());
    }
    if let Some(segment) = parse(ctx, slot, direction) {
        if let Some((channel, reason)) = classify(ctx, &segment) {
            account(ctx, &segment, channel, reason);
        }
    }
    TC_ACT_UNSPEC
}

/// Reads `N` bytes at `offset` in one bounds check, so the verifier sees
/// every access through the pointer it checked.
#[inline(always)]
fn bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Option<[u8; N]> {
    load::<[u8; N]>(ctx, offset)
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

#[inline(always)]
fn parse(ctx: &TcContext, slot: u32, direction: Direction) -> Option<Segment> {
    // SAFETY: reads of the context the kernel handed us.
    let skb = unsafe { &*ctx.skb.skb };
    // An offloaded tag (outermost) lives in the metadata; in-band tags in
    // the frame, up to two (802.1ad outer, 802.1Q inner).
    let mut vlan = if skb.vlan_present != 0 { (skb.vlan_tci & 0x0fff) as u16 } else { 0 };
    let eth = bytes::<14>(ctx, 0)?;
    let mut ethertype = be16([eth[12], eth[13]]);
    let mut offset = ETH_HLEN;
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        let tags = bytes::<8>(ctx, offset);
        let tag = match tags {
            Some(tags) => tags,
            // Room for one tag only.
            None => {
                let tag = bytes::<4>(ctx, offset)?;
                [tag[0], tag[1], tag[2], tag[3], 0, 0, 0, 0]
            }
        };
        if vlan == 0 {
            vlan = be16([tag[0], tag[1]]) & 0x0fff;
        }
        ethertype = be16([tag[2], tag[3]]);
        offset += 4;
        if (ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD) && tags.is_some() {
            ethertype = be16([tag[6], tag[7]]);
            offset += 4;
        }
    }

    let mut key = FlowKey {
        slot: slot as u8,
        direction: direction as u8,
        ..FlowKey::default()
    };
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
    Some(Segment {
        key,
        seq: u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]),
        flags: tcp[13],
        window: be16([tcp[14], tcp[15]]),
        payload_len: (len - payload_offset) as u32,
        payload_offset,
        vlan,
    })
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
    unsafe { ENDPOINTS.get(&key) }.copied()
}

#[inline(always)]
fn in_migration_cidr(addr: &Addr, family: u8) -> bool {
    let mut data = [0u8; 17];
    data[0] = family;
    data[1..].copy_from_slice(addr);
    MIGRATION_CIDRS.get(Key::new(8 + 128, data)).is_some()
}

/// The channel and reason of a migration segment; `None` for the rest.
#[inline(always)]
fn classify(ctx: &TcContext, segment: &Segment) -> Option<(u8, u8)> {
    let key = &segment.key;
    // Either direction of a connection to a published endpoint.
    if let Some(info) =
        endpoint(&key.dst, key.dport, key.family).or_else(|| endpoint(&key.src, key.sport, key.family))
    {
        return Some((info.channel, info.reason));
    }
    if CONFIG.get(0).is_some_and(|count| *count > 0)
        && (in_migration_cidr(&key.dst, key.family) || in_migration_cidr(&key.src, key.family))
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
    match ENDPOINTS.insert(&key, &info, u64::from(BPF_NOEXIST)) {
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
fn account(ctx: &TcContext, segment: &Segment, channel: u8, reason: u8) {
    // SAFETY: reads of the context the kernel handed us.
    let skb = unsafe { &*ctx.skb.skb };
    // SAFETY: helper without arguments.
    let now = unsafe { bpf_ktime_get_coarse_ns() };
    let key = &segment.key;
    let stats = match FLOWS.get_ptr_mut(key) {
        Some(stats) => stats,
        None => {
            let fresh = FlowStats {
                first_seen_ns: now,
                channel,
                reason,
                vlan: segment.vlan,
                ..FlowStats::default()
            };
            if FLOWS.insert(key, &fresh, u64::from(BPF_NOEXIST)).is_ok() {
                bump(stat::CLASSIFIED);
                emit(key, EVENT_NEW_FLOW, segment, channel, reason, now);
                let role = SLOT_CONFIG.get(u32::from(key.slot)).map_or(SlotRole::Other as u8, |c| c.role);
                if role == SlotRole::Primary as u8 || role == SlotRole::Other as u8 {
                    emit(key, EVENT_WRONG_ROLE, segment, channel, reason, now);
                }
            }
            // Another CPU may have inserted it first; either way, look again.
            match FLOWS.get_ptr_mut(key) {
                Some(stats) => stats,
                None => {
                    bump(stat::FLOW_TABLE_FULL);
                    return;
                }
            }
        }
    };

    let segments = skb.gso_segs.max(1);
    let mss = if skb.gso_size != 0 { skb.gso_size } else { segment.payload_len };
    let flags = segment.flags;
    // SAFETY: `stats` points into the map value, valid for this program
    // run; the counters are added to atomically.
    unsafe {
        add(&raw mut (*stats).bytes, u64::from(ctx.len()));
        add(&raw mut (*stats).packets, u64::from(segments));
        add(&raw mut (*stats).payload_bytes, u64::from(segment.payload_len));
        if segment.window == 0 && flags & TCP_RST == 0 {
            add(&raw mut (*stats).zero_windows, 1);
        }
        (*stats).last_seen_ns = now;
        if mss > (*stats).largest_segment {
            (*stats).largest_segment = mss;
        }
        let mut seen = 0;
        if flags & TCP_SYN != 0 {
            seen |= if flags & TCP_ACK != 0 { SEEN_SYN_ACK } else { SEEN_SYN };
        }
        if flags & TCP_FIN != 0 {
            seen |= SEEN_FIN;
        }
        if flags & TCP_RST != 0 {
            seen |= SEEN_RST;
            if (*stats).seen & SEEN_RST == 0 {
                emit(key, EVENT_RST, segment, channel, reason, now);
            }
        }
        (*stats).seen |= seen;
        (*stats).tcp_flags |= flags;
        track_sequence(stats, segment);
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

/// Payload that moves the sequence forward counts once; payload at or
/// below the highest sequence seen is a retransmission.
///
/// `seq_high` itself is a plain store: the target has no compare-and-swap.
/// Segments of one direction of one connection at one hook are sent under
/// the sending socket's lock and forwarded on the CPU that received them,
/// so two CPUs racing on the same entry would have to see the same flow at
/// the same instant; the byte counters above stay exact regardless.
///
/// # Safety
/// `stats` points into a live FLOWS value.
#[inline(always)]
unsafe fn track_sequence(stats: *mut FlowStats, segment: &Segment) {
    // SYN and FIN take one sequence number each.
    let syn = u32::from(segment.flags & TCP_SYN != 0);
    let start = segment.seq.wrapping_add(syn);
    let end = start.wrapping_add(segment.payload_len);
    // SAFETY: per the function's contract.
    unsafe {
        if (*stats).seq_valid == 0 {
            // The first segment we see: everything in it counts.
            (*stats).seq_high = start;
            (*stats).seq_valid = 1;
        }
        if segment.payload_len == 0 {
            return;
        }
        let advance = end.wrapping_sub((*stats).seq_high) as i32;
        if advance <= 0 {
            add(&raw mut (*stats).retransmits, 1);
            return;
        }
        (*stats).seq_high = end;
        add(
            &raw mut (*stats).unique_payload_bytes,
            u64::from((advance as u32).min(segment.payload_len)),
        );
    }
}

#[inline(always)]
fn emit(key: &FlowKey, kind: u8, segment: &Segment, channel: u8, reason: u8, now: u64) {
    let role = SLOT_CONFIG.get(u32::from(key.slot)).map_or(SlotRole::Other as u8, |c| c.role);
    match EVENTS.reserve::<FlowEvent>(0) {
        Some(mut entry) => {
            entry.write(FlowEvent {
                key: *key,
                ts_ns: now,
                kind,
                role,
                channel,
                reason,
                vlan: segment.vlan,
                tcp_flags: segment.flags,
                _pad: 0,
            });
            entry.submit(0);
        }
        None => bump(stat::EVENTS_LOST),
    }
}

/// One ingress and one egress program per slot, the slot a constant.
macro_rules! slot_programs {
    ($($slot:literal: $ingress:ident, $egress:ident;)*) => {$(
        #[classifier]
        pub fn $ingress(ctx: TcContext) -> i32 {
            observe(&ctx, $slot, Direction::Ingress)
        }

        #[classifier]
        pub fn $egress(ctx: TcContext) -> i32 {
            observe(&ctx, $slot, Direction::Egress)
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
