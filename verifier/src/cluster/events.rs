//! Verdicts as Kubernetes Events on the migration object, where `kubectl
//! describe vmim` and every event pipeline already look.

use k8s_openapi::{
    api::core::v1::{Event, EventSource, ObjectReference},
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time},
    jiff::Timestamp,
};
use kube::{api::PostParams, Api, Client};

use super::ClusterError;

/// Who reports: Events carry it as their source and reporting component.
pub const COMPONENT: &str = "migverify-agent";

/// The API server refuses longer messages on some versions; Events are
/// meant to be read at a glance anyway.
const MESSAGE_MAX: usize = 1024;

/// The object an Event is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Involved {
    pub api_version: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// Normal or Warning, the two types Kubernetes knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Posts a core/v1 Event about `involved` in its namespace; returns the
/// Event's name.
pub async fn post(
    client: &Client,
    involved: &Involved,
    event_type: EventType,
    reason: &str,
    message: &str,
    node: &str,
) -> Result<String, ClusterError> {
    let now = Timestamp::now();
    // As client-go names them: the object's name and a unique suffix.
    let name = format!("{}.{:x}", involved.name, now.as_nanosecond());
    let mut message = message.to_string();
    if message.len() > MESSAGE_MAX {
        let mut cut = MESSAGE_MAX - 3;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push_str("...");
    }
    let event = Event {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(involved.namespace.clone()),
            ..ObjectMeta::default()
        },
        involved_object: ObjectReference {
            api_version: Some(involved.api_version.clone()),
            kind: Some(involved.kind.clone()),
            name: Some(involved.name.clone()),
            namespace: Some(involved.namespace.clone()),
            uid: Some(involved.uid.clone()),
            ..ObjectReference::default()
        },
        reason: Some(reason.to_string()),
        message: Some(message),
        type_: Some(event_type.as_str().to_string()),
        action: Some("VerifyMigrationNetwork".to_string()),
        count: Some(1),
        first_timestamp: Some(Time(now)),
        last_timestamp: Some(Time(now)),
        source: Some(EventSource {
            component: Some(COMPONENT.to_string()),
            host: Some(node.to_string()),
        }),
        reporting_component: Some(COMPONENT.to_string()),
        reporting_instance: Some(node.to_string()),
        ..Event::default()
    };
    Api::<Event>::namespaced(client.clone(), &involved.namespace)
        .create(&PostParams::default(), &event)
        .await
        .map_err(|e| {
            ClusterError::api(
                format!(
                    "posting Event {reason} on {} {}/{}",
                    involved.kind, involved.namespace, involved.name
                ),
                e,
            )
        })?;
    Ok(name)
}
