//! Whether the peer can be reached at all: ARP for the target's address
//! unanswered (no SYN can leave: a VLAN mismatch looks exactly like this),
//! and published endpoints with nothing on the wire.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr},
};

use serde_json::{json, Value};
use verifier_ebpf::Direction;

use super::{
    connection::{established, slot_name},
    Phase, Scene, Subject,
};
use crate::{
    measure::reasons::{Reason, PEER_UNREACHABLE, TRAFFIC_NONE},
    verdict::Severity,
};

/// Unanswered ARP requests that make an address unreachable (the kernel
/// sends one a second, three in all, before "No route to host").
const ARP_UNANSWERED: u64 = 2;
/// Live: published endpoints with no packet for this long.
const NO_TRAFFIC_AFTER_MS: u64 = 5000;

/// The addresses ARP is judged for: the published targets, and the
/// migration network's own addresses (which only migrations use).
fn of_interest(scene: &Scene, addr: Ipv4Addr) -> Option<Option<String>> {
    let ip = IpAddr::V4(addr);
    if let Some(endpoint) = scene.endpoints.iter().find(|e| e.addr.ip() == ip) {
        return Some(Some(
            endpoint
                .migration
                .clone()
                .unwrap_or_else(|| format!("target {ip}")),
        ));
    }
    scene
        .expectations
        .cidrs
        .iter()
        .any(|c| c.contains(ip))
        .then_some(None)
}

/// Addresses asked for again and again, never answering: no SYN can leave
/// for them. Returns the addresses diagnosed.
pub fn unreachable_by_arp(scene: &Scene, causes: &mut Vec<Reason>) -> BTreeSet<IpAddr> {
    #[derive(Default)]
    struct Asked {
        requests: u64,
        replies: u64,
        first_ns: u64,
        last_ns: u64,
        hooks: Vec<Value>,
        vlans: BTreeSet<u16>,
    }
    let mut by_addr: BTreeMap<Ipv4Addr, Asked> = BTreeMap::new();
    for (key, stats) in scene.neighbors {
        let addr = Ipv4Addr::from(key.addr.to_ne_bytes());
        let asked = by_addr.entry(addr).or_default();
        // Every hook sees the same broadcast request: the busiest counts.
        asked.requests = asked.requests.max(stats.requests);
        asked.replies += stats.replies;
        if stats.requests > 0 {
            asked.first_ns = match asked.first_ns {
                0 => stats.first_request_ns,
                first => first.min(stats.first_request_ns),
            };
            asked.last_ns = asked.last_ns.max(stats.last_request_ns);
            asked.hooks.push(json!({
                "at": format!(
                    "{} {}",
                    slot_name(scene.slots, key.slot),
                    Direction::try_from(key.direction).map_or("unknown", Direction::name)
                ),
                "requests": stats.requests,
                "vlan": (stats.vlan != 0).then_some(stats.vlan),
            }));
            if stats.vlan != 0 {
                asked.vlans.insert(stats.vlan);
            }
        }
    }
    let mut diagnosed = BTreeSet::new();
    for (addr, asked) in by_addr {
        if asked.requests < ARP_UNANSWERED || asked.replies > 0 {
            continue;
        }
        let Some(migration) = of_interest(scene, addr) else {
            continue;
        };
        // A connection that got through says the address did resolve.
        let connected = scene.table.connections().any(|c| {
            (c.key.server.ip() == IpAddr::V4(addr) || c.key.client.ip() == IpAddr::V4(addr))
                && established(c)
        });
        if connected {
            continue;
        }
        let published = migration.is_some();
        let span_s = asked.last_ns.saturating_sub(asked.first_ns) as f64 / 1e9;
        let mut message = format!(
            "{addr} never answered ARP ({} requests over {span_s:.1} s, no reply): no SYN can leave for it. The \
             peer is down or not on the source's L2 segment — a VLAN mismatch looks exactly like this",
            asked.requests
        );
        if !asked.vlans.is_empty() {
            let tags: Vec<String> = asked.vlans.iter().map(ToString::to_string).collect();
            match scene.expectations.vlan {
                Some(expected) if asked.vlans.iter().any(|v| *v != expected) => message.push_str(&format!(
                    " (the requests carried VLAN {} where the NAD says {expected})",
                    tags.join(", ")
                )),
                _ => message.push_str(&format!(
                    " (the requests carried VLAN {}: check that the target's port and every switch port \
                     between carry it)",
                    tags.join(", ")
                )),
            }
        }
        diagnosed.insert(IpAddr::V4(addr));
        causes.push(Reason {
            migration,
            ..PEER_UNREACHABLE.raise_at(
                if published {
                    Severity::Error
                } else {
                    Severity::Warning
                },
                message,
                json!({ "address": addr, "arp_requests": asked.requests, "arp_replies": 0,
                        "span_s": span_s, "hooks": asked.hooks }),
            )
        });
    }
    diagnosed
}

/// Endpoints published, and nothing on the wire for them. At the end of an
/// observation without endpoints, the warning that nothing was seen.
pub fn no_traffic(
    scene: &Scene,
    migrations: &[Subject],
    unreachable: &BTreeSet<IpAddr>,
    causes: &mut Vec<Reason>,
) {
    let expect_traffic = scene.expectations.expect_traffic || !scene.endpoints.is_empty();
    match scene.phase {
        Phase::Final if migrations.is_empty() && unreachable.is_empty() => {
            let (severity, message) = if expect_traffic {
                (
                    Severity::Error,
                    "endpoints were published but no migration packet crossed an observed interface: check that \
                     migverify watches the right interfaces and that the migration started",
                )
            } else {
                (
                    Severity::Warning,
                    "no migration traffic was seen: give the migration's endpoints (--vmi, --endpoint) or the \
                     migration network's CIDR (--cidr), and watch while a migration runs",
                )
            };
            causes.push(TRAFFIC_NONE.raise_at(severity, message.into(), json!({})));
        }
        Phase::Final => {}
        Phase::Live => {
            let waited = scene.now_ms.saturating_sub(scene.endpoints_since_ms);
            if scene.endpoints.is_empty() || waited < NO_TRAFFIC_AFTER_MS {
                return;
            }
            let mut silent: BTreeMap<String, Vec<String>> = BTreeMap::new();
            for endpoint in scene.endpoints {
                let ip = endpoint.addr.ip();
                let any_packet = scene
                    .table
                    .connections()
                    .any(|c| c.key.server == endpoint.addr)
                    || unreachable.contains(&ip)
                    || scene
                        .neighbors
                        .iter()
                        .any(|(k, _)| IpAddr::V4(Ipv4Addr::from(k.addr.to_ne_bytes())) == ip);
                if !any_packet {
                    silent
                        .entry(
                            endpoint
                                .migration
                                .clone()
                                .unwrap_or_else(|| format!("target {ip}")),
                        )
                        .or_default()
                        .push(endpoint.addr.to_string());
                }
            }
            for (migration, endpoints) in silent {
                causes.push(TRAFFIC_NONE.raise(
                    format!(
                        "{} published {:.0} s ago and no packet for it, not even ARP: check that migverify watches \
                         the interfaces the migration uses and that the source started",
                        endpoints.join(", "),
                        waited as f64 / 1000.0
                    ),
                    json!({ "endpoints": endpoints, "waited_s": waited as f64 / 1000.0 }),
                ).about(migration));
            }
        }
    }
}
