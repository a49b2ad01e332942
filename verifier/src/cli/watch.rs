//! `migverify watch`: attach like `verify`, show every migration and its
//! flows live with the named cause of whatever goes wrong, and print
//! `verify`'s summary on Ctrl-C.

use std::{
    io::Write as _,
    time::{Duration, SystemTime},
};

use tokio::sync::{mpsc, oneshot};

use super::{
    args::{InterfaceArgs, JudgeArgs, MetricsArgs, ReportArgs},
    runtime, say, seconds, Output, Status,
};
use crate::{
    discovery::{self, Discovery},
    flows::Request,
    intent::vmi::VmiFiles,
    metrics::{Exposition, Metrics},
    report::live::{rfc3339, View},
    session::{stop_after, Session},
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
#[command(after_help = include_str!("../../help/watch.txt"))]
pub struct Args {
    #[command(flatten)]
    interfaces: InterfaceArgs,
    #[command(flatten)]
    discovery: discovery::Options,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Stop after this many seconds (default: until Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Milliseconds between refreshes of the view.
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(100..=60_000))]
    refresh_ms: u64,
    /// Timestamped lines even on a terminal.
    #[arg(long)]
    plain: bool,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let (ifaces, found) = args.discovery.resolve(&args.interfaces.ifaces)?;
    say(found.iter().flat_map(Discovery::lines));
    let given = args.judge.target.endpoint.clone();
    let mut vmis = VmiFiles::new(args.judge.target.vmi.clone());
    let mut api = args.judge.target.api();
    // Files there now must be good: a typo is a usage error, not a wait.
    let mut loaded = vmis.poll(api.as_mut().map(|a| a as _))?.unwrap_or_default();
    loaded.endpoints.splice(0..0, given.iter().cloned());
    let queued = std::mem::take(&mut loaded.queued);
    let mut criteria = args.judge.criteria(loaded)?;
    say(criteria.adopt(found.as_ref()));
    let listener = args.metrics.bind()?;
    let serving = listener.is_some();
    let mut session = Session::start(&ifaces, &criteria.expectations.cidrs, args.interfaces.hooks)?;
    let mut evaluator = criteria.evaluator();
    evaluator.set_queued(&queued, 0);
    let waiting: Vec<String> = vmis.missing().map(ToString::to_string).collect();
    eprintln!(
        "migverify: watching {} interface(s) with {} endpoint(s) and {} CIDR(s){}{}; Ctrl-C to stop and judge",
        ifaces.len(),
        criteria.endpoints.len(),
        criteria.expectations.cidrs.len(),
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
    let structured = Some(args.report.output).filter(|o| *o != Output::Text);
    let mut view = match structured {
        Some(format) => View::structured(format),
        None => View::for_stdout(args.plain),
    };
    let refresh = Duration::from_millis(args.refresh_ms);
    let page = Exposition::default();
    let mut metrics = Metrics::new();
    let mut last_refresh: Option<Duration> = None;
    let mut pending: Option<oneshot::Receiver<Result<(), String>>> = None;
    let (requests, endpoint_requests) = mpsc::channel::<Request>(4);
    let collected = runtime()?.block_on(async {
        if let Some(listener) = listener {
            tokio::spawn(crate::metrics::serve(
                listener,
                page.clone(),
                crate::metrics::Access::Open,
            ));
        }
        session
            .collect(
                &criteria.endpoints,
                Duration::from_millis(criteria.interval_ms),
                endpoint_requests,
                stop_after(duration),
                |tick| {
                    let at_ms = tick.at.as_millis() as u64;
                    if let Some(reply) = pending.as_mut() {
                        match reply.try_recv() {
                            Ok(Err(error)) => view.note(&format!("loading endpoints: {error}")),
                            Ok(Ok(())) | Err(oneshot::error::TryRecvError::Closed) => {
                                pending = None
                            }
                            Err(oneshot::error::TryRecvError::Empty) => {}
                        }
                    }
                    // A VMI that changed: its endpoints reach the kernel on
                    // the collector's next turn, before this tick is over.
                    match vmis.poll(api.as_mut().map(|a| a as _)) {
                        Ok(Some(loaded)) => {
                            let mut all = given.clone();
                            all.extend(loaded.endpoints);
                            evaluator.sizes = loaded.sizes;
                            evaluator.set_queued(&loaded.queued, at_ms);
                            evaluator.ended = loaded.ended;
                            view.note(&format!(
                                "endpoints from {}: {}",
                                loaded.from,
                                all.iter()
                                    .map(|e| e.addr.to_string())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ));
                            let (reply, answer) = oneshot::channel();
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
    session.detach();
    view.leave();
    let _ = std::io::stdout().flush();
    // Judged on what was learnt while watching.
    criteria.endpoints = evaluator.endpoints;
    criteria.expectations = evaluator.expectations;
    criteria.sizes = evaluator.sizes;
    criteria.ended = args.judge.target.ended()?;
    let report = criteria.report(&collected);
    if let Some(format) = structured {
        // One record, like the rest of the stream.
        let time = rfc3339(SystemTime::now());
        let summary = serde_json::json!({ "kind": "summary", "time": time, "report": report });
        println!("{}", format.record(&summary));
        args.report.emit_files(&report)?;
        Ok(report.verdict.into())
    } else {
        args.report.emit(&report)
    }
}
