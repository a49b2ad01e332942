//! The Kubernetes client against the replay API server, over real HTTP:
//! kubeconfig, paged lists, node-filtered watches (an object leaving the
//! selection, a watch expired by the server), Events posted back, and
//! `check --cluster` giving the same findings and exit codes as the same
//! objects in files.

mod support;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use futures_util::StreamExt as _;
use serde_json::{json, Value};
use support::apiserver::ApiServer;
use verifier::cluster::{
    self,
    events::{EventType, Involved},
    objects,
    watch::{Change, NODE_LABEL, TARGET_NODE_LABEL},
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migverify-{test}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A VMI as KubeVirt serves it, on `node`, migrating to `target` when given.
fn vmi(name: &str, node: &str, target: Option<(&str, &str, u16)>) -> Value {
    let mut labels = json!({ "kubevirt.io/nodeName": node, "kubevirt.io/created-by": "x" });
    let mut status = json!({ "nodeName": node, "phase": "Running" });
    if let Some((target, address, port)) = target {
        labels[TARGET_NODE_LABEL] = json!(target);
        status["migrationState"] = json!({
            "migrationUid": format!("{name}-migration-uid"),
            "sourceNode": node,
            "targetNode": target,
            "targetNodeAddress": address,
            "targetDirectMigrationNodePorts": { port.to_string(): 49152 },
            "targetPod": format!("virt-launcher-{name}-xyz"),
            "mode": "PreCopy",
        });
    }
    json!({
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachineInstance",
        "metadata": { "name": name, "namespace": "prod", "labels": labels },
        "spec": { "domain": { "memory": { "guest": "1Gi" } } },
        "status": status,
    })
}

fn name(change: &Change) -> (&'static str, String) {
    match change {
        Change::Applied(v) => ("applied", v["metadata"]["name"].as_str().unwrap().into()),
        Change::Deleted(v) => ("deleted", v["metadata"]["name"].as_str().unwrap().into()),
    }
}

#[test]
fn lists_page_by_page_through_a_kubeconfig() {
    let server = ApiServer::start();
    for i in 0..(objects::PAGE_SIZE + 20) {
        server.apply(vmi(&format!("vm-{i:04}"), "node-a", None));
    }
    let dir = scratch("cluster-list");
    let kubeconfig = server.kubeconfig(&dir);
    let items = runtime().block_on(async {
        let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
        objects::list(
            &client,
            &objects::VMI,
            None,
            Some(&format!("{NODE_LABEL}=node-a")),
        )
        .await
        .unwrap()
    });
    let items = items.expect("served");
    assert_eq!(items.len(), objects::PAGE_SIZE as usize + 20);
    assert_eq!(items[0]["kind"], "VirtualMachineInstance");
    let lists: Vec<String> = server
        .requests()
        .into_iter()
        .filter(|r| r.starts_with("GET /apis/kubevirt.io/v1/virtualmachineinstances"))
        .collect();
    assert_eq!(lists.len(), 2, "two pages: {lists:?}");
    assert!(lists[1].contains("continue="), "{lists:?}");
    // A kind the cluster does not serve is None, not an error; an empty
    // one is empty.
    server.refuse("/apis/hco.kubevirt.io/v1beta1/hyperconvergeds");
    let (missing, empty) = runtime().block_on(async {
        let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
        (
            objects::list(&client, &objects::HYPERCONVERGED, None, None).await,
            objects::list(&client, &objects::KUBEVIRT, None, None).await,
        )
    });
    assert_eq!(missing.unwrap(), None);
    assert_eq!(empty.unwrap(), Some(vec![]));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_vmi_named_namespace_slash_name_is_read_through_the_api() {
    use verifier::{
        cluster::vmi::ApiVmis,
        intent::vmi::{self, VmiFiles, VmiSource},
    };
    let server = ApiServer::start();
    server.apply(vmi(
        "fedora",
        "node-a",
        Some(("node-b", "10.200.5.12", 40000)),
    ));
    let dir = scratch("cluster-vmi");
    let mut api = ApiVmis::start(Some(server.kubeconfig(&dir)));
    let source: VmiSource = "prod/fedora".parse().unwrap();
    let loaded = vmi::published(&[source], Some(&mut api)).unwrap();
    assert_eq!(
        loaded.endpoints[0].addr,
        "10.200.5.12:40000".parse().unwrap()
    );
    assert_eq!(
        loaded.endpoints[0].migration.as_deref(),
        Some("prod/fedora")
    );
    assert_eq!(loaded.sizes["prod/fedora"].bytes, 1 << 30);
    let missing = vmi::published(&["prod/absent".parse().unwrap()], Some(&mut api));
    assert!(
        format!("{:#}", missing.unwrap_err()).contains("vmi prod/absent: no such"),
        "a VMI that does not exist is named"
    );
    // `watch` waits for one that does not exist yet, and sees it migrate.
    let mut files = VmiFiles::new(vec!["prod/later".parse().unwrap()]);
    assert!(files.poll(Some(&mut api)).unwrap().is_none());
    server.apply(vmi(
        "later",
        "node-a",
        Some(("node-b", "10.200.5.12", 40001)),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let loaded = loop {
        if let Some(loaded) = files.poll(Some(&mut api)).unwrap() {
            break loaded;
        }
        assert!(std::time::Instant::now() < deadline, "never read again");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(loaded.endpoints[0].addr.port(), 40001);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_bad_kubeconfig_or_a_dead_server_is_a_one_line_error() {
    let dir = scratch("cluster-bad");
    let path = dir.join("kubeconfig");
    std::fs::write(&path, "clusters: [ not yaml").unwrap();
    let error = runtime()
        .block_on(cluster::connect(Some(&path)))
        .err()
        .expect("an error")
        .to_string();
    assert!(
        error.starts_with(&format!("kubeconfig {}", path.display())),
        "{error}"
    );
    // A server that is gone: the list names what it asked for.
    let kubeconfig = {
        let server = ApiServer::start();
        server.kubeconfig(&dir)
    };
    let error = runtime().block_on(async {
        let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
        objects::list(&client, &objects::NAD, None, None)
            .await
            .expect_err("an error")
            .to_string()
    });
    assert!(
        error.starts_with("listing network-attachment-definitions.k8s.cni.cncf.io: "),
        "{error}"
    );
    assert!(!error.contains('\n'), "{error}");
    std::fs::remove_dir_all(dir).unwrap();
}

/// The next change, not an error, within 5 s.
async fn next(
    stream: &mut futures_util::stream::BoxStream<'static, Result<Change, cluster::ClusterError>>,
) -> Change {
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a change within 5 s")
        .expect("the stream goes on")
        .expect("no error")
}

/// The watches a node's stream has open, once it has opened both.
async fn both_watching(
    server: &ApiServer,
    stream: &mut futures_util::stream::BoxStream<'static, Result<Change, cluster::ClusterError>>,
) {
    let watches = || {
        server
            .requests()
            .iter()
            .filter(|r| r.contains("watch=true"))
            .count()
    };
    let before = watches();
    // Polling the stream is what opens them; nothing is to come meanwhile.
    while watches() < before + 2 {
        if let Ok(change) = tokio::time::timeout(Duration::from_millis(100), stream.next()).await {
            panic!("nothing should come yet: {change:?}");
        }
    }
}

#[test]
fn the_node_watch_sees_only_its_vmis_and_a_migration_leaving() {
    let server = ApiServer::start();
    server.apply(vmi("here", "node-a", None));
    server.apply(vmi("elsewhere", "node-c", None));
    let dir = scratch("cluster-watch");
    let kubeconfig = server.kubeconfig(&dir);
    let (seen, errors) = runtime().block_on(async {
        let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
        let mut stream = cluster::watch::vmis_of_node(&client, "node-b");
        let mut seen = Vec::new();
        // Nothing on node-b yet: both lists come back empty, both watches open.
        both_watching(&server, &mut stream).await;
        // A migration to node-b from node-a: the target's label brings the VMI in.
        server.apply(vmi(
            "here",
            "node-a",
            Some(("node-b", "10.200.5.12", 41000)),
        ));
        let change = next(&mut stream).await;
        if let Change::Applied(v) = &change {
            assert_eq!(
                v["status"]["migrationState"]["targetNodeAddress"],
                "10.200.5.12"
            );
        }
        seen.push(name(&change));
        // Done: the VMI now runs on node-b (the first watch) and left the
        // second's selection (no target label). Both say so.
        let mut done = vmi("here", "node-b", None);
        done["status"]["migrationState"] = json!({ "completed": true, "targetNode": "node-b" });
        server.apply(done.clone());
        for _ in 0..2 {
            seen.push(name(&next(&mut stream).await));
        }
        // The server forgets its history: the watches end with 410, the
        // watcher lists again (after a backoff) and goes on.
        server.compact();
        done["status"]["phase"] = json!("Succeeded");
        server.apply(done);
        let mut errors = Vec::new();
        loop {
            let item = tokio::time::timeout(Duration::from_secs(10), stream.next())
                .await
                .expect("the re-list within 10 s")
                .expect("the stream goes on");
            match item {
                Err(error) => errors.push(error.to_string()),
                Ok(change) => {
                    seen.push(name(&change));
                    break;
                }
            }
        }
        (seen, errors)
    });
    assert_eq!(seen[0], ("applied", "here".to_string()));
    let mut live = seen[1..3].to_vec();
    live.sort();
    assert_eq!(
        live,
        [
            ("applied", "here".to_string()),
            ("deleted", "here".to_string())
        ]
    );
    assert_eq!(seen[3], ("applied", "here".to_string()));
    assert!(!errors.is_empty(), "the 410 surfaces once per watch");
    assert!(
        errors
            .iter()
            .all(|e| e.starts_with("watching virtualmachineinstances.kubevirt.io (kubevirt.io/")),
        "{errors:?}"
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("virtualmachineinstances")
                || r.contains("labelSelector=kubevirt.io/")),
        "every VMI request is filtered by node label: {requests:?}"
    );
    // One list per selection at the start, from the watch cache
    // (resourceVersion=0), and again after the server expired the watches.
    let lists: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("virtualmachineinstances") && !r.contains("watch=true"))
        .collect();
    assert!((3..=4).contains(&lists.len()), "{requests:?}");
    assert!(
        lists.iter().all(|r| r.contains("resourceVersion=0")),
        "{lists:?}"
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn events_are_posted_on_the_migration() {
    let server = ApiServer::start();
    let dir = scratch("cluster-event");
    let kubeconfig = server.kubeconfig(&dir);
    let involved = Involved {
        api_version: "kubevirt.io/v1".into(),
        kind: "VirtualMachineInstanceMigration".into(),
        namespace: "prod".into(),
        name: "db-migration".into(),
        uid: "1234".into(),
    };
    let long = "x".repeat(3000);
    let name = runtime().block_on(async {
        let client = cluster::connect(Some(&kubeconfig)).await.unwrap();
        cluster::events::post(
            &client,
            &involved,
            EventType::Warning,
            "MigrationNetworkFallback",
            &long,
            "node-a",
        )
        .await
        .unwrap()
    });
    let writes = server.writes();
    assert_eq!(writes.len(), 1);
    let write = &writes[0];
    assert_eq!((write.method.as_str(), write.status), ("POST", 201));
    assert_eq!(write.path, "/api/v1/namespaces/prod/events");
    let event = &write.body;
    assert_eq!(event["metadata"]["name"], name.as_str());
    assert_eq!(event["reason"], "MigrationNetworkFallback");
    assert_eq!(event["type"], "Warning");
    assert_eq!(
        event["involvedObject"]["kind"],
        "VirtualMachineInstanceMigration"
    );
    assert_eq!(event["involvedObject"]["uid"], "1234");
    assert_eq!(event["source"]["host"], "node-a");
    assert!(event["message"].as_str().unwrap().len() <= 1024);
    assert!(server
        .get(&format!("/api/v1/namespaces/prod/events/{name}"))
        .is_some());
    std::fs::remove_dir_all(dir).unwrap();
}

const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/examples");

fn migverify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_migverify"))
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .expect("run migverify")
}

/// The findings that do not depend on where the objects came from.
fn findings(out: &Output) -> Vec<(String, String, String, String)> {
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let mut found: Vec<_> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = |k: &str| f[k].as_str().unwrap_or_default().to_string();
            (text("id"), text("severity"), text("object"), text("path"))
        })
        .collect();
    found.sort();
    found
}

/// Serves the objects of example files, as a cluster would hold them.
fn serve_examples(server: &ApiServer, files: &[&str]) {
    for file in files {
        let objects =
            verifier::config::documents::load_path(&Path::new(EXAMPLES).join(file)).unwrap();
        for object in objects {
            if verifier::checks::KINDS.contains(&object.kind.as_str()) {
                server.apply(object.value.clone());
            }
        }
    }
}

#[test]
fn check_cluster_finds_what_check_finds_in_the_same_objects() {
    for (files, status) in [
        (
            &[
                "migration-network.yaml",
                "cluster-network.yaml",
                "vmi-migrated.yaml",
            ][..],
            0,
        ),
        (&["broken-migration-network.yaml"][..], 1),
    ] {
        let server = ApiServer::start();
        serve_examples(&server, files);
        let dir = scratch("cluster-check");
        let kubeconfig = server.kubeconfig(&dir);
        let paths: Vec<String> = files.iter().map(|f| format!("{EXAMPLES}/{f}")).collect();
        let mut args = vec!["check", "-o", "json"];
        args.extend(paths.iter().map(String::as_str));
        let from_files = migverify(&args);
        let from_cluster = migverify(&[
            "check",
            "--cluster",
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "-o",
            "json",
        ]);
        assert_eq!(from_files.status.code(), Some(status), "{files:?}");
        assert_eq!(
            from_cluster.status.code(),
            Some(status),
            "{files:?}: {}",
            String::from_utf8_lossy(&from_cluster.stderr)
        );
        assert_eq!(findings(&from_cluster), findings(&from_files), "{files:?}");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Issue 16's semantics from the API as from files: a HyperConverged
/// served only as hco.kubevirt.io/v1 (its block under spec.virtualization),
/// Nodes counted against the migration range, the legacy kubevirt-config
/// ConfigMap, a failed VMIM.
#[test]
fn check_cluster_reads_v1_hyperconverged_nodes_and_the_legacy_configmap() {
    let config = r#"{"cniVersion": "0.3.1", "type": "macvlan", "master": "eth1",
        "ipam": {"type": "whereabouts", "range": "10.200.5.0/30"}}"#;
    let mut objects = vec![
        json!({"apiVersion": "hco.kubevirt.io/v1", "kind": "HyperConverged",
               "metadata": {"name": "kubevirt-hyperconverged", "namespace": "openshift-cnv"},
               "spec": {"virtualization": {"liveMigrationConfig": {"network": "mig", "completionTimeoutPerGiB": 20}}}}),
        json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
               "metadata": {"name": "mig", "namespace": "openshift-cnv"}, "spec": {"config": config}}),
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "kubevirt-config", "namespace": "kubevirt"},
               "data": {"migrations": "progressTimeout: 150\n"}}),
        json!({"apiVersion": "kubevirt.io/v1", "kind": "VirtualMachineInstanceMigration",
               "metadata": {"name": "m", "namespace": "prod"}, "spec": {"vmiName": "vm"},
               "status": {"phase": "Failed"}}),
    ];
    for n in 0..3 {
        objects.push(
            json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": format!("node-{n}")}}),
        );
    }
    let server = ApiServer::start();
    server.refuse("/apis/hco.kubevirt.io/v1beta1/hyperconvergeds");
    let dir = scratch("cluster-check-v1");
    let file = dir.join("objects.json");
    let list = json!({"apiVersion": "v1", "kind": "List", "items": objects});
    std::fs::write(&file, serde_json::to_vec_pretty(&list).unwrap()).unwrap();
    for object in objects {
        server.apply(object);
    }
    let kubeconfig = server.kubeconfig(&dir);
    let from_files = migverify(&["check", file.to_str().unwrap(), "-o", "json"]);
    let from_cluster = migverify(&[
        "check",
        "--cluster",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "-o",
        "json",
    ]);
    let found = findings(&from_files);
    let ids: Vec<&str> = found.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        ids,
        ["MV-IPAM-008", "MV-MIG-014", "MV-MIG-018", "MV-MIG-021"],
        "{found:?}"
    );
    assert_eq!(from_files.status.code(), Some(1));
    assert_eq!(
        from_cluster.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&from_cluster.stderr)
    );
    assert_eq!(findings(&from_cluster), found);
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn check_cluster_without_a_cluster_is_a_usage_error() {
    let dir = scratch("cluster-none");
    let kubeconfig = {
        let server = ApiServer::start();
        server.kubeconfig(&dir)
    };
    let out = migverify(&[
        "check",
        "--cluster",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.starts_with("migverify: "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    let out = migverify(&[
        "check",
        "--cluster",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
    ]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(dir).unwrap();
}
