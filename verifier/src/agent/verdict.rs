//! A migration's verdict as a Kubernetes Event: a reason an alert can
//! select on, and a message with the figures an operator reads first.

use crate::{
    cluster::events::EventType,
    measure::reasons::{EVENT_FAILED, EVENT_VERIFIED},
    report::Report,
    units::{bytes, rate},
    verdict::{Severity, Verdict},
};

use super::tracker::{Migration, Outcome};

/// The Event for a judged migration: PASS is `MigrationNetworkVerified`
/// (Normal), WARN the same as a Warning, FAIL the reason of its first error.
pub fn event(
    report: &Report,
    migration: &Migration,
    outcome: Outcome,
    node: &str,
) -> (EventType, &'static str, String) {
    let first_error = report
        .reasons
        .iter()
        .find(|r| r.severity == Severity::Error);
    let (event_type, reason) = match report.verdict {
        Verdict::Pass => (EventType::Normal, EVENT_VERIFIED),
        Verdict::Warn => (EventType::Warning, EVENT_VERIFIED),
        Verdict::Fail => (
            EventType::Warning,
            first_error
                .and_then(|r| r.kind.event)
                .unwrap_or(EVENT_FAILED),
        ),
    };
    let verdict = report.verdict.as_str();
    let mut message = format!(
        "{verdict} on {node} ({}, migration {}): ",
        migration.side.as_str(),
        outcome.as_str()
    );
    match report.migrations.first() {
        Some(m) => {
            let f = &m.figures;
            let roles = &f.bytes_by_role;
            message.push_str(&format!(
                "{} payload in {} connection(s); bytes by role migration {} primary {} other {}; \
                 throughput p50 {} max {}; RTT p50 {} us over {} samples",
                bytes(f.payload_bytes),
                f.connections,
                bytes(roles.migration),
                bytes(roles.primary),
                bytes(roles.other),
                rate(f.throughput_bps.p50),
                rate(f.throughput_bps.max),
                f.rtt_us.p50,
                f.rtt_us.samples,
            ));
        }
        None => message.push_str("no migration traffic seen"),
    }
    if let Some(first) = report
        .reasons
        .iter()
        .find(|r| r.severity >= Severity::Warning)
    {
        message.push_str(&format!(". {}: {}", first.id(), first.message));
    }
    (event_type, reason, message)
}
