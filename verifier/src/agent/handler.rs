//! This node's virt-handler pod, kept current from a watch, and the wait
//! for one whose network namespace the agent can enter.

use std::net::IpAddr;

use futures_util::StreamExt as _;
use kube::Client;
use tokio::sync::watch;

use super::{log, netns, tracker, Settings, RETRY};
use crate::cluster::watch::{virt_handler_pods, Change};

/// virt-handler on this node, as the API shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Handler {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub pod_ip: IpAddr,
}

/// The virt-handler pod of this node, kept current from a watch.
pub(super) fn watch_handler(
    client: &Client,
    settings: &Settings,
) -> watch::Receiver<Option<Handler>> {
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

/// Waits for a virt-handler with a namespace this agent can enter; `None`
/// on shutdown.
pub(super) async fn find_handler(
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
