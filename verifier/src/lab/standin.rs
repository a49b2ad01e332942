//! The lab's virt-handler stand-ins: a process named `virt-handler` in each
//! virt-handler namespace, so `verify` and `watch` without interface flags
//! find the lab's nodes the way they find a real node's, by process name.
//!
//! It is `sleep infinity` run through a symlink named `virt-handler` (a
//! process is named after the file it runs). `up` starts one per node and
//! records its pid; `down` kills a recorded pid only while it still names
//! a `virt-handler`, so a recycled pid is never killed.

use std::{
    fs,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use super::{is_running, topology::NODES, wait_until_dead, LabError, STATE_DIR};
use crate::discovery::PROCESS_NAME;

fn pidfile(node: &str) -> PathBuf {
    Path::new(STATE_DIR).join(format!("virt-handler-{node}.pid"))
}

fn io(what: &str) -> impl Fn(std::io::Error) -> LabError + '_ {
    move |e| LabError::Io(format!("{what}: {e}"))
}

/// The pid's name, if it still runs.
fn comm(pid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    is_running(pid).then(|| comm.trim_end().to_string())
}

/// Starts one stand-in in each node's virt-handler namespace.
pub fn start() -> Result<(), LabError> {
    let sleep = ["/usr/bin/sleep", "/bin/sleep"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| LabError::Io("no sleep(1) in /usr/bin or /bin (coreutils)".into()))?;
    let bin = Path::new(STATE_DIR).join("bin");
    fs::create_dir_all(&bin).map_err(io("creating the stand-in's folder"))?;
    let link = bin.join(PROCESS_NAME);
    let _ = fs::remove_file(&link);
    std::os::unix::fs::symlink(sleep, &link).map_err(io("linking the stand-in"))?;
    for node in NODES {
        let child = Command::new("ip")
            .args(["netns", "exec", node.virt_handler])
            .arg(&link)
            .arg("infinity")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            // Out of the terminal's process group: it outlives `lab up`.
            .process_group(0)
            .spawn()
            .map_err(io("starting the virt-handler stand-in"))?;
        let pid = child.id() as i32;
        fs::write(pidfile(node.name), pid.to_string()).map_err(io("writing its pidfile"))?;
        // `ip netns exec` enters the namespace, then becomes the stand-in.
        let deadline = Instant::now() + Duration::from_secs(5);
        while comm(pid).as_deref() != Some(PROCESS_NAME) {
            if Instant::now() > deadline {
                return Err(LabError::Io(format!(
                    "the virt-handler stand-in in {} did not start",
                    node.virt_handler
                )));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    Ok(())
}

/// Kills the stand-ins still running under their recorded pids.
pub fn stop() -> Vec<String> {
    let mut stopped = Vec::new();
    for node in NODES {
        let Some(pid) = fs::read_to_string(pidfile(node.name))
            .ok()
            .and_then(|text| text.trim().parse::<i32>().ok())
        else {
            continue;
        };
        if comm(pid).as_deref() != Some(PROCESS_NAME) {
            continue;
        }
        // SAFETY: plain syscalls; the pid was checked to be our stand-in.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        wait_until_dead(pid);
        // Reaped when it is this process's child (`lab run`); a no-op otherwise.
        // SAFETY: waitpid on one pid, without blocking, no status read.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        stopped.push(format!(
            "{PROCESS_NAME} stand-in of {} (pid {pid})",
            node.name
        ));
    }
    stopped
}
