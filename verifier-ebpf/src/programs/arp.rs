//! ARP about the migration network, per address and hook: how an
//! unreachable peer shows on the wire when no SYN can leave (the kernel
//! holds it until the address resolves).

use aya_ebpf::{bindings::BPF_NOEXIST, helpers::bpf_ktime_get_coarse_ns, programs::TcContext};
use verifier_ebpf::{NeighborKey, NeighborStats};

use super::{classify::v4_in_fast_cidr, maps::NEIGHBORS, mem::add, packet::Bytes};

/// ARP opcodes.
const ARP_REQUEST: u16 = 1;
const ARP_REPLY: u16 = 2;

/// The address an ARP packet at `offset` asks for (request) or answers
/// for (reply, gratuitous announcement), if the migration network's.
/// Inlined and map-free: ARP about other networks costs a few compares.
#[inline(always)]
pub(super) fn arp_of_interest(ctx: &TcContext, offset: usize) -> Option<(u32, bool)> {
    let arp = Bytes::<28>::at(ctx, offset).ok()?;
    // Ethernet hardware addresses (type 1, length 6), IPv4 protocol
    // addresses (0x0800, length 4).
    if arp.be32::<0>() != 0x0001_0800 || arp.be16::<4>() != 0x0604 {
        return None;
    }
    // Addresses as they lie in the packet: the compares and the CIDR check
    // work on them.
    let sender = arp.ne32::<14>();
    let target = arp.ne32::<24>();
    let (addr, reply) = match arp.be16::<6>() {
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

/// Counts an ARP request for, or a reply from, a migration network
/// address at one hook. Out of line: only such ARP frames, which are rare,
/// pay for the clock and the LRU map. `vlan` is an in-band tag (0: read
/// the offloaded one).
#[inline(never)]
pub(super) fn count_neighbor(ctx: &TcContext, addr: u32, reply: bool, vlan: u16, hook: u32) {
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
