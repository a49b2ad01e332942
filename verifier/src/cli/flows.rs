//! `migverify flows`: the live-migration connections on the observed
//! interfaces, classified, with the role of every interface they crossed.

use std::{collections::HashSet, path::PathBuf, time::Duration};

use serde_json::json;
use tokio::sync::mpsc;

use super::{runtime, seconds, stop_after, ObserveArgs, Output, Status};
use crate::{
    config::endpoints::endpoints_from_vmi_file,
    dataplane::Dataplane,
    flows::{collect, Collected, FlowTable, SlotInfo},
};

/// Show live-migration flows per interface and role while they run.
///
/// Flows are classified, strongest first, by the target endpoints a VMI
/// publishes (--vmi, --endpoint), by the migration network's CIDRs
/// (--cidr), and in cleartext by QEMU's stream magic. Prints a table every
/// second and a final table (or JSON) on exit.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    observe: ObserveArgs,
    /// A VMI document as `oc get vmi NAME -o json` prints it (or a List).
    #[arg(long, value_name = "FILE")]
    vmi: Vec<PathBuf>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Milliseconds between reads of the flow table.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    interval_ms: u64,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let mut endpoints = args.observe.endpoint.clone();
    for path in &args.vmi {
        endpoints.extend(endpoints_from_vmi_file(path)?);
    }
    let mut dataplane = Dataplane::load()?;
    for cidr in &args.observe.cidr {
        dataplane.add_cidr(*cidr)?;
    }
    dataplane.attach_all(&args.observe.ifaces)?;
    eprintln!(
        "migverify: observing {} interface(s), {} endpoint(s), {} CIDR(s); Ctrl-C to stop",
        args.observe.ifaces.len(),
        endpoints.len(),
        args.observe.cidr.len()
    );
    let text = args.output == Output::Text;
    let mut last_print = Duration::ZERO;
    let collected = runtime()?.block_on(async {
        // No endpoints arrive later here; the sender's drop closes the stream.
        let (_, requests) = mpsc::channel(1);
        collect(
            &mut dataplane,
            &endpoints,
            Duration::from_millis(args.interval_ms),
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
                    print_table(tick.table, tick.slots);
                }
                false
            },
        )
        .await
    })?;
    dataplane.detach_all();
    match args.output {
        Output::Text => print_final(&collected),
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

fn print_table(table: &FlowTable, slots: &[Option<SlotInfo>]) {
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
                let vlan = i.vlan.map(|v| format!(" vlan {v}")).unwrap_or_default();
                let at = i
                    .netns
                    .as_ref()
                    .map(|ns| format!("@{ns}"))
                    .unwrap_or_default();
                format!("{}{at} ({}{vlan})", i.interface, i.role.as_str())
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

fn print_final(collected: &Collected) {
    println!(
        "{} migration connection(s) in {:.1} s",
        collected.table.len(),
        collected.duration.as_secs_f64()
    );
    print_table(&collected.table, &collected.slots);
    let stats = &collected.stats;
    if let Some(losses) = stats.losses(collected.events_dropped) {
        println!("lost: {losses}");
    }
}
