//! The migrations of one source node taken together, as a node drain runs
//! them: how many moved at once against `parallelOutboundMigrationsPerNode`,
//! what those together need on the migration NIC (each its completion
//! budget's least rate) against what the link gave while they ran together,
//! and the order they started in: which started only once another had
//! finished (it waited in KubeVirt's queue), and how long after the first.
//!
//! A node is the address the migrations' connections came from: the source
//! virt-handler's migration address.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{
    judge::Judged,
    migration::Group,
    series::{self, Throughput},
};
use crate::flows::Connection;

/// One source node's migrations together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct NodeFigures {
    /// The address the migrations came from (the source virt-handler's).
    pub source: String,
    pub migrations: usize,
    /// The most migrations moving at once.
    pub peak_parallel: usize,
    /// `parallelOutboundMigrationsPerNode` in force.
    pub parallel_limit: u64,
    /// The migrations that ran together at the peak (the first such set).
    pub peak_migrations: Vec<String>,
    /// What they need together: the sum of their budgets' least rates.
    pub need_bps: u64,
    /// The node's payload rate while `peak_parallel` migrations ran at once
    /// (all its bytes over all that time); `None` when no interval had them.
    pub gave_bps: Option<u64>,
    /// The node's payload rate interval by interval, its whole drain.
    pub aggregate_bps: Throughput,
    /// Each migration on the wire, in the order they started.
    pub timeline: Vec<Span>,
}

/// One migration's time on the wire, seen from its node.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Span {
    pub id: String,
    /// Its first connection, s since the observation started.
    pub start_s: f64,
    /// Its last connection closed (or the end of the observation), s.
    pub end_s: f64,
    /// How long after the node's first migration it started.
    pub after_first_s: f64,
    /// Other migrations of the node moving when it started.
    pub running_at_start: usize,
    /// The migration whose end gave it its slot: the first to finish after
    /// the last start before its own, and before it started (it waited
    /// behind the parallel limit for that one).
    pub started_after: Option<String>,
    /// From that one's end to its start.
    pub gap_s: Option<f64>,
}

struct Spanned<'a> {
    index: usize,
    start_ms: u64,
    end_ms: u64,
    connections: &'a [&'a Connection],
}

/// The nodes of the judged migrations.
pub fn nodes(
    groups: &[Group],
    migrations: &[Judged],
    parallel_limit: u64,
    interval_ms: u64,
    now_ms: u64,
) -> Vec<NodeFigures> {
    let mut by_source: BTreeMap<String, Vec<Spanned>> = BTreeMap::new();
    for (index, (group, judged)) in groups.iter().zip(migrations).enumerate() {
        let Some(source) = source_of(&group.connections) else {
            continue;
        };
        let (start_ms, end_ms) = span_ms(
            &group.connections,
            &judged.figures.progress,
            interval_ms,
            now_ms,
        );
        by_source.entry(source).or_default().push(Spanned {
            index,
            start_ms,
            end_ms,
            connections: &group.connections,
        });
    }
    by_source
        .into_iter()
        .map(|(source, mut spans)| {
            spans.sort_by_key(|s| (s.start_ms, s.index));
            node(source, &spans, migrations, parallel_limit)
        })
        .collect()
}

/// The client address most of a migration's connections came from.
fn source_of(connections: &[&Connection]) -> Option<String> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for c in connections {
        *counts.entry(c.key.client.ip().to_string()).or_default() += 1;
    }
    counts.into_iter().max_by_key(|(_, n)| *n).map(|(ip, _)| ip)
}

/// From its first connection to its last one closed; while one is open, to
/// the end of its progress (the observation's end). A connection first
/// read at the end of an interval opened in it.
fn span_ms(
    connections: &[&Connection],
    progress: &[series::Interval],
    interval_ms: u64,
    now_ms: u64,
) -> (u64, u64) {
    let first_interval = progress
        .first()
        .map(|i| i.at_ms.saturating_sub(i.length_ms));
    let start = connections
        .iter()
        .filter_map(|c| c.first_seen_ms)
        .min()
        .map(|first| first.saturating_sub(interval_ms))
        .or(first_interval)
        .unwrap_or(0);
    let closed = connections
        .iter()
        .map(|c| c.closed_at_ms)
        .try_fold(0u64, |end, closed| closed.map(|c| end.max(c)));
    let end = closed
        .or_else(|| progress.last().map(|i| i.at_ms))
        .unwrap_or(now_ms)
        .max(start);
    (start, end)
}

fn active_at(spans: &[Spanned], at_ms: u64) -> Vec<usize> {
    spans
        .iter()
        .enumerate()
        .filter(|(_, s)| s.start_ms <= at_ms && at_ms < s.end_ms)
        .map(|(i, _)| i)
        .collect()
}

fn node(
    source: String,
    spans: &[Spanned],
    migrations: &[Judged],
    parallel_limit: u64,
) -> NodeFigures {
    let id = |s: &Spanned| migrations[s.index].figures.id.clone();
    // The most at once: at some migration's start.
    let mut peak: Vec<usize> = Vec::new();
    for s in spans {
        let active = active_at(spans, s.start_ms);
        if active.len() > peak.len() {
            peak = active;
        }
    }
    let need_bps = peak
        .iter()
        .map(|&i| migrations[spans[i].index].budget.min_rate_bps)
        .sum();
    // The node's intervals, and those in which the peak ran together.
    let connections: Vec<&Connection> = spans
        .iter()
        .flat_map(|s| s.connections.iter().copied())
        .collect();
    let progress = series::progress(&connections, 100);
    let (mut bytes, mut ms) = (0u64, 0u64);
    for interval in &progress {
        let middle = interval.at_ms.saturating_sub(interval.length_ms / 2);
        if !peak.is_empty() && active_at(spans, middle).len() >= peak.len() {
            bytes += interval.bytes;
            ms += interval.length_ms;
        }
    }
    let gave_bps = (ms > 0).then(|| (u128::from(bytes) * 8 * 1000 / u128::from(ms)) as u64);
    let first_ms = spans.first().map_or(0, |s| s.start_ms);
    let timeline = spans
        .iter()
        .enumerate()
        .map(|(n, s)| {
            // The slot it took: the first migration to end after the last
            // one that started before it, and before it started.
            let previous_start = spans[..n]
                .iter()
                .map(|other| other.start_ms)
                .filter(|start| *start < s.start_ms)
                .max();
            let before = previous_start.and_then(|previous| {
                spans
                    .iter()
                    .enumerate()
                    .filter(|(m, other)| {
                        *m != n && other.end_ms > previous && other.end_ms <= s.start_ms
                    })
                    .min_by_key(|(_, other)| other.end_ms)
            });
            Span {
                id: id(s),
                start_s: secs(s.start_ms),
                end_s: secs(s.end_ms),
                after_first_s: secs(s.start_ms - first_ms),
                running_at_start: active_at(spans, s.start_ms).len().saturating_sub(1),
                started_after: before.map(|(_, other)| id(other)),
                gap_s: before.map(|(_, other)| secs(s.start_ms - other.end_ms)),
            }
        })
        .collect();
    NodeFigures {
        source,
        migrations: spans.len(),
        peak_parallel: peak.len(),
        parallel_limit,
        peak_migrations: peak.iter().map(|&i| id(&spans[i])).collect(),
        need_bps,
        gave_bps,
        aggregate_bps: series::throughput(&progress),
        timeline,
    }
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use verifier_ebpf::{Channel, Direction, FlowStats, Reason as Why, SEEN_FIN, SEEN_SYN};

    use crate::{
        config::Endpoint,
        dataplane::Role,
        flows::{tests::key, FlowTable, SlotInfo},
        intent::{Ended, Limits, VmSize},
        measure::judge::{judge, Expectations, Judgement, Observation, Phase},
    };

    /// No migration's end known.
    static NOT_ENDED: BTreeMap<String, Ended> = BTreeMap::new();
    const TARGET: &str = "10.200.5.12";
    /// 100 Mbit/s in a 100 ms interval.
    const PER_TICK: u64 = 1_250_000;

    fn endpoint(port: u16, channel: Channel, vm: &str) -> Endpoint {
        Endpoint {
            addr: format!("{TARGET}:{port}").parse().unwrap(),
            channel,
            migration: Some(format!("default/{vm}")),
        }
    }

    /// Three VMs draining from node A to node B's one address, two at a
    /// time: vm1 and vm2 from tick 1, vm3 once vm1 is done. Each has a
    /// control connection and two memory ones; vm3 a disk one too. Their
    /// connections interleave on the same target address.
    fn drain() -> (FlowTable, Vec<Endpoint>) {
        drain_with(20)
    }

    /// The same drain with vm2 moving until tick `vm2_last`.
    fn drain_with(vm2_last: u64) -> (FlowTable, Vec<Endpoint>) {
        let endpoints = vec![
            endpoint(40011, Channel::Control, "vm1"),
            endpoint(40001, Channel::Memory, "vm1"),
            endpoint(40012, Channel::Control, "vm2"),
            endpoint(40002, Channel::Memory, "vm2"),
            endpoint(40013, Channel::Control, "vm3"),
            endpoint(40003, Channel::Memory, "vm3"),
            endpoint(40023, Channel::Disk, "vm3"),
        ];
        // (client port, server port, first tick, last tick moving, share of PER_TICK)
        let connections: [(u16, u16, u64, u64, u64); 8] = [
            (51000, 40011, 1, 10, 0),
            (51001, 40001, 1, 10, 1),
            (51002, 40001, 1, 10, 1),
            (52000, 40012, 1, vm2_last, 0),
            (52001, 40002, 1, vm2_last, 1),
            (53000, 40013, 12, 25, 0),
            (53001, 40003, 12, 25, 1),
            (53002, 40023, 12, 25, 1),
        ];
        let published: HashSet<_> = endpoints.iter().map(|e| e.addr).collect();
        let mut table = FlowTable::default();
        for tick in 1..=30u64 {
            let mut flows = Vec::new();
            for (client, server, first, last, share) in connections {
                if tick < first {
                    continue;
                }
                let moved = tick.min(last) - first + 1;
                // Control channels carry a few hundred bytes per interval.
                let payload = moved * if share == 0 { 300 } else { PER_TICK };
                let fin = if tick >= last { SEEN_FIN } else { 0 };
                let stats = FlowStats {
                    bytes: payload + 100,
                    unique_payload_bytes: payload,
                    seen: SEEN_SYN | fin,
                    channel: endpoints
                        .iter()
                        .find(|e| e.addr.port() == server)
                        .unwrap()
                        .channel as u8,
                    reason: Why::Endpoint as u8,
                    ..FlowStats::default()
                };
                flows.push((
                    key(
                        &format!("10.200.5.11:{client}"),
                        &format!("{TARGET}:{server}"),
                        0,
                        Direction::Egress,
                    ),
                    stats,
                ));
            }
            table.update(&flows, &published, tick * 100);
        }
        (table, endpoints)
    }

    fn judged<'a>(
        table: &'a FlowTable,
        endpoints: &'a [Endpoint],
        limits: &'a Limits,
        sizes: &'a BTreeMap<String, VmSize>,
        slots: &'a [Option<SlotInfo>],
        expectations: &'a Expectations,
    ) -> Judgement<'a> {
        judge(&Observation {
            table,
            slots,
            neighbors: &[],
            endpoints,
            endpoints_since_ms: 0,
            expectations,
            limits,
            size: None,
            sizes,
            ended: &NOT_ENDED,
            interval_ms: 100,
            now_ms: 3000,
            phase: Phase::Final,
            health: None,
        })
    }

    fn slots() -> Vec<Option<SlotInfo>> {
        vec![Some(SlotInfo {
            interface: "migration0".into(),
            netns: None,
            role: Role::Migration,
            mtu: None,
        })]
    }

    fn sizes(mib: u64) -> BTreeMap<String, VmSize> {
        ["vm1", "vm2", "vm3"]
            .into_iter()
            .map(|vm| {
                (
                    format!("default/{vm}"),
                    VmSize {
                        bytes: mib << 20,
                        source: "test".into(),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn each_migration_keeps_its_own_bytes_on_a_shared_target_address() {
        let (table, endpoints) = drain();
        let (limits, sizes, slots, expectations) = (
            Limits::default(),
            sizes(64),
            slots(),
            Expectations::default(),
        );
        let j = judged(&table, &endpoints, &limits, &sizes, &slots, &expectations);
        let own: Vec<(&str, u64, usize)> = j
            .migrations
            .iter()
            .map(|m| {
                (
                    m.figures.id.as_str(),
                    m.figures.forward_payload_bytes,
                    m.figures.connections,
                )
            })
            .collect();
        assert_eq!(
            own,
            [
                ("default/vm1", 2 * 10 * PER_TICK + 10 * 300, 3),
                ("default/vm2", 20 * PER_TICK + 20 * 300, 2),
                ("default/vm3", 2 * 14 * PER_TICK + 14 * 300, 3),
            ]
        );
        let vm3 = &j.migrations[2].figures.channels;
        let channels: Vec<(&str, usize, u64)> = vm3
            .iter()
            .map(|c| (c.channel, c.connections, c.forward_payload_bytes))
            .collect();
        assert_eq!(
            channels,
            [
                ("control", 1, 14 * 300),
                ("memory", 1, 14 * PER_TICK),
                ("disk", 1, 14 * PER_TICK)
            ]
        );
    }

    #[test]
    fn the_node_says_how_many_ran_at_once_and_who_waited() {
        let (table, endpoints) = drain();
        let (limits, sizes, slots, expectations) = (
            Limits::default(),
            sizes(64),
            slots(),
            Expectations::default(),
        );
        let j = judged(&table, &endpoints, &limits, &sizes, &slots, &expectations);
        assert_eq!(j.nodes.len(), 1);
        let node = &j.nodes[0];
        assert_eq!(
            (node.source.as_str(), node.migrations, node.peak_parallel),
            ("10.200.5.11", 3, 2)
        );
        assert_eq!(node.peak_migrations, ["default/vm1", "default/vm2"]);
        // 64 MiB in 150 s: 67,108,864 x 8 / 150 = 3,579,140 bit/s each (rounded up).
        let least = (64u64 << 20) * 8 / 150 + 1;
        assert_eq!(node.need_bps, 2 * least);
        // vm1 moved 2 shares and vm2 one while both ran: 300 Mbit/s and the
        // control bytes.
        let gave = node.gave_bps.unwrap();
        assert!((300_000_000..300_100_000).contains(&gave), "{gave}");
        let order: Vec<(&str, Option<&str>, usize)> = node
            .timeline
            .iter()
            .map(|s| {
                (
                    s.id.as_str(),
                    s.started_after.as_deref(),
                    s.running_at_start,
                )
            })
            .collect();
        assert_eq!(
            order,
            [
                ("default/vm1", None, 1),
                ("default/vm2", None, 1),
                ("default/vm3", Some("default/vm1"), 1),
            ]
        );
        let vm3 = &node.timeline[2];
        // First seen at the end of tick 12, so opened in it (from 1.1 s);
        // vm1 closed (FIN seen) at tick 10.
        assert_eq!((vm3.after_first_s, vm3.gap_s), (1.1, Some(0.1)));
        // Within the limit and the rate: no reason about the node.
        assert!(
            !j.reasons.iter().any(|r| r.id().starts_with("parallel.")),
            "{:?}",
            j.reasons
        );
    }

    #[test]
    fn a_queued_migration_took_the_slot_of_the_first_to_finish() {
        // vm2 is done at tick 8, vm1 at 10, vm3 starts in tick 12: vm2's
        // end freed the slot, though vm1 ended last.
        let (table, endpoints) = drain_with(8);
        let (limits, sizes, slots, expectations) = (
            Limits::default(),
            sizes(64),
            slots(),
            Expectations::default(),
        );
        let j = judged(&table, &endpoints, &limits, &sizes, &slots, &expectations);
        let vm3 = &j.nodes[0].timeline[2];
        assert_eq!(vm3.id, "default/vm3");
        assert_eq!(
            (
                vm3.started_after.as_deref(),
                vm3.gap_s,
                vm3.running_at_start
            ),
            (Some("default/vm2"), Some(0.3), 0)
        );
        // Nothing ended between their own start and another's: none waited.
        assert_eq!(j.nodes[0].timeline[1].started_after, None);
    }

    #[test]
    fn more_at_once_than_the_limit_and_less_rate_than_they_need_are_reasons() {
        let (table, endpoints) = drain();
        // One at a time allowed, and 1 s per unit: 4 GiB each needs
        // 4 GiB (5 units of 10^9 bytes) x 8 / 5 s = 6.87 Gbit/s, two need
        // 13.74 Gbit/s; they got 0.3.
        let limits = Limits {
            parallel_outbound_migrations_per_node: 1,
            completion_timeout_per_gib: 1,
            ..Limits::default()
        };
        let (sizes, slots, expectations) = (sizes(4 << 10), slots(), Expectations::default());
        let j = judged(&table, &endpoints, &limits, &sizes, &slots, &expectations);
        let ids: Vec<&str> = j.reasons.iter().map(|r| r.id()).collect();
        assert!(ids.contains(&"parallel.over-limit"), "{ids:?}");
        assert!(ids.contains(&"parallel.rate"), "{ids:?}");
        let rate = j
            .reasons
            .iter()
            .find(|r| r.id() == "parallel.rate")
            .unwrap();
        assert!(
            rate.message
                .starts_with("2 migrations at once from 10.200.5.11 need 13.74 Gbit/s"),
            "{}",
            rate.message
        );
    }
}
