//! The state of every migration at one moment of a running observation:
//! its figures, its connections' rates, recent RTT and idle times, and the
//! named causes that hold now. `watch` shows it, the metrics expose it.

use std::collections::{BTreeMap, HashMap, VecDeque};

use hdrhistogram::Histogram;
use serde::Serialize;
use verifier_ebpf::{NeighborKey, NeighborStats};

use super::{
    budget::{budget, BudgetReport, BudgetSettings, VmSize},
    diagnosis::{current_stall_ms, diagnose, recent_rate_bps, Phase, Scene, Subject},
    migration::{figures, group, Figures},
    verdict::{verdict, Expectations, Reason, Verdict},
};
use crate::{
    config::{endpoints::channel_name, Endpoint},
    dataplane::Role,
    flows::{ConnKey, Connection, FlowTable, SlotInfo},
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
    pub settings: BudgetSettings,
    pub size: Option<VmSize>,
    pub expectations: Expectations,
    pub interval_ms: u64,
    /// Per connection: (when, how many RTT samples it had then), to take
    /// percentiles of the recent samples only.
    rtt_marks: HashMap<ConnKey, VecDeque<(u64, usize)>>,
}

impl Evaluator {
    pub fn new(
        endpoints: Vec<Endpoint>,
        settings: BudgetSettings,
        size: Option<VmSize>,
        expectations: Expectations,
        interval_ms: u64,
    ) -> Self {
        Evaluator {
            endpoints,
            endpoints_since_ms: 0,
            settings,
            size,
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

    pub fn evaluate(
        &mut self,
        table: &FlowTable,
        slots: &[Option<SlotInfo>],
        neighbors: &[(NeighborKey, NeighborStats)],
        now_ms: u64,
    ) -> Snapshot {
        for connection in table.connections() {
            let marks = self.rtt_marks.entry(connection.key).or_default();
            marks.push_back((now_ms, connection.rtt_us.len()));
            while marks
                .front()
                .is_some_and(|(at, _)| now_ms.saturating_sub(*at) > RECENT_RTT_MS)
            {
                marks.pop_front();
            }
        }
        let groups = group(table, &self.endpoints);
        let mut judged = Vec::new();
        for group in &groups {
            let figures = figures(group, slots, self.interval_ms);
            let size = self.size.clone().unwrap_or(VmSize {
                bytes: figures.forward_payload_bytes,
                source: "assumed: the data sent".into(),
            });
            let budget = budget(&self.settings, &size, &figures);
            judged.push((figures, budget));
        }
        let subjects: Vec<Subject> = groups
            .iter()
            .zip(&judged)
            .map(|(group, (figures, budget))| Subject {
                group,
                figures,
                budget,
            })
            .collect();
        let scene = Scene {
            table,
            slots,
            endpoints: &self.endpoints,
            neighbors,
            expectations: &self.expectations,
            now_ms,
            endpoints_since_ms: self.endpoints_since_ms,
            phase: Phase::Live,
        };
        let causes = diagnose(&scene, &subjects);
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
        for (group, (figures, budget)) in groups.iter().zip(judged) {
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
                progress_timeout_s: self.settings.progress_timeout_s,
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
            channel: channel_name(channel),
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
