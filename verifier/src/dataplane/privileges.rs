//! Whether this process holds the capabilities its work needs, checked up
//! front from `/proc/self/status`, so a missing privilege is one sentence
//! naming the capability instead of an EPERM from deep inside a syscall.
//!
//! What the kernel asks for (Linux 5.8 and later):
//! - loading the observers: CAP_BPF (maps, programs), CAP_PERFMON (the
//!   verifier refuses their pointer arithmetic without it) and
//!   CAP_NET_ADMIN (a TC program type); CAP_SYS_ADMIN stands in for all
//!   three (the kernel's `bpf_capable()`, `perfmon_capable()`,
//!   `bpf_net_capable()`);
//! - attaching with tcx: nothing more; with clsact (kernels before 6.6):
//!   CAP_NET_ADMIN for the qdisc and filters (rtnetlink takes no stand-in);
//! - entering another network namespace (`setns`): CAP_SYS_ADMIN;
//! - opening `/proc/PID/ns/net` of a process with capabilities this one
//!   lacks (virt-handler, the node's init): CAP_SYS_PTRACE.

use std::{fmt, fs};

/// A capability migverify may need, with its number in the kernel's sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Capability {
    NetAdmin = 12,
    SysPtrace = 19,
    SysAdmin = 21,
    Perfmon = 38,
    Bpf = 39,
}

impl Capability {
    pub fn name(self) -> &'static str {
        match self {
            Capability::NetAdmin => "CAP_NET_ADMIN",
            Capability::SysPtrace => "CAP_SYS_PTRACE",
            Capability::SysAdmin => "CAP_SYS_ADMIN",
            Capability::Perfmon => "CAP_PERFMON",
            Capability::Bpf => "CAP_BPF",
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A capability a piece of work needs, and why, for the message.
#[derive(Clone, Copy, Debug)]
pub struct Need {
    pub capability: Capability,
    pub why: &'static str,
}

/// The agent's capabilities: exactly the set deploy/20-agent-daemonset.yaml
/// adds after dropping ALL (docs/agent.md says why each, and the lab test
/// `agent_caps` runs the agent with this set and with one fewer).
pub const AGENT: &[Need] = &[
    Need {
        capability: Capability::SysAdmin,
        why: "to enter virt-handler's and the node's network namespaces (setns); it also covers \
              CAP_BPF and CAP_PERFMON for loading the eBPF observers",
    },
    Need {
        capability: Capability::NetAdmin,
        why: "to add and remove the clsact qdisc and filters on kernels before 6.6 (rtnetlink)",
    },
    Need {
        capability: Capability::SysPtrace,
        why: "to open /proc/PID/ns/net of virt-handler and of the node's init, processes with \
              capabilities the agent does not hold",
    },
];

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error("cannot check capabilities: {0}")]
    Unreadable(String),
    #[error(
        "missing capability {}: needed {} (the agent runs with {}; uid {uid})",
        .need.capability, .need.why, set_names(AGENT)
    )]
    Missing { need: Need, uid: u32 },
}

fn set_names(needs: &[Need]) -> String {
    needs
        .iter()
        .map(|n| n.capability.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The effective capability set of this process.
fn effective() -> Result<u64, PrivilegeError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(|e| PrivilegeError::Unreadable(format!("reading /proc/self/status: {e}")))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .ok_or_else(|| PrivilegeError::Unreadable("no CapEff in /proc/self/status".into()))
}

fn uid() -> u32 {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() }
}

/// The first of `needs` this process lacks, as an error naming it.
pub fn require(needs: &[Need]) -> Result<(), PrivilegeError> {
    let set = effective()?;
    match needs.iter().find(|n| set & (1 << n.capability as u32) == 0) {
        None => Ok(()),
        Some(need) => Err(PrivilegeError::Missing {
            need: *need,
            uid: uid(),
        }),
    }
}

/// Whether this process may load and attach the observers: CAP_BPF,
/// CAP_PERFMON (without it the verifier refuses the observers' pointer
/// arithmetic) and CAP_NET_ADMIN, or CAP_SYS_ADMIN (which the kernel takes
/// for all three).
pub fn check() -> Result<(), String> {
    let set = effective().map_err(|e| e.to_string())?;
    let has = |cap: Capability| set & (1 << cap as u32) != 0;
    let bpf = has(Capability::Bpf) && has(Capability::Perfmon) && has(Capability::NetAdmin);
    if has(Capability::SysAdmin) || bpf {
        Ok(())
    } else {
        Err(format!(
            "migverify needs root, or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN (or CAP_SYS_ADMIN), to \
             load and attach its eBPF programs (running as uid {} without them)",
            uid()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_capability_is_named_with_why() {
        let error = PrivilegeError::Missing {
            need: AGENT[2],
            uid: 0,
        };
        let text = error.to_string();
        assert!(
            text.starts_with("missing capability CAP_SYS_PTRACE: needed to open /proc/PID/ns/net"),
            "{text}"
        );
        assert!(
            text.contains("the agent runs with CAP_SYS_ADMIN, CAP_NET_ADMIN, CAP_SYS_PTRACE"),
            "{text}"
        );
    }
}
