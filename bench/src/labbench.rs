//! End to end in the lab: a real QEMU migration with migverify attached on
//! every hook against none, and against the captures a user would reach for
//! (tcpdump, an AF_PACKET reader through pnet); iperf3 attached against not.
//! Variants alternate run by run so drift hits them all alike.

use std::{
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crate::interval::{median_interval, Interval};
use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};
use verifier::{
    dataplane::{AttachSpec, Dataplane, Netns, Role},
    lab::{self, topology, LabConfig, QemuOutcome, Scenario},
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Variant {
    Unobserved,
    /// migverify's programs on every hook, nothing reading them: the
    /// kernel side's share of migverify's cost.
    ProgramsOnly,
    Migverify,
    Tcpdump,
    PnetCapture,
}

impl Variant {
    pub const ALL: [Variant; 5] = [
        Variant::Unobserved,
        Variant::ProgramsOnly,
        Variant::Migverify,
        Variant::Tcpdump,
        Variant::PnetCapture,
    ];
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MigrationRun {
    pub variant: Variant,
    pub total_time_ms: u64,
    pub transferred_bytes: u64,
    pub throughput_mbps: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VariantSummary {
    pub variant: Variant,
    pub runs: usize,
    pub median_ms: u64,
    pub min_ms: u64,
    pub max_ms: u64,
    /// Median of the per-round ratios against the unobserved run of the same round.
    pub median_ratio: f64,
    /// That median with its 95% bootstrap interval over the paired rounds
    /// (absent from runs made before it was measured).
    #[serde(default)]
    pub ratio: Option<Interval>,
    pub median_throughput_mbps: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct MigrationBench {
    pub memory_mib: u64,
    pub multifd_channels: u8,
    pub tls: bool,
    pub offloads: bool,
    pub runs: Vec<MigrationRun>,
    pub summary: Vec<VariantSummary>,
}

pub fn quiet(_: &str) {}

pub fn bench_config(memory_mib: u64) -> LabConfig {
    LabConfig {
        memory_mib,
        // MTU-sized packets on the wire, as a real NIC sends them.
        offloads: false,
        timeout: Duration::from_secs(120),
        ..Scenario::Secondary.config()
    }
}

pub fn migration(rounds: usize, memory_mib: u64) -> anyhow::Result<MigrationBench> {
    let config = bench_config(memory_mib);
    lab::up(&config, &quiet)?;
    let result = (|| {
        let mut runs = Vec::new();
        for round in 0..rounds {
            for variant in Variant::ALL {
                eprintln!("bench: migration round {}/{rounds}, {variant:?}", round + 1);
                let outcome = migrate_with(&config, variant)?;
                if outcome.status != "completed" {
                    bail!("the {variant:?} migration ended {}", outcome.status);
                }
                if outcome.total_time_ms == 0 {
                    bail!("QEMU reported the {variant:?} migration completed in 0 ms");
                }
                runs.push(MigrationRun {
                    variant,
                    total_time_ms: outcome.total_time_ms,
                    transferred_bytes: outcome.transferred_bytes,
                    throughput_mbps: outcome.transferred_bytes as f64 * 8.0
                        / outcome.total_time_ms as f64
                        / 1000.0,
                });
            }
        }
        Ok(runs)
    })();
    lab::down()?;
    let runs = result?;
    let summary = Variant::ALL.iter().map(|v| summarize(*v, &runs)).collect();
    Ok(MigrationBench {
        memory_mib,
        multifd_channels: config.multifd_channels,
        tls: config.tls,
        offloads: config.offloads,
        runs,
        summary,
    })
}

fn median_f(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn summarize(variant: Variant, runs: &[MigrationRun]) -> VariantSummary {
    let mine: Vec<&MigrationRun> = runs.iter().filter(|r| r.variant == variant).collect();
    let base: Vec<&MigrationRun> = runs
        .iter()
        .filter(|r| r.variant == Variant::Unobserved)
        .collect();
    let mut times: Vec<u64> = mine.iter().map(|r| r.total_time_ms).collect();
    times.sort_unstable();
    let mut ratios: Vec<f64> = mine
        .iter()
        .zip(&base)
        .map(|(r, b)| r.total_time_ms as f64 / b.total_time_ms as f64)
        .collect();
    let ratio = Some(median_interval(&ratios));
    let mut throughput: Vec<f64> = mine.iter().map(|r| r.throughput_mbps).collect();
    VariantSummary {
        variant,
        runs: mine.len(),
        median_ms: times[times.len() / 2],
        min_ms: times[0],
        max_ms: times[times.len() - 1],
        median_ratio: median_f(&mut ratios),
        ratio,
        median_throughput_mbps: median_f(&mut throughput),
    }
}

fn migrate_with(config: &LabConfig, variant: Variant) -> anyhow::Result<QemuOutcome> {
    match variant {
        Variant::Unobserved => Ok(lab::migrate(config, &quiet, &mut |_| Ok(()))?),
        Variant::ProgramsOnly => {
            let dataplane = attach(config)?;
            let outcome = lab::migrate(config, &quiet, &mut |_| Ok(()));
            drop(dataplane);
            Ok(outcome?)
        }
        Variant::Migverify => {
            match lab::migrate_observed(config, Duration::from_millis(100), &quiet)?.outcome {
                lab::Outcome::Single(qemu) => Ok(qemu),
                lab::Outcome::Drain(_) => anyhow::bail!("the benchmark migrates one VM"),
            }
        }
        Variant::Tcpdump => {
            let captures = tcpdumps(config)?;
            let outcome = lab::migrate(config, &quiet, &mut |_| Ok(()));
            stop(captures);
            Ok(outcome?)
        }
        Variant::PnetCapture => {
            let capture = PnetCapture::start(&topology::observation_points(config))?;
            let outcome = lab::migrate(config, &quiet, &mut |_| Ok(()));
            let bytes = capture.stop();
            eprintln!("bench: pnet captured {bytes} bytes");
            Ok(outcome?)
        }
    }
}

/// `tcpdump -w /dev/null` on every observation point, as a user would run it.
fn tcpdumps(config: &LabConfig) -> anyhow::Result<Vec<Child>> {
    let mut children = Vec::new();
    for point in topology::observation_points(config) {
        let netns = point
            .netns
            .as_ref()
            .map(|n| n.to_string())
            .unwrap_or_default();
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &netns,
                "tcpdump",
                "-i",
                &point.iface,
                "-s",
                "0",
                "-w",
                "/dev/null",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting tcpdump (cargo xtask setup installs it)")?;
        children.push(child);
    }
    // tcpdump needs a moment to open its sockets.
    std::thread::sleep(Duration::from_millis(700));
    Ok(children)
}

fn stop(children: Vec<Child>) {
    for mut child in children {
        // SAFETY: plain syscall on our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
}

/// An AF_PACKET reader per interface (pnet's datalink channel), counting
/// bytes: what a user-space capture costs.
struct PnetCapture {
    stop: Arc<AtomicBool>,
    bytes: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl PnetCapture {
    fn start(points: &[AttachSpec]) -> anyhow::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let bytes = Arc::new(AtomicU64::new(0));
        let mut threads = Vec::new();
        for point in points {
            let netns = point.netns.clone().expect("lab points are in namespaces");
            let (iface, stop, bytes) = (point.iface.clone(), stop.clone(), bytes.clone());
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            threads.push(std::thread::spawn(move || {
                capture(&netns, &iface, &stop, &bytes, ready_tx)
            }));
            ready_rx.recv().context("capture thread")??;
        }
        Ok(PnetCapture {
            stop,
            bytes,
            threads,
        })
    }

    fn stop(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads {
            let _ = thread.join();
        }
        self.bytes.load(Ordering::Relaxed)
    }
}

fn capture(
    netns: &Netns,
    iface: &str,
    stop: &AtomicBool,
    bytes: &AtomicU64,
    ready: std::sync::mpsc::Sender<anyhow::Result<()>>,
) {
    let opened = netns.run(|| -> anyhow::Result<_> {
        let interface = pnet_datalink::interfaces()
            .into_iter()
            .find(|i| i.name == iface)
            .with_context(|| format!("no {iface} in {netns}"))?;
        let config = pnet_datalink::Config {
            read_timeout: Some(Duration::from_millis(100)),
            ..Default::default()
        };
        match pnet_datalink::channel(&interface, config)? {
            pnet_datalink::Channel::Ethernet(_, rx) => Ok(rx),
            _ => bail!("unexpected channel type"),
        }
    });
    let mut rx = match opened.map_err(anyhow::Error::from).and_then(|r| r) {
        Ok(rx) => {
            let _ = ready.send(Ok(()));
            rx
        }
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    while !stop.load(Ordering::Relaxed) {
        if let Ok(frame) = rx.next() {
            bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IperfRun {
    /// Segmentation offloads on the lab's veths (absent: off).
    #[serde(default)]
    pub offloads: bool,
    #[serde(default)]
    pub round: usize,
    pub streams: u32,
    pub attached: bool,
    pub bits_per_second: f64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IperfSummary {
    #[serde(default)]
    pub offloads: bool,
    pub streams: u32,
    pub unobserved_mbps: f64,
    pub attached_mbps: f64,
    pub ratio: f64,
    /// Attached over unobserved within each round, the median with its 95%
    /// bootstrap interval (absent from runs made before it was measured).
    #[serde(default)]
    pub ratio_interval: Option<Interval>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IperfBench {
    pub seconds: u32,
    pub runs: Vec<IperfRun>,
    pub summary: Vec<IperfSummary>,
}

/// iperf3 from node A's virt-handler to node B's over the migration network:
/// `rounds` paired rounds with segmentation offloads off (MTU-sized packets,
/// what the targets are about), then `rounds_offloaded` with them on (the
/// default on real NICs: fewer, larger packets).
pub fn iperf(rounds: usize, rounds_offloaded: usize, seconds: u32) -> anyhow::Result<IperfBench> {
    let mut runs = iperf_lab(false, rounds, seconds)?;
    if rounds_offloaded > 0 {
        runs.extend(iperf_lab(true, rounds_offloaded, seconds)?);
    }
    let mut summary = Vec::new();
    for offloads in [false, true] {
        for streams in [1u32, 8] {
            let of = |attached: bool| -> Vec<&IperfRun> {
                runs.iter()
                    .filter(|r| {
                        r.offloads == offloads && r.streams == streams && r.attached == attached
                    })
                    .collect()
            };
            let (base, attached) = (of(false), of(true));
            if base.is_empty() || attached.is_empty() {
                continue;
            }
            let mbps = |v: &[&IperfRun]| {
                let mut v: Vec<f64> = v.iter().map(|r| r.bits_per_second / 1e6).collect();
                median_f(&mut v)
            };
            let (unobserved_mbps, attached_mbps) = (mbps(&base), mbps(&attached));
            let ratios: Vec<f64> = attached
                .iter()
                .filter_map(|a| {
                    let b = base.iter().find(|b| b.round == a.round)?;
                    Some(a.bits_per_second / b.bits_per_second)
                })
                .collect();
            summary.push(IperfSummary {
                offloads,
                streams,
                unobserved_mbps,
                attached_mbps,
                ratio: attached_mbps / unobserved_mbps,
                ratio_interval: Some(median_interval(&ratios)),
            });
        }
    }
    Ok(IperfBench {
        seconds,
        runs,
        summary,
    })
}

/// One set of observation points iperf3 ran under, against none.
#[derive(Debug, Serialize, Deserialize)]
pub struct PointsSummary {
    pub points: String,
    /// Hook programs a data segment passes on its way (and an ACK back):
    /// the points on the migration network (the pod interfaces see none).
    pub hooks_per_segment: usize,
    pub attached_mbps: f64,
    /// Attached over unobserved within each round.
    pub ratio: Interval,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct IperfPointsBench {
    pub seconds: u32,
    pub streams: u32,
    pub rounds: usize,
    pub unobserved_mbps: f64,
    pub summary: Vec<PointsSummary>,
}

/// What a set of observation points runs.
enum Programs {
    Observers,
    /// The empty program: what any program on those hooks costs at least.
    Empty,
}

/// The sets of observation points [`iperf_points`] measures: the lab's
/// every point (both nodes' hooks, which the lab runs on one machine's
/// CPUs) with the observers and with the empty program, and each node's
/// (what a node's CPU runs for a segment on a real cluster).
fn point_sets(config: &LabConfig) -> Vec<(&'static str, Programs, Vec<AttachSpec>)> {
    let all = topology::observation_points(config);
    let on = |netns: &str, spec: &AttachSpec| {
        spec.netns.as_ref().is_some_and(|n| n.to_string() == netns)
    };
    let of_node = |node: &topology::Node, spec: &AttachSpec| {
        on(node.netns, spec) || on(node.virt_handler, spec)
    };
    let migration = |spec: &AttachSpec| spec.role == Role::Migration;
    let pick = |keep: &dyn Fn(&AttachSpec) -> bool| -> Vec<AttachSpec> {
        all.iter().filter(|s| keep(s)).cloned().collect()
    };
    vec![
        ("every point (both nodes)", Programs::Observers, all.clone()),
        (
            "the empty program on every point",
            Programs::Empty,
            all.clone(),
        ),
        (
            "node A's migration interfaces (the sender)",
            Programs::Observers,
            pick(&|s| migration(s) && of_node(&topology::NODE_A, s)),
        ),
        (
            "node B's migration interfaces (the receiver)",
            Programs::Observers,
            pick(&|s| migration(s) && of_node(&topology::NODE_B, s)),
        ),
    ]
}

/// iperf3 (one stream, offloads off: the figure that misses its target)
/// with the observers on fewer and fewer of the lab's observation points,
/// in paired rounds: what each point adds to a segment's cost.
pub fn iperf_points(rounds: usize, seconds: u32) -> anyhow::Result<IperfPointsBench> {
    const STREAMS: u32 = 1;
    let config = bench_config(64);
    let sets = point_sets(&config);
    let (unobserved, attached) = on_iperf_lab(&config, |target| {
        let mut unobserved = Vec::new();
        let mut attached: Vec<Vec<f64>> = vec![Vec::new(); sets.len()];
        let measured = (|| -> anyhow::Result<()> {
            for round in 0..rounds {
                // None: unobserved. The order turns every round.
                let mut order: Vec<Option<usize>> = vec![None];
                order.extend((0..sets.len()).map(Some));
                let variants = order.len();
                order.rotate_left(round % variants);
                for which in order {
                    let name = which.map_or("unobserved", |i| sets[i].0);
                    eprintln!(
                        "bench: iperf3 by points, round {}/{rounds}, {name}",
                        round + 1
                    );
                    let dataplane = match which.map(|i| &sets[i]) {
                        Some((_, Programs::Observers, points)) => {
                            Some(attach_points(&config, Dataplane::load()?, points)?)
                        }
                        Some((_, Programs::Empty, points)) => {
                            Some(crate::inplace::empty_on(points)?)
                        }
                        None => None,
                    };
                    let bits_per_second = iperf_client(target, STREAMS, seconds)?;
                    drop(dataplane);
                    match which {
                        Some(i) => attached[i].push(bits_per_second),
                        None => unobserved.push(bits_per_second),
                    }
                }
            }
            Ok(())
        })();
        measured.map(|()| (unobserved, attached))
    })?;
    let summary = sets
        .iter()
        .zip(&attached)
        .map(|((name, _, points), runs)| {
            let ratios: Vec<f64> = runs.iter().zip(&unobserved).map(|(a, b)| a / b).collect();
            PointsSummary {
                points: name.to_string(),
                hooks_per_segment: points.iter().filter(|p| p.role != Role::Primary).count(),
                attached_mbps: median_f(&mut runs.clone()) / 1e6,
                ratio: median_interval(&ratios),
            }
        })
        .collect();
    Ok(IperfPointsBench {
        seconds,
        streams: STREAMS,
        rounds,
        unobserved_mbps: median_f(&mut unobserved.clone()) / 1e6,
        summary,
    })
}

/// `rounds` rounds of iperf3 on a lab of its own.
fn iperf_lab(offloads: bool, rounds: usize, seconds: u32) -> anyhow::Result<Vec<IperfRun>> {
    let config = LabConfig {
        offloads,
        ..bench_config(64)
    };
    on_iperf_lab(&config, |target| {
        iperf_rounds(&config, target, rounds, seconds)
    })
}

/// `measure` on a lab of its own with iperf3's server listening on the
/// target's migration address (which it is given); the lab comes down
/// whatever `measure` returns.
fn on_iperf_lab<T>(
    config: &LabConfig,
    measure: impl FnOnce(&str) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    lab::up(config, &quiet)?;
    let target = config.target_address().to_string();
    let result = spawn_iperf_server(&target).and_then(|server| {
        std::thread::sleep(Duration::from_millis(500));
        let measured = measure(&target);
        stop(vec![server]);
        measured
    });
    lab::down()?;
    result
}

/// iperf3's server in node B's virt-handler, on the migration address.
fn spawn_iperf_server(target: &str) -> anyhow::Result<std::process::Child> {
    Command::new("ip")
        .args([
            "netns",
            "exec",
            topology::NODE_B.virt_handler,
            "iperf3",
            "-s",
            "-B",
            target,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 (cargo xtask setup installs it)")
}

/// migverify's observers on every observation point of the lab, with the
/// migration CIDR loaded so iperf3's flows take the full migration path.
pub fn attach(config: &LabConfig) -> anyhow::Result<Dataplane> {
    attach_with(config, Dataplane::load()?)
}

/// [`attach`] with a data plane already loaded (another build of the
/// programs, say).
pub fn attach_with(config: &LabConfig, dataplane: Dataplane) -> anyhow::Result<Dataplane> {
    attach_points(config, dataplane, &topology::observation_points(config))
}

/// [`attach_with`] on `points` only.
fn attach_points(
    config: &LabConfig,
    mut dataplane: Dataplane,
    points: &[AttachSpec],
) -> anyhow::Result<Dataplane> {
    dataplane.add_cidr(config.migration_cidr().parse()?)?;
    dataplane.attach_all(points)?;
    Ok(dataplane)
}

fn iperf_rounds(
    config: &LabConfig,
    target: &str,
    rounds: usize,
    seconds: u32,
) -> anyhow::Result<Vec<IperfRun>> {
    let mut runs = Vec::new();
    for round in 0..rounds {
        for streams in [1u32, 8] {
            // Paired: the order flips every other round, so drift over a
            // round hits both alike.
            let order = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for attached in order {
                eprintln!(
                    "bench: iperf3 (offloads {}) round {}/{rounds}, {streams} stream(s), attached {attached}",
                    if config.offloads { "on" } else { "off" },
                    round + 1
                );
                let dataplane = if attached {
                    Some(attach(config)?)
                } else {
                    None
                };
                let bits_per_second = iperf_client(target, streams, seconds)?;
                drop(dataplane);
                runs.push(IperfRun {
                    offloads: config.offloads,
                    round,
                    streams,
                    attached,
                    bits_per_second,
                });
            }
        }
    }
    Ok(runs)
}

fn iperf_client(target: &str, streams: u32, seconds: u32) -> anyhow::Result<f64> {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            topology::NODE_A.virt_handler,
            "iperf3",
            "-c",
            target,
            "-J",
        ])
        .args(["-P", &streams.to_string(), "-t", &seconds.to_string()])
        .output()
        .context("running iperf3")?;
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).context("iperf3 -J output")?;
    report["end"]["sum_received"]["bits_per_second"]
        .as_f64()
        .with_context(|| format!("iperf3 reported no throughput: {}", report["error"]))
}

/// Time from nothing loaded to the observers on six hooks with the
/// classifier in place, and where it goes: loading the object (maps, BTF),
/// the shared classifier (the one program the kernel verifies at length,
/// in parallel with the attachments), the hooks' own small programs (one
/// ingress and one egress per hook), and the attachments themselves.
#[derive(Debug, Serialize, Deserialize)]
pub struct AttachTime {
    pub total_ms: Vec<f64>,
    pub load_object_ms: Vec<f64>,
    pub classifier_ms: Vec<f64>,
    pub hook_programs_ms: Vec<f64>,
    pub hook_programs: usize,
}

pub fn attach_time(rounds: usize) -> anyhow::Result<AttachTime> {
    let config = bench_config(64);
    lab::up(&config, &quiet)?;
    let six: Vec<AttachSpec> = topology::observation_points(&config)
        .into_iter()
        .take(6)
        .collect();
    let result = (|| {
        let mut times = AttachTime {
            total_ms: Vec::new(),
            load_object_ms: Vec::new(),
            classifier_ms: Vec::new(),
            hook_programs_ms: Vec::new(),
            hook_programs: 2 * six.len(),
        };
        let ms = |since: Instant| since.elapsed().as_secs_f64() * 1000.0;
        for _ in 0..rounds {
            let started = Instant::now();
            let mut dataplane = Dataplane::load()?;
            dataplane.attach_all(&six)?;
            times.total_ms.push(ms(started));
            // The same steps apart: the object, the classifier, then the hooks' programs.
            let started = Instant::now();
            let mut dataplane = Dataplane::load()?;
            times.load_object_ms.push(ms(started));
            let started = Instant::now();
            dataplane.load_classifier()?;
            times.classifier_ms.push(ms(started));
            let started = Instant::now();
            for slot in 0..six.len() {
                for name in [format!("ingress_{slot:02}"), format!("egress_{slot:02}")] {
                    dataplane.program_mut(&name).load()?;
                }
            }
            times.hook_programs_ms.push(ms(started));
        }
        anyhow::Ok(times)
    })();
    lab::down()?;
    result
}
