//! What the lab keeps of QEMU's own account of a migration: the source's
//! `query-migrate` figures, the running guest's, and those of the storage
//! and control channels beside the memory stream.

use std::net::SocketAddr;

use serde::Serialize;
use serde_json::Value;

use super::{control::ControlAccount, storage::StorageAccount};

/// QEMU's own account of the migration, from the source's `query-migrate`.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct QemuOutcome {
    /// completed, failed, cancelled, ...
    pub status: String,
    pub transferred_bytes: u64,
    pub total_time_ms: u64,
    pub downtime_ms: Option<u64>,
    pub setup_time_ms: Option<u64>,
    /// QEMU's own throughput figure, Mbit/s.
    pub throughput_mbps: Option<f64>,
    /// Why it failed, as QEMU says.
    pub error: Option<String>,
    /// The lab cancelled it after the configured timeout.
    pub cancelled_by_timeout: bool,
    pub target: SocketAddr,
    /// multifd channels as the source QEMU reports them (0: multifd off).
    pub multifd_channels: u8,
    /// TLS credentials set on the source QEMU (`tls-creds`).
    pub tls: bool,
    pub accelerator: String,
    pub guest_memory_bytes: u64,
    /// Pre-copy passes over memory: `ram.dirty-sync-count`.
    #[serde(default)]
    pub iterations: Option<u64>,
    /// QEMU's dirty page rate (pages/s) at the end, and the highest it
    /// reported while the migration ran (`ram.dirty-pages-rate`).
    #[serde(default)]
    pub dirty_pages_rate: Option<u64>,
    #[serde(default)]
    pub dirty_pages_rate_max: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    /// Guest RAM as QEMU counts it (`ram.total`).
    #[serde(default)]
    pub ram_total_bytes: Option<u64>,
    /// What was still to send (`ram.remaining`): 0 once completed.
    #[serde(default)]
    pub remaining_bytes: Option<u64>,
    /// Pages sent in full (`ram.normal`), resends included, and pages sent
    /// as a zero-page flag (`ram.duplicate`). QEMU 7.2 has no resend count;
    /// pages sent more than once are at least
    /// `normal_pages + zero_pages - ram_total_bytes / page_size`.
    #[serde(default)]
    pub normal_pages: Option<u64>,
    #[serde(default)]
    pub zero_pages: Option<u64>,
    /// QEMU's last estimate of the stop-and-copy time while it iterated
    /// (`expected-downtime`; gone from the answer once completed).
    #[serde(default)]
    pub expected_downtime_ms: Option<u64>,
    /// The highest vCPU throttle auto-converge applied
    /// (`cpu-throttle-percentage`).
    #[serde(default)]
    pub cpu_throttle_percentage_max: Option<u64>,
    /// Whether QEMU entered post-copy (status `postcopy-active` seen or
    /// post-copy bytes sent), the pages the target asked for
    /// (`ram.postcopy-requests`) and the bytes of each phase.
    #[serde(default)]
    pub postcopy: bool,
    #[serde(default)]
    pub postcopy_requests: Option<u64>,
    #[serde(default)]
    pub precopy_bytes: Option<u64>,
    #[serde(default)]
    pub postcopy_bytes: Option<u64>,
    /// The running guest, as QEMU saw it; absent for a paused guest.
    #[serde(default)]
    pub guest: Option<GuestAccount>,
    /// The local disk QEMU moved over NBD (`--disk`), as its mirror job
    /// counts it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageAccount>,
    /// The control channel's request/response stream (libvirt's stand-in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlAccount>,
}

impl QemuOutcome {
    /// One line for a terminal.
    pub fn text(&self) -> String {
        format!(
            "QEMU: {} — {} bytes in {} ms to {} ({} multifd channels, TLS {}, {}){}",
            self.status,
            self.transferred_bytes,
            self.total_time_ms,
            self.target,
            self.multifd_channels,
            if self.tls { "on" } else { "off" },
            self.accelerator,
            self.error
                .as_ref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        )
    }

    /// What the source sent the target on every channel, as the lab's
    /// own parts count it: QEMU's memory stream, the NBD mirror's bytes
    /// and the control stand-in's requests.
    pub fn sent_bytes(&self) -> u64 {
        self.transferred_bytes
            + self.storage.as_ref().map_or(0, |s| s.copied_bytes)
            + self.control.as_ref().map_or(0, |c| c.sent_bytes)
    }
}

/// The running guest before and after the migration.
#[derive(Clone, Debug, Serialize, serde::Deserialize, PartialEq)]
pub struct GuestAccount {
    /// From the source QEMU's start to the init's "dirtying" line.
    pub boot_ms: u64,
    /// QEMU's own measure of the guest's dirty rate just before the
    /// migration (`calc-dirty-rate`, page sampling, 1 s), MiB/s.
    pub measured_dirty_rate_mib_s: Option<u64>,
    /// What the guest itself says it wrote while the migration ran (its
    /// console reports, one a second), MiB and MiB/s: below the rate it
    /// was told when QEMU's throttle or this host's CPUs held it back.
    pub dirtied_during_migration_mib: Option<u64>,
    pub dirty_rate_during_migration_mib_s: Option<f64>,
    /// Whether the target's vCPUs run after the migration (`query-status`).
    pub running_on_target: Option<bool>,
}

/// The figures of `query-migrate` the lab keeps: QEMU forgets them once a
/// migration is cancelled or failed, so the last answer that had them
/// stands in for the end.
#[derive(Default)]
pub(super) struct Account {
    pub(super) last_with_ram: Option<Value>,
    pub(super) dirty_pages_rate_max: Option<u64>,
    pub(super) expected_downtime_ms: Option<u64>,
    pub(super) cpu_throttle_percentage_max: Option<u64>,
    pub(super) postcopy: bool,
}

impl Account {
    pub(super) fn observe(&mut self, status: &Value) {
        let max = |a: Option<u64>, b: Option<u64>| a.max(b).or(a).or(b);
        if status.get("ram").is_some() {
            self.last_with_ram = Some(status.clone());
        }
        self.dirty_pages_rate_max = max(
            self.dirty_pages_rate_max,
            field_u64(&status["ram"], "dirty-pages-rate"),
        );
        if let Some(expected) = field_u64(status, "expected-downtime") {
            self.expected_downtime_ms = Some(expected);
        }
        self.cpu_throttle_percentage_max = max(
            self.cpu_throttle_percentage_max,
            field_u64(status, "cpu-throttle-percentage"),
        );
        self.postcopy |= status["status"] == "postcopy-active";
    }
}

pub(super) fn field_u64(value: &Value, key: &str) -> Option<u64> {
    value.get(key).and_then(Value::as_u64)
}
