//! Pre-copy that does not converge: the guest dirties memory about as fast
//! as the migration network carries it, so every pass finds as much to
//! send again, and KubeVirt cancels the migration at its completion budget.

use serde_json::json;

use super::{Phase, Scene, Subject};
use crate::{
    intent::Ended,
    measure::{
        precopy::precopy,
        reasons::{Reason, NOT_CONVERGING},
    },
    units::{bytes, rate},
    verdict::Severity,
};

pub fn not_converging(scene: &Scene, subject: &Subject) -> Option<Reason> {
    if scene.expectations.bulk_transfer {
        return None;
    }
    let f = subject.figures;
    let b = subject.budget;
    let open = f.connections > 0
        && subject
            .group
            .connections
            .iter()
            .any(|c| c.closed_at_ms.is_none());
    if scene.phase == Phase::Live && !open {
        return None;
    }
    let p = precopy(&f.progress, b.size_bytes, scene.now_ms)?;
    if !p.not_converging(b.size_bytes) {
        return None;
    }
    let elapsed_s = p.first_pass_s + p.resending_s;
    let times = p.resent_bytes as f64 / b.size_bytes.max(1) as f64;
    let what = format!(
        "after its first pass over {} ({:.1} s) the migration re-sent {} ({times:.1} times its size) in {:.1} s at \
         {}: the guest dirties at least that much memory a second, about as fast as the migration network carries \
         it, so every pass finds as much to send again",
        bytes(b.size_bytes),
        p.first_pass_s,
        bytes(p.resent_bytes),
        p.resending_s,
        rate(p.resend_rate_bps)
    );
    let cap = match b.bandwidth_per_migration_bps {
        Some(bps) => format!("raise bandwidthPerMigration (now {}) or", rate(bps)),
        None => "raise".to_string(),
    };
    let fixes = format!(
        "{cap} the migration network's rate above the guest's write rate; set allowAutoConverge (QEMU throttles the \
         vCPUs until it converges) or allowPostCopy (switch to post-copy after the first pass), cluster-wide or in \
         a MigrationPolicy for this VM; or lower the guest's write load while it migrates"
    );
    let (severity, message) = match (scene.phase, subject.ended) {
        (Phase::Final, Some(Ended::Completed)) => (
            Severity::Info,
            format!("pre-copy converged only slowly: {what}; it completed all the same"),
        ),
        (Phase::Final, ended) => (
            if ended == Some(Ended::Failed) {
                Severity::Error
            } else {
                Severity::Warning
            },
            format!(
                "pre-copy did not converge: {what}{}. Fixes: {fixes}",
                if ended == Some(Ended::Failed) {
                    "; the migration ended without completing"
                } else {
                    ""
                }
            ),
        ),
        (Phase::Live, _) => (
            Severity::Error,
            format!(
                "pre-copy is not converging: {what}. It has run {elapsed_s:.0} s of its {} s completion budget, \
                 where KubeVirt cancels it. Fixes: {fixes}",
                b.completion_timeout_s
            ),
        ),
    };
    Some(NOT_CONVERGING.raise_at(
        severity,
        message,
        json!({
            "precopy": p,
            "size_bytes": b.size_bytes,
            "elapsed_s": elapsed_s,
            "completion_timeout_s": b.completion_timeout_s,
            "bandwidth_per_migration_bps": b.bandwidth_per_migration_bps,
            "ended": subject.ended,
        }),
    ))
}
