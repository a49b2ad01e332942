//! The verdict report: built once from what was collected and judged, then
//! rendered as text for a terminal, JSON for machines (the contract of the
//! design, section 6), a self-contained HTML page with plots, and
//! HdrHistogram interval logs.

mod hdrlog;
mod html;
mod text;

use serde::Serialize;
use serde_json::Value;

pub use self::hdrlog::write_hdr_log;
use crate::{
    cli::Status,
    config::Endpoint,
    flows::Collected,
    measure::{
        budget::{budget, BudgetReport, BudgetSettings, VmSize},
        diagnosis::{diagnose, Phase, Scene, Subject},
        migration::{figures, group, Figures},
        verdict::{judge, sort, verdict, Expectations, Judged, Reason, Verdict},
    },
};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Serialize)]
pub struct MigrationReport {
    #[serde(flatten)]
    pub figures: Figures,
    pub budget: BudgetReport,
}

/// What the data plane itself lost or skipped: never silent.
#[derive(Debug, Serialize)]
pub struct DataplaneHealth {
    #[serde(flatten)]
    pub stats: crate::dataplane::DataplaneStats,
    pub events_dropped: u64,
    pub connections: usize,
    pub observed_s: f64,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub verdict: Verdict,
    pub reasons: Vec<Reason>,
    pub migrations: Vec<MigrationReport>,
    /// Values migverify assumed because no input gave them.
    pub assumptions: Vec<String>,
    pub budget_settings: BudgetSettings,
    pub dataplane: DataplaneHealth,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lab: Option<Value>,
    /// `bench run`'s own figures and answers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bench: Option<Value>,
}

/// Everything a report is built from.
pub struct Inputs<'a> {
    pub collected: &'a Collected,
    pub endpoints: &'a [Endpoint],
    pub settings: &'a BudgetSettings,
    /// The VM size for the budget; `None`: the data moved is taken for it
    /// (a named assumption).
    pub size: Option<VmSize>,
    pub expectations: &'a Expectations,
    pub interval_ms: u64,
    /// Assumptions made while reading the inputs.
    pub assumptions: Vec<String>,
}

pub fn build(inputs: Inputs) -> Report {
    let mut assumptions = inputs.assumptions;
    let groups = group(&inputs.collected.table, inputs.endpoints);
    let mut migrations = Vec::new();
    for group in &groups {
        let figures = figures(group, &inputs.collected.slots, inputs.interval_ms);
        let size = inputs.size.clone().unwrap_or_else(|| {
            assumptions.push(format!(
                "{}: no VM size given (--vm-memory or a VMI): the {} bytes sent to the target are taken as its size",
                figures.id, figures.forward_payload_bytes
            ));
            VmSize {
                bytes: figures.forward_payload_bytes,
                source: "assumed: the data sent".into(),
            }
        });
        let budget = budget(inputs.settings, &size, &figures);
        migrations.push(MigrationReport { figures, budget });
    }
    let judged: Vec<Judged> = migrations
        .iter()
        .map(|m| Judged {
            figures: &m.figures,
            budget: &m.budget,
        })
        .collect();
    let mut reasons = judge(&judged, inputs.expectations);
    let subjects: Vec<Subject> = groups
        .iter()
        .zip(&migrations)
        .map(|(group, m)| Subject {
            group,
            figures: &m.figures,
            budget: &m.budget,
        })
        .collect();
    let scene = Scene {
        table: &inputs.collected.table,
        slots: &inputs.collected.slots,
        endpoints: inputs.endpoints,
        neighbors: &inputs.collected.neighbors,
        expectations: inputs.expectations,
        now_ms: inputs.collected.duration.as_millis() as u64,
        endpoints_since_ms: 0,
        phase: Phase::Final,
    };
    reasons.extend(diagnose(&scene, &subjects));
    sort(&mut reasons);
    let stats = inputs.collected.stats;
    if let Some(losses) = stats.losses(inputs.collected.events_dropped) {
        reasons.push(Reason {
            id: "dataplane.lost",
            severity: crate::measure::verdict::Severity::Warning,
            message: format!("the data plane lost data: {losses}; figures may be low"),
            migration: None,
            evidence: serde_json::json!({ "stats": stats }),
        });
    }
    Report {
        schema_version: SCHEMA_VERSION,
        verdict: verdict(&reasons),
        reasons,
        migrations,
        assumptions,
        budget_settings: inputs.settings.clone(),
        dataplane: DataplaneHealth {
            stats,
            events_dropped: inputs.collected.events_dropped,
            connections: inputs.collected.table.len(),
            observed_s: inputs.collected.duration.as_secs_f64(),
        },
        lab: None,
        bench: None,
    }
}

impl Report {
    /// Adds a reason after the fact (the lab's own findings) and re-judges.
    pub fn add_reason(&mut self, reason: Reason) {
        self.reasons.push(reason);
        crate::measure::verdict::sort(&mut self.reasons);
        self.verdict = verdict(&self.reasons);
    }

    pub fn status(&self) -> Status {
        match self.verdict {
            Verdict::Pass => Status::Pass,
            Verdict::Warn => Status::Warn,
            Verdict::Fail => Status::Fail,
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("the report serializes")
    }

    pub fn text(&self) -> String {
        text::render(self)
    }

    pub fn html(&self) -> String {
        html::render(self)
    }
}
