//! What the pods may do: no `privileged: true` anywhere in deploy/; the
//! agent with every capability dropped but exactly the set the agent checks
//! for at start (`dataplane::privileges::AGENT`), the RuntimeDefault
//! seccomp profile, no privilege escalation, a read-only root; the checkup
//! in a namespace of its own at the `restricted` Pod Security level, its
//! pods within that level; a NetworkPolicy that admits only Prometheus to
//! the agents' metrics port.

use std::collections::BTreeSet;

use verifier::dataplane::privileges::AGENT;

use super::typed::*;

#[test]
fn no_pod_is_privileged_and_the_agent_holds_exactly_its_capabilities() {
    for file in manifest_files() {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !text.contains("privileged: true"),
            "{}: privileged: true",
            file.display()
        );
    }
    let objects = all_objects();
    let ds = objects
        .iter()
        .find_map(|(_, o)| match o {
            Object::DaemonSet(ds) => Some(ds),
            _ => None,
        })
        .unwrap();
    let pod = ds.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
    assert_eq!(
        pod.security_context
            .as_ref()
            .and_then(|c| c.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let context = pod.containers[0].security_context.as_ref().unwrap();
    assert_ne!(context.privileged, Some(true));
    assert_eq!(context.allow_privilege_escalation, Some(false));
    assert_eq!(context.read_only_root_filesystem, Some(true));
    let capabilities = context.capabilities.as_ref().unwrap();
    assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
    // Kubernetes names capabilities without the CAP_ prefix.
    let added: BTreeSet<String> = capabilities.add.iter().flatten().cloned().collect();
    let checked: BTreeSet<String> = AGENT
        .iter()
        .map(|need| {
            need.capability
                .name()
                .trim_start_matches("CAP_")
                .to_string()
        })
        .collect();
    assert_eq!(
        added, checked,
        "the DaemonSet adds what the agent checks for"
    );
}

#[test]
fn the_checkup_has_a_restricted_namespace_of_its_own() {
    let objects = all_objects();
    let namespaces: Vec<_> = objects
        .iter()
        .filter_map(|(file, o)| match o {
            Object::Namespace(ns) => Some((file, ns)),
            _ => None,
        })
        .collect();
    let level = |name: &str| {
        let (_, ns) = namespaces
            .iter()
            .find(|(_, ns)| ns.metadata.name.as_deref() == Some(name))
            .unwrap_or_else(|| panic!("no Namespace {name}"));
        let labels = ns.metadata.labels.clone().unwrap();
        labels
            .get("pod-security.kubernetes.io/enforce")
            .cloned()
            .unwrap()
    };
    // hostPID and added capabilities are beyond baseline: the agent's
    // namespace is at the only level above it, and holds nothing else.
    assert_eq!(level("migverify"), "privileged");
    assert_eq!(level("migverify-checkup"), "restricted");
    for (file, object) in &objects {
        let in_checkup = file.parent().is_some_and(|d| d.ends_with("checkup"));
        if let Object::Job(job) = object {
            assert!(in_checkup);
            let pod = job.spec.as_ref().unwrap().template.spec.as_ref().unwrap();
            let pod_context = pod.security_context.as_ref().unwrap();
            assert_eq!(pod_context.run_as_non_root, Some(true));
            assert_eq!(
                pod_context
                    .seccomp_profile
                    .as_ref()
                    .map(|p| p.type_.as_str()),
                Some("RuntimeDefault")
            );
            let context = pod.containers[0].security_context.as_ref().unwrap();
            assert_eq!(context.allow_privilege_escalation, Some(false));
            let capabilities = context.capabilities.as_ref().unwrap();
            assert_eq!(capabilities.drop.as_deref(), Some(&["ALL".to_string()][..]));
            assert!(capabilities.add.is_none());
        }
    }
}

#[test]
fn only_prometheus_reaches_the_agents_metrics() {
    let objects = all_objects();
    let policy = objects
        .iter()
        .find_map(|(_, o)| match o {
            Object::NetworkPolicy(p) => Some(p),
            _ => None,
        })
        .expect("a NetworkPolicy");
    let spec = policy.spec.as_ref().unwrap();
    let selected = spec
        .pod_selector
        .as_ref()
        .unwrap()
        .match_labels
        .clone()
        .unwrap();
    assert_eq!(
        selected
            .get("app.kubernetes.io/component")
            .map(String::as_str),
        Some("agent")
    );
    assert_eq!(
        spec.policy_types.as_deref(),
        Some(&["Ingress".to_string()][..])
    );
    let ingress = spec.ingress.as_ref().unwrap();
    assert_eq!(ingress.len(), 1);
    let ports = ingress[0].ports.as_ref().unwrap();
    assert_eq!(
        serde_json::to_value(&ports[0].port).unwrap(),
        "metrics",
        "the metrics port only"
    );
    for peer in ingress[0].from.as_ref().unwrap() {
        assert!(peer.namespace_selector.is_some() && peer.pod_selector.is_some());
    }
}
