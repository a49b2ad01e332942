//! Observe and judge: the data plane loaded with the migration network's
//! CIDRs and attached to the interfaces, collecting while migrations run,
//! then what it saw judged against what was expected. `verify`, `watch`,
//! `flows`, `bench run`, the lab and the agent all observe through here.

use std::{collections::BTreeMap, time::Duration};

use crate::{
    config::{Cidr, Endpoint},
    flows::{Collected, FlowTable},
    intent::{Ended, Intent, Limits, VmSize},
    measure::{
        judge::{judge, Expectations, Observation, Phase},
        live::Evaluator,
        migration::group,
    },
    report::{DataplaneHealth, Place, Report},
};
#[cfg(feature = "dataplane")]
use crate::{
    dataplane::{AttachSpec, Dataplane, DataplaneError, Hooks},
    discovery::Discovery,
    flows::{collect, Request, Tick},
};

/// What migrations are judged against.
#[derive(Clone, Debug)]
pub struct Criteria {
    /// The endpoints the targets published.
    pub endpoints: Vec<Endpoint>,
    /// The migration network's CIDRs and VLAN, and whether traffic is due.
    pub expectations: Expectations,
    pub limits: Limits,
    /// Every migration's size (a flag); `None`: each VMI's own from
    /// `sizes`, else the data sent is taken for it (assumed).
    pub size: Option<VmSize>,
    /// Each VMI's size, by the migration id its endpoints carry.
    pub sizes: BTreeMap<String, VmSize>,
    /// How migrations ended, by id, where whoever ran them said.
    pub ended: BTreeMap<String, Ended>,
    /// Milliseconds per throughput interval.
    pub interval_ms: u64,
    /// Assumptions made while reading the inputs.
    pub assumptions: Vec<String>,
    /// Which node each observed namespace is on, when known.
    pub places: Vec<Place>,
}

impl Criteria {
    pub fn new(limits: Limits, interval_ms: u64) -> Criteria {
        Criteria {
            endpoints: Vec::new(),
            expectations: Expectations::default(),
            limits,
            size: None,
            sizes: BTreeMap::new(),
            ended: BTreeMap::new(),
            interval_ms,
            assumptions: Vec::new(),
            places: Vec::new(),
        }
    }

    /// The criteria from flags first, then the cluster's objects, then
    /// KubeVirt's defaults: the limits the flags give, else the objects';
    /// the CIDRs and VLAN given, else the migration NAD's.
    pub fn resolve(
        flag_limits: Option<Limits>,
        intent: Intent,
        cidrs: &[Cidr],
        vlan: Option<u16>,
        endpoints: Vec<Endpoint>,
        size: Option<VmSize>,
        interval_ms: u64,
    ) -> Criteria {
        let (limits, assumptions) = match (flag_limits, intent.limits) {
            (Some(flags), _) => (flags, Vec::new()),
            (None, Some(objects)) => (objects, intent.assumptions),
            (None, None) => (Limits::default(), Vec::new()),
        };
        let network = intent.network.as_ref();
        Criteria {
            expectations: Expectations {
                cidrs: if cidrs.is_empty() {
                    network.map(|n| n.ranges().to_vec()).unwrap_or_default()
                } else {
                    cidrs.to_vec()
                },
                vlan: vlan.or(network.and_then(|n| n.vlan)),
                expect_traffic: !endpoints.is_empty(),
                bulk_transfer: false,
            },
            endpoints,
            limits,
            size,
            sizes: BTreeMap::new(),
            ended: BTreeMap::new(),
            interval_ms,
            assumptions,
            places: Vec::new(),
        }
    }

    /// What discovery found, where no flag or manifest said: migration0's
    /// own prefixes as the migration network, the VLAN on its bridge port.
    /// Each is an assumption of the report; returned to be said.
    #[cfg(feature = "dataplane")]
    pub fn adopt(&mut self, found: Option<&Discovery>) -> Vec<String> {
        let Some(found) = found else {
            return Vec::new();
        };
        self.places = found.places.clone();
        let mut said = Vec::new();
        if self.expectations.cidrs.is_empty() && !found.cidrs.is_empty() {
            self.expectations.cidrs = found.cidrs.clone();
            let cidrs: Vec<String> = found.cidrs.iter().map(ToString::to_string).collect();
            said.push(format!(
                "migration CIDR {}: migration0's own address prefix (no --cidr or --config gave one)",
                cidrs.join(", ")
            ));
        }
        if self.expectations.vlan.is_none() && found.vlan.is_some() {
            self.expectations.vlan = found.vlan;
            said.push(format!(
                "migration VLAN {}: the VLAN of migration0's bridge port (no --vlan or --config gave one)",
                found.vlan.unwrap_or_default()
            ));
        }
        self.assumptions.extend(said.iter().cloned());
        said
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
            sizes: &self.sizes,
            ended: &self.ended,
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
        let mut report = Report::new(
            judgement,
            &self.limits,
            DataplaneHealth::of(collected),
            assumptions,
        );
        report.started_at = Some(collected.started_at);
        report.places = self.places.clone();
        report
    }

    /// The live evaluation of the same criteria.
    pub fn evaluator(&self) -> Evaluator {
        let mut evaluator = Evaluator::new(
            self.endpoints.clone(),
            self.limits.clone(),
            self.size.clone(),
            self.expectations.clone(),
            self.interval_ms,
        );
        evaluator.sizes = self.sizes.clone();
        evaluator.ended = self.ended.clone();
        evaluator
    }
}

/// The data plane, attached.
#[cfg(feature = "dataplane")]
pub struct Session {
    dataplane: Dataplane,
}

#[cfg(feature = "dataplane")]
impl Session {
    /// Loads the programs, gives them the migration network's CIDRs and
    /// attaches to every interface.
    pub fn start(
        ifaces: &[AttachSpec],
        cidrs: &[Cidr],
        hooks: Hooks,
    ) -> Result<Session, DataplaneError> {
        let mut dataplane = Dataplane::load()?;
        dataplane.set_hooks(hooks);
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
        requests: tokio::sync::mpsc::Receiver<Request>,
        stop: impl std::future::Future<Output = ()>,
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

/// When to stop waiting for migrations.
pub struct StopRule {
    migrations: Option<usize>,
    idle: Duration,
    last_payload: u64,
    last_progress: Option<Duration>,
}

impl StopRule {
    /// Stop once `migrations` have completed, or once the payload has not
    /// moved for `idle` after it first did.
    pub fn new(migrations: Option<usize>, idle: Duration) -> StopRule {
        StopRule {
            migrations,
            idle,
            last_payload: 0,
            last_progress: None,
        }
    }

    pub fn done(&mut self, table: &FlowTable, endpoints: &[Endpoint], at: Duration) -> bool {
        let payload: u64 = table.connections().map(|c| c.payload_bytes()).sum();
        if payload > self.last_payload {
            self.last_payload = payload;
            self.last_progress = Some(at);
        }
        if let Some(wanted) = self.migrations {
            let completed = group(table, endpoints)
                .iter()
                .filter(|g| {
                    g.connections
                        .iter()
                        .all(|c| c.payload_bytes() > 0 && c.state() == "closed")
                })
                .count();
            if completed >= wanted {
                return true;
            }
        }
        self.last_progress
            .is_some_and(|last| at.saturating_sub(last) >= self.idle)
    }
}

/// Resolves after `duration` (never without one), on Ctrl-C (SIGINT) or
/// on SIGTERM, whichever comes first.
pub async fn stop_after(duration: Option<Duration>) {
    let deadline = async {
        match duration {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    let terminated = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = deadline => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = terminated => {}
    }
}
