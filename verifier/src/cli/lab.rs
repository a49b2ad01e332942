//! `migverify lab ...`: the emulated two-node cluster and its migrations.

use std::time::Duration;

use serde_json::json;

use super::{
    args::{IntervalArgs, ReportArgs},
    Output, Status,
};
use crate::{
    intent::limits::LimitFlags,
    lab::{self, Scenario},
};

/// Build an emulated two-node migration network and migrate a real QEMU VM across it.
///
/// The lab lives in network namespaces named mvlab-*; nothing in it routes
/// to this host's networks. `lab run` is the one-shot form: up, attach
/// migverify, migrate, report, down.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/lab.txt"))]
pub struct Args {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LabCommand {
    /// Build the lab for a scenario (removing any earlier lab first).
    #[command(after_help = include_str!("../../help/lab-up.txt"))]
    Up(UpArgs),
    /// Run one live migration across the lab that is up.
    #[command(after_help = include_str!("../../help/lab-migrate.txt"))]
    Migrate(OutputArgs),
    /// Show the lab that is up: scenario, namespaces, addresses.
    #[command(after_help = include_str!("../../help/lab-status.txt"))]
    Status(OutputArgs),
    /// Remove every namespace, process and file of the lab, also after a crash.
    #[command(after_help = include_str!("../../help/lab-down.txt"))]
    Down,
    /// Up, attach migverify, migrate, report, down. Exit 0 pass, 1 fail.
    #[command(after_help = include_str!("../../help/lab-run.txt"))]
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    lab: lab::Options,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    #[command(flatten)]
    lab: lab::Options,
    #[command(flatten)]
    budget: LimitFlags,
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
                Output::Text => println!("{}", outcome.text()),
                structured => println!("{}", structured.render(&json!({ "qemu": outcome }))),
            }
            Ok(if outcome.status == "completed" {
                Status::Pass
            } else {
                Status::Fail
            })
        }
        LabCommand::Status(out) => {
            let status = lab::status()?;
            match out.output {
                Output::Text => print!("{}", status.text()),
                structured => println!("{}", structured.render(&status)),
            }
            Ok(Status::Pass)
        }
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
            let mut config = config;
            config.cancel_at_budget(lab::completion_budget(&config, &limits));
            let result = lab::run(&config, Duration::from_millis(interval_ms), &progress)?;
            run.report.emit(&lab::report(&result, limits, interval_ms)?)
        }
    }
}
