//! `migverify check`: the migration network's configuration and the node,
//! before any migration runs.

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
};

use anyhow::Context as _;

use super::{args::ClusterArgs, seconds, Output, Status};
use crate::{
    checks::{
        self,
        host::{self, HostPlan, NodePlan, SyncPeer},
        networks::MainRole,
        render,
    },
    config::{documents, quantity::Quantity, Cidr},
    dataplane::{AttachSpec, Netns},
    intent, lab,
    verdict::Verdict,
};

/// Check the migration network's configuration, and the node, before any migration.
///
/// Reads NetworkAttachmentDefinitions, HyperConverged, KubeVirt, MigrationPolicy,
/// VirtualMachineInstance(Migration) and the cluster Network config, as
/// `oc get ... -o yaml|json` prints them (single documents, several YAML
/// documents, or a List), or with --cluster the same objects live from the
/// Kubernetes API, and reports findings with stable IDs (docs/checks.md)
/// and the fix for each. With --host or --lab it also checks a node.
///
/// Exit status: 0 no error-level finding, 1 errors, 2 unreadable input.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Files to read; `-` reads standard input.
    #[arg(value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Read the objects from the cluster (every namespace), as well as any files.
    #[arg(long)]
    cluster: bool,
    #[command(flatten)]
    kube: ClusterArgs,
    /// A pod network CIDR (repeat for more); the Network config adds its own.
    #[arg(long, value_name = "CIDR")]
    pod_cidr: Vec<Cidr>,
    /// A service network CIDR.
    #[arg(long, value_name = "CIDR")]
    service_cidr: Vec<Cidr>,
    /// A machine (node) network CIDR.
    #[arg(long, value_name = "CIDR")]
    machine_cidr: Vec<Cidr>,
    /// A VM memory size (`16Gi`): print its completion budget and the rate it needs.
    #[arg(long, value_name = "QUANTITY")]
    vm_memory: Option<Quantity>,
    /// Check this node too (needs root): virt-handler's migration0 and the path.
    #[arg(long)]
    host: bool,
    /// Check the running lab's two nodes (`migverify lab up` first; needs root).
    #[arg(long, conflicts_with = "host")]
    lab: bool,
    /// virt-handler's network namespace (NAME or /proc/PID/ns/net) for --host.
    #[arg(long, value_name = "NETNS", requires = "host")]
    netns: Option<String>,
    /// The migration interface in virt-handler's namespace.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "migration0",
        requires = "host"
    )]
    migration_iface: String,
    /// An interface on the migration path, [ROLE:]IFACE[@NETNS] (the NIC as
    /// `migration:eth1`, a bridge as `bridge:br1`); repeat for more.
    #[arg(short, long = "iface", value_name = "SPEC", requires = "host")]
    ifaces: Vec<AttachSpec>,
    /// Another node's migration address to probe (repeat for more).
    #[arg(long, value_name = "ADDR", requires = "host")]
    peer: Vec<IpAddr>,
    /// Cross-cluster: the peer cluster's synchronization controller, ADDR[:PORT]
    /// (port 9185, or a given KubeVirt CR's `spec.synchronizationPort`).
    #[arg(long, value_name = "ADDR[:PORT]")]
    sync_peer: Vec<SyncPeer>,
    /// How long each probe waits for an answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    timeout: f64,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    if args.files.is_empty() && !args.host && !args.lab && !args.cluster {
        anyhow::bail!(
            "give the files to check (`-` for standard input), or --cluster, --host / --lab"
        );
    }
    let Some(mut objects) = documents::load_all(&args.files) else {
        return Ok(Status::Usage);
    };
    if args.cluster {
        objects.extend(super::runtime()?.block_on(async {
            anyhow::Ok(crate::cluster::objects::checked_objects(&args.kube.connect().await?).await?)
        })?);
    }
    let mut options = checks::Options {
        vm_memory: args.vm_memory.clone(),
        ..checks::Options::default()
    };
    for (role, cidrs, flag) in [
        (MainRole::Pod, &args.pod_cidr, "--pod-cidr"),
        (MainRole::Service, &args.service_cidr, "--service-cidr"),
        (MainRole::Machine, &args.machine_cidr, "--machine-cidr"),
    ] {
        for cidr in cidrs {
            options.main.add(role, *cidr, flag.to_string());
        }
    }
    let timeout = seconds("--timeout", Some(args.timeout))?
        .filter(|t| !t.is_zero())
        .context("--timeout: give the seconds a probe waits, above 0")?;
    let mut report = checks::check_objects(&objects, &options);
    // A KubeVirt CR among the inputs may move the synchronization port.
    let sync_port = intent::sync_port(&objects);
    let sync_peers: Vec<SocketAddr> = args.sync_peer.iter().map(|p| p.addr(sync_port)).collect();
    let plan = if args.lab {
        let config = lab::current().context("--lab")?;
        let (mut plan, lab_nad) = lab::plan::host_plan(&config, timeout)?;
        // A NAD given with --lab is what the lab is checked against.
        plan.nad = Some(report.given_nad().unwrap_or(lab_nad));
        plan.sync_peers.extend(sync_peers);
        Some(plan)
    } else if args.host {
        Some(HostPlan {
            nodes: vec![NodePlan {
                name: args.netns.clone().unwrap_or_else(|| "this host".into()),
                netns: args.netns.as_deref().map(Netns::parse),
                migration_iface: args.migration_iface.clone(),
                path: args.ifaces.clone(),
                peers: args.peer.clone(),
                port_vlans: None,
            }],
            nad: report.given_nad(),
            sync_peers,
            timeout,
        })
    } else {
        None
    };
    if let Some(plan) = plan {
        if let Err(why) = crate::dataplane::privileges::check() {
            anyhow::bail!("host checks enter network namespaces: {why}");
        }
        host::check(&plan, &mut report.findings)?;
    }
    match args.output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&render::json(&report))?),
        Output::Text => print!("{}", render::text(&report)),
    }
    Ok(match report.verdict() {
        Verdict::Fail => Status::Fail,
        Verdict::Warn | Verdict::Pass => Status::Pass,
    })
}
