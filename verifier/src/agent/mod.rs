//! `migverify agent`: a long-running `verify` on one node, fed by the
//! Kubernetes API instead of flags.
//!
//! It finds the node's virt-handler pod through the API and its network
//! namespace through the pod IP ([`netns`]), attaches there (`migration0`,
//! `eth0`) and to the node NICs and bridge the migration NAD names, learns
//! each migration that touches the node from the VMI watch ([`tracker`]) and
//! loads its endpoints as the target publishes them, and when the API says
//! the migration ended judges it as `verify` would, prints the report as a
//! JSON line, and posts the verdict as an Event on the migration object
//! ([`verdict`]). A new virt-handler (a restart, a migration-network
//! change) starts a new attachment epoch: a fresh data plane in the new
//! namespace, with the endpoints of the migrations in flight.

pub mod netns;
pub mod tracker;
pub mod verdict;

use std::{
    cell::Cell,
    collections::{HashMap, HashSet},
    net::IpAddr,
    rc::Rc,
    time::{Duration, SystemTime},
};

use futures_util::StreamExt as _;
use kube::Client;
use serde_json::json;
use tokio::{
    sync::{mpsc, oneshot, watch},
    task::JoinSet,
};

use self::tracker::{Action, Tracker};
use crate::{
    cluster::{
        events::{self, EventType, Involved},
        objects,
        watch::{virt_handler_pods, vmis_of_node, Change},
    },
    config::{Cidr, Endpoint},
    dataplane::{AttachSpec, Netns, Role},
    flows::{Collected, FlowTable, Request},
    intent::{self, Ended, Limits},
    measure::{judge::Expectations, live::Evaluator},
    metrics::{Exposition, Metrics},
    session::{Criteria, Session},
};

/// After the API says a migration ended, how long its last segments (FIN,
/// the final ACKs) get to reach the observers before it is judged.
const SETTLE: Duration = Duration::from_secs(2);
/// A migration whose connections all closed this long ago, with no word
/// from the API, is judged anyway (an update lost in a re-list).
const IDLE_END: Duration = Duration::from_secs(60);
/// How often to look again for a virt-handler namespace not found yet.
const RETRY: Duration = Duration::from_secs(2);
/// Tries per Event, one to four seconds apart.
const EVENT_TRIES: u32 = 4;

/// What the agent is told on the command line.
pub struct Settings {
    pub node: String,
    pub virt_handler_namespace: Option<String>,
    pub virt_handler_selector: String,
    pub migration_iface: String,
    pub primary_iface: String,
    /// The node's own namespace (NICs, bridge); `None`: the agent's.
    pub node_netns: Option<Netns>,
    /// More interfaces to observe.
    pub extra: Vec<AttachSpec>,
    /// Overrides of what the migration NAD says.
    pub cidrs: Vec<Cidr>,
    pub vlan: Option<u16>,
    /// Budget flags; `None`: the cluster's, else KubeVirt's defaults.
    pub budget: Option<Limits>,
    pub interval_ms: u64,
    pub metrics: Option<std::net::TcpListener>,
}

/// virt-handler on this node, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Handler {
    namespace: String,
    name: String,
    uid: String,
    pod_ip: IpAddr,
}

/// What the cluster's configuration says for this agent.
struct FromCluster {
    master: Option<String>,
    bridge: Option<String>,
    cidrs: Vec<Cidr>,
    vlan: Option<u16>,
    limits: Option<Limits>,
    assumptions: Vec<String>,
}

fn log(text: &str) {
    eprintln!("migverify agent: {text}");
}

/// Reads the migration NAD (its master, bridge, range and VLAN) and the
/// budgets from HyperConverged/KubeVirt/MigrationPolicy. Failing that, the
/// agent goes on with flags and KubeVirt's defaults, and says so.
async fn read_cluster(client: &Client) -> FromCluster {
    let mut from = FromCluster {
        master: None,
        bridge: None,
        cidrs: Vec::new(),
        vlan: None,
        limits: None,
        assumptions: Vec::new(),
    };
    let objects = match objects::read_objects(client, &objects::CONFIGURATION, "cluster").await {
        Ok((objects, unserved)) => {
            if !unserved.is_empty() {
                log(&format!(
                    "the cluster does not serve {}",
                    unserved.join(", ")
                ));
            }
            objects
        }
        Err(error) => {
            log(&format!(
                "{error}; going on with the flags and KubeVirt's defaults"
            ));
            return from;
        }
    };
    let intent = intent::read(&objects);
    from.limits = intent.limits;
    from.assumptions = intent.assumptions;
    match &intent.network {
        Some(nad) => {
            log(&format!(
                "migration network: NetworkAttachmentDefinition {} ({}{}{})",
                nad.id(),
                nad.plugin.as_deref().unwrap_or("?"),
                nad.master
                    .as_deref()
                    .map(|m| format!(", master {m}"))
                    .unwrap_or_default(),
                nad.bridge
                    .as_deref()
                    .map(|b| format!(", bridge {b}"))
                    .unwrap_or_default(),
            ));
            from.master = nad.master.clone();
            from.bridge = nad.bridge.clone();
            from.cidrs = nad.ranges().to_vec();
            from.vlan = nad.vlan;
        }
        None => log("no migration network is configured (HyperConverged/KubeVirt name no NAD): migrations use the pod network"),
    }
    from
}

/// The virt-handler pod of this node, kept current from a watch.
fn watch_handler(client: &Client, settings: &Settings) -> watch::Receiver<Option<Handler>> {
    let (tx, rx) = watch::channel(None);
    let mut pods = virt_handler_pods(
        client,
        &settings.node,
        settings.virt_handler_namespace.as_deref(),
        &settings.virt_handler_selector,
    );
    tokio::spawn(async move {
        while let Some(change) = pods.next().await {
            let (pod, deleted) = match change {
                Ok(Change::Applied(pod)) => (pod, false),
                Ok(Change::Deleted(pod)) => (pod, true),
                Err(error) => {
                    log(&error.to_string());
                    continue;
                }
            };
            let text = |pointer: &str| tracker::text(&pod, pointer);
            let uid = text("/metadata/uid");
            let running = text("/status/phase") == "Running"
                && pod["metadata"]["deletionTimestamp"].is_null();
            let ip: Option<IpAddr> = text("/status/podIP").parse().ok();
            tx.send_if_modified(|current| {
                let next = match (deleted, running, ip) {
                    (false, true, Some(pod_ip)) => Some(Handler {
                        namespace: text("/metadata/namespace"),
                        name: text("/metadata/name"),
                        uid: uid.clone(),
                        pod_ip,
                    }),
                    // This pod is going: forget it if it is the one we had.
                    _ if current.as_ref().is_some_and(|h: &Handler| h.uid == uid) => None,
                    _ => return false,
                };
                if *current == next {
                    return false;
                }
                *current = next;
                true
            });
        }
    });
    rx
}

/// The VMI changes of this node, through a bounded channel.
fn watch_vmis(client: &Client, node: &str) -> mpsc::Receiver<Change> {
    let (tx, rx) = mpsc::channel(1024);
    let mut vmis = vmis_of_node(client, node);
    tokio::spawn(async move {
        while let Some(change) = vmis.next().await {
            match change {
                Ok(change) => {
                    if tx.send(change).await.is_err() {
                        return;
                    }
                }
                Err(error) => log(&error.to_string()),
            }
        }
    });
    rx
}

/// What to attach to in this epoch.
fn attach_specs(settings: &Settings, from: &FromCluster, vh: &Netns) -> Vec<AttachSpec> {
    let spec = |role, iface: &str, netns: Option<&Netns>| AttachSpec {
        role,
        iface: iface.to_string(),
        netns: netns.cloned(),
    };
    let mut specs = Vec::new();
    if netns::has_interface(Some(vh), &settings.migration_iface) {
        specs.push(spec(Role::Migration, &settings.migration_iface, Some(vh)));
    } else {
        log(&format!(
            "virt-handler has no {} in {vh}: its migrations fall back to the pod network",
            settings.migration_iface
        ));
    }
    specs.push(spec(Role::Primary, &settings.primary_iface, Some(vh)));
    let node = settings.node_netns.as_ref();
    if let Some(master) = &from.master {
        if netns::has_interface(node, master) {
            specs.push(spec(Role::Migration, master, node));
        } else {
            log(&format!("the NAD's master {master} is not on this node"));
        }
    }
    if let Some(bridge) = &from.bridge {
        if netns::has_interface(node, bridge) {
            specs.push(spec(Role::Bridge, bridge, node));
            for port in netns::bridge_ports(node, bridge).unwrap_or_default() {
                specs.push(spec(Role::Migration, &port, node));
            }
        } else {
            log(&format!("the NAD's bridge {bridge} is not on this node"));
        }
    }
    for extra in &settings.extra {
        specs.push(extra.clone());
    }
    let mut seen = HashSet::new();
    specs.retain(|s| seen.insert((s.iface.clone(), s.netns.as_ref().map(ToString::to_string))));
    specs
}

/// Waits for a virt-handler with a namespace this agent can enter; `None`
/// on shutdown.
async fn find_handler(
    handlers: &mut watch::Receiver<Option<Handler>>,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(Handler, netns::Found)> {
    let mut said = None;
    loop {
        if *shutdown.borrow() {
            return None;
        }
        let current = handlers.borrow_and_update().clone();
        match current {
            Some(handler) => match netns::find_by_address(handler.pod_ip) {
                Some(found) => return Some((handler, found)),
                None if said.as_ref() != Some(&handler) => {
                    log(&format!(
                        "virt-handler {}/{} ({}): no network namespace on this host carries {}; looking again every {} s",
                        handler.namespace, handler.name, handler.uid, handler.pod_ip, RETRY.as_secs()
                    ));
                    said = Some(handler);
                }
                None => {}
            },
            None if said.is_none() => {
                log("waiting for this node's virt-handler pod (Running, with a pod IP)");
                said = Some(Handler {
                    namespace: String::new(),
                    name: String::new(),
                    uid: String::new(),
                    pod_ip: IpAddr::from([0, 0, 0, 0]),
                });
            }
            None => {}
        }
        tokio::select! {
            _ = handlers.changed() => {}
            _ = shutdown.changed() => {}
            _ = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(
    client: Client,
    settings: Settings,
    mut shutdown: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let mut handlers = watch_handler(&client, &settings);
    let mut vmis = watch_vmis(&client, &settings.node);
    let mut tracker = Tracker::new(&settings.node);
    let mut posts = JoinSet::new();
    let page = Exposition::default();
    if let Some(listener) = &settings.metrics {
        let listener = listener.try_clone()?;
        log(&format!(
            "metrics at http://{}/metrics",
            listener.local_addr()?
        ));
        tokio::spawn(crate::metrics::serve(listener, page.clone()));
    }
    let mut metrics = Metrics::new();
    let mut epoch = 0u32;
    while let Some((handler, found)) = find_handler(&mut handlers, &mut shutdown).await {
        epoch += 1;
        log(&format!(
            "virt-handler {}/{} (uid {}, {}) is in network namespace {} (interfaces: {})",
            handler.namespace,
            handler.name,
            handler.uid,
            handler.pod_ip,
            found.netns,
            found.interfaces.join(", ")
        ));
        // Read at every epoch: a migration-network change restarts
        // virt-handler, and the NAD, its range and the budgets may be new.
        let from = read_cluster(&client).await;
        let cidrs = if settings.cidrs.is_empty() {
            from.cidrs.clone()
        } else {
            settings.cidrs.clone()
        };
        let vlan = settings.vlan.or(from.vlan);
        let budget = settings
            .budget
            .clone()
            .or_else(|| from.limits.clone())
            .unwrap_or_default();
        let specs = attach_specs(&settings, &from, &found.netns);
        let mut session = match Session::start(&specs, &cidrs) {
            Ok(session) => session,
            Err(error) => {
                // The namespace may have gone with its pod: look again.
                log(&format!(
                    "attaching: {error}; looking for virt-handler again"
                ));
                tokio::time::sleep(RETRY).await;
                continue;
            }
        };
        for spec in &specs {
            log(&format!("attached to {spec}"));
        }
        let mut epoch_state = Epoch {
            node: &settings.node,
            cidrs: &cidrs,
            vlan,
            budget: &budget,
            assumptions: &from.assumptions,
            interval_ms: settings.interval_ms,
            epoch,
            pending_loads: Vec::new(),
            pending_takes: HashMap::new(),
            closed_since: HashMap::new(),
            evaluator: settings.metrics.as_ref().map(|_| {
                Evaluator::new(
                    tracker.endpoints(),
                    budget.clone(),
                    None,
                    Expectations {
                        cidrs: cidrs.clone(),
                        vlan,
                        expect_traffic: false,
                    },
                    settings.interval_ms,
                )
            }),
            last_metrics: None,
        };
        let (requests, receiver) = mpsc::channel::<Request>(64);
        let stopping = Rc::new(Cell::new(false));
        let stop = {
            let (stopping, mut shutdown, mut handlers) =
                (stopping.clone(), shutdown.clone(), handlers.clone());
            let current = handler.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = shutdown.changed() => if *shutdown.borrow() { stopping.set(true); return },
                        changed = handlers.changed() => {
                            if changed.is_err() || handlers.borrow().as_ref() != Some(&current) {
                                log("virt-handler changed: attaching again");
                                return;
                            }
                        }
                    }
                }
            }
        };
        let initial = tracker.endpoints();
        let result = session
            .collect(
                &initial,
                std::time::Duration::from_millis(settings.interval_ms),
                receiver,
                stop,
                |tick| {
                    epoch_state.tick(
                        tick,
                        &mut tracker,
                        &mut vmis,
                        &requests,
                        &client,
                        &mut posts,
                        &page,
                        &mut metrics,
                    );
                    false
                },
            )
            .await;
        session.detach();
        if let Err(error) = result {
            log(&format!("the data plane: {error}"));
        }
        if stopping.get() {
            break;
        }
    }
    // Events on their way get a few seconds to arrive.
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while posts.join_next().await.is_some() {}
    })
    .await;
    Ok(())
}

/// Endpoints sent to the collector for a migration, and its answer to come.
type PendingLoad = (String, Vec<Endpoint>, oneshot::Receiver<Result<(), String>>);

/// One attachment epoch's bookkeeping, around the collector.
struct Epoch<'a> {
    node: &'a str,
    cidrs: &'a [Cidr],
    vlan: Option<u16>,
    budget: &'a Limits,
    /// What the cluster's configuration left out and was assumed.
    assumptions: &'a [String],
    interval_ms: u64,
    epoch: u32,
    pending_loads: Vec<PendingLoad>,
    pending_takes: HashMap<String, oneshot::Receiver<Result<FlowTable, String>>>,
    /// When each migration's connections were all seen closed.
    closed_since: HashMap<String, Duration>,
    evaluator: Option<Evaluator>,
    last_metrics: Option<Duration>,
}

impl Epoch<'_> {
    #[allow(clippy::too_many_arguments)]
    fn tick(
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
                page.set(metrics.render(&snapshot, tick));
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

/// RFC 3339 UTC, as the rest of migverify's logs.
fn humantime(at: SystemTime) -> String {
    let ts = k8s_openapi::jiff::Timestamp::try_from(at)
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!("{ts:.3}")
}

/// The migration object: the VMIM whose UID the VMI names (KubeVirt labels
/// every VMIM with its VMI's name), else the VMI itself.
async fn involved(client: &Client, migration: &tracker::Migration) -> Involved {
    let labels = format!("kubevirt.io/vmi-name={}", migration.name);
    let vmims = objects::list(
        client,
        &objects::VMIM,
        Some(&migration.namespace),
        Some(&labels),
    )
    .await;
    match vmims {
        Ok(Some(items)) => {
            if let Some(vmim) = items
                .iter()
                .find(|v| v["metadata"]["uid"].as_str() == Some(migration.migration_uid.as_str()))
            {
                return Involved {
                    api_version: objects::VMIM.api_version(),
                    kind: objects::VMIM.kind.into(),
                    namespace: migration.namespace.clone(),
                    name: vmim["metadata"]["name"].as_str().unwrap_or_default().into(),
                    uid: migration.migration_uid.clone(),
                };
            }
            log(&format!(
                "no VirtualMachineInstanceMigration {} for {}: the Event goes on the VMI",
                migration.migration_uid,
                migration.id()
            ));
        }
        Ok(None) => {
            log("the cluster serves no VirtualMachineInstanceMigrations: the Event goes on the VMI")
        }
        Err(error) => log(&format!("{error}: the Event goes on the VMI")),
    }
    Involved {
        api_version: objects::VMI.api_version(),
        kind: objects::VMI.kind.into(),
        namespace: migration.namespace.clone(),
        name: migration.name.clone(),
        uid: migration.vmi_uid.clone(),
    }
}

async fn post_event(
    client: &Client,
    migration: &tracker::Migration,
    event_type: EventType,
    reason: &str,
    message: &str,
    node: &str,
) {
    let involved = involved(client, migration).await;
    let mut wait = Duration::from_secs(1);
    for attempt in 1..=EVENT_TRIES {
        match events::post(client, &involved, event_type, reason, message, node).await {
            Ok(name) => {
                log(&format!(
                    "Event {reason} posted on {} {}/{} ({name})",
                    involved.kind, involved.namespace, involved.name
                ));
                return;
            }
            Err(error) if attempt < EVENT_TRIES => {
                log(&format!("{error}; again in {} s", wait.as_secs()));
                tokio::time::sleep(wait).await;
                wait *= 2;
            }
            Err(error) => log(&format!("{error}; giving up")),
        }
    }
}
