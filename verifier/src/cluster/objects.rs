//! The kinds migverify reads from a cluster, and paged lists of them as
//! plain JSON, shaped as `oc get KIND -o json` prints each item.

use kube::{
    api::{Api, DynamicObject, ListParams},
    discovery::ApiResource,
    Client,
};
use serde_json::Value;

use super::ClusterError;

/// One kind of object, as the API serves it. Fixed here rather than
/// discovered: one request fewer per start, and a kind the cluster does not
/// serve shows as a 404 on its list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Resource {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
}

pub const VMI: Resource = Resource {
    group: "kubevirt.io",
    version: "v1",
    kind: "VirtualMachineInstance",
    plural: "virtualmachineinstances",
};
pub const VMIM: Resource = Resource {
    group: "kubevirt.io",
    version: "v1",
    kind: "VirtualMachineInstanceMigration",
    plural: "virtualmachineinstancemigrations",
};
pub const KUBEVIRT: Resource = Resource {
    group: "kubevirt.io",
    version: "v1",
    kind: "KubeVirt",
    plural: "kubevirts",
};
pub const HYPERCONVERGED: Resource = Resource {
    group: "hco.kubevirt.io",
    version: "v1beta1",
    kind: "HyperConverged",
    plural: "hyperconvergeds",
};
/// HyperConverged's newer API version, read where v1beta1 is not served
/// (its live-migration block sits at `spec.virtualization`).
pub const HYPERCONVERGED_V1: Resource = Resource {
    version: "v1",
    ..HYPERCONVERGED
};
pub const NAD: Resource = Resource {
    group: "k8s.cni.cncf.io",
    version: "v1",
    kind: "NetworkAttachmentDefinition",
    plural: "network-attachment-definitions",
};
pub const MIGRATION_POLICY: Resource = Resource {
    group: "migrations.kubevirt.io",
    version: "v1alpha1",
    kind: "MigrationPolicy",
    plural: "migrationpolicies",
};
/// OpenShift's cluster network configuration: the main networks.
pub const NETWORK_CONFIG: Resource = Resource {
    group: "config.openshift.io",
    version: "v1",
    kind: "Network",
    plural: "networks",
};
/// Nodes, counted: each runs a virt-handler that needs a migration address.
pub const NODE: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Node",
    plural: "nodes",
};
/// KubeVirt's legacy `kubevirt-config` ConfigMap, read by name only.
pub const CONFIG_MAP: Resource = Resource {
    group: "",
    version: "v1",
    kind: "ConfigMap",
    plural: "configmaps",
};
pub const POD: Resource = Resource {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
};

/// The configuration kinds the agent reads: the migration network's NAD,
/// where it is named, and the budgets.
pub const CONFIGURATION: [Resource; 4] = [HYPERCONVERGED, KUBEVIRT, MIGRATION_POLICY, NAD];

/// What `check --cluster` reads: the configuration, the cluster's main
/// networks where OpenShift says them, and the VMIs and their migrations.
pub const CHECKED: [Resource; 7] = [
    HYPERCONVERGED,
    KUBEVIRT,
    MIGRATION_POLICY,
    NAD,
    NETWORK_CONFIG,
    VMI,
    VMIM,
];

/// Objects per page: bounded memory per request, as client-go pages.
pub const PAGE_SIZE: u32 = 500;

impl Resource {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }

    /// `plural.group`, as RBAC and kubectl name a resource.
    pub fn name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    pub fn api(&self, client: &Client, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(ns) => Api::namespaced_with(client.clone(), ns, &self.api_resource()),
            None => Api::all_with(client.clone(), &self.api_resource()),
        }
    }

    /// An object of this kind as JSON, with `apiVersion` and `kind` filled
    /// in: list items of built-in kinds come without them.
    pub fn to_json(&self, object: &DynamicObject) -> Value {
        let mut value = serde_json::to_value(object).unwrap_or(Value::Null);
        if let Some(map) = value.as_object_mut() {
            map.entry("apiVersion")
                .or_insert_with(|| Value::String(self.api_version()));
            map.entry("kind")
                .or_insert_with(|| Value::String(self.kind.to_string()));
        }
        value
    }
}

/// Every object of `resource` (in `namespace`, or all; matching `labels`),
/// page by page. `None` when the cluster does not serve the kind at all (a
/// KubeVirt without HyperConverged, no Multus).
pub async fn list(
    client: &Client,
    resource: &Resource,
    namespace: Option<&str>,
    labels: Option<&str>,
) -> Result<Option<Vec<Value>>, ClusterError> {
    let mut params = ListParams::default().limit(PAGE_SIZE);
    if let Some(labels) = labels {
        params = params.labels(labels);
    }
    match pages(client, resource, namespace, params).await {
        Ok(items) => Ok(Some(items)),
        Err(error) if super::not_found(&error) => Ok(None),
        Err(error) => Err(ClusterError::api(
            format!("listing {}", resource.name()),
            error,
        )),
    }
}

/// Every page of a list.
async fn pages(
    client: &Client,
    resource: &Resource,
    namespace: Option<&str>,
    mut params: ListParams,
) -> Result<Vec<Value>, kube::Error> {
    let api = resource.api(client, namespace);
    let mut items = Vec::new();
    loop {
        let page = api.list(&params).await?;
        items.extend(page.items.iter().map(|o| resource.to_json(o)));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(items),
        }
    }
}

/// The objects `check --cluster` reads, from every namespace; kinds the
/// cluster does not serve are said on stderr and skipped.
pub async fn checked_objects(
    client: &Client,
) -> Result<Vec<crate::config::documents::Object>, ClusterError> {
    let (mut objects, unserved) = read_objects(client, &CHECKED, "cluster").await?;
    // What helps but is not essential, where the credentials may not reach:
    // the node count and the legacy ConfigMap.
    for (resource, fields) in [
        (NODE, None),
        (CONFIG_MAP, Some("metadata.name=kubevirt-config")),
    ] {
        let mut params = ListParams::default().limit(PAGE_SIZE);
        if let Some(fields) = fields {
            params = params.fields(fields);
        }
        match pages(client, &resource, None, params).await {
            Ok(items) => objects.extend(parsed(items, &resource, "cluster")?),
            Err(kube::Error::Api(status)) if matches!(status.code, 401 | 403 | 404) => eprintln!(
                "migverify: cannot list {} ({}): skipped",
                resource.name(),
                status.code
            ),
            Err(error) => {
                return Err(ClusterError::api(
                    format!("listing {}", resource.name()),
                    error,
                ))
            }
        }
    }
    if !unserved.is_empty() {
        eprintln!(
            "migverify: the cluster does not serve {}: skipped",
            unserved.join(", ")
        );
    }
    Ok(objects)
}

/// Every object of `resources` the cluster serves, as the file parsers
/// read them (`source` names where they came from in findings). Kinds the
/// cluster does not serve are skipped and named in the second list.
pub async fn read_objects(
    client: &Client,
    resources: &[Resource],
    source: &str,
) -> Result<(Vec<crate::config::documents::Object>, Vec<String>), ClusterError> {
    let mut objects = Vec::new();
    let mut unserved = Vec::new();
    for resource in resources {
        let mut items = list(client, resource, None, None).await?;
        // A HyperConverged that serves only v1 (whose layout intent reads by
        // apiVersion) where v1beta1 is gone.
        if items.is_none() && resource == &HYPERCONVERGED {
            items = list(client, &HYPERCONVERGED_V1, None, None).await?;
        }
        let Some(items) = items else {
            unserved.push(resource.name());
            continue;
        };
        objects.extend(parsed(items, resource, source)?);
    }
    Ok((objects, unserved))
}

/// Objects as the file reader reads them, from `items` of `resource`.
fn parsed(
    items: Vec<Value>,
    resource: &Resource,
    source: &str,
) -> Result<Vec<crate::config::documents::Object>, ClusterError> {
    let mut objects = Vec::new();
    for item in items {
        // As `oc get -o json` prints it, so locations in findings are lines of that.
        let text = serde_json::to_vec_pretty(&item).expect("JSON serializes");
        let parsed =
            crate::config::documents::load_bytes(source, &text).map_err(|e| ClusterError::Api {
                what: format!("reading {}", resource.name()),
                message: e.to_string(),
            })?;
        objects.extend(parsed);
    }
    Ok(objects)
}
