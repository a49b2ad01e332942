//! The checks issue 16 added for objects as people really write them:
//! each raises exactly its finding, and the valid shapes raise none. The
//! real objects themselves are in tests/corpus (tests/corpus.rs).

use serde_json::{json, Value};

use super::{findings::*, *};
use crate::config::documents::load_bytes;

fn check(texts: &[String], options: &Options) -> Vec<&'static str> {
    let mut objects = Vec::new();
    for (n, text) in texts.iter().enumerate() {
        objects.extend(load_bytes(&format!("in{n}.yaml"), text.as_bytes()).unwrap());
    }
    check_objects(&objects, options).findings.ids()
}

fn one(text: String) -> Vec<&'static str> {
    check(&[text], &Options::default())
}

fn nad(config: Value) -> String {
    json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
           "metadata": {"name": "mig", "namespace": "openshift-cnv"}, "spec": {"config": config.to_string()}})
    .to_string()
}

fn macvlan(ipam: Value) -> Value {
    json!({"cniVersion": "0.3.1", "type": "macvlan", "master": "eth1", "ipam": ipam})
}

fn hco() -> String {
    json!({"apiVersion": "hco.kubevirt.io/v1beta1", "kind": "HyperConverged",
           "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
           "spec": {"liveMigrationConfig": {"network": "mig"}}})
    .to_string()
}

fn policy(spec: Value) -> String {
    json!({"apiVersion": "migrations.kubevirt.io/v1alpha1", "kind": "MigrationPolicy",
           "metadata": {"name": "p"}, "spec": spec})
    .to_string()
}

fn vmim(status: Value) -> String {
    json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
           "metadata": {"name": "m", "namespace": "ns"}, "spec": {"vmiName": "vm"}, "status": status})
    .to_string()
}

#[test]
fn kinds_near_misses_and_api_versions() {
    let kubevirt = |kind: &str, api: &str| {
        format!("apiVersion: {api}\nkind: {kind}\nmetadata: {{name: kv, namespace: kubevirt}}\nspec: {{}}\n")
    };
    // Checked as the kind meant: the KubeVirt CR names no migration network.
    assert_eq!(
        one(kubevirt("Kubevirt", "kubevirt.io/v1")),
        [INPUT_KIND_NEAR_MISS.id, MIG_NO_NETWORK.id]
    );
    assert_eq!(
        one(kubevirt("KubeVirt", "kubevirt.io/v2")),
        [INPUT_API_VERSION_MISMATCH.id, MIG_NO_NETWORK.id]
    );
    assert_eq!(
        one(kubevirt("KubeVirt", "kubevirt.io/v1alpha3")),
        [MIG_NO_NETWORK.id]
    );
    assert_eq!(
        one(kubevirt("Network", "kubernetes.cni.cncf.io/v1")),
        [INPUT_UNSUPPORTED_KIND.id]
    );
    // Another ConfigMap is not read; Nodes are counted, silently.
    assert_eq!(
        one("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: 1}\n".into()),
        [INPUT_UNSUPPORTED_KIND.id]
    );
    assert_eq!(
        one("apiVersion: v1\nkind: Node\nmetadata: {name: n1}\n".into()),
        Vec::<&str>::new()
    );
}

#[test]
fn metadata_and_placeholders() {
    let nad_with = |metadata: &str| {
        format!(
            "apiVersion: k8s.cni.cncf.io/v1\nkind: NetworkAttachmentDefinition\nmetadata: {metadata}\nspec:\n  \
             config: '{}'\n",
            macvlan(json!({"type": "whereabouts", "range": "10.200.5.0/24"}))
        )
    };
    let ids = |metadata: &str| -> Vec<&str> {
        one(nad_with(metadata))
            .into_iter()
            .filter(|id| *id != IPAM_MAIN_NETWORKS_UNKNOWN.id)
            .collect()
    };
    assert_eq!(
        ids("{name: a, namespace: b, labels: {x: \"1\"}}"),
        Vec::<&str>::new()
    );
    assert_eq!(
        ids("{name: a, namespace: {CNVNamespace}}"),
        [FIELD_WRONG_TYPE.id]
    );
    assert_eq!(ids("{name: a, labels: {x: 10}}"), [FIELD_WRONG_TYPE.id]);
    assert_eq!(ids("{name: a, lables: {x: y}}"), [FIELD_UNKNOWN.id]);
    assert_eq!(ids("{name: <nad_name>}"), [INPUT_DOC_PLACEHOLDER.id]);
    assert_eq!(ids("{name: 'mig <1>'}"), [INPUT_DOC_PLACEHOLDER.id]);
    // A name that is not text is the wrong type, not a missing name.
    assert_eq!(ids("{name: 7}"), [FIELD_WRONG_TYPE.id]);
}

#[test]
fn migration_settings_and_policies() {
    assert_eq!(
        one(policy(
            json!({"selectors": {"namespaceSelector": {"a": "true", "b": ""}}, "maxDowntimeMs": 300})
        )),
        Vec::<&str>::new()
    );
    assert_eq!(
        one(policy(json!({"completionTimeoutPerGiB": 10}))),
        [MIG_POLICY_NO_SELECTORS.id]
    );
    assert_eq!(
        one(policy(
            json!({"selectors": {"virtualMachineInstanceSelector": {"tier": 1}}})
        )),
        [FIELD_WRONG_TYPE.id]
    );
    for ms in [json!(0), json!(2_000_001), json!(u64::MAX)] {
        assert_eq!(
            one(policy(json!({"selectors": {}, "maxDowntimeMs": ms}))),
            [MIG_MAX_DOWNTIME.id],
            "{ms}"
        );
    }
    // Past i64 where KubeVirt reads an int64.
    assert_eq!(
        one(policy(
            json!({"selectors": {}, "completionTimeoutPerGiB": u64::MAX})
        )),
        [FIELD_WRONG_TYPE.id]
    );
    // HyperConverged v1 keeps the block under spec.virtualization; each
    // layout's field is pruned under the other version.
    let v1 = |spec: Value| {
        json!({"apiVersion": "hco.kubevirt.io/v1", "kind": "HyperConverged",
               "metadata": {"name": "h", "namespace": "openshift-cnv"}, "spec": spec})
        .to_string()
    };
    let block = json!({"completionTimeoutPerGiB": 20});
    assert_eq!(
        one(v1(
            json!({"virtualization": {"liveMigrationConfig": block}})
        )),
        [MIG_NO_NETWORK.id]
    );
    assert_eq!(
        one(v1(json!({"liveMigrationConfig": block}))),
        [FIELD_UNKNOWN.id, MIG_NO_NETWORK.id]
    );
    assert_eq!(
        one(hco().replace("\"liveMigrationConfig\"", "\"virtualization\"")),
        [FIELD_UNKNOWN.id, MIG_NO_NETWORK.id]
    );
    let legacy = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kubevirt-config, namespace: kubevirt}\ndata:\n  \
                  migrations: |-\n    progressTimeout: 150\n";
    assert_eq!(one(legacy.into()), [MIG_LEGACY_CONFIGMAP.id]);
}

#[test]
fn migration_network_suitability() {
    let with = |ipam: Value, nodes: Option<usize>| {
        let options = Options {
            nodes,
            ..Options::default()
        };
        check(&[nad(macvlan(ipam)), hco()], &options)
            .into_iter()
            .filter(|id| *id != IPAM_MAIN_NETWORKS_UNKNOWN.id)
            .collect::<Vec<_>>()
    };
    let range = |r: &str| json!({"type": "whereabouts", "range": r});
    assert_eq!(with(range("10.200.5.0/24"), Some(200)), Vec::<&str>::new());
    assert_eq!(
        with(range("10.200.5.0/28"), Some(20)),
        [MIG_NAD_TOO_SMALL.id]
    );
    let sliced = json!({"type": "whereabouts", "range": "10.0.0.0/20", "node_slice_size": "/24"});
    assert_eq!(with(sliced.clone(), Some(16)), Vec::<&str>::new());
    assert_eq!(with(sliced, Some(17)), [MIG_NAD_TOO_SMALL.id]);
    let wide = json!({"type": "whereabouts", "range": "10.0.0.0/24", "node_slice_size": "/20"});
    assert_eq!(with(wide, None), [IPAM_NODE_SLICE.id]);
    let host_bits = json!({"type": "whereabouts", "range": "10.0.0.1/20", "node_slice_size": "24"});
    assert_eq!(
        with(host_bits, None),
        [IPAM_HOST_BITS.id, IPAM_NODE_SLICE.id]
    );
    assert_eq!(with(json!({"type": "dhcp"}), None), [MIG_NAD_DHCP.id]);
    let host_device = json!({"cniVersion": "0.3.1", "type": "host-device", "device": "eth1",
                             "ipam": {"type": "whereabouts", "range": "10.200.5.0/24"}});
    let ids = check(&[nad(host_device), hco()], &Options::default());
    assert!(ids.contains(&MIG_NAD_HOST_DEVICE.id), "{ids:?}");
    // A node count from Node objects.
    let nodes: Vec<String> = (0..3)
        .map(|n| format!("apiVersion: v1\nkind: Node\nmetadata: {{name: n{n}}}\n"))
        .collect();
    let mut texts = vec![nad(macvlan(range("10.200.5.0/30"))), hco()];
    texts.extend(nodes);
    assert!(check(&texts, &Options::default()).contains(&MIG_NAD_TOO_SMALL.id));
}

#[test]
fn migrations_as_kubevirt_writes_them() {
    // Completed, over the migration range given as --cidr; the booleans
    // omitted when false, string port keys, a 0 value: all normal.
    let options = Options {
        migration: vec!["10.200.5.0/24".parse().unwrap()],
        ..Options::default()
    };
    let done = vmim(
        json!({"phase": "Succeeded", "migrationState": {"completed": true,
        "targetNodeAddress": "10.200.5.12", "targetDirectMigrationNodePorts": {"40000": 0, "40001": 49152}}}),
    );
    assert_eq!(
        check(std::slice::from_ref(&done), &options),
        [VMI_TARGET_ON_MIGRATION_NETWORK.id]
    );
    assert_eq!(
        check(&[done.replace("10.200.5.12", "10.131.0.41")], &options),
        [VMI_TARGET_OUTSIDE_MIGRATION_NETWORK.id]
    );
    assert_eq!(one(vmim(json!({"phase": "Failed"}))), [MIG_FAILED.id]);
    assert_eq!(
        one(vmim(
            json!({"phase": "Scheduling", "conditions": [{"type": "x", "status": "True"}]})
        )),
        [MIG_NOT_FINISHED.id]
    );
    let failed_vmi = json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstance",
        "metadata": {"name": "v", "namespace": "ns"},
        "status": {"migrationState": {"failed": true, "mode": "PreCopy", "migrationNetworkType": "Overlay"}}});
    assert_eq!(
        one(failed_vmi.to_string()),
        [FIELD_ENUM.id, MIG_FAILED.id, VMI_NO_TARGET.id]
    );
    // KubeVirt's own record of the network, when nothing else says.
    let recorded = vmim(
        json!({"phase": "Succeeded", "migrationState": {"completed": true,
        "targetNodeAddress": "192.168.1.5", "migrationNetworkType": "Migration"}}),
    );
    assert_eq!(one(recorded), [VMI_TARGET_ON_MIGRATION_NETWORK.id]);
}
