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

pub mod bench;
pub mod check;
mod cmd;
pub mod config;
pub mod guest;
mod options;
pub mod qemu;
mod qmp;
mod report;
mod standin;
mod switch;
pub mod topology;

use std::{
    fs,
    path::{Path, PathBuf},
    time::Duration,
};

use tokio::sync::{mpsc, oneshot};

pub use self::{
    config::{Cni, Guest, LabConfig, Scenario},
    options::Options,
    qemu::{GuestAccount, QemuOutcome},
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
                 namespaces      {}\n",
                config.scenario.name(),
                config.cni,
                config.target_address(),
                config.migration_cidr(),
                self.namespaces.join(" ")
            ),
        }
    }
}

/// Runs one migration across the lab that is up.
pub fn migrate(
    config: &LabConfig,
    progress: Progress,
    listening: &mut dyn FnMut(&serde_json::Value) -> Result<(), LabError>,
) -> Result<QemuOutcome, LabError> {
    qemu::migrate(
        config,
        Path::new(STATE_DIR),
        Path::new(MEMORY_DIR),
        progress,
        listening,
    )
}

/// Removes every namespace, process and file of the lab; returns what it
/// found. Safe to run on a clean host and after a killed run.
pub fn down() -> Result<Vec<String>, LabError> {
    let mut removed = Vec::new();
    for who in ["source", "target"] {
        let pidfile = Path::new(STATE_DIR).join(format!("qemu-{who}.pid"));
        if let Some(pid) = lab_qemu_pid(&pidfile) {
            // SAFETY: plain syscall; the pid was checked to be our QEMU.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            wait_until_dead(pid);
            removed.push(format!("qemu {who} (pid {pid})"));
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

/// The pid in `pidfile`, if that process is still a QEMU the lab started
/// (its name is `mvlab-source`/`mvlab-target`), so a recycled pid is never
/// killed.
fn lab_qemu_pid(pidfile: &Path) -> Option<i32> {
    let pid: i32 = fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim().starts_with("mvlab-") && is_running(pid)).then_some(pid)
}

/// What one `lab run` saw: QEMU's account, the endpoints the lab
/// published, what migverify collected over the migration, and the
/// observers' frame counts per interface.
#[derive(Debug)]
pub struct LabRun {
    pub config: LabConfig,
    pub qemu: QemuOutcome,
    pub vmi: serde_json::Value,
    pub endpoints: Vec<Endpoint>,
    pub collected: Collected,
    /// What each observation point counted during the migration.
    pub interfaces: Vec<InterfaceCount>,
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
    let mut session = Session::start(&points, &[config.migration_cidr().parse()?], config.hooks)?;
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
            let outcome = migrate(config, progress, &mut |vmi| {
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
                published = (vmi.clone(), endpoints);
                Ok(())
            });
            let _ = finished.send(());
            outcome.map(|qemu| (qemu, published))
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
    let (qemu, (vmi, endpoints)) = migration?;
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
        qemu,
        vmi,
        endpoints,
        collected,
        interfaces,
    })
}
