//! `migverify check`: the migration network's configuration and the node,
//! before any migration runs.

use std::path::PathBuf;

use super::{args::ClusterArgs, Output, Status};
use crate::{
    checks::{self, host, hostflags::HostFlags, networks::MainRole, render},
    config::{documents, quantity::Quantity, Cidr},
    intent,
    verdict::Verdict,
};

/// Check the migration network's configuration, and the node, before any migration.
///
/// Reads NetworkAttachmentDefinitions, HyperConverged, KubeVirt, MigrationPolicy,
/// VirtualMachineInstance(Migration), the cluster Network config, Nodes (counted)
/// and the legacy kubevirt-config ConfigMap, as
/// `oc get ... -o yaml|json` prints them (single documents, several YAML
/// documents, or a List), or with --cluster the same objects live from the
/// Kubernetes API, and reports findings with stable IDs (docs/checks.md)
/// and the fix for each. With --host or --lab it also checks a node.
///
/// Exit status, as every command's: 0 pass, 1 errors, 2 unreadable input or
/// bad usage, 3 warnings only (see --fail-on).
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/check.txt"))]
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
    /// The migration network's range (repeat for more), when its NAD is not given.
    #[arg(long, value_name = "CIDR")]
    cidr: Vec<Cidr>,
    /// How many nodes run virt-handler (Node objects given count too).
    #[arg(long, value_name = "N")]
    nodes: Option<usize>,
    /// What fails: warning (exit 3, errors 1), error (warnings exit 0), never (exit 0).
    #[arg(long, value_enum, default_value_t = FailOn::Warning)]
    fail_on: FailOn,
    /// A VM memory size (`16Gi`): print its completion budget and the rate it needs.
    #[arg(long, value_name = "QUANTITY")]
    vm_memory: Option<Quantity>,
    #[command(flatten)]
    host: HostFlags,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    if args.files.is_empty() && !args.host.any() && !args.cluster {
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
        migration: args.cidr.clone(),
        nodes: args.nodes,
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
    let mut report = checks::check_objects(&objects, &options);
    // A KubeVirt CR among the inputs may move the synchronization port.
    let plan = args.host.plan(&report, intent::sync_port(&objects))?;
    if let Some(plan) = plan {
        if let Err(why) = crate::dataplane::privileges::check() {
            anyhow::bail!("host checks enter network namespaces: {why}");
        }
        host::check(&plan, &mut report.findings)?;
    }
    match args.output {
        Output::Text => print!("{}", render::text(&report)),
        structured => println!("{}", structured.render(&render::json(&report))),
    }
    Ok(match (report.verdict(), args.fail_on) {
        (_, FailOn::Never) | (Verdict::Warn, FailOn::Error) => Status::Pass,
        (verdict, _) => verdict.into(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum FailOn {
    Error,
    Warning,
    Never,
}
