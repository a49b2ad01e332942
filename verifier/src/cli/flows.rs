//! `migverify flows`: the live-migration connections on the observed
//! interfaces, classified, with the role of every interface they crossed.

use std::{collections::HashSet, time::Duration};

use serde_json::json;
use tokio::sync::mpsc;

use super::{
    args::{InterfaceArgs, IntervalArgs, NetworkArgs, TargetArgs},
    runtime, seconds, stop_after, Output, Status,
};
use crate::{
    flows::{Collected, FlowTable, SlotInfo},
    session::Session,
};

/// Show live-migration flows per interface and role while they run.
///
/// Flows are classified, strongest first, by the target endpoints a VMI
/// publishes (--vmi, --endpoint), by the migration network's CIDRs
/// (--cidr), and in cleartext by QEMU's stream magic. Prints a table every
/// second and a final table (or JSON) on exit; with --vlan, a tag other
/// than the NAD's is marked.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    interfaces: InterfaceArgs,
    #[command(flatten)]
    target: TargetArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    #[command(flatten)]
    interval: IntervalArgs,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let ifaces = args.interfaces.required()?;
    let (endpoints, _) = args.target.published()?;
    let mut session = Session::start(ifaces, &args.network.cidr)?;
    eprintln!(
        "migverify: observing {} interface(s), {} endpoint(s), {} CIDR(s); Ctrl-C to stop",
        ifaces.len(),
        endpoints.len(),
        args.network.cidr.len()
    );
    let text = args.output == Output::Text;
    let mut last_print = Duration::ZERO;
    let vlan = args.network.vlan;
    let collected = runtime()?.block_on(async {
        // No endpoints arrive later here; the sender's drop closes the stream.
        let (_, requests) = mpsc::channel(1);
        session
            .collect(
                &endpoints,
                Duration::from_millis(args.interval.interval_ms),
                requests,
                stop_after(duration),
                |tick| {
                    if text && tick.at >= last_print + Duration::from_secs(1) {
                        last_print = tick.at;
                        println!(
                            "[{:7.1}s] {} migration connection(s)",
                            tick.at.as_secs_f64(),
                            tick.table.len()
                        );
                        print_table(tick.table, tick.slots, vlan);
                    }
                    false
                },
            )
            .await
    })?;
    session.detach();
    match args.output {
        Output::Text => print_final(&collected, vlan),
        Output::Json => println!("{}", serde_json::to_string_pretty(&report(&collected))?),
    }
    Ok(Status::Pass)
}

pub fn report(collected: &Collected) -> serde_json::Value {
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

/// The connections, with the interfaces each crossed (and a tag other
/// than the NAD's `vlan` marked).
fn print_table(table: &FlowTable, slots: &[Option<SlotInfo>], vlan: Option<u16>) {
    println!(
        "  {:<47} {:<8} {:<9} {:<11} {:>13}  INTERFACES (role)",
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
        println!(
            "  {:<47} {:<8} {:<9} {:<11} {:>13}  {}",
            format!("{} -> {}", report.src, report.dst),
            report.channel,
            report.reason,
            report.state,
            report.payload_bytes,
            interfaces.join(", ")
        );
    }
}

fn print_final(collected: &Collected, vlan: Option<u16>) {
    println!(
        "{} migration connection(s) in {:.1} s",
        collected.table.len(),
        collected.duration.as_secs_f64()
    );
    print_table(&collected.table, &collected.slots, vlan);
    let stats = &collected.stats;
    if let Some(losses) = stats.losses(collected.events_dropped) {
        println!("lost: {losses}");
    }
}
