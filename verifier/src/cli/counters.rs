//! `migverify counters`: packets and bytes per interface and direction, as
//! the observers see them. The lowest-level view of the data plane, useful to
//! confirm the hooks are in place and see traffic at all.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::{runtime, seconds, stop_after, Output, Status};
use crate::dataplane::{AttachSpec, Dataplane};

/// Count packets and bytes per interface and direction.
///
/// Attaches to each interface, prints the counts every interval and a final
/// total when the duration ends or on Ctrl-C. Bytes include the Ethernet
/// header, as `ip -s link` counts them.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Interface to observe, as [ROLE:]IFACE[@NETNS]; NETNS is a name under
    /// /var/run/netns or a path such as /proc/PID/ns/net. Repeat for more.
    #[arg(short, long = "iface", value_name = "SPEC", required = true)]
    ifaces: Vec<AttachSpec>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Seconds between progress lines (text output only; 0 turns them off).
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0)]
    interval: f64,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

#[derive(Debug, Serialize)]
struct Row {
    iface: String,
    netns: Option<String>,
    role: &'static str,
    mode: &'static str,
    rx_packets: u64,
    rx_bytes: u64,
    tx_packets: u64,
    tx_bytes: u64,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let interval = seconds("--interval", Some(args.interval))?.filter(|i| !i.is_zero());
    let mut dataplane = Dataplane::load()?;
    dataplane.attach_all(&args.ifaces)?;
    eprintln!(
        "migverify: observing {} interface(s){}; Ctrl-C to stop",
        args.ifaces.len(),
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
                    print_rows(&rows(&dataplane)?, Some(started.elapsed()));
                }
            }
        }
        anyhow::Ok(())
    })?;

    let rows = rows(&dataplane)?;
    dataplane.detach_all();
    match args.output {
        Output::Text => print_rows(&rows, None),
        Output::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
    }
    Ok(Status::Pass)
}

fn rows(dataplane: &Dataplane) -> anyhow::Result<Vec<Row>> {
    dataplane
        .attachments()
        .iter()
        .map(|a| {
            let [rx, tx] = dataplane.hook_counters(a.slot)?;
            Ok(Row {
                iface: a.spec.iface.clone(),
                netns: a.spec.netns.as_ref().map(ToString::to_string),
                role: a.spec.role.as_str(),
                mode: match a.mode {
                    crate::dataplane::AttachMode::Tcx => "tcx",
                    crate::dataplane::AttachMode::Clsact { .. } => "clsact",
                },
                rx_packets: rx.packets,
                rx_bytes: rx.bytes,
                tx_packets: tx.packets,
                tx_bytes: tx.bytes,
            })
        })
        .collect()
}

fn print_rows(rows: &[Row], elapsed: Option<Duration>) {
    match elapsed {
        Some(t) => println!("[{:7.1}s]", t.as_secs_f64()),
        None => println!(
            "{:<16} {:<10} {:<9} {:>10} {:>14} {:>10} {:>14}",
            "INTERFACE", "ROLE", "NETNS", "RX PKTS", "RX BYTES", "TX PKTS", "TX BYTES"
        ),
    }
    for row in rows {
        println!(
            "{:<16} {:<10} {:<9} {:>10} {:>14} {:>10} {:>14}",
            row.iface,
            row.role,
            row.netns.as_deref().unwrap_or("-"),
            row.rx_packets,
            row.rx_bytes,
            row.tx_packets,
            row.tx_bytes
        );
    }
}
