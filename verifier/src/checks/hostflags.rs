//! `check --host` and `check --lab`: which node to check and how, as flags,
//! turned into the plan [`super::host::check`] runs.

use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use super::{
    host::{HostPlan, NodePlan, SyncPeer},
    Report,
};
use crate::{
    dataplane::{AttachSpec, Netns},
    intent::Nad,
};

/// The node checks' flags.
#[derive(Debug, clap::Args)]
pub struct HostFlags {
    /// Check this node too (needs root): virt-handler's migration0 and the path.
    #[arg(long)]
    host: bool,
    /// Check the running lab's two nodes (`migverify lab up` first; needs root).
    #[arg(long, conflicts_with = "host")]
    lab: bool,
    /// virt-handler's network namespace (NAME or /proc/PID/ns/net) for --host.
    #[arg(long, value_name = "NETNS", requires = "host")]
    netns: Option<String>,
    /// The migration interface in virt-handler's namespace.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "migration0",
        requires = "host"
    )]
    migration_iface: String,
    /// An interface on the migration path, [ROLE:]IFACE[@NETNS] (the NIC as
    /// `migration:eth1`, a bridge as `bridge:br1`); repeat for more.
    #[arg(short, long = "iface", value_name = "SPEC", requires = "host")]
    ifaces: Vec<AttachSpec>,
    /// Another node's migration address to probe (repeat for more).
    #[arg(long, value_name = "ADDR", requires = "host")]
    peer: Vec<IpAddr>,
    /// Cross-cluster: the peer cluster's synchronization controller, ADDR[:PORT]
    /// (port 9185, or a given KubeVirt CR's `spec.synchronizationPort`).
    #[arg(long, value_name = "ADDR[:PORT]")]
    sync_peer: Vec<SyncPeer>,
    /// How long each probe waits for an answer, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0)]
    timeout: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum HostFlagsError {
    #[error("--timeout {0}: give the seconds a probe waits, above 0")]
    Timeout(f64),
    #[cfg(feature = "dataplane")]
    #[error("--lab: {0}")]
    Lab(#[from] crate::lab::LabError),
    #[cfg(not(feature = "dataplane"))]
    #[error("--lab: this migverify is built without the data plane, and the lab with it")]
    NoLab,
}

impl HostFlags {
    /// Whether a node is to be checked at all.
    pub fn any(&self) -> bool {
        self.host || self.lab
    }

    /// The plan, `None` without --host or --lab. The NAD checked against is
    /// the migration network among the objects (with --lab, else the lab's
    /// own); `sync_port` is the port a sync peer without one gets.
    pub fn plan(
        &self,
        report: &Report,
        sync_port: u16,
    ) -> Result<Option<HostPlan>, HostFlagsError> {
        let timeout = Duration::try_from_secs_f64(self.timeout)
            .ok()
            .filter(|t| !t.is_zero())
            .ok_or(HostFlagsError::Timeout(self.timeout))?;
        let sync_peers: Vec<SocketAddr> =
            self.sync_peer.iter().map(|p| p.addr(sync_port)).collect();
        if self.lab {
            let (mut plan, lab_nad) = lab_plan(timeout)?;
            plan.nad = Some(report.given_nad().unwrap_or(lab_nad));
            plan.sync_peers = sync_peers;
            return Ok(Some(plan));
        }
        Ok(self.host.then(|| HostPlan {
            nodes: vec![NodePlan {
                name: self.netns.clone().unwrap_or_else(|| "this host".into()),
                netns: self.netns.as_deref().map(Netns::parse),
                migration_iface: self.migration_iface.clone(),
                path: self.ifaces.clone(),
                peers: self.peer.clone(),
                port_vlans: None,
            }],
            nad: report.given_nad(),
            sync_peers,
            timeout,
        }))
    }
}

/// The lab's two nodes, checked as `--host` checks one.
#[cfg(feature = "dataplane")]
fn lab_plan(timeout: Duration) -> Result<(HostPlan, Nad), HostFlagsError> {
    Ok(crate::lab::check::host_plan(
        &crate::lab::current()?,
        timeout,
    ))
}

#[cfg(not(feature = "dataplane"))]
fn lab_plan(_: Duration) -> Result<(HostPlan, Nad), HostFlagsError> {
    Err(HostFlagsError::NoLab)
}
