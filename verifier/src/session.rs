//! Observe and judge: the data plane loaded with the migration network's
//! CIDRs and attached to the interfaces, collecting while migrations run,
//! then what it saw judged against what was expected. `verify`, `watch`,
//! `flows`, `bench run`, the lab and the agent all observe through here.

use std::{future::Future, time::Duration};

use tokio::sync::mpsc;

use crate::{
    config::{Cidr, Endpoint},
    dataplane::{AttachSpec, Dataplane, DataplaneError},
    flows::{collect, Collected, Request, Tick},
    intent::{Limits, VmSize},
    measure::{
        judge::{judge, Expectations, Observation, Phase},
        live::Evaluator,
    },
    report::{DataplaneHealth, Report},
};

/// What migrations are judged against.
#[derive(Clone, Debug)]
pub struct Criteria {
    /// The endpoints the targets published.
    pub endpoints: Vec<Endpoint>,
    /// The migration network's CIDRs and VLAN, and whether traffic is due.
    pub expectations: Expectations,
    pub limits: Limits,
    /// The VM's size; `None`: the data sent is taken for it (assumed).
    pub size: Option<VmSize>,
    /// Milliseconds per throughput interval.
    pub interval_ms: u64,
    /// Assumptions made while reading the inputs.
    pub assumptions: Vec<String>,
}

impl Criteria {
    pub fn new(limits: Limits, interval_ms: u64) -> Criteria {
        Criteria {
            endpoints: Vec::new(),
            expectations: Expectations::default(),
            limits,
            size: None,
            interval_ms,
            assumptions: Vec::new(),
        }
    }

    /// The verdict report on everything `collected` holds.
    pub fn report(&self, collected: &Collected) -> Report {
        let judgement = judge(&Observation {
            table: &collected.table,
            slots: &collected.slots,
            neighbors: &collected.neighbors,
            endpoints: &self.endpoints,
            endpoints_since_ms: 0,
            expectations: &self.expectations,
            limits: &self.limits,
            size: self.size.as_ref(),
            interval_ms: self.interval_ms,
            now_ms: collected.duration.as_millis() as u64,
            phase: Phase::Final,
            health: Some((&collected.stats, collected.events_dropped)),
        });
        let mut assumptions = self.assumptions.clone();
        if self.limits.are_defaults() {
            assumptions.push(
                "budgets: KubeVirt's defaults (completionTimeoutPerGiB 150 s, progressTimeout 150 s); give the \
                 cluster's with the budget flags or its HyperConverged/KubeVirt CR (--config)"
                    .to_string(),
            );
        }
        Report::new(
            judgement,
            &self.limits,
            DataplaneHealth::of(collected),
            assumptions,
        )
    }

    /// The live evaluation of the same criteria.
    pub fn evaluator(&self) -> Evaluator {
        Evaluator::new(
            self.endpoints.clone(),
            self.limits.clone(),
            self.size.clone(),
            self.expectations.clone(),
            self.interval_ms,
        )
    }
}

/// The data plane, attached.
pub struct Session {
    dataplane: Dataplane,
}

impl Session {
    /// Loads the programs, gives them the migration network's CIDRs and
    /// attaches to every interface.
    pub fn start(ifaces: &[AttachSpec], cidrs: &[Cidr]) -> Result<Session, DataplaneError> {
        let mut dataplane = Dataplane::load()?;
        for cidr in cidrs {
            dataplane.add_cidr(*cidr)?;
        }
        dataplane.attach_all(ifaces)?;
        Ok(Session { dataplane })
    }

    pub fn dataplane(&self) -> &Dataplane {
        &self.dataplane
    }

    /// Detaches now (dropping the session does it too, however it ends).
    pub fn detach(mut self) {
        self.dataplane.detach_all();
    }

    /// Collects until `stop` resolves or `on_tick` returns true (see
    /// [`collect`]); endpoints may arrive through `requests` meanwhile.
    pub async fn collect(
        &mut self,
        endpoints: &[Endpoint],
        interval: Duration,
        requests: mpsc::Receiver<Request>,
        stop: impl Future<Output = ()>,
        on_tick: impl FnMut(&Tick) -> bool,
    ) -> Result<Collected, DataplaneError> {
        collect(
            &mut self.dataplane,
            endpoints,
            interval,
            requests,
            stop,
            on_tick,
        )
        .await
    }
}
