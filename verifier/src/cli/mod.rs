//! The `migverify` command line: parsing, dispatch, printing and exit
//! codes. The work itself is the library's.

#[cfg(feature = "dataplane")]
mod agent;
mod args;
mod bench;
mod check;
mod checkup;
#[cfg(feature = "dataplane")]
mod counters;
#[cfg(feature = "dataplane")]
mod flows;
#[cfg(feature = "dataplane")]
mod lab;
#[cfg(feature = "dataplane")]
mod verify;
#[cfg(feature = "dataplane")]
mod watch;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

use crate::verdict::Verdict;

/// The exit statuses every command shares (design, section 6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass = 0,
    Fail = 1,
    /// Bad usage or input, missing privileges or interfaces: nothing was judged.
    Usage = 2,
    Warn = 3,
}

impl From<Verdict> for Status {
    fn from(verdict: Verdict) -> Self {
        match verdict {
            Verdict::Pass => Status::Pass,
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
        }
    }
}

impl From<Status> for ExitCode {
    fn from(status: Status) -> Self {
        ExitCode::from(status as u8)
    }
}

pub use crate::report::Format as Output;

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
    #[cfg(feature = "dataplane")]
    Agent(agent::Args),
    Check(Box<check::Args>),
    Bench(bench::Args),
    Checkup(checkup::Args),
    #[cfg(feature = "dataplane")]
    Counters(counters::Args),
    #[cfg(feature = "dataplane")]
    Flows(flows::Args),
    #[cfg(feature = "dataplane")]
    Lab(lab::Args),
    #[cfg(feature = "dataplane")]
    Verify(verify::Args),
    #[cfg(feature = "dataplane")]
    Watch(watch::Args),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        #[cfg(feature = "dataplane")]
        Command::Agent(args) => agent::run(args),
        Command::Check(args) => check::run(*args),
        Command::Bench(args) => bench::run(args),
        Command::Checkup(args) => checkup::run(args),
        #[cfg(feature = "dataplane")]
        Command::Counters(args) => counters::run(args),
        #[cfg(feature = "dataplane")]
        Command::Flows(args) => flows::run(args),
        #[cfg(feature = "dataplane")]
        Command::Lab(args) => lab::run(args),
        #[cfg(feature = "dataplane")]
        Command::Verify(args) => verify::run(args),
        #[cfg(feature = "dataplane")]
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

/// Lines for the user, on stderr.
#[cfg(feature = "dataplane")]
fn say(lines: impl IntoIterator<Item = String>) {
    for line in lines {
        eprintln!("migverify: {line}");
    }
}

/// Seconds from a flag, as a Duration, with the flag named on error.
#[cfg(feature = "dataplane")]
fn seconds(flag: &str, value: Option<f64>) -> anyhow::Result<Option<std::time::Duration>> {
    use anyhow::Context as _;

    value
        .map(|s| {
            std::time::Duration::try_from_secs_f64(s)
                .with_context(|| format!("{flag} {s}: not a duration"))
        })
        .transpose()
}

/// A single-threaded runtime: the work is waiting on timers, signals and the
/// kernel, never on CPU.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}
