//! `migverify flows`: the live-migration connections on the observed
//! interfaces, classified, with the role of every interface they crossed.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    args::{InterfaceArgs, IntervalArgs, NetworkArgs, TargetArgs},
    runtime, seconds, Output, Status,
};
use crate::{
    report::tables,
    session::{stop_after, Session},
};

/// Show live-migration flows per interface and role while they run.
///
/// Flows are classified, strongest first, by the target endpoints a VMI
/// publishes (--vmi, --endpoint), by the migration network's CIDRs
/// (--cidr), and in cleartext by QEMU's stream magic. Prints a table every
/// second and a final table (or JSON) on exit; with --vlan, a tag other
/// than the NAD's is marked.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/flows.txt"))]
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
    let endpoints = args.target.published()?.endpoints;
    let mut session = Session::start(ifaces, &args.network.cidr, args.interfaces.hooks)?;
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
                        print!("{}", tables::flows(tick.table, tick.slots, vlan));
                    }
                    false
                },
            )
            .await
    })?;
    session.detach();
    match args.output {
        Output::Text => print!("{}", tables::flows_final(&collected, vlan)),
        structured => println!("{}", structured.render(&tables::flows_json(&collected))),
    }
    Ok(Status::Pass)
}
