//! Running the system tools the lab is made with (ip, tc, nft, ethtool),
//! with failures that say which command failed and why.

use std::process::{Command, Stdio};

use super::LabError;

/// Runs `args`, returning stdout; a failure carries the command and its stderr.
pub fn run(args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Command {
            command: args.join(" "),
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{} is not installed (cargo xtask setup installs it)",
                    args[0]
                )
            } else {
                e.to_string()
            },
        })?;
    if !out.status.success() {
        return Err(LabError::Command {
            command: args.join(" "),
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `ip -n NETNS ARGS...`
pub fn ip(netns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["ip", "-n", netns];
    all.extend_from_slice(args);
    run(&all)
}

/// Adds bridge `name` in `netns`, not yet up. Multicast snooping off:
/// every port gets every multicast frame (IPv6 neighbour discovery among
/// them), as on a switch that does not snoop.
pub fn add_bridge(netns: &str, name: &str) -> Result<(), LabError> {
    ip(
        netns,
        &["link", "add", name, "type", "bridge", "mcast_snooping", "0"],
    )
    .map(drop)
}

/// `ip netns exec NETNS ARGS...`
pub fn exec(netns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut all = vec!["ip", "netns", "exec", netns];
    all.extend_from_slice(args);
    run(&all)
}
