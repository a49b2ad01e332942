//! The rules' tests: each cause on tables fed tick by tick as the
//! collector feeds them, live and at the end.

use std::collections::HashSet;

use verifier_ebpf::{Channel, Direction, FlowKey, FlowStats, Reason as Why};

use verifier_ebpf::{NeighborKey, NeighborStats, SEEN_FIN, SEEN_RST, SEEN_SYN, SEEN_SYN_ACK};

use super::{causes as diagnose, *};
use crate::{
    config::Endpoint,
    dataplane::Role,
    flows::{tests::key, FlowTable, SlotInfo},
    intent::{Ended, Limits, VmSize},
    measure::{
        budget::{budget, BudgetReport, Projection},
        migration::{figures, group, Figures},
        reasons::{self, Reason},
    },
    verdict::Severity,
};

const CLIENT: &str = "10.200.5.11:50000";
const SERVER: &str = "10.200.5.12:40000";

fn stats(payload: u64, retransmits: u64, largest: u32, seen: u8) -> FlowStats {
    FlowStats {
        bytes: payload + 100,
        packets: payload / 1000 + 2,
        unique_payload_bytes: payload,
        retransmits,
        retransmitted_bytes: retransmits * u64::from(largest),
        largest_segment: largest,
        seen,
        channel: Channel::Memory as u8,
        reason: Why::Endpoint as u8,
        ..FlowStats::default()
    }
}

fn slots() -> Vec<Option<SlotInfo>> {
    let slot = |interface: &str, role| {
        Some(SlotInfo {
            interface: interface.into(),
            netns: None,
            role,
            mtu: Some(9000),
        })
    };
    vec![
        slot("source0", Role::Migration),
        slot("target0", Role::Migration),
        slot("eth0", Role::Primary),
    ]
}

/// A table fed tick by tick: `at(ms)` gives the flows read then.
fn table(ticks: u64, at: impl Fn(u64) -> Vec<(FlowKey, FlowStats)>) -> FlowTable {
    let endpoints = HashSet::from([SERVER.parse().unwrap()]);
    let mut table = FlowTable::default();
    for tick in 1..=ticks {
        table.update(&at(tick * 100), &endpoints, tick * 100);
    }
    table
}

fn causes(
    table: &FlowTable,
    phase: Phase,
    now_ms: u64,
    neighbors: &[(NeighborKey, NeighborStats)],
) -> Vec<Reason> {
    causes_with(table, phase, now_ms, neighbors, Limits::default())
}

fn causes_with(
    table: &FlowTable,
    phase: Phase,
    now_ms: u64,
    neighbors: &[(NeighborKey, NeighborStats)],
    settings: Limits,
) -> Vec<Reason> {
    causes_ended(table, phase, now_ms, neighbors, settings, None)
}

fn causes_ended(
    table: &FlowTable,
    phase: Phase,
    now_ms: u64,
    neighbors: &[(NeighborKey, NeighborStats)],
    settings: Limits,
    ended: Option<Ended>,
) -> Vec<Reason> {
    let endpoints = vec![Endpoint {
        addr: SERVER.parse().unwrap(),
        channel: Channel::Memory,
        migration: Some("default/vm".into()),
    }];
    let slots = slots();
    let groups = group(table, &endpoints);
    let size = VmSize {
        bytes: 256 << 20,
        source: "test".into(),
    };
    let figures: Vec<Figures> = groups.iter().map(|g| figures(g, &slots, 100)).collect();
    let budgets: Vec<BudgetReport> = figures
        .iter()
        .map(|f| budget(&settings, &size, f))
        .collect();
    let subjects: Vec<Subject> = groups
        .iter()
        .zip(figures.iter().zip(&budgets))
        .map(|(group, (figures, budget))| Subject {
            group,
            figures,
            budget,
            ended,
        })
        .collect();
    let expectations = Expectations {
        cidrs: vec!["10.200.5.0/24".parse().unwrap()],
        vlan: Some(100),
        expect_traffic: true,
        bulk_transfer: false,
    };
    let scene = Scene {
        table,
        slots: &slots,
        endpoints: &endpoints,
        neighbors,
        expectations: &expectations,
        now_ms,
        endpoints_since_ms: 0,
        phase,
    };
    diagnose(&scene, &subjects)
}

fn ids(causes: &[Reason]) -> Vec<&'static str> {
    causes.iter().map(Reason::id).collect()
}

const HANDSHAKE: u8 = SEEN_SYN | SEEN_SYN_ACK;

#[test]
fn full_size_segments_lost_after_the_handshake_are_an_mtu_black_hole() {
    // The source's hook sees 8948-byte segments resent every few ticks;
    // the target's hook only ever saw the small ones.
    let t = table(20, |ms| {
        let resent = ms / 300;
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(85_000, resent, 8948, SEEN_SYN),
            ),
            (
                key(CLIENT, SERVER, 1, Direction::Ingress),
                stats(6_000, 0, 1366, SEEN_SYN),
            ),
            (
                key(SERVER, CLIENT, 0, Direction::Ingress),
                stats(900, 0, 900, SEEN_SYN_ACK),
            ),
        ]
    });
    let found = causes(&t, Phase::Live, 2000, &[]);
    assert_eq!(ids(&found), [reasons::MTU_BLACKHOLE.id], "{found:#?}");
    let message = &found[0].message;
    assert!(
        message.contains("8948 B") && message.contains("up to 1366 B"),
        "{message}"
    );
    // Not yet a second without progress: no verdict on it.
    let early = table(5, |ms| {
        vec![(
            key(CLIENT, SERVER, 0, Direction::Egress),
            stats(85_000, ms / 100, 8948, HANDSHAKE),
        )]
    });
    assert!(causes(&early, Phase::Live, 500, &[]).is_empty());
}

#[test]
fn a_stream_that_stops_being_acknowledged_after_moving_is_a_black_hole() {
    let t = table(40, |ms| {
        let moved = ms.min(2000) * 10_000;
        let resent = ms.saturating_sub(2000) / 300;
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(moved, resent, 1448, HANDSHAKE),
            ),
            (
                key(CLIENT, SERVER, 1, Direction::Ingress),
                stats(moved, resent, 1448, HANDSHAKE),
            ),
        ]
    });
    let found = causes(&t, Phase::Live, 4000, &[]);
    assert_eq!(ids(&found), [reasons::BLACKHOLE.id], "{found:#?}");
    assert!(
        found[0].message.contains("source0 egress"),
        "{}",
        found[0].message
    );
    // And in the final report, once the connections were reset.
    assert_eq!(
        ids(&causes(&t, Phase::Final, 4000, &[])),
        [reasons::BLACKHOLE.id]
    );
}

#[test]
fn syns_without_answer_make_the_peer_unreachable() {
    let t = table(12, |ms| {
        let mut syn = stats(0, 0, 0, SEEN_SYN);
        syn.packets = 1 + ms / 1000;
        vec![(key(CLIENT, SERVER, 0, Direction::Egress), syn)]
    });
    let found = causes(&t, Phase::Live, 1200, &[]);
    assert_eq!(ids(&found), [reasons::PEER_UNREACHABLE.id], "{found:#?}");
    assert_eq!(found[0].severity, Severity::Error);
}

#[test]
fn unanswered_arp_for_the_target_makes_it_unreachable() {
    let asked = |requests, replies| {
        vec![(
            NeighborKey {
                addr: u32::from_ne_bytes([10, 200, 5, 12]),
                slot: 0,
                direction: Direction::Egress as u8,
                _pad: [0; 2],
            },
            NeighborStats {
                requests,
                replies,
                first_request_ns: 1_000_000_000,
                last_request_ns: 2_000_000_000,
                vlan: 100,
                ..NeighborStats::default()
            },
        )]
    };
    let empty = FlowTable::default();
    let found = causes(&empty, Phase::Live, 1500, &asked(2, 0));
    assert_eq!(ids(&found), [reasons::PEER_UNREACHABLE.id], "{found:#?}");
    assert_eq!(found[0].migration.as_deref(), Some("default/vm"));
    assert!(
        found[0].message.contains("VLAN 100"),
        "{}",
        found[0].message
    );
    // Answered, or asked once: nothing to say yet.
    assert!(causes(&empty, Phase::Live, 1500, &asked(3, 1)).is_empty());
    assert!(causes(&empty, Phase::Live, 1500, &asked(1, 0)).is_empty());
    // At the end, the unreachable peer replaces "no traffic".
    assert_eq!(
        ids(&causes(&empty, Phase::Final, 1500, &asked(3, 0))),
        [reasons::PEER_UNREACHABLE.id]
    );
    assert_eq!(
        ids(&causes(&empty, Phase::Final, 1500, &[])),
        [reasons::TRAFFIC_NONE.id]
    );
}

#[test]
fn a_reset_right_after_connecting_is_a_broken_proxy_or_tls() {
    let t = table(10, |ms| {
        let seen = if ms >= 500 {
            HANDSHAKE | SEEN_RST
        } else {
            HANDSHAKE
        };
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(600, 0, 600, seen),
            ),
            (
                key(SERVER, CLIENT, 0, Direction::Ingress),
                stats(1500, 0, 1500, seen),
            ),
        ]
    });
    assert_eq!(
        ids(&causes(&t, Phase::Final, 1000, &[])),
        [reasons::RESET_AFTER_CONNECT.id]
    );
}

#[test]
fn resets_that_end_a_migration_which_moved_are_no_broken_set_up() {
    // A multifd migration's main channel carries a few KiB in all; reset
    // as a cancelled migration ends, beside a channel that moved MBs.
    const OTHER: &str = "10.200.5.11:50002";
    let t = table(20, |ms| {
        let seen = if ms >= 1500 {
            HANDSHAKE | SEEN_RST
        } else {
            HANDSHAKE
        };
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(2200, 0, 600, seen),
            ),
            (
                key(OTHER, SERVER, 0, Direction::Egress),
                stats(ms.min(1000) * 10_000, 0, 1448, seen),
            ),
        ]
    });
    let found = causes(&t, Phase::Final, 2000, &[]);
    assert!(
        !ids(&found).contains(&reasons::RESET_AFTER_CONNECT.id),
        "{found:#?}"
    );
}

#[test]
fn a_flat_rate_is_a_cap_and_says_what_it_means_for_the_budget() {
    // 25 MB/s = 200 Mbit/s, every tick the same.
    let t = table(50, |ms| {
        vec![(
            key(CLIENT, SERVER, 0, Direction::Egress),
            stats(ms * 25_000, 0, 1448, HANDSHAKE),
        )]
    });
    let found = causes(&t, Phase::Live, 5000, &[]);
    assert_eq!(ids(&found), [reasons::RATE_CAP.id], "{found:#?}");
    assert_eq!(found[0].severity, Severity::Info, "11 s of a 150 s budget");
    assert!(
        found[0].message.contains("200.0 Mbit/s"),
        "{}",
        found[0].message
    );
    // bandwidthPerMigration at that rate is named; a tight budget is an error.
    let settings = Limits {
        bandwidth_per_migration: Some(25_000_000),
        completion_timeout_per_gib: 5,
        ..Limits::default()
    };
    let found = causes_with(&t, Phase::Live, 5000, &[], settings);
    assert_eq!(found[0].severity, Severity::Error);
    assert!(
        found[0].message.contains("bandwidthPerMigration"),
        "{}",
        found[0].message
    );
    // Not yet three seconds of it: no cap.
    assert!(causes(&t, Phase::Live, 2000, &[]).is_empty());
}

#[test]
fn a_target_that_closes_its_window_while_stalled_is_receiver_bound() {
    let t = table(30, |ms| {
        let mut back = stats(0, 0, 0, SEEN_SYN_ACK);
        back.zero_windows = ms / 200;
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(ms.min(1000) * 5_000, 0, 1448, SEEN_SYN),
            ),
            (key(SERVER, CLIENT, 0, Direction::Ingress), back),
        ]
    });
    let found = causes(&t, Phase::Live, 3000, &[]);
    assert_eq!(ids(&found), [reasons::RECEIVER_BOUND.id], "{found:#?}");
}

/// A short migration of 256 MiB: 400 ms of set-up at 5 kB a tick, the
/// size in 300 ms, then nothing; at 800 ms `end` (FIN, RST or nothing)
/// is seen. The target closes its window every 10 ms.
fn short_migration(end: u8) -> FlowTable {
    table(10, |ms| {
        let payload = if ms <= 400 {
            ms * 50
        } else {
            20_000 + (ms - 400).min(300) * ((256 << 20) / 300)
        };
        let seen = if ms >= 800 {
            HANDSHAKE | end
        } else {
            HANDSHAKE
        };
        let mut back = stats(100, 0, 100, seen);
        back.zero_windows = ms / 10;
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(payload, 0, 1448, seen),
            ),
            (key(SERVER, CLIENT, 0, Direction::Ingress), back),
        ]
    })
}

/// A short migration's intervals are half set-up: once it has moved
/// its size and closed, its budget rests on how long it took, not on
/// its median interval rate (here a set-up rate).
#[test]
fn a_finished_migration_is_judged_on_how_long_it_took() {
    let size = VmSize {
        bytes: 256 << 20,
        source: "test".into(),
    };
    let endpoints = vec![Endpoint {
        addr: SERVER.parse().unwrap(),
        channel: Channel::Memory,
        migration: Some("default/vm".into()),
    }];
    let run = |end: u8| {
        let t = short_migration(end);
        let groups = group(&t, &endpoints);
        let f = figures(&groups[0], &slots(), 100);
        budget(&Limits::default(), &size, &f)
    };
    let finished = run(SEEN_FIN);
    assert_eq!(finished.projection, Projection::Duration);
    let took = finished.projected_s.unwrap();
    assert!((0.6..=0.9).contains(&took), "{finished:#?}");
    // Still open, or reset (aborted, say), the same intervals
    // extrapolate from the set-up rate: far beyond the 150 s budget.
    for end in [0, SEEN_RST] {
        let b = run(end);
        assert_eq!(b.projection, Projection::MedianRate, "{end}");
        assert!(b.projected_s.unwrap() > 150.0, "{b:#?}");
    }
}

/// Zero windows in a short migration that finished within its budget
/// do not make it receiver-bound, though its median interval (set-up)
/// is below the rate the budget needs; open, the same figures do.
#[test]
fn a_finished_migration_is_not_judged_slow_on_its_set_up() {
    let found = causes(&short_migration(SEEN_FIN), Phase::Final, 1000, &[]);
    assert!(found.is_empty(), "{found:#?}");
    let found = causes(&short_migration(0), Phase::Final, 1000, &[]);
    assert_eq!(ids(&found), [reasons::RECEIVER_BOUND.id], "{found:#?}");
}

#[test]
fn a_healthy_migration_has_no_cause() {
    // Fast, a few retransmissions and zero windows on the way, closed.
    let t = table(12, |ms| {
        let seen = if ms >= 1000 {
            HANDSHAKE | SEEN_FIN
        } else {
            HANDSHAKE
        };
        let mut back = stats(100, 0, 100, seen);
        back.zero_windows = ms / 100;
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(ms.min(1000) * 300_000, ms / 300, 1448, seen),
            ),
            (key(SERVER, CLIENT, 0, Direction::Ingress), back),
        ]
    });
    for (phase, now) in [
        (Phase::Live, 1200),
        (Phase::Live, 9000),
        (Phase::Final, 1200),
    ] {
        let found = causes(&t, phase, now, &[]);
        assert!(found.is_empty(), "{phase:?} {now}: {found:#?}");
    }
}

#[test]
fn migration_bytes_on_a_primary_interface_are_a_fallback() {
    let t = table(5, |ms| {
        vec![(
            key(CLIENT, SERVER, 2, Direction::Egress),
            stats(ms * 1000, 0, 1448, HANDSHAKE),
        )]
    });
    assert_eq!(
        ids(&causes(&t, Phase::Live, 500, &[])),
        [reasons::FALLBACK_PRIMARY.id]
    );
}

#[test]
fn published_endpoints_without_a_packet_are_no_traffic_after_a_while() {
    let empty = FlowTable::default();
    assert!(causes(&empty, Phase::Live, 4000, &[]).is_empty());
    assert_eq!(
        ids(&causes(&empty, Phase::Live, 6000, &[])),
        [reasons::TRAFFIC_NONE.id]
    );
}

/// A 256 MiB migration at 10 MB per 100 ms (800 Mbit/s) for `ticks`
/// intervals, closed with a FIN at the end when `closes`.
fn resending(ticks: u64, closes: bool) -> FlowTable {
    table(ticks, |ms| {
        let seen = if closes && ms == ticks * 100 {
            HANDSHAKE | SEEN_FIN
        } else {
            HANDSHAKE
        };
        vec![
            (
                key(CLIENT, SERVER, 0, Direction::Egress),
                stats(ms * 100_000, 0, 1448, seen),
            ),
            (
                key(SERVER, CLIENT, 0, Direction::Ingress),
                stats(100, 0, 100, seen),
            ),
        ]
    })
}

fn not_converging_of(causes: &[Reason]) -> Option<&Reason> {
    causes.iter().find(|c| c.kind == &reasons::NOT_CONVERGING)
}

/// Past its first pass (273.8 MB, the size and 2% of framing, at 2.8 s) a
/// migration that keeps re-sending for longer than that, its size again,
/// is not converging; one that is done soon after is.
#[test]
fn resending_past_the_first_pass_for_as_long_is_not_converging() {
    // 10 s: 1000 MB, 726 MB re-sent in 7.2 s at 806.9 Mbit/s.
    let long = resending(100, false);
    let live = causes(&long, Phase::Live, 10_000, &[]);
    let cause = not_converging_of(&live).expect("not converging");
    assert_eq!(cause.severity, Severity::Error);
    // 10^9 - 268435456 x 1.02 = 726195835 bytes: 692.6 MiB.
    assert!(
        cause.message.contains("re-sent 692.6 MiB"),
        "{}",
        cause.message
    );
    assert!(
        cause.message.contains("allowAutoConverge"),
        "{}",
        cause.message
    );
    assert_eq!(cause.evidence["precopy"]["first_pass_s"], 2.8);
    // Live at 5 s: 2.2 s of re-sending, shorter than the first pass.
    assert!(not_converging_of(&causes(&long, Phase::Live, 5_000, &[])).is_none());
    // At the end, how it ended decides: failed, unknown, completed anyway.
    for (ended, severity) in [
        (Some(Ended::Failed), Severity::Error),
        (None, Severity::Warning),
        (Some(Ended::Completed), Severity::Info),
    ] {
        let done = resending(100, true);
        let found = causes_ended(&done, Phase::Final, 10_000, &[], Limits::default(), ended);
        assert_eq!(
            not_converging_of(&found).map(|c| c.severity),
            Some(severity)
        );
    }
    // A busy guest that converges: 320 MB, closed at 3.2 s.
    let busy = resending(32, true);
    assert!(not_converging_of(&causes(&busy, Phase::Final, 3_200, &[])).is_none());
}

/// The budget of a migration still re-sending counts the re-sending: what
/// it has run and as long again (here 2.8 s + 2 x 7.2 s), not one pass at
/// the median rate (2.7 s).
#[test]
fn a_running_migration_past_its_size_is_projected_with_its_resends() {
    let table = resending(100, false);
    let endpoints = vec![Endpoint {
        addr: SERVER.parse().unwrap(),
        channel: Channel::Memory,
        migration: Some("default/vm".into()),
    }];
    let groups = group(&table, &endpoints);
    let f = figures(&groups[0], &slots(), 100);
    let size = VmSize {
        bytes: 256 << 20,
        source: "test".into(),
    };
    let b = budget(&Limits::default(), &size, &f);
    assert_eq!(b.projection, Projection::Resending);
    assert!((b.projected_s.unwrap() - 17.2).abs() < 1e-9, "{b:?}");
}
