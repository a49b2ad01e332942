//! Entering another network namespace for the length of one closure.
//!
//! virt-handler's `migration0` and `eth0` live in its pod's namespace, the
//! lab's interfaces in the lab's. Attaching there means resolving the
//! interface name and making the tcx link (or netlink request) from inside.
//! `setns` changes only the calling thread, so the work runs on a scoped
//! thread of its own and the rest of the process never leaves its namespace.

use std::{
    fmt,
    fs::File,
    io,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
};

/// Where `ip netns add NAME` puts its namespaces.
const NAMED_NETNS_DIR: &str = "/var/run/netns";

/// A network namespace named by the user: `NAME` (under /var/run/netns) or a
/// path such as `/proc/PID/ns/net`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netns(PathBuf);

impl Netns {
    pub fn parse(spec: &str) -> Self {
        if spec.contains('/') {
            Netns(PathBuf::from(spec))
        } else {
            Netns(Path::new(NAMED_NETNS_DIR).join(spec))
        }
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Runs `work` on a thread inside this namespace.
    pub fn run<T: Send>(&self, work: impl FnOnce() -> T + Send) -> io::Result<T> {
        let ns = File::open(&self.0)?;
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    // SAFETY: plain syscall on an fd we own; affects this thread only.
                    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    Ok(work())
                })
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        })
    }
}

impl fmt::Display for Netns {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.strip_prefix(NAMED_NETNS_DIR) {
            Ok(name) => write!(f, "{}", name.display()),
            Err(_) => write!(f, "{}", self.0.display()),
        }
    }
}

/// Runs `work` in `netns`, or right here when there is none.
pub fn run_in<T: Send>(netns: Option<&Netns>, work: impl FnOnce() -> T + Send) -> io::Result<T> {
    match netns {
        Some(netns) => netns.run(work),
        None => Ok(work()),
    }
}
