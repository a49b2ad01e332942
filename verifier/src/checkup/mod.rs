//! `migverify checkup`: the network benchmark between two nodes' migration
//! networks as a kiagnose-style checkup. A Job runs it with a ConfigMap
//! that says what to measure (`spec.*`, [`config`]); it starts `bench serve`
//! in a pod on the target node and `bench run` in a pod on the source node,
//! both attached to the migration NetworkAttachmentDefinition as
//! virt-handler is ([`pods`]), reads the client's JSON report from its log,
//! and writes `status.*` back into the ConfigMap ([`status`]). The bench
//! itself is `migverify bench` (crate::netbench): the checkup only places
//! its two ends and reads its answers.

pub mod config;
pub mod pods;
pub mod status;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::{
    api::{DeleteParams, LogParams, Patch, PatchParams, PostParams},
    Api, Client,
};
use serde_json::{json, Value};

use crate::cluster::{api_message, not_found, objects};

use self::{
    config::Config,
    pods::{Context, Progress, Role},
    status::Outcome,
};

/// The ConfigMap a checkup runs for.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    pub namespace: String,
}

/// Who runs the checkup: its own pod (owner of the bench pods, and the
/// image they run unless `image` says otherwise).
#[derive(Clone, Debug, Default)]
pub struct Identity {
    pub pod_name: Option<String>,
    pub pod_uid: Option<String>,
    pub image: Option<String>,
}

/// How often pods are looked at while waiting.
const POLL: Duration = Duration::from_millis(500);

/// What the checkup wrote, for the command line.
#[derive(Debug, Clone)]
pub struct Written {
    pub succeeded: bool,
    pub data: BTreeMap<String, String>,
}

/// Errors that leave no status behind: the ConfigMap cannot be read or written.
#[derive(Debug, thiserror::Error)]
#[error("ConfigMap {namespace}/{name}: {message}")]
pub struct ConfigMapError {
    pub namespace: String,
    pub name: String,
    pub message: String,
}

/// Now, as Kubernetes writes times (RFC 3339, UTC, seconds).
fn timestamp() -> String {
    k8s_openapi::jiff::Timestamp::now()
        .round(k8s_openapi::jiff::Unit::Second)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| k8s_openapi::jiff::Timestamp::now().to_string())
}

/// Runs one checkup: reads the ConfigMap, marks the start, runs the bench
/// pods, writes the status. A bad field, a missing NAD, a pod that never
/// starts, an unreachable server or a timeout end as `succeeded: false`
/// with a `failureReason`; only a ConfigMap that cannot be read or written
/// is an `Err`.
pub async fn run(
    client: Client,
    target: &Target,
    identity: &Identity,
) -> Result<Written, ConfigMapError> {
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &target.namespace);
    let cm_error = |message: String| ConfigMapError {
        namespace: target.namespace.clone(),
        name: target.name.clone(),
        message,
    };
    let current = configmaps
        .get(&target.name)
        .await
        .map_err(|e| cm_error(format!("reading: {}", api_message(&e))))?;
    let data = current.data.unwrap_or_default();
    let started = BTreeMap::from([(status::START.to_string(), timestamp())]);
    write(&configmaps, &target.name, status::changes(&data, &started))
        .await
        .map_err(cm_error)?;
    eprintln!(
        "migverify: checkup {}/{} started",
        target.namespace, target.name
    );

    let mut result = BTreeMap::new();
    let outcome = match Config::parse(&data, &target.namespace) {
        Err(e) => Err(e.to_string()),
        Ok(config) => {
            result.insert("sourceNode".to_string(), config.source_node.clone());
            result.insert("targetNode".to_string(), config.target_node.clone());
            let last = Arc::new(Mutex::new(String::from("starting")));
            let ctx = Context {
                configmap: target.name.clone(),
                namespace: target.namespace.clone(),
                image: String::new(),
                owner: identity.pod_name.clone().zip(identity.pod_uid.clone()),
                token: token(),
            };
            let pods: Api<Pod> = Api::namespaced(client.clone(), &target.namespace);
            let outcome = match tokio::time::timeout(
                config.timeout,
                execute(&client, &pods, ctx.clone(), &config, identity, &last),
            )
            .await
            {
                Ok(outcome) => outcome,
                Err(_) => Err(format!(
                    "spec.timeout: {:?} passed before the checkup finished; last: {}",
                    data.get(config::TIMEOUT)
                        .map(|s| s.trim())
                        .unwrap_or_default(),
                    last.lock().unwrap()
                )),
            };
            for role in [Role::Client, Role::Server] {
                let name = ctx.pod_name(role);
                match pods
                    .delete(&name, &DeleteParams::default().grace_period(0))
                    .await
                {
                    Ok(_) => {}
                    Err(e) if not_found(&e) => {}
                    Err(e) => eprintln!("migverify: removing pod {name}: {}", api_message(&e)),
                }
            }
            outcome
        }
    };
    let mut now = started;
    now.insert(status::COMPLETION.into(), timestamp());
    let succeeded = match outcome {
        Ok(Outcome {
            result: figures,
            succeeded,
            failure_reason,
        }) => {
            result.extend(figures);
            now.insert(status::FAILURE_REASON.into(), failure_reason);
            succeeded
        }
        Err(reason) => {
            now.insert(status::FAILURE_REASON.into(), reason);
            false
        }
    };
    now.insert(status::SUCCEEDED.into(), succeeded.to_string());
    for (key, value) in result {
        now.insert(format!("{}{key}", status::RESULT_PREFIX), value);
    }
    write(&configmaps, &target.name, status::changes(&data, &now))
        .await
        .map_err(cm_error)?;
    Ok(Written {
        succeeded,
        data: now,
    })
}

/// A merge patch of `data`: values set, `None` removed.
async fn write(
    configmaps: &Api<ConfigMap>,
    name: &str,
    changes: BTreeMap<String, Option<String>>,
) -> Result<(), String> {
    let patch = json!({ "data": changes });
    configmaps
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| format!("writing the status: {}", api_message(&e)))
}

/// A random token (hex) both bench ends present, so that strays cannot
/// feed the server.
fn token() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 16];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        bytes = seed.to_le_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The checkup proper, within the timeout: NAD, image, leftovers, server,
/// client, report.
async fn execute(
    client: &Client,
    pods: &Api<Pod>,
    mut ctx: Context,
    config: &Config,
    identity: &Identity,
    last: &Mutex<String>,
) -> Result<Outcome, String> {
    let say = |what: String| {
        eprintln!("migverify: checkup: {what}");
        *last.lock().unwrap() = what;
    };
    // The migration network must exist: a clear reason beats a pod stuck
    // in ContainerCreating.
    let nads = objects::NAD.api(client, Some(&config.nad_namespace));
    match nads.get(&config.nad_name).await {
        Ok(_) => {}
        Err(e) if not_found(&e) => {
            return Err(format!(
                "{}: NetworkAttachmentDefinition {}/{} not found",
                config::NAD_NAME,
                config.nad_namespace,
                config.nad_name
            ))
        }
        Err(e) => {
            return Err(format!(
                "{}: reading NetworkAttachmentDefinition {}/{}: {}",
                config::NAD_NAME,
                config.nad_namespace,
                config.nad_name,
                api_message(&e)
            ))
        }
    }
    ctx.image = image(pods, identity).await?;

    for role in [Role::Server, Role::Client] {
        remove_leftover(pods, &ctx.pod_name(role)).await?;
    }
    say(format!(
        "starting the bench server on {} ({}/{} as {})",
        config.target_node,
        config.nad_namespace,
        config.nad_name,
        pods::INTERFACE
    ));
    let server = create(pods, &pods::server(&ctx, config)).await?;
    let (server_pod, _) = wait(pods, &server, last, |p| match pods::progress(p) {
        Progress::Ready => Some(Ok(())),
        Progress::Ended { detail, .. } => Some(Err(format!(
            "the bench server pod {server} ended: {detail}"
        ))),
        Progress::Stuck(why) => Some(Err(format!("the bench server pod {server}: {why}"))),
        Progress::Pending(_) => None,
    })
    .await?;
    let peer = pods::migration_address(&server_pod, config)
        .map_err(|e| format!("the bench server pod {server}: {e}"))?;
    // The CA the server made at start for its addresses: the client pins it.
    let server_log = pods
        .logs(&server, &LogParams::default())
        .await
        .map_err(|e| format!("reading the bench server's log: {}", api_message(&e)))?;
    let ca = crate::netbench::tls::printed_ca(&server_log).ok_or_else(|| {
        format!("the bench server pod {server} printed no CA for its TLS: {server_log}")
    })?;
    say(format!(
        "bench server ready at {peer} (TLS); starting the client on {} for {:?}",
        config.source_node, config.duration
    ));
    let client_name = create(pods, &pods::client(&ctx, config, peer, &ca)).await?;
    let (_, ended) = wait(pods, &client_name, last, |p| match pods::progress(p) {
        Progress::Ended { succeeded, detail } => Some(Ok((succeeded, detail))),
        Progress::Stuck(why) => Some(Err(format!("the bench client pod {client_name}: {why}"))),
        Progress::Ready | Progress::Pending(_) => None,
    })
    .await?;
    let log = pods
        .logs(&client_name, &LogParams::default())
        .await
        .map_err(|e| format!("reading the bench client's log: {}", api_message(&e)))?;
    let Some(report) = status::report_from_log(&log) else {
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(format!(
            "the bench client pod {client_name} ended with {} and no report: {}",
            ended.1,
            tail.join(" | ")
        ));
    };
    say(format!(
        "bench client ended with {}, verdict {}",
        ended.1,
        report["verdict"].as_str().unwrap_or("?")
    ));
    let mut outcome = status::outcome(&report)?;
    outcome.result.insert(
        "targetAddress".into(),
        std::net::SocketAddr::new(peer, config.port).to_string(),
    );
    Ok(outcome)
}

/// The bench pods' image: given, else the checkup's own pod's.
async fn image(pods: &Api<Pod>, identity: &Identity) -> Result<String, String> {
    if let Some(image) = &identity.image {
        return Ok(image.clone());
    }
    let own = identity.pod_name.as_deref().ok_or(
        "no image for the bench pods: give --image (MIGVERIFY_IMAGE) or run in a pod with POD_NAME set",
    )?;
    let pod = pods.get(own).await.map_err(|e| {
        format!(
            "reading the checkup's own pod {own} for its image: {}",
            api_message(&e)
        )
    })?;
    pod.spec
        .and_then(|s| s.containers.into_iter().next())
        .and_then(|c| c.image)
        .ok_or_else(|| format!("the checkup's own pod {own} names no image"))
}

/// Removes a pod a previous run left behind, and waits until it is gone.
async fn remove_leftover(pods: &Api<Pod>, name: &str) -> Result<(), String> {
    match pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => {
            return Err(format!(
                "removing the leftover pod {name}: {}",
                api_message(&e)
            ))
        }
        Ok(_) => eprintln!("migverify: checkup: removing the leftover pod {name}"),
    }
    loop {
        match pods.get(name).await {
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(format!("reading pod {name}: {}", api_message(&e))),
            Ok(_) => tokio::time::sleep(POLL).await,
        }
    }
}

async fn create(pods: &Api<Pod>, pod: &Pod) -> Result<String, String> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    pods.create(&PostParams::default(), pod)
        .await
        .map_err(|e| format!("creating pod {name}: {}", api_message(&e)))?;
    Ok(name)
}

/// Polls a pod until `done` says something; the latest state goes to `last`
/// (what a timeout reports).
async fn wait<T>(
    pods: &Api<Pod>,
    name: &str,
    last: &Mutex<String>,
    done: impl Fn(&Pod) -> Option<Result<T, String>>,
) -> Result<(Pod, T), String> {
    let mut said = String::new();
    loop {
        let pod = pods
            .get(name)
            .await
            .map_err(|e| format!("reading pod {name}: {}", api_message(&e)))?;
        if let Some(result) = done(&pod) {
            return result.map(|t| (pod, t));
        }
        let word = match pods::progress(&pod) {
            Progress::Pending(w) | Progress::Stuck(w) => w,
            Progress::Ready => "running".into(),
            Progress::Ended { detail, .. } => detail,
        };
        let state = format!("pod {name}: {word}");
        if state != said {
            eprintln!("migverify: checkup: {state}");
            said.clone_from(&state);
            *last.lock().unwrap() = state;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The status a checkup wrote, as text for the terminal.
pub fn text(data: &BTreeMap<String, String>) -> String {
    data.iter()
        .filter(|(k, _)| k.starts_with("status."))
        .map(|(k, v)| format!("{k}: {v}\n"))
        .collect()
}

/// As JSON, for `-o json`.
pub fn json(data: &BTreeMap<String, String>) -> Value {
    Value::Object(
        data.iter()
            .filter(|(k, _)| k.starts_with("status."))
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}
