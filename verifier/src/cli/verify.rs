//! `migverify verify`: attach, wait for migrations, judge them.

use std::{path::PathBuf, time::Duration};

use anyhow::Context as _;
use tokio::sync::mpsc;

use super::{
    runtime, seconds, stop_after, BudgetArgs, MetricsArgs, ObserveArgs, ReportArgs, Status,
};
use crate::{
    checks,
    config::{
        documents::load_path, endpoints::endpoints_from_vmi_file, quantity::Quantity, Cidr,
        Endpoint,
    },
    dataplane::Dataplane,
    flows::{collect, FlowTable},
    measure::{
        budget::{BudgetSettings, VmSize},
        live::Evaluator,
        migration::group,
        verdict::Expectations,
    },
    metrics::{Exposition, Metrics},
    report,
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
pub struct Args {
    #[command(flatten)]
    observe: ObserveArgs,
    /// A VMI document as `oc get vmi NAME -o json` prints it (or a List):
    /// its published endpoints and its memory size.
    #[arg(long, value_name = "FILE")]
    vmi: Vec<PathBuf>,
    /// The VLAN id the NAD puts migration traffic on.
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// HyperConverged, KubeVirt, MigrationPolicy and NetworkAttachmentDefinition
    /// manifests (YAML or JSON): the budgets in force, and the migration
    /// network's range and VLAN when no --cidr/--vlan is given.
    #[arg(long, value_name = "FILE")]
    config: Vec<PathBuf>,
    /// The VM's size for the budget, a Kubernetes quantity such as 16Gi
    /// (default: the VMI's guest memory, else its memory request).
    #[arg(long, value_name = "QUANTITY")]
    vm_memory: Option<Quantity>,
    /// Stop once this many migrations have completed (all their connections closed).
    #[arg(long, value_name = "N")]
    migrations: Option<usize>,
    /// Stop after this many seconds.
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    /// Stop once no payload has moved for this many seconds after traffic was seen.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0)]
    idle: f64,
    /// Milliseconds per throughput interval.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    interval_ms: u64,
    #[command(flatten)]
    budget: BudgetArgs,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    report: ReportArgs,
}

/// When to stop waiting for migrations.
struct StopRule {
    migrations: Option<usize>,
    idle: Duration,
    last_payload: u64,
    last_progress: Option<Duration>,
}

impl StopRule {
    fn done(&mut self, table: &FlowTable, endpoints: &[Endpoint], at: Duration) -> bool {
        let payload: u64 = table.connections().map(|c| c.payload_bytes()).sum();
        if payload > self.last_payload {
            self.last_payload = payload;
            self.last_progress = Some(at);
        }
        if let Some(wanted) = self.migrations {
            let completed = group(table, endpoints)
                .iter()
                .filter(|g| {
                    g.connections
                        .iter()
                        .all(|c| c.payload_bytes() > 0 && c.state() == "closed")
                })
                .count();
            if completed >= wanted {
                return true;
            }
        }
        self.last_progress
            .is_some_and(|last| at.saturating_sub(last) >= self.idle)
    }
}

/// What the manifests given with --config say.
struct FromConfig {
    settings: Option<BudgetSettings>,
    cidrs: Vec<Cidr>,
    vlan: Option<u16>,
}

fn read_config(paths: &[PathBuf], assumptions: &mut Vec<String>) -> anyhow::Result<FromConfig> {
    let mut objects = Vec::new();
    for path in paths {
        objects.extend(load_path(path)?);
    }
    let checked = checks::check_objects(&objects, &checks::Options::default());
    let errors = checked
        .findings
        .0
        .iter()
        .filter(|f| f.severity == checks::findings::Severity::Error)
        .count();
    if errors > 0 {
        eprintln!("migverify: the manifests have {errors} error-level finding(s); `migverify check` says which");
    }
    let nad = checked.migration_nad.and_then(|i| checked.nads.get(i));
    Ok(FromConfig {
        settings: checked
            .limits
            .map(|(source, limits)| BudgetSettings::from_limits(source, &limits, assumptions)),
        cidrs: nad
            .and_then(|n| n.ipam.as_ref())
            .map(|i| i.ranges.clone())
            .unwrap_or_default(),
        vlan: nad
            .and_then(|n| n.vlan)
            .and_then(|v| u16::try_from(v).ok())
            .filter(|v| *v > 0),
    })
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let duration = seconds("--duration", args.duration)?;
    let idle = seconds("--idle", Some(args.idle))?.expect("given");
    let mut assumptions = Vec::new();
    let mut endpoints = args.observe.endpoint.clone();
    let mut size = match &args.vm_memory {
        Some(quantity) => Some(VmSize {
            bytes: quantity_bytes(quantity)
                .with_context(|| format!("--vm-memory {quantity}: not a size in bytes"))?,
            source: format!("--vm-memory {quantity}"),
        }),
        None => None,
    };
    for path in &args.vmi {
        endpoints.extend(endpoints_from_vmi_file(path)?);
        if size.is_none() {
            size = vmi_memory(path)?;
        }
    }
    let from_config = read_config(&args.config, &mut assumptions)?;
    // Flags win over manifests; manifests over KubeVirt's defaults.
    let settings = if args.budget.given() {
        args.budget.settings()?
    } else {
        from_config
            .settings
            .map_or_else(|| args.budget.settings(), Ok)?
    };
    let cidrs = if args.observe.cidr.is_empty() {
        from_config.cidrs
    } else {
        args.observe.cidr.clone()
    };
    let vlan = args.vlan.or(from_config.vlan);
    let listener = args.metrics.bind()?;
    let mut dataplane = Dataplane::load()?;
    for cidr in &cidrs {
        dataplane.add_cidr(*cidr)?;
    }
    dataplane.attach_all(&args.observe.ifaces)?;
    eprintln!(
        "migverify: verifying on {} interface(s) with {} endpoint(s) and {} CIDR(s); waiting for migrations \
         (Ctrl-C to stop and judge)",
        args.observe.ifaces.len(),
        endpoints.len(),
        cidrs.len()
    );
    let mut rule = StopRule {
        migrations: args.migrations,
        idle,
        last_payload: 0,
        last_progress: None,
    };
    let expectations = Expectations {
        cidrs,
        vlan,
        expect_traffic: !endpoints.is_empty(),
    };
    // With --metrics-listen, the live evaluation `watch` shows feeds the page.
    let page = Exposition::default();
    let mut live = listener.is_some().then(|| {
        (
            Evaluator::new(
                endpoints.clone(),
                settings.clone(),
                size.clone(),
                expectations.clone(),
                args.interval_ms,
            ),
            Metrics::new(),
        )
    });
    let mut last_metrics: Option<Duration> = None;
    let collected = runtime()?.block_on(async {
        if let Some(listener) = listener {
            eprintln!(
                "migverify: metrics at http://{}/metrics",
                listener.local_addr()?
            );
            tokio::spawn(crate::metrics::serve(listener, page.clone()));
        }
        let (_, requests) = mpsc::channel(1);
        Ok::<_, anyhow::Error>(
            collect(
                &mut dataplane,
                &endpoints,
                Duration::from_millis(args.interval_ms),
                requests,
                stop_after(duration),
                |tick| {
                    if let Some((evaluator, metrics)) = live.as_mut() {
                        if last_metrics.is_none_or(|last| tick.at >= last + crate::metrics::REFRESH)
                        {
                            last_metrics = Some(tick.at);
                            let snapshot = evaluator.evaluate_tick(tick);
                            page.set(metrics.render(&snapshot, tick));
                        }
                    }
                    rule.done(tick.table, &endpoints, tick.at)
                },
            )
            .await?,
        )
    })?;
    dataplane.detach_all();
    if settings.source == "KubeVirt defaults" {
        assumptions.push(
            "budgets: KubeVirt's defaults (completionTimeoutPerGiB 150 s, progressTimeout 150 s); give the \
             cluster's with the budget flags"
                .to_string(),
        );
    }
    let report = report::build(report::Inputs {
        collected: &collected,
        endpoints: &endpoints,
        settings: &settings,
        size,
        expectations: &expectations,
        interval_ms: args.interval_ms,
        assumptions,
    });
    args.report.emit(&report)
}

/// The size KubeVirt budgets a VMI by, from a VMI file.
pub(super) fn vmi_memory(path: &std::path::Path) -> anyhow::Result<Option<VmSize>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let vmi = if value["kind"] == "List" {
        &value["items"][0]
    } else {
        &value
    };
    VmSize::of_vmi(vmi).map_err(|why| anyhow::anyhow!("{}: {why}", path.display()))
}

fn quantity_bytes(quantity: &Quantity) -> Option<u64> {
    quantity.value().and_then(|v| u64::try_from(v).ok())
}
