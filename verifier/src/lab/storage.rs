//! A VM's local disk moving with it, as KubeVirt's block migration moves
//! one: libvirt has the target QEMU export a blank disk of the same size
//! over NBD (`nbd-server-start`, `nbd-server-add`) and the source QEMU
//! mirror its disk into that export (`blockdev-mirror`, sync full) until
//! source and copy agree; then the memory migrates, and once it is over the
//! mirror is ended (`block-job-cancel` on a ready mirror completes it) and
//! the export stopped. The NBD connection is the storage channel, the
//! port KubeVirt labels 49153.
//!
//! The disk is a file of random bytes on tmpfs, so every block crosses.

use std::{
    fs,
    net::{IpAddr, SocketAddr},
    path::Path,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{qmp::Qmp, LabError, Progress};

/// The disk's block node, on both ends.
const NODE: &str = "disk0";
/// The source's NBD client node, the mirror's target.
const MIRROR_TARGET: &str = "mirror0";
const JOB: &str = "mirror-disk0";
/// How long the first full copy may take before the lab gives up.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// What moved over the storage channel, as QEMU's mirror job counts it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StorageAccount {
    pub disk_bytes: u64,
    /// The bytes the mirror copied to the target (its `offset` when it
    /// ended: the whole disk once, plus what the guest rewrote meanwhile).
    pub copied_bytes: u64,
    /// The target's NBD port (the one published with 49153).
    pub port: u16,
    /// From `blockdev-mirror` to the mirror being ready (source and copy
    /// agree), ms.
    pub ready_ms: u64,
    /// Whether the mirror ended with every block copied.
    pub completed: bool,
}

/// QEMU's arguments for the disk: a raw file as block node `disk0` and a
/// virtio-blk device on it (the same on both ends, as migration requires).
pub fn qemu_args(image: &Path) -> Vec<String> {
    vec![
        "-blockdev".into(),
        format!(
            "driver=file,filename={},node-name={NODE}-file",
            image.display()
        ),
        "-blockdev".into(),
        format!("driver=raw,file={NODE}-file,node-name={NODE}"),
        "-device".into(),
        format!("virtio-blk-pci,drive={NODE},id=vd0"),
    ]
}

/// The target's blank disk, as large as the source's.
pub fn blank(image: &Path, bytes: u64) -> Result<(), LabError> {
    let io = |e: std::io::Error| LabError::Io(format!("creating {}: {e}", image.display()));
    let file = fs::File::create(image).map_err(io)?;
    file.set_len(bytes).map_err(io)
}

/// Exports the target's disk over NBD on an ephemeral port of `address`
/// (TLS with the migration's credentials when on) and returns the port.
pub fn export(
    qmp: &mut Qmp,
    pid: u32,
    address: IpAddr,
    tls: bool,
    taken: &[u16],
) -> Result<u16, LabError> {
    let mut args = json!({
        "addr": { "type": "inet", "data": { "host": address.to_string(), "port": "0" } },
    });
    if tls {
        args["tls-creds"] = json!("tls0");
    }
    qmp.execute("nbd-server-start", args)?;
    qmp.execute(
        "nbd-server-add",
        json!({ "device": NODE, "writable": true }),
    )?;
    // QEMU does not say which port it bound: the listening socket of its
    // own that is not one already known.
    listening_ports(pid)?
        .into_iter()
        .find(|p| !taken.contains(p))
        .ok_or_else(|| {
            LabError::Qemu(format!(
                "the target's NBD server (pid {pid}) listens nowhere"
            ))
        })
}

/// Connects the source to the target's export and mirrors the disk into
/// it until both agree.
pub fn mirror(
    qmp: &mut Qmp,
    target: SocketAddr,
    tls: bool,
    progress: Progress,
) -> Result<u64, LabError> {
    let mut server = json!({
        "type": "inet",
        "host": target.ip().to_string(),
        "port": target.port().to_string(),
    });
    let mut node = json!({
        "driver": "nbd",
        "node-name": MIRROR_TARGET,
        "export": NODE,
    });
    if tls {
        node["tls-creds"] = json!("tls0");
    }
    node["server"] = server.take();
    qmp.execute("blockdev-add", node)?;
    let started = Instant::now();
    qmp.execute(
        "blockdev-mirror",
        json!({ "job-id": JOB, "device": NODE, "target": MIRROR_TARGET, "sync": "full" }),
    )?;
    let mut last_report = Instant::now();
    loop {
        let job = job(qmp)?
            .ok_or_else(|| LabError::Qemu("the disk mirror ended before it was ready".into()))?;
        if job["ready"] == true {
            return Ok(started.elapsed().as_millis() as u64);
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(LabError::Qemu(format!(
                "the disk mirror was not ready after {READY_TIMEOUT:.0?}: {job}"
            )));
        }
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(&format!(
                "disk mirror: {} of {} MiB",
                job["offset"].as_u64().unwrap_or(0) >> 20,
                job["len"].as_u64().unwrap_or(0) >> 20
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Ends the mirror once the memory migration is over (a ready mirror that
/// is cancelled completes, its copy consistent) and stops the target's
/// export; QEMU's account of what it copied.
pub fn finish(
    source: &mut Qmp,
    target: &mut Qmp,
    target_pid: u32,
    disk_bytes: u64,
    port: u16,
    ready_ms: u64,
) -> Result<StorageAccount, LabError> {
    let mut account = StorageAccount {
        disk_bytes,
        copied_bytes: 0,
        port,
        ready_ms,
        completed: false,
    };
    if let Some(mirror) = job(source)? {
        account.copied_bytes = mirror["offset"].as_u64().unwrap_or(0);
        account.completed = mirror["ready"] == true && mirror["offset"] == mirror["len"];
        source.execute("block-job-cancel", json!({ "device": JOB }))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while job(source)?.is_some() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    // The NBD client says goodbye (NBD_CMD_DISC) and closes; the export
    // goes once the target has closed its end too (stopping the server
    // first would reset a connection whose goodbye is still on the way).
    let _ = source.execute("blockdev-del", json!({ "node-name": MIRROR_TARGET }));
    let deadline = Instant::now() + Duration::from_secs(5);
    while sockets(target_pid)?
        .iter()
        .any(|&(local, state)| local == port && state != LISTEN)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = target.execute("nbd-server-stop", json!({}));
    Ok(account)
}

/// The mirror job, while there is one.
fn job(qmp: &mut Qmp) -> Result<Option<Value>, LabError> {
    let jobs = qmp.execute("query-block-jobs", json!({}))?;
    Ok(jobs
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["device"] == JOB))
        .cloned())
}

/// The TCP ports `pid` listens on.
pub fn listening_ports(pid: u32) -> Result<Vec<u16>, LabError> {
    Ok(sockets(pid)?
        .into_iter()
        .filter(|(_, state)| *state == LISTEN)
        .map(|(port, _)| port)
        .collect())
}

/// The TCP state of a listening socket in `/proc/net/tcp`.
const LISTEN: u8 = 0x0a;

/// The local port and TCP state of every socket `pid` holds, from its
/// network namespace's socket tables and its own file descriptors.
fn sockets(pid: u32) -> Result<Vec<(u16, u8)>, LabError> {
    let io = |what: String, e: std::io::Error| LabError::Io(format!("reading {what}: {e}"));
    let fd_dir = format!("/proc/{pid}/fd");
    let mut inodes = Vec::new();
    for entry in fs::read_dir(&fd_dir).map_err(|e| io(fd_dir.clone(), e))? {
        let Ok(target) = entry.and_then(|e| fs::read_link(e.path())) else {
            continue;
        };
        if let Some(inode) = target
            .to_str()
            .and_then(|t| t.strip_prefix("socket:["))
            .and_then(|t| t.strip_suffix(']'))
        {
            inodes.push(inode.to_string());
        }
    }
    let mut found = Vec::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let text = fs::read_to_string(&path).map_err(|e| io(path, e))?;
        found.extend(sockets_in(&text, &inodes));
    }
    Ok(found)
}

/// The local port and state of the sockets of `/proc/net/tcp[6]` whose
/// inode is one of `inodes`.
fn sockets_in(table: &str, inodes: &[String]) -> Vec<(u16, u8)> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, state, inode) = (fields.get(1)?, fields.get(3)?, fields.get(9)?);
            if !inodes.iter().any(|i| i == inode) {
                return None;
            }
            let port = u16::from_str_radix(local.rsplit_once(':')?.1, 16).ok()?;
            Some((port, u8::from_str_radix(state, 16).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockets_of_the_process_are_found_in_the_tables() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0C05C80A:9845 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0\n   \
            1: 0C05C80A:8745 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 777 1 0\n   \
            2: 0C05C80A:9845 0B05C80A:C350 01 00000000:00000000 00:00000000 00000000     0        0 4243 1 0\n";
        // 0x9845 = 38981: QEMU's listener (inode 4242) and a connection to
        // it (4243); 0x8745 is another process's.
        assert_eq!(
            sockets_in(table, &["4242".into(), "4243".into()]),
            [(38981, LISTEN), (38981, 1)]
        );
    }
}
