//! `lab run --scenario bench`: `bench serve` (and `iperf3 -s`) in node B's
//! virt-handler, `bench run` from node A's with migverify on every
//! observation point, across the lab's migration network.

use std::{
    io::{BufRead as _, BufReader},
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::Context as _;
use serde_json::json;

use super::{topology, Cni, LabConfig, Progress};
use crate::{
    dataplane::Netns,
    intent::{Limits, VmSize},
    netbench::{
        client,
        run::{measure, Plan},
        tls,
    },
    report::Report,
};

/// The port `bench serve` listens on in the lab.
const LAB_PORT: u16 = 9440;
const LAB_TOKEN: &str = "mvlab-bench";
const LAB_SECONDS: u64 = 5;

/// Up, `bench serve` (and `iperf3 -s`) in node B's virt-handler, `bench
/// run` from node A's with the observers on every observation point, down.
/// The lab is removed whatever happens.
pub fn run(
    config: &LabConfig,
    limits: Limits,
    interval_ms: u64,
    progress: Progress,
) -> anyhow::Result<Report> {
    super::up(config, progress)?;
    let result = measure_in_lab(config, limits, interval_ms, progress);
    progress("tearing the lab down");
    let teardown = super::down();
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
    progress: Progress,
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

fn measure_in_lab(
    config: &LabConfig,
    mut limits: Limits,
    interval_ms: u64,
    progress: Progress,
) -> anyhow::Result<Report> {
    let target = config.target_address();
    let peer = SocketAddr::new(target, LAB_PORT);
    let tls_dir = Path::new(super::STATE_DIR).join("bench-tls");
    let tls_dir = if config.tls {
        crate::pki::write_mutual(&tls_dir, &[target])?;
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
    // The lab's --bandwidth is QEMU's max-bandwidth: bandwidthPerMigration.
    if limits.bandwidth_per_migration.is_none() {
        limits.bandwidth_per_migration = config.bandwidth_bytes;
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
        hooks: crate::dataplane::Hooks::Auto,
        cidrs: vec![config.migration_cidr().parse()?],
        vlan: (config.cni == Cni::Bridge && config.migration0).then_some(config.vid_a),
        limits,
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
