//! The Kubernetes API: a client from a kubeconfig or the pod's service
//! account, the KubeVirt and Multus objects migverify reads, watches of the
//! VMIs and virt-handler pod of one node, and Events posted back.
//!
//! KubeVirt's objects are read as untyped JSON (`DynamicObject`) and handed
//! to the same parsers that read files (`config`, `checks`), so a cluster
//! and `oc get -o json` output are judged by one code path.

pub mod client;
pub mod events;
pub mod objects;
pub mod vmi;
pub mod watch;

pub use self::client::connect;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig { path: String, message: String },
    #[error(
        "no cluster configuration: {0} (give --kubeconfig, set KUBECONFIG, or run in a pod with a service account)"
    )]
    NoConfig(String),
    #[error("the Kubernetes client: {0}")]
    Client(String),
    #[error("{what}: {message}")]
    Api { what: String, message: String },
}

impl ClusterError {
    /// An API call's failure, naming what was asked and the server's answer
    /// (status code and message when there is one).
    pub fn api(what: impl Into<String>, error: kube::Error) -> Self {
        ClusterError::Api {
            what: what.into(),
            message: api_message(&error),
        }
    }
}

/// The server's answer to a failed call: status code, reason and message
/// when there is one.
pub fn api_message(error: &kube::Error) -> String {
    match error {
        kube::Error::Api(status) => format!(
            "{} {} ({})",
            status.code,
            status.reason,
            status.message.trim()
        ),
        other => other.to_string(),
    }
}

/// Whether a call failed because the object (or the kind) does not exist.
pub fn not_found(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 404)
}
