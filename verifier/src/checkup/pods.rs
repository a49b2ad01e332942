//! The checkup's two pods: `bench serve` on the target node and `bench run`
//! on the source node, both attached to the migration network through
//! Multus as virt-handler is (interface `migration0`), and what their status
//! says (the server's migration address, how the pods are doing).

use std::{collections::BTreeMap, net::IpAddr};

use k8s_openapi::{
    api::core::v1::{
        Affinity, Capabilities, Container, ContainerPort, NodeAffinity, NodeSelector,
        NodeSelectorRequirement, NodeSelectorTerm, Pod, PodSecurityContext, PodSpec, Probe,
        ResourceRequirements, SeccompProfile, SecurityContext, TCPSocketAction, Toleration,
    },
    apimachinery::pkg::{
        api::resource::Quantity,
        apis::meta::v1::{ObjectMeta, OwnerReference},
        util::intstr::IntOrString,
    },
};
use serde::Deserialize;

use super::config::Config;

/// Multus' request and report annotations.
pub const NETWORKS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/networks";
pub const NETWORK_STATUS_ANNOTATION: &str = "k8s.v1.cni.cncf.io/network-status";
/// The interface name virt-handler's migration network gets.
pub const INTERFACE: &str = "migration0";
/// The label every checkup pod carries: the ConfigMap it runs for.
pub const CHECKUP_LABEL: &str = "migverify.example.invalid/checkup";

/// Which end of the bench a pod is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Server,
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Server => "server",
            Role::Client => "client",
        }
    }
}

/// Where the checkup runs and what it runs with.
#[derive(Clone, Debug)]
pub struct Context {
    /// The ConfigMap's name and namespace; the pods are named after it and
    /// live beside it.
    pub configmap: String,
    pub namespace: String,
    /// The image of `migverify` for the pods.
    pub image: String,
    /// The checkup's own pod, to own the bench pods (garbage collection
    /// when the Job goes); both or neither.
    pub owner: Option<(String, String)>,
    /// The shared token both ends present.
    pub token: String,
}

impl Context {
    pub fn pod_name(&self, role: Role) -> String {
        format!("{}-{}", self.configmap, role.as_str())
    }
}

/// The bench server pod: `bench serve` on the target node's migration
/// network, TLS with a certificate it makes at start for its addresses
/// (migration0's, which Multus gives only then), printing the CA the
/// client pins.
pub fn server(ctx: &Context, config: &Config) -> Pod {
    let args = vec![
        "bench".to_string(),
        "serve".into(),
        "--listen".into(),
        format!("[::]:{}", config.port),
        "--tls-self-signed".into(),
        "--token".into(),
        ctx.token.clone(),
    ];
    let mut container = container(ctx, args, false);
    container.ports = Some(vec![ContainerPort {
        name: Some("bench".into()),
        container_port: i32::from(config.port),
        protocol: Some("TCP".into()),
        ..Default::default()
    }]);
    // Ready once it listens: the client is started only then.
    container.readiness_probe = Some(Probe {
        tcp_socket: Some(TCPSocketAction {
            port: IntOrString::Int(i32::from(config.port)),
            host: None,
        }),
        period_seconds: Some(1),
        ..Default::default()
    });
    pod(ctx, config, Role::Server, &config.target_node, container)
}

/// The bench client pod: `bench run` from the source node's migration
/// network to the server's migration address, over TLS pinned to the CA
/// the server printed (`ca_pem`), JSON report on stdout.
pub fn client(ctx: &Context, config: &Config, peer: IpAddr, ca_pem: &str) -> Pod {
    let mut args: Vec<String> = vec![
        "bench".into(),
        "run".into(),
        "--peer".into(),
        std::net::SocketAddr::new(peer, config.port).to_string(),
        "--tls-ca-pem".into(),
        ca_pem.to_string(),
        "--token".into(),
        ctx.token.clone(),
        "--duration".into(),
        format!("{}", config.duration.as_secs_f64()),
        "--streams".into(),
        config.streams.to_string(),
    ];
    let mut flag = |name: &str, value: Option<u64>| {
        if let Some(value) = value {
            args.push(name.into());
            args.push(value.to_string());
        }
    };
    flag("--vm-memory", config.vm_memory);
    flag(
        "--completion-timeout-per-gib",
        config.completion_timeout_per_gib,
    );
    flag("--progress-timeout", config.progress_timeout);
    flag(
        "--bandwidth-per-migration",
        config.bandwidth_per_migration_mib,
    );
    flag(
        "--parallel-outbound-migrations-per-node",
        config.parallel_outbound_migrations_per_node,
    );
    if config.observe_wire {
        args.push("--iface".into());
        args.push(format!("migration:{INTERFACE}"));
    }
    args.extend(["--output".into(), "json".into()]);
    let container = container(ctx, args, config.observe_wire);
    pod(ctx, config, Role::Client, &config.source_node, container)
}

fn container(ctx: &Context, args: Vec<String>, observe: bool) -> Container {
    let quantity = |q: &str| Quantity(q.to_string());
    Container {
        name: "bench".into(),
        image: Some(ctx.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        args: Some(args),
        // No CPU limit: a throttled bench would measure the quota, not the network.
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".into(), quantity("100m")),
                ("memory".into(), quantity("64Mi")),
            ])),
            limits: Some(BTreeMap::from([("memory".into(), quantity("256Mi"))])),
            ..Default::default()
        }),
        security_context: Some(if observe {
            // The observers: eBPF programs on the pod's own migration0, in
            // its own namespace (no setns): what loading and attaching
            // needs, nothing else (dataplane::privileges), as root because
            // added capabilities take effect for root only. A namespace at
            // the baseline or restricted level refuses this pod.
            SecurityContext {
                run_as_user: Some(0),
                run_as_non_root: Some(false),
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: Some(vec!["BPF".into(), "PERFMON".into(), "NET_ADMIN".into()]),
                }),
                ..Default::default()
            }
        } else {
            SecurityContext {
                allow_privilege_escalation: Some(false),
                read_only_root_filesystem: Some(true),
                capabilities: Some(Capabilities {
                    drop: Some(vec!["ALL".into()]),
                    add: None,
                }),
                ..Default::default()
            }
        }),
        ..Default::default()
    }
}

fn pod(ctx: &Context, config: &Config, role: Role, node: &str, container: Container) -> Pod {
    let network = serde_json::json!([{
        "name": config.nad_name,
        "namespace": config.nad_namespace,
        "interface": INTERFACE,
    }]);
    Pod {
        metadata: ObjectMeta {
            name: Some(ctx.pod_name(role)),
            namespace: Some(ctx.namespace.clone()),
            labels: Some(BTreeMap::from([
                ("app.kubernetes.io/name".into(), "migverify".into()),
                (
                    "app.kubernetes.io/component".into(),
                    format!("checkup-{}", role.as_str()),
                ),
                (CHECKUP_LABEL.into(), ctx.configmap.clone()),
            ])),
            annotations: Some(BTreeMap::from([(
                NETWORKS_ANNOTATION.into(),
                network.to_string(),
            )])),
            owner_references: ctx.owner.as_ref().map(|(name, uid)| {
                vec![OwnerReference {
                    api_version: "v1".into(),
                    kind: "Pod".into(),
                    name: name.clone(),
                    uid: uid.clone(),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        },
        spec: Some(PodSpec {
            restart_policy: Some("Never".into()),
            // On exactly this node, whatever its taints: the node is the question.
            affinity: Some(Affinity {
                node_affinity: Some(NodeAffinity {
                    required_during_scheduling_ignored_during_execution: Some(NodeSelector {
                        node_selector_terms: vec![NodeSelectorTerm {
                            match_fields: Some(vec![NodeSelectorRequirement {
                                key: "metadata.name".into(),
                                operator: "In".into(),
                                values: Some(vec![node.to_string()]),
                            }]),
                            match_expressions: None,
                        }],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            tolerations: Some(vec![Toleration {
                operator: Some("Exists".into()),
                ..Default::default()
            }]),
            security_context: Some(if config.observe_wire && role == Role::Client {
                PodSecurityContext {
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..Default::default()
                }
            } else {
                PodSecurityContext {
                    run_as_non_root: Some(true),
                    run_as_user: Some(65532),
                    run_as_group: Some(65532),
                    seccomp_profile: Some(SeccompProfile {
                        type_: "RuntimeDefault".into(),
                        localhost_profile: None,
                    }),
                    ..Default::default()
                }
            }),
            automount_service_account_token: Some(false),
            termination_grace_period_seconds: Some(5),
            containers: vec![container],
            ..Default::default()
        }),
        status: None,
    }
}

/// One entry of Multus' network-status annotation.
#[derive(Debug, Deserialize)]
struct NetworkStatus {
    #[serde(default)]
    name: String,
    #[serde(default)]
    interface: Option<String>,
    #[serde(default)]
    ips: Vec<String>,
}

/// The pod's address on the migration network, from Multus'
/// network-status annotation: the interface `migration0` (or the NAD's
/// entry), its first global unicast address as virt-handler advertises.
/// `Err` says what is missing.
pub fn migration_address(pod: &Pod, config: &Config) -> Result<IpAddr, String> {
    let annotation = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(NETWORK_STATUS_ANNOTATION))
        .ok_or_else(|| format!("no {NETWORK_STATUS_ANNOTATION} annotation (is Multus running?)"))?;
    let entries: Vec<NetworkStatus> = serde_json::from_str(annotation)
        .map_err(|e| format!("{NETWORK_STATUS_ANNOTATION} is not Multus' list: {e}"))?;
    let nad = format!("{}/{}", config.nad_namespace, config.nad_name);
    let entry = entries
        .iter()
        .find(|e| e.interface.as_deref() == Some(INTERFACE))
        .or_else(|| entries.iter().find(|e| e.name == nad))
        .ok_or_else(|| format!("{NETWORK_STATUS_ANNOTATION} has no {INTERFACE} ({nad})"))?;
    let ips: Vec<IpAddr> = entry.ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    ips.iter()
        .find(|ip| global_unicast(ip))
        .or(ips.first())
        .copied()
        .ok_or_else(|| format!("{INTERFACE} ({nad}) has no address: check the NAD's IPAM"))
}

fn global_unicast(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => !(v4.is_loopback() || v4.is_link_local() || v4.is_unspecified()),
        IpAddr::V6(v6) => {
            !(v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80)
        }
    }
}

/// How a pod is doing, for waiting and for failure reasons.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// Not there yet (scheduling, pulling, starting); the latest word.
    Pending(String),
    /// Running and ready.
    Ready,
    /// Ended: exit code (None when never started) and why.
    Ended { succeeded: bool, detail: String },
    /// It will not get anywhere: a bad image, an unschedulable pod.
    Stuck(String),
}

/// Reads a pod's status into a [`Progress`].
pub fn progress(pod: &Pod) -> Progress {
    let Some(status) = &pod.status else {
        return Progress::Pending("no status yet".into());
    };
    let container = status
        .container_statuses
        .iter()
        .flatten()
        .find(|c| c.name == "bench");
    let phase = status.phase.as_deref().unwrap_or("Pending");
    if matches!(phase, "Succeeded" | "Failed") {
        let terminated = container
            .and_then(|c| c.state.as_ref())
            .and_then(|s| s.terminated.as_ref());
        let detail = match terminated {
            Some(t) => format!(
                "exit code {}{}",
                t.exit_code,
                t.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ),
            None => status.message.clone().unwrap_or_else(|| phase.into()),
        };
        return Progress::Ended {
            succeeded: phase == "Succeeded",
            detail,
        };
    }
    if let Some(waiting) = container
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.waiting.as_ref())
    {
        let reason = waiting.reason.as_deref().unwrap_or("");
        let word = format!(
            "{reason}{}",
            waiting
                .message
                .as_deref()
                .map(|m| format!(": {m}"))
                .unwrap_or_default()
        );
        if matches!(
            reason,
            "ErrImagePull"
                | "ImagePullBackOff"
                | "InvalidImageName"
                | "CreateContainerConfigError"
                | "CreateContainerError"
                | "RunContainerError"
        ) {
            return Progress::Stuck(word);
        }
        return Progress::Pending(word);
    }
    let conditions: Vec<_> = status.conditions.iter().flatten().collect();
    if let Some(unschedulable) = conditions.iter().find(|c| {
        c.type_ == "PodScheduled"
            && c.status == "False"
            && c.reason.as_deref() == Some("Unschedulable")
    }) {
        return Progress::Pending(format!(
            "unschedulable: {}",
            unschedulable.message.as_deref().unwrap_or("")
        ));
    }
    let ready = conditions
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if phase == "Running" && ready {
        return Progress::Ready;
    }
    Progress::Pending(format!(
        "{phase}{}",
        if phase == "Running" {
            ", not ready"
        } else {
            ""
        }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkup::config;
    use serde_json::json;

    fn config() -> Config {
        let data = [
            (config::TIMEOUT, "5m"),
            (config::NAD_NAME, "migration-network"),
            (config::SOURCE_NODE, "worker-0"),
            (config::TARGET_NODE, "worker-1"),
            (config::VM_MEMORY, "2Gi"),
            (config::COMPLETION_TIMEOUT_PER_GIB, "20"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Config::parse(&data, "migverify").unwrap()
    }

    fn ctx() -> Context {
        Context {
            configmap: "mv".into(),
            namespace: "migverify".into(),
            image: "img:1".into(),
            owner: Some(("checkup-abc".into(), "uid-1".into())),
            token: "t0k".into(),
        }
    }

    #[test]
    fn the_pods_are_pinned_attached_and_run_the_bench() {
        let config = config();
        let server = serde_json::to_value(server(&ctx(), &config)).unwrap();
        assert_eq!(server["metadata"]["name"], "mv-server");
        assert_eq!(
            server["spec"]["affinity"]["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                ["matchFields"][0]["values"][0],
            "worker-1"
        );
        let networks: serde_json::Value = serde_json::from_str(
            server["metadata"]["annotations"][NETWORKS_ANNOTATION]
                .as_str()
                .unwrap(),
        )
        .unwrap();
        assert_eq!(
            networks,
            json!([{"name": "migration-network", "namespace": "migverify", "interface": "migration0"}])
        );
        assert_eq!(
            server["spec"]["containers"][0]["args"],
            json!([
                "bench",
                "serve",
                "--listen",
                "[::]:9440",
                "--tls-self-signed",
                "--token",
                "t0k"
            ])
        );
        assert_eq!(server["metadata"]["ownerReferences"][0]["uid"], "uid-1");

        let client = serde_json::to_value(client(
            &ctx(),
            &config,
            "10.200.5.12".parse().unwrap(),
            "PEM",
        ))
        .unwrap();
        assert_eq!(
            client["spec"]["affinity"]["nodeAffinity"]
                ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]
                ["matchFields"][0]["values"][0],
            "worker-0"
        );
        let args: Vec<String> =
            serde_json::from_value(client["spec"]["containers"][0]["args"].clone()).unwrap();
        assert_eq!(
            args.join(" "),
            "bench run --peer 10.200.5.12:9440 --tls-ca-pem PEM --token t0k --duration 10 --streams 8 \
             --vm-memory 2147483648 --completion-timeout-per-gib 20 --output json"
        );
        assert_eq!(
            client["spec"]["containers"][0]["securityContext"]["allowPrivilegeEscalation"],
            false
        );
        // tests/cli.rs parses these same arguments with migverify's own parser.
    }

    #[test]
    fn the_migration_address_from_multus() {
        let config = config();
        let mut pod = server(&ctx(), &config);
        assert!(migration_address(&pod, &config)
            .unwrap_err()
            .contains("no k8s.v1.cni.cncf.io/network-status"));
        let status = json!([
            {"name": "ovn-kubernetes", "interface": "eth0", "ips": ["10.128.0.5"], "default": true},
            {"name": "migverify/migration-network", "interface": "migration0",
             "ips": ["fe80::1", "fd00:5::12", "10.200.5.12"]}
        ]);
        pod.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(NETWORK_STATUS_ANNOTATION.into(), status.to_string());
        assert_eq!(
            migration_address(&pod, &config),
            Ok("fd00:5::12".parse().unwrap())
        );
        let status =
            json!([{"name": "ovn-kubernetes", "interface": "eth0", "ips": ["10.128.0.5"]}]);
        pod.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert(NETWORK_STATUS_ANNOTATION.into(), status.to_string());
        assert!(migration_address(&pod, &config)
            .unwrap_err()
            .contains("has no migration0"));
    }

    #[test]
    fn progress_of_a_pod() {
        let pod = |status: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"name": "p"}, "status": status})).unwrap()
        };
        assert_eq!(
            progress(&pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]}))),
            Progress::Pending("unschedulable: 0/3 nodes".into())
        );
        assert!(matches!(
            progress(&pod(json!({"phase": "Pending", "containerStatuses": [
                {"name": "bench", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}))),
            Progress::Stuck(m) if m == "ImagePullBackOff: not found"
        ));
        assert_eq!(
            progress(&pod(
                json!({"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]})
            )),
            Progress::Ready
        );
        assert_eq!(
            progress(&pod(json!({"phase": "Failed", "containerStatuses": [
                {"name": "bench", "image": "i", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}))),
            Progress::Ended {
                succeeded: false,
                detail: "exit code 1 (Error)".into()
            }
        );
    }
}
