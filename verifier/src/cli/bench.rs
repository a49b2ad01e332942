//! `migverify bench serve|run|certs`: benchmark the migration network
//! before a migration needs it, and answer in migration terms.

use std::{
    io::{BufRead as _, BufReader},
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use verifier_ebpf::Channel;

use super::{runtime, BudgetArgs, Output, ReportArgs, Status};
use crate::{
    config::{Cidr, Endpoint},
    dataplane::{AttachSpec, Dataplane, DataplaneStats, Netns},
    lab::{self, topology, Cni, LabConfig},
    measure::{
        budget::{BudgetSettings, VmSize},
        series,
        verdict::{self, rate, Expectations, Reason, Severity},
    },
    netbench::{
        answers, client, connect_here, iperf, reachable,
        server::{self, ServerOptions},
        tls, Connector,
    },
    report::{self, DataplaneHealth, Report},
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
pub struct Args {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Debug, clap::Subcommand)]
enum BenchCommand {
    /// Accept bench runs until stopped (one end: a node, a virt-handler-like namespace).
    Serve(ServeArgs),
    /// Run a bench against a `bench serve` and judge the link against the budgets.
    Run(Box<RunArgs>),
    /// Write a CA and server/client certificates for mutual TLS (needs openssl).
    Certs(CertsArgs),
}

#[derive(Debug, clap::Args)]
struct TlsArgs {
    /// Cleartext, as KubeVirt's `migrations.disableTLS: true`.
    #[arg(long)]
    no_tls: bool,
    /// Credentials folder as `bench certs` writes it (server/ and client/ inside).
    #[arg(long, value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// A shared token every connection must present (both ends the same).
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

impl TlsArgs {
    fn dir(&self) -> anyhow::Result<Option<&PathBuf>> {
        if self.no_tls {
            return Ok(None);
        }
        self.tls_dir.as_ref().map(Some).context(
            "TLS needs --tls-dir (write one with `migverify bench certs --dir DIR --ip SERVER_IP`), or give --no-tls",
        )
    }

    fn token(&self) -> anyhow::Result<Vec<u8>> {
        let token = self.token.clone().unwrap_or_default().into_bytes();
        anyhow::ensure!(
            token.len() <= crate::netbench::protocol::MAX_TOKEN,
            "--token: at most {} bytes",
            crate::netbench::protocol::MAX_TOKEN
        );
        Ok(token)
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Address and port to listen on; [::] takes IPv4 too.
    #[arg(long, value_name = "ADDR:PORT", default_value = "[::]:9440")]
    listen: SocketAddr,
    #[command(flatten)]
    tls: TlsArgs,
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
    tls: TlsArgs,
    /// Interface to observe, as [ROLE:]IFACE[@NETNS]: the figures then come from the wire.
    #[arg(short, long = "iface", value_name = "SPEC")]
    ifaces: Vec<AttachSpec>,
    /// The migration network's CIDR (checked against the peer).
    #[arg(long, value_name = "CIDR")]
    cidr: Vec<Cidr>,
    /// The VLAN id the migration network should carry the traffic on.
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// The VM size to answer for, in bytes (default 10^9: the size needing the most rate per unit).
    #[arg(long, value_name = "BYTES")]
    vm_memory: Option<u64>,
    /// bandwidthPerMigration in MiB/s (default: unlimited).
    #[arg(long, value_name = "MIB_PER_S")]
    bandwidth_per_migration: Option<u64>,
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
    /// Milliseconds per throughput interval.
    #[arg(long, value_name = "MS", default_value_t = 100, value_parser = clap::value_parser!(u64).range(10..=10_000))]
    interval_ms: u64,
    #[command(flatten)]
    budget: BudgetArgs,
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
            let tls = serve
                .tls
                .dir()?
                .map(|d| tls::server_config(d))
                .transpose()?;
            let token = serve.tls.token()?;
            let options = ServerOptions {
                tls,
                token: (!token.is_empty()).then_some(token),
            };
            let listener = TcpListener::bind(serve.listen)
                .with_context(|| format!("listening on {}", serve.listen))?;
            eprintln!("{}", server::describe(listener.local_addr()?, &options));
            server::serve(listener, options).context("serving")?;
            Ok(Status::Pass)
        }
        BenchCommand::Run(run) => {
            let plan = Plan::from_args(&run, &connect_here)?;
            let report = measure(plan)?;
            emit(&run.report, &report)
        }
        BenchCommand::Certs(certs) => {
            crate::lab::pki::create(&certs.dir, &certs.ip)?;
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
            print!("{}", text(bench));
        }
    }
    Ok(status)
}

/// Everything one measurement needs, from flags or from the lab.
pub(super) struct Plan<'a> {
    pub options: client::RunOptions,
    pub connect: Connector<'a>,
    /// `iperf3 -c` after this prefix, against this server.
    pub iperf: Option<(Vec<String>, SocketAddr)>,
    pub sync: Option<SocketAddr>,
    pub ifaces: Vec<AttachSpec>,
    pub cidrs: Vec<Cidr>,
    pub vlan: Option<u16>,
    pub settings: BudgetSettings,
    pub size: Option<VmSize>,
    pub assumptions: Vec<String>,
}

impl<'a> Plan<'a> {
    fn from_args(args: &RunArgs, connect: Connector<'a>) -> anyhow::Result<Self> {
        let amount = match (args.duration, args.bytes) {
            (_, Some(0)) => anyhow::bail!("--bytes 0: give a positive volume"),
            (_, Some(bytes)) => client::Amount::Bytes(bytes),
            (seconds, None) => {
                let seconds = seconds.unwrap_or(10.0);
                client::Amount::Duration(
                    Duration::try_from_secs_f64(seconds)
                        .ok()
                        .filter(|d| !d.is_zero())
                        .with_context(|| {
                            format!("--duration {seconds}: not a positive duration")
                        })?,
                )
            }
        };
        let tls = args.tls.dir()?.map(|d| tls::client_config(d)).transpose()?;
        let mut settings = args.budget.settings()?;
        if let Some(mib) = args.bandwidth_per_migration {
            settings.bandwidth_per_migration = (mib > 0).then_some(mib << 20);
        }
        let mut assumptions = Vec::new();
        if settings.source == "KubeVirt defaults" {
            assumptions.push(
                "budgets: KubeVirt's defaults (completionTimeoutPerGiB 150 s); give the cluster's with the budget flags"
                    .to_string(),
            );
        }
        Ok(Plan {
            options: client::RunOptions {
                peer: args.peer,
                streams: args.streams,
                amount,
                tls,
                token: args.tls.token()?,
                interval: Duration::from_millis(args.interval_ms),
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
            ifaces: args.ifaces.clone(),
            cidrs: args.cidr.clone(),
            vlan: args.vlan,
            settings,
            size: args.vm_memory.map(|bytes| VmSize {
                bytes,
                source: "--vm-memory".into(),
            }),
            assumptions,
        })
    }
}

/// The id the bench's connections are grouped under.
const BENCH_ID: &str = "bench";

/// Runs the bench (observed when there are interfaces), the reference and
/// the reachability check, and judges.
pub(super) fn measure(plan: Plan) -> anyhow::Result<Report> {
    let interval_ms = plan.options.interval.as_millis() as u64;
    let endpoint = Endpoint {
        addr: plan.options.peer,
        channel: Channel::Memory,
        migration: Some(BENCH_ID.into()),
    };
    // The iperf3 reference runs under the same conditions as the bench:
    // with the observers attached when the bench had them.
    let reference = || {
        plan.iperf.as_ref().map(|(prefix, server)| {
            let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
            iperf::run(
                &prefix,
                *server,
                plan.options.streams.max(1),
                plan.options.amount,
            )
        })
    };
    let (result, observed, reference) = if plan.ifaces.is_empty() {
        let result = client::run(&plan.options, plan.connect)?;
        (result, None, reference())
    } else {
        let mut dataplane = Dataplane::load()?;
        for cidr in &plan.cidrs {
            dataplane.add_cidr(*cidr)?;
        }
        dataplane.attach_all(&plan.ifaces)?;
        let (done, finished) = oneshot::channel::<()>();
        let (_requests_tx, requests) = mpsc::channel(1);
        let runtime = runtime()?;
        let (result, collected) = std::thread::scope(|scope| {
            let bench = scope.spawn(|| {
                let result = client::run(&plan.options, plan.connect);
                let _ = done.send(());
                result
            });
            let collected = runtime.block_on(crate::flows::collect(
                &mut dataplane,
                std::slice::from_ref(&endpoint),
                plan.options.interval,
                requests,
                async {
                    let _ = finished.await;
                },
                |_| false,
            ));
            (
                bench.join().expect("the bench thread does not panic"),
                collected,
            )
        });
        let reference = reference();
        dataplane.detach_all();
        (result?, Some(collected?), reference)
    };
    eprintln!(
        "migverify: bench sent {} bytes in {:.1} s over {} stream(s), the server received {}",
        result.sent_bytes,
        result.elapsed_s,
        result.per_stream.len(),
        result.received_bytes
    );
    let sync = plan
        .sync
        .map(|address| reachable(address, Duration::from_secs(2), plan.connect));

    let mut assumptions = plan.assumptions;
    let size = plan.size.unwrap_or_else(|| {
        assumptions.push(
            "no VM size given (--vm-memory): answers are for 10^9 bytes, the size that needs the most rate per unit \
             of budget"
                .into(),
        );
        VmSize {
            bytes: 1_000_000_000,
            source: "assumed: one unit (10^9 bytes)".into(),
        }
    });
    let mut report = match &observed {
        Some(collected) => report::build(report::Inputs {
            collected,
            endpoints: std::slice::from_ref(&endpoint),
            settings: &plan.settings,
            size: Some(size.clone()),
            expectations: &Expectations {
                cidrs: plan.cidrs.clone(),
                vlan: plan.vlan,
                expect_traffic: true,
            },
            interval_ms,
            assumptions,
        }),
        None => unobserved_report(&plan.settings, assumptions, result.elapsed_s),
    };
    // The wire's figures when observed, else what the sender handed the kernel.
    let wire = report.migrations.iter().find(|m| m.figures.id == BENCH_ID);
    let (source, throughput) = match wire {
        Some(m) => ("wire", m.figures.throughput_bps.clone()),
        None => ("sender", series::throughput(&trim(&result.intervals))),
    };
    let answers = answers::answers(&plan.settings, &size, throughput.p5, throughput.p50);
    for reason in answers::reasons(&answers) {
        report.add_reason(reason);
    }
    if result.received_bytes == 0 {
        report.add_reason(reason(
            "bench.nothing-moved",
            Severity::Error,
            format!("the server at {} received nothing", result.peer),
            json!({}),
        ));
    }
    let mut reference_json = serde_json::Value::Null;
    if let Some(reference) = reference {
        match reference {
            Ok(iperf) => {
                let ratio = result.mean_bps as f64 / iperf.received_bps.max(1) as f64;
                report.add_reason(reason(
                    "bench.iperf3",
                    Severity::Info,
                    format!(
                        "migration-shaped traffic reached {} against iperf3's {} with {} stream(s) ({:.0}%)",
                        rate(result.mean_bps),
                        rate(iperf.received_bps),
                        iperf.streams,
                        ratio * 100.0
                    ),
                    json!({ "iperf3": iperf }),
                ));
                reference_json = json!({ "result": iperf, "ratio": ratio });
            }
            Err(e) => {
                report.add_reason(reason(
                    "bench.iperf3-failed",
                    Severity::Warning,
                    format!("no iperf3 reference: {e}"),
                    json!({}),
                ));
                reference_json = json!({ "error": e.to_string() });
            }
        }
    }
    if let Some(sync) = &sync {
        if !sync.reachable {
            report.add_reason(reason(
                "bench.sync-unreachable",
                Severity::Error,
                format!(
                    "the synchronization controller port {} does not answer ({}): cross-cluster migration needs it",
                    sync.address,
                    sync.error.as_deref().unwrap_or("no answer")
                ),
                json!({ "sync": sync }),
            ));
        }
    }
    report.bench = Some(json!({
        "run": result,
        "rate_source": source,
        "throughput_bps": throughput,
        "answers": answers,
        "iperf3": reference_json,
        "sync": sync,
    }));
    Ok(report)
}

/// The sender's first interval holds the socket buffers filling and its
/// last one is partial: neither is the link's rate.
fn trim(intervals: &[series::Interval]) -> Vec<series::Interval> {
    if intervals.len() > 4 {
        intervals[1..intervals.len() - 1].to_vec()
    } else {
        intervals.to_vec()
    }
}

fn reason(
    id: &'static str,
    severity: Severity,
    message: String,
    evidence: serde_json::Value,
) -> Reason {
    Reason {
        id,
        severity,
        message,
        migration: None,
        evidence,
    }
}

/// A report without wire figures: only the bench's own reasons judge it.
fn unobserved_report(
    settings: &BudgetSettings,
    mut assumptions: Vec<String>,
    observed_s: f64,
) -> Report {
    assumptions.push(
        "no interface observed (-i): rates are what the sender handed the kernel, not measured on the wire".into(),
    );
    Report {
        schema_version: report::SCHEMA_VERSION,
        verdict: verdict::verdict(&[]),
        reasons: Vec::new(),
        migrations: Vec::new(),
        assumptions,
        budget_settings: settings.clone(),
        dataplane: DataplaneHealth {
            stats: DataplaneStats::default(),
            events_dropped: 0,
            connections: 0,
            observed_s,
        },
        lab: None,
        bench: None,
    }
}

/// The answers, for a terminal.
fn text(bench: &serde_json::Value) -> String {
    let u = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let a = &bench["answers"];
    let seconds = |v: &serde_json::Value| {
        v.as_f64()
            .map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"))
    };
    let largest = |v: &serde_json::Value| {
        v.as_u64()
            .map_or_else(|| "any size".to_string(), verdict::bytes)
    };
    let mut out = String::from("\nbench\n");
    out += &format!(
        "  rate ({})       p5 {}  p50 {}  mean received {}\n",
        bench["rate_source"].as_str().unwrap_or("?"),
        rate(u(&bench["throughput_bps"]["p5"])),
        rate(u(&bench["throughput_bps"]["p50"])),
        rate(u(&bench["run"]["mean_bps"]))
    );
    out += &format!(
        "  VM of {} ({} units): budget {} s, needs {}; takes {} at p50, {} at p5\n",
        verdict::bytes(u(&a["size_bytes"])),
        u(&a["size_units"]),
        u(&a["completion_timeout_s"]),
        rate(u(&a["min_rate_bps"])),
        seconds(&a["at_p50"]["completion_s"]),
        seconds(&a["at_p5"]["completion_s"])
    );
    out += &format!(
        "  largest VM that fits: {} at p50, {} at p5\n",
        largest(&a["at_p50"]["largest_vm_bytes"]),
        largest(&a["at_p5"]["largest_vm_bytes"])
    );
    out += &format!(
        "  parallel migrations at the minimum rate: {} (parallelOutboundMigrationsPerNode {})\n",
        u(&a["parallel_supported"]),
        u(&a["parallel_outbound_migrations_per_node"])
    );
    if let Some(iperf) = bench["iperf3"]["result"].as_object() {
        out += &format!(
            "  iperf3 reference: {} ({:.0}% of it)\n",
            rate(iperf["received_bps"].as_u64().unwrap_or(0)),
            bench["iperf3"]["ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    if let Some(sync) = bench["sync"].as_object() {
        out += &format!(
            "  sync port {}: {}\n",
            sync["address"].as_str().unwrap_or("?"),
            if sync["reachable"] == true {
                "reachable"
            } else {
                "unreachable"
            }
        );
    }
    out
}

/// The port `bench serve` listens on in the lab.
const LAB_PORT: u16 = 9440;
const LAB_TOKEN: &str = "mvlab-bench";
const LAB_SECONDS: u64 = 5;

/// `lab run --scenario bench`: up, `bench serve` (and `iperf3 -s`) in node
/// B's virt-handler, `bench run` from node A's with the observers on every
/// observation point, down. The lab is removed whatever happens.
pub(super) fn lab_run(
    config: &LabConfig,
    budget: &BudgetArgs,
    interval_ms: u64,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    lab::up(config, progress)?;
    let result = lab_measure(config, budget, interval_ms, progress);
    progress("tearing the lab down");
    let teardown = lab::down();
    let report = result?;
    teardown?;
    Ok(report)
}

/// A process the lab started, killed when dropped.
struct Spawned(Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `bench serve` in node B's virt-handler namespace and waits for
/// its "listening" line; later lines go to our stderr.
fn start_server(
    peer: SocketAddr,
    tls_dir: Option<&Path>,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Spawned> {
    let exe = std::env::current_exe().context("finding migverify's own executable")?;
    let mut command = Command::new("ip");
    command
        .args(["netns", "exec", topology::NODE_B.virt_handler])
        .arg(exe)
        .args([
            "bench",
            "serve",
            "--listen",
            &peer.to_string(),
            "--token",
            LAB_TOKEN,
        ]);
    match tls_dir {
        Some(dir) => command.arg("--tls-dir").arg(dir),
        None => command.arg("--no-tls"),
    };
    let mut child = Spawned(
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting bench serve in the lab")?,
    );
    let mut lines = BufReader::new(child.0.stderr.take().expect("piped")).lines();
    match lines.next() {
        Some(Ok(line)) if line.contains("listening") => progress(&line),
        other => anyhow::bail!(
            "bench serve did not start in {}: {}",
            topology::NODE_B.virt_handler,
            other.and_then(Result::ok).unwrap_or_default()
        ),
    }
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            eprintln!("lab: {line}");
        }
    });
    Ok(child)
}

/// `iperf3 -s` beside the bench server, when iperf3 is installed.
fn start_iperf_server(target: std::net::IpAddr) -> Option<Spawned> {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            topology::NODE_B.virt_handler,
            "iperf3",
            "-s",
        ])
        .args(["-B", &target.to_string(), "-p", "5201"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    // iperf3 needs a moment to bind.
    std::thread::sleep(Duration::from_millis(300));
    Some(Spawned(child))
}

fn lab_measure(
    config: &LabConfig,
    budget: &BudgetArgs,
    interval_ms: u64,
    progress: &(dyn Fn(&str) + Sync),
) -> anyhow::Result<Report> {
    let target = config.target_address();
    let peer = SocketAddr::new(target, LAB_PORT);
    let tls_dir = Path::new(lab::STATE_DIR).join("bench-tls");
    let tls_dir = if config.tls {
        lab::pki::create(&tls_dir, &[target])?;
        Some(tls_dir)
    } else {
        None
    };
    let _server = start_server(peer, tls_dir.as_deref(), progress)?;
    let iperf_server = start_iperf_server(target);
    let source = Netns::parse(topology::NODE_A.virt_handler);
    let connect = move |addr: SocketAddr, timeout: Duration| {
        source
            .run(|| std::net::TcpStream::connect_timeout(&addr, timeout))
            .and_then(|connected| connected)
    };
    let mut settings = budget.settings()?;
    if settings.bandwidth_per_migration.is_none() {
        settings.bandwidth_per_migration = config.bandwidth_bytes;
    }
    let plan = Plan {
        options: client::RunOptions {
            peer,
            streams: u16::from(config.multifd_channels),
            amount: client::Amount::Duration(Duration::from_secs(LAB_SECONDS)),
            tls: tls_dir.as_deref().map(tls::client_config).transpose()?,
            token: LAB_TOKEN.as_bytes().to_vec(),
            interval: Duration::from_millis(interval_ms),
        },
        connect: &connect,
        iperf: iperf_server.as_ref().map(|_| {
            (
                ["ip", "netns", "exec", topology::NODE_A.virt_handler]
                    .map(String::from)
                    .to_vec(),
                SocketAddr::new(target, 5201),
            )
        }),
        sync: None,
        ifaces: topology::observation_points(config),
        cidrs: vec![config.migration_cidr().parse()?],
        vlan: (config.cni == Cni::Bridge && config.migration0).then_some(config.vid_a),
        settings,
        size: Some(VmSize {
            bytes: config.memory_mib << 20,
            source: "the lab VM's memory (--memory)".into(),
        }),
        assumptions: Vec::new(),
    };
    progress(&format!(
        "bench run from {} to {peer} for {LAB_SECONDS} s ({} channels, TLS {})",
        topology::NODE_A.virt_handler,
        config.multifd_channels,
        if config.tls { "on" } else { "off" }
    ));
    let mut report = measure(plan)?;
    report.lab = Some(json!({
        "scenario": config.scenario.name(),
        "config": config,
        "shaper_bps": config.rate_bps,
    }));
    Ok(report)
}
