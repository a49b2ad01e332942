//! The state of every migration at one moment of a running observation:
//! its figures, its connections' rates, recent RTT and idle times, and the
//! named causes that hold now. `watch` shows it, the metrics expose it.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::Serialize;
use verifier_ebpf::{NeighborKey, NeighborStats};

use super::{
    budget::BudgetReport,
    judge::{judge, Expectations, Observation, Phase},
    migration::Figures,
    reasons::{verdict, Reason},
    rules::rate::{current_stall_ms, recent_rate_bps},
};
use crate::{
    config::Endpoint,
    dataplane::Role,
    flows::{Connection, FlowTable, SlotInfo},
    intent::{Ended, Limits, VmSize},
    verdict::Verdict,
};

/// "Now" for rates: the last second.
const NOW_WINDOW_MS: u64 = 1000;
/// "Recent" for RTT percentiles.
const RECENT_RTT_MS: u64 = 10_000;

/// One connection as the live view shows it.
#[derive(Clone, Debug, Serialize)]
pub struct ConnectionRow {
    pub src: String,
    pub dst: String,
    pub channel: &'static str,
    /// syn-sent, established, closed (FIN) or reset.
    pub state: &'static str,
    pub rate_now_bps: u64,
    pub payload_bytes: u64,
    pub rtt_p50_us: Option<u64>,
    pub rtt_p99_us: Option<u64>,
    pub retransmits: u64,
    pub zero_windows: u64,
    /// Since the payload last moved (or since it appeared, if it never did).
    pub idle_s: f64,
    /// Roles of the interfaces it crossed, and where.
    pub roles: Vec<Role>,
    pub interfaces: Vec<String>,
}

/// One migration now.
#[derive(Clone, Debug, Serialize)]
pub struct MigrationRow {
    pub id: String,
    pub targets: Vec<String>,
    /// connecting, moving, stalled, closed (every connection closed by FIN
    /// or reset, how it ended unknown), completed or failed (as its VMI
    /// says), expected (published, nothing on the wire yet) or queued
    /// (marked for evacuation, waiting for a free slot under the parallel
    /// limits: no target yet).
    pub state: &'static str,
    /// How long it has been queued, while it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queued_s: Option<f64>,
    pub rate_now_bps: u64,
    pub rate_mean_bps: u64,
    pub payload_bytes: u64,
    pub rtt_p50_us: Option<u64>,
    pub rtt_p99_us: Option<u64>,
    pub retransmits: u64,
    pub zero_windows: u64,
    /// Since the payload last moved, while a connection is open.
    pub stall_s: f64,
    pub progress_timeout_s: u64,
    pub roles: Vec<Role>,
    pub connections: Vec<ConnectionRow>,
    pub causes: Vec<Reason>,
    #[serde(skip)]
    pub figures: Option<Figures>,
    #[serde(skip)]
    pub budget: Option<BudgetReport>,
}

impl MigrationRow {
    /// A migration with nothing on the wire yet: `expected` (published) or
    /// `queued` (waiting for a slot).
    pub fn waiting(
        id: String,
        targets: Vec<String>,
        state: &'static str,
        progress_timeout_s: u64,
    ) -> Self {
        MigrationRow {
            id,
            targets,
            state,
            queued_s: None,
            rate_now_bps: 0,
            rate_mean_bps: 0,
            payload_bytes: 0,
            rtt_p50_us: None,
            rtt_p99_us: None,
            retransmits: 0,
            zero_windows: 0,
            stall_s: 0.0,
            progress_timeout_s,
            roles: Vec::new(),
            connections: Vec::new(),
            causes: Vec::new(),
            figures: None,
            budget: None,
        }
    }
}

/// Every migration now, and the causes that hold.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub at_ms: u64,
    /// PASS, WARN or FAIL from the causes that hold now.
    pub verdict: Verdict,
    pub migrations: Vec<MigrationRow>,
    /// Each source node's migrations on the move now, against its limit.
    pub nodes: Vec<NodeRow>,
    /// Causes not tied to one migration.
    pub causes: Vec<Reason>,
}

/// One source node now: how many of its migrations move at once, against
/// `parallelOutboundMigrationsPerNode`, and how fast together.
#[derive(Clone, Debug, Serialize)]
pub struct NodeRow {
    pub source: String,
    /// Its migrations connecting, moving or stalled now.
    pub running: Vec<String>,
    pub parallel_limit: u64,
    /// The most that moved at once so far.
    pub peak_parallel: usize,
    pub rate_now_bps: u64,
}

impl Snapshot {
    pub fn all_causes(&self) -> impl Iterator<Item = &Reason> {
        self.migrations
            .iter()
            .flat_map(|m| m.causes.iter())
            .chain(&self.causes)
    }
}

/// What the live evaluation knows beyond each tick's table.
pub struct Evaluator {
    pub endpoints: Vec<Endpoint>,
    /// When the endpoints last changed, ms since the observation started.
    pub endpoints_since_ms: u64,
    pub limits: Limits,
    pub size: Option<VmSize>,
    /// Each VMI's size, by migration id.
    pub sizes: BTreeMap<String, VmSize>,
    /// Migrations waiting in KubeVirt's queue (marked for evacuation, no
    /// target yet), with when they were first seen waiting.
    queued: BTreeMap<String, u64>,
    /// How the migrations that ended did, where their VMI says: the wire
    /// sees a cancelled migration close its connections as cleanly as a
    /// completed one.
    pub ended: BTreeMap<String, Ended>,
    pub expectations: Expectations,
    pub interval_ms: u64,
}

impl Evaluator {
    pub fn new(
        endpoints: Vec<Endpoint>,
        limits: Limits,
        size: Option<VmSize>,
        expectations: Expectations,
        interval_ms: u64,
    ) -> Self {
        Evaluator {
            endpoints,
            endpoints_since_ms: 0,
            limits,
            size,
            sizes: BTreeMap::new(),
            queued: BTreeMap::new(),
            ended: BTreeMap::new(),
            expectations,
            interval_ms,
        }
    }

    /// Replaces the endpoints (a VMI document changed).
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>, at_ms: u64) {
        self.expectations.expect_traffic |= !endpoints.is_empty();
        self.endpoints = endpoints;
        self.endpoints_since_ms = at_ms;
    }

    /// The migrations waiting in the queue now; each keeps the time it was
    /// first seen waiting.
    pub fn set_queued(&mut self, ids: &[String], at_ms: u64) {
        self.queued.retain(|id, _| ids.contains(id));
        for id in ids {
            self.queued.entry(id.clone()).or_insert(at_ms);
        }
    }

    /// [`Evaluator::evaluate`] on what the collector read at `tick`,
    /// ARP included (read once per evaluation: it changes slowly).
    #[cfg(feature = "dataplane")]
    pub fn evaluate_tick(&mut self, tick: &crate::flows::Tick) -> Snapshot {
        let neighbors = tick.dataplane.neighbors().unwrap_or_default();
        self.evaluate(
            tick.table,
            tick.slots,
            &neighbors,
            tick.at.as_millis() as u64,
        )
    }

    pub fn evaluate(
        &mut self,
        table: &FlowTable,
        slots: &[Option<SlotInfo>],
        neighbors: &[(NeighborKey, NeighborStats)],
        now_ms: u64,
    ) -> Snapshot {
        let judgement = judge(&Observation {
            table,
            slots,
            neighbors,
            endpoints: &self.endpoints,
            endpoints_since_ms: self.endpoints_since_ms,
            expectations: &self.expectations,
            limits: &self.limits,
            size: self.size.as_ref(),
            sizes: &self.sizes,
            ended: &self.ended,
            interval_ms: self.interval_ms,
            now_ms,
            phase: Phase::Live,
            health: None,
        });
        let causes = judgement.reasons;
        let mut by_migration: BTreeMap<String, Vec<Reason>> = BTreeMap::new();
        let mut unattached = Vec::new();
        for cause in &causes {
            match &cause.migration {
                Some(id) => by_migration
                    .entry(id.clone())
                    .or_default()
                    .push(cause.clone()),
                None => unattached.push(cause.clone()),
            }
        }
        let mut migrations = Vec::new();
        for (group, judged) in judgement.groups.iter().zip(judgement.migrations) {
            let (figures, budget) = (judged.figures, judged.budget);
            let connections: Vec<ConnectionRow> = group
                .connections
                .iter()
                .map(|c| self.connection_row(c, slots, now_ms))
                .collect();
            let open = group.connections.iter().any(|c| c.closed_at_ms.is_none());
            let stall_ms = if open {
                current_stall_ms(&figures.progress, now_ms)
            } else {
                0
            };
            let moved = figures.payload_bytes > 0;
            // The VMI's word first: a migration cancelled through a
            // blackhole never shows its FIN on the wire.
            let state = match self.ended.get(&figures.id) {
                Some(Ended::Completed) => "completed",
                Some(Ended::Failed) => "failed",
                None if !moved && group.connections.iter().all(|c| c.state() == "syn-sent") => {
                    "connecting"
                }
                None if open && stall_ms >= 1000 => "stalled",
                None if open => "moving",
                // A completed migration can close a connection by reset
                // (seen in the lab's drain): a reset decides nothing.
                None => "closed",
            };
            let mut recent = Vec::new();
            for c in &group.connections {
                recent.extend(recent_rtt(c, now_ms));
            }
            let (rtt_p50_us, rtt_p99_us) = percentiles(&recent);
            migrations.push(MigrationRow {
                id: figures.id.clone(),
                targets: figures.targets.clone(),
                state,
                queued_s: None,
                rate_now_bps: recent_rate_bps(&figures.progress, now_ms, NOW_WINDOW_MS),
                rate_mean_bps: figures.throughput_bps.mean,
                payload_bytes: figures.payload_bytes,
                rtt_p50_us,
                rtt_p99_us,
                retransmits: figures.retransmits,
                zero_windows: figures.zero_windows,
                stall_s: stall_ms as f64 / 1000.0,
                progress_timeout_s: budget.progress_timeout_s,
                roles: roles(&figures.bytes_by_role),
                connections,
                causes: by_migration.remove(&figures.id).unwrap_or_default(),
                figures: Some(figures),
                budget: Some(budget),
            });
        }
        // Published migrations with nothing on the wire yet.
        let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for endpoint in &self.endpoints {
            let id = endpoint
                .migration
                .clone()
                .unwrap_or_else(|| format!("target {}", endpoint.addr.ip()));
            if !migrations.iter().any(|m| m.id == id) {
                expected
                    .entry(id)
                    .or_default()
                    .push(endpoint.addr.to_string());
            }
        }
        for (id, targets) in expected {
            let causes = by_migration.remove(&id).unwrap_or_default();
            migrations.push(MigrationRow {
                causes,
                ..MigrationRow::waiting(id, targets, "expected", self.limits.progress_timeout_s)
            });
        }
        // Waiting for a slot: no target, nothing published yet.
        for (id, since) in &self.queued {
            if migrations.iter().any(|m| &m.id == id) {
                continue;
            }
            migrations.push(MigrationRow {
                causes: by_migration.remove(id).unwrap_or_default(),
                queued_s: Some(now_ms.saturating_sub(*since) as f64 / 1000.0),
                ..MigrationRow::waiting(
                    id.clone(),
                    Vec::new(),
                    "queued",
                    self.limits.progress_timeout_s,
                )
            });
        }
        let nodes = judgement
            .nodes
            .iter()
            .map(|node| {
                let mine = |m: &&MigrationRow| node.timeline.iter().any(|s| s.id == m.id);
                let running: Vec<&MigrationRow> = migrations
                    .iter()
                    .filter(mine)
                    .filter(|m| matches!(m.state, "connecting" | "moving" | "stalled"))
                    .collect();
                NodeRow {
                    source: node.source.clone(),
                    running: running.iter().map(|m| m.id.clone()).collect(),
                    parallel_limit: node.parallel_limit,
                    peak_parallel: node.peak_parallel,
                    rate_now_bps: running.iter().map(|m| m.rate_now_bps).sum(),
                }
            })
            .collect();
        // Causes about an address in the CIDR that no migration names.
        for (id, causes) in by_migration {
            unattached.extend(causes.into_iter().map(|mut c| {
                c.migration = Some(id.clone());
                c
            }));
        }
        Snapshot {
            at_ms: now_ms,
            verdict: verdict(&causes),
            migrations,
            nodes,
            causes: unattached,
        }
    }

    fn connection_row(
        &self,
        connection: &Connection,
        slots: &[Option<SlotInfo>],
        now_ms: u64,
    ) -> ConnectionRow {
        let from = now_ms.saturating_sub(NOW_WINDOW_MS);
        let moved: u64 = connection
            .history
            .iter()
            .rev()
            .take_while(|(at, _)| *at > from)
            .map(|(_, bytes)| bytes)
            .sum();
        let last_moved = connection
            .activity
            .iter()
            .filter_map(|a| a.payload_ms)
            .max()
            .or(connection.first_seen_ms)
            .unwrap_or(now_ms);
        let end = connection.closed_at_ms.unwrap_or(now_ms).min(now_ms);
        let (rtt_p50_us, rtt_p99_us) = percentiles(&recent_rtt(connection, now_ms));
        let views = connection.interfaces(slots);
        let mut roles: Vec<Role> = views.iter().map(|v| v.role).collect();
        roles.sort_by_key(|r| *r as u8);
        roles.dedup();
        // What the target published beats what the observers knew at first.
        let channel = self
            .endpoints
            .iter()
            .find(|e| e.addr == connection.key.server)
            .map_or(connection.channel, |e| e.channel);
        ConnectionRow {
            src: connection.key.client.to_string(),
            dst: connection.key.server.to_string(),
            channel: channel.name(),
            state: connection.state(),
            rate_now_bps: moved * 8 * 1000 / NOW_WINDOW_MS,
            payload_bytes: connection.payload_bytes(),
            rtt_p50_us,
            rtt_p99_us,
            retransmits: connection.retransmits(),
            zero_windows: connection.zero_windows(),
            idle_s: end.saturating_sub(last_moved) as f64 / 1000.0,
            roles,
            interfaces: views
                .iter()
                .map(|v| match &v.netns {
                    Some(ns) => format!("{}@{ns}", v.interface),
                    None => v.interface.clone(),
                })
                .collect(),
        }
    }
}

fn roles(by_role: &crate::flows::BytesByRole) -> Vec<Role> {
    [
        (Role::Migration, by_role.migration),
        (Role::Bridge, by_role.bridge),
        (Role::Primary, by_role.primary),
        (Role::Other, by_role.other),
    ]
    .into_iter()
    .filter(|(_, bytes)| *bytes > 0)
    .map(|(role, _)| role)
    .collect()
}

/// The path's RTT samples of the last [`RECENT_RTT_MS`], microseconds.
fn recent_rtt(connection: &Connection, now_ms: u64) -> Vec<u32> {
    connection
        .rtt
        .path(now_ms.saturating_sub(RECENT_RTT_MS))
        .iter()
        .map(|s| s.us)
        .collect()
}

fn percentiles(samples: &[u32]) -> (Option<u64>, Option<u64>) {
    if samples.is_empty() {
        return (None, None);
    }
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("valid bounds");
    for sample in samples {
        histogram.saturating_record(u64::from(*sample));
    }
    (
        Some(histogram.value_at_quantile(0.5)),
        Some(histogram.value_at_quantile(0.99)),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use verifier_ebpf::{
        Channel, Direction, FlowKey, FlowStats, Reason as Why, SEEN_FIN, SEEN_SYN, SEEN_SYN_ACK,
    };

    use super::*;

    fn key(src: &str, dst: &str) -> FlowKey {
        crate::flows::tests::key(src, dst, 0, Direction::Egress)
    }

    fn evaluator(endpoints: &[&str]) -> Evaluator {
        let endpoints = endpoints
            .iter()
            .map(|e| Endpoint {
                addr: e.parse().unwrap(),
                channel: Channel::Memory,
                migration: Some("ns/vm".into()),
            })
            .collect();
        Evaluator::new(
            endpoints,
            Limits::default(),
            None,
            Expectations::default(),
            100,
        )
    }

    fn slots() -> Vec<Option<SlotInfo>> {
        vec![Some(SlotInfo {
            interface: "migration0".into(),
            netns: None,
            role: Role::Migration,
            mtu: Some(1500),
        })]
    }

    #[test]
    fn rows_say_what_each_migration_and_flow_does_now() {
        let (client, server) = ("10.200.5.11:50000", "10.200.5.12:40000");
        let mut live = evaluator(&[server]);
        let table = FlowTable::default();
        // Published, nothing yet.
        let snapshot = live.evaluate(&table, &slots(), &[], 1000);
        assert_eq!(snapshot.migrations.len(), 1);
        assert_eq!(
            (
                snapshot.migrations[0].id.as_str(),
                snapshot.migrations[0].state
            ),
            ("ns/vm", "expected")
        );

        // 1.25 MB per 100 ms (100 Mbit/s) for a second, with RTT samples.
        let endpoints = HashSet::from([server.parse().unwrap()]);
        let mut table = FlowTable::default();
        let stats = |payload: u64, seen: u8| FlowStats {
            bytes: payload,
            packets: payload / 1448,
            unique_payload_bytes: payload,
            seen,
            channel: Channel::Memory as u8,
            reason: Why::Endpoint as u8,
            ..FlowStats::default()
        };
        for tick in 1..=10u64 {
            table.update(
                &[(
                    key(client, server),
                    stats(tick * 1_250_000, SEEN_SYN | SEEN_SYN_ACK),
                )],
                &endpoints,
                1000 + tick * 100,
            );
        }
        // The target's echo (200 us to it and back) and the source's (50 us
        // of turnaround): a path of 250 us.
        table.record_rtt(&key(server, client), 2, 1, 200_000, 1900, &endpoints);
        table.record_rtt(&key(client, server), 2, 1, 50_000, 1950, &endpoints);
        let snapshot = live.evaluate(&table, &slots(), &[], 2000);
        let m = &snapshot.migrations[0];
        assert_eq!((m.id.as_str(), m.state), ("ns/vm", "moving"));
        assert_eq!(m.rate_now_bps, 100_000_000);
        assert_eq!(m.payload_bytes, 12_500_000);
        assert_eq!(
            (m.rtt_p50_us, m.roles.as_slice()),
            (Some(250), &[Role::Migration][..])
        );
        let flow = &m.connections[0];
        assert_eq!(
            (flow.state, flow.channel, flow.idle_s),
            ("established", "memory", 0.0)
        );
        assert_eq!(snapshot.verdict, Verdict::Pass);

        // Then nothing moves for two seconds: stalled, idle, rate 0.
        for tick in 11..=30u64 {
            table.update(
                &[(
                    key(client, server),
                    stats(12_500_000, SEEN_SYN | SEEN_SYN_ACK),
                )],
                &endpoints,
                1000 + tick * 100,
            );
        }
        let m = &live.evaluate(&table, &slots(), &[], 4000).migrations[0];
        assert_eq!((m.state, m.rate_now_bps, m.stall_s), ("stalled", 0, 2.0));
        assert_eq!(m.connections[0].idle_s, 2.0);

        // Closed cleanly: no stall, and how it ended is the VMI's to say (a
        // cancelled migration closes its connections just as cleanly).
        table.update(
            &[(
                key(client, server),
                stats(12_500_000, SEEN_SYN | SEEN_SYN_ACK | SEEN_FIN),
            )],
            &endpoints,
            4100,
        );
        let m = &live.evaluate(&table, &slots(), &[], 4100).migrations[0];
        assert_eq!((m.state, m.stall_s), ("closed", 0.0));
        for (ended, state) in [(Ended::Failed, "failed"), (Ended::Completed, "completed")] {
            live.ended = BTreeMap::from([("ns/vm".to_string(), ended)]);
            let m = &live.evaluate(&table, &slots(), &[], 4100).migrations[0];
            assert_eq!(m.state, state);
        }
    }

    #[test]
    fn queued_migrations_wait_beside_the_running_ones() {
        let (client, server) = ("10.200.5.11:50000", "10.200.5.12:40000");
        let mut live = evaluator(&[server]);
        live.set_queued(&["ns/vm3".to_string()], 1000);
        let endpoints = HashSet::from([server.parse().unwrap()]);
        let mut table = FlowTable::default();
        for tick in 1..=10u64 {
            let stats = FlowStats {
                bytes: tick * 1_250_000,
                unique_payload_bytes: tick * 1_250_000,
                seen: SEEN_SYN | SEEN_SYN_ACK,
                channel: Channel::Memory as u8,
                reason: Why::Endpoint as u8,
                ..FlowStats::default()
            };
            table.update(
                &[(key(client, server), stats)],
                &endpoints,
                1000 + tick * 100,
            );
        }
        let snapshot = live.evaluate(&table, &slots(), &[], 2500);
        let rows: Vec<(&str, &str, Option<f64>)> = snapshot
            .migrations
            .iter()
            .map(|m| (m.id.as_str(), m.state, m.queued_s))
            .collect();
        assert_eq!(
            rows,
            [("ns/vm", "moving", None), ("ns/vm3", "queued", Some(1.5))]
        );
        let node = &snapshot.nodes[0];
        assert_eq!(
            (
                node.source.as_str(),
                node.running.as_slice(),
                node.parallel_limit
            ),
            ("10.200.5.11", &["ns/vm".to_string()][..], 2)
        );
        // Its target listens: no longer queued (it is published now).
        live.set_queued(&[], 2600);
        assert!(live
            .evaluate(&table, &slots(), &[], 2600)
            .migrations
            .iter()
            .all(|m| m.state != "queued"));
    }
}
