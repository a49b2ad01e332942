//! Reading deploy/: its files and documents, each document as its typed
//! k8s-openapi struct (or a small struct that denies unknown fields), and
//! what a round trip through the type loses.

use std::path::{Path, PathBuf};

use k8s_openapi::{
    api::{
        apps::v1::DaemonSet,
        batch::v1::Job,
        core::v1::{ConfigMap, Namespace, Service, ServiceAccount},
        networking::v1::NetworkPolicy,
        rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding},
    },
    apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta},
    Resource,
};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::Value;

pub fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// Every .yaml file under deploy/, sorted.
pub fn manifest_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if matches!(
                path.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml")
            ) {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&deploy_dir(), &mut files);
    files.sort();
    files
}

/// The YAML documents of a file, as JSON values (empty documents left out).
pub fn documents(text: &str) -> Result<Vec<Value>, String> {
    let mut out = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| e.to_string())?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// The first place where `original` has something `typed` lost or changed,
/// as a path such as `spec.template.spec.hostPid`.
pub fn lost(original: &Value, typed: &Value, path: &str) -> Option<String> {
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => o.iter().find_map(|(key, value)| {
            let here = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            match t.get(key) {
                Some(typed) => lost(value, typed, &here),
                None => Some(format!("{here}: unknown field")),
            }
        }),
        (Value::Array(o), Value::Array(t)) if o.len() == t.len() => o
            .iter()
            .zip(t)
            .enumerate()
            .find_map(|(i, (o, t))| lost(o, t, &format!("{path}[{i}]"))),
        _ if original == typed => None,
        _ => Some(format!("{path}: {original} became {typed}")),
    }
}

/// Deserializes into `T` and requires the round trip to keep every field.
pub fn typed<T: DeserializeOwned + Serialize>(document: &Value) -> Result<T, String> {
    let object: T = serde_json::from_value(document.clone()).map_err(|e| e.to_string())?;
    let back = serde_json::to_value(&object).map_err(|e| e.to_string())?;
    match lost(document, &back, "") {
        Some(field) => Err(field),
        None => Ok(object),
    }
}

/// The Prometheus operator's ServiceMonitor (monitoring.coreos.com/v1), the
/// part of its CRD schema the manifests may use; anything else is refused.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitor {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: ServiceMonitorSpec,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ServiceMonitorSpec {
    pub selector: LabelSelector,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<NamespaceSelector>,
    pub endpoints: Vec<Endpoint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_label: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pod_target_labels: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NamespaceSelector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_names: Vec<String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Endpoint {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scrape_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub honor_labels: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub relabelings: Vec<RelabelConfig>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_relabelings: Vec<RelabelConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_config: Option<TlsConfig>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TlsConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// The Prometheus operator's PrometheusRule (monitoring.coreos.com/v1).
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PrometheusRule {
    pub api_version: String,
    pub kind: String,
    pub metadata: ObjectMeta,
    pub spec: RuleGroups,
}

/// `spec` of a PrometheusRule, which is also a Prometheus rule file.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleGroups {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    pub rules: Vec<Rule>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub expr: String,
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "for")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RelabelConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub source_labels: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replacement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modulus: Option<u64>,
}

/// kustomize's Kustomization, the fields deploy/ uses.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Kustomization {
    pub api_version: String,
    pub kind: String,
    pub resources: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<KustomizeImage>,
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KustomizeImage {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_tag: Option<String>,
}

/// One checked manifest document.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a test's handful of documents
pub enum Object {
    Namespace(Namespace),
    ServiceAccount(ServiceAccount),
    ClusterRole(ClusterRole),
    ClusterRoleBinding(ClusterRoleBinding),
    Role(Role),
    RoleBinding(RoleBinding),
    DaemonSet(Box<DaemonSet>),
    Service(Service),
    ConfigMap(ConfigMap),
    Job(Box<Job>),
    ServiceMonitor(ServiceMonitor),
    PrometheusRule(PrometheusRule),
    NetworkPolicy(NetworkPolicy),
    Kustomization(Kustomization),
}

pub fn is<T: Resource>(api_version: &str, kind: &str) -> bool {
    api_version == T::API_VERSION && kind == T::KIND
}

/// The typed object of one document, or what is wrong with it.
pub fn check(document: &Value) -> Result<Object, String> {
    let api_version = document["apiVersion"].as_str().unwrap_or_default();
    let kind = document["kind"].as_str().unwrap_or_default();
    let object = if is::<Namespace>(api_version, kind) {
        Object::Namespace(typed(document)?)
    } else if is::<ServiceAccount>(api_version, kind) {
        Object::ServiceAccount(typed(document)?)
    } else if is::<ClusterRole>(api_version, kind) {
        Object::ClusterRole(typed(document)?)
    } else if is::<ClusterRoleBinding>(api_version, kind) {
        Object::ClusterRoleBinding(typed(document)?)
    } else if is::<Role>(api_version, kind) {
        Object::Role(typed(document)?)
    } else if is::<RoleBinding>(api_version, kind) {
        Object::RoleBinding(typed(document)?)
    } else if is::<DaemonSet>(api_version, kind) {
        Object::DaemonSet(Box::new(typed(document)?))
    } else if is::<Service>(api_version, kind) {
        Object::Service(typed(document)?)
    } else if is::<ConfigMap>(api_version, kind) {
        Object::ConfigMap(typed(document)?)
    } else if is::<Job>(api_version, kind) {
        Object::Job(Box::new(typed(document)?))
    } else if is::<NetworkPolicy>(api_version, kind) {
        Object::NetworkPolicy(typed(document)?)
    } else if api_version == "monitoring.coreos.com/v1" && kind == "ServiceMonitor" {
        Object::ServiceMonitor(typed(document)?)
    } else if api_version == "monitoring.coreos.com/v1" && kind == "PrometheusRule" {
        Object::PrometheusRule(typed(document)?)
    } else if api_version == "kustomize.config.k8s.io/v1beta1" && kind == "Kustomization" {
        Object::Kustomization(typed(document)?)
    } else {
        return Err(format!(
            "{api_version} {kind}: not a kind deploy/ should hold"
        ));
    };
    Ok(object)
}

/// Every document of every file, typed; panics naming the file and field.
pub fn all_objects() -> Vec<(PathBuf, Object)> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for file in manifest_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        match documents(&text) {
            Ok(docs) => {
                for (i, doc) in docs.iter().enumerate() {
                    match check(doc) {
                        Ok(object) => out.push((file.clone(), object)),
                        Err(e) => {
                            errors.push(format!("{} document {}: {e}", file.display(), i + 1))
                        }
                    }
                }
            }
            Err(e) => errors.push(format!("{}: {e}", file.display())),
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));
    out
}
