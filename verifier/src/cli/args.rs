//! The argument groups commands share: each flag is defined once, here,
//! and a command flattens the groups it takes.
// Without the data plane, the commands that take some of them are not built.
#![cfg_attr(not(feature = "dataplane"), allow(dead_code))]

use std::{collections::BTreeMap, path::PathBuf};

use super::Status;
use crate::{
    cluster::vmi::ApiVmis,
    config::{documents::load_path, quantity::Quantity, Cidr, Endpoint},
    dataplane::{AttachSpec, Hooks},
    intent::{
        self,
        limits::LimitFlags,
        vmi::{self, VmiSource},
        Ended, VmSize,
    },
    session::Criteria,
};

/// Where to observe.
#[derive(Debug, Clone, clap::Args)]
pub struct InterfaceArgs {
    /// Interface to observe, as [ROLE:]IFACE[@NETNS] (ROLE: migration,
    /// bridge, primary, other; NETNS: a name under /var/run/netns or a path
    /// such as /proc/PID/ns/net). Repeat for more.
    #[arg(short, long = "iface", value_name = "SPEC")]
    pub ifaces: Vec<AttachSpec>,
    /// The kernel hook to attach with (clsact: the fallback of kernels before 6.6, on any kernel).
    #[arg(long, value_enum, default_value_t = Hooks::Auto)]
    pub hooks: Hooks,
}

impl InterfaceArgs {
    /// The interfaces, at least one.
    pub fn required(&self) -> anyhow::Result<&[AttachSpec]> {
        anyhow::ensure!(
            !self.ifaces.is_empty(),
            "give the interfaces to observe with -i [ROLE:]IFACE[@NETNS], e.g. \
             -i migration:migration0@/proc/PID/ns/net"
        );
        Ok(&self.ifaces)
    }
}

/// What the migration targets published.
#[derive(Debug, Clone, clap::Args)]
pub struct TargetArgs {
    /// A target endpoint, ADDR:PORT[=control|memory|disk].
    #[arg(long, value_name = "ENDPOINT")]
    pub endpoint: Vec<Endpoint>,
    /// VMIs: a file as `oc get vmi -o yaml|json` prints it (one, or a
    /// List), `-` for standard input, or NAMESPACE/NAME read through the
    /// API: their published endpoints and each VM's size (`watch` reads
    /// them again as they change, and waits for them to exist).
    #[arg(long, value_name = "FILE|-|NS/NAME")]
    pub vmi: Vec<VmiSource>,
    #[command(flatten)]
    pub kube: ClusterArgs,
}

impl TargetArgs {
    /// A reader of the VMIs named NAMESPACE/NAME, when there are any.
    pub fn api(&self) -> Option<ApiVmis> {
        (self.vmi.iter())
            .any(|s| matches!(s, VmiSource::Api { .. }))
            .then(|| ApiVmis::start(self.kube.kubeconfig.clone()))
    }

    /// The endpoints given and those every VMI published (each VMI must
    /// have), and each VMI's size.
    pub fn published(&self) -> anyhow::Result<vmi::Loaded> {
        let mut api = self.api();
        let mut loaded = vmi::published(&self.vmi, api.as_mut().map(|a| a as _))?;
        loaded.endpoints.splice(0..0, self.endpoint.iter().cloned());
        Ok(loaded)
    }
}

impl TargetArgs {
    /// How the VMIs' migrations ended, where they say, read again now.
    pub fn ended(&self) -> anyhow::Result<BTreeMap<String, Ended>> {
        vmi::ended_now(&self.vmi, self.api().as_mut().map(|a| a as _))
    }
}

/// The migration network migrations should use.
#[derive(Debug, Clone, clap::Args)]
pub struct NetworkArgs {
    /// The migration network's CIDR (the NAD's IPAM range), or a
    /// virt-handler migration address. Repeat for more.
    #[arg(long, value_name = "CIDR")]
    pub cidr: Vec<Cidr>,
    /// The VLAN id the NAD puts migration traffic on.
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    pub vlan: Option<u16>,
}

/// The VM's size for the budget.
#[derive(Debug, Clone, clap::Args)]
pub struct SizeArgs {
    /// The VM's size for the budget, a Kubernetes quantity such as 16Gi
    /// (default: the VMI's guest memory, else its memory request).
    #[arg(long, value_name = "QUANTITY")]
    pub vm_memory: Option<Quantity>,
}

impl SizeArgs {
    pub fn size(&self) -> anyhow::Result<Option<VmSize>> {
        self.vm_memory
            .as_ref()
            .map(|q| VmSize::from_flag("--vm-memory", q).map_err(anyhow::Error::msg))
            .transpose()
    }
}

/// The cluster's own objects, from files.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArgs {
    /// HyperConverged, KubeVirt, MigrationPolicy and NetworkAttachmentDefinition
    /// manifests (YAML or JSON): the budgets in force, and the migration
    /// network's range and VLAN when no --cidr/--vlan is given.
    #[arg(long, value_name = "FILE")]
    pub config: Vec<PathBuf>,
}

impl ConfigArgs {
    pub fn intent(&self) -> anyhow::Result<intent::Intent> {
        let mut objects = Vec::new();
        for path in &self.config {
            objects.extend(load_path(path)?);
        }
        Ok(intent::read(&objects))
    }
}

/// How finely throughput is cut.
#[derive(Debug, Clone, clap::Args)]
pub struct IntervalArgs {
    /// Milliseconds per throughput interval.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    pub interval_ms: u64,
}

/// What `verify` and `watch` judge migrations against: flags first, then
/// the manifests given with --config, then KubeVirt's defaults.
#[derive(Debug, Clone, clap::Args)]
pub struct JudgeArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    #[command(flatten)]
    pub network: NetworkArgs,
    #[command(flatten)]
    pub size: SizeArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub budget: LimitFlags,
    #[command(flatten)]
    pub interval: IntervalArgs,
}

impl JudgeArgs {
    /// The criteria, with what the VMIs said (each VM's size, unless
    /// --vm-memory gives every one's).
    pub fn criteria(&self, vmis: vmi::Loaded) -> anyhow::Result<Criteria> {
        let mut criteria = Criteria::resolve(
            self.budget.limits()?,
            self.config.intent()?,
            &self.network.cidr,
            self.network.vlan,
            vmis.endpoints,
            self.size.size()?,
            self.interval.interval_ms,
        );
        criteria.sizes = vmis.sizes;
        criteria.ended = vmis.ended;
        Ok(criteria)
    }
}

/// Where and how a verdict report goes.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    #[arg(short, long, value_enum, default_value_t = super::Output::Text)]
    pub output: super::Output,
    /// Also write a self-contained HTML report with plots to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,
    /// Also write the throughput and RTT histograms as an HdrHistogram interval log.
    #[arg(long, value_name = "FILE")]
    hdr_log: Option<PathBuf>,
}

impl ReportArgs {
    /// Prints the report and writes its files; the verdict's exit status.
    pub fn emit(&self, report: &crate::report::Report) -> anyhow::Result<Status> {
        self.emit_files(report)?;
        match self.output {
            super::Output::Text => print!("{}", report.text()),
            structured => println!("{}", structured.render(report)),
        }
        Ok(report.verdict.into())
    }

    /// Writes the HTML report and the HdrHistogram log, if asked for.
    pub fn emit_files(&self, report: &crate::report::Report) -> anyhow::Result<()> {
        for written in report.write_files(self.report.as_deref(), self.hdr_log.as_deref())? {
            eprintln!("migverify: {written}");
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
    pub kubeconfig: Option<PathBuf>,
}

impl ClusterArgs {
    pub async fn connect(&self) -> anyhow::Result<kube::Client> {
        Ok(crate::cluster::connect(self.kubeconfig.as_deref()).await?)
    }
}

/// Prometheus exposition while a command runs.
#[cfg(feature = "dataplane")]
#[derive(Debug, Clone, clap::Args)]
pub struct MetricsArgs {
    /// Serve Prometheus metrics at http://ADDR/metrics while running (a bare
    /// PORT listens on 127.0.0.1). Off by default.
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<crate::metrics::ListenAddr>,
}

#[cfg(feature = "dataplane")]
impl MetricsArgs {
    /// Binds the listener now, so a taken port fails before anything is attached.
    pub fn bind(&self) -> anyhow::Result<Option<std::net::TcpListener>> {
        Ok(self.metrics_listen.map(crate::metrics::bind).transpose()?)
    }
}
