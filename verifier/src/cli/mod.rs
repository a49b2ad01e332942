//! The `migverify` command line: parsing, dispatch and exit codes.

mod agent;
mod bench;
mod check;
mod checkup;
mod counters;
mod flows;
mod lab;
mod verify;
mod watch;

use std::{process::ExitCode, time::Duration};

use anyhow::Context as _;

use crate::{
    config::{Cidr, Endpoint},
    dataplane::AttachSpec,
    measure::budget::BudgetSettings,
};

use clap::{Parser, Subcommand, ValueEnum};

/// The exit statuses every command shares (design, section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass = 0,
    Fail = 1,
    /// Bad usage or input, missing privileges or interfaces: nothing was judged.
    Usage = 2,
    Warn = 3,
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status as u8)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

/// Verify on the wire that KubeVirt live migrations use the migration network.
///
/// migverify attaches pass-through eBPF observers to the migration NIC, the
/// bridge and the pod network, classifies live-migration TCP flows, and
/// judges what it saw against the migration budgets.
///
/// Exit status: 0 pass, 1 fail, 2 usage or input error, 3 warning.
#[derive(Debug, Parser)]
#[command(name = "migverify", version, max_term_width = 100)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Agent(agent::Args),
    Check(check::Args),
    Bench(bench::Args),
    Checkup(checkup::Args),
    Counters(counters::Args),
    Flows(flows::Args),
    Lab(lab::Args),
    Verify(verify::Args),
    Watch(watch::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Agent(args) => agent::run(args),
        Command::Check(args) => check::run(args),
        Command::Bench(args) => bench::run(args),
        Command::Checkup(args) => checkup::run(args),
        Command::Counters(args) => counters::run(args),
        Command::Flows(args) => flows::run(args),
        Command::Lab(args) => lab::run(args),
        Command::Verify(args) => verify::run(args),
        Command::Watch(args) => watch::run(args),
    };
    match status {
        Ok(status) => status.into(),
        Err(error) => {
            eprintln!("migverify: {error:#}");
            Status::Usage.into()
        }
    }
}

/// Where to observe and what to classify by, shared by `flows`, `verify`
/// and `watch` (the VMI documents each reads in its own way).
#[derive(Debug, Clone, clap::Args)]
pub struct ObserveArgs {
    /// Interface to observe, as [ROLE:]IFACE[@NETNS] (ROLE: migration,
    /// bridge, primary, other). Repeat for more.
    #[arg(short, long = "iface", value_name = "SPEC", required = true)]
    pub ifaces: Vec<AttachSpec>,
    /// A target endpoint, ADDR:PORT[=control|memory|disk].
    #[arg(long, value_name = "ENDPOINT")]
    pub endpoint: Vec<Endpoint>,
    /// The migration network's CIDR (the NAD's IPAM range), or a
    /// virt-handler migration address. Repeat for more.
    #[arg(long, value_name = "CIDR")]
    pub cidr: Vec<Cidr>,
}

/// The migration budgets, as flags (defaults: KubeVirt's).
#[derive(Debug, Clone, clap::Args)]
pub struct BudgetArgs {
    /// completionTimeoutPerGiB, seconds per 10^9 bytes of VM size.
    #[arg(long, value_name = "SECONDS")]
    completion_timeout_per_gib: Option<u64>,
    /// progressTimeout, seconds without progress before KubeVirt gives up.
    #[arg(long, value_name = "SECONDS")]
    progress_timeout: Option<u64>,
    /// parallelMigrationsPerCluster.
    #[arg(long, value_name = "N")]
    parallel_migrations_per_cluster: Option<u64>,
    /// parallelOutboundMigrationsPerNode.
    #[arg(long, value_name = "N")]
    parallel_outbound_migrations_per_node: Option<u64>,
}

impl BudgetArgs {
    /// Whether any budget flag was given.
    pub fn given(&self) -> bool {
        self.completion_timeout_per_gib.is_some()
            || self.progress_timeout.is_some()
            || self.parallel_migrations_per_cluster.is_some()
            || self.parallel_outbound_migrations_per_node.is_some()
    }

    pub fn settings(&self) -> anyhow::Result<BudgetSettings> {
        let mut settings = BudgetSettings::default();
        let mut given = false;
        for (value, field) in [
            (
                self.completion_timeout_per_gib,
                &mut settings.completion_timeout_per_gib,
            ),
            (self.progress_timeout, &mut settings.progress_timeout_s),
            (
                self.parallel_migrations_per_cluster,
                &mut settings.parallel_migrations_per_cluster,
            ),
            (
                self.parallel_outbound_migrations_per_node,
                &mut settings.parallel_outbound_migrations_per_node,
            ),
        ] {
            if let Some(value) = value {
                anyhow::ensure!(value > 0, "budget flags take positive values (got 0)");
                *field = value;
                given = true;
            }
        }
        if given {
            settings.source = "flags (KubeVirt defaults for the rest)".into();
        }
        Ok(settings)
    }
}

/// Where and how a verdict report goes.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
    /// Also write a self-contained HTML report with plots to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<std::path::PathBuf>,
    /// Also write the throughput and RTT histograms as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<std::path::PathBuf>,
}

impl ReportArgs {
    pub fn output(&self) -> Output {
        self.output
    }

    /// Prints the report and writes its files; the verdict's exit status.
    pub fn emit(&self, report: &crate::report::Report) -> anyhow::Result<Status> {
        self.emit_files(report)?;
        match self.output {
            Output::Text => print!("{}", report.text()),
            Output::Json => println!("{}", report.json()),
        }
        Ok(report.status())
    }

    /// Writes the HTML report and the HdrHistogram log, if asked for.
    pub fn emit_files(&self, report: &crate::report::Report) -> anyhow::Result<()> {
        if let Some(path) = &self.report {
            std::fs::write(path, report.html())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("migverify: HTML report written to {}", path.display());
        }
        if let Some(path) = &self.hdr_log {
            let mut file = std::fs::File::create(path)
                .with_context(|| format!("creating {}", path.display()))?;
            crate::report::write_hdr_log(report, &mut file)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("migverify: HdrHistogram log written to {}", path.display());
        }
        Ok(())
    }
}

/// Where the Kubernetes API is.
#[derive(Debug, Clone, clap::Args)]
pub struct ClusterArgs {
    /// The kubeconfig to use (default: KUBECONFIG, ~/.kube/config, else the
    /// pod's service account).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<std::path::PathBuf>,
}

impl ClusterArgs {
    pub async fn connect(&self) -> anyhow::Result<kube::Client> {
        Ok(crate::cluster::connect(self.kubeconfig.as_deref()).await?)
    }
}

/// Prometheus exposition while a command runs.
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics while running (a bare
    /// PORT listens on 127.0.0.1). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<crate::metrics::ListenAddr>,
}

impl MetricsArgs {
    /// Binds the listener now, so a taken port fails before anything is attached.
    pub fn bind(&self) -> anyhow::Result<Option<std::net::TcpListener>> {
        Ok(self.metrics_listen.map(crate::metrics::bind).transpose()?)
    }
}

/// Seconds from a flag, as a Duration, with the flag named on error.
fn seconds(flag: &str, value: Option<f64>) -> anyhow::Result<Option<Duration>> {
    value
        .map(|s| {
            Duration::try_from_secs_f64(s).with_context(|| format!("{flag} {s}: not a duration"))
        })
        .transpose()
}

/// Resolves after `duration` (never without one), on Ctrl-C (SIGINT) or
/// on SIGTERM, whichever comes first.
async fn stop_after(duration: Option<Duration>) {
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}

/// A single-threaded runtime: the work is waiting on timers, signals and the
/// kernel, never on CPU.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
