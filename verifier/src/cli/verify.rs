//! `migverify verify`: attach, wait for migrations, judge them.

use std::time::Duration;

use tokio::sync::mpsc;

use super::{
    args::{InterfaceArgs, JudgeArgs, MetricsArgs, ReportArgs},
    runtime, say, seconds, Status,
};
use crate::{
    discovery::{self, Discovery},
    metrics::{Exposition, Metrics},
    session::{stop_after, Session, StopRule},
};

/// Verify that migrations use the migration network, within their budgets.
///
/// Attaches to the interfaces, waits for migration traffic, then judges
/// every migration it saw: FAIL when a migration byte crossed a primary
/// interface or left the migration CIDR, when the VLAN differs from the
/// NAD's, when a stall outlasts progressTimeout, or when the projected
/// completion exceeds the completion budget; WARN within 80% of a budget or
/// with too few RTT samples; PASS otherwise.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/verify.txt"))]
pub struct Args {
    #[command(flatten)]
    interfaces: InterfaceArgs,
    #[command(flatten)]
    discovery: discovery::Options,
    #[command(flatten)]
    judge: JudgeArgs,
    /// Stop once this many migrations have completed (all their connections closed).
    #[arg(long, value_name = "N")]
    migrations: Option<usize>,
    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Stop once no payload has moved for this many seconds after traffic was seen.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    idle: f64,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    report: ReportArgs,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let idle = seconds("--idle", Some(args.idle))?.expect("given");
    let (ifaces, found) = args.discovery.resolve(&args.interfaces.ifaces)?;
    say(found.iter().flat_map(Discovery::lines));
    let mut criteria = args.judge.criteria(args.judge.target.published()?)?;
    say(criteria.adopt(found.as_ref()));
    let listener = args.metrics.bind()?;
    let mut session = Session::start(&ifaces, &criteria.expectations.cidrs, args.interfaces.hooks)?;
    eprintln!(
        "migverify: verifying on {} interface(s) with {} endpoint(s) and {} CIDR(s); waiting for migrations \
         (Ctrl-C to stop and judge)",
        ifaces.len(),
        criteria.endpoints.len(),
        criteria.expectations.cidrs.len()
    );
    let mut rule = StopRule::new(args.migrations, idle);
    // With --metrics-listen, the live evaluation `watch` shows feeds the page.
    let page = Exposition::default();
    let mut live = listener
        .is_some()
        .then(|| (criteria.evaluator(), Metrics::new()));
    let mut last_metrics: Option<Duration> = None;
    let collected = runtime()?.block_on(async {
        if let Some(listener) = listener {
            eprintln!(
                "migverify: metrics at http://{}/metrics",
                listener.local_addr()?
            );
            tokio::spawn(crate::metrics::serve(
                listener,
                page.clone(),
                crate::metrics::Access::Open,
            ));
        }
        let (_, requests) = mpsc::channel(1);
        Ok::<_, anyhow::Error>(
            session
                .collect(
                    &criteria.endpoints,
                    Duration::from_millis(criteria.interval_ms),
                    requests,
                    stop_after(duration),
                    |tick| {
                        if let Some((evaluator, metrics)) = live.as_mut() {
                            if last_metrics
                                .is_none_or(|last| tick.at >= last + crate::metrics::REFRESH)
                            {
                                last_metrics = Some(tick.at);
                                let snapshot = evaluator.evaluate_tick(tick);
                                page.set(metrics.render(&snapshot, tick));
                            }
                        }
                        rule.done(tick.table, &criteria.endpoints, tick.at)
                    },
                )
                .await?,
        )
    })?;
    session.detach();
    criteria.ended = args.judge.target.ended()?;
    args.report.emit(&criteria.report(&collected))
}
