//! What a lab looks like: the scenarios, and the settings they are made of.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use crate::dataplane::Hooks;

/// The CNI plugin the migration NetworkAttachmentDefinition uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Cni {
    /// `migration0` is a macvlan (mode bridge) on the node's eth1.
    Macvlan,
    /// `migration0` is a veth into a bridge on the node with eth1 as uplink,
    /// its port in an access VLAN, tagged on the wire between nodes.
    Bridge,
}

/// A real failure mode (or the healthy cases) to reproduce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// macvlan migration network, as the seed's NAD: migration crosses it.
    Secondary,
    /// bridge CNI with a VLAN: migration crosses it, tagged between nodes.
    BridgeVlan,
    /// No `migration0`: the target advertises its pod IP and the migration
    /// crosses the primary network, as virt-handler does silently.
    PodNetworkFallback,
    /// The two nodes' access ports use different VLAN ids.
    VlanMismatch,
    /// Jumbo MTU on the endpoints, 1500 in the fabric: full-size segments
    /// are black-holed after the handshake.
    MtuMismatch,
    /// A token-bucket limit on the source's migration NIC.
    RateLimited,
    /// The migration network starts dropping migration packets part-way.
    Stall,
    /// An IPv6-only migration network.
    Ipv6,
    /// No VM: `bench serve` in node B's virt-handler, `bench run` in node
    /// A's, across the secondary network (with `--rate`, the shaped one).
    Bench,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Secondary => "secondary",
            Scenario::BridgeVlan => "bridge-vlan",
            Scenario::PodNetworkFallback => "pod-network-fallback",
            Scenario::VlanMismatch => "vlan-mismatch",
            Scenario::MtuMismatch => "mtu-mismatch",
            Scenario::RateLimited => "rate-limited",
            Scenario::Stall => "stall",
            Scenario::Ipv6 => "ipv6",
            Scenario::Bench => "bench",
        }
    }

    /// Whether QEMU's migration is meant to complete in this scenario.
    pub fn completes(self) -> bool {
        !matches!(
            self,
            Scenario::VlanMismatch | Scenario::MtuMismatch | Scenario::Stall
        )
    }

    /// The scenario's settings, before command-line overrides.
    pub fn config(self) -> LabConfig {
        let base = LabConfig {
            scenario: self,
            cni: Cni::Macvlan,
            vid_a: 100,
            vid_b: 100,
            migration0: true,
            ipv6: false,
            jumbo_mtu: None,
            rate_bps: None,
            stall_after: None,
            memory_mib: 256,
            multifd_channels: 8,
            tls: true,
            bandwidth_bytes: None,
            offloads: true,
            timeout: Duration::from_secs(60),
            hooks: Hooks::Auto,
        };
        // Faults that stop the migration need no minute to show it.
        let fault_timeout = Duration::from_secs(12);
        match self {
            Scenario::Secondary => base,
            Scenario::BridgeVlan => LabConfig {
                cni: Cni::Bridge,
                ..base
            },
            Scenario::PodNetworkFallback => LabConfig {
                migration0: false,
                ..base
            },
            Scenario::VlanMismatch => LabConfig {
                cni: Cni::Bridge,
                vid_b: 200,
                timeout: fault_timeout,
                ..base
            },
            // With offloads on, veths and bridges pass GSO packets of any
            // size; a real NIC puts MTU-sized frames on the wire, and those
            // are what the fabric drops.
            Scenario::MtuMismatch => LabConfig {
                jumbo_mtu: Some(9000),
                offloads: false,
                timeout: fault_timeout,
                ..base
            },
            Scenario::RateLimited => LabConfig {
                rate_bps: Some(200_000_000),
                ..base
            },
            // Slow enough to be caught mid-flight, then cut.
            Scenario::Stall => LabConfig {
                rate_bps: Some(100_000_000),
                stall_after: Some(Duration::from_secs(2)),
                timeout: fault_timeout,
                ..base
            },
            Scenario::Ipv6 => LabConfig { ipv6: true, ..base },
            Scenario::Bench => base,
        }
    }
}

/// Everything that shapes one lab: topology, faults and the migration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    pub scenario: Scenario,
    pub cni: Cni,
    /// Access VLAN of node A's and node B's migration port (bridge CNI only).
    pub vid_a: u16,
    pub vid_b: u16,
    /// Whether the virt-handlers have a `migration0` at all.
    pub migration0: bool,
    /// IPv6-only migration network.
    pub ipv6: bool,
    /// MTU of the endpoints' migration interfaces; the fabric stays at 1500.
    pub jumbo_mtu: Option<u32>,
    /// Token-bucket rate on node A's eth1, bits per second.
    pub rate_bps: Option<u64>,
    /// Start dropping migration packets this long after the migration starts.
    pub stall_after: Option<Duration>,
    /// Guest memory, MiB, every page of it random.
    pub memory_mib: u64,
    /// multifd channels (0 turns multifd off).
    pub multifd_channels: u8,
    pub tls: bool,
    /// QEMU's max-bandwidth in bytes/s; `None` lifts QEMU's 128 MiB/s default.
    pub bandwidth_bytes: Option<u64>,
    /// Segmentation offloads on the lab's veths; off puts MTU-sized packets
    /// on the wire, as a real NIC does.
    pub offloads: bool,
    /// A migration still running after this long is cancelled.
    pub timeout: Duration,
    /// The kernel hook migverify's observers attach with.
    pub hooks: Hooks,
}

/// The lab's fixed address plan. Ranges do not overlap: the pod network is
/// 10.128.0.0/24, the migration network 10.200.5.0/24 (the seed's
/// whereabouts range) or fd00:200:5::/64.
pub mod addr {
    use super::*;

    pub const POD_PREFIX: u8 = 24;
    pub const POD_A: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 11);
    pub const POD_B: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 12);
    pub const MIGRATION_V4_PREFIX: u8 = 24;
    pub const MIGRATION_V4_A: Ipv4Addr = Ipv4Addr::new(10, 200, 5, 11);
    pub const MIGRATION_V4_B: Ipv4Addr = Ipv4Addr::new(10, 200, 5, 12);
    pub const MIGRATION_V6_PREFIX: u8 = 64;
    pub const MIGRATION_V6_A: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 5, 0, 0, 0, 0, 0x11);
    pub const MIGRATION_V6_B: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x200, 5, 0, 0, 0, 0, 0x12);
}

impl LabConfig {
    /// Where the target virt-handler listens, as it would advertise it:
    /// its migration0 address, or its pod IP when it has no migration0.
    pub fn target_address(&self) -> IpAddr {
        match (self.migration0, self.ipv6) {
            (false, _) => addr::POD_B.into(),
            (true, false) => addr::MIGRATION_V4_B.into(),
            (true, true) => addr::MIGRATION_V6_B.into(),
        }
    }

    /// The migration network's CIDR, as the NAD's IPAM range would say.
    pub fn migration_cidr(&self) -> String {
        if self.ipv6 {
            format!("fd00:200:5::/{}", addr::MIGRATION_V6_PREFIX)
        } else {
            format!("10.200.5.0/{}", addr::MIGRATION_V4_PREFIX)
        }
    }
}

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
        config.hooks = self.hooks;
        Ok(config)
    }
}
