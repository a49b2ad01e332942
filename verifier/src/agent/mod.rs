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

mod epoch;
mod events;
mod handler;
pub mod netns;
pub mod tracker;
pub mod verdict;

use std::{cell::Cell, collections::HashMap, collections::HashSet, rc::Rc, time::Duration};

use futures_util::StreamExt as _;
use kube::Client;
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
};

use self::{
    epoch::Epoch,
    handler::{find_handler, watch_handler},
    tracker::Tracker,
};
use crate::{
    cluster::{
        objects,
        watch::{vmis_of_node, Change},
    },
    config::Cidr,
    dataplane::{AttachSpec, Netns, Role},
    flows::Request,
    intent::{self, Limits},
    measure::{judge::Expectations, live::Evaluator},
    metrics::{
        auth::{AuthOptions, Guard},
        Access, Exposition, Metrics,
    },
    session::Session,
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
    /// The kernel hook the observers attach with.
    pub hooks: crate::dataplane::Hooks,
    pub metrics: Option<std::net::TcpListener>,
    /// Whether and how the metrics endpoint authenticates its callers.
    pub metrics_auth: AuthOptions,
    /// How long a finished migration's series stay.
    pub metrics_retention: Duration,
}

/// Open metrics, or TLS with callers the API authorizes.
fn metrics_access(client: &Client, options: &AuthOptions) -> anyhow::Result<Access> {
    if !options.metrics_auth {
        return Ok(Access::Open);
    }
    // The certificate names the pod's own addresses (known here, at start).
    let addresses = crate::netbench::local_addresses();
    Ok(Access::Guarded {
        tls: tokio_rustls::TlsAcceptor::from(options.tls(&addresses)?),
        guard: Guard::new(client.clone()),
    })
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
        let access = metrics_access(&client, &settings.metrics_auth)?;
        let scheme = match access {
            Access::Open => "http",
            Access::Guarded { .. } => "https (bearer tokens the API authorizes for GET /metrics)",
        };
        log(&format!(
            "metrics at {scheme}://{}/metrics",
            listener.local_addr()?
        ));
        tokio::spawn(crate::metrics::serve(listener, page.clone(), access));
    }
    let mut metrics = Metrics::with_retention(settings.metrics_retention);
    let mut epoch = 0u32;
    loop {
        page.set(crate::metrics::agent_page(false, None));
        let Some((handler, found)) = find_handler(&mut handlers, &mut shutdown).await else {
            break;
        };
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
        let mut session = match Session::start(&specs, &cidrs, settings.hooks) {
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
                        bulk_transfer: false,
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
