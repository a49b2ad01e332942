//! Header reading: Ethernet, up to two VLAN tags, IPv4 or IPv6 (with its
//! extension headers), TCP and the two TCP options the observers use. Reads
//! go straight to packet memory after one bounds check each; nothing is
//! copied to the 512-byte stack but the `Segment` the caller owns.

use aya_ebpf::programs::TcContext;
use verifier_ebpf::{stat, FlowKey, FAMILY_V4, FAMILY_V6};

use super::{
    arp::{arp_of_interest, count_neighbor},
    hooks::hook_of,
    maps::bump,
};

pub(super) const ETH_HLEN: usize = 14;
pub(super) const ETH_P_IP: u16 = 0x0800;
pub(super) const ETH_P_IPV6: u16 = 0x86dd;
pub(super) const ETH_P_8021Q: u16 = 0x8100;
pub(super) const ETH_P_8021AD: u16 = 0x88a8;
pub(super) const ETH_P_ARP: u16 = 0x0806;

/// TCP option kind of the maximum segment size, and its length.
const TCP_OPT_MSS: [u8; 2] = [2, 4];
const IPPROTO_TCP: u8 = 6;
/// NOP, NOP, kind 8 (timestamps), length 10.
const TS_OPTION_PREFIX: [u8; 4] = [1, 1, 8, 10];

pub(super) const TCP_FIN: u8 = 0x01;
pub(super) const TCP_SYN: u8 = 0x02;
pub(super) const TCP_RST: u8 = 0x04;
pub(super) const TCP_ACK: u8 = 0x10;

/// Why a packet is looked at no further: it is not TCP over IP, or its
/// headers are cut short, or it has no TCP header of its own (a later
/// fragment). The packet itself always goes on: the programs only observe.
/// The cause is counted in `STATS` where it is found, when the count tells
/// the operator something; a zero-sized error, so `Result<T, Skip>` is laid
/// out (and compiled) as `Option<T>`.
#[derive(Clone, Copy, Debug)]
pub(super) struct Skip;

/// A `T` at `offset` in the packet, if the linear data holds all of it.
#[inline(always)]
pub(super) fn load<T: Copy>(ctx: &TcContext, offset: usize) -> Result<T, Skip> {
    let start = ctx.data() + offset;
    if start + core::mem::size_of::<T>() > ctx.data_end() {
        return Err(Skip);
    }
    // SAFETY: bounds checked just above against data_end.
    Ok(unsafe { (start as *const T).read_unaligned() })
}

/// The TCP facts of one packet.
#[repr(C, align(8))]
pub(super) struct Segment {
    pub(super) key: FlowKey,
    /// TCP timestamps option (TSval, TSecr), in the layout every Linux
    /// sender uses (NOP, NOP, TS right after the fixed header).
    pub(super) has_timestamps: bool,
    pub(super) ts_val: u32,
    pub(super) ts_ecr: u32,
    pub(super) seq: u32,
    pub(super) flags: u8,
    pub(super) window: u16,
    pub(super) payload_len: u32,
    pub(super) payload_offset: usize,
    pub(super) vlan: u16,
    /// Set by `classify`.
    pub(super) channel: u8,
    pub(super) reason: u8,
    /// The MSS option of a SYN (0 otherwise).
    pub(super) mss: u16,
}

/// `N` bytes at `offset`, in place: one bounds check, every read through
/// the pointer the verifier checked, nothing copied to the (small) stack.
#[inline(always)]
pub(super) fn bytes<const N: usize>(ctx: &TcContext, offset: usize) -> Result<&[u8; N], Skip> {
    let start = ctx.data() + offset;
    if start + N > ctx.data_end() {
        return Err(Skip);
    }
    // SAFETY: bounds checked just above; packet memory outlives the program run.
    Ok(unsafe { &*(start as *const [u8; N]) })
}

#[inline(always)]
pub(super) fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// What [`parse`] made of a packet it did not skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Parsed {
    /// The segment is filled in.
    Segment,
    /// IPv6 extension headers, which only the full parser walks (the
    /// hooks' own parser leaves them to the shared classifier).
    NeedsFullParse,
}

/// Fills `segment` (its key's slot and direction already set) from the
/// packet, in place: writing into the caller's frame, so the header work
/// needs no copy of its own on the path that accounts the segment. `FULL`:
/// walk IPv6 extension headers (the shared classifier); without it the
/// parser is smaller for the verifier, which checks it once per hook.
#[inline(always)]
pub(super) fn parse<const FULL: bool>(
    ctx: &TcContext,
    segment: &mut Segment,
) -> Result<Parsed, Skip> {
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
                return Err(Skip);
            }
            if ip[9] != IPPROTO_TCP {
                bump(stat::NOT_TCP);
                return Err(Skip);
            }
            // A fragment other than the first carries no TCP header.
            if be16([ip[6], ip[7]]) & 0x1fff != 0 {
                bump(stat::FRAGMENT);
                return Err(Skip);
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
            if !FULL && next != IPPROTO_TCP {
                if matches!(next, 0 | 43 | 60 | 44) {
                    return Ok(Parsed::NeedsFullParse);
                }
                bump(stat::NOT_TCP);
                return Err(Skip);
            }
            // Hop-by-hop, routing and destination options; fragment.
            for _ in 0..4 {
                if next != 0 && next != 43 && next != 60 && next != 44 {
                    break;
                }
                // Keeps the offset provably small for the verifier.
                if l4 > 512 {
                    bump(stat::TRUNCATED);
                    return Err(Skip);
                }
                let ext = bytes::<8>(ctx, l4)?;
                if next == 44 {
                    if be16([ext[2], ext[3]]) >> 3 != 0 {
                        bump(stat::FRAGMENT);
                        return Err(Skip);
                    }
                    l4 += 8;
                } else {
                    l4 += (usize::from(ext[1]) + 1) * 8;
                }
                next = ext[0];
            }
            if next != IPPROTO_TCP {
                bump(stat::NOT_TCP);
                return Err(Skip);
            }
            l4
        }
        _ => {
            // ARP behind an in-band tag (an offloaded tag left the
            // ethertype as is and was handled in the hook's program).
            if ethertype == ETH_P_ARP {
                if let Some((addr, reply)) = arp_of_interest(ctx, offset) {
                    count_neighbor(ctx, addr, reply, vlan, hook_of(key.slot, key.direction));
                }
            }
            bump(stat::NOT_IP);
            return Err(Skip);
        }
    };
    if l4 > 1024 {
        bump(stat::TRUNCATED);
        return Err(Skip);
    }
    let Ok(tcp) = bytes::<20>(ctx, l4) else {
        bump(stat::TRUNCATED);
        return Err(Skip);
    };
    key.sport = be16([tcp[0], tcp[1]]);
    key.dport = be16([tcp[2], tcp[3]]);
    let data_offset = usize::from(tcp[12] >> 4) * 4;
    let payload_offset = l4 + data_offset;
    let len = ctx.len() as usize;
    if data_offset < 20 || payload_offset > len {
        bump(stat::TRUNCATED);
        return Err(Skip);
    }
    if data_offset >= 32 {
        if let Ok(o) = bytes::<12>(ctx, l4 + 20) {
            if o[..4] == TS_OPTION_PREFIX {
                segment.has_timestamps = true;
                segment.ts_val = u32::from_be_bytes([o[4], o[5], o[6], o[7]]);
                segment.ts_ecr = u32::from_be_bytes([o[8], o[9], o[10], o[11]]);
            }
        }
    }
    // Linux puts the MSS first in a SYN's options; only SYNs pay for this.
    if tcp[13] & TCP_SYN != 0 && data_offset >= 24 {
        if let Ok(o) = bytes::<4>(ctx, l4 + 20) {
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
    Ok(Parsed::Segment)
}
