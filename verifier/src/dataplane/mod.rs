//! Loading migverify's eBPF programs, attaching them to interfaces (in any
//! network namespace) and reading what they counted.
//!
//! Attachments are made first in the tcx chain on kernels >= 6.6 and return
//! "next", so programs already there (OVN, Cilium, NetObserv) keep running and
//! keep deciding; older kernels get a clsact filter that returns "continue".
//! Dropping a `Dataplane` detaches everything.
//!
//! What needs aya (loading, attaching, reading maps: `load`, `batch` and
//! the readers in `tables`) is in the build only with the `dataplane`
//! feature; what describes interfaces, namespaces and counts is always.

#[cfg(feature = "dataplane")]
mod batch;
#[cfg(feature = "dataplane")]
mod load;
pub mod netns;
pub mod privileges;
pub mod spec;
#[cfg(feature = "dataplane")]
mod tables;

use std::net::IpAddr;

use verifier_ebpf::{Addr, FAMILY_V4, FAMILY_V6};

#[cfg(feature = "bench")]
pub use self::load::BENCH_BASELINE;
#[cfg(feature = "dataplane")]
pub use self::load::{Attachment, Dataplane, DataplaneError};
pub use self::{
    netns::Netns,
    spec::{AttachSpec, Role},
};

/// How an attachment was made, which decides how it is undone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    Tcx,
    /// clsact filter; `added_qdisc` when the clsact qdisc was ours to remove.
    Clsact {
        added_qdisc: bool,
    },
}

impl AttachMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AttachMode::Tcx => "tcx",
            AttachMode::Clsact { .. } => "clsact",
        }
    }
}

/// Which kernel hook the observers attach with (`--hooks`).
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Hooks {
    /// tcx on kernels 6.6 and later, clsact before.
    #[default]
    Auto,
    /// tcx links (kernels 6.6 and later).
    Tcx,
    /// A clsact qdisc and its filters, as on kernels before 6.6 (RHEL 9):
    /// the fallback, on any kernel.
    Clsact,
}

/// What one attachment saw, both directions; bytes include the Ethernet
/// header, as `ip -s link` counts them.
#[derive(Clone, Debug, serde::Serialize)]
pub struct InterfaceCount {
    pub iface: String,
    pub netns: Option<String>,
    pub role: Role,
    pub mode: &'static str,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
}

impl InterfaceCount {
    /// What was counted since `before` (the same attachment, read earlier).
    pub fn since(&self, before: &InterfaceCount) -> InterfaceCount {
        InterfaceCount {
            rx_packets: self.rx_packets - before.rx_packets,
            rx_bytes: self.rx_bytes - before.rx_bytes,
            tx_packets: self.tx_packets - before.tx_packets,
            tx_bytes: self.tx_bytes - before.tx_bytes,
            ..self.clone()
        }
    }
}

/// An address as the maps store it, with its family.
pub fn to_addr(ip: IpAddr) -> (Addr, u8) {
    let mut addr = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            addr[..4].copy_from_slice(&v4.octets());
            (addr, FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), FAMILY_V6),
    }
}

/// The address a map key holds.
pub fn from_addr(addr: &Addr, family: u8) -> IpAddr {
    if family == FAMILY_V4 {
        IpAddr::from([addr[0], addr[1], addr[2], addr[3]])
    } else {
        IpAddr::from(*addr)
    }
}

/// What the programs could not look at or keep, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DataplaneStats {
    pub not_ip: u64,
    pub not_tcp: u64,
    pub truncated: u64,
    pub fragments: u64,
    /// Migration segments not accounted because the flow table was full.
    pub flow_table_full: u64,
    /// Events dropped because the ring buffer was full.
    pub events_lost: u64,
    pub endpoints_full: u64,
    /// Flow entries created (one per flow x hook x direction).
    pub flows_classified: u64,
    /// Packets a hook could not hand to the classifier.
    pub unclassified: u64,
    /// Segments of kept flows that missed their CPU's flow cache and paid
    /// for a hash lookup (not a loss).
    pub flow_cache_misses: u64,
}

impl DataplaneStats {
    /// What the data plane lost, in words, with `events_dropped` (events
    /// read but over the collector's cap); `None` when nothing was lost.
    pub fn losses(&self, events_dropped: u64) -> Option<String> {
        let parts: Vec<String> = [
            (self.flow_table_full, "segments (flow table full)"),
            (self.unclassified, "packets (classifier not in place)"),
            (self.events_lost, "events (ring buffer full)"),
            (events_dropped, "events (over the cap)"),
        ]
        .into_iter()
        .filter(|(count, _)| *count > 0)
        .map(|(count, what)| format!("{count} {what}"))
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }
}
