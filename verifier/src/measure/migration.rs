//! Connections grouped into migrations, and each migration's figures.

use std::{
    collections::{BTreeMap, HashMap},
    net::SocketAddr,
};

use serde::Serialize;
use verifier_ebpf::Direction;

use super::series::{self, Interval, Rtt, Throughput};
use crate::{
    config::Endpoint,
    dataplane::Role,
    flows::{BytesByRole, Connection, FlowTable, SlotInfo},
};

/// The connections of one migration: those to the endpoints one VMI
/// published, or, without a VMI, those to one target address and port.
pub struct Group<'a> {
    pub id: String,
    pub connections: Vec<&'a Connection>,
    /// Channel by server endpoint, from what was published.
    channels: HashMap<SocketAddr, &'static str>,
}

pub fn group<'a>(table: &'a FlowTable, endpoints: &[Endpoint]) -> Vec<Group<'a>> {
    let published: HashMap<SocketAddr, &Endpoint> = endpoints.iter().map(|e| (e.addr, e)).collect();
    let mut groups: BTreeMap<String, Group<'a>> = BTreeMap::new();
    for connection in table.connections() {
        let server = connection.key.server;
        let id = match published.get(&server) {
            Some(endpoint) => endpoint
                .migration
                .clone()
                .unwrap_or_else(|| format!("target {}", server.ip())),
            None => format!("target {server}"),
        };
        let group = groups.entry(id.clone()).or_insert_with(|| Group {
            id,
            connections: Vec::new(),
            channels: HashMap::new(),
        });
        if let Some(endpoint) = published.get(&server) {
            group.channels.insert(server, endpoint.channel.name());
        }
        group.connections.push(connection);
    }
    groups.into_values().collect()
}

/// One connection on one interface, as the report contract lists flows.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FlowRow {
    pub src: String,
    pub dst: String,
    pub channel: &'static str,
    pub reason: &'static str,
    pub role: Role,
    pub interface: String,
    pub netns: Option<String>,
    pub vlan: Option<u16>,
    pub bytes: u64,
    pub payload_bytes: u64,
}

/// One channel of a migration: the connections to the ports the target
/// published with one label (control 0, memory 49152, disk 49153), or that
/// the observers classified as it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ChannelFigures {
    pub channel: &'static str,
    pub connections: usize,
    /// TCP payload, both directions, retransmissions excluded.
    pub payload_bytes: u64,
    /// The part of it sent to the target.
    pub forward_payload_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct InterfaceBytes {
    pub interface: String,
    pub netns: Option<String>,
    pub role: Role,
    pub bytes: u64,
    /// Whether the source's packets left through it (egress: `true`) or
    /// came in (ingress: `false`): with the namespaces' nodes, the order of
    /// the path.
    #[serde(skip)]
    pub sends: Option<bool>,
}

/// One connection of a migration, as its table lists it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ConnectionFigures {
    pub src: String,
    pub dst: String,
    pub channel: &'static str,
    pub state: &'static str,
    /// TCP payload, both directions, retransmissions excluded.
    pub payload_bytes: u64,
    pub retransmits: u64,
    /// RTT median and samples (`None`: no sample).
    pub rtt_p50_us: Option<u64>,
    pub rtt_samples: usize,
}

/// What was measured of one migration.
#[derive(Clone, Debug, Serialize)]
pub struct Figures {
    pub id: String,
    pub targets: Vec<String>,
    pub connections: usize,
    pub bytes_by_role: BytesByRole,
    pub bytes_by_interface: Vec<InterfaceBytes>,
    /// Frame bytes on migration and bridge interfaces by VLAN id ("untagged").
    pub bytes_by_vlan: BTreeMap<String, u64>,
    /// TCP payload, each connection once, retransmissions excluded.
    pub payload_bytes: u64,
    /// The part of it that went from source to target.
    pub forward_payload_bytes: u64,
    /// The payload by channel: control, memory (main and multifd), disk.
    pub channels: Vec<ChannelFigures>,
    pub flows: Vec<FlowRow>,
    /// Each connection once: channel, bytes, retransmits, RTT.
    pub per_connection: Vec<ConnectionFigures>,
    pub throughput_bps: Throughput,
    /// The RTT of the path on the wire: TCP timestamp echoes, the leg that
    /// carries the path plus the near end's least (see `flows::rtt`).
    pub rtt_us: Rtt,
    /// The same samples smoothed per hook as a TCP sender smooths its own
    /// (RFC 6298's SRTT, gain 1/8), read every interval as the kernel's
    /// is: the figure to set beside the kernel's.
    pub srtt_us: Rtt,
    /// The kernel's smoothed RTT (`tcpi_rtt`) of the source's sockets, read
    /// over sock_diag each interval; `None` where migverify does not see
    /// the source's namespace.
    pub kernel_srtt_us: Option<Rtt>,
    /// From the first payload to the last (or to the end, while open).
    pub duration_s: f64,
    /// Every connection closed with a FIN, none was reset, and every
    /// interval of them is kept: `duration_s` is the whole migration's.
    #[serde(skip)]
    pub finished: bool,
    pub longest_stall_s: f64,
    pub retransmits: u64,
    pub zero_windows: u64,
    /// Connections that were reset.
    pub resets: usize,
    /// The per-interval payload progress behind the throughput figures.
    pub progress: Vec<Interval>,
    #[serde(skip)]
    pub rtt_histogram: Option<hdrhistogram::Histogram<u64>>,
}

pub fn figures(group: &Group, slots: &[Option<SlotInfo>], interval_ms: u64) -> Figures {
    let mut bytes_by_role = BytesByRole::default();
    let mut by_interface: BTreeMap<(String, Option<String>), InterfaceBytes> = BTreeMap::new();
    let mut bytes_by_vlan: BTreeMap<String, u64> = BTreeMap::new();
    let mut flows = Vec::new();
    let mut per_connection = Vec::new();
    let mut targets: Vec<String> = Vec::new();
    let mut channels: BTreeMap<&'static str, ChannelFigures> = BTreeMap::new();
    let mut sends: BTreeMap<(String, Option<String>), bool> = BTreeMap::new();
    for connection in &group.connections {
        let report = connection.report(slots);
        for seen in connection.observations().filter(|s| s.forward) {
            if let Some(Some(slot)) = slots.get(usize::from(seen.slot)) {
                let egress = seen.direction == Direction::Egress;
                sends.insert((slot.interface.clone(), slot.netns.clone()), egress);
            }
        }
        let channel = group
            .channels
            .get(&connection.key.server)
            .copied()
            .unwrap_or(report.channel);
        let by_channel = channels.entry(channel).or_insert_with(|| ChannelFigures {
            channel,
            connections: 0,
            payload_bytes: 0,
            forward_payload_bytes: 0,
        });
        by_channel.connections += 1;
        by_channel.payload_bytes += connection.payload_bytes();
        by_channel.forward_payload_bytes += connection.forward_payload_bytes();
        let reason = if group.channels.contains_key(&connection.key.server) {
            "endpoint"
        } else {
            report.reason
        };
        let roles = report.bytes_by_role;
        bytes_by_role.migration += roles.migration;
        bytes_by_role.bridge += roles.bridge;
        bytes_by_role.primary += roles.primary;
        bytes_by_role.other += roles.other;
        // The path's round trips, as the totals.
        let mut rtt: Vec<u32> = connection.rtt.path(0).iter().map(|s| s.us).collect();
        rtt.sort_unstable();
        per_connection.push(ConnectionFigures {
            src: report.src.clone(),
            dst: report.dst.clone(),
            channel,
            state: report.state,
            payload_bytes: report.payload_bytes,
            retransmits: report.retransmits,
            rtt_p50_us: rtt.get(rtt.len() / 2).map(|&r| u64::from(r)),
            rtt_samples: rtt.len(),
        });
        let target = connection.key.server.to_string();
        if !targets.contains(&target) {
            targets.push(target);
        }
        for view in report.interfaces {
            let entry = by_interface
                .entry((view.interface.clone(), view.netns.clone()))
                .or_insert_with(|| InterfaceBytes {
                    interface: view.interface.clone(),
                    netns: view.netns.clone(),
                    role: view.role,
                    bytes: 0,
                    sends: sends
                        .get(&(view.interface.clone(), view.netns.clone()))
                        .copied(),
                });
            entry.bytes += view.bytes;
            if matches!(view.role, Role::Migration | Role::Bridge) {
                let vlan = view
                    .vlan
                    .map_or_else(|| "untagged".to_string(), |v| v.to_string());
                *bytes_by_vlan.entry(vlan).or_default() += view.bytes;
            }
            flows.push(FlowRow {
                src: report.src.clone(),
                dst: report.dst.clone(),
                channel,
                reason,
                role: view.role,
                interface: view.interface,
                netns: view.netns,
                vlan: view.vlan,
                bytes: view.bytes,
                payload_bytes: view.payload_bytes,
            });
        }
    }
    let progress = series::progress(&group.connections, interval_ms);
    let (rtt_us, rtt_histogram) = series::rtt(&group.connections);
    let (kernel_srtt_us, _) = series::rtt_of(
        group
            .connections
            .iter()
            .flat_map(|c| c.kernel_srtt.iter())
            .map(|&(_, srtt, _)| u64::from(srtt)),
    );
    let duration_ms: u64 = progress.iter().map(|i| i.length_ms).sum();
    Figures {
        id: group.id.clone(),
        targets,
        connections: group.connections.len(),
        bytes_by_role,
        bytes_by_interface: by_interface.into_values().collect(),
        bytes_by_vlan,
        payload_bytes: group.connections.iter().map(|c| c.payload_bytes()).sum(),
        forward_payload_bytes: group
            .connections
            .iter()
            .map(|c| c.forward_payload_bytes())
            .sum(),
        channels: channel_order(channels),
        flows,
        per_connection,
        throughput_bps: series::throughput(&progress),
        rtt_us,
        srtt_us: series::srtt(&group.connections, interval_ms),
        kernel_srtt_us: (kernel_srtt_us.samples > 0).then_some(kernel_srtt_us),
        duration_s: duration_ms as f64 / 1000.0,
        finished: !group.connections.is_empty()
            && group.connections.iter().all(|c| {
                c.closed_at_ms.is_some() && c.state() == "closed" && c.history_dropped == 0
            }),
        longest_stall_s: series::longest_stall_s(&progress),
        retransmits: group.connections.iter().map(|c| c.retransmits()).sum(),
        zero_windows: group.connections.iter().map(|c| c.zero_windows()).sum(),
        resets: group
            .connections
            .iter()
            .filter(|c| c.state() == "reset")
            .count(),
        progress,
        rtt_histogram: Some(rtt_histogram),
    }
}

/// Channels in the order a migration opens them: control, memory, disk,
/// then whatever else.
fn channel_order(mut channels: BTreeMap<&'static str, ChannelFigures>) -> Vec<ChannelFigures> {
    let mut ordered: Vec<ChannelFigures> = ["control", "memory", "disk"]
        .iter()
        .filter_map(|name| channels.remove(name))
        .collect();
    ordered.extend(channels.into_values());
    ordered
}
