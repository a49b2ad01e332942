//! The lab's WAN: a router namespace between node A's migration NIC and the
//! fabric, with a delay line the lab owns. This kernel has no netem (nor fq
//! or etf, for departure times), so no qdisc can hold packets: a process
//! does. It reads every frame from one TAP device, holds it half the
//! round-trip time asked for, and writes it to the other, both ways.
//!
//! ```text
//!  mvlab-node-a           mvlab-wan                                              mvlab-fabric
//!  eth1 ──veth── wan-a ─ br-a ─ tap-a ~~ delay line ~~ tap-b ─ br-b ─ wan-f ──veth── mig-a ─ br-mig
//! ```
//!
//! Cross-cluster, node B's cluster is another subnet: `br-b` holds the
//! router's address in node A's subnet, `wan-f` the one in node B's, and the
//! namespace forwards between them (the router is on the far side of the
//! delay line from node A, as a WAN link's far end is). The same process
//! stands in for each cluster's synchronization controller: a listener on
//! port 9185 at each node's migration address, which the router can be
//! told to drop.
//!
//! The TAP devices carry a virtio-net header (`IFF_VNET_HDR`) with the
//! kernel's GSO metadata, so a 64 KiB GSO packet crosses as one read and one
//! write, as it crosses a veth: the line's ceiling is well above the rates
//! the lab shapes to (measured in docs/lab.md).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    net::{SocketAddr, TcpListener},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        mpsc, Arc,
    },
    time::{Duration, Instant},
};

use super::{
    cmd::{add_bridge, exec, ip, run},
    config::{addr, LabConfig},
    LabError, STATE_DIR,
};
use crate::dataplane::Netns;

/// The router namespace.
pub const WAN: &str = "mvlab-wan";
/// The delay line's process name (`/proc/PID/comm`), which `lab down` checks.
pub const PROCESS_NAME: &str = "mvlab-wan";
const PIDFILE: &str = "wan.pid";
const READY: &str = "wan.ready";
const STATS: &str = "wan.json";
/// Node A's side and the fabric's side of the line.
const TAPS: [&str; 2] = ["tap-a", "tap-b"];
/// Frames held per direction before the line drops (a full queue).
const QUEUE_BYTES: u64 = 64 << 20;
/// The largest read: a GSO packet (64 KiB, or BIG TCP's 512 KiB) and its header.
const FRAME_MAX: usize = 512 * 1024 + 64;

/// `lab wan`: the delay line itself, run by the lab inside [`WAN`].
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Round-trip time to add, milliseconds (half each way).
    #[arg(long, default_value_t = 0)]
    rtt_ms: u32,
    /// Listen as a synchronization controller: NETNS=ADDR:PORT (repeatable).
    #[arg(long, value_name = "NETNS=ADDR:PORT")]
    sync_listen: Vec<String>,
}

/// Builds the router namespace's insides for `config` and starts the delay
/// line in it. [`create`] made the namespace and node A's eth1 is cabled to
/// `wan-a` in it; `wan-f`'s peer `fabric_port` is left in the fabric
/// namespace for the caller to bridge.
pub fn build(config: &LabConfig, fabric: &str, fabric_port: &str) -> Result<(), LabError> {
    ip(
        WAN,
        &[
            "link",
            "add",
            "wan-f",
            "type",
            "veth",
            "peer",
            "name",
            fabric_port,
            "netns",
            fabric,
        ],
    )?;
    for bridge in ["br-a", "br-b"] {
        add_bridge(WAN, bridge)?;
        ip(WAN, &["link", "set", bridge, "up"])?;
    }
    for tap in TAPS {
        ip(WAN, &["tuntap", "add", "dev", tap, "mode", "tap"])?;
    }
    for (port, bridge) in [("wan-a", "br-a"), (TAPS[0], "br-a"), (TAPS[1], "br-b")] {
        ip(WAN, &["link", "set", port, "master", bridge, "up"])?;
    }
    if config.cross_cluster {
        // The router: node A's subnet on br-b, node B's on wan-f.
        let a = format!("{}/{}", addr::ROUTER_V4_A, addr::MIGRATION_V4_PREFIX);
        let b = format!("{}/{}", addr::ROUTER_V4_B, addr::MIGRATION_V4_PREFIX);
        ip(WAN, &["addr", "add", &a, "dev", "br-b"])?;
        ip(WAN, &["addr", "add", &b, "dev", "wan-f"])?;
        exec(WAN, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    } else {
        // L2 all the way: the fabric's cable joins br-b.
        ip(WAN, &["link", "set", "wan-f", "master", "br-b"])?;
    }
    ip(WAN, &["link", "set", "wan-f", "up"])?;
    if config.sync_blocked {
        let rules = Path::new(STATE_DIR).join("sync-blocked.nft");
        let text = format!(
            "table inet mvlab_sync {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n    \
             tcp dport {} drop\n  }}\n}}\n",
            addr::SYNC_PORT
        );
        fs::write(&rules, text)
            .map_err(|e| LabError::Io(format!("writing {}: {e}", rules.display())))?;
        exec(
            WAN,
            &["nft", "-f", rules.to_str().expect("lab paths are UTF-8")],
        )?;
    }
    start(config)
}

/// Creates [`WAN`], quiet (no IPv6 chatter), before node A is cabled to it.
pub fn create() -> Result<(), LabError> {
    run(&["ip", "netns", "add", WAN])?;
    ip(WAN, &["link", "set", "lo", "up"])?;
    for all in ["all", "default"] {
        exec(
            WAN,
            &[
                "sysctl",
                "-qw",
                &format!("net.ipv6.conf.{all}.disable_ipv6=1"),
            ],
        )?;
    }
    Ok(())
}

/// The interfaces of [`WAN`] whose offloads follow the lab's setting.
pub fn veth_ends() -> [(&'static str, &'static str); 2] {
    [(WAN, "wan-a"), (WAN, "wan-f")]
}

/// Starts the delay line in [`WAN`] and waits until it holds both TAPs.
fn start(config: &LabConfig) -> Result<(), LabError> {
    let exe = std::env::current_exe()
        .map_err(|e| LabError::Io(format!("finding migverify's own executable: {e}")))?;
    let state = Path::new(STATE_DIR);
    let _ = fs::remove_file(state.join(READY));
    let log = File::create(state.join("wan.log"))
        .map_err(|e| LabError::Io(format!("creating the delay line's log: {e}")))?;
    let mut command = Command::new("ip");
    command.args(["netns", "exec", WAN]).arg(exe).args([
        "lab",
        "wan",
        "--rtt-ms",
        &config.rtt_ms.unwrap_or(0).to_string(),
    ]);
    let nodes = [super::topology::NODE_A, super::topology::NODE_B];
    for (node, controller) in nodes.iter().zip(config.sync_controllers()) {
        command
            .arg("--sync-listen")
            .arg(format!("{}={controller}", node.virt_handler));
    }
    let child = command
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| LabError::Io(e.to_string()))?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Io(format!("starting the delay line: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !state.join(READY).exists() {
        if Instant::now() > deadline {
            return Err(LabError::Io(format!(
                "the delay line (pid {}) did not start: see {}/wan.log",
                child.id(),
                STATE_DIR
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// The delay line's pid, if it still runs.
pub fn pid() -> Option<i32> {
    let pid: i32 = fs::read_to_string(Path::new(STATE_DIR).join(PIDFILE))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == PROCESS_NAME && super::is_running(pid)).then_some(pid)
}

/// What the delay line measured of itself: frames and bytes per direction,
/// drops, and how late frames left against their due time.
#[derive(Clone, Debug, Default, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct LineStats {
    pub rtt_ms: u32,
    /// `[a -> b, b -> a]`.
    pub frames: [u64; 2],
    pub bytes: [u64; 2],
    pub dropped: [u64; 2],
    /// Lateness of frames written, microseconds: p50, p99, max.
    pub late_us_p50: u64,
    pub late_us_p99: u64,
    pub late_us_max: u64,
    /// Time spent writing frames (the kernel forwards each inline), total
    /// and longest, microseconds.
    pub write_us_total: u64,
    pub write_us_max: u64,
}

/// The delay line's figures as it last wrote them.
pub fn stats() -> Option<LineStats> {
    serde_json::from_slice(&fs::read(Path::new(STATE_DIR).join(STATS)).ok()?).ok()
}

/// Runs the delay line until killed: the `lab wan` command, inside [`WAN`].
pub fn serve(args: &Args) -> anyhow::Result<()> {
    // SAFETY: prctl on this process with constant arguments.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"mvlab-wan".as_ptr());
        // Sleeps end when asked, not up to 50 us later.
        libc::prctl(libc::PR_SET_TIMERSLACK, 1);
    }
    let hold = Duration::from_micros(u64::from(args.rtt_ms) * 500);
    let taps = [open_tap(TAPS[0])?, open_tap(TAPS[1])?];
    let mut listeners = Vec::new();
    for spec in &args.sync_listen {
        let (netns, addr) = spec
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--sync-listen {spec}: expected NETNS=ADDR:PORT"))?;
        let addr: SocketAddr = addr.parse()?;
        listeners.push(Netns::parse(netns).run(|| TcpListener::bind(addr))??);
    }
    for listener in listeners {
        std::thread::spawn(move || {
            // A stand-in: accept, then close.
            for stream in listener.incoming() {
                drop(stream);
            }
        });
    }
    let stats = Arc::new(Counters::default());
    for (direction, (from, to)) in [(0usize, (0usize, 1usize)), (1, (1, 0))] {
        let (reader, writer) = (taps[from].try_clone()?, taps[to].try_clone()?);
        let (send, receive) = mpsc::channel::<(Instant, Vec<u8>)>();
        let counters = Arc::clone(&stats);
        std::thread::spawn(move || read_frames(reader, send, hold, direction, &counters));
        let counters = Arc::clone(&stats);
        std::thread::spawn(move || write_frames(writer, receive, direction, &counters));
    }
    let state = PathBuf::from(STATE_DIR);
    fs::write(state.join(PIDFILE), std::process::id().to_string())?;
    fs::write(state.join(READY), b"")?;
    eprintln!(
        "delay line: {} ms round trip ({} us each way) between {} and {}",
        args.rtt_ms,
        hold.as_micros(),
        TAPS[0],
        TAPS[1]
    );
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let line = stats.snapshot(args.rtt_ms);
        let _ = fs::write(state.join(STATS), serde_json::to_vec(&line)?);
    }
}

/// Attaches to an existing TAP device with the virtio-net header and the
/// offloads a veth has, so GSO packets cross whole.
fn open_tap(name: &str) -> anyhow::Result<File> {
    const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
    const TUNSETOFFLOAD: libc::c_ulong = 0x4004_54d0;
    const IFF_TAP: libc::c_short = 0x0002;
    const IFF_NO_PI: libc::c_short = 0x1000;
    const IFF_VNET_HDR: libc::c_short = 0x4000;
    const TUN_F_CSUM: libc::c_ulong = 0x01;
    const TUN_F_TSO4: libc::c_ulong = 0x02;
    const TUN_F_TSO6: libc::c_ulong = 0x04;
    const TUN_F_TSO_ECN: libc::c_ulong = 0x08;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    // struct ifreq: the name, then the flags.
    let mut ifreq = [0u8; 40];
    ifreq[..name.len()].copy_from_slice(name.as_bytes());
    ifreq[16..18].copy_from_slice(&(IFF_TAP | IFF_NO_PI | IFF_VNET_HDR).to_ne_bytes());
    // SAFETY: TUNSETIFF reads a struct ifreq we own and sized.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETIFF, ifreq.as_mut_ptr()) } < 0 {
        return Err(anyhow::anyhow!(
            "attaching to {name}: {}",
            io::Error::last_os_error()
        ));
    }
    let offloads = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    if unsafe { libc::ioctl(file.as_raw_fd(), TUNSETOFFLOAD, offloads) } < 0 {
        return Err(anyhow::anyhow!(
            "offloads of {name}: {}",
            io::Error::last_os_error()
        ));
    }
    Ok(file)
}

#[derive(Default)]
struct Counters {
    frames: [AtomicU64; 2],
    bytes: [AtomicU64; 2],
    dropped: [AtomicU64; 2],
    queued: [AtomicU64; 2],
    /// Lateness in microseconds, by power of two (bucket i: < 2^i us).
    late: [AtomicU64; 32],
    late_max: AtomicU64,
    /// Time spent in write(2) (the kernel forwards the frame inline).
    write_us: AtomicU64,
    write_max: AtomicU64,
}

impl Counters {
    fn snapshot(&self, rtt_ms: u32) -> LineStats {
        let two = |a: &[AtomicU64; 2]| [0, 1].map(|i| a[i].load(Ordering::Relaxed));
        let late: Vec<u64> = self
            .late
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = late.iter().sum();
        let quantile = |q: f64| {
            let mut seen = 0;
            for (i, n) in late.iter().enumerate() {
                seen += n;
                if total > 0 && seen as f64 >= q * total as f64 {
                    return 1u64 << i;
                }
            }
            0
        };
        LineStats {
            rtt_ms,
            frames: two(&self.frames),
            bytes: two(&self.bytes),
            dropped: two(&self.dropped),
            late_us_p50: quantile(0.5),
            late_us_p99: quantile(0.99),
            late_us_max: self.late_max.load(Ordering::Relaxed),
            write_us_total: self.write_us.load(Ordering::Relaxed),
            write_us_max: self.write_max.load(Ordering::Relaxed),
        }
    }
}

/// Real-time priority for the calling thread, so a busy host wakes it when
/// a frame is due rather than when it gets round to it. The line's threads
/// sleep between frames; best effort.
fn realtime() {
    let param = libc::sched_param { sched_priority: 10 };
    // SAFETY: sets this thread's own policy from a valid sched_param.
    unsafe { libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param) };
}

/// Reads frames as they come and queues each with its due time.
fn read_frames(
    mut tap: File,
    queue: mpsc::Sender<(Instant, Vec<u8>)>,
    hold: Duration,
    direction: usize,
    counters: &Counters,
) {
    realtime();
    let mut buf = vec![0u8; FRAME_MAX];
    loop {
        let n = match tap.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => return,
        };
        let due = Instant::now() + hold;
        let len = n as u64;
        if counters.queued[direction].load(Ordering::Relaxed) + len > QUEUE_BYTES {
            counters.dropped[direction].fetch_add(1, Ordering::Relaxed);
            continue;
        }
        counters.queued[direction].fetch_add(len, Ordering::Relaxed);
        if queue.send((due, buf[..n].to_vec())).is_err() {
            return;
        }
    }
}

/// Writes each frame once its due time has come.
fn write_frames(
    mut tap: File,
    queue: mpsc::Receiver<(Instant, Vec<u8>)>,
    direction: usize,
    counters: &Counters,
) {
    realtime();
    for (due, frame) in queue {
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let woke = Instant::now();
        let late = woke.saturating_duration_since(due).as_micros() as u64;
        let bucket = (64 - late.leading_zeros()).min(31) as usize;
        counters.late[bucket].fetch_add(1, Ordering::Relaxed);
        counters.late_max.fetch_max(late, Ordering::Relaxed);
        let len = frame.len() as u64;
        // A frame the kernel refuses (its bridge went away) is dropped.
        let _ = tap.write(&frame);
        let took = woke.elapsed().as_micros() as u64;
        counters.write_max.fetch_max(took, Ordering::Relaxed);
        counters.write_us.fetch_add(took, Ordering::Relaxed);
        counters.queued[direction].fetch_sub(len, Ordering::Relaxed);
        counters.frames[direction].fetch_add(1, Ordering::Relaxed);
        counters.bytes[direction].fetch_add(len, Ordering::Relaxed);
    }
}
