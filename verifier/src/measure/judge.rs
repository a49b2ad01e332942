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
    /// The VM size for the budget of every migration (a flag), else each
    /// migration's own (by id) from [`Observation::sizes`]; neither: the
    /// data sent to the target is taken for it (a named assumption).
    pub size: Option<&'a VmSize>,
    /// Each VMI's size by migration id; a lone one is every migration's.
    pub sizes: &'a BTreeMap<String, VmSize>,
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
            let single = || {
                (observation.sizes.len() == 1)
                    .then(|| observation.sizes.values().next())
                    .flatten()
            };
            let size = match observation
                .size
                .or_else(|| observation.sizes.get(&figures.id))
                .or_else(single)
            {
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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use verifier_ebpf::{Channel, Direction, FlowStats, Reason as Why};

    use super::*;
    use crate::{dataplane::Role, flows::tests::key};

    #[test]
    fn each_migration_is_budgeted_by_its_own_vmis_size() {
        let endpoint = |addr: &str, vm: &str| Endpoint {
            addr: addr.parse().unwrap(),
            channel: Channel::Memory,
            migration: Some(vm.into()),
        };
        let endpoints = vec![
            endpoint("10.200.5.12:40000", "ns/small"),
            endpoint("10.200.5.13:40000", "ns/large"),
        ];
        let stats = FlowStats {
            bytes: 1_000_100,
            unique_payload_bytes: 1_000_000,
            channel: Channel::Memory as u8,
            reason: Why::Endpoint as u8,
            ..FlowStats::default()
        };
        let mut table = FlowTable::default();
        let published: HashSet<_> = endpoints.iter().map(|e| e.addr).collect();
        table.update(
            &[
                (
                    key(
                        "10.200.5.11:50000",
                        "10.200.5.12:40000",
                        0,
                        Direction::Egress,
                    ),
                    stats,
                ),
                (
                    key(
                        "10.200.5.11:50001",
                        "10.200.5.13:40000",
                        0,
                        Direction::Egress,
                    ),
                    stats,
                ),
            ],
            &published,
            100,
        );
        let slots = [Some(SlotInfo {
            interface: "migration0".into(),
            netns: None,
            role: Role::Migration,
            mtu: None,
        })];
        let size = |gib: u64| VmSize {
            bytes: gib << 30,
            source: format!("VMI {gib}Gi"),
        };
        let mut sizes = BTreeMap::from([
            ("ns/small".to_string(), size(1)),
            ("ns/large".to_string(), size(8)),
        ]);
        let (limits, expectations) = (Limits::default(), Expectations::default());
        let running = BTreeMap::new();
        let judged = |sizes: &BTreeMap<String, VmSize>, given: Option<&VmSize>| {
            let judgement = judge(&Observation {
                table: &table,
                slots: &slots,
                neighbors: &[],
                endpoints: &endpoints,
                endpoints_since_ms: 0,
                expectations: &expectations,
                limits: &limits,
                size: given,
                sizes,
                ended: &running,
                interval_ms: 100,
                now_ms: 200,
                phase: Phase::Final,
                health: None,
            });
            judgement
                .migrations
                .iter()
                .map(|m| (m.figures.id.clone(), m.budget.size_bytes))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            judged(&sizes, None),
            [("ns/large".into(), 8 << 30), ("ns/small".into(), 1 << 30)]
        );
        // A flag's size is every migration's.
        assert_eq!(
            judged(&sizes, Some(&size(2))),
            [("ns/large".into(), 2 << 30), ("ns/small".into(), 2 << 30)]
        );
        // One VMI's size is every migration's, as before sizes were per VMI.
        sizes.remove("ns/large");
        assert_eq!(
            judged(&sizes, None),
            [("ns/large".into(), 1 << 30), ("ns/small".into(), 1 << 30)]
        );
    }
}
