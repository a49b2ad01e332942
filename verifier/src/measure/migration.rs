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
    pub flows: Vec<FlowRow>,
    /// Each connection once: channel, bytes, retransmits, RTT.
    pub per_connection: Vec<ConnectionFigures>,
    pub throughput_bps: Throughput,
    pub rtt_us: Rtt,
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
        let mut rtt: Vec<u32> = connection.rtt_us.clone();
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
        flows,
        per_connection,
        throughput_bps: series::throughput(&progress),
        rtt_us,
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
