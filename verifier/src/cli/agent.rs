//! `migverify agent`: one per node, verifying every migration that touches
//! it, learnt from the Kubernetes API.

use super::{
    args::{ClusterArgs, InterfaceArgs, IntervalArgs, MetricsArgs, NetworkArgs},
    runtime, seconds, Status,
};
use crate::{
    agent::{self, Settings},
    dataplane::Netns,
    intent::limits::LimitFlags,
    session::stop_after,
};

/// Verify every live migration that touches this node, from the API.
///
/// Watches the VMIs on this node or migrating to it, finds virt-handler's
/// network namespace and attaches to its migration0 and eth0 and to the
/// NICs and bridge the migration NAD names, loads each migration's
/// endpoints as the target publishes them, and when the migration ends
/// prints verify's report as a JSON line and posts the verdict as an Event
/// on the VirtualMachineInstanceMigration. Runs until SIGTERM or Ctrl-C.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/agent.txt"))]
pub struct Args {
    /// This node's name (as in `spec.nodeName`).
    #[arg(long, env = "NODE_NAME", value_name = "NODE")]
    node_name: String,
    #[command(flatten)]
    kube: ClusterArgs,
    /// The namespace of virt-handler (default: any).
    #[arg(long, value_name = "NAMESPACE")]
    virt_handler_namespace: Option<String>,
    /// The label selector of virt-handler's pods.
    #[arg(
        long,
        value_name = "SELECTOR",
        default_value = "kubevirt.io=virt-handler"
    )]
    virt_handler_selector: String,
    /// The migration interface in virt-handler's namespace.
    #[arg(long, value_name = "NAME", default_value = "migration0")]
    migration_iface: String,
    /// The pod network interface in virt-handler's namespace.
    #[arg(long, value_name = "NAME", default_value = "eth0")]
    primary_iface: String,
    /// The node's network namespace, where the NAD's master and bridge are
    /// (NAME or a path; with hostPID, /proc/1/ns/net). Default: the agent's own.
    #[arg(long, value_name = "NETNS")]
    node_netns: Option<String>,
    /// More interfaces to observe, besides virt-handler's and the NAD's.
    #[command(flatten)]
    interfaces: InterfaceArgs,
    /// Overrides of the migration NAD's range and VLAN.
    #[command(flatten)]
    network: NetworkArgs,
    #[command(flatten)]
    interval: IntervalArgs,
    /// Stop after this many seconds (default: until SIGTERM or Ctrl-C).
    #[arg(short, long, value_name = "SECONDS")]
    duration: Option<f64>,
    #[command(flatten)]
    budget: LimitFlags,
    #[command(flatten)]
    metrics: MetricsArgs,
    #[command(flatten)]
    metrics_auth: crate::metrics::auth::AuthOptions,
    /// Seconds a finished migration's series stay on the metrics page.
    #[arg(long, value_name = "SECONDS", default_value_t = crate::metrics::RETENTION.as_secs())]
    metrics_retention: u64,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    anyhow::ensure!(
        !args.node_name.is_empty(),
        "--node-name (or NODE_NAME) is empty"
    );
    let duration = seconds("--duration", args.duration)?;
    crate::dataplane::privileges::require(crate::dataplane::privileges::AGENT)?;
    let settings = Settings {
        node: args.node_name.clone(),
        virt_handler_namespace: args.virt_handler_namespace.clone(),
        virt_handler_selector: args.virt_handler_selector.clone(),
        migration_iface: args.migration_iface.clone(),
        primary_iface: args.primary_iface.clone(),
        node_netns: args.node_netns.as_deref().map(Netns::parse),
        extra: args.interfaces.ifaces.clone(),
        cidrs: args.network.cidr.clone(),
        vlan: args.network.vlan,
        budget: args.budget.limits()?,
        interval_ms: args.interval.interval_ms,
        hooks: args.interfaces.hooks,
        metrics: args.metrics.bind()?,
        metrics_auth: args.metrics_auth.clone(),
        metrics_retention: std::time::Duration::from_secs(args.metrics_retention),
    };
    runtime()?.block_on(async {
        let client = args.kube.connect().await?;
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            stop_after(duration).await;
            let _ = stop.send(true);
        });
        eprintln!(
            "migverify agent: node {}, watching its VMIs and virt-handler; SIGTERM or Ctrl-C to stop",
            settings.node
        );
        agent::run(client, settings, shutdown).await
    })?;
    Ok(Status::Pass)
}
