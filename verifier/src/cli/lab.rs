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
    /// The lab's delay line and router (started by `lab up` in mvlab-wan).
    #[command(hide = true)]
    Wan(lab::wan::Args),
}

#[derive(Debug, clap::Args)]
struct UpArgs {
    #[command(flatten)]
    lab: lab::Options,
    /// The parallel limits a drain honours (the others are for `lab run`'s judgement).
    #[command(flatten)]
    budget: LimitFlags,
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
            let config = up.lab.config_under(&up.budget.limits_or_defaults()?)?;
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
            let outcome = lab::migrate_any(&config, &progress, &mut |_| Ok(()))?;
            let key = match outcome {
                lab::Outcome::Single(_) => "qemu",
                lab::Outcome::Drain(_) => "drain",
            };
            match (out.output, &outcome) {
                (Output::Text, lab::Outcome::Single(q)) => println!("{}", q.text()),
                (Output::Text, lab::Outcome::Drain(d)) => {
                    for m in &d.migrations {
                        let line = match &m.qemu {
                            Some(q) => q.text(),
                            None => m.error.clone().unwrap_or_else(|| "?".into()),
                        };
                        println!("{} (waited {} ms): {line}", m.id, m.waited_ms);
                    }
                }
                (structured, _) => println!("{}", structured.render(&json!({ key: outcome }))),
            }
            Ok(if outcome.status() == "completed" {
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
        LabCommand::Wan(args) => {
            lab::wan::serve(&args)?;
            Ok(Status::Pass)
        }
        LabCommand::Run(run) => {
            let limits = run.budget.limits_or_defaults()?;
            let config = run.lab.config_under(&limits)?;
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
