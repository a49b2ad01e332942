//! Whether a flow not kept yet is migration traffic, and why (published
//! endpoint, migration CIDR, cleartext QEMU magic), strongest first. The
//! cheap prefilters (`is_candidate`: a port bitmap and the fast CIDR table,
//! inlined array reads) stand in front of every hash or trie lookup.

use aya_ebpf::{bindings::BPF_NOEXIST, maps::lpm_trie::Key, programs::TcContext};
use verifier_ebpf::{
    stat, Addr, Channel, CidrTable, EndpointInfo, EndpointKey, FlowKey, Reason, FAMILY_V4,
    FAST_CIDRS,
};

use super::{
    key::address_words,
    maps::{bump, CIDR_TABLE, E2BIG, ENDPOINTS, MIGRATION_CIDRS, PORT_FILTER},
    packet::Bytes,
    parse::Segment,
};

/// QEMU's migration stream: "QEVM", version 3.
const QEMU_VM_MAGIC: u64 = 0x5145_564d_0000_0003;
/// A multifd channel's first packet: magic 0x11223344, version 1.
const MULTIFD_MAGIC: u64 = 0x1122_3344_0000_0001;

/// Whether some published endpoint uses `port`: one bit of an array the
/// verifier inlines, so most packets never reach the endpoint hash.
#[inline(always)]
fn port_listed(port: u16) -> bool {
    PORT_FILTER
        .get(u32::from(port) / 64)
        .is_some_and(|word| word & (1 << (port % 64)) != 0)
}

/// The published endpoint at `addr`:`port`; the hash lookup only when the
/// port bitmap says there may be one.
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
pub(super) fn is_candidate(key: &FlowKey) -> bool {
    port_listed(key.dport) || port_listed(key.sport) || in_fast_cidrs(key)
}

/// Whether a segment of a flow this CPU's cache does not know may be a
/// migration's: it is a candidate, or prefixes beyond the fast table are in
/// the trie, or its payload starts with QEMU's magic. Only such segments go
/// on to the classifier; the CIDR table is read once for all of it.
#[inline(always)]
pub(super) fn may_be_migration(ctx: &TcContext, segment: &Segment) -> bool {
    let key = &segment.key;
    if port_listed(key.dport) || port_listed(key.sport) {
        return true;
    }
    match CIDR_TABLE.get(0) {
        Some(table) if table.trie > 0 || in_fast_cidr(table, key) => true,
        _ => has_magic(ctx, segment),
    }
}

/// Whether either end is inside one of the fast CIDRs.
#[inline(always)]
fn in_fast_cidrs(key: &FlowKey) -> bool {
    CIDR_TABLE
        .get(0)
        .is_some_and(|table| in_fast_cidr(table, key))
}

/// Whether either end is inside one of the fast CIDRs of `table`: masked
/// word compares, no trie lookup.
#[inline(always)]
fn in_fast_cidr(table: &CidrTable, key: &FlowKey) -> bool {
    let (src, dst) = address_words(key);
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
pub(super) fn v4_in_fast_cidr(addr: u32) -> bool {
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
pub(super) fn classify(ctx: &TcContext, segment: &Segment, candidate: bool) -> Option<(u8, u8)> {
    let key = &segment.key;
    if candidate {
        // Either direction of a connection to a published endpoint.
        if let Some(info) = endpoint(&key.dst, key.dport, key.family)
            .or_else(|| endpoint(&key.src, key.sport, key.family))
        {
            return Some((info.channel, info.reason));
        }
        if in_fast_cidrs(key) {
            return Some((Channel::Unknown as u8, Reason::Cidr as u8));
        }
    }
    if CIDR_TABLE.get(0).is_some_and(|t| t.trie > 0)
        && (in_migration_trie(&key.dst, key.family) || in_migration_trie(&key.src, key.family))
    {
        return Some((Channel::Unknown as u8, Reason::Cidr as u8));
    }
    if has_magic(ctx, segment) {
        learn_endpoint(&key.dst, key.dport, key.family);
        return Some((Channel::Memory as u8, Reason::Signature as u8));
    }
    None
}

/// Whether a cleartext stream announces itself in the segment's first
/// eight payload bytes.
#[inline(always)]
fn has_magic(ctx: &TcContext, segment: &Segment) -> bool {
    segment.payload_len >= 8
        && Bytes::<8>::at(ctx, segment.payload_offset).is_ok_and(|payload| {
            let magic = u64::from_be(payload.ne64::<0>());
            magic == QEMU_VM_MAGIC || magic == MULTIFD_MAGIC
        })
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
