//! Whether this process may load and attach eBPF programs.

use std::fs;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_BPF: u32 = 39;

/// Checks the effective capabilities up front, so a missing privilege is one
/// clear sentence instead of an EPERM from deep inside a BPF syscall.
pub fn check() -> Result<(), String> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("cannot read /proc/self/status to check privileges: {e}"))?;
    let effective = status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or("cannot find CapEff in /proc/self/status")?;
    let has = |cap: u32| effective & (1 << cap) != 0;
    if has(CAP_NET_ADMIN) && (has(CAP_BPF) || has(CAP_SYS_ADMIN)) {
        Ok(())
    } else {
        // SAFETY: geteuid cannot fail.
        let uid = unsafe { libc::geteuid() };
        Err(format!(
            "migverify needs root, or CAP_BPF and CAP_NET_ADMIN, to load and attach its eBPF \
             programs (running as uid {uid} without them)"
        ))
    }
}
