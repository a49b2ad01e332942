//! One real QEMU live migration across the lab, shaped like KubeVirt's: the
//! target listens on an ephemeral port of its advertised address
//! (`-incoming defer`, then `migrate-incoming tcp:ADDR:0`), multifd
//! channels, mutual TLS, QEMU's bandwidth cap lifted.

use std::{
    fs::{self, File, OpenOptions},
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::{json, Value};

use super::{
    cmd::exec,
    config::LabConfig,
    qmp::Qmp,
    topology::{NODE_A, NODE_B},
    LabError, Progress,
};

/// QEMU's own account of the migration, from the source's `query-migrate`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct QemuOutcome {
    /// completed, failed, cancelled, ...
    pub status: String,
    pub transferred_bytes: u64,
    pub total_time_ms: u64,
    pub downtime_ms: Option<u64>,
    pub setup_time_ms: Option<u64>,
    /// QEMU's own throughput figure, Mbit/s.
    pub throughput_mbps: Option<f64>,
    /// Why it failed, as QEMU says.
    pub error: Option<String>,
    /// The lab cancelled it after the configured timeout.
    pub cancelled_by_timeout: bool,
    pub target: SocketAddr,
    pub multifd_channels: u8,
    pub tls: bool,
    pub accelerator: String,
    pub guest_memory_bytes: u64,
}

/// A QEMU process the lab started; killed on drop if still running, so an
/// error path never leaves one behind.
struct QemuProcess {
    child: Child,
    qmp_socket: PathBuf,
}

impl QemuProcess {
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

fn kvm_usable() -> bool {
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

/// Guest RAM as a file of random bytes: every page differs from zero and
/// from every other, so every page crosses the wire (no zero-page or
/// duplicate shortcut).
fn ensure_memory_file(path: &Path, bytes: u64, progress: Progress) -> Result<(), LabError> {
    if fs::metadata(path).is_ok_and(|m| m.len() == bytes) {
        return Ok(());
    }
    progress(&format!(
        "filling {} MiB of guest memory with random bytes",
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

fn spawn(
    who: &'static str,
    netns: &str,
    state: &Path,
    config: &LabConfig,
    memory_file: &Path,
    extra: &[&str],
) -> Result<QemuProcess, LabError> {
    let memory = format!("{}M", config.memory_mib);
    let qmp_socket = state.join(format!("qmp-{who}.sock"));
    let _ = fs::remove_file(&qmp_socket);
    let log = File::create(state.join(format!("qemu-{who}.log")))
        .map_err(|e| LabError::Io(format!("creating the QEMU log: {e}")))?;
    let accel: &[&str] = if kvm_usable() {
        // arch-capabilities=off: KVM refuses to set MSR 0x10a on these hosts.
        &["-accel", "kvm", "-cpu", "host,arch-capabilities=off"]
    } else {
        &["-accel", "tcg"]
    };
    let endpoint = if who == "target" { "server" } else { "client" };
    let tls_object = format!(
        "tls-creds-x509,id=tls0,dir={},endpoint={endpoint},verify-peer=on",
        state.join("pki").join(endpoint).display()
    );
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, "qemu-system-x86_64"])
        .args(["-name", &format!("mvlab-{who},process=mvlab-{who}")])
        .args(accel)
        .args(["-machine", "q35,memory-backend=mem", "-m", &memory])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-serial",
            "none",
            "-monitor",
            "none",
        ])
        .arg("-object")
        .arg(format!(
            "memory-backend-file,id=mem,size={memory},mem-path={},share=on",
            memory_file.display()
        ))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", qmp_socket.display()))
        .arg("-pidfile")
        .arg(state.join(format!("qemu-{who}.pid")))
        .args(extra)
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

/// Capabilities and parameters both ends must agree on.
fn configure(qmp: &mut Qmp, config: &LabConfig, source: bool) -> Result<(), LabError> {
    if config.multifd_channels > 0 {
        qmp.execute(
            "migrate-set-capabilities",
            json!({ "capabilities": [{ "capability": "multifd", "state": true }] }),
        )?;
    }
    let mut params = json!({ "tls-creds": if config.tls { "tls0" } else { "" } });
    if config.multifd_channels > 0 {
        // QEMU's default is 2; KubeVirt uses 8.
        params["multifd-channels"] = json!(config.multifd_channels);
    }
    if source {
        // QEMU caps migration at 128 MiB/s by default; KubeVirt's
        // bandwidthPerMigration 0Mi means unlimited.
        params["max-bandwidth"] = json!(config.bandwidth_bytes.unwrap_or(1 << 40));
    }
    qmp.execute("migrate-set-parameters", params)?;
    Ok(())
}

/// The port QEMU actually bound for `tcp:ADDR:0`.
fn listening_port(qmp: &mut Qmp) -> Result<u16, LabError> {
    let status = qmp.execute("query-migrate", json!({}))?;
    let port = &status["socket-address"][0]["port"];
    // QEMU 7.2 reports the port as a string.
    port.as_str()
        .and_then(|p| p.parse().ok())
        .or_else(|| port.as_u64().and_then(|p| u16::try_from(p).ok()))
        .ok_or_else(|| LabError::Qemu(format!("target reports no listening port: {status}")))
}

/// The endpoint facts a real cluster publishes, in the shape of
/// `oc get vmi NAME -o json`, so the same code reads the lab and a cluster.
pub fn vmi_document(config: &LabConfig, target: SocketAddr) -> Value {
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": { "name": "mvlab-vm", "namespace": "default" },
        "spec": { "domain": { "memory": { "guest": format!("{}Mi", config.memory_mib) } } },
        "status": {
            "nodeName": NODE_A.name,
            "migrationState": {
                "sourceNode": NODE_A.name,
                "targetNode": NODE_B.name,
                "targetNodeAddress": target.ip().to_string(),
                // 49152 labels the memory stream (main + multifd channels).
                "targetDirectMigrationNodePorts": { target.port().to_string(): 49152 },
            }
        }
    })
}

fn uri(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("tcp:{a}:{port}"),
        IpAddr::V6(a) => format!("tcp:[{a}]:{port}"),
    }
}

fn field_u64(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
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

/// Runs the migration from node A's virt-handler to node B's. `listening`
/// is called with the published VMI document once the target listens, before
/// the first byte moves.
pub fn migrate(
    config: &LabConfig,
    state: &Path,
    memory_dir: &Path,
    progress: Progress,
    listening: &mut dyn FnMut(&Value) -> Result<(), LabError>,
) -> Result<QemuOutcome, LabError> {
    let guest_memory_bytes = config.memory_mib << 20;
    let source_memory = memory_dir.join("mem-source");
    let target_memory = memory_dir.join("mem-target");
    ensure_memory_file(&source_memory, guest_memory_bytes, progress)?;
    let _ = fs::remove_file(&target_memory);
    let target_address = config.target_address();
    if config.tls && !state.join("pki/server/server-cert.pem").exists() {
        progress("creating TLS credentials (CA, server and client certificates)");
        crate::pki::write_mutual(&state.join("pki"), &[target_address])?;
    }

    progress(&format!(
        "starting the target QEMU in {}",
        NODE_B.virt_handler
    ));
    let target = spawn(
        "target",
        NODE_B.virt_handler,
        state,
        config,
        &target_memory,
        &["-incoming", "defer"],
    )?;
    let mut target_qmp = Qmp::connect(&target.qmp_socket, "target", Duration::from_secs(10))?;
    configure(&mut target_qmp, config, false)?;
    target_qmp.execute("migrate-incoming", json!({ "uri": uri(target_address, 0) }))?;
    let port = listening_port(&mut target_qmp)?;
    let target_socket = SocketAddr::new(target_address, port);
    progress(&format!("target listening on {target_socket}"));
    let vmi = vmi_document(config, target_socket);
    fs::write(
        state.join("vmi.json"),
        serde_json::to_vec_pretty(&vmi).expect("JSON"),
    )
    .map_err(|e| LabError::Io(format!("writing vmi.json: {e}")))?;
    listening(&vmi)?;

    progress(&format!(
        "starting the source QEMU in {}",
        NODE_A.virt_handler
    ));
    // -S: the guest never runs, so no page is dirtied and the migration
    // converges in one pass whatever the link speed.
    let source = spawn(
        "source",
        NODE_A.virt_handler,
        state,
        config,
        &source_memory,
        &["-S"],
    )?;
    let mut source_qmp = Qmp::connect(&source.qmp_socket, "source", Duration::from_secs(10))?;
    configure(&mut source_qmp, config, true)?;
    source_qmp.execute("migrate", json!({ "uri": uri(target_address, port) }))?;

    let started = Instant::now();
    let mut stalled = false;
    let mut cancelled_by_timeout = false;
    let mut last_report = Instant::now();
    let mut unresponsive = false;
    let status = loop {
        std::thread::sleep(Duration::from_millis(100));
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
        let state_name = status["status"].as_str().unwrap_or("unknown").to_string();
        if matches!(state_name.as_str(), "completed" | "failed" | "cancelled") {
            break status;
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
                "no completion after {:.0?}: cancelling the migration",
                config.timeout
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
            let transferred = field_u64(&status["ram"], "transferred").unwrap_or(0);
            progress(&format!(
                "migration {state_name}: {} of {} MiB sent, {:.1} s",
                transferred >> 20,
                config.memory_mib,
                started.elapsed().as_secs_f64()
            ));
        }
    };

    let ram = &status["ram"];
    let outcome = QemuOutcome {
        status: status["status"].as_str().unwrap_or("unknown").to_string(),
        transferred_bytes: field_u64(ram, "transferred").unwrap_or(0),
        total_time_ms: field_u64(&status, "total-time")
            .unwrap_or_else(|| started.elapsed().as_millis() as u64),
        downtime_ms: field_u64(&status, "downtime"),
        setup_time_ms: field_u64(&status, "setup-time"),
        throughput_mbps: ram.get("mbps").and_then(Value::as_f64),
        error: status["error-desc"].as_str().map(str::to_string),
        cancelled_by_timeout: cancelled_by_timeout || unresponsive,
        target: target_socket,
        multifd_channels: config.multifd_channels,
        tls: config.tls,
        accelerator: if kvm_usable() { "kvm" } else { "tcg" }.to_string(),
        guest_memory_bytes,
    };
    if outcome.status == "completed" {
        // The target finishes loading a moment after the source is done.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let target_status = match target_qmp.execute("query-migrate", json!({})) {
                Ok(status) => status,
                Err(LabError::QmpTimeout(_)) => json!({ "status": "unresponsive" }),
                Err(e) => return Err(e),
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
    }
    // An unresponsive QEMU gets killed; a target whose incoming migration
    // failed has exited on its own.
    source.quit((!unresponsive).then_some(&mut source_qmp));
    target.quit((!unresponsive).then_some(&mut target_qmp));
    let _ = fs::remove_file(&target_memory);
    Ok(outcome)
}
