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
    /// A running Linux guest dirtying memory slower than the migration's
    /// bandwidth: pre-copy iterates and converges.
    BusyGuest,
    /// A running Linux guest dirtying memory faster than the migration's
    /// bandwidth: pre-copy never converges and the migration is ended.
    NotConverging,
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
            Scenario::BusyGuest => "busy-guest",
            Scenario::NotConverging => "not-converging",
        }
    }

    /// Whether QEMU's migration is meant to complete in this scenario.
    pub fn completes(self) -> bool {
        !matches!(
            self,
            Scenario::VlanMismatch
                | Scenario::MtuMismatch
                | Scenario::Stall
                | Scenario::NotConverging
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
            timeout_is_budget: false,
            guest: Guest::Paused,
            auto_converge: false,
            post_copy: false,
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
            // QEMU's max-bandwidth stands for KubeVirt's
            // bandwidthPerMigration, so the outcome does not hang on how
            // fast this host moves TLS. Measured in docs/lab.md ("The
            // running guest"): 25 MiB/s at 100 MiB/s completes in ~3 s
            // after 5 passes. 150 MiB/s at 100 MiB/s does not converge on
            // its own, but with migverify attached too the two cores slow
            // the guest and it once completed after 34 passes; at 50 MiB/s
            // it has a 3x margin.
            Scenario::BusyGuest => LabConfig {
                guest: Guest::Running {
                    dirty_rate_mib_s: 25,
                    working_set_mib: 64,
                },
                bandwidth_bytes: Some(100 << 20),
                ..base
            },
            Scenario::NotConverging => LabConfig {
                guest: Guest::Running {
                    dirty_rate_mib_s: 150,
                    working_set_mib: 64,
                },
                bandwidth_bytes: Some(50 << 20),
                timeout: Duration::from_secs(20),
                ..base
            },
        }
    }
}

/// What runs in the VM while it migrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Guest {
    /// No code runs (`-S`); RAM is a file of random bytes: one pass over
    /// memory, always converges. Fast and steady.
    Paused,
    /// A Linux kernel whose init rewrites `working_set_mib` of memory at
    /// `dirty_rate_mib_s` (0: boots and idles), started before the
    /// migration and running through it.
    Running {
        dirty_rate_mib_s: u64,
        working_set_mib: u64,
    },
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
    /// `timeout` is the migration's completion budget, shorter than the
    /// lab's own: the lab cancels it there, as KubeVirt would.
    #[serde(default)]
    pub timeout_is_budget: bool,
    /// A paused guest, or a running Linux guest dirtying memory.
    #[serde(default = "paused")]
    pub guest: Guest,
    /// QEMU's auto-converge (KubeVirt's `allowAutoConverge`): the source
    /// throttles the vCPUs while pre-copy does not converge.
    #[serde(default)]
    pub auto_converge: bool,
    /// Post-copy (KubeVirt's `allowPostCopy`): the lab switches to
    /// post-copy after the first full pass. Turns multifd off, as KubeVirt
    /// does (and QEMU 7.2's target aborts at the end of a multifd post-copy).
    #[serde(default)]
    pub post_copy: bool,
    /// The kernel hook migverify's observers attach with.
    pub hooks: Hooks,
}

fn paused() -> Guest {
    Guest::Paused
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

    /// multifd channels the migration actually uses: none with post-copy.
    pub fn multifd_in_effect(&self) -> u8 {
        if self.post_copy {
            0
        } else {
            self.multifd_channels
        }
    }

    /// Why this configuration cannot run, if it cannot: a working set that
    /// does not fit the guest's memory beside the kernel.
    pub fn guest_problem(&self) -> Option<String> {
        match self.guest {
            Guest::Paused => None,
            Guest::Running {
                working_set_mib, ..
            } if working_set_mib < 2 => Some("the working set must be at least 2 MiB".into()),
            Guest::Running {
                working_set_mib, ..
            } if working_set_mib + super::guest::GUEST_OVERHEAD_MIB > self.memory_mib => {
                Some(format!(
                    "a working set of {working_set_mib} MiB needs at least {} MiB of guest memory \
                 ({} MiB for the kernel and init); the guest has {} MiB",
                    working_set_mib + super::guest::GUEST_OVERHEAD_MIB,
                    super::guest::GUEST_OVERHEAD_MIB,
                    self.memory_mib
                ))
            }
            Guest::Running { .. } => None,
        }
    }

    /// Cancels a migration at `budget` (its completion budget, which
    /// KubeVirt enforces) when that comes before the lab's timeout.
    pub fn cancel_at_budget(&mut self, budget: Duration) {
        if budget < self.timeout {
            self.timeout = budget;
            self.timeout_is_budget = true;
        }
    }

    /// Why a migration is cancelled at `timeout`, for messages.
    pub fn timeout_reason(&self) -> &'static str {
        if self.timeout_is_budget {
            "its completion budget, as KubeVirt would"
        } else {
            "the lab's --timeout"
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_guest_scenarios_fit_their_memory() {
        for scenario in [Scenario::BusyGuest, Scenario::NotConverging] {
            let config = scenario.config();
            assert!(matches!(config.guest, Guest::Running { .. }));
            assert_eq!(config.guest_problem(), None, "{}", scenario.name());
            assert_eq!(config.multifd_in_effect(), 8);
        }
        assert_eq!(Scenario::Secondary.config().guest, Guest::Paused);
        assert!(!Scenario::NotConverging.completes());
    }

    #[test]
    fn a_working_set_must_fit_beside_the_kernel() {
        let running = |working_set_mib, memory_mib| LabConfig {
            guest: Guest::Running {
                dirty_rate_mib_s: 10,
                working_set_mib,
            },
            memory_mib,
            ..Scenario::Secondary.config()
        };
        assert_eq!(running(160, 256).guest_problem(), None);
        let problem = running(161, 256).guest_problem().unwrap();
        assert!(problem.contains("at least 257 MiB"), "{problem}");
        assert!(running(1, 256).guest_problem().is_some());
    }

    #[test]
    fn post_copy_turns_multifd_off() {
        let config = LabConfig {
            post_copy: true,
            ..Scenario::BusyGuest.config()
        };
        assert_eq!(config.multifd_in_effect(), 0);
    }

    #[test]
    fn an_older_lab_state_reads_as_a_paused_guest() {
        let mut json = serde_json::to_value(Scenario::Secondary.config()).unwrap();
        for field in ["guest", "auto_converge", "post_copy"] {
            json.as_object_mut().unwrap().remove(field);
        }
        let config: LabConfig = serde_json::from_value(json).unwrap();
        assert_eq!(config, Scenario::Secondary.config());
        let running = serde_json::to_value(Scenario::BusyGuest.config()).unwrap();
        assert_eq!(
            running["guest"],
            serde_json::json!({ "kind": "running", "dirty_rate_mib_s": 25, "working_set_mib": 64 })
        );
    }
}
