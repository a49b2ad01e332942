//! The lab: an emulated two-node KubeVirt migration network in network
//! namespaces on this host, and a real QEMU live migration across it.
//!
//! `up` builds the topology a scenario describes, starts a process named
//! `virt-handler` in each virt-handler namespace (so discovery finds the
//! lab's nodes as it finds a real node's) and records it in the state
//! folder; `migrate` runs one migration across it; `down` removes
//! everything the lab made, found by its prefix, so it also cleans up after
//! a crashed or killed run. `run` does all of it around migverify's
//! observers.

mod account;
pub mod bench;
pub mod check;
mod cmd;
pub mod config;
pub mod control;
pub mod drain;
pub mod guest;
mod options;
pub mod qemu;
mod qmp;
mod report;
mod standin;
pub mod storage;
mod switch;
pub mod topology;
pub mod vmi;
pub mod wan;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

pub use self::{
    config::{Cni, Guest, LabConfig, Scenario},
    drain::DrainOutcome,
    options::Options,
    qemu::{GuestAccount, QemuOutcome, Vm},
    report::{completion_budget, report},
};
use crate::{
    config::{endpoints::endpoints_from_vmi, Endpoint},
    dataplane::InterfaceCount,
    flows::{Collected, Request},
    session::Session,
};

/// Certificates, QMP sockets, logs, pidfiles, the VMI document, lab.json.
pub const STATE_DIR: &str = "/run/mvlab";
/// Guest memory files, on tmpfs.
pub const MEMORY_DIR: &str = "/dev/shm/mvlab";

/// Progress lines for long work ("creating namespaces", "migration 40%").
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("QEMU: {0}")]
    Qemu(String),
    /// The guest's kernel panicked on the target after the switch-over:
    /// its memory arrived damaged. QEMU 7.2 under TCG does this now and
    /// then with a guest that dirties memory while throttled (docs/lab.md);
    /// migverify only reads packets, and the stream is TLS, so a damaged
    /// packet would have failed the migration instead.
    #[error(
        "the guest panicked on the target after the migration (its console: {0}); QEMU exited. \
         The migrated memory was damaged in QEMU, not on the wire (see docs/lab.md, \"The running guest\")"
    )]
    GuestPanicked(String),
    #[error("QEMU ({0}) stopped answering on its QMP socket")]
    QmpTimeout(&'static str),
    #[error("lab VLAN port {port}: {message}")]
    Switch { port: String, message: String },
    #[error("{0}")]
    Io(String),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error("no lab is up (run `migverify lab up`)")]
    NotUp,
    #[error("the lab state in {path} is unreadable ({message}); run `migverify lab down`")]
    BadState { path: PathBuf, message: String },
}

fn state_file() -> PathBuf {
    Path::new(STATE_DIR).join("lab.json")
}

fn create_dir(path: &str) -> Result<(), LabError> {
    fs::create_dir_all(path).map_err(|e| LabError::Io(format!("creating {path}: {e}")))
}

/// Builds the lab for `config`, cleaning whatever an earlier lab left.
pub fn up(config: &LabConfig, progress: Progress) -> Result<(), LabError> {
    let leftovers = down()?;
    if !leftovers.is_empty() {
        progress(&format!(
            "removed leftovers of an earlier lab: {}",
            leftovers.join(", ")
        ));
    }
    if let Some(problem) = config.guest_problem() {
        return Err(LabError::Io(format!("lab configuration: {problem}")));
    }
    create_dir(STATE_DIR)?;
    create_dir(MEMORY_DIR)?;
    // A running guest's initramfs and accelerator probe (seconds when KVM
    // hangs a Linux guest) are made while the namespaces are built.
    let built = std::thread::scope(|scope| {
        let guest = matches!(config.guest, Guest::Running { .. })
            .then(|| scope.spawn(|| guest::prepare(Path::new(STATE_DIR), progress)));
        let topology = topology::build(config, progress);
        let guest = guest.map(|g| g.join().expect("the guest preparation does not panic"));
        topology
            .and(guest.transpose().map(|_| ()))
            .and_then(|()| standin::start())
    });
    if let Err(error) = built {
        let _ = down();
        return Err(error);
    }
    let json = serde_json::to_vec_pretty(config).expect("LabConfig serializes");
    fs::write(state_file(), json)
        .map_err(|e| LabError::Io(format!("writing {}: {e}", state_file().display())))
}

/// The configuration of the lab that is up.
pub fn current() -> Result<LabConfig, LabError> {
    let path = state_file();
    let text = match fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(LabError::NotUp),
        Err(e) => {
            return Err(LabError::BadState {
                path,
                message: e.to_string(),
            })
        }
    };
    serde_json::from_slice(&text).map_err(|e| LabError::BadState {
        path,
        message: e.to_string(),
    })
}

/// What `lab status` shows: the lab that is up, or what remains of one.
#[derive(Debug, serde::Serialize)]
pub struct Status {
    pub up: bool,
    pub namespaces: Vec<String>,
    pub config: Option<LabConfig>,
    pub target_address: Option<std::net::IpAddr>,
}

pub fn status() -> Result<Status, LabError> {
    let config = match current() {
        Ok(config) => Some(config),
        Err(LabError::NotUp) => None,
        Err(e) => return Err(e),
    };
    Ok(Status {
        up: config.is_some(),
        namespaces: topology::namespaces()?,
        target_address: config.as_ref().map(LabConfig::target_address),
        config,
    })
}

impl Status {
    /// For a terminal.
    pub fn text(&self) -> String {
        match &self.config {
            None if self.namespaces.is_empty() => "no lab is up\n".into(),
            None => format!(
                "no lab state, but namespaces remain: {} (run `migverify lab down`)\n",
                self.namespaces.join(" ")
            ),
            Some(config) => format!(
                "scenario        {}\ncni             {:?}\ntarget address  {}\nmigration cidr  {}\n\
                 added rtt       {}\nnamespaces      {}\n",
                config.scenario.name(),
                config.cni,
                config.target_address(),
                config
                    .migration_cidrs()
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
                config
                    .rtt_ms
                    .map_or_else(|| "none".to_string(), |ms| format!("{ms} ms")),
                self.namespaces.join(" ")
            ),
        }
    }
}

/// Runs one migration across the lab that is up (the VMI in
/// `/run/mvlab/vmi.json` once the target listens).
pub fn migrate(
    config: &LabConfig,
    progress: Progress,
    listening: &mut dyn FnMut(&serde_json::Value) -> Result<(), LabError>,
) -> Result<QemuOutcome, LabError> {
    let state = Path::new(STATE_DIR);
    let write = |vmi: &serde_json::Value| {
        fs::write(
            state.join("vmi.json"),
            serde_json::to_vec_pretty(vmi).expect("JSON"),
        )
        .map_err(|e| LabError::Io(format!("writing vmi.json: {e}")))
    };
    let mut published = None;
    let outcome = qemu::migrate(
        config,
        &Vm::single(),
        state,
        Path::new(MEMORY_DIR),
        progress,
        &mut |vmi| {
            write(vmi)?;
            published = Some(vmi.clone());
            listening(vmi)
        },
    )?;
    // As KubeVirt does once a migration ends.
    if let Some(mut vmi) = published {
        vmi::finished(&mut vmi, outcome.status == "completed");
        write(&vmi)?;
    }
    Ok(outcome)
}

/// Drains the lab that is up: `config.vms` migrations, `config.parallel`
/// at once (the VMIs as a List in `/run/mvlab/vmi.json`, kept current).
pub fn drain(
    config: &LabConfig,
    progress: Progress,
    listening: &mut dyn FnMut(&serde_json::Value) -> Result<(), LabError>,
) -> Result<DrainOutcome, LabError> {
    drain::run(
        config,
        Path::new(STATE_DIR),
        Path::new(MEMORY_DIR),
        progress,
        listening,
    )
}

/// What `lab migrate` did: one migration, or a drain of several. Made
/// once per run: its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Outcome {
    Single(QemuOutcome),
    Drain(DrainOutcome),
}

impl Outcome {
    /// QEMU's status, or the drain's (`completed` when every one did).
    pub fn status(&self) -> String {
        match self {
            Outcome::Single(q) => q.status.clone(),
            Outcome::Drain(d) => d.status(),
        }
    }
}

/// One migration, or a drain when the configuration has several VMs.
pub fn migrate_any(
    config: &LabConfig,
    progress: Progress,
    listening: &mut dyn FnMut(&serde_json::Value) -> Result<(), LabError>,
) -> Result<Outcome, LabError> {
    Ok(if config.is_drain() {
        Outcome::Drain(drain(config, progress, listening)?)
    } else {
        Outcome::Single(migrate(config, progress, listening)?)
    })
}

/// Removes every namespace, process and file of the lab; returns what it
/// found. Safe to run on a clean host and after a killed run.
pub fn down() -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    // qemu-source.pid, qemu-target.pid; a drain's qemu-vm2-source.pid, ...;
    // the delay line's wan.pid
    let mut pidfiles: Vec<PathBuf> = fs::read_dir(STATE_DIR)
        .map(|dir| dir.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    pidfiles.retain(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| (n.starts_with("qemu-") || n == "wan.pid") && n.ends_with(".pid"))
    });
    pidfiles.sort();
    for pidfile in pidfiles {
        if let Some(pid) = lab_process_pid(&pidfile) {
            // SAFETY: plain syscall; the pid was checked to be the lab's.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_until_dead(pid);
            let who =
                pidfile
                    .file_stem()
                    .and_then(|n| n.to_str())
                    .map_or(String::new(), |n| match n.strip_prefix("qemu-") {
                        Some(vm) => format!("qemu {vm}"),
                        None => "delay line".into(),
                    });
            removed.push(format!("{who} (pid {pid})"));
        }
    }
    removed.extend(standin::stop());
    removed.extend(topology::destroy()?);
    for dir in [STATE_DIR, MEMORY_DIR] {
        if Path::new(dir).exists() {
            fs::remove_dir_all(dir).map_err(|e| LabError::Io(format!("removing {dir}: {e}")))?;
            removed.push(dir.to_string());
        }
    }
    Ok(removed)
}

/// Waits (briefly) until `pid` has exited. An orphan stays a zombie until
/// init reaps it; that counts as dead: it holds no memory or socket.
fn wait_until_dead(pid: i32) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while is_running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn is_running(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit_once(')')
                .map(|(_, rest)| rest.trim_start().starts_with('Z'))
        })
        .is_some_and(|zombie| !zombie)
}

/// The pid in `pidfile`, if that process is still one the lab started (its
/// name is `mvlab-source`/`mvlab-target`/`mvlab-wan`), so a recycled pid is
/// never killed.
fn lab_process_pid(pidfile: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim().starts_with("mvlab-") && is_running(pid)).then_some(pid)
}

/// What one `lab run` saw: QEMU's account (of each migration of a drain),
/// the endpoints the lab published, what migverify collected over the
/// migrations, and the observers' frame counts per interface.
#[derive(Debug)]
pub struct LabRun {
    pub config: LabConfig,
    pub outcome: Outcome,
    /// The VMI document (a drain's List, as it stands at the end).
    pub vmi: serde_json::Value,
    pub endpoints: Vec<Endpoint>,
    pub collected: Collected,
    /// What each observation point counted during the migration.
    pub interfaces: Vec<InterfaceCount>,
    /// The delay line's own account (frames, drops, lateness), if the lab
    /// has one.
    pub wan: Option<wan::LineStats>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Dataplane(#[from] crate::dataplane::DataplaneError),
    #[error("the lab's VMI document: {0}")]
    Vmi(#[from] crate::config::InputError),
}

/// Up, attach migverify to every observation point, migrate while
/// collecting, down. The lab is removed whatever happens in between.
pub fn run(config: &LabConfig, interval: Duration, progress: Progress) -> Result<LabRun, RunError> {
    let result = up(config, progress)
        .map_err(RunError::from)
        .and_then(|()| migrate_observed(config, interval, progress));
    progress("tearing the lab down");
    let teardown = down();
    let run = result?;
    teardown?;
    Ok(run)
}

/// One migration across the lab that is up, with migverify attached to
/// every observation point and collecting while it runs.
pub fn migrate_observed(
    config: &LabConfig,
    interval: Duration,
    progress: Progress,
) -> Result<LabRun, RunError> {
    let points = topology::observation_points(config);
    progress(&format!(
        "attaching migverify to {} interfaces",
        points.len()
    ));
    // What an operator would give: the NAD's range.
    let mut session = Session::start(&points, &config.migration_cidrs(), config.hooks)?;
    let before = session.dataplane().interface_counts()?;

    // The migration runs on its own thread; the collector on this one, so
    // it sees every packet while the migration moves them. Endpoints reach
    // the collector (and the kernel) before the source starts sending.
    let (requests, endpoint_requests) = mpsc::channel::<Request>(1);
    let (finished, migration_done) = oneshot::channel::<()>();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LabError::Io(format!("starting the runtime: {e}")))?;
    let (migration, collected) = std::thread::scope(|scope| {
        let migration = scope.spawn(move || {
            let mut published = (serde_json::Value::Null, Vec::new());
            let outcome = migrate_any(config, progress, &mut |vmi| {
                let endpoints = endpoints_from_vmi(vmi, &Path::new(STATE_DIR).join("vmi.json"))
                    .map_err(|e| LabError::Io(e.to_string()))?;
                let (reply, loaded) = oneshot::channel();
                requests
                    .blocking_send(Request::Load(endpoints.clone(), reply))
                    .map_err(|_| LabError::Io("the collector stopped".into()))?;
                loaded
                    .blocking_recv()
                    .map_err(|_| LabError::Io("the collector stopped".into()))?
                    .map_err(LabError::Io)?;
                // A drain's VMs publish one after another.
                published.0 = vmi.clone();
                published.1.extend(endpoints);
                Ok(())
            });
            let _ = finished.send(());
            outcome.map(|outcome| (outcome, published))
        });
        let collected = runtime.block_on(session.collect(
            &[],
            interval,
            endpoint_requests,
            async {
                let _ = migration_done.await;
            },
            |_| false,
        ));
        (
            migration
                .join()
                .expect("the migration thread does not panic"),
            collected,
        )
    });
    let (outcome, (last_vmi, endpoints)) = migration?;
    let vmi = match &outcome {
        Outcome::Drain(drain) => drain.vmi.clone(),
        Outcome::Single(_) => last_vmi,
    };
    let collected = collected?;
    let interfaces = session
        .dataplane()
        .interface_counts()?
        .iter()
        .zip(&before)
        .map(|(after, before)| after.since(before))
        .collect();
    session.detach();
    Ok(LabRun {
        config: config.clone(),
        outcome,
        vmi,
        endpoints,
        collected,
        interfaces,
        wan: config.has_router().then(wan::stats).flatten(),
    })
}
