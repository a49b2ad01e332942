//! One real QEMU live migration across the lab, shaped like KubeVirt's: the
//! target listens on an ephemeral port of its advertised address
//! (`-incoming defer`, then `migrate-incoming tcp:ADDR:0`), multifd
//! channels, mutual TLS, QEMU's bandwidth cap lifted; with the lab's
//! control channel ([`super::control`]) and a local disk moving over NBD
//! ([`super::storage`]) when the configuration asks for them.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{json, Value};

pub use super::account::{GuestAccount, QemuOutcome};
use super::{
    account::{field_u64, Account},
    cmd::exec,
    config::{Guest, LabConfig},
    control::{ControlClient, ControlServer},
    guest::{self, Accel, GuestBoot},
    qmp::Qmp,
    storage,
    topology::{NODE_A, NODE_B},
    vmi::{self, Ports, State},
    LabError, Progress,
};

/// One VM of the lab: its VMI name, and the tag in the names of its files
/// and processes (none for the lone VM of a single migration).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vm {
    pub name: String,
    tag: String,
}

impl Vm {
    /// The VM of a single migration: `mvlab-vm`, files `qemu-source.pid`.
    pub fn single() -> Vm {
        Vm {
            name: "mvlab-vm".into(),
            tag: String::new(),
        }
    }

    /// The `n`th VM of a drain (from 1): `mvlab-vm2`, `qemu-vm2-source.pid`.
    pub fn numbered(n: usize) -> Vm {
        Vm {
            name: format!("mvlab-vm{n}"),
            tag: format!("vm{n}-"),
        }
    }

    /// The migration id its endpoints carry (`default/mvlab-vm2`).
    pub fn id(&self) -> String {
        format!("{}/{}", vmi::NAMESPACE, self.name)
    }

    /// `STEM-[TAG]WHO`, the name of one of its files.
    fn file(&self, stem: &str, who: &str) -> String {
        format!("{stem}-{}{who}", self.tag)
    }
}

/// A QEMU process the lab started; killed on drop if still running, so an
/// error path never leaves one behind.
struct QemuProcess {
    child: Child,
    qmp_socket: PathBuf,
}

impl QemuProcess {
    /// QEMU's own pid (`ip netns exec` runs it in its place).
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl QemuProcess {
    /// Whether the process has ended.
    fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    fn quit(mut self, qmp: Option<&mut Qmp>) {
        if let Some(qmp) = qmp {
            let _ = qmp.execute("quit", json!({}));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for QemuProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = fs::remove_file(&self.qmp_socket);
    }
}

pub(super) fn kvm_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Guest RAM (or a disk) as a file of random bytes: every page differs
/// from zero and from every other, so every page crosses the wire (no
/// zero-page or duplicate shortcut).
fn ensure_random_file(
    path: &Path,
    bytes: u64,
    what: &str,
    progress: Progress,
) -> Result<(), LabError> {
    if fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    progress(&format!(
        "filling {} MiB of {what} with random bytes",
        bytes >> 20
    ));
    let io = |e: io::Error| LabError::Io(format!("writing {}: {e}", path.display()));
    let mut random = File::open("/dev/urandom").map_err(io)?;
    let mut file = File::create(path).map_err(io)?;
    let mut chunk = vec![0u8; 1 << 20];
    for _ in 0..bytes.div_ceil(chunk.len() as u64) {
        random.read_exact(&mut chunk).map_err(io)?;
        file.write_all(&chunk).map_err(io)?;
    }
    file.set_len(bytes).map_err(io)
}

/// The source's guest memory (and disk) as files of random bytes, made now
/// unless they are there already.
pub fn prepare_files(
    config: &LabConfig,
    vm: &Vm,
    memory_dir: &Path,
    progress: Progress,
) -> Result<(), LabError> {
    let memory = memory_dir.join(vm.file("mem", "source"));
    ensure_random_file(&memory, config.memory_mib << 20, "guest memory", progress)?;
    if let Some(mib) = config.disk_mib {
        let disk = memory_dir.join(vm.file("disk", "source") + ".img");
        ensure_random_file(&disk, mib << 20, "the VM's disk", progress)?;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn spawn(
    vm: &Vm,
    who: &'static str,
    netns: &str,
    state: &Path,
    config: &LabConfig,
    memory_file: &Path,
    boot: Option<&GuestBoot>,
    extra: &[String],
) -> Result<QemuProcess, LabError> {
    let memory = format!("{}M", config.memory_mib);
    let qmp_socket = state.join(vm.file("qmp", who) + ".sock");
    let _ = fs::remove_file(&qmp_socket);
    let log = File::create(state.join(vm.file("qemu", who) + ".log"))
        .map_err(|e| LabError::Io(format!("creating the QEMU log: {e}")))?;
    let accel = accelerator(boot).qemu_args();
    let endpoint = if who == "target" { "server" } else { "client" };
    let tls_object = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint={endpoint},verify-peer=on",
        state.join("pki").join(endpoint).display()
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "qemu-system-x86_64"])
        .args([
            "-name",
            &format!("mvlab-{0}{who},process=mvlab-{0}{who}", vm.tag),
        ])
        .args(accel)
        .args(["-machine", "q35,memory-backend=mem", "-m", &memory])
        .args(["-nodefaults", "-display", "none", "-monitor", "none"])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=mem,size={memory},mem-path={},share=on",
            memory_file.display()
        ))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
        .arg("-pidfile")
        .arg(state.join(vm.file("qemu", who) + ".pid"))
        .args(extra)
        .args(guest_args(
            config,
            boot,
            &state.join(vm.file("guest", who) + ".log"),
        ))
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| LabError::Io(e.to_string()))?)
        .stderr(log);
    if config.tls {
        cmd.args(["-object", &tls_object]);
    }
    let child = cmd
        .spawn()
        .map_err(|e| LabError::Qemu(format!("cannot start qemu-system-x86_64 in {netns}: {e}")))?;
    Ok(QemuProcess { child, qmp_socket })
}

/// The accelerator: the one the running guest was found to boot under, else
/// KVM when `/dev/kvm` works.
fn accelerator(boot: Option<&GuestBoot>) -> Accel {
    match boot {
        Some(boot) => boot.accel,
        None if kvm_usable() => Accel::Kvm,
        None => Accel::Tcg,
    }
}

/// A paused guest has no console and no firmware-loaded kernel; a running
/// one boots the lab's kernel and initramfs, console to a log file. Both
/// ends get the same (option ROMs and fw_cfg must match for the migration).
fn guest_args(config: &LabConfig, boot: Option<&GuestBoot>, console: &Path) -> Vec<String> {
    match (config.guest, boot) {
        (
            Guest::Running {
                dirty_rate_mib_s,
                working_set_mib,
            },
            Some(boot),
        ) => vec![
            "-serial".into(),
            format!("file:{}", console.display()),
            "-no-reboot".into(),
            "-kernel".into(),
            boot.kernel.display().to_string(),
            "-initrd".into(),
            boot.initrd.display().to_string(),
            "-append".into(),
            guest::cmdline(dirty_rate_mib_s, working_set_mib),
        ],
        _ => vec!["-serial".into(), "none".into()],
    }
}

/// Capabilities and parameters both ends must agree on.
fn configure(qmp: &mut Qmp, config: &LabConfig, source: bool) -> Result<(), LabError> {
    let multifd = config.multifd_in_effect();
    let mut capabilities = Vec::new();
    if multifd > 0 {
        capabilities.push(json!({ "capability": "multifd", "state": true }));
    }
    if config.post_copy {
        // Both ends: the target must be ready for page requests.
        capabilities.push(json!({ "capability": "postcopy-ram", "state": true }));
    }
    if config.auto_converge && source {
        capabilities.push(json!({ "capability": "auto-converge", "state": true }));
    }
    if !capabilities.is_empty() {
        qmp.execute(
            "migrate-set-capabilities",
            json!({ "capabilities": capabilities }),
        )?;
    }
    let mut params = json!({ "tls-creds": if config.tls { "tls0" } else { "" } });
    if multifd > 0 {
        // QEMU's default is 2; KubeVirt uses 8.
        params["multifd-channels"] = json!(multifd);
    }
    if source {
        // QEMU caps migration at 128 MiB/s by default; KubeVirt's
        // bandwidthPerMigration 0Mi means unlimited.
        params["max-bandwidth"] = json!(config.bandwidth_bytes.unwrap_or(1 << 40));
    }
    qmp.execute("migrate-set-parameters", params)?;
    Ok(())
}

/// What the source QEMU says it migrates with, not what the lab asked for:
/// multifd channels (`query-migrate-parameters`, 0 without the `multifd`
/// capability of `query-migrate-capabilities`) and whether TLS credentials
/// are set.
fn settings_in_effect(qmp: &mut Qmp) -> Result<(u8, bool), LabError> {
    let capabilities = qmp.execute("query-migrate-capabilities", json!({}))?;
    let multifd = capabilities
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["capability"] == "multifd" && c["state"] == true);
    let parameters = qmp.execute("query-migrate-parameters", json!({}))?;
    let channels = field_u64(&parameters, "multifd-channels")
        .and_then(|n| u8::try_from(n).ok())
        .filter(|_| multifd)
        .unwrap_or(0);
    let tls = parameters["tls-creds"]
        .as_str()
        .is_some_and(|c| !c.is_empty());
    Ok((channels, tls))
}

/// The port QEMU actually bound for `tcp:ADDR:0`.
/// The panic line of a guest console, if the guest's kernel panicked
/// (`panic=-1` then reboots it, and `-no-reboot` ends its QEMU).
fn guest_panic(console: &Path) -> Option<String> {
    let text = fs::read(console).ok()?;
    String::from_utf8_lossy(&text)
        .lines()
        .find(|line| line.contains("Kernel panic"))
        .map(|line| line.trim().to_string())
}

fn listening_port(qmp: &mut Qmp) -> Result<u16, LabError> {
    let status = qmp.execute("query-migrate", json!({}))?;
    let port = &status["socket-address"][0]["port"];
    // QEMU 7.2 reports the port as a string.
    port.as_str()
        .and_then(|p| p.parse().ok())
        .or_else(|| port.as_u64().and_then(|p| u16::try_from(p).ok()))
        .ok_or_else(|| LabError::Qemu(format!("target reports no listening port: {status}")))
}

fn uri(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("tcp:{a}:{port}"),
        IpAddr::V6(a) => format!("tcp:[{a}]:{port}"),
    }
}

/// Drops migration traffic at the target from now on: the network stalls.
fn start_stall(state: &Path, port: u16) -> Result<(), LabError> {
    let rules = state.join("stall.nft");
    let text = format!(
        "table inet mvlab_stall {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    \
         tcp dport {port} drop\n  }}\n}}\n"
    );
    fs::write(&rules, text)
        .map_err(|e| LabError::Io(format!("writing {}: {e}", rules.display())))?;
    exec(
        NODE_B.virt_handler,
        &["nft", "-f", rules.to_str().expect("lab paths are UTF-8")],
    )?;
    Ok(())
}

/// QEMU's own measure of the guest's dirty rate, MiB/s: page sampling
/// (4096 pages per GiB hashed twice, 1 s apart). The dirty-bitmap mode
/// would count every page but crashes QEMU 7.2 under TCG.
fn measure_dirty_rate(qmp: &mut Qmp) -> Option<u64> {
    qmp.execute(
        "calc-dirty-rate",
        json!({ "calc-time": 1, "sample-pages": 4096, "mode": "page-sampling" }),
    )
    .ok()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        let answer = qmp.execute("query-dirty-rate", json!({})).ok()?;
        if answer["status"] == "measured" {
            return answer["dirty-rate"].as_u64();
        }
    }
    None
}

/// Runs `vm`'s migration from node A's virt-handler to node B's.
/// `listening` is called with its VMI document once the target listens on
/// every port it publishes, before the first byte moves.
pub fn migrate(
    config: &LabConfig,
    vm: &Vm,
    state: &Path,
    memory_dir: &Path,
    progress: Progress,
    listening: &mut dyn FnMut(&Value) -> Result<(), LabError>,
) -> Result<QemuOutcome, LabError> {
    if let Some(problem) = config.guest_problem() {
        return Err(LabError::Io(format!("lab configuration: {problem}")));
    }
    let boot = match config.guest {
        Guest::Running { .. } => Some(guest::prepare(state, progress)?),
        Guest::Paused => None,
    };
    let guest_memory_bytes = config.memory_mib << 20;
    let source_memory = memory_dir.join(vm.file("mem", "source"));
    let target_memory = memory_dir.join(vm.file("mem", "target"));
    prepare_files(config, vm, memory_dir, progress)?;
    let _ = fs::remove_file(&target_memory);
    let disk_bytes = config.disk_mib.map(|mib| mib << 20);
    let (source_disk, target_disk) = (
        memory_dir.join(vm.file("disk", "source") + ".img"),
        memory_dir.join(vm.file("disk", "target") + ".img"),
    );
    let disk_args = |image: &Path| match disk_bytes {
        Some(_) => storage::qemu_args(image),
        None => Vec::new(),
    };
    if let Some(bytes) = disk_bytes {
        storage::blank(&target_disk, bytes)?;
    }
    let target_address = config.target_address();
    if config.tls && !state.join("pki/server/server-cert.pem").exists() {
        progress("creating TLS credentials (CA, server and client certificates)");
        crate::pki::write_mutual(&state.join("pki"), &[target_address])?;
    }

    // The source first: a running guest boots and dirties its working set
    // before the target listens, as a VM runs long before KubeVirt starts
    // its target, so the endpoints are published just before the first byte.
    progress(&format!(
        "starting the source QEMU in {}",
        NODE_A.virt_handler
    ));
    // A paused guest (-S) never runs, so no page is dirtied and the
    // migration converges in one pass whatever the link speed. A running
    // one boots and dirties its working set first.
    let spawned = Instant::now();
    let mut source_extra = disk_args(&source_disk);
    if boot.is_none() {
        source_extra.push("-S".into());
    }
    let mut source = spawn(
        vm,
        "source",
        NODE_A.virt_handler,
        state,
        config,
        &source_memory,
        boot.as_ref(),
        &source_extra,
    )?;
    let mut source_qmp = Qmp::connect(&source.qmp_socket, "source", Duration::from_secs(10))?;
    configure(&mut source_qmp, config, true)?;
    let (multifd_channels, tls) = settings_in_effect(&mut source_qmp)?;
    let mut guest_account = None;
    if let (
        Guest::Running {
            dirty_rate_mib_s,
            working_set_mib,
        },
        Some(boot),
    ) = (config.guest, &boot)
    {
        progress(&format!(
            "booting the guest under {} (kernel {}), waiting for it to dirty memory",
            boot.accel.name(),
            boot.kernel.display()
        ));
        guest::wait_for_console(
            &state.join(vm.file("guest", "source") + ".log"),
            guest::DIRTYING_LINE,
            GUEST_BOOT_TIMEOUT,
            || source.exited(),
        )?;
        let boot_ms = spawned.elapsed().as_millis() as u64;
        progress(&format!(
            "guest dirtying {dirty_rate_mib_s} MiB/s over {working_set_mib} MiB, {:.1} s after start",
            boot_ms as f64 / 1000.0
        ));
        let measured = measure_dirty_rate(&mut source_qmp);
        if let Some(rate) = measured {
            progress(&format!("QEMU measures the guest dirtying {rate} MiB/s"));
        }
        guest_account = Some(GuestAccount {
            boot_ms,
            measured_dirty_rate_mib_s: measured,
            dirtied_during_migration_mib: None,
            dirty_rate_during_migration_mib_s: None,
            running_on_target: None,
        });
    }
    progress(&format!(
        "starting the target QEMU in {}",
        NODE_B.virt_handler
    ));
    let mut target_extra = disk_args(&target_disk);
    target_extra.extend(["-incoming".into(), "defer".into()]);
    let target = spawn(
        vm,
        "target",
        NODE_B.virt_handler,
        state,
        config,
        &target_memory,
        boot.as_ref(),
        &target_extra,
    )?;
    let mut target_qmp = Qmp::connect(&target.qmp_socket, "target", Duration::from_secs(10))?;
    configure(&mut target_qmp, config, false)?;
    target_qmp.execute("migrate-incoming", json!({ "uri": uri(target_address, 0) }))?;
    let port = listening_port(&mut target_qmp)?;
    let target_socket = SocketAddr::new(target_address, port);
    // libvirt's control channel and the disk's NBD export listen on
    // ephemeral ports of the same address, as KubeVirt's proxies do.
    let control = match config.control_channel {
        true => Some(ControlServer::listen(NODE_B.virt_handler, target_address)?),
        false => None,
    };
    let storage_port = match disk_bytes {
        Some(_) => Some(storage::export(
            &mut target_qmp,
            target.pid(),
            target_address,
            config.tls,
            &[port],
        )?),
        None => None,
    };
    let ports = Ports {
        control: control.as_ref().map(|c| c.port),
        memory: port,
        storage: storage_port,
    };
    progress(&format!(
        "target listening on {target_socket}{}{}",
        ports
            .control
            .map(|p| format!(", control on {p}"))
            .unwrap_or_default(),
        ports
            .storage
            .map(|p| format!(", NBD on {p}"))
            .unwrap_or_default()
    ));
    listening(&vmi::document(
        config,
        &vm.name,
        State::Migrating(target_socket, ports),
    ))?;

    progress(&format!("the source starts migrating to {target_socket}"));
    let console = state.join(vm.file("guest", "source") + ".log");
    let console_at_start = fs::metadata(&console).map(|m| m.len()).unwrap_or(0);
    // libvirt prepares the target over its control channel, then (block
    // migration) mirrors the disks until they agree, then migrates memory.
    let mut control_client = match ports.control {
        Some(p) => Some(ControlClient::prepare(
            NODE_A.virt_handler,
            SocketAddr::new(target_address, p),
            &vm.name,
        )?),
        None => None,
    };
    let mirror_ready_ms = match ports.storage {
        Some(p) => {
            progress(&format!(
                "mirroring the {} MiB disk to the target's NBD export",
                config.disk_mib.unwrap_or(0)
            ));
            Some(storage::mirror(
                &mut source_qmp,
                SocketAddr::new(target_address, p),
                config.tls,
                progress,
            )?)
        }
        None => None,
    };
    source_qmp.execute("migrate", json!({ "uri": uri(target_address, port) }))?;

    let started = Instant::now();
    let mut stalled = false;
    let mut cancelled_by_timeout = false;
    let mut last_report = Instant::now();
    let mut unresponsive = false;
    let mut account = Account::default();
    let mut postcopy_requested = false;
    let mut completed_without_time = 0;
    let status = loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(control) = control_client.as_mut() {
            control.keepalive()?;
        }
        let status = match source_qmp.execute("query-migrate", json!({})) {
            Ok(status) => status,
            // QEMU 7.2 holds its big lock while multifd channels set up, so
            // a channel hung in its TLS handshake silences the monitor too.
            Err(LabError::QmpTimeout(_)) if started.elapsed() < config.timeout => continue,
            Err(LabError::QmpTimeout(_)) => {
                progress(&format!(
                    "QEMU unresponsive after {:.0?}: stopping it",
                    config.timeout
                ));
                unresponsive = true;
                break json!({
                    "status": "unresponsive",
                    "error-desc": "the source QEMU stopped answering QMP while the migration hung",
                });
            }
            Err(e) => return Err(e),
        };
        account.observe(&status);
        let state_name = status["status"].as_str().unwrap_or("unknown").to_string();
        // QEMU before 8.2 marks a migration completed a moment before it
        // records the total time (migration_calculate_complete ran after
        // the state change; QEMU's commit "Fix possible race when checking
        // for COMPLETED" moved it), so an answer in that window says
        // `total-time: 0`: ask again.
        if state_name == "completed"
            && field_u64(&status, "total-time") == Some(0)
            && completed_without_time < 10
        {
            completed_without_time += 1;
            continue;
        }
        if matches!(state_name.as_str(), "completed" | "failed" | "cancelled") {
            break status;
        }
        // Post-copy once the first full pass is over: the second bitmap
        // sync starts the second pass.
        if config.post_copy
            && !postcopy_requested
            && state_name == "active"
            && field_u64(&status["ram"], "dirty-sync-count").unwrap_or(0) >= 2
        {
            progress(&format!(
                "first pass done after {:.1} s: switching to post-copy",
                started.elapsed().as_secs_f64()
            ));
            source_qmp.execute("migrate-start-postcopy", json!({}))?;
            postcopy_requested = true;
        }
        if let Some(after) = config
            .stall_after
            .filter(|after| !stalled && started.elapsed() >= *after)
        {
            progress(&format!(
                "fault: dropping migration packets at the target after {after:.0?}"
            ));
            start_stall(state, port)?;
            stalled = true;
        }
        if !cancelled_by_timeout && started.elapsed() >= config.timeout {
            progress(&format!(
                "no completion after {:.0?} ({}): cancelling the migration",
                config.timeout,
                config.timeout_reason()
            ));
            match source_qmp.execute("migrate_cancel", json!({})) {
                Ok(_) | Err(LabError::QmpTimeout(_)) => {}
                Err(e) => return Err(e),
            }
            cancelled_by_timeout = true;
        }
        if cancelled_by_timeout && started.elapsed() >= config.timeout + Duration::from_secs(5) {
            break status;
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            let ram = &status["ram"];
            let transferred = field_u64(ram, "transferred").unwrap_or(0);
            let mut line = format!(
                "migration {state_name}: {} MiB sent (guest {} MiB), {:.1} s",
                transferred >> 20,
                config.memory_mib,
                started.elapsed().as_secs_f64()
            );
            if boot.is_some() {
                line += &format!(
                    ", pass {}, dirty {} pages/s",
                    field_u64(ram, "dirty-sync-count").unwrap_or(0),
                    field_u64(ram, "dirty-pages-rate").unwrap_or(0)
                );
                if let Some(throttle) = field_u64(&status, "cpu-throttle-percentage") {
                    line += &format!(", vCPU throttled {throttle}%");
                }
            }
            progress(&line);
        }
    };

    if let Some(guest) = guest_account.as_mut() {
        // The guest's reports since the migration started (the first one
        // also covers a moment before it).
        let text = fs::read(&console).unwrap_or_default();
        let since = text.get(console_at_start as usize..).unwrap_or_default();
        let (mib, seconds) = guest::dirtied_reports(&String::from_utf8_lossy(since));
        if seconds > 0.0 {
            guest.dirtied_during_migration_mib = Some(mib);
            guest.dirty_rate_during_migration_mib_s =
                Some((mib as f64 / seconds * 10.0).round() / 10.0);
        }
    }
    // The end state, with the figures of the last answer that had them.
    let figures = if status.get("ram").is_some() {
        &status
    } else {
        account.last_with_ram.as_ref().unwrap_or(&status)
    };
    let ram = &figures["ram"];
    let postcopy_bytes = field_u64(ram, "postcopy-bytes");
    let outcome_status = status["status"].as_str().unwrap_or("unknown").to_string();
    let mut outcome = QemuOutcome {
        status: outcome_status,
        transferred_bytes: field_u64(ram, "transferred").unwrap_or(0),
        total_time_ms: field_u64(&status, "total-time")
            .unwrap_or_else(|| started.elapsed().as_millis() as u64),
        downtime_ms: field_u64(&status, "downtime"),
        setup_time_ms: field_u64(figures, "setup-time"),
        throughput_mbps: ram.get("mbps").and_then(Value::as_f64),
        error: status["error-desc"].as_str().map(str::to_string),
        cancelled_by_timeout: cancelled_by_timeout || unresponsive,
        target: target_socket,
        multifd_channels,
        tls,
        accelerator: accelerator(boot.as_ref()).name().to_string(),
        guest_memory_bytes,
        iterations: field_u64(ram, "dirty-sync-count"),
        dirty_pages_rate: field_u64(ram, "dirty-pages-rate"),
        dirty_pages_rate_max: account.dirty_pages_rate_max,
        page_size: field_u64(ram, "page-size"),
        ram_total_bytes: field_u64(ram, "total"),
        remaining_bytes: field_u64(ram, "remaining"),
        normal_pages: field_u64(ram, "normal"),
        zero_pages: field_u64(ram, "duplicate"),
        expected_downtime_ms: account.expected_downtime_ms,
        cpu_throttle_percentage_max: account.cpu_throttle_percentage_max,
        postcopy: account.postcopy || postcopy_bytes.is_some_and(|b| b > 0),
        postcopy_requests: field_u64(ram, "postcopy-requests"),
        precopy_bytes: field_u64(ram, "precopy-bytes"),
        postcopy_bytes,
        guest: guest_account,
        storage: None,
        control: None,
    };
    if outcome.status == "completed" {
        // The target finishes loading a moment after the source is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let target_status = match target_qmp.execute("query-migrate", json!({})) {
                Ok(status) => status,
                Err(LabError::QmpTimeout(_)) => json!({ "status": "unresponsive" }),
                Err(e) => {
                    let console = state.join(vm.file("guest", "target") + ".log");
                    return Err(guest_panic(&console).map_or(e, LabError::GuestPanicked));
                }
            };
            if target_status["status"] == "completed" {
                break;
            }
            if Instant::now() >= deadline {
                return Err(LabError::Qemu(format!(
                    "source completed but the target says {target_status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        if let Some(guest) = outcome.guest.as_mut() {
            guest.running_on_target = target_qmp
                .execute("query-status", json!({}))
                .ok()
                .and_then(|s| s["running"].as_bool());
        }
    }
    // The memory is over: the disk's mirror ends, libvirt finishes on the
    // target and closes its connection.
    if let (Some(port), Some(ready_ms), Some(bytes), false) =
        (ports.storage, mirror_ready_ms, disk_bytes, unresponsive)
    {
        outcome.storage = Some(storage::finish(
            &mut source_qmp,
            &mut target_qmp,
            target.pid(),
            bytes,
            port,
            ready_ms,
        )?);
    }
    if let Some(client) = control_client {
        outcome.control = Some(client.finish(outcome.status == "completed")?);
    }
    drop(control);
    // An unresponsive QEMU gets killed; a target whose incoming migration
    // failed has exited on its own.
    source.quit((!unresponsive).then_some(&mut source_qmp));
    target.quit((!unresponsive).then_some(&mut target_qmp));
    let _ = fs::remove_file(&target_memory);
    let _ = fs::remove_file(&target_disk);
    Ok(outcome)
}

/// How long the running guest may take from QEMU's start to dirtying
/// (measured: ~6 s under TCG here, most of it the kernel's boot).
const GUEST_BOOT_TIMEOUT: Duration = Duration::from_secs(120);
