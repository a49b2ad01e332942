//! The verdict report of a lab run: migverify's judgement as `verify`
//! makes it, with QEMU's own account beside it, for each migration of a
//! drain too.

use serde_json::{json, Value};

use super::{Cni, LabConfig, LabRun, Outcome, QemuOutcome};
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
        cidrs: config.migration_cidrs(),
        // The NAD's vlan: node A's port, as the lab's NAD names it.
        vlan: (config.cni == Cni::Bridge && config.migration0).then_some(config.vid_a),
        expect_traffic: !run.endpoints.is_empty(),
        bulk_transfer: false,
    };
    // Each VM's size as KubeVirt reads it from its VMI: memory, plus its
    // disk for a block migration.
    criteria.sizes = crate::intent::vmi::sizes(&run.vmi, "the lab's VMIs")?;
    if criteria.sizes.is_empty() {
        criteria.size = Some(VmSize {
            bytes: (config.memory_mib + config.disk_mib.unwrap_or(0)) << 20,
            source: "the lab's guest memory and disk".into(),
        });
    }
    criteria.places = super::topology::places();
    // QEMU's account of how each migration ended: the wire cannot tell a
    // completed migration from a cancelled one.
    match &run.outcome {
        Outcome::Single(qemu) => {
            if let Some(id) = run.endpoints.iter().find_map(|e| e.migration.clone()) {
                criteria.ended.insert(id, ended(qemu));
            }
        }
        Outcome::Drain(drain) => {
            for m in &drain.migrations {
                if let Some(qemu) = &m.qemu {
                    criteria.ended.insert(m.id.clone(), ended(qemu));
                }
            }
        }
    }
    let mut report = criteria.report(&run.collected);
    let accounts: Vec<(String, Option<&QemuOutcome>, Option<&str>)> = match &run.outcome {
        Outcome::Single(qemu) => vec![(String::new(), Some(qemu), None)],
        Outcome::Drain(drain) => drain
            .migrations
            .iter()
            .map(|m| (m.id.clone(), m.qemu.as_ref(), m.error.as_deref()))
            .collect(),
    };
    for (id, qemu, error) in &accounts {
        let who = if id.is_empty() {
            String::new()
        } else {
            format!("{id}: ")
        };
        let message = match (qemu, error) {
            (Some(q), _) if q.status == "completed" => continue,
            (Some(q), _) => format!(
                "{who}QEMU's migration ended {}{}{}",
                q.status,
                q.error
                    .as_ref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default(),
                if q.cancelled_by_timeout {
                    format!(
                        " (cancelled after {} s at {})",
                        config.timeout.as_secs(),
                        config.timeout_reason()
                    )
                } else {
                    String::new()
                }
            ),
            (None, error) => format!("{who}the migration did not run: {}", error.unwrap_or("?")),
        };
        let mut reason = LAB_MIGRATION_FAILED.raise(message, json!({ "qemu": qemu }));
        if !id.is_empty() {
            reason = reason.about(id.clone());
        }
        report.add_reason(reason);
    }
    // Beside each migration, what QEMU (and the lab's parts) say it sent.
    for migration in &mut report.migrations {
        let own = accounts
            .iter()
            .find(|(id, ..)| id.is_empty() || *id == migration.figures.id);
        if let Some((_, Some(qemu), _)) = own {
            migration.lab = Some(beside(
                qemu,
                migration.figures.forward_payload_bytes,
                &run.outcome,
                &migration.figures.id,
            ));
        }
    }
    let (qemu, drain) = match &run.outcome {
        Outcome::Single(qemu) => (serde_json::to_value(qemu)?, Value::Null),
        Outcome::Drain(drain) => (
            // The contract's summary: every migration's bytes, the drain's
            // time; each QEMU's own account is under `drain`.
            json!({
                "status": drain.status(),
                "transferred_bytes": drain.migrations.iter().filter_map(|m| m.qemu.as_ref()).map(|q| q.transferred_bytes).sum::<u64>(),
                "total_time_ms": drain.total_time_ms,
                "migrations": drain.migrations.len(),
                // As the source QEMUs report them (the drain's are alike).
                "multifd_channels": drain.migrations.iter().find_map(|m| m.qemu.as_ref()).map(|q| q.multifd_channels),
                "tls": drain.migrations.iter().find_map(|m| m.qemu.as_ref()).map(|q| q.tls),
            }),
            serde_json::to_value(drain)?,
        ),
    };
    let mut lab = json!({
        "scenario": config.scenario.name(),
        "qemu": qemu,
        "vmi": run.vmi,
        "config": config,
        "interfaces": run.interfaces,
        "wan": run.wan,
    });
    if !drain.is_null() {
        lab["drain"] = drain;
    }
    report.lab = Some(lab);
    Ok(report)
}

/// QEMU's account of one migration beside what migverify saw sent to the
/// target: the memory stream's bytes, the disk mirror's, the control
/// stand-in's, and for a drain how long it queued.
fn beside(qemu: &QemuOutcome, seen: u64, outcome: &Outcome, id: &str) -> Value {
    let expected = qemu.sent_bytes();
    let queue = match outcome {
        Outcome::Drain(drain) => drain.migrations.iter().find(|m| m.id == id).map(|m| {
            json!({
                "started_ms": m.started_ms,
                "finished_ms": m.finished_ms,
                "waited_ms": m.waited_ms,
                "waited_for": m.waited_for,
            })
        }),
        Outcome::Single(_) => None,
    };
    json!({
        "status": qemu.status,
        "transferred_bytes": qemu.transferred_bytes,
        "disk_copied_bytes": qemu.storage.as_ref().map(|s| s.copied_bytes),
        "control_sent_bytes": qemu.control.as_ref().map(|c| c.sent_bytes),
        "expected_bytes": expected,
        "seen_bytes": seen,
        "seen_vs_expected": (expected > 0).then(|| seen as f64 / expected as f64),
        "total_time_ms": qemu.total_time_ms,
        "queue": queue,
    })
}

fn ended(qemu: &QemuOutcome) -> Ended {
    if qemu.status == "completed" {
        Ended::Completed
    } else {
        Ended::Failed
    }
}

/// The completion budget of one lab VM's migration under `limits`: its
/// memory and disk, as its VMI gives KubeVirt.
pub fn completion_budget(config: &LabConfig, limits: &Limits) -> std::time::Duration {
    let size = (config.memory_mib + config.disk_mib.unwrap_or(0)) << 20;
    let budget = Budget::new(limits.completion_timeout_per_gib, size);
    std::time::Duration::from_secs(budget.completion_timeout_s)
}
