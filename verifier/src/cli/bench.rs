//! `migverify bench serve|run|certs`: benchmark the migration network
//! before a migration needs it, and answer in migration terms.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::Context as _;

use super::{
    args::{InterfaceArgs, IntervalArgs, NetworkArgs, ReportArgs, SizeArgs},
    Output, Status,
};
use crate::{
    intent::limits::LimitFlags,
    netbench::{
        client, connect_here,
        run::{self, measure, Plan},
        server::{self, ServerOptions},
        tls, Connector,
    },
    report::Report,
};

/// Benchmark the migration network: `serve` on one end, `run` on the other.
///
/// `run` sends traffic shaped like a KubeVirt migration (a main stream and
/// parallel channels as multifd, mutual TLS by default, bulk one way) and
/// answers: the sustained rate, how long a VM of a given size takes, the
/// largest VM that fits completionTimeoutPerGiB, how many parallel outbound
/// migrations the link carries. With -i the figures come from the wire.
///
/// Exit status (run): 0 pass, 1 fail, 2 usage or input error, 3 warning.
#[derive(Debug, clap::Args)]
#[command(after_help = include_str!("../../help/bench.txt"))]
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Accept bench runs until stopped (one end: a node, a virt-handler-like namespace).
    #[command(after_help = include_str!("../../help/bench-serve.txt"))]
    Serve(ServeArgs),
    /// Run a bench against a `bench serve` and judge the link against the budgets.
    #[command(after_help = include_str!("../../help/bench-run.txt"))]
    Run(Box<RunArgs>),
    /// Write a CA and server/client certificates for mutual TLS.
    #[command(after_help = include_str!("../../help/bench-certs.txt"))]
    Certs(CertsArgs),
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address and port to listen on; [::] takes IPv4 too.
    #[arg(long, value_name = "ADDR:PORT", default_value = "[::]:9440")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: tls::Options,
}

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The `bench serve` to send to.
    #[arg(long, value_name = "ADDR:PORT")]
    peer: SocketAddr,
    /// Parallel channels besides the main stream (KubeVirt's multifd uses 8; 0 = main stream only).
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(0..=64))]
    streams: u16,
    /// Seconds to send for (default 10).
    #[arg(short, long, value_name = "SECONDS", conflicts_with = "bytes")]
    duration: Option<f64>,
    /// Bytes to send, over all streams, instead of a duration.
    #[arg(long, value_name = "N")]
    bytes: Option<u64>,
    #[command(flatten)]
    tls: tls::Options,
    /// With -i, the figures come from the wire.
    #[command(flatten)]
    interfaces: InterfaceArgs,
    #[command(flatten)]
    network: NetworkArgs,
    /// The VM size to answer for (default 10^9 bytes: the size needing the
    /// most rate per unit).
    #[command(flatten)]
    size: SizeArgs,
    /// Also run iperf3 with as many streams for a reference (`iperf3 -s` must run on the peer).
    #[arg(long)]
    iperf3: bool,
    /// The port the peer's iperf3 -s listens on.
    #[arg(long, value_name = "PORT", default_value_t = 5201)]
    iperf3_port: u16,
    /// Check that the synchronization controller's port answers (cross-cluster; KubeVirt's is 9185).
    #[arg(long, value_name = "PORT")]
    sync_port: Option<u16>,
    /// Where the synchronization controller listens (default: the peer's address).
    #[arg(long, value_name = "ADDR")]
    sync_address: Option<std::net::IpAddr>,
    #[command(flatten)]
    interval: IntervalArgs,
    #[command(flatten)]
    budget: LimitFlags,
    #[command(flatten)]
    report: ReportArgs,
}

#[derive(Debug, clap::Args)]
struct CertsArgs {
    /// Folder to write server/ and client/ into.
    #[arg(long, value_name = "DIR")]
    dir: PathBuf,
    /// The server's addresses, as the runner dials them (IP SANs). Repeat for more.
    #[arg(long, value_name = "IP", required = true)]
    ip: Vec<std::net::IpAddr>,
}

pub fn run(args: Args) -> anyhow::Result<Status> {
    match args.command {
        BenchCommand::Serve(serve) => {
            let token = serve.tls.token()?;
            let (tls, ca) = serve.tls.server(&crate::netbench::local_addresses())?;
            if let Some(ca) = ca {
                eprint!("migverify: bench serve: clients pin this CA (--tls-ca-pem):\n{ca}");
            }
            let options = ServerOptions {
                tls,
                token: (!token.is_empty()).then_some(token),
            };
            let listener = std::net::TcpListener::bind(serve.listen)
                .with_context(|| format!("listening on {}", serve.listen))?;
            eprintln!("{}", server::describe(listener.local_addr()?, &options));
            server::serve(listener, options).context("serving")?;
            Ok(Status::Pass)
        }
        BenchCommand::Run(run) => {
            let plan = plan(&run, &connect_here)?;
            emit(&run.report, &measure(plan)?)
        }
        BenchCommand::Certs(certs) => {
            crate::pki::write_mutual(&certs.dir, &certs.ip)?;
            eprintln!(
                "migverify: credentials written to {}: give `bench serve` and `bench run` --tls-dir {}",
                certs.dir.display(),
                certs.dir.display()
            );
            Ok(Status::Pass)
        }
    }
}

/// Prints the report as verify does, then the bench's answers in text.
pub(super) fn emit(args: &ReportArgs, report: &Report) -> anyhow::Result<Status> {
    let status = args.emit(report)?;
    if args.output == Output::Text {
        if let Some(bench) = &report.bench {
            print!("{}", run::text(bench));
        }
    }
    Ok(status)
}

/// The measurement the flags describe.
fn plan<'a>(args: &RunArgs, connect: Connector<'a>) -> anyhow::Result<Plan<'a>> {
    let amount =
        client::Amount::from_flags(args.duration, args.bytes).map_err(anyhow::Error::msg)?;
    Ok(Plan {
        options: client::RunOptions {
            peer: args.peer,
            streams: args.streams,
            amount,
            tls: args.tls.client()?,
            token: args.tls.token()?,
            interval: Duration::from_millis(args.interval.interval_ms),
        },
        connect,
        iperf: args.iperf3.then(|| {
            (
                Vec::new(),
                SocketAddr::new(args.peer.ip(), args.iperf3_port),
            )
        }),
        sync: args
            .sync_port
            .map(|port| SocketAddr::new(args.sync_address.unwrap_or(args.peer.ip()), port)),
        ifaces: args.interfaces.ifaces.clone(),
        hooks: args.interfaces.hooks,
        cidrs: args.network.cidr.clone(),
        vlan: args.network.vlan,
        limits: args.budget.limits_or_defaults()?,
        size: args.size.size()?,
        assumptions: Vec::new(),
    })
}
