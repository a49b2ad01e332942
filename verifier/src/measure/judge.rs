//! The one judging pipeline: from what the observers collected to each
//! migration's figures and budget, the reasons that hold, and the verdict.
//! The report, the live view, the agent, the lab and the bench all judge
//! here, so the same traffic gets the same reasons wherever it is judged;
//! the live phase leaves out the reasons the catalogue marks as judging a
//! whole observation.

use std::collections::BTreeMap;

use serde_json::json;
use verifier_ebpf::{NeighborKey, NeighborStats};

pub use super::rules::{Expectations, Phase};
use super::{
    budget::{budget, BudgetReport},
    migration::{figures, group, Figures, Group},
    reasons::{self, Reason, DATAPLANE_LOST},
    rules::{self, Scene, Subject},
};
use crate::{
    config::Endpoint,
    dataplane::DataplaneStats,
    flows::{FlowTable, SlotInfo},
    intent::{Ended, Limits, VmSize},
    verdict::Verdict,
};

/// Everything a judgement is made from.
pub struct Observation<'a> {
    pub table: &'a FlowTable,
    pub slots: &'a [Option<SlotInfo>],
    /// ARP per address and hook.
    pub neighbors: &'a [(NeighborKey, NeighborStats)],
    pub endpoints: &'a [Endpoint],
    /// When the endpoints became known, ms since the observation started.
    pub endpoints_since_ms: u64,
    pub expectations: &'a Expectations,
    pub limits: &'a Limits,
    /// The VM size for the budget; `None`: the data sent to the target is
    /// taken for it (a named assumption).
    pub size: Option<&'a VmSize>,
    /// How migrations ended, by their id, where that is known.
    pub ended: &'a BTreeMap<String, Ended>,
    pub interval_ms: u64,
    /// Now (live) or the end of the observation, ms since it started.
    pub now_ms: u64,
    pub phase: Phase,
    /// The data plane's own counters and the events dropped over the cap:
    /// whatever it lost is a reason.
    pub health: Option<(&'a DataplaneStats, u64)>,
}

/// One migration's figures with its budget.
#[derive(Clone, Debug)]
pub struct Judged {
    pub figures: Figures,
    pub budget: BudgetReport,
}

/// What the pipeline concluded.
#[derive(Default)]
pub struct Judgement<'a> {
    /// The connections of each migration, in the order of `migrations`.
    pub groups: Vec<Group<'a>>,
    pub migrations: Vec<Judged>,
    /// Errors first, then warnings, then information.
    pub reasons: Vec<Reason>,
    /// Values assumed because no input gave them.
    pub assumptions: Vec<String>,
}

impl Judgement<'_> {
    pub fn verdict(&self) -> Verdict {
        reasons::verdict(&self.reasons)
    }
}

pub fn judge<'a>(observation: &Observation<'a>) -> Judgement<'a> {
    let mut assumptions = Vec::new();
    let groups = group(observation.table, observation.endpoints);
    let migrations: Vec<Judged> = groups
        .iter()
        .map(|group| {
            let figures = figures(group, observation.slots, observation.interval_ms);
            let assumed;
            let size = match observation.size {
                Some(size) => size,
                None => {
                    assumptions.push(format!(
                        "{}: no VM size given (--vm-memory or a VMI): the {} bytes sent to the target are taken \
                         as its size",
                        figures.id, figures.forward_payload_bytes
                    ));
                    assumed = VmSize {
                        bytes: figures.forward_payload_bytes,
                        source: "assumed: the data sent".into(),
                    };
                    &assumed
                }
            };
            let budget = budget(observation.limits, size, &figures);
            Judged { figures, budget }
        })
        .collect();
    let subjects: Vec<Subject> = groups
        .iter()
        .zip(&migrations)
        .map(|(group, m)| Subject {
            group,
            figures: &m.figures,
            budget: &m.budget,
            ended: observation.ended.get(&m.figures.id).copied(),
        })
        .collect();
    let scene = Scene {
        table: observation.table,
        slots: observation.slots,
        endpoints: observation.endpoints,
        neighbors: observation.neighbors,
        expectations: observation.expectations,
        now_ms: observation.now_ms,
        endpoints_since_ms: observation.endpoints_since_ms,
        phase: observation.phase,
    };
    let mut reasons = rules::judgements(&scene, &subjects);
    reasons.extend(rules::causes(&scene, &subjects));
    if let Some((stats, events_dropped)) = observation.health {
        if let Some(losses) = stats.losses(events_dropped) {
            reasons.push(DATAPLANE_LOST.raise(
                format!("the data plane lost data: {losses}; figures may be low"),
                json!({ "stats": stats }),
            ));
        }
    }
    if observation.phase == Phase::Live {
        reasons.retain(|r| r.kind.live);
    }
    reasons::sort(&mut reasons);
    Judgement {
        groups,
        migrations,
        reasons,
        assumptions,
    }
}
