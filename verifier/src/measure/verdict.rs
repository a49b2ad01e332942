//! PASS, WARN or FAIL, with the reasons: each a stable ID, a message that
//! says what it means, and the evidence it rests on. The named causes of a
//! stuck or slow migration come from [`super::diagnosis`] and join these.

use std::net::IpAddr;

use serde::Serialize;
use serde_json::{json, Value};

use super::{
    budget::{BudgetReport, Projection},
    migration::Figures,
};
use crate::config::Cidr;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Verdict {
    #[serde(rename = "PASS")]
    Pass,
    #[serde(rename = "WARN")]
    Warn,
    #[serde(rename = "FAIL")]
    Fail,
}

impl Verdict {
    pub const ALL: [Verdict; 3] = [Verdict::Pass, Verdict::Warn, Verdict::Fail];

    /// As reports, Events and metrics spell it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    pub id: &'static str,
    pub severity: Severity,
    pub message: String,
    /// The migration it is about, if one.
    pub migration: Option<String>,
    pub evidence: Value,
}

/// What the judge knows beyond the measurements.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The migration network's CIDRs; empty: not checked.
    pub cidrs: Vec<Cidr>,
    /// The VLAN the NAD puts migration traffic on.
    pub vlan: Option<u16>,
    /// Endpoints were published, so traffic was expected.
    pub expect_traffic: bool,
}

/// Fewer RTT samples than this and the latency figures are not worth much.
pub const MIN_RTT_SAMPLES: u64 = 10;
/// Within this share of a budget is a warning.
pub const NEAR_BUDGET: f64 = 0.8;

/// One migration's figures with its budget.
pub struct Judged<'a> {
    pub figures: &'a Figures,
    pub budget: &'a BudgetReport,
}

pub fn judge(migrations: &[Judged], expectations: &Expectations) -> Vec<Reason> {
    // Missing traffic and the fallback are named causes: see diagnosis.rs.
    let mut reasons = Vec::new();
    for judged in migrations {
        judge_one(judged, expectations, &mut reasons);
    }
    sort(&mut reasons);
    reasons
}

/// Errors first, then warnings, then information; stable within each.
pub fn sort(reasons: &mut [Reason]) {
    reasons.sort_by_key(|r| std::cmp::Reverse(r.severity));
}

fn judge_one(judged: &Judged, expectations: &Expectations, reasons: &mut Vec<Reason>) {
    let f = judged.figures;
    let b = judged.budget;
    let mut add = |id, severity, message: String, evidence: Value| {
        reasons.push(Reason {
            id,
            severity,
            message,
            migration: Some(f.id.clone()),
            evidence,
        })
    };
    if !expectations.cidrs.is_empty() {
        let outside: Vec<&String> = f
            .targets
            .iter()
            .filter(|t| {
                t.parse::<std::net::SocketAddr>()
                    .map(|s| s.ip())
                    .is_ok_and(|ip: IpAddr| !expectations.cidrs.iter().any(|c| c.contains(ip)))
            })
            .collect();
        if !outside.is_empty() {
            let cidrs: Vec<String> = expectations.cidrs.iter().map(ToString::to_string).collect();
            add(
                "fallback.outside-cidr",
                Severity::Error,
                format!(
                    "the target endpoint {} is outside the migration network {}: the migration left it",
                    outside.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", "),
                    cidrs.join(", ")
                ),
                json!({ "targets": outside, "cidrs": cidrs }),
            );
        }
    }
    if let Some(expected) = expectations.vlan {
        // Untagged bytes are normal on access ports (migration0, the pod's
        // veth); a tag other than the NAD's is not, anywhere.
        let tagged: Vec<&String> = f
            .bytes_by_vlan
            .keys()
            .filter(|v| *v != "untagged")
            .collect();
        let other: Vec<&&String> = tagged
            .iter()
            .filter(|v| ***v != expected.to_string())
            .collect();
        if !other.is_empty() {
            add(
                "vlan.mismatch",
                Severity::Error,
                format!(
                    "migration traffic carried VLAN {} where the NAD says {expected}: the switch ports or the \
                     NAD's vlan are misconfigured",
                    other.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
                ),
                json!({ "expected": expected, "bytes_by_vlan": f.bytes_by_vlan }),
            );
        } else if tagged.is_empty() {
            add(
                "vlan.not-seen",
                Severity::Warning,
                format!(
                    "the NAD puts migration traffic on VLAN {expected}, but no observed interface carried a tag: \
                     observe the bridge or its uplink to confirm the VLAN"
                ),
                json!({ "expected": expected, "bytes_by_vlan": f.bytes_by_vlan }),
            );
        }
    }
    let stall = f.longest_stall_s;
    let progress_timeout = b.progress_timeout_s as f64;
    if stall > progress_timeout {
        add(
            "budget.stall",
            Severity::Error,
            format!(
                "no payload moved for {stall:.1} s, longer than progressTimeout {progress_timeout:.0} s: KubeVirt \
                 aborts such a migration as stuck"
            ),
            json!({ "longest_stall_s": stall, "progress_timeout_s": b.progress_timeout_s }),
        );
    } else if stall > NEAR_BUDGET * progress_timeout {
        add(
            "budget.stall-near",
            Severity::Warning,
            format!("no payload moved for {stall:.1} s, over 80% of progressTimeout {progress_timeout:.0} s"),
            json!({ "longest_stall_s": stall, "progress_timeout_s": b.progress_timeout_s }),
        );
    }
    if let Some(projected) = b.projected_s {
        let limit = b.completion_timeout_s as f64;
        let evidence = json!({
            "projected_s": projected,
            "projection": b.projection,
            "completion_timeout_s": b.completion_timeout_s,
            "observed_rate_bps": b.observed_rate_bps,
            "min_rate_bps": b.min_rate_bps,
            "size_bytes": b.size_bytes,
        });
        if projected > limit {
            add(
                "budget.completion",
                Severity::Error,
                // Histograms record at least 1 bit/s: a median of 1 is no
                // rate, it is a migration that stood still most of the time.
                if b.projection == Projection::Duration {
                    format!(
                        "the {} migration took {projected:.1} s, beyond its completion budget of {limit:.0} s \
                         (completionTimeoutPerGiB {} x {} units of 10^9 bytes); it needs at least {}",
                        bytes(b.size_bytes),
                        b.completion_timeout_per_gib,
                        b.size_units,
                        rate(b.min_rate_bps)
                    )
                } else if b.observed_rate_bps <= 1 {
                    format!(
                        "no payload moved in most intervals (median rate 0): at that rate a {} migration never \
                         completes within its budget of {limit:.0} s; it needs at least {}",
                        bytes(b.size_bytes),
                        rate(b.min_rate_bps)
                    )
                } else {
                    format!(
                        "at the observed {} a {} migration takes {projected:.0} s, beyond its completion budget of \
                         {limit:.0} s (completionTimeoutPerGiB {} x {} units of 10^9 bytes); it needs at least {}",
                        rate(b.observed_rate_bps),
                        bytes(b.size_bytes),
                        b.completion_timeout_per_gib,
                        b.size_units,
                        rate(b.min_rate_bps)
                    )
                },
                evidence,
            );
        } else if projected > NEAR_BUDGET * limit {
            add(
                "budget.completion-near",
                Severity::Warning,
                if b.projection == Projection::Duration {
                    format!(
                        "the migration took {projected:.1} s, over 80% of its {limit:.0} s budget"
                    )
                } else {
                    format!(
                        "at the observed {} the migration takes {projected:.0} s, over 80% of its {limit:.0} s budget",
                        rate(b.observed_rate_bps)
                    )
                },
                evidence,
            );
        }
    }
    if f.rtt_us.samples < MIN_RTT_SAMPLES {
        add(
            "rtt.few-samples",
            Severity::Warning,
            format!(
                "only {} RTT samples (TCP timestamp echoes): the latency figures rest on too little",
                f.rtt_us.samples
            ),
            json!({ "samples": f.rtt_us.samples }),
        );
    }
}

/// PASS without warnings or errors, WARN with warnings only, FAIL otherwise.
pub fn verdict(reasons: &[Reason]) -> Verdict {
    match reasons.iter().map(|r| r.severity).max() {
        Some(Severity::Error) => Verdict::Fail,
        Some(Severity::Warning) => Verdict::Warn,
        _ => Verdict::Pass,
    }
}

pub fn rate(bps: u64) -> String {
    match bps {
        b if b >= 1_000_000_000 => format!("{:.2} Gbit/s", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} Mbit/s", b as f64 / 1e6),
        b => format!("{:.1} kbit/s", b as f64 / 1e3),
    }
}

pub fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{n} B"),
    }
}
