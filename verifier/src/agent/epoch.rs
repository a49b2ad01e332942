//! One attachment epoch's bookkeeping, around the collector: endpoints
//! into the kernel as the VMIs publish them, finished migrations out of the
//! collector and judged, the metrics page brought up to date.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, SystemTime},
};

use kube::Client;
use serde_json::json;
use tokio::{
    sync::{mpsc, oneshot},
    task::JoinSet,
};

use super::{
    events::{humantime, post_event},
    log,
    tracker::{self, Action, Tracker},
    verdict, IDLE_END, SETTLE,
};
use crate::{
    cluster::watch::Change,
    config::{Cidr, Endpoint},
    flows::{Collected, FlowTable, Request},
    intent::{Ended, Limits},
    measure::{judge::Expectations, live::Evaluator},
    metrics::{Exposition, Metrics},
    session::Criteria,
};

/// Endpoints sent to the collector for a migration, and its answer to come.
pub(super) type PendingLoad = (String, Vec<Endpoint>, oneshot::Receiver<Result<(), String>>);

/// One attachment epoch's bookkeeping, around the collector.
pub(super) struct Epoch<'a> {
    pub(super) node: &'a str,
    pub(super) cidrs: &'a [Cidr],
    pub(super) vlan: Option<u16>,
    pub(super) budget: &'a Limits,
    /// What the cluster's configuration left out and was assumed.
    pub(super) assumptions: &'a [String],
    pub(super) interval_ms: u64,
    pub(super) epoch: u32,
    pub(super) pending_loads: Vec<PendingLoad>,
    pub(super) pending_takes: HashMap<String, oneshot::Receiver<Result<FlowTable, String>>>,
    /// When each migration's connections were all seen closed.
    pub(super) closed_since: HashMap<String, Duration>,
    pub(super) evaluator: Option<Evaluator>,
    pub(super) last_metrics: Option<Duration>,
}

impl Epoch<'_> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn tick(
        &mut self,
        tick: &crate::flows::Tick,
        tracker: &mut Tracker,
        vmis: &mut mpsc::Receiver<Change>,
        requests: &mpsc::Sender<Request>,
        client: &Client,
        posts: &mut JoinSet<()>,
        page: &Exposition,
        metrics: &mut Metrics,
    ) {
        // Endpoints the kernel now has.
        self.pending_loads
            .retain_mut(|(key, endpoints, reply)| match reply.try_recv() {
                Ok(Ok(())) => {
                    log(&format!(
                        "endpoints of {key} loaded: {}",
                        endpoints
                            .iter()
                            .map(|e| format!("{} ({})", e.addr, e.channel))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                    false
                }
                Ok(Err(error)) => {
                    log(&format!("loading the endpoints of {key}: {error}"));
                    false
                }
                Err(oneshot::error::TryRecvError::Empty) => true,
                Err(oneshot::error::TryRecvError::Closed) => false,
            });
        // What the API said since the last tick.
        let mut changed = false;
        while let Ok(change) = vmis.try_recv() {
            for action in tracker.apply(change, tick.at) {
                match action {
                    Action::Note(text) => log(&text),
                    Action::Load { key, endpoints } => {
                        changed = true;
                        let (reply, answer) = oneshot::channel();
                        match requests.try_send(Request::Load(endpoints.clone(), reply)) {
                            Ok(()) => self.pending_loads.push((key, endpoints, answer)),
                            Err(error) => log(&format!("loading the endpoints of {key}: {error}")),
                        }
                    }
                }
            }
        }
        if changed {
            if let Some(evaluator) = self.evaluator.as_mut() {
                evaluator.set_endpoints(tracker.endpoints(), tick.at.as_millis() as u64);
            }
        }
        // Migrations that ended (or went quiet): their connections, out of
        // the collector, to be judged.
        for (key, migration) in &tracker.migrations {
            if self.pending_takes.contains_key(key) {
                continue;
            }
            let servers: HashSet<_> = migration.endpoints.iter().map(|e| e.addr).collect();
            let connections: Vec<_> = tick
                .table
                .connections()
                .filter(|c| servers.contains(&c.key.server))
                .collect();
            let all_closed = !connections.is_empty()
                && connections
                    .iter()
                    .all(|c| matches!(c.state(), "closed" | "reset"));
            let ready = match migration.ended {
                Some((at, _)) => all_closed || tick.at.saturating_sub(at) >= SETTLE,
                None => {
                    if all_closed {
                        let since = *self.closed_since.entry(key.clone()).or_insert(tick.at);
                        tick.at.saturating_sub(since) >= IDLE_END
                    } else {
                        self.closed_since.remove(key);
                        false
                    }
                }
            };
            if ready {
                let (reply, answer) = oneshot::channel();
                if requests
                    .try_send(Request::Take(migration.endpoints.clone(), reply))
                    .is_ok()
                {
                    self.pending_takes.insert(key.clone(), answer);
                }
            }
        }
        let taken: Vec<(String, Result<FlowTable, String>)> = self
            .pending_takes
            .iter_mut()
            .filter_map(|(key, reply)| match reply.try_recv() {
                Ok(result) => Some((key.clone(), result)),
                Err(oneshot::error::TryRecvError::Empty) => None,
                Err(oneshot::error::TryRecvError::Closed) => {
                    Some((key.clone(), Err("the collector stopped".into())))
                }
            })
            .collect();
        for (key, result) in taken {
            self.pending_takes.remove(&key);
            self.closed_since.remove(&key);
            if tracker
                .migrations
                .get(&key)
                .is_some_and(|m| m.ended.is_none())
            {
                tracker.idle(&key, tick.at);
            }
            match result {
                Ok(table) => self.judge(&key, table, tick, tracker, client, posts),
                Err(error) => log(&format!("taking the connections of {key}: {error}")),
            }
            tracker.judged(&key);
        }
        if let Some(evaluator) = self.evaluator.as_mut() {
            if self
                .last_metrics
                .is_none_or(|last| tick.at >= last + crate::metrics::REFRESH)
            {
                self.last_metrics = Some(tick.at);
                let snapshot = evaluator.evaluate_tick(tick);
                let rendered = metrics.render(&snapshot, tick);
                page.set(crate::metrics::agent_page(true, Some(rendered)));
            }
        }
    }

    /// Judges one migration from its connections, prints the report and
    /// posts the Event.
    fn judge(
        &self,
        key: &str,
        table: FlowTable,
        tick: &crate::flows::Tick,
        tracker: &Tracker,
        client: &Client,
        posts: &mut JoinSet<()>,
    ) {
        let Some(migration) = tracker.migrations.get(key).cloned() else {
            return;
        };
        let (_, outcome) = migration.ended.unwrap_or((tick.at, tracker::Outcome::Idle));
        let collected = Collected {
            table,
            slots: tick.slots.to_vec(),
            events: Vec::new(),
            events_dropped: tick.events_dropped,
            stats: tick.dataplane.stats().unwrap_or_default(),
            endpoints: migration.endpoints.iter().map(|e| e.addr).collect(),
            duration: tick.at,
            started_at: SystemTime::now() - tick.at,
            neighbors: tick.dataplane.neighbors().unwrap_or_default(),
        };
        let mut assumptions = vec![format!(
            "the view of {} ({} of the migration, attachment epoch {}): what crossed this node's interfaces",
            self.node,
            migration.side.as_str(),
            self.epoch
        )];
        if self.epoch > 1 {
            assumptions.push("virt-handler changed during this agent's life: a migration in flight then is seen from the new attachment on".into());
        }
        assumptions.extend_from_slice(self.assumptions);
        let mut criteria = Criteria::new(self.budget.clone(), self.interval_ms);
        criteria.endpoints = migration.endpoints.clone();
        criteria.expectations = Expectations {
            cidrs: self.cidrs.to_vec(),
            vlan: self.vlan,
            expect_traffic: !migration.endpoints.is_empty(),
            bulk_transfer: false,
        };
        criteria.size = migration.size.clone();
        criteria.assumptions = assumptions;
        // What the API said of how it ended: the wire cannot tell.
        let ended = match outcome {
            tracker::Outcome::Completed => Some(Ended::Completed),
            tracker::Outcome::Failed => Some(Ended::Failed),
            tracker::Outcome::Left | tracker::Outcome::Idle => None,
        };
        criteria.ended.extend(ended.map(|e| (migration.id(), e)));
        let report = criteria.report(&collected);
        let (event_type, reason, message) = verdict::event(&report, &migration, outcome, self.node);
        println!(
            "{}",
            json!({
                "kind": "verdict",
                "time": humantime(SystemTime::now()),
                "node": self.node,
                "vmi": migration.id(),
                "migration_uid": migration.migration_uid,
                "side": migration.side.as_str(),
                "outcome": outcome.as_str(),
                "event": { "type": event_type.as_str(), "reason": reason, "message": message },
                "report": report,
            })
        );
        let (client, node) = (client.clone(), self.node.to_string());
        posts.spawn(async move {
            post_event(&client, &migration, event_type, reason, &message, &node).await;
        });
    }
}
