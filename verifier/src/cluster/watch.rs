//! Watches filtered on the server, so an agent on one node receives only
//! what concerns that node however large the cluster: the VMIs KubeVirt
//! labels with the node (as virt-handler itself selects them), and the
//! node's virt-handler pod.
//!
//! kube's watcher lists once (from the API server's watch cache,
//! `resourceVersion=0`, so a DaemonSet starting on every node does not
//! storm etcd), then watches from that version, re-lists only when the
//! server says the version is gone, and backs off exponentially (with
//! jitter) on errors. Objects are handed on as they come; nothing is cached
//! here.

use futures_util::{stream::BoxStream, StreamExt as _};
use kube::{
    runtime::{watcher, WatchStreamExt as _},
    Client,
};
use serde_json::Value;

use super::{objects::Resource, ClusterError};

/// KubeVirt's label of the node a VMI runs on.
pub const NODE_LABEL: &str = "kubevirt.io/nodeName";
/// KubeVirt's label of the node a VMI is migrating to, set while the target
/// prepares (the label virt-handler on the target watches for).
pub const TARGET_NODE_LABEL: &str = "kubevirt.io/migrationTargetNodeName";

/// An object that appeared or changed, or left the selection (deleted, or
/// no longer matching it: the last state is given).
#[derive(Debug)]
pub enum Change {
    Applied(Value),
    Deleted(Value),
}

/// One filtered watch of `resource` as a stream of changes; errors come
/// through (for the log) and the watch goes on after a backoff.
pub fn watch(
    client: &Client,
    resource: Resource,
    namespace: Option<&str>,
    labels: Option<&str>,
    fields: Option<&str>,
) -> BoxStream<'static, Result<Change, ClusterError>> {
    let mut config = watcher::Config::default().any_semantic();
    // Without a page limit, so kube keeps `resourceVersion=0` and the API
    // server answers from its watch cache rather than etcd; the label
    // selection keeps the answer to this node's objects.
    config.page_size = None;
    if let Some(labels) = labels {
        config = config.labels(labels);
    }
    if let Some(fields) = fields {
        config = config.fields(fields);
    }
    let what = format!(
        "watching {}{}",
        resource.name(),
        labels.map(|l| format!(" ({l})")).unwrap_or_default()
    );
    watcher(resource.api(client, namespace), config)
        .default_backoff()
        .filter_map(move |event| {
            let result = match event {
                Ok(watcher::Event::Apply(o) | watcher::Event::InitApply(o)) => {
                    Some(Ok(Change::Applied(resource.to_json(&o))))
                }
                Ok(watcher::Event::Delete(o)) => Some(Ok(Change::Deleted(resource.to_json(&o)))),
                Ok(watcher::Event::Init | watcher::Event::InitDone) => None,
                Err(error) => Some(Err(ClusterError::Api {
                    what: what.clone(),
                    message: error.to_string(),
                })),
            };
            std::future::ready(result)
        })
        .boxed()
}

/// The VMIs running on `node` or migrating to it: two label-selected
/// watches, merged. A VMI migrating between two nodes is in the first for
/// the source's agent and in the second for the target's.
pub fn vmis_of_node(
    client: &Client,
    node: &str,
) -> BoxStream<'static, Result<Change, ClusterError>> {
    let running = format!("{NODE_LABEL}={node}");
    let arriving = format!("{TARGET_NODE_LABEL}={node}");
    futures_util::stream::select(
        watch(client, super::objects::VMI, None, Some(&running), None),
        watch(client, super::objects::VMI, None, Some(&arriving), None),
    )
    .boxed()
}

/// The virt-handler pod(s) on `node`: pods matching `selector` whose
/// `spec.nodeName` is the node (a field the API filters on).
pub fn virt_handler_pods(
    client: &Client,
    node: &str,
    namespace: Option<&str>,
    selector: &str,
) -> BoxStream<'static, Result<Change, ClusterError>> {
    watch(
        client,
        super::objects::POD,
        namespace,
        Some(selector),
        Some(&format!("spec.nodeName={node}")),
    )
}
