//! Every manifest in deploy/ is a Kubernetes object its API accepts as
//! written: each YAML document deserializes into its typed k8s-openapi
//! struct, and serializing that struct back gives every field of the
//! document (k8s-openapi skips fields it does not know, so a misspelled
//! field would otherwise vanish without a word). The ServiceMonitor and the
//! kustomization have no k8s-openapi type: they are checked against small
//! structs that deny unknown fields. Then least privilege: no wildcard in
//! any rule, and the agent's and the checkup's rules are exactly the
//! expected ones; and the pieces refer to each other consistently.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use k8s_openapi::api::rbac::v1::PolicyRule;

mod security;
mod typed;

use self::typed::*;

#[test]
fn every_manifest_is_its_kubernetes_type_with_no_unknown_field() {
    let objects = all_objects();
    let kinds: BTreeSet<&str> = objects
        .iter()
        .map(|(_, o)| match o {
            Object::Namespace(_) => "Namespace",
            Object::ServiceAccount(_) => "ServiceAccount",
            Object::ClusterRole(_) => "ClusterRole",
            Object::ClusterRoleBinding(_) => "ClusterRoleBinding",
            Object::Role(_) => "Role",
            Object::RoleBinding(_) => "RoleBinding",
            Object::DaemonSet(_) => "DaemonSet",
            Object::Service(_) => "Service",
            Object::ConfigMap(_) => "ConfigMap",
            Object::Job(_) => "Job",
            Object::ServiceMonitor(_) => "ServiceMonitor",
            Object::PrometheusRule(_) => "PrometheusRule",
            Object::NetworkPolicy(_) => "NetworkPolicy",
            Object::Kustomization(_) => "Kustomization",
        })
        .collect();
    // The list, all there.
    for kind in [
        "Namespace",
        "ServiceAccount",
        "ClusterRole",
        "ClusterRoleBinding",
        "Role",
        "RoleBinding",
        "DaemonSet",
        "Service",
        "ServiceMonitor",
        "Job",
        "ConfigMap",
        "NetworkPolicy",
        "PrometheusRule",
    ] {
        assert!(kinds.contains(kind), "deploy/ has no {kind}");
    }
    eprintln!(
        "{} documents in {} files checked",
        objects.len(),
        manifest_files().len()
    );
}

/// The check must be able to fail: a misspelled field in each kind of
/// document is caught and named.
#[test]
fn a_misspelled_field_is_caught_and_named() {
    let cases = [
        (
            "20-agent-daemonset.yaml",
            "hostPID: true",
            "hostPid: true",
            "spec.template.spec.hostPid",
        ),
        (
            "20-agent-daemonset.yaml",
            "readOnlyRootFilesystem: true",
            "readOnlyRootFileSystem: true",
            "readOnlyRootFileSystem: unknown field",
        ),
        (
            "30-agent-service.yaml",
            "targetPort: metrics",
            "targetport: metrics",
            "targetport",
        ),
        (
            "10-agent-rbac.yaml",
            "verbs: [\"create\"]",
            "verb: [\"create\"]",
            "verb",
        ),
        (
            "monitoring/servicemonitor.yaml",
            "scrapeTimeout: 10s",
            "scrapeTimout: 10s",
            "scrapeTimout",
        ),
        (
            "checkup/30-job.yaml",
            "backoffLimit: 0",
            "backOffLimit: 0",
            "spec.backOffLimit",
        ),
        ("kustomization.yaml", "newTag: 0.1.0", "tag: 0.1.0", "tag"),
    ];
    for (file, from, to, expected) in cases {
        let text = std::fs::read_to_string(deploy_dir().join(file)).unwrap();
        assert!(text.contains(from), "{file} has no {from:?}");
        let broken = text.replacen(from, to, 1);
        let errors: Vec<String> = documents(&broken)
            .unwrap()
            .iter()
            .filter_map(|d| check(d).err())
            .collect();
        assert!(
            errors.iter().any(|e| e.contains(expected)),
            "{file} with {to:?}: {errors:?}"
        );
    }
    // A value of the wrong type is caught too (a port as a list).
    let text = std::fs::read_to_string(deploy_dir().join("30-agent-service.yaml")).unwrap();
    let broken = text.replace("port: 9464", "port: [9464]");
    assert!(documents(&broken)
        .unwrap()
        .iter()
        .any(|d| check(d).is_err()));
}

fn rules_of(objects: &[(PathBuf, Object)]) -> Vec<(String, &PolicyRule)> {
    let mut out = Vec::new();
    for (_, object) in objects {
        let (name, rules) = match object {
            Object::ClusterRole(r) => (
                format!("ClusterRole/{}", r.metadata.name.as_deref().unwrap()),
                &r.rules,
            ),
            Object::Role(r) => (
                format!("Role/{}", r.metadata.name.as_deref().unwrap()),
                &r.rules,
            ),
            _ => continue,
        };
        for rule in rules.iter().flatten() {
            out.push((name.clone(), rule));
        }
    }
    out
}

/// (apiGroup, resource, verb, resourceName or "") of a role's rules.
fn triples(rules: &[&PolicyRule]) -> BTreeSet<(String, String, String, String)> {
    let mut out = BTreeSet::new();
    for rule in rules {
        let names = rule.resource_names.clone().unwrap_or_default();
        let names = if names.is_empty() {
            vec![String::new()]
        } else {
            names
        };
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    for name in &names {
                        out.insert((group.clone(), resource.clone(), verb.clone(), name.clone()));
                    }
                }
            }
        }
    }
    out
}

fn set(items: &[(&str, &str, &str, &str)]) -> BTreeSet<(String, String, String, String)> {
    items
        .iter()
        .map(|(g, r, v, n)| (g.to_string(), r.to_string(), v.to_string(), n.to_string()))
        .collect()
}

#[test]
fn rbac_is_least_privilege() {
    let objects = all_objects();
    let rules = rules_of(&objects);
    assert!(!rules.is_empty());
    for (role, rule) in &rules {
        let fields = [
            ("verbs", Some(&rule.verbs)),
            ("apiGroups", rule.api_groups.as_ref()),
            ("resources", rule.resources.as_ref()),
            ("resourceNames", rule.resource_names.as_ref()),
        ];
        for (field, values) in fields {
            for value in values.into_iter().flatten() {
                assert!(
                    !value.contains('*'),
                    "{role}: wildcard in {field}: {value:?}"
                );
            }
        }
        // The one non-resource URL: what the agents' metrics endpoint
        // asks a SubjectAccessReview about, granted to the scraper.
        if let Some(urls) = &rule.non_resource_urls {
            assert_eq!(role, "ClusterRole/migverify-metrics-reader");
            assert_eq!(urls, &["/metrics"]);
            assert_eq!(rule.verbs, ["get"]);
        }
        assert!(
            !rule
                .verbs
                .iter()
                .any(|v| ["escalate", "bind", "impersonate", "deletecollection"]
                    .contains(&v.as_str())),
            "{role}: {:?}",
            rule.verbs
        );
    }
    let of = |name: &str| -> Vec<&PolicyRule> {
        rules
            .iter()
            .filter(|(r, _)| r == name)
            .map(|(_, rule)| *rule)
            .collect()
    };
    // docs/agent.md's list, exactly.
    let read = ["get", "list", "watch"];
    let mut agent = Vec::new();
    for (group, resource, verbs) in [
        ("kubevirt.io", "virtualmachineinstances", &read[..]),
        (
            "kubevirt.io",
            "virtualmachineinstancemigrations",
            &read[..2],
        ),
        ("kubevirt.io", "kubevirts", &read[..2]),
        ("hco.kubevirt.io", "hyperconvergeds", &read[..2]),
        ("migrations.kubevirt.io", "migrationpolicies", &read[..2]),
        (
            "k8s.cni.cncf.io",
            "network-attachment-definitions",
            &read[..2],
        ),
        ("", "pods", &read[..]),
        ("", "events", &["create"][..]),
        ("authentication.k8s.io", "tokenreviews", &["create"][..]),
        (
            "authorization.k8s.io",
            "subjectaccessreviews",
            &["create"][..],
        ),
    ] {
        for verb in verbs {
            agent.push((group, resource, *verb, ""));
        }
    }
    assert_eq!(triples(&of("ClusterRole/migverify-agent")), set(&agent));

    let cm = "migverify-checkup-config";
    let checkup = set(&[
        ("", "configmaps", "get", cm),
        ("", "configmaps", "patch", cm),
        (
            "k8s.cni.cncf.io",
            "network-attachment-definitions",
            "get",
            "",
        ),
        ("", "pods", "create", ""),
        ("", "pods", "get", ""),
        ("", "pods", "delete", "migverify-checkup-config-server"),
        ("", "pods", "delete", "migverify-checkup-config-client"),
        ("", "pods/log", "get", "migverify-checkup-config-server"),
        ("", "pods/log", "get", "migverify-checkup-config-client"),
    ]);
    assert_eq!(triples(&of("Role/migverify-checkup")), checkup);

    // Prometheus may discover the agents' pods and read /metrics, nothing more.
    assert_eq!(
        triples(&of("Role/prometheus-k8s")),
        set(&[
            ("", "services", "get", ""),
            ("", "services", "list", ""),
            ("", "services", "watch", ""),
            ("", "endpoints", "get", ""),
            ("", "endpoints", "list", ""),
            ("", "endpoints", "watch", ""),
            ("", "pods", "get", ""),
            ("", "pods", "list", ""),
            ("", "pods", "watch", ""),
        ])
    );
    // Bound cluster-wide: the agent, and Prometheus to /metrics only; the
    // checkup within its namespace.
    for (_, object) in &objects {
        if let Object::ClusterRoleBinding(b) = object {
            let subjects: Vec<_> = b
                .subjects
                .iter()
                .flatten()
                .map(|s| (s.namespace.as_deref().unwrap_or(""), s.name.as_str()))
                .collect();
            match b.role_ref.name.as_str() {
                "migverify-agent" => assert_eq!(subjects, [("migverify", "migverify-agent")]),
                "migverify-metrics-reader" => {
                    assert_eq!(subjects, [("openshift-monitoring", "prometheus-k8s")])
                }
                other => panic!("unexpected ClusterRoleBinding to {other}"),
            }
        }
    }
}

/// The pieces name each other consistently: accounts exist, bindings point
/// at roles and accounts that exist, the Service selects the agent's pods
/// on its metrics port, the ServiceMonitor selects the Service, the probes
/// and the listen flag use that port, the Job reads the example ConfigMap
/// its Role grants, and the kustomization lists every top-level manifest.
#[test]
fn manifests_refer_to_each_other_consistently() {
    let objects = all_objects();
    let mut accounts = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for (_, object) in &objects {
        match object {
            Object::ServiceAccount(a) => {
                accounts.insert((
                    a.metadata.namespace.clone().unwrap(),
                    a.metadata.name.clone().unwrap(),
                ));
            }
            Object::ClusterRole(r) => {
                roles.insert(("ClusterRole", None, r.metadata.name.clone().unwrap()));
            }
            Object::Role(r) => {
                roles.insert((
                    "Role",
                    r.metadata.namespace.clone(),
                    r.metadata.name.clone().unwrap(),
                ));
            }
            _ => {}
        }
    }
    let find = |f: &dyn Fn(&Object) -> bool| objects.iter().map(|(_, o)| o).find(|o| f(o)).unwrap();
    // Every namespaced object lives in migverify (created by 00-namespace.yaml),
    // the checkup's in migverify-checkup (checkup/00-namespace.yaml).
    for (file, object) in &objects {
        let namespace = match object {
            Object::ServiceAccount(o) => &o.metadata.namespace,
            Object::Role(o) => &o.metadata.namespace,
            Object::RoleBinding(o) => &o.metadata.namespace,
            Object::DaemonSet(o) => &o.metadata.namespace,
            Object::Service(o) => &o.metadata.namespace,
            Object::ConfigMap(o) => &o.metadata.namespace,
            Object::Job(o) => &o.metadata.namespace,
            Object::ServiceMonitor(o) => &o.metadata.namespace,
            Object::PrometheusRule(o) => &o.metadata.namespace,
            Object::NetworkPolicy(o) => &o.metadata.namespace,
            _ => continue,
        };
        let expected = if file.parent().is_some_and(|d| d.ends_with("checkup")) {
            "migverify-checkup"
        } else {
            "migverify"
        };
        assert_eq!(namespace.as_deref(), Some(expected), "{}", file.display());
    }
    for (_, object) in &objects {
        let (kind, namespace, role_ref, subjects) = match object {
            Object::ClusterRoleBinding(b) => ("ClusterRole", None, &b.role_ref, &b.subjects),
            Object::RoleBinding(b) => (
                "Role",
                b.metadata.namespace.clone(),
                &b.role_ref,
                &b.subjects,
            ),
            _ => continue,
        };
        assert_eq!(role_ref.kind, kind);
        assert!(
            roles.contains(&(kind, namespace, role_ref.name.clone())),
            "{role_ref:?}"
        );
        for s in subjects.iter().flatten() {
            assert_eq!(s.kind, "ServiceAccount");
            // The platform Prometheus's account is OpenShift's, not ours.
            let external = (s.namespace.as_deref(), s.name.as_str())
                == (Some("openshift-monitoring"), "prometheus-k8s");
            assert!(
                external || accounts.contains(&(s.namespace.clone().unwrap(), s.name.clone())),
                "{s:?}"
            );
        }
    }

    let Object::DaemonSet(ds) = find(&|o| matches!(o, Object::DaemonSet(_))) else {
        unreachable!()
    };
    let spec = ds.spec.as_ref().unwrap();
    let pod_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    let selector = spec.selector.match_labels.clone().unwrap();
    assert!(selector.iter().all(|(k, v)| pod_labels.get(k) == Some(v)));
    let pod = spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.host_pid, Some(true));
    assert!(accounts.contains(&(
        "migverify".into(),
        pod.service_account_name.clone().unwrap()
    )));
    assert!(pod
        .tolerations
        .iter()
        .flatten()
        .any(|t| t.operator.as_deref() == Some("Exists") && t.key.is_none()));
    let container = &pod.containers[0];
    let args = container.args.clone().unwrap();
    assert_eq!(args[0], "agent");
    assert!(args.contains(&"--node-name=$(NODE_NAME)".to_string()));
    assert!(container.env.iter().flatten().any(|e| e.name == "NODE_NAME"
        && e.value_from
            .as_ref()
            .and_then(|v| v.field_ref.as_ref())
            .map(|f| f.field_path.as_str())
            == Some("spec.nodeName")));
    // The arguments are ones `migverify agent` accepts.
    let argv = |args: &[String]| {
        std::iter::once("migverify".to_string())
            .chain(args.iter().cloned())
            .collect::<Vec<_>>()
    };
    {
        use clap::Parser as _;
        let expanded: Vec<String> = args
            .iter()
            .map(|a| a.replace("$(NODE_NAME)", "worker-0"))
            .collect();
        verifier::cli::Cli::try_parse_from(argv(&expanded)).unwrap_or_else(|e| panic!("{e}"));
    }
    let port = container
        .ports
        .iter()
        .flatten()
        .find(|p| p.name.as_deref() == Some("metrics"))
        .unwrap();
    let listen = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-listen="))
        .unwrap();
    assert!(
        listen.ends_with(&format!(":{}", port.container_port)),
        "{listen} vs {}",
        port.container_port
    );
    // The probes: the open /healthz of the TLS endpoint.
    for probe in [&container.readiness_probe, &container.liveness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(serde_json::to_value(&get.port).unwrap(), "metrics");
        assert_eq!(get.path.as_deref(), Some("/healthz"));
        assert_eq!(get.scheme.as_deref(), Some("HTTPS"));
    }
    let resources = container.resources.as_ref().unwrap();
    assert!(resources.requests.as_ref().unwrap().contains_key("memory"));
    assert!(resources.limits.as_ref().unwrap().contains_key("memory"));
    let mounts: BTreeMap<_, _> = container
        .volume_mounts
        .iter()
        .flatten()
        .map(|m| (m.name.clone(), m.mount_path.clone()))
        .collect();
    for volume in pod.volumes.iter().flatten() {
        if let Some(host) = &volume.host_path {
            assert_eq!(
                mounts.get(&volume.name),
                Some(&host.path),
                "{}",
                volume.name
            );
        }
    }
    // The serving certificate: the Secret the Service's annotation names,
    // where --metrics-tls-dir reads it.
    let tls = pod
        .volumes
        .iter()
        .flatten()
        .find_map(|v| v.secret.as_ref())
        .unwrap();
    let secret = tls.secret_name.as_deref().unwrap();
    let tls_dir = args
        .iter()
        .find_map(|a| a.strip_prefix("--metrics-tls-dir="))
        .unwrap();
    assert!(mounts.values().any(|m| m == tls_dir));
    assert!(args.contains(&"--metrics-auth".to_string()));
    assert_eq!(
        mounts.get("netns").map(String::as_str),
        Some("/var/run/netns")
    );
    // hostPID: /proc/1/ns/net is the node's namespace.
    assert!(args.contains(&"--node-netns=/proc/1/ns/net".to_string()));

    let Object::Service(svc) = find(&|o| matches!(o, Object::Service(_))) else {
        unreachable!()
    };
    assert_eq!(
        svc.metadata
            .annotations
            .as_ref()
            .unwrap()
            .get("service.beta.openshift.io/serving-cert-secret-name")
            .map(String::as_str),
        Some(secret)
    );
    let svc_spec = svc.spec.as_ref().unwrap();
    assert_eq!(svc_spec.selector.as_ref().unwrap(), &selector);
    let svc_port = &svc_spec.ports.as_ref().unwrap()[0];
    assert_eq!(svc_port.name.as_deref(), Some("metrics"));
    assert_eq!(svc_port.port, port.container_port);

    let Object::ServiceMonitor(sm) = find(&|o| matches!(o, Object::ServiceMonitor(_))) else {
        unreachable!()
    };
    let svc_labels = svc.metadata.labels.clone().unwrap();
    assert!(sm
        .spec
        .selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| svc_labels.get(k) == Some(v)));
    assert_eq!(sm.spec.endpoints[0].port.as_deref(), Some("metrics"));
    assert!(matches!(sm.spec.endpoints[0].scheme, Some(Scheme::Https)));
    assert!(sm.spec.endpoints[0].bearer_token_file.is_some());
    assert_eq!(
        sm.spec.namespace_selector.as_ref().unwrap().match_names,
        ["migverify"]
    );

    let Object::Job(job) = find(&|o| matches!(o, Object::Job(_))) else {
        unreachable!()
    };
    let job_pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert!(accounts.contains(&(
        "migverify-checkup".into(),
        job_pod.service_account_name.clone().unwrap()
    )));
    let env: BTreeMap<_, _> = job_pod.containers[0]
        .env
        .iter()
        .flatten()
        .map(|e| (e.name.as_str(), e))
        .collect();
    let cm_name = env["CONFIGMAP_NAME"].value.clone().unwrap();
    let Object::ConfigMap(cm) = find(&|o| matches!(o, Object::ConfigMap(_))) else {
        unreachable!()
    };
    assert_eq!(cm.metadata.name.as_deref(), Some(cm_name.as_str()));
    // The example is a configuration the checkup accepts.
    let config =
        verifier::checkup::config::Config::parse(cm.data.as_ref().unwrap(), "migverify-checkup")
            .unwrap_or_else(|e| panic!("the example ConfigMap: {e}"));
    assert!(config.duration < config.timeout);
    assert!(
        config.timeout.as_secs()
            < job.spec.as_ref().unwrap().active_deadline_seconds.unwrap() as u64,
        "the Job's deadline leaves the checkup time to write its status"
    );
    for var in ["CONFIGMAP_NAMESPACE", "POD_NAME", "POD_UID"] {
        assert!(env[var].value_from.is_some(), "{var} from the downward API");
    }
    assert_eq!(
        job_pod.containers[0].args.as_deref(),
        Some(&["checkup".to_string()][..])
    );
    let context = job_pod.containers[0].security_context.as_ref().unwrap();
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(
        job_pod.security_context.as_ref().unwrap().run_as_non_root,
        Some(true)
    );
    // The agent's and the checkup's image are the same.
    assert_eq!(job_pod.containers[0].image, container.image);

    let Object::Kustomization(k) = find(&|o| matches!(o, Object::Kustomization(_))) else {
        unreachable!()
    };
    let top: BTreeSet<String> = std::fs::read_dir(deploy_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(k.resources.iter().cloned().collect::<BTreeSet<_>>(), top);
    let image = container.image.as_deref().unwrap();
    assert!(k
        .images
        .iter()
        .any(|i| image.starts_with(&format!("{}:", i.name))));
}
