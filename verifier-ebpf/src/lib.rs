//! Types shared between migverify's eBPF programs and user space.
//!
//! Everything here is `#[repr(C)]` plain data: the kernel side writes it into
//! maps, user space reads the same bytes back. Keep the two sides in one place
//! so a layout change cannot reach only one of them.
#![no_std]

/// A byte that is none of a shared enum's values: not written by these
/// programs (another version of them, or memory that is not an entry).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownValue {
    /// The enum the byte was read as.
    pub kind: &'static str,
    pub value: u8,
}

impl core::fmt::Display for UnknownValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} is no {} value", self.value, self.kind)
    }
}

impl core::error::Error for UnknownValue {}

/// A `#[repr(u8)]` enum whose values cross between the programs and user
/// space as bytes, with the one spelling reports use for each value.
/// Structs in maps keep the byte (any bit pattern must be valid there);
/// user space turns it into the enum with `TryFrom<u8>` as soon as it reads
/// it, and prints it with `name()`.
macro_rules! shared_enum {
    (
        $(#[$meta:meta])*
        pub enum $enum:ident {
            $($(#[$variant_meta:meta])* $variant:ident = $value:literal => $name:literal,)*
        }
    ) => {
        $(#[$meta])*
        #[repr(u8)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $enum {
            $($(#[$variant_meta])* $variant = $value,)*
        }

        impl $enum {
            /// Every value, in the order of their bytes.
            pub const ALL: [$enum; [$($value),*].len()] = [$($enum::$variant),*];

            /// The spelling reports, metrics and flags use.
            pub const fn name(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)*
                }
            }
        }

        impl TryFrom<u8> for $enum {
            type Error = UnknownValue;

            fn try_from(value: u8) -> Result<Self, UnknownValue> {
                match value {
                    $($value => Ok($enum::$variant),)*
                    _ => Err(UnknownValue {
                        kind: stringify!($enum),
                        value,
                    }),
                }
            }
        }

        impl core::fmt::Display for $enum {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

/// How many interfaces one migverify process can attach to.
///
/// Each attachment gets a *slot*: its own pair of small programs
/// (`ingress_NN`/`egress_NN`) with the slot number compiled in, which count
/// the packet and hand it to the shared classifier. The slot,
/// not the ifindex, identifies the interface in every map, because ifindexes
/// repeat across network namespaces (every pod has its `eth0` at index 2).
pub const MAX_SLOTS: u32 = 32;

/// Where the shared classifier sits in the `CLASSIFIER` program array.
pub const CLASSIFIER_INDEX: u32 = 0;

shared_enum! {
    /// Which way a packet crossed the hook.
    pub enum Direction {
        Ingress = 0 => "ingress",
        Egress = 1 => "egress",
    }
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

/// What one CPU keeps for one hook: its counters, and where the flow of
/// the last segment it accounted there lives.
///
/// A sender's segments reach a hook in runs (a GSO packet of up to 64 KiB
/// is cut into MTU-sized segments of one flow), so most segments find their
/// entry at `last_flow`, on the line the counters already brought in, and
/// skip the flow cache (a hash and one more line, see [`flow_cache_set`]).
/// 32 bytes: a hook's state never straddles two cache lines of an aligned
/// value.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HookState {
    pub counters: HookCounters,
    /// A `FLOW_ENTRIES` index, checked against the segment's key before use
    /// (the flow may have been freed and its entry reused since).
    pub last_flow: u32,
    /// That flow's ports ([`FlowKey::ports`]): a segment of another flow
    /// (unrelated traffic, mostly) is told apart here, without reading the
    /// entry.
    pub last_ports: u32,
    pub _pad: u64,
}

const _: () = assert!(core::mem::size_of::<HookState>() == 32);

/// Index of a hook's state in the `HOOK_STATE` per-CPU value.
pub const fn hook_index(slot: u32, direction: Direction) -> u32 {
    slot * 2 + direction as u32
}

/// Hooks in `HOOK_STATE`'s one per-CPU value.
pub const HOOK_ENTRIES: u32 = MAX_SLOTS * 2;

shared_enum! {
    /// The network role of an attachment, as user space declares it.
    pub enum SlotRole {
        Migration = 0 => "migration",
        Bridge = 1 => "bridge",
        Primary = 2 => "primary",
        Other = 3 => "other",
    }
}

/// Per-slot settings user space writes into `SLOT_CONFIG` at attach time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotConfig {
    /// A [`SlotRole`] value.
    pub role: u8,
    pub _pad: [u8; 7],
}

/// IP version, stored in keys so IPv4 and IPv6 share one table.
pub const FAMILY_V4: u8 = 4;
pub const FAMILY_V6: u8 = 6;

/// An address in 16 bytes: IPv6 as is, IPv4 in the first four bytes.
pub type Addr = [u8; 16];

/// One direction of a TCP connection at one hook: packet orientation
/// (`src` sent it), the slot it was seen at and which way it crossed.
/// Aligned to 8 so the programs copy and clear it in whole words.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: Addr,
    pub dst: Addr,
    /// Ports in host byte order.
    pub sport: u16,
    pub dport: u16,
    pub family: u8,
    pub slot: u8,
    /// A [`Direction`] value.
    pub direction: u8,
    pub _pad: u8,
}

/// The IPv4 form of a [`FlowKey`], for the IPv4 index table: a third the
/// size, so hashing it costs a third.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct FlowKeyV4 {
    /// Addresses as they lie in the packet (network byte order).
    pub src: u32,
    pub dst: u32,
    pub sport: u16,
    pub dport: u16,
    pub slot: u8,
    pub direction: u8,
    pub _pad: [u8; 2],
}

impl FlowKey {
    /// Both ports in one word.
    #[inline(always)]
    pub fn ports(&self) -> u32 {
        u32::from(self.sport) << 16 | u32::from(self.dport)
    }
}

impl FlowKeyV4 {
    /// Word reads: this runs on every flow-cache miss of an IPv4 segment.
    #[inline(always)]
    pub fn from_key(key: &FlowKey) -> FlowKeyV4 {
        let word = |addr: &Addr| u32::from_ne_bytes([addr[0], addr[1], addr[2], addr[3]]);
        FlowKeyV4 {
            src: word(&key.src),
            dst: word(&key.dst),
            sport: key.sport,
            dport: key.dport,
            slot: key.slot,
            direction: key.direction,
            _pad: [0; 2],
        }
    }
}

shared_enum! {
    /// What a migration connection carries, as KubeVirt labels its target
    /// ports in `targetDirectMigrationNodePorts`.
    pub enum Channel {
        Unknown = 0 => "unknown",
        /// libvirt's control connection (label 0).
        Control = 1 => "control",
        /// The memory stream: main and multifd channels (label 49152).
        Memory = 2 => "memory",
        /// Block migration over NBD (label 49153).
        Disk = 3 => "disk",
    }
}

shared_enum! {
    /// Why a flow was taken for migration traffic, strongest first (so the
    /// order of the values is the order of strength).
    pub enum Reason {
        /// Matches a published target endpoint (address + port).
        Endpoint = 1 => "endpoint",
        /// An endpoint is inside a migration network CIDR or is a known
        /// virt-handler migration address.
        Cidr = 2 => "cidr",
        /// Cleartext: the first payload bytes are QEMU's stream magic.
        Signature = 3 => "signature",
    }
}

/// `FlowStats::seen` bits.
pub const SEEN_SYN: u8 = 1;
pub const SEEN_SYN_ACK: u8 = 2;
pub const SEEN_FIN: u8 = 4;
pub const SEEN_RST: u8 = 8;

/// The counters one CPU adds a flow's segments to on its own, with plain
/// adds: see [`FlowStats::shares`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuShare {
    /// The CPU's number plus one; 0: not claimed yet.
    pub cpu: u64,
    pub bytes: u64,
    pub packets: u64,
    pub unique_payload_bytes: u64,
}

/// CPUs per flow entry with a share of their own.
pub const CPU_SHARES: usize = 2;

/// Counters of one [`FlowKey`]. Segments of one flow can be handled on
/// several CPUs at once: the counters every segment adds to live in
/// [`shares`](Self::shares) for the first CPUs that handle the flow, and
/// the rest add to the fields here, atomically. Read through
/// [`FlowStats::fold_shares`].
///
/// Laid out by how often a segment touches a field: what every segment
/// reads or writes shares the entry's first cache line with the key, the
/// CPU shares fill the second, the rest (rare events, user space's) come
/// after. A segment then touches two lines of its entry, not four.
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// End (seq + len) of the highest segment seen.
    pub seq_high: u32,
    /// Whether `seq_high` holds a sequence number yet.
    pub seq_valid: u8,
    /// OR of every TCP flags byte seen.
    pub tcp_flags: u8,
    /// `SEEN_*` bits.
    pub seen: u8,
    /// A [`Channel`] value.
    pub channel: u8,
    /// A [`Reason`] value.
    pub reason: u8,
    pub _pad: u8,
    /// VLAN id seen (metadata or in-band, outermost); 0 = untagged.
    pub vlan: u16,
    /// Largest segment payload (the GSO size for GSO packets).
    pub largest_segment: u32,
    /// The latest TSval seen in this direction: a segment whose TSval
    /// differs is the first of its clock tick here.
    pub ts_val: u32,
    /// The last TSecr seen in this direction: only a new echo is matched.
    pub last_ts_ecr: u32,
    /// `bytes`, `packets` and `unique_payload_bytes` of the CPUs that
    /// claimed a share (a compare-and-swap of `cpu`, once per CPU and
    /// flow): a locked add costs more than all the rest of a segment's
    /// accounting (bench/results: 22 ns of 57 above the in-place floor),
    /// and a flow's segments mostly stay on one or two CPUs (RSS, RPS, the
    /// sending thread's CPU).
    pub shares: [CpuShare; CPU_SHARES],
    /// Frame bytes (`skb->len`, GSO packets whole).
    pub bytes: u64,
    /// Wire segments (a GSO packet counts its segments).
    pub packets: u64,
    /// TCP payload that advanced the sequence: each byte once.
    pub unique_payload_bytes: u64,
    /// TCP payload at or below the highest sequence already seen, and not
    /// filling a gap left by reordering.
    pub retransmitted_bytes: u64,
    /// Segments with payload that brought nothing new.
    pub retransmits: u64,
    /// Segments advertising a zero receive window.
    pub zero_windows: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds when the entry was made. There
    /// is no per-packet "last seen": user space sees progress by polling,
    /// and a clock read on every packet costs more than it tells.
    pub first_seen_ns: u64,
    /// The sender's clock as this hook sees it: the first segment of tick
    /// `anchor_val` passed here at `anchor_ns` (0: none yet). A tick's
    /// first segment that comes earlier against its tick than the anchor's
    /// did replaces it, and so does any after `TS_ANCHOR_MAX_AGE_NS`.
    pub anchor_ns: u64,
    /// The echo (TSecr) the last RTT sample from this direction's echoes
    /// timed, with bit 32 set (0: no sample yet).
    pub last_rtt_echo: u64,
    /// The MSS option of this direction's SYN (0: none seen), what the
    /// sender's interface MTU allows it to receive: set once per connection.
    pub mss: u16,
    pub _pad2: [u8; 2],
    /// The newest gap below `seq_high` not filled yet, `[hole_start,
    /// hole_end)` (equal: none). Segments of one flow handled on two CPUs
    /// can arrive out of order; the late ones fill the gap and count as new
    /// payload, not as retransmissions.
    pub hole_start: u32,
    pub hole_end: u32,
    pub anchor_val: u32,
}

// The layout above, with no padding the compiler would add (user space
// reads it as plain bytes).
const _: () = assert!(
    core::mem::offset_of!(FlowStats, shares) == 24
        && core::mem::offset_of!(FlowStats, bytes) == 24 + CPU_SHARES * 32
        && core::mem::size_of::<FlowStats>() == core::mem::offset_of!(FlowStats, anchor_val) + 4
);

impl FlowStats {
    /// Adds the CPUs' shares into the shared counters: the flow's totals.
    pub fn fold_shares(&mut self) {
        for share in &mut self.shares {
            self.bytes += share.bytes;
            self.packets += share.packets;
            self.unique_payload_bytes += share.unique_payload_bytes;
            *share = CpuShare::default();
        }
    }
}

/// Entries of the flow table: flows x hooks x directions, both families.
pub const MAX_FLOWS: u32 = 65536;

/// One entry of the `FLOW_ENTRIES` array: a kept flow's key and counters.
/// An all-zero key (family 0) marks a free entry.
///
/// The flow's entry is found by index, not by hashing its key: each CPU
/// remembers where the last flows it saw live (`FLOW_CACHE`), and a
/// segment whose key matches the entry there is accounted without a hash
/// lookup. The hash tables (`FLOW_INDEX_V4`/`_V6`) map keys to indexes for
/// the rest.
///
/// Each entry has cache lines of its own (four, in an array whose values
/// start on a page: `BPF_F_MMAPABLE`): a connection's two directions at
/// one hook get neighbouring entries, often handled on two CPUs, and
/// entries sharing a line had those CPUs pull it back and forth (2-3 ns a
/// segment in place, bench/results/parts/2026-12-06T015716Z-HooksInPlace.json).
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEntry {
    pub key: FlowKey,
    pub stats: FlowStats,
    pub _pad: [u64; 5],
}

// Whole lines, no padding the compiler would add, and the CPU shares on
// the entry's second line.
const _: () = assert!(
    core::mem::size_of::<FlowEntry>() == 256
        && core::mem::size_of::<FlowKey>() + core::mem::size_of::<FlowStats>() + 40 == 256
        && core::mem::offset_of!(FlowEntry, stats) + core::mem::offset_of!(FlowStats, shares) == 64
);

/// Each CPU's `FLOW_CACHE` is 2^FLOW_CACHE_SET_BITS sets of two slots,
/// in one per-CPU value (at most 32 KiB).
pub const FLOW_CACHE_SET_BITS: u32 = 11;
pub const FLOW_CACHE_ENTRIES: u32 = 2 << FLOW_CACHE_SET_BITS;

/// The first of the two `FLOW_CACHE` slots a flow may sit in (the other is
/// the next one): a multiplicative hash of its ports and hook. A
/// migration's channels have neighbouring ports, which plain XOR put in
/// colliding slots; two ways keep two flows that share a set from evicting
/// each other.
#[inline(always)]
pub fn flow_cache_set(key: &FlowKey) -> u32 {
    let ports = key.ports();
    let hook = u32::from(key.slot) << 1 | u32::from(key.direction);
    let mixed = (ports ^ hook.wrapping_mul(0x9e37_79b9)).wrapping_mul(0x9e37_79b1);
    (mixed >> (32 - FLOW_CACHE_SET_BITS)) << 1
}

/// Key of the `NEIGHBORS` map: an IPv4 address at one hook, either asked
/// for in an ARP request or answering in an ARP reply. ARP is how an
/// unreachable peer shows on the wire when no SYN ever leaves: the
/// kernel holds the SYN until the target's address resolves.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct NeighborKey {
    /// The address as it lies in the packet (network byte order).
    pub addr: u32,
    pub slot: u8,
    /// A [`Direction`] value.
    pub direction: u8,
    pub _pad: [u8; 2],
}

/// ARP seen for one [`NeighborKey`].
#[repr(C, align(8))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NeighborStats {
    /// Requests asking for the address (probes from 0.0.0.0 excluded).
    pub requests: u64,
    /// Replies from the address, and its gratuitous announcements.
    pub replies: u64,
    /// CLOCK_MONOTONIC (coarse) nanoseconds of the first and the latest.
    pub first_request_ns: u64,
    pub last_request_ns: u64,
    pub last_reply_ns: u64,
    /// VLAN id of the latest frame (metadata or in-band); 0 = untagged.
    pub vlan: u16,
    pub _pad: [u8; 6],
}

/// Entries of the `NEIGHBORS` LRU map: old addresses make room for new.
pub const NEIGHBOR_ENTRIES: u32 = 4096;

shared_enum! {
    /// What a [`FlowEvent`] on the `EVENTS` ring buffer reports.
    pub enum EventKind {
        /// A flow was classified and kept.
        NewFlow = 1 => "new-flow",
        /// A migration flow on an interface whose role is not migration or
        /// bridge.
        WrongRole = 2 => "wrong-role",
        /// The first RST of a flow at a hook.
        Rst = 3 => "rst",
        /// A round-trip time from a TCP timestamp echo: `value_ns` holds it.
        /// The key is the direction that carried the echo, at the hook that
        /// saw both.
        Rtt = 4 => "rtt",
    }
}

/// RTT samples per flow x hook x direction time echoes at least this many
/// ticks (milliseconds of the echoed clock) apart, so busy connections
/// cannot flood the ring buffer. Counted in ticks, not read off a clock:
/// a new echo comes about once a millisecond per direction, and a clock
/// read for each would cost more than the sample it rations.
pub const RTT_SAMPLE_SPACING_TICKS: i32 = 10;

/// The TCP timestamp clock's tick: Linux (`tcp_clock_ms`) and the other
/// common stacks count milliseconds.
pub const TS_TICK_NS: i64 = 1_000_000;

/// An anchor older than this is replaced by the next tick's first segment:
/// where a queue lies between the sender and the hook, its delay moves, and
/// the anchor follows it (as it follows clock drift between hosts).
pub const TS_ANCHOR_MAX_AGE_NS: u64 = 8_000_000;

/// Echoes further than this from the anchor (in ticks) are not timed.
pub const TS_ECHO_MAX_TICKS: i32 = 10_000;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowEvent {
    pub key: FlowKey,
    pub ts_ns: u64,
    /// The RTT of an [`EventKind::Rtt`]; 0 otherwise.
    pub value_ns: u64,
    /// An [`EventKind`] value.
    pub kind: u8,
    /// A [`SlotRole`] value: the role of the hook's interface.
    pub role: u8,
    /// A [`Channel`] value.
    pub channel: u8,
    /// A [`Reason`] value.
    pub reason: u8,
    pub vlan: u16,
    pub tcp_flags: u8,
    pub _pad: u8,
}

/// A published target endpoint: address and port.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EndpointKey {
    pub addr: Addr,
    pub port: u16,
    pub family: u8,
    pub _pad: u8,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EndpointInfo {
    /// A [`Channel`] value.
    pub channel: u8,
    /// A [`Reason`] value: `Endpoint` from user space, `Signature` when the
    /// program learnt it from a cleartext stream.
    pub reason: u8,
    pub _pad: [u8; 2],
}

/// Key of the `MIGRATION_CIDRS` LPM trie: family byte, then the address,
/// so one trie holds IPv4 and IPv6 (prefix length counts the family byte).
pub type CidrData = [u8; 17];

/// Prefixes checked in place, without a map lookup per prefix: the first
/// few migration CIDRs go here, any beyond them into the LPM trie.
pub const FAST_CIDRS: usize = 8;

/// One prefix as two masked 64-bit words of a [`FlowKey`] address
/// (IPv4 uses the first four bytes of the first word).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastCidr {
    pub family: u8,
    pub _pad: [u8; 7],
    pub net: [u64; 2],
    pub mask: [u64; 2],
}

/// The one entry of the `CIDR_TABLE` array.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CidrTable {
    /// Entries in use in `fast`.
    pub fast: u32,
    /// Entries in the `MIGRATION_CIDRS` trie (0 skips it).
    pub trie: u32,
    pub entries: [FastCidr; FAST_CIDRS],
}

/// Words of the `PORT_FILTER` bitmap: one bit per TCP port, set for every
/// endpoint port, so most packets skip the endpoint table.
pub const PORT_FILTER_WORDS: u32 = 65536 / 64;

/// Indexes of the `DROP_COUNTERS`-style per-CPU `STATS` array: every
/// packet that could not be looked at, and every datum that could not be
/// kept, is counted here.
pub mod stat {
    pub const NOT_IP: u32 = 0;
    pub const NOT_TCP: u32 = 1;
    pub const TRUNCATED: u32 = 2;
    pub const FRAGMENT: u32 = 3;
    pub const FLOW_TABLE_FULL: u32 = 4;
    pub const EVENTS_LOST: u32 = 5;
    pub const ENDPOINTS_FULL: u32 = 6;
    pub const CLASSIFIED: u32 = 7;
    /// Packets a hook could not hand to the classifier (not in place).
    pub const UNCLASSIFIED: u32 = 8;
    /// Segments of kept flows whose entry was not where this CPU's flow
    /// cache said: each paid for a hash lookup. Not a loss.
    pub const FLOW_CACHE_MISSES: u32 = 9;
    pub const COUNT: u32 = 10;
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all of these are `#[repr(C)]` plain integers and byte arrays
    // with explicit padding fields; any bit pattern is valid.
    unsafe impl aya::Pod for super::HookState {}
    unsafe impl aya::Pod for super::SlotConfig {}
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowKeyV4 {}
    unsafe impl aya::Pod for super::CpuShare {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::FlowEntry {}
    unsafe impl aya::Pod for super::FlowEvent {}
    unsafe impl aya::Pod for super::EndpointKey {}
    unsafe impl aya::Pod for super::EndpointInfo {}
    unsafe impl aya::Pod for super::CidrTable {}
    unsafe impl aya::Pod for super::NeighborKey {}
    unsafe impl aya::Pod for super::NeighborStats {}
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::format;

    use super::*;

    /// Every value comes back from its byte, prints as its name, no two
    /// share a spelling, and a byte that is none of them is refused.
    macro_rules! check {
        ($enum:ident, $unused:literal) => {
            for (i, value) in $enum::ALL.into_iter().enumerate() {
                assert_eq!($enum::try_from(value as u8), Ok(value));
                assert_eq!(value.name(), format!("{value}"));
                for other in &$enum::ALL[i + 1..] {
                    assert_ne!(value.name(), other.name());
                }
            }
            assert_eq!(
                $enum::try_from($unused),
                Err(UnknownValue {
                    kind: stringify!($enum),
                    value: $unused
                })
            );
        };
    }

    #[test]
    fn shared_enums_round_trip_through_their_bytes() {
        check!(Direction, 2);
        check!(SlotRole, 4);
        check!(Channel, 4);
        check!(Reason, 0);
        check!(EventKind, 0);
    }

    /// A flow's totals are the shared counters plus every CPU's share, and
    /// folding twice adds nothing more.
    #[test]
    fn folding_adds_each_share_once() {
        let share = |cpu, bytes, packets, unique_payload_bytes| CpuShare {
            cpu,
            bytes,
            packets,
            unique_payload_bytes,
        };
        let mut stats = FlowStats {
            bytes: 100,
            packets: 1,
            unique_payload_bytes: 40,
            retransmitted_bytes: 7,
            shares: [share(1, 3000, 2, 2800), share(3, 1500, 1, 1448)],
            ..FlowStats::default()
        };
        stats.fold_shares();
        assert_eq!(
            (stats.bytes, stats.packets, stats.unique_payload_bytes),
            (4600, 4, 4288)
        );
        assert_eq!(stats.retransmitted_bytes, 7);
        let folded = stats;
        stats.fold_shares();
        assert_eq!(stats, folded);
    }

    /// Spellings the JSON report and `--endpoint` promise.
    #[test]
    fn report_spellings() {
        assert_eq!(Direction::Egress.name(), "egress");
        assert_eq!(SlotRole::Primary.name(), "primary");
        assert_eq!(Channel::Memory.name(), "memory");
        assert_eq!(Reason::Signature.name(), "signature");
        assert_eq!(EventKind::NewFlow.name(), "new-flow");
    }
}
