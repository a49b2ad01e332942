//! `lab up` and `lab run`'s choice of scenario and what to override in it.

use std::time::Duration;

use super::config::{Cni, Guest, LabConfig, Scenario};
use crate::dataplane::Hooks;

/// The running guest's working set when only a dirty rate is given.
const DEFAULT_WORKING_SET_MIB: u64 = 64;

/// A scenario and the parts of it to override.
#[derive(Debug, Clone, clap::Args)]
pub struct Options {
    /// The scenario to build.
    #[arg(short, long, value_enum, default_value_t = Scenario::Secondary)]
    scenario: Scenario,
    /// CNI flavour of the migration network.
    #[arg(long, value_enum)]
    cni: Option<Cni>,
    /// Guest memory in MiB (random bytes, every page crosses the wire).
    #[arg(long, value_name = "MIB")]
    memory: Option<u64>,
    /// multifd channels (0 turns multifd off; KubeVirt uses 8).
    #[arg(long, value_name = "N")]
    multifd: Option<u8>,
    /// Migrate in cleartext (KubeVirt's `disableTLS: true`).
    #[arg(long)]
    no_tls: bool,
    /// Access VLAN id of both nodes' migration ports (bridge CNI).
    #[arg(long, value_name = "VID", value_parser = clap::value_parser!(u16).range(1..=4094))]
    vlan: Option<u16>,
    /// Jumbo MTU on the endpoints' migration interfaces (the fabric stays at 1500).
    #[arg(long, value_name = "MTU", value_parser = clap::value_parser!(u32).range(1280..=65535))]
    mtu: Option<u32>,
    /// Token-bucket limit on the source's migration NIC, in Mbit/s.
    #[arg(long, value_name = "MBIT")]
    rate: Option<u64>,
    /// QEMU's max-bandwidth in MiB/s, as KubeVirt's bandwidthPerMigration (default: unlimited).
    #[arg(long, value_name = "MIB_PER_S")]
    bandwidth: Option<u64>,
    /// An IPv6-only migration network, whatever the scenario.
    #[arg(long)]
    ipv6: bool,
    /// Turn the veths' segmentation offloads off (MTU-sized packets on the wire).
    #[arg(long)]
    no_offloads: bool,
    /// Cancel a migration still running after this many seconds.
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Boot a running Linux guest that rewrites its working set at this
    /// many MiB/s through the migration (0: it boots and idles).
    #[arg(long, value_name = "MIB_PER_S")]
    dirty_rate: Option<u64>,
    /// The running guest's working set in MiB (default 64).
    #[arg(long, value_name = "MIB", requires = "dirty_rate")]
    working_set: Option<u64>,
    /// Let QEMU throttle the guest's vCPUs until pre-copy converges
    /// (KubeVirt's `allowAutoConverge`).
    #[arg(long)]
    auto_converge: bool,
    /// Switch to post-copy after the first full pass (KubeVirt's `allowPostCopy`).
    #[arg(long)]
    post_copy: bool,
    /// The kernel hook to attach with (clsact: the fallback of kernels before 6.6, on any kernel).
    #[arg(long, value_enum, default_value_t = Hooks::Auto)]
    hooks: Hooks,
}

impl Options {
    /// The scenario's settings with the overrides applied.
    pub fn config(&self) -> anyhow::Result<LabConfig> {
        let mut config = self.scenario.config();
        if let Some(cni) = self.cni {
            config.cni = cni;
        }
        if let Some(memory) = self.memory {
            anyhow::ensure!(
                memory >= 16,
                "--memory {memory}: QEMU's q35 machine needs at least 16 MiB"
            );
            config.memory_mib = memory;
        }
        if let Some(n) = self.multifd {
            config.multifd_channels = n;
        }
        config.tls &= !self.no_tls;
        if let Some(vid) = self.vlan {
            (config.vid_a, config.vid_b) = (vid, vid);
        }
        if let Some(mtu) = self.mtu {
            config.jumbo_mtu = Some(mtu);
        }
        if let Some(rate) = self.rate {
            anyhow::ensure!(rate > 0, "--rate 0: give a rate in Mbit/s");
            config.rate_bps = Some(rate * 1_000_000);
        }
        if let Some(bandwidth) = self.bandwidth {
            config.bandwidth_bytes = (bandwidth > 0).then_some(bandwidth << 20);
        }
        config.ipv6 |= self.ipv6;
        config.offloads &= !self.no_offloads;
        if let Some(timeout) = self.timeout {
            config.timeout = Duration::from_secs(timeout);
        }
        if let Some(dirty_rate_mib_s) = self.dirty_rate {
            let working_set_mib = match (self.working_set, config.guest) {
                (Some(mib), _) => mib,
                (
                    None,
                    Guest::Running {
                        working_set_mib, ..
                    },
                ) => working_set_mib,
                (None, Guest::Paused) => DEFAULT_WORKING_SET_MIB,
            };
            config.guest = Guest::Running {
                dirty_rate_mib_s,
                working_set_mib,
            };
        }
        config.hooks = self.hooks;
        config.auto_converge |= self.auto_converge;
        config.post_copy |= self.post_copy;
        if let Some(problem) = config.guest_problem() {
            anyhow::bail!(problem);
        }
        Ok(config)
    }
}
