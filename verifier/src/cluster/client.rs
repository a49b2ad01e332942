//! A client for the cluster: from `--kubeconfig`, else as kubectl finds
//! one (KUBECONFIG, ~/.kube/config), else the pod's service account.

use std::path::Path;

use kube::{
    config::{KubeConfigOptions, Kubeconfig},
    Client, Config,
};

use super::ClusterError;

/// Connects to the API server. Nothing is requested yet: the first call
/// says whether the server answers.
pub async fn connect(kubeconfig: Option<&Path>) -> Result<Client, ClusterError> {
    let config = match kubeconfig {
        Some(path) => {
            let bad = |message: String| ClusterError::Kubeconfig {
                path: path.display().to_string(),
                message,
            };
            let file = Kubeconfig::read_from(path).map_err(|e| bad(e.to_string()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|e| bad(e.to_string()))?
        }
        None => Config::infer()
            .await
            .map_err(|e| ClusterError::NoConfig(e.to_string()))?,
    };
    Client::try_from(config).map_err(|e| ClusterError::Client(e.to_string()))
}
