//! The verdict report of a lab run: migverify's judgement as `verify`
//! makes it, with QEMU's own account beside it.

use serde_json::json;

use super::{Cni, LabConfig, LabRun};
use crate::{
    intent::{Budget, Ended, Limits, VmSize},
    measure::{judge::Expectations, reasons::LAB_MIGRATION_FAILED},
    report::Report,
    session::Criteria,
};

/// Judges `run` against `limits` (the lab's `--bandwidth` is QEMU's
/// max-bandwidth, so it is bandwidthPerMigration unless the limits say).
pub fn report(run: &LabRun, mut limits: Limits, interval_ms: u64) -> anyhow::Result<Report> {
    let config = &run.config;
    if limits.bandwidth_per_migration.is_none() {
        limits.bandwidth_per_migration = config.bandwidth_bytes;
    }
    let mut criteria = Criteria::new(limits, interval_ms);
    criteria.endpoints = run.endpoints.clone();
    criteria.expectations = Expectations {
        cidrs: vec![config.migration_cidr().parse()?],
        // The NAD's vlan: node A's port, as the lab's NAD names it.
        vlan: (config.cni == Cni::Bridge && config.migration0).then_some(config.vid_a),
        expect_traffic: !run.endpoints.is_empty(),
        bulk_transfer: false,
    };
    criteria.size = Some(VmSize {
        bytes: config.memory_mib << 20,
        source: "VMI spec.domain.memory.guest".into(),
    });
    criteria.places = super::topology::places();
    // QEMU's account of how the migration ended: the wire cannot tell a
    // completed migration from a cancelled one.
    if let Some(id) = run.endpoints.iter().find_map(|e| e.migration.clone()) {
        let ended = if run.qemu.status == "completed" {
            Ended::Completed
        } else {
            Ended::Failed
        };
        criteria.ended.insert(id, ended);
    }
    let mut report = criteria.report(&run.collected);
    let qemu = &run.qemu;
    if qemu.status != "completed" {
        report.add_reason(LAB_MIGRATION_FAILED.raise(
            format!(
                "QEMU's migration ended {}{}{}",
                qemu.status,
                qemu.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                if qemu.cancelled_by_timeout {
                    format!(
                        " (cancelled after {} s at {})",
                        config.timeout.as_secs(),
                        config.timeout_reason()
                    )
                } else {
                    String::new()
                }
            ),
            json!({ "qemu": qemu }),
        ));
    }
    report.lab = Some(json!({
        "scenario": config.scenario.name(),
        "qemu": qemu,
        "vmi": run.vmi,
        "config": config,
        "interfaces": run.interfaces,
    }));
    Ok(report)
}

/// The completion budget of the lab VM's migration under `limits`.
pub fn completion_budget(config: &LabConfig, limits: &Limits) -> std::time::Duration {
    let budget = Budget::new(limits.completion_timeout_per_gib, config.memory_mib << 20);
    std::time::Duration::from_secs(budget.completion_timeout_s)
}
