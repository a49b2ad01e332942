//! From per-hook flow entries to migration connections: both directions of
//! a connection joined, every place it was seen listed with the role of the
//! interface, its payload counted once, and a bounded history of per-interval
//! payload deltas for throughput.

mod collected;
#[cfg(feature = "dataplane")]
mod collector;
pub mod rtt;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    net::SocketAddr,
};

use serde::Serialize;
use verifier_ebpf::{
    Channel, Direction, FlowKey, FlowStats, Reason, SEEN_FIN, SEEN_RST, SEEN_SYN, SEEN_SYN_ACK,
};

pub use self::collected::{Collected, FlowEventRecord};
#[cfg(feature = "dataplane")]
pub use self::collector::{collect, Request, Tick};
use self::rtt::{Leg, RttSamples, Sample};
#[cfg(feature = "dataplane")]
use crate::dataplane::Attachment;
use crate::{
    dataplane::{from_addr, Role},
    sockdiag::TcpSocket,
};

/// Intervals of history kept per connection: an hour at 100 ms.
pub const HISTORY_CAP: usize = 36_000;

/// RTT samples kept per connection (the kernel spaces them 10 ms apart per
/// hook and direction: this is over half an hour of them).
pub const RTT_CAP: usize = 200_000;

/// What user space knows of each slot when it reads flow entries.
#[derive(Clone, Debug)]
pub struct SlotInfo {
    pub interface: String,
    pub netns: Option<String>,
    pub role: Role,
    /// The interface's MTU when it was attached.
    pub mtu: Option<u32>,
}

impl SlotInfo {
    #[cfg(feature = "dataplane")]
    pub fn of(attachment: &Attachment) -> SlotInfo {
        SlotInfo {
            interface: attachment.spec.iface.clone(),
            netns: attachment.spec.netns.as_ref().map(ToString::to_string),
            role: attachment.spec.role,
            mtu: attachment.mtu,
        }
    }

    /// `IFACE@NETNS`, or `IFACE` in migverify's own namespace.
    pub fn name(&self) -> String {
        match &self.netns {
            Some(ns) => format!("{}@{ns}", self.interface),
            None => self.interface.clone(),
        }
    }
}

/// A TCP connection, oriented client -> server (the server is the
/// migration target's endpoint).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnKey {
    pub client: SocketAddr,
    pub server: SocketAddr,
}

/// One place a connection was seen, one orientation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Observation {
    slot: u8,
    direction: Direction,
    /// Packets from client to server.
    forward: bool,
}

/// One place a connection was seen, as diagnoses read it.
#[derive(Clone, Copy, Debug)]
pub struct Seen<'a> {
    pub slot: u8,
    /// Which way the packets crossed the hook.
    pub direction: Direction,
    /// Packets from client to server (for migrations: source to target).
    pub forward: bool,
    pub stats: &'a FlowStats,
}

/// When one direction of a connection last moved, in milliseconds since
/// the collection started (read to read, so at the interval's resolution):
/// a live diagnosis asks "since when", which totals cannot say.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Activity {
    /// New payload (the sequence advanced).
    pub payload_ms: Option<u64>,
    pub retransmit_ms: Option<u64>,
    /// Retransmissions since new payload last moved: a sender that keeps
    /// resending without getting further is not being acknowledged.
    pub retransmits_since_payload: u64,
    /// A zero receive window advertised in this direction.
    pub zero_window_ms: Option<u64>,
    payload: u64,
    retransmits: u64,
    zero_windows: u64,
}

impl Activity {
    fn update(&mut self, payload: u64, retransmits: u64, zero_windows: u64, at_ms: u64) {
        if payload > self.payload {
            self.payload_ms = Some(at_ms);
            self.retransmits_since_payload = 0;
        } else if retransmits > self.retransmits {
            self.retransmits_since_payload += retransmits - self.retransmits;
        }
        if retransmits > self.retransmits {
            self.retransmit_ms = Some(at_ms);
        }
        if zero_windows > self.zero_windows {
            self.zero_window_ms = Some(at_ms);
        }
        self.payload = self.payload.max(payload);
        self.retransmits = self.retransmits.max(retransmits);
        self.zero_windows = self.zero_windows.max(zero_windows);
    }
}

#[derive(Clone, Debug)]
pub struct Connection {
    pub key: ConnKey,
    pub channel: Channel,
    pub reason: Reason,
    observations: BTreeMap<Observation, FlowStats>,
    /// (milliseconds since the collection started, payload bytes in the interval)
    pub history: VecDeque<(u64, u64)>,
    /// Intervals dropped from the front of `history` to bound memory.
    pub history_dropped: u64,
    last_payload: u64,
    /// Round-trip times from TCP timestamp echoes, per hook and leg.
    pub rtt: RttSamples,
    /// The kernel's smoothed RTT of the client's (the source's) socket, as
    /// sock_diag read it each interval: (ms since the collection started,
    /// srtt, rttvar), microseconds.
    pub kernel_srtt: VecDeque<(u64, u32, u32)>,
    /// When the connection was first seen closed or reset (ms since the
    /// collection started): the end of its time, whatever moved last.
    pub closed_at_ms: Option<u64>,
    /// When the connection was first read (ms since the collection started).
    pub first_seen_ms: Option<u64>,
    /// `[forward, reverse]`: when each direction last moved.
    pub activity: [Activity; 2],
}

impl Connection {
    fn orientation_max(&self, forward: bool, field: impl Fn(&FlowStats) -> u64) -> u64 {
        self.observations
            .iter()
            .filter(|(o, _)| o.forward == forward)
            .map(|(_, s)| field(s))
            .max()
            .unwrap_or(0)
    }

    /// TCP payload the connection carried, both directions, each byte once,
    /// retransmissions excluded: wherever it was seen, the best view of
    /// each direction counts.
    pub fn payload_bytes(&self) -> u64 {
        let unique = |s: &FlowStats| s.unique_payload_bytes;
        self.orientation_max(true, unique) + self.orientation_max(false, unique)
    }

    /// Payload from client to server (for migrations: source to target).
    pub fn forward_payload_bytes(&self) -> u64 {
        self.orientation_max(true, |s| s.unique_payload_bytes)
    }

    pub fn retransmits(&self) -> u64 {
        let retransmits = |s: &FlowStats| s.retransmits;
        self.orientation_max(true, retransmits) + self.orientation_max(false, retransmits)
    }

    pub fn zero_windows(&self) -> u64 {
        let zero = |s: &FlowStats| s.zero_windows;
        self.orientation_max(true, zero) + self.orientation_max(false, zero)
    }

    /// Every place and direction the connection was seen.
    pub fn observations(&self) -> impl Iterator<Item = Seen<'_>> {
        self.observations.iter().map(|(o, stats)| Seen {
            slot: o.slot,
            direction: o.direction,
            forward: o.forward,
            stats,
        })
    }

    /// The `SEEN_*` bits of every place it was seen.
    pub fn seen(&self) -> u8 {
        self.observations.values().fold(0, |seen, s| seen | s.seen)
    }

    /// The connection's TCP state as the wire shows it.
    pub fn state(&self) -> &'static str {
        let seen = self.seen();
        if seen & SEEN_RST != 0 {
            "reset"
        } else if seen & SEEN_FIN != 0 {
            "closed"
        } else if seen & SEEN_SYN != 0 && seen & SEEN_SYN_ACK == 0 {
            "syn-sent"
        } else {
            "established"
        }
    }

    pub fn first_seen_ns(&self) -> u64 {
        self.observations
            .values()
            .map(|s| s.first_seen_ns)
            .min()
            .unwrap_or(0)
    }

    /// Frame bytes by interface role: per role and direction, the best view.
    pub fn bytes_by_role(&self, slots: &[Option<SlotInfo>]) -> BytesByRole {
        self.by_role(slots, |s| s.bytes)
    }

    /// Wire segments by interface role, counted as bytes are.
    pub fn packets_by_role(&self, slots: &[Option<SlotInfo>]) -> BytesByRole {
        self.by_role(slots, |s| s.packets)
    }

    fn by_role(
        &self,
        slots: &[Option<SlotInfo>],
        field: impl Fn(&FlowStats) -> u64,
    ) -> BytesByRole {
        let mut by_role = BytesByRole::default();
        for role in [Role::Migration, Role::Bridge, Role::Primary, Role::Other] {
            let of_role = |forward: bool| {
                self.observations
                    .iter()
                    .filter(|(o, _)| o.forward == forward && slot_role(slots, o.slot) == role)
                    .map(|(_, s)| field(s))
                    .max()
                    .unwrap_or(0)
            };
            let bytes = of_role(true) + of_role(false);
            match role {
                Role::Migration => by_role.migration = bytes,
                Role::Bridge => by_role.bridge = bytes,
                Role::Primary => by_role.primary = bytes,
                Role::Other => by_role.other = bytes,
            }
        }
        by_role
    }

    /// Every interface the connection was seen on, both directions summed.
    pub fn interfaces(&self, slots: &[Option<SlotInfo>]) -> Vec<InterfaceView> {
        let mut views: BTreeMap<u8, InterfaceView> = BTreeMap::new();
        for (observation, stats) in &self.observations {
            let slot = slots.get(usize::from(observation.slot)).cloned().flatten();
            let view = views
                .entry(observation.slot)
                .or_insert_with(|| InterfaceView {
                    interface: slot.as_ref().map_or_else(
                        || format!("slot{}", observation.slot),
                        |s| s.interface.clone(),
                    ),
                    netns: slot.as_ref().and_then(|s| s.netns.clone()),
                    role: slot.map_or(Role::Other, |s| s.role),
                    vlan: None,
                    bytes: 0,
                    packets: 0,
                    payload_bytes: 0,
                    largest_segment: 0,
                });
            view.bytes += stats.bytes;
            view.packets += stats.packets;
            view.payload_bytes += stats.unique_payload_bytes;
            view.largest_segment = view.largest_segment.max(stats.largest_segment);
            if stats.vlan != 0 {
                view.vlan = Some(stats.vlan);
            }
        }
        views.into_values().collect()
    }
}

fn slot_role(slots: &[Option<SlotInfo>], slot: u8) -> Role {
    slots
        .get(usize::from(slot))
        .cloned()
        .flatten()
        .map_or(Role::Other, |s| s.role)
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct BytesByRole {
    pub migration: u64,
    pub bridge: u64,
    pub primary: u64,
    pub other: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InterfaceView {
    pub interface: String,
    pub netns: Option<String>,
    pub role: Role,
    pub vlan: Option<u16>,
    pub bytes: u64,
    pub packets: u64,
    pub payload_bytes: u64,
    pub largest_segment: u32,
}

/// The migration connections seen so far.
#[derive(Debug, Default)]
pub struct FlowTable {
    connections: BTreeMap<ConnKey, Connection>,
}

impl FlowTable {
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.connections.values()
    }

    pub fn len(&self) -> usize {
        self.connections.len()
    }

    /// Whether the connection is (still) in the table.
    pub fn contains(&self, key: &ConnKey) -> bool {
        self.connections.contains_key(key)
    }

    pub fn is_empty(&self) -> bool {
        self.connections.is_empty()
    }

    /// Takes out the connections to these servers, as a table of their own.
    pub fn take_servers(&mut self, servers: &HashSet<SocketAddr>) -> FlowTable {
        let (taken, kept) = std::mem::take(&mut self.connections)
            .into_iter()
            .partition(|(key, _)| servers.contains(&key.server));
        self.connections = kept;
        FlowTable { connections: taken }
    }

    fn entry(&mut self, key: ConnKey, channel: u8, reason: u8) -> &mut Connection {
        self.connections.entry(key).or_insert_with(|| Connection {
            key,
            channel: Channel::try_from(channel).unwrap_or(Channel::Unknown),
            reason: Reason::try_from(reason).unwrap_or(Reason::Cidr),
            observations: BTreeMap::new(),
            history: VecDeque::new(),
            history_dropped: 0,
            last_payload: 0,
            rtt: RttSamples::default(),
            kernel_srtt: VecDeque::new(),
            closed_at_ms: None,
            first_seen_ms: None,
            activity: [Activity::default(); 2],
        })
    }

    /// Adds an RTT sample seen on `key`'s packets (the echo direction) at
    /// `at_ms` since the collection started.
    pub fn record_rtt(
        &mut self,
        key: &FlowKey,
        channel: u8,
        reason: u8,
        rtt_ns: u64,
        at_ms: u64,
        endpoints: &HashSet<SocketAddr>,
    ) {
        let src = SocketAddr::new(from_addr(&key.src, key.family), key.sport);
        let dst = SocketAddr::new(from_addr(&key.dst, key.family), key.dport);
        // An echo carries no SYN: the same orientation rules as flow entries.
        let (conn_key, forward) = self.orient(src, dst, &FlowStats::default(), endpoints);
        // The echo went client to server: the source echoed, so the TSval
        // had gone from the hook towards the source.
        let leg = if forward { Leg::Source } else { Leg::Target };
        let sample = Sample {
            at_ms,
            us: u32::try_from(rtt_ns / 1000).unwrap_or(u32::MAX).max(1),
        };
        self.entry(conn_key, channel, reason)
            .rtt
            .record(key.slot, leg, sample, RTT_CAP);
    }

    /// Adds the kernel's RTT figures of the sockets that are the client end
    /// of a known connection (the source's: the end that sends the memory).
    /// A socket with no RTT sample yet reads 0, which is no round trip.
    pub fn record_sockets(&mut self, sockets: &[TcpSocket], at_ms: u64) {
        for socket in sockets.iter().filter(|s| s.srtt_us > 0) {
            let key = ConnKey {
                client: socket.local,
                server: socket.remote,
            };
            if let Some(connection) = self.connections.get_mut(&key) {
                connection
                    .kernel_srtt
                    .push_back((at_ms, socket.srtt_us, socket.rttvar_us));
                if connection.kernel_srtt.len() > HISTORY_CAP {
                    connection.kernel_srtt.pop_front();
                }
            }
        }
    }

    /// The connection a flow entry belongs to, and whether its packets go
    /// client to server. A guess (no endpoint, no SYN) follows a connection
    /// already known either way round; evidence (an endpoint, a SYN or
    /// SYN-ACK) wins over an earlier guess, whose entry is folded in.
    fn orient(
        &mut self,
        src: SocketAddr,
        dst: SocketAddr,
        stats: &FlowStats,
        endpoints: &HashSet<SocketAddr>,
    ) -> (ConnKey, bool) {
        let forward = orientation(src, dst, stats, endpoints);
        let key = |forward: bool| {
            if forward {
                ConnKey {
                    client: src,
                    server: dst,
                }
            } else {
                ConnKey {
                    client: dst,
                    server: src,
                }
            }
        };
        let (chosen, reversed) = (key(forward), key(!forward));
        let evidence = endpoints.contains(&src)
            || endpoints.contains(&dst)
            || stats.seen & (SEEN_SYN | SEEN_SYN_ACK) != 0;
        if !self.connections.contains_key(&reversed) {
            return (chosen, forward);
        }
        if !evidence && !self.connections.contains_key(&chosen) {
            return (reversed, !forward);
        }
        // The earlier guess was wrong: its observations, turned round, and
        // its RTT samples belong here.
        if let Some(stray) = self.connections.remove(&reversed) {
            let connection = self.entry(chosen, stray.channel as u8, stray.reason as u8);
            for (mut observation, stats) in stray.observations {
                observation.forward = !observation.forward;
                connection.observations.entry(observation).or_insert(stats);
            }
            connection.rtt.absorb_turned(stray.rtt, RTT_CAP);
        }
        (chosen, forward)
    }

    /// Folds a full read of the flow map in; `at_ms` stamps the interval's
    /// payload deltas. `endpoints` are the published target endpoints,
    /// which decide which side of a connection is the server.
    pub fn update(
        &mut self,
        flows: &[(FlowKey, FlowStats)],
        endpoints: &HashSet<SocketAddr>,
        at_ms: u64,
    ) {
        for (key, stats) in flows {
            // The programs write 0 or 1; anything else is not their entry.
            let Ok(direction) = Direction::try_from(key.direction) else {
                continue;
            };
            let src = SocketAddr::new(from_addr(&key.src, key.family), key.sport);
            let dst = SocketAddr::new(from_addr(&key.dst, key.family), key.dport);
            let (conn_key, forward) = self.orient(src, dst, stats, endpoints);
            let connection = self.entry(conn_key, stats.channel, stats.reason);
            // The strongest reason and a known channel win.
            if let Some(reason) = Reason::try_from(stats.reason)
                .ok()
                .filter(|r| *r < connection.reason)
            {
                connection.reason = reason;
            }
            if connection.channel == Channel::Unknown {
                connection.channel = Channel::try_from(stats.channel).unwrap_or(Channel::Unknown);
            }
            let observation = Observation {
                slot: key.slot,
                direction,
                forward,
            };
            connection.observations.insert(observation, *stats);
        }
        for connection in self.connections.values_mut() {
            if connection.closed_at_ms.is_none() && matches!(connection.state(), "closed" | "reset")
            {
                connection.closed_at_ms = Some(at_ms);
            }
            connection.first_seen_ms.get_or_insert(at_ms);
            for (index, forward) in [true, false].into_iter().enumerate() {
                let payload = connection.orientation_max(forward, |s| s.unique_payload_bytes);
                let retransmits = connection.orientation_max(forward, |s| s.retransmits);
                let zero_windows = connection.orientation_max(forward, |s| s.zero_windows);
                connection.activity[index].update(payload, retransmits, zero_windows, at_ms);
            }
            let payload = connection.payload_bytes();
            let delta = payload.saturating_sub(connection.last_payload);
            connection.last_payload = payload;
            connection.history.push_back((at_ms, delta));
            if connection.history.len() > HISTORY_CAP {
                connection.history.pop_front();
                connection.history_dropped += 1;
            }
        }
    }
}

/// Whether packets `src` -> `dst` go from client to server: the published
/// endpoint is the server; else the side that sent the SYN is the client;
/// else (a connection older than the observation) the lower port serves.
fn orientation(
    src: SocketAddr,
    dst: SocketAddr,
    stats: &FlowStats,
    endpoints: &HashSet<SocketAddr>,
) -> bool {
    if endpoints.contains(&dst) {
        return true;
    }
    if endpoints.contains(&src) {
        return false;
    }
    if stats.seen & SEEN_SYN != 0 {
        return true;
    }
    if stats.seen & SEEN_SYN_ACK != 0 {
        return false;
    }
    (dst.port(), dst.ip()) < (src.port(), src.ip())
}

/// A connection as reports show it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionReport {
    pub src: String,
    pub dst: String,
    pub channel: &'static str,
    pub reason: &'static str,
    pub state: &'static str,
    pub payload_bytes: u64,
    pub forward_payload_bytes: u64,
    pub retransmits: u64,
    pub zero_windows: u64,
    pub bytes_by_role: BytesByRole,
    pub interfaces: Vec<InterfaceView>,
}

impl Connection {
    pub fn report(&self, slots: &[Option<SlotInfo>]) -> ConnectionReport {
        ConnectionReport {
            src: self.key.client.to_string(),
            dst: self.key.server.to_string(),
            channel: self.channel.name(),
            reason: self.reason.name(),
            state: self.state(),
            payload_bytes: self.payload_bytes(),
            forward_payload_bytes: self.forward_payload_bytes(),
            retransmits: self.retransmits(),
            zero_windows: self.zero_windows(),
            bytes_by_role: self.bytes_by_role(slots),
            interfaces: self.interfaces(slots),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::dataplane::to_addr;

    /// The flow key of `src` -> `dst` at one hook, for tests here and in `measure`.
    pub(crate) fn key(src: &str, dst: &str, slot: u8, direction: Direction) -> FlowKey {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let (s, family) = to_addr(src.ip());
        let (d, _) = to_addr(dst.ip());
        FlowKey {
            src: s,
            dst: d,
            sport: src.port(),
            dport: dst.port(),
            family,
            slot,
            direction: direction as u8,
            _pad: 0,
        }
    }

    fn stats(bytes: u64, unique: u64) -> FlowStats {
        FlowStats {
            bytes,
            unique_payload_bytes: unique,
            retransmitted_bytes: 0,
            channel: Channel::Memory as u8,
            reason: Reason::Endpoint as u8,
            ..FlowStats::default()
        }
    }

    fn slots() -> Vec<Option<SlotInfo>> {
        let slot = |interface: &str, role| {
            Some(SlotInfo {
                interface: interface.into(),
                netns: None,
                role,
                mtu: Some(1500),
            })
        };
        vec![
            slot("migration0", Role::Migration),
            slot("eth1", Role::Migration),
            slot("eth0", Role::Primary),
        ]
    }

    #[test]
    fn one_connection_seen_in_several_places_counts_its_payload_once() {
        let target: SocketAddr = "10.200.5.12:40000".parse().unwrap();
        let endpoints = HashSet::from([target]);
        let (c, s) = ("10.200.5.11:50000", "10.200.5.12:40000");
        let flows = [
            (key(c, s, 0, Direction::Egress), stats(1100, 1000)),
            (key(c, s, 1, Direction::Egress), stats(1100, 1000)),
            // One hook missed a segment: the best view counts.
            (key(c, s, 0, Direction::Ingress), stats(900, 800)),
            (key(s, c, 0, Direction::Ingress), stats(60, 10)),
        ];
        let mut table = FlowTable::default();
        table.update(&flows, &endpoints, 100);
        assert_eq!(table.len(), 1);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.key.server, target);
        assert_eq!(conn.payload_bytes(), 1010);
        assert_eq!(conn.forward_payload_bytes(), 1000);
        let by_role = conn.bytes_by_role(&slots());
        assert_eq!((by_role.migration, by_role.primary), (1160, 0));
        assert_eq!(conn.history.back(), Some(&(100, 1010)));

        // The next read: only the delta goes into the history.
        let more = [(key(c, s, 0, Direction::Egress), stats(2200, 2000))];
        table.update(&more, &endpoints, 200);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.history.back(), Some(&(200, 1000)));
    }

    #[test]
    fn without_endpoints_the_syn_decides_the_client() {
        let mut syn = stats(60, 0);
        syn.seen = SEEN_SYN;
        let flows = [(
            key("10.0.0.2:7000", "10.0.0.1:45000", 2, Direction::Ingress),
            syn,
        )];
        let mut table = FlowTable::default();
        table.update(&flows, &HashSet::new(), 0);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.key.client.ip(), "10.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(conn.state(), "syn-sent");
        assert_eq!(conn.bytes_by_role(&slots()).primary, 60);
    }

    #[test]
    fn an_rtt_sample_before_the_first_read_joins_its_connection() {
        // Ports that make the guess without endpoints or a SYN wrong: the
        // client's ephemeral port is the lower one.
        let (c, s) = ("10.200.5.11:35000", "10.200.5.12:43000");
        let mut table = FlowTable::default();
        let echo = key(s, c, 0, Direction::Ingress);
        table.record_rtt(&echo, 0, 2, 50_000, 5, &HashSet::new());
        let mut syn = stats(60, 0);
        syn.seen = SEEN_SYN;
        table.update(
            &[(key(c, s, 0, Direction::Egress), syn)],
            &HashSet::new(),
            100,
        );
        assert_eq!(table.len(), 1);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.key.server, s.parse().unwrap());
        // Echoed by the target (server to client): the target leg, once
        // the guess that took the target for the client is corrected.
        let leg = |conn: &Connection| -> Vec<u32> {
            conn.rtt.leg(0, Leg::Target).iter().map(|s| s.us).collect()
        };
        assert_eq!(leg(conn), [50]);
        // Later samples find it whichever way they come.
        table.record_rtt(&echo, 0, 2, 70_000, 150, &HashSet::new());
        assert_eq!(table.len(), 1);
        assert_eq!(leg(table.connections().next().unwrap()), [50, 70]);
        // The source's echoes, the other leg, make it a round trip: the
        // target's leg plus the source's least turnaround.
        table.record_rtt(
            &key(c, s, 0, Direction::Egress),
            0,
            2,
            9_000,
            160,
            &HashSet::new(),
        );
        let path = table.connections().next().unwrap().rtt.path(0);
        assert_eq!(path.iter().map(|s| s.us).collect::<Vec<_>>(), [59, 79]);
    }

    #[test]
    fn a_guess_made_without_evidence_is_corrected_by_it() {
        let (c, s) = ("10.200.5.11:35000", "10.200.5.12:43000");
        let mut table = FlowTable::default();
        // Mid-stream, no SYN, no endpoint: the lower port is taken to serve.
        let data = key(c, s, 1, Direction::Ingress);
        table.update(&[(data, stats(1000, 900))], &HashSet::new(), 100);
        assert_eq!(
            table.connections().next().unwrap().key.server,
            c.parse().unwrap()
        );
        // The endpoint, published later, settles it: one connection.
        let endpoints = HashSet::from([s.parse().unwrap()]);
        let mut syn = stats(2000, 1900);
        syn.seen = SEEN_SYN;
        table.update(
            &[
                (data, stats(1000, 900)),
                (key(c, s, 0, Direction::Egress), syn),
            ],
            &endpoints,
            200,
        );
        assert_eq!(table.len(), 1);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.key.server, s.parse().unwrap());
        assert_eq!(conn.forward_payload_bytes(), 1900);
        assert_eq!(conn.interfaces(&slots()).len(), 2);
    }

    #[test]
    fn history_stays_bounded() {
        let flows = [(
            key("10.0.0.2:7000", "10.0.0.1:45000", 0, Direction::Egress),
            stats(1, 1),
        )];
        let mut table = FlowTable::default();
        for i in 0..HISTORY_CAP as u64 + 5 {
            table.update(&flows, &HashSet::new(), i);
        }
        let conn = table.connections().next().unwrap();
        assert_eq!((conn.history.len(), conn.history_dropped), (HISTORY_CAP, 5));
    }

    #[test]
    fn a_socket_without_an_rtt_sample_is_not_read_as_zero() {
        let (c, s) = ("10.200.5.11:35000", "10.200.5.12:43000");
        let mut syn = stats(60, 0);
        syn.seen = SEEN_SYN;
        let mut table = FlowTable::default();
        table.update(
            &[(key(c, s, 0, Direction::Egress), syn)],
            &HashSet::new(),
            100,
        );
        let socket = |srtt_us| TcpSocket {
            local: c.parse().unwrap(),
            remote: s.parse().unwrap(),
            srtt_us,
            rttvar_us: 0,
        };
        table.record_sockets(&[socket(0)], 100);
        table.record_sockets(&[socket(240)], 200);
        let conn = table.connections().next().unwrap();
        assert_eq!(conn.kernel_srtt, [(200, 240, 0)]);
    }
}
