//! `migverify watch`: attach like `verify`, show every migration and its
//! flows live with the named cause of whatever goes wrong, and print
//! `verify`'s summary on Ctrl-C.

mod render;
mod vmi;

use std::{
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;

use self::{
    render::{Lines, Screen},
    vmi::VmiFiles,
};
use super::{
    runtime, seconds, stop_after, BudgetArgs, MetricsArgs, ObserveArgs, Output, ReportArgs, Status,
};
use crate::{
    dataplane::Dataplane,
    flows::{collect, Request},
    measure::{
        live::{Evaluator, Snapshot},
        verdict::Expectations,
    },
    metrics::{Exposition, Metrics},
    report,
};

/// Watch migrations live: rates, RTT, retransmissions, stalls, and why.
///
/// Attaches like `verify` and refreshes about once a second: every
/// migration and its flows with the rate now and on average, the bytes so
/// far, the recent RTT, retransmissions and zero windows, the TCP state,
/// the time since the payload last moved against progressTimeout, the role
/// of every interface crossed, and the named cause (with its evidence) of
/// whatever goes wrong. A full-screen view on a terminal, timestamped lines
/// otherwise (or with --plain); JSON lines with -o json. Ctrl-C detaches
/// and prints the summary `verify` would, with its exit status.
///
/// A --vmi file is read again whenever it changes, and may appear later:
/// keep it current with `oc get vmi NAME -o json > FILE` in a loop.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    observe: ObserveArgs,
    /// A VMI document as `oc get vmi NAME -o json` prints it (or a List),
    /// read again whenever it changes; it may not exist yet.
    #[arg(long, value_name = "FILE")]
    vmi: Vec<PathBuf>,
    /// The VLAN id the NAD puts migration traffic on.
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// The VM's size for the budget, in bytes (default: from the VMI).
    #[arg(long, value_name = "BYTES")]
    vm_memory: Option<u64>,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Milliseconds per throughput interval.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    interval_ms: u64,
    /// Milliseconds between refreshes of the view.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh_ms: u64,
    /// Timestamped lines even on a terminal.
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    budget: BudgetArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    report: ReportArgs,
}

/// Where the live view goes.
enum View {
    Screen(Screen),
    Lines(Lines),
    Json(Lines),
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let mut endpoints = args.observe.endpoint.clone();
    let mut vmis = VmiFiles::new(args.vmi.clone());
    let mut size = args.vm_memory.map(|bytes| crate::measure::budget::VmSize {
        bytes,
        source: "--vm-memory".into(),
    });
    // Files there now must be good: a typo is a usage error, not a wait.
    if let Some(loaded) = vmis.poll()? {
        endpoints.extend(loaded.endpoints);
        size = size.or(loaded.size);
    }
    let settings = args.budget.settings()?;
    let listener = args.metrics.bind()?;
    let serving = listener.is_some();
    let mut dataplane = Dataplane::load()?;
    for cidr in &args.observe.cidr {
        dataplane.add_cidr(*cidr)?;
    }
    dataplane.attach_all(&args.observe.ifaces)?;
    let expectations = Expectations {
        cidrs: args.observe.cidr.clone(),
        vlan: args.vlan,
        expect_traffic: !endpoints.is_empty(),
    };
    let mut evaluator = Evaluator::new(
        endpoints.clone(),
        settings.clone(),
        size.clone(),
        expectations,
        args.interval_ms,
    );
    let waiting: Vec<String> = vmis.missing().map(|p| p.display().to_string()).collect();
    eprintln!(
        "migverify: watching {} interface(s) with {} endpoint(s) and {} CIDR(s){}{}; Ctrl-C to stop and judge",
        args.observe.ifaces.len(),
        endpoints.len(),
        args.observe.cidr.len(),
        if waiting.is_empty() {
            String::new()
        } else {
            format!(", waiting for {}", waiting.join(", "))
        },
        listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| format!(", metrics at http://{a}/metrics"))
            .unwrap_or_default(),
    );
    // After the message: on a terminal the view takes the screen.
    let json = args.report.output() == Output::Json;
    let mut view = if json {
        View::Json(Lines::json())
    } else if std::io::stdout().is_terminal() && !args.plain {
        View::Screen(Screen::enter())
    } else {
        View::Lines(Lines::text())
    };
    let refresh = Duration::from_millis(args.refresh_ms);
    let page = Exposition::default();
    let mut metrics = Metrics::new();
    let mut last_refresh: Option<Duration> = None;
    let mut pending: Option<tokio::sync::oneshot::Receiver<Result<(), String>>> = None;
    let (requests, endpoint_requests) = mpsc::channel::<Request>(4);
    let collected = runtime()?.block_on(async {
        if let Some(listener) = listener {
            tokio::spawn(crate::metrics::serve(listener, page.clone()));
        }
        collect(
            &mut dataplane,
            &endpoints,
            Duration::from_millis(args.interval_ms),
            endpoint_requests,
            stop_after(duration),
            |tick| {
                let at_ms = tick.at.as_millis() as u64;
                if let Some(reply) = pending.as_mut() {
                    match reply.try_recv() {
                        Ok(Err(error)) => view.note(&format!("loading endpoints: {error}")),
                        Ok(Ok(())) | Err(tokio::sync::oneshot::error::TryRecvError::Closed) => {
                            pending = None
                        }
                        Err(tokio::sync::oneshot::error::TryRecvError::Empty) => {}
                    }
                }
                // A VMI that changed: its endpoints reach the kernel on
                // the collector's next turn, before this tick is over.
                match vmis.poll() {
                    Ok(Some(loaded)) => {
                        let mut all = args.observe.endpoint.clone();
                        all.extend(loaded.endpoints);
                        if args.vm_memory.is_none() && loaded.size.is_some() {
                            evaluator.size = loaded.size;
                        }
                        view.note(&format!(
                            "endpoints from {}: {}",
                            loaded.from,
                            all.iter()
                                .map(|e| e.addr.to_string())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ));
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        match requests.try_send(Request::Load(all.clone(), reply)) {
                            Ok(()) => pending = Some(answer),
                            Err(error) => view.note(&format!("loading endpoints: {error}")),
                        }
                        evaluator.set_endpoints(all, at_ms);
                    }
                    Ok(None) => {}
                    Err(error) => view.note(&format!("{error:#}")),
                }
                if last_refresh.is_some_and(|last| tick.at < last + refresh) {
                    return false;
                }
                last_refresh = Some(tick.at);
                let snapshot = evaluator.evaluate_tick(tick);
                if serving {
                    page.set(metrics.render(&snapshot, tick));
                }
                view.show(&snapshot, SystemTime::now());
                false
            },
        )
        .await
    })?;
    dataplane.detach_all();
    if let View::Screen(screen) = view {
        screen.leave();
    }
    let _ = std::io::stdout().flush();
    let mut assumptions = Vec::new();
    if settings.source == "KubeVirt defaults" {
        assumptions.push(
            "budgets: KubeVirt's defaults (completionTimeoutPerGiB 150 s, progressTimeout 150 s); give the \
             cluster's with the budget flags"
                .to_string(),
        );
    }
    let report = report::build(report::Inputs {
        collected: &collected,
        endpoints: &evaluator.endpoints,
        settings: &settings,
        size: evaluator.size.clone(),
        expectations: &evaluator.expectations,
        interval_ms: args.interval_ms,
        assumptions,
    });
    if json {
        // One line, like the rest of the stream.
        println!(
            "{}",
            serde_json::json!({
                "kind": "summary",
                "time": render::rfc3339(SystemTime::now()),
                "report": report,
            })
        );
        args.report.emit_files(&report)?;
        Ok(report.status())
    } else {
        args.report.emit(&report)
    }
}

impl View {
    fn show(&mut self, snapshot: &Snapshot, now: SystemTime) {
        match self {
            View::Screen(screen) => screen.draw(snapshot, now),
            View::Lines(lines) | View::Json(lines) => lines.show(snapshot, now),
        }
    }

    /// Something worth saying once (a VMI loaded, an error reading one).
    fn note(&mut self, text: &str) {
        match self {
            View::Screen(screen) => screen.note(text),
            View::Lines(lines) | View::Json(lines) => lines.note(text, SystemTime::now()),
        }
    }
}
