//! Who may read the agent's metrics, decided by the Kubernetes API as
//! kube-rbac-proxy decides it, in-process: the caller's bearer token goes
//! to a TokenReview (who is it?), the user it names to a
//! SubjectAccessReview for `get` on the non-resource URL `/metrics` (may
//! it?). The series name VMs and namespaces, so an anonymous scrape is
//! refused. Answers are cached briefly, so a Prometheus scraping every 30 s
//! costs the API two requests a minute, not two per scrape.
//!
//! The endpoint is TLS: a serving certificate from a `kubernetes.io/tls`
//! Secret (`tls.crt`, `tls.key`; OpenShift's service CA makes one from a
//! Service annotation), else one made at start, self-signed, naming the
//! pod's addresses.

use std::{
    collections::HashMap,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use k8s_openapi::api::{
    authentication::v1::{TokenReview, TokenReviewSpec},
    authorization::v1::{NonResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec},
};
use kube::{api::PostParams, Api, Client};
use rustls::pki_types::{pem::PemObject as _, CertificateDer, PrivateKeyDer};

/// How long an answer is reused: a revoked permission stops working
/// within this long.
const ALLOWED_FOR: Duration = Duration::from_secs(60);
const DENIED_FOR: Duration = Duration::from_secs(10);
/// Tokens remembered at most; beyond, the cache starts again (a flood of
/// made-up tokens cannot grow the agent).
const CACHE_CAP: usize = 256;
/// The URL and verb a scraper must be granted (a ClusterRole with
/// `nonResourceURLs: ["/metrics"]`, `verbs: ["get"]`).
pub const PATH: &str = "/metrics";

/// The decision on one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    Allowed,
    /// No token, or one the API does not know: 401.
    Unauthenticated(String),
    /// A known user without the permission: 403.
    Forbidden(String),
}

/// The flags of the authenticated endpoint.
#[derive(Debug, Clone, clap::Args)]
pub struct AuthOptions {
    /// Serve metrics over TLS, to callers whose bearer token the Kubernetes
    /// API authenticates (TokenReview) and authorizes for GET /metrics
    /// (SubjectAccessReview), as kube-rbac-proxy does. /healthz stays open.
    #[arg(long)]
    pub metrics_auth: bool,
    /// The serving certificate for --metrics-auth: tls.crt and tls.key in DIR
    /// (a kubernetes.io/tls Secret). Missing files: one is made at start,
    /// self-signed, for the pod's addresses.
    #[arg(long, value_name = "DIR", requires = "metrics_auth")]
    pub metrics_tls_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("--metrics-tls-dir {dir}: {message}")]
    Credentials { dir: PathBuf, message: String },
    #[error("the metrics endpoint's certificate: {0}")]
    Generate(#[from] crate::pki::PkiError),
    #[error("the metrics endpoint's TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// Asks the API about callers, and remembers the answers for a while.
#[derive(Clone)]
pub struct Guard {
    client: Client,
    cache: Arc<Mutex<HashMap<String, (Decision, Instant)>>>,
}

impl Guard {
    pub fn new(client: Client) -> Self {
        Guard {
            client,
            cache: Arc::default(),
        }
    }

    /// Whether the holder of `token` may read the metrics.
    pub async fn decide(&self, token: Option<&str>) -> Decision {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Decision::Unauthenticated("no bearer token".into());
        };
        if let Some((decision, until)) = self.lock().get(token) {
            if Instant::now() < *until {
                return decision.clone();
            }
        }
        let decision = match self.review(token).await {
            Ok(decision) => decision,
            // The API could not answer: refuse this time, remember nothing.
            Err(error) => return Decision::Unauthenticated(format!("the API: {error}")),
        };
        let lifetime = if decision == Decision::Allowed {
            ALLOWED_FOR
        } else {
            DENIED_FOR
        };
        let mut cache = self.lock();
        if cache.len() >= CACHE_CAP {
            cache.clear();
        }
        cache.insert(
            token.to_string(),
            (decision.clone(), Instant::now() + lifetime),
        );
        decision
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Decision, Instant)>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn review(&self, token: &str) -> Result<Decision, kube::Error> {
        let review = TokenReview {
            spec: TokenReviewSpec {
                token: Some(token.to_string()),
                ..Default::default()
            },
            ..Default::default()
        };
        let reviewed = Api::<TokenReview>::all(self.client.clone())
            .create(&PostParams::default(), &review)
            .await?;
        let status = reviewed.status.unwrap_or_default();
        let (true, Some(user)) = (status.authenticated == Some(true), status.user) else {
            return Ok(Decision::Unauthenticated(
                status
                    .error
                    .unwrap_or_else(|| "the token is not valid".into()),
            ));
        };
        let username = user.username.clone().unwrap_or_default();
        let access = SubjectAccessReview {
            spec: SubjectAccessReviewSpec {
                user: user.username,
                groups: user.groups,
                uid: user.uid,
                extra: user.extra,
                non_resource_attributes: Some(NonResourceAttributes {
                    path: Some(PATH.into()),
                    verb: Some("get".into()),
                }),
                ..Default::default()
            },
            ..Default::default()
        };
        let answered = Api::<SubjectAccessReview>::all(self.client.clone())
            .create(&PostParams::default(), &access)
            .await?;
        Ok(if answered.status.is_some_and(|s| s.allowed) {
            Decision::Allowed
        } else {
            Decision::Forbidden(format!("{username} may not get {PATH}"))
        })
    }
}

impl AuthOptions {
    /// The TLS the endpoint serves with: the Secret's certificate when
    /// `--metrics-tls-dir` holds one, else one made now for `addresses`.
    pub fn tls(&self, addresses: &[IpAddr]) -> Result<Arc<rustls::ServerConfig>, AuthError> {
        let (chain, key) = match &self.metrics_tls_dir {
            Some(dir) if dir.join("tls.crt").exists() => read_pair(dir)?,
            _ => {
                let ca = crate::pki::Authority::new("migverify metrics")?;
                let leaf = ca.server(addresses, &["localhost".into()])?;
                let chain = [leaf.cert_pem.as_str(), ca.cert_pem.as_str()]
                    .iter()
                    .flat_map(|pem| CertificateDer::pem_slice_iter(pem.as_bytes()))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes())
                    .map_err(|e| rustls::Error::General(e.to_string()))?;
                (chain, key)
            }
        };
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
        Ok(Arc::new(config))
    }
}

type Pair = (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>);

fn read_pair(dir: &Path) -> Result<Pair, AuthError> {
    let error = |message: String| AuthError::Credentials {
        dir: dir.to_path_buf(),
        message,
    };
    let chain = CertificateDer::pem_file_iter(dir.join("tls.crt"))
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error(format!("tls.crt: {e}")))?;
    if chain.is_empty() {
        return Err(error("tls.crt holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(dir.join("tls.key"))
        .map_err(|e| error(format!("tls.key: {e}")))?;
    Ok((chain, key))
}
