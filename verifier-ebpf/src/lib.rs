//! Types shared between migverify's eBPF programs and user space.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into
//! maps, user space reads the same bytes back. Keep the two sides in one place
//! so a layout change cannot reach only one of them.
#![no_std]

/// How many interfaces one migverify process can attach to.
///
/// Each attachment gets a *slot*: its own pair of programs
/// (`ingress_NN`/`egress_NN`) with the slot number compiled in. The slot,
/// not the ifindex, identifies the interface in every map, because ifindexes
/// repeat across network namespaces (every pod has its `eth0` at index 2).
pub const MAX_SLOTS: u32 = 32;

/// Which way a packet crossed the hook.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    Ingress = 0,
    Egress = 1,
}

impl Direction {
    pub const ALL: [Direction; 2] = [Direction::Ingress, Direction::Egress];
}

/// Packets and frame bytes seen at one hook (slot x direction).
///
/// Bytes are `skb->len`, which at TC includes the Ethernet header: the same
/// measure `ip -s link` reports for veth and most NICs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookCounters {
    pub packets: u64,
    pub bytes: u64,
}

/// Index of a hook's counters in the `HOOK_COUNTERS` per-CPU array.
pub const fn hook_index(slot: u32, direction: Direction) -> u32 {
    slot * 2 + direction as u32
}

/// Number of entries in `HOOK_COUNTERS`.
pub const HOOK_ENTRIES: u32 = MAX_SLOTS * 2;

#[cfg(feature = "user")]
mod pod {
    // SAFETY: plain `#[repr(C)]` data of integers, no padding, any bit pattern valid.
    unsafe impl aya::Pod for super::HookCounters {}
}
