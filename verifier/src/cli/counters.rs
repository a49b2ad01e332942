//! `migverify counters`: packets and bytes per interface and direction, as
//! the observers see them. The lowest-level view of the data plane, useful to
//! confirm the hooks are in place and see traffic at all.

use std::time::Instant;

use super::{args::InterfaceArgs, runtime, seconds, Output, Status};
use crate::{
    report::tables,
    session::{stop_after, Session},
};

/// Count packets and bytes per interface and direction.
///
/// Attaches to each interface, prints the counts every interval and a final
/// total when the duration ends or on Ctrl-C. Bytes include the Ethernet
/// header, as `ip -s link` counts them.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/counters.txt"))]
pub struct Args {
    #[command(flatten)]
    interfaces: InterfaceArgs,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Seconds between progress lines (text output only; 0 turns them off).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let interval = seconds("--interval", Some(args.interval))?.filter(|i| !i.is_zero());
    let ifaces = args.interfaces.required()?;
    let session = Session::start(ifaces, &[], args.interfaces.hooks)?;
    eprintln!(
        "migverify: observing {} interface(s){}; Ctrl-C to stop",
        ifaces.len(),
        duration
            .map(|d| format!(" for {:.1} s", d.as_secs_f64()))
            .unwrap_or_default()
    );
    let started = Instant::now();
    runtime()?.block_on(async {
        let stop = stop_after(duration);
        tokio::pin!(stop);
        let mut ticks = interval.map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = async { ticks.as_mut().expect("guarded").tick().await }, if ticks.is_some()
                    && args.output == Output::Text => {
                    let rows = session.dataplane().interface_counts()?;
                    print!("{}", tables::counters(&rows, Some(started.elapsed())));
                }
            }
        }
        anyhow::Ok(())
    })?;
    let rows = session.dataplane().interface_counts()?;
    session.detach();
    match args.output {
        Output::Text => print!("{}", tables::counters(&rows, None)),
        structured => println!("{}", structured.render(&rows)),
    }
    Ok(Status::Pass)
}
