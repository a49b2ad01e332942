//! The plain tables of `flows` and `counters`: what the observers see,
//! before any judgement.

use std::{collections::HashSet, time::Duration};

use serde_json::{json, Value};

use crate::{
    dataplane::InterfaceCount,
    flows::{Collected, FlowTable, SlotInfo},
};

/// The connections, with the interfaces each crossed (and a tag other
/// than the NAD's `vlan` marked).
pub fn flows(table: &FlowTable, slots: &[Option<SlotInfo>], vlan: Option<u16>) -> String {
    let mut out = format!(
        "  {:<47} {:<8} {:<9} {:<11} {:>13}  INTERFACES (role)\n",
        "CONNECTION", "CHANNEL", "REASON", "STATE", "PAYLOAD"
    );
    for connection in table.connections() {
        let report = connection.report(slots);
        let interfaces: Vec<String> = report
            .interfaces
            .iter()
            .map(|i| {
                let tag = match (i.vlan, vlan) {
                    (Some(v), Some(want)) if v != want => format!(" vlan {v}, NAD: {want}!"),
                    (Some(v), _) => format!(" vlan {v}"),
                    (None, _) => String::new(),
                };
                let at = i
                    .netns
                    .as_ref()
                    .map(|ns| format!("@{ns}"))
                    .unwrap_or_default();
                format!("{}{at} ({}{tag})", i.interface, i.role.as_str())
            })
            .collect();
        out += &format!(
            "  {:<47} {:<8} {:<9} {:<11} {:>13}  {}\n",
            format!("{} -> {}", report.src, report.dst),
            report.channel,
            report.reason,
            report.state,
            report.payload_bytes,
            interfaces.join(", ")
        );
    }
    out
}

/// Everything a collection saw, for `flows -o json`.
pub fn flows_json(collected: &Collected) -> Value {
    let connections: Vec<_> = collected
        .table
        .connections()
        .map(|c| c.report(&collected.slots))
        .collect();
    let endpoints: HashSet<String> = collected
        .endpoints
        .iter()
        .map(ToString::to_string)
        .collect();
    json!({
        "duration_s": collected.duration.as_secs_f64(),
        "endpoints": endpoints,
        "connections": connections,
        "events": collected.events,
        "events_dropped": collected.events_dropped,
        "dataplane": collected.stats,
    })
}

/// The final table of `flows`: the connections and what was lost.
pub fn flows_final(collected: &Collected, vlan: Option<u16>) -> String {
    let mut out = format!(
        "{} migration connection(s) in {:.1} s\n",
        collected.table.len(),
        collected.duration.as_secs_f64()
    );
    out += &flows(&collected.table, &collected.slots, vlan);
    if let Some(losses) = collected.stats.losses(collected.events_dropped) {
        out += &format!("lost: {losses}\n");
    }
    out
}

/// Per-interface counts: a heading at the end, a timestamp while running.
pub fn counters(rows: &[InterfaceCount], elapsed: Option<Duration>) -> String {
    let mut out = match elapsed {
        Some(t) => format!("[{:7.1}s]\n", t.as_secs_f64()),
        None => format!(
            "{:<16} {:<10} {:<9} {:>10} {:>14} {:>10} {:>14}\n",
            "INTERFACE", "ROLE", "NETNS", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES"
        ),
    };
    for row in rows {
        out += &format!(
            "{:<16} {:<10} {:<9} {:>10} {:>14} {:>10} {:>14}\n",
            row.iface,
            row.role.as_str(),
            row.netns.as_deref().unwrap_or("-"),
            row.rx_packets,
            row.rx_bytes,
            row.tx_packets,
            row.tx_bytes
        );
    }
    out
}
