//! `migverify lab ...`: the emulated two-node cluster and its migrations.

use std::time::Duration;

use anyhow::Context as _;
use serde_json::json;

use super::{
    args::{BudgetArgs, IntervalArgs, ReportArgs},
    Output, Status,
};
use crate::lab::{self, topology, Cni, LabConfig, Scenario};

/// Build an emulated two-node migration network and migrate a real QEMU VM across it.
///
/// The lab lives in network namespaces named mvlab-*; nothing in it routes
/// to this host's networks. `lab run` is the one-shot form: up, attach
/// migverify, migrate, report, down.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Build the lab for a scenario (removing any earlier lab first).
    Up(UpArgs),
    /// Run one live migration across the lab that is up.
    Migrate(OutputArgs),
    /// Show the lab that is up: scenario, namespaces, addresses.
    Status(OutputArgs),
    /// Remove every namespace, process and file of the lab, also after a crash.
    Down,
    /// Up, attach migverify, migrate, report, down. Exit 0 pass, 1 fail.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    lab: LabOptions,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    lab: LabOptions,
    #[command(flatten)]
    budget: BudgetArgs,
    #[command(flatten)]
    report: ReportArgs,
    #[command(flatten)]
    interval: IntervalArgs,
}

#[derive(Debug, clap::Args)]
struct OutputArgs {
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    output: Output,
}

/// A scenario and the parts of it to override.
#[derive(Debug, clap::Args)]
struct LabOptions {
    /// The scenario to build.
    #[arg(short, long, value_enum, default_value_t = Scenario::Secondary)]
    scenario: Scenario,
    /// CNI flavour of the migration network.
    #[arg(long, value_enum)]
    cni: Option<Cni>,
    /// Guest memory in MiB (random bytes, every page crosses the wire).
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// multifd channels (0 turns multifd off; KubeVirt uses 8).
    #[arg(long, value_name = "N")]
    multifd: Option<u8>,
    /// Migrate in cleartext (KubeVirt's `disableTLS: true`).
    #[arg(long)]
    no_tls: bool,
    /// Access VLAN id of both nodes' migration ports (bridge CNI).
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// Jumbo MTU on the endpoints' migration interfaces (the fabric stays at 1500).
    #[arg(long, value_name = "MTU", value_parser = clap::value_parser!(u32).range(1280..=65535))]
    mtu: Option<u32>,
    /// Token-bucket limit on the source's migration NIC, in Mbit/s.
    #[arg(long, value_name = "MBIT")]
    rate: Option<u64>,
    /// QEMU's max-bandwidth in MiB/s, as KubeVirt's bandwidthPerMigration (default: unlimited).
    #[arg(long, value_name = "MIB_PER_S")]
    bandwidth: Option<u64>,
    /// An IPv6-only migration network, whatever the scenario.
    #[arg(long)]
    ipv6: bool,
    /// Turn the veths' segmentation offloads off (MTU-sized packets on the wire).
    #[arg(long)]
    no_offloads: bool,
    /// Cancel a migration still running after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
}

impl LabOptions {
    fn config(&self) -> anyhow::Result<LabConfig> {
        let mut config = self.scenario.config();
        if let Some(cni) = self.cni {
            config.cni = cni;
        }
        if let Some(memory) = self.memory {
            anyhow::ensure!(
                memory >= 16,
                "--memory {memory}: QEMU's q35 machine needs at least 16 MiB"
            );
            config.memory_mib = memory;
        }
        if let Some(n) = self.multifd {
            config.multifd_channels = n;
        }
        config.tls &= !self.no_tls;
        if let Some(vid) = self.vlan {
            (config.vid_a, config.vid_b) = (vid, vid);
        }
        if let Some(mtu) = self.mtu {
            config.jumbo_mtu = Some(mtu);
        }
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0, "--rate 0: give a rate in Mbit/s");
            config.rate_bps = Some(rate * 1_000_000);
        }
        if let Some(bandwidth) = self.bandwidth {
            config.bandwidth_bytes = (bandwidth > 0).then_some(bandwidth << 20);
        }
        config.ipv6 |= self.ipv6;
        config.offloads &= !self.no_offloads;
        if let Some(timeout) = self.timeout {
            config.timeout = Duration::from_secs(timeout);
        }
        Ok(config)
    }
}

fn progress(line: &str) {
    eprintln!("lab: {line}");
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    match args.command {
        LabCommand::Up(up) => {
            let config = up.lab.config()?;
            lab::up(&config, &progress)?;
            progress(&format!(
                "up: scenario {}, target advertises {}",
                config.scenario.name(),
                config.target_address()
            ));
            Ok(Status::Pass)
        }
        LabCommand::Migrate(out) => {
            let config = lab::current()?;
            let outcome = lab::migrate(&config, &progress, &mut |_| Ok(()))?;
            match out.output {
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "qemu": outcome }))?
                ),
                Output::Text => print_qemu(&outcome),
            }
            Ok(if outcome.status == "completed" {
                Status::Pass
            } else {
                Status::Fail
            })
        }
        LabCommand::Status(out) => status(out.output),
        LabCommand::Down => {
            let removed = lab::down()?;
            if removed.is_empty() {
                progress("nothing to remove");
            } else {
                progress(&format!("removed {}", removed.join(", ")));
            }
            Ok(Status::Pass)
        }
        LabCommand::Run(run) => {
            let config = run.lab.config()?;
            let limits = run.budget.limits_or_defaults()?;
            let interval_ms = run.interval.interval_ms;
            if config.scenario == Scenario::Bench {
                let report = lab::bench::run(&config, limits, interval_ms, &progress)?;
                return super::bench::emit(&run.report, &report);
            }
            let result = lab::run(&config, Duration::from_millis(interval_ms), &progress)?;
            run.report.emit(&lab::report(&result, limits, interval_ms)?)
        }
    }
}

fn status(output: Output) -> anyhow::Result<Status> {
    let namespaces = topology::namespaces()?;
    let config = match lab::current() {
        Ok(config) => Some(config),
        Err(lab::LabError::NotUp) => None,
        Err(e) => return Err(e).context("reading the lab state"),
    };
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "up": config.is_some(),
                "namespaces": namespaces,
                "config": config,
                "target_address": config.as_ref().map(LabConfig::target_address),
            }))?
        ),
        Output::Text => match &config {
            None if namespaces.is_empty() => println!("no lab is up"),
            None => println!(
                "no lab state, but namespaces remain: {} (run `migverify lab down`)",
                namespaces.join(" ")
            ),
            Some(config) => {
                println!("scenario        {}", config.scenario.name());
                println!("cni             {:?}", config.cni);
                println!("target address  {}", config.target_address());
                println!("migration cidr  {}", config.migration_cidr());
                println!("namespaces      {}", namespaces.join(" "));
            }
        },
    }
    Ok(Status::Pass)
}

fn print_qemu(q: &lab::QemuOutcome) {
    println!(
        "QEMU: {} — {} bytes in {} ms to {} ({} multifd channels, TLS {}, {}){}",
        q.status,
        q.transferred_bytes,
        q.total_time_ms,
        q.target,
        q.multifd_channels,
        if q.tls { "on" } else { "off" },
        q.accelerator,
        q.error
            .as_ref()
            .map(|e| format!(": {e}"))
            .unwrap_or_default()
    );
}
