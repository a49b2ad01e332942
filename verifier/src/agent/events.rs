//! The verdict as a core/v1 Event on the migration object, tried again
//! when the API refuses it for a moment.

use std::time::{Duration, SystemTime};

use kube::Client;

use super::{log, tracker, EVENT_TRIES};
use crate::cluster::{
    events::{self, EventType, Involved},
    objects,
};

/// RFC 3339 UTC, as the rest of migverify's logs.
pub(super) fn humantime(at: SystemTime) -> String {
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

pub(super) async fn post_event(
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
