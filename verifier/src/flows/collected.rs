//! What a collection run saw, as the judging and the reports read it:
//! plain data, with or without the data plane in the build.

use std::{
    collections::HashSet,
    net::SocketAddr,
    time::{Duration, SystemTime},
};

use serde::Serialize;
use verifier_ebpf::{NeighborKey, NeighborStats};

use super::{FlowTable, SlotInfo};
use crate::dataplane::DataplaneStats;

#[derive(Clone, Debug, Serialize)]
pub struct FlowEventRecord {
    /// Milliseconds since collection started.
    pub at_ms: u64,
    pub kind: &'static str,
    pub src: String,
    pub dst: String,
    pub interface: String,
    pub netns: Option<String>,
    pub role: &'static str,
    pub channel: &'static str,
    pub reason: &'static str,
    pub vlan: Option<u16>,
}

/// Everything a collection run saw.
#[derive(Debug)]
pub struct Collected {
    pub table: FlowTable,
    pub slots: Vec<Option<SlotInfo>>,
    pub events: Vec<FlowEventRecord>,
    pub events_dropped: u64,
    pub stats: DataplaneStats,
    pub endpoints: HashSet<SocketAddr>,
    pub duration: Duration,
    /// When the observation started, by the wall clock.
    pub started_at: SystemTime,
    /// ARP per address and hook, read at the end.
    pub neighbors: Vec<(NeighborKey, NeighborStats)>,
}
