//! The state of every migration at one moment of a running observation:
//! its figures, its connections' rates, recent RTT and idle times, and the
//! named causes that hold now. `watch` shows it, the metrics expose it.

use std::collections::{BTreeMap, HashMap, VecDeque};

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
    flows::{ConnKey, Connection, FlowTable, SlotInfo},
    intent::{Limits, VmSize},
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
    /// connecting, moving, stalled, completed, failed, or expected (published,
    /// nothing on the wire yet).
    pub state: &'static str,
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

/// Every migration now, and the causes that hold.
#[derive(Clone, Debug, Serialize)]
pub struct Snapshot {
    pub at_ms: u64,
    /// PASS, WARN or FAIL from the causes that hold now.
    pub verdict: Verdict,
    pub migrations: Vec<MigrationRow>,
    /// Causes not tied to one migration.
    pub causes: Vec<Reason>,
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
    pub expectations: Expectations,
    pub interval_ms: u64,
    /// Per connection: (when, how many RTT samples it had then), to take
    /// percentiles of the recent samples only.
    rtt_marks: HashMap<ConnKey, VecDeque<(u64, usize)>>,
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
            expectations,
            interval_ms,
            rtt_marks: HashMap::new(),
        }
    }

    /// Replaces the endpoints (a VMI document changed).
    pub fn set_endpoints(&mut self, endpoints: Vec<Endpoint>, at_ms: u64) {
        self.expectations.expect_traffic |= !endpoints.is_empty();
        self.endpoints = endpoints;
        self.endpoints_since_ms = at_ms;
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
        // Connections gone from the table (a judged migration's, taken
        // out) leave no marks behind: a long run keeps only the live ones.
        self.rtt_marks.retain(|key, _| table.contains(key));
        for connection in table.connections() {
            // A connection new to us: every sample it has so far is recent.
            let marks = self
                .rtt_marks
                .entry(connection.key)
                .or_insert_with(|| VecDeque::from([(now_ms, 0)]));
            marks.push_back((now_ms, connection.rtt_us.len()));
            while marks
                .front()
                .is_some_and(|(at, _)| now_ms.saturating_sub(*at) > RECENT_RTT_MS)
            {
                marks.pop_front();
            }
        }
        // Live, a migration is judged while it runs.
        let running = BTreeMap::new();
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
            ended: &running,
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
            let state = match () {
                _ if !moved && group.connections.iter().all(|c| c.state() == "syn-sent") => {
                    "connecting"
                }
                _ if open && stall_ms >= 1000 => "stalled",
                _ if open => "moving",
                _ if group.connections.iter().any(|c| c.state() == "reset") => "failed",
                _ => "completed",
            };
            let mut recent = Vec::new();
            for c in &group.connections {
                recent.extend_from_slice(self.recent_rtt(c));
            }
            let (rtt_p50_us, rtt_p99_us) = percentiles(&recent);
            migrations.push(MigrationRow {
                id: figures.id.clone(),
                targets: figures.targets.clone(),
                state,
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
            migrations.push(MigrationRow {
                causes: by_migration.remove(&id).unwrap_or_default(),
                id,
                targets,
                state: "expected",
                rate_now_bps: 0,
                rate_mean_bps: 0,
                payload_bytes: 0,
                rtt_p50_us: None,
                rtt_p99_us: None,
                retransmits: 0,
                zero_windows: 0,
                stall_s: 0.0,
                progress_timeout_s: self.limits.progress_timeout_s,
                roles: Vec::new(),
                connections: Vec::new(),
                figures: None,
                budget: None,
            });
        }
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
            causes: unattached,
        }
    }

    fn recent_rtt<'a>(&self, connection: &'a Connection) -> &'a [u32] {
        let from = self
            .rtt_marks
            .get(&connection.key)
            .and_then(|marks| marks.front())
            .map_or(0, |(_, len)| *len);
        &connection.rtt_us[from.min(connection.rtt_us.len())..]
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
        let (rtt_p50_us, rtt_p99_us) = percentiles(self.recent_rtt(connection));
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
        table.record_rtt(&key(server, client), 2, 1, 250_000, &endpoints);
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

        // Closed: completed, no stall.
        table.update(
            &[(
                key(client, server),
                stats(12_500_000, SEEN_SYN | SEEN_SYN_ACK | SEEN_FIN),
            )],
            &endpoints,
            4100,
        );
        let m = &live.evaluate(&table, &slots(), &[], 4100).migrations[0];
        assert_eq!((m.state, m.stall_s), ("completed", 0.0));
    }
}
