//! `migverify checkup`: the kiagnose-style checkup of the migration network
//! between two nodes, configured by a ConfigMap and writing its status back
//! into it (docs/checkup.md).

use anyhow::Context as _;

use super::{args::ClusterArgs, runtime, Output, Status};
use crate::checkup::{self, Identity, Target};

/// Benchmark the migration network between two nodes, as a Job.
///
/// Reads the ConfigMap's spec.* (NAD, source and target node, VM size,
/// duration, budgets), runs `bench serve` in a pod on the target node and
/// `bench run` in a pod on the source node, both on the migration network,
/// and writes status.succeeded, status.failureReason and status.result.*
/// back into the ConfigMap.
///
/// Exit status: 0 succeeded, 1 the checkup failed (its reason is in the
/// ConfigMap), 2 the ConfigMap could not be read or written.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/checkup.txt"))]
pub struct Args {
    /// The ConfigMap's name [default: $CONFIGMAP_NAME].
    #[arg(long, value_name = "NAME")]
    configmap_name: Option<String>,
    /// The ConfigMap's namespace [default: $CONFIGMAP_NAMESPACE].
    #[arg(long, value_name = "NAMESPACE")]
    configmap_namespace: Option<String>,
    #[command(flatten)]
    cluster: ClusterArgs,
    /// The image of the bench pods [default: $MIGVERIFY_IMAGE, else the checkup's own pod's image].
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// A flag, else an environment variable (set by the Job through the downward API).
fn flag_or_env(flag: Option<String>, var: &str) -> Option<String> {
    flag.or_else(|| std::env::var(var).ok())
        .filter(|v| !v.trim().is_empty())
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    let target = Target {
        name: flag_or_env(args.configmap_name, "CONFIGMAP_NAME")
            .context("which ConfigMap? give --configmap-name or set CONFIGMAP_NAME")?,
        namespace: flag_or_env(args.configmap_namespace, "CONFIGMAP_NAMESPACE")
            .context("which namespace? give --configmap-namespace or set CONFIGMAP_NAMESPACE")?,
    };
    let identity = Identity {
        pod_name: flag_or_env(None, "POD_NAME"),
        pod_uid: flag_or_env(None, "POD_UID"),
        image: flag_or_env(args.image, "MIGVERIFY_IMAGE"),
    };
    let written = runtime()?.block_on(async {
        let client = args.cluster.connect().await?;
        anyhow::Ok(checkup::run(client, &target, &identity).await?)
    })?;
    match args.output {
        Output::Text => print!("{}", checkup::text(&written.data)),
        structured => println!("{}", structured.render(&checkup::json(&written.data))),
    }
    Ok(if written.succeeded {
        Status::Pass
    } else {
        Status::Fail
    })
}
