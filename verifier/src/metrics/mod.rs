//! Prometheus exposition of what migverify measures while it runs
//! (`--metrics-listen` on `watch` and `verify`): per migration and role,
//! throughput and RTT histograms, stalls, the verdict and the named causes,
//! and migverify's own health. Every metric is documented in
//! docs/metrics.md.
//!
//! Counters and histograms are fed incrementally (each progress interval
//! and RTT sample once) so they only grow, as Prometheus expects, even
//! though the measurements behind them are recomputed every time.

pub mod auth;
pub mod server;
mod text;

use std::collections::{BTreeMap, HashMap};

use verifier_ebpf::Direction;

pub use self::server::{bind, serve, Access, BindError, Exposition, ListenAddr};
use self::text::{Histogram, Kind, Page};
use crate::{
    dataplane::{AttachMode, Dataplane, DataplaneStats},
    flows::{BytesByRole, ConnKey, FlowTable, SlotInfo, Tick},
    measure::{live::Snapshot, reasons},
    verdict::Verdict,
};

/// Payload rate buckets, bytes per second: 1 Mbit/s to 40 Gbit/s.
const THROUGHPUT_BOUNDS: &[f64] = &[
    125e3, 1.25e6, 12.5e6, 31.25e6, 62.5e6, 125e6, 312.5e6, 625e6, 1.25e9, 2.5e9, 5e9,
];
/// RTT buckets, seconds: 50 us to 1 s.
const RTT_BOUNDS: &[f64] = &[
    50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3,
    1.0,
];
/// How often a long-running command brings its metrics page up to date.
pub const REFRESH: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a migration's series stay after it was last seen: long
/// enough for a few scrapes to read its final values and for its alerts to
/// resolve, short enough that an agent running for months keeps only the
/// migrations of the last minutes.
pub const RETENTION: std::time::Duration = std::time::Duration::from_secs(600);

/// A counter fed from a measurement that is recomputed each time (and may
/// fall back, e.g. when connections leave the table): only increases are
/// added, so the counter never goes down.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Counter {
    total: u64,
    /// The measurement last seen.
    last: u64,
}

impl Counter {
    fn feed(&mut self, value: u64) {
        self.total += value.saturating_sub(self.last);
        self.last = value;
    }
}

/// Per migration, what only grows.
struct MigrationState {
    throughput: Histogram,
    /// Progress intervals up to here are in the histogram.
    throughput_until_ms: u64,
    rtt: Histogram,
    /// Counters keyed by (metric, label).
    counters: BTreeMap<(&'static str, &'static str), Counter>,
}

/// The metrics of one run, updated from each snapshot.
pub struct Metrics {
    migrations: BTreeMap<String, MigrationState>,
    /// Per connection still in the table: the time (ms) after the newest
    /// RTT sample already observed into a histogram.
    rtt_seen: HashMap<ConnKey, u64>,
    /// Every (migration, cause id) reported within the retention, with its
    /// severity: a cause that no longer holds reads 0 rather than vanishing.
    causes: BTreeMap<(String, &'static str), &'static str>,
    /// When each migration (and each migration a cause names) was last in
    /// a snapshot, ms since `origin`.
    last_seen_ms: BTreeMap<String, u64>,
    retention_ms: u64,
    /// The clock of the retention: the process's, not the observation's
    /// (the agent starts a new observation, whose clock starts at 0, at
    /// every virt-handler restart; these metrics outlive it).
    origin: std::time::Instant,
    /// The observation time of the last snapshot: one earlier means a new
    /// observation began.
    last_at_ms: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        Self::with_retention(RETENTION)
    }

    /// Metrics that forget a migration `retention` after it was last seen.
    pub fn with_retention(retention: std::time::Duration) -> Self {
        Metrics {
            migrations: BTreeMap::new(),
            rtt_seen: HashMap::new(),
            causes: BTreeMap::new(),
            last_seen_ms: BTreeMap::new(),
            retention_ms: retention.as_millis() as u64,
            origin: std::time::Instant::now(),
            last_at_ms: 0,
        }
    }

    /// How many migrations have series now.
    #[cfg(test)]
    fn migrations_kept(&self) -> usize {
        self.last_seen_ms.len()
    }

    /// The exposition page for `snapshot` (an evaluation of `tick`), with
    /// the data plane's health.
    pub fn render(&mut self, snapshot: &Snapshot, tick: &Tick) -> String {
        let now_ms = self.origin.elapsed().as_millis() as u64;
        self.feed(snapshot, tick.table, tick.slots, now_ms);
        self.forget(now_ms);
        let mut page = Page::default();
        build_info(&mut page);
        self.migration_families(&mut page, snapshot);
        self.verdict_families(&mut page, snapshot);
        health(&mut page, tick.dataplane, tick.events_dropped);
        page.finish()
    }

    /// Drops what is kept of migrations not seen for the retention, and
    /// the RTT marks of connections no longer in the table.
    fn forget(&mut self, now_ms: u64) {
        let retention_ms = self.retention_ms;
        self.last_seen_ms
            .retain(|_, seen| now_ms.saturating_sub(*seen) <= retention_ms);
        let kept = &self.last_seen_ms;
        self.migrations.retain(|id, _| kept.contains_key(id));
        self.causes.retain(|(id, _), _| kept.contains_key(id));
    }

    fn feed(
        &mut self,
        snapshot: &Snapshot,
        table: &FlowTable,
        slots: &[Option<SlotInfo>],
        now_ms: u64,
    ) {
        self.rtt_seen.retain(|key, _| table.contains(key));
        if snapshot.at_ms < self.last_at_ms {
            // A new observation: its progress intervals count from 0 again.
            for state in self.migrations.values_mut() {
                state.throughput_until_ms = 0;
            }
        }
        self.last_at_ms = snapshot.at_ms;
        for row in &snapshot.migrations {
            self.last_seen_ms.insert(row.id.clone(), now_ms);
            let Some(figures) = &row.figures else {
                continue;
            };
            let state = self
                .migrations
                .entry(row.id.clone())
                .or_insert_with(|| MigrationState {
                    throughput: Histogram::new(THROUGHPUT_BOUNDS),
                    throughput_until_ms: 0,
                    rtt: Histogram::new(RTT_BOUNDS),
                    counters: BTreeMap::new(),
                });
            // Only intervals behind the latest one: the latest can still
            // be the end of the observation, not of an interval.
            for interval in &figures.progress {
                if interval.at_ms > state.throughput_until_ms && interval.at_ms < snapshot.at_ms {
                    state
                        .throughput
                        .observe(interval.bits_per_second() as f64 / 8.0);
                    state.throughput_until_ms = interval.at_ms;
                }
            }
            let mut packets = BytesByRole::default();
            for connection in table
                .connections()
                .filter(|c| figures.targets.contains(&c.key.server.to_string()))
            {
                // The path's samples taken since the last scrape's newest.
                let seen = self.rtt_seen.entry(connection.key).or_insert(0);
                for sample in connection.rtt.path(*seen) {
                    state.rtt.observe(f64::from(sample.us) / 1e6);
                    *seen = sample.at_ms + 1;
                }
                let p = connection.packets_by_role(slots);
                packets.migration += p.migration;
                packets.bridge += p.bridge;
                packets.primary += p.primary;
                packets.other += p.other;
            }
            let by_role = figures.bytes_by_role;
            let mut set = |metric, label, value: u64| {
                state
                    .counters
                    .entry((metric, label))
                    .or_default()
                    .feed(value);
            };
            for (metric, values) in [("bytes", by_role), ("packets", packets)] {
                for (role, value) in [
                    ("migration", values.migration),
                    ("bridge", values.bridge),
                    ("primary", values.primary),
                    ("other", values.other),
                ] {
                    set(metric, role, value);
                }
            }
            set("payload", "to_target", figures.forward_payload_bytes);
            set(
                "payload",
                "to_source",
                figures.payload_bytes - figures.forward_payload_bytes,
            );
            for channel in &figures.channels {
                set("channel", channel.channel, channel.forward_payload_bytes);
            }
            set("retransmits", "", figures.retransmits);
            set("zero_windows", "", figures.zero_windows);
            set("resets", "", figures.resets as u64);
        }
        for cause in snapshot.all_causes() {
            let migration = cause.migration.clone().unwrap_or_default();
            self.last_seen_ms.insert(migration.clone(), now_ms);
            self.causes
                .insert((migration, cause.id()), cause.severity.as_str());
        }
    }

    fn migration_families(&self, page: &mut Page, snapshot: &Snapshot) {
        let counter =
            |page: &mut Page, name: &str, help: &str, metric, label_name: Option<&str>| {
                page.family(name, Kind::Counter, help);
                for (id, state) in &self.migrations {
                    for ((m, label), counter) in &state.counters {
                        if *m != metric {
                            continue;
                        }
                        let value = counter.total as f64;
                        match label_name {
                            Some(label_name) => {
                                page.sample(name, &[("migration", id), (label_name, label)], value)
                            }
                            None => page.sample(name, &[("migration", id)], value),
                        }
                    }
                }
            };
        counter(
            page,
            "migverify_migration_bytes_total",
            "Frame bytes of the migration's connections by role of the interface they crossed (per role and direction the best view).",
            "bytes",
            Some("role"),
        );
        counter(
            page,
            "migverify_migration_payload_bytes_total",
            "TCP payload of the migration, each byte once, retransmissions excluded, by direction.",
            "payload",
            Some("direction"),
        );
        counter(
            page,
            "migverify_migration_channel_payload_bytes_total",
            "TCP payload sent to the target by channel (control, memory, disk), from the ports the target published.",
            "channel",
            Some("channel"),
        );
        counter(
            page,
            "migverify_migration_retransmits_total",
            "TCP segments of the migration whose payload was sent before.",
            "retransmits",
            None,
        );
        counter(
            page,
            "migverify_migration_zero_windows_total",
            "Segments of the migration advertising a zero receive window.",
            "zero_windows",
            None,
        );
        counter(
            page,
            "migverify_migration_resets_total",
            "Connections of the migration that were reset.",
            "resets",
            None,
        );
        counter(
            page,
            "migverify_migration_packets_total",
            "Wire segments of the migration's connections by role of the interface they crossed.",
            "packets",
            Some("role"),
        );
        page.family(
            "migverify_migration_throughput_bytes_per_second",
            Kind::Histogram,
            "Payload rate of the migration per measurement interval (--interval-ms).",
        );
        for (id, state) in &self.migrations {
            page.histogram(
                "migverify_migration_throughput_bytes_per_second",
                &[("migration", id)],
                &state.throughput,
            );
        }
        page.family(
            "migverify_migration_rtt_seconds",
            Kind::Histogram,
            "Round-trip times of the migration's connections, from TCP timestamp echoes.",
        );
        for (id, state) in &self.migrations {
            page.histogram(
                "migverify_migration_rtt_seconds",
                &[("migration", id)],
                &state.rtt,
            );
        }
        let gauge =
            |page: &mut Page,
             name: &str,
             help: &str,
             value: &dyn Fn(&crate::measure::live::MigrationRow) -> f64| {
                page.family(name, Kind::Gauge, help);
                for row in &snapshot.migrations {
                    page.sample(name, &[("migration", &row.id)], value(row));
                }
            };
        gauge(
            page,
            "migverify_migration_stall_seconds",
            "Seconds since the migration's payload last moved, while a connection is open (0 while it moves).",
            &|row| row.stall_s,
        );
        gauge(
            page,
            "migverify_migration_longest_stall_seconds",
            "The longest time without payload progress so far.",
            &|row| row.figures.as_ref().map_or(0.0, |f| f.longest_stall_s),
        );
        gauge(
            page,
            "migverify_migration_progress_timeout_seconds",
            "KubeVirt's progressTimeout in force: a stall this long aborts the migration.",
            &|row| row.progress_timeout_s as f64,
        );
        gauge(
            page,
            "migverify_migration_rate_bytes_per_second",
            "Payload rate of the migration over the last second.",
            &|row| row.rate_now_bps as f64 / 8.0,
        );
        gauge(
            page,
            "migverify_migration_connections",
            "Connections of the migration seen so far.",
            &|row| row.connections.len() as f64,
        );
        gauge(
            page,
            "migverify_migration_completion_budget_seconds",
            "KubeVirt's completion budget for the migration: completionTimeoutPerGiB x its size in units of 10^9 bytes.",
            &|row| row.budget.as_ref().map_or(0.0, |b| b.completion_timeout_s as f64),
        );
        gauge(
            page,
            "migverify_migration_projected_completion_seconds",
            "How long the migration's size takes at the median rate seen so far (absent until payload moved).",
            &|row| {
                row.budget
                    .as_ref()
                    .and_then(|b| b.projected_s)
                    .unwrap_or(f64::NAN)
            },
        );
        gauge(
            page,
            "migverify_migration_queued_seconds",
            "Seconds the migration has waited in KubeVirt's queue (marked for evacuation, no target yet); 0 once it has one.",
            &|row| row.queued_s.unwrap_or(0.0),
        );
    }

    fn verdict_families(&self, page: &mut Page, snapshot: &Snapshot) {
        page.family(
            "migverify_verdict",
            Kind::Gauge,
            "1 for the verdict the causes that hold now give (PASS, WARN, FAIL), 0 for the others.",
        );
        for verdict in Verdict::ALL {
            let value = f64::from(u8::from(snapshot.verdict == verdict));
            page.sample("migverify_verdict", &[("verdict", verdict.as_str())], value);
        }
        page.family(
            "migverify_migration_verdict",
            Kind::Gauge,
            "1 for the migration's verdict from its causes that hold now, 0 for the others.",
        );
        for row in &snapshot.migrations {
            let own = reasons::verdict(&row.causes);
            for verdict in Verdict::ALL {
                let value = f64::from(u8::from(own == verdict));
                page.sample(
                    "migverify_migration_verdict",
                    &[("migration", &row.id), ("verdict", verdict.as_str())],
                    value,
                );
            }
        }
        page.family(
            "migverify_diagnosis",
            Kind::Gauge,
            "1 while a named cause holds for a migration (id as in docs/verify.md), 0 once it no longer does.",
        );
        for ((migration, id), severity) in &self.causes {
            let holds = snapshot
                .all_causes()
                .any(|c| c.id() == *id && c.migration.as_deref().unwrap_or_default() == migration);
            page.sample(
                "migverify_diagnosis",
                &[("migration", migration), ("id", id), ("severity", severity)],
                f64::from(u8::from(holds)),
            );
        }
    }
}

/// The agent's own series: whether it is attached in this node's
/// virt-handler's namespace (0 while it waits for virt-handler or cannot
/// enter its namespace: the node's migrations go unobserved). While not
/// attached, the page holds these and `migverify_build_info` only.
pub fn agent_page(attached: bool, rest: Option<String>) -> String {
    let mut page = Page::default();
    if rest.is_none() {
        build_info(&mut page);
    }
    page.family(
        "migverify_agent_virt_handler_attached",
        Kind::Gauge,
        "1 while the agent observes this node's virt-handler (attached in its network namespace), 0 while it waits for it.",
    );
    page.sample(
        "migverify_agent_virt_handler_attached",
        &[],
        f64::from(u8::from(attached)),
    );
    rest.unwrap_or_default() + &page.finish()
}

/// `migverify_build_info`: which build serves these series, as the
/// Prometheus convention has it (a gauge at 1 with the build in its labels).
fn build_info(page: &mut Page) {
    page.family(
        "migverify_build_info",
        Kind::Gauge,
        "1, labelled with the version and source revision of the migverify build.",
    );
    page.sample(
        "migverify_build_info",
        &[
            ("version", env!("CARGO_PKG_VERSION")),
            ("revision", crate::REVISION),
        ],
        1.0,
    );
}

/// migverify's own state: attachments, per-interface counters, what the
/// data plane could not keep.
fn health(page: &mut Page, dataplane: &Dataplane, events_dropped: u64) {
    page.family(
        "migverify_attached",
        Kind::Gauge,
        "1 per interface migverify observes, with its role and how it is attached (tcx or clsact).",
    );
    for a in dataplane.attachments() {
        let netns = a
            .spec
            .netns
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let mode = match a.mode {
            AttachMode::Tcx => "tcx",
            AttachMode::Clsact { .. } => "clsact",
        };
        page.sample(
            "migverify_attached",
            &[
                ("interface", &a.spec.iface),
                ("netns", &netns),
                ("role", a.spec.role.as_str()),
                ("mode", mode),
            ],
            1.0,
        );
    }
    let mut packets = Vec::new();
    let mut bytes = Vec::new();
    for a in dataplane.attachments() {
        let Ok(counters) = dataplane.hook_counters(a.slot) else {
            continue;
        };
        let netns = a
            .spec
            .netns
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        for (direction, c) in Direction::ALL.into_iter().zip(counters) {
            let labels = [
                a.spec.iface.clone(),
                netns.clone(),
                a.spec.role.as_str().to_string(),
                direction.to_string(),
            ];
            packets.push((labels.clone(), c.packets));
            bytes.push((labels, c.bytes));
        }
    }
    for (name, help, values) in [
        (
            "migverify_interface_packets_total",
            "Every packet at an observed interface, by direction (migration or not).",
            &packets,
        ),
        (
            "migverify_interface_bytes_total",
            "Every frame byte at an observed interface, by direction (skb->len, as ip -s link counts).",
            &bytes,
        ),
    ] {
        page.family(name, Kind::Counter, help);
        for ([iface, netns, role, direction], value) in values {
            page.sample(
                name,
                &[
                    ("interface", iface),
                    ("netns", netns),
                    ("role", role),
                    ("direction", direction),
                ],
                *value as f64,
            );
        }
    }
    let stats = dataplane.stats().unwrap_or_default();
    dataplane_families(page, &stats, events_dropped);
}

fn dataplane_families(page: &mut Page, stats: &DataplaneStats, events_dropped: u64) {
    for (name, help, value) in [
        (
            "migverify_events_lost_total",
            "Events the kernel could not queue because the ring buffer was full.",
            stats.events_lost,
        ),
        (
            "migverify_events_dropped_total",
            "Events migverify read but did not keep (over its cap).",
            events_dropped,
        ),
        (
            "migverify_flow_table_full_total",
            "Migration segments not accounted because the flow table was full.",
            stats.flow_table_full,
        ),
        (
            "migverify_unclassified_packets_total",
            "Packets a hook could not hand to the classifier (not in place).",
            stats.unclassified,
        ),
        (
            "migverify_endpoint_table_full_total",
            "Endpoints learnt from cleartext streams that found the endpoint table full.",
            stats.endpoints_full,
        ),
        (
            "migverify_flows_classified_total",
            "Flow entries made (one per connection x interface x direction).",
            stats.flows_classified,
        ),
        (
            "migverify_flow_cache_misses_total",
            "Segments of kept flows that missed their CPU's flow cache and paid for a hash lookup.",
            stats.flow_cache_misses,
        ),
    ] {
        page.family(name, Kind::Counter, help);
        page.sample(name, &[], value as f64);
    }
    page.family(
        "migverify_packets_skipped_total",
        Kind::Counter,
        "Packets the observers did not classify, by why (not IP, not TCP, headers truncated, a later IP fragment).",
    );
    for (reason, value) in [
        ("not_ip", stats.not_ip),
        ("not_tcp", stats.not_tcp),
        ("truncated", stats.truncated),
        ("fragment", stats.fragments),
    ] {
        page.sample(
            "migverify_packets_skipped_total",
            &[("reason", reason)],
            value as f64,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::measure::live::MigrationRow;

    #[test]
    fn counters_only_add_even_when_the_measurement_falls_back() {
        let mut counter = Counter::default();
        for value in [10, 25, 5, 12] {
            counter.feed(value);
        }
        // 10, then +15, then nothing (the measure fell), then +7.
        assert_eq!(counter.total, 32);
    }

    fn row(id: &str) -> MigrationRow {
        MigrationRow::waiting(id.into(), vec!["10.200.5.12:41000".into()], "expected", 150)
    }

    fn snapshot(at_ms: u64, ids: &[&str]) -> Snapshot {
        Snapshot {
            at_ms,
            verdict: Verdict::Pass,
            migrations: ids.iter().map(|id| row(id)).collect(),
            nodes: Vec::new(),
            causes: Vec::new(),
        }
    }

    #[test]
    fn migrations_leave_after_the_retention_and_a_second_one_is_its_own() {
        let mut metrics = Metrics::with_retention(std::time::Duration::from_secs(60));
        let table = FlowTable::default();
        // Two migrations of one VMI: keyed by the migration, two entries.
        metrics.feed(&snapshot(0, &["prod/vm/uid-1"]), &table, &[], 0);
        metrics.feed(&snapshot(1_000, &["prod/vm/uid-2"]), &table, &[], 1_000);
        metrics.forget(1_000);
        assert_eq!(metrics.migrations_kept(), 2);
        // The first is not seen again: gone once the retention passed.
        metrics.feed(&snapshot(60_500, &["prod/vm/uid-2"]), &table, &[], 60_500);
        metrics.forget(60_500);
        assert_eq!(
            metrics.last_seen_ms.keys().collect::<Vec<_>>(),
            ["prod/vm/uid-2"]
        );
        // A thousand more, one after another, across new observations
        // (the agent's epochs, whose clocks start at 0 again): what is kept
        // stays bounded by the retention, on the process's clock.
        for i in 0..1000u64 {
            let id = format!("prod/vm-{i}/uid");
            let now = 61_000 + i * 1_000;
            let at = (i % 100) * 1_000;
            metrics.feed(&snapshot(at, &[id.as_str()]), &table, &[], now);
            metrics.forget(now);
            assert!(
                metrics.migrations_kept() <= 62,
                "{}",
                metrics.migrations_kept()
            );
        }
    }
}
