//! VMIs and VMIMs as KubeVirt writes them: did the migration finish or
//! fail, and where did its target listen (the seed's verification step,
//! made exact)? `completed`/`failed` are omitted when false, a VMIM can be
//! `Failed` with no `migrationState`, `targetDirectMigrationNodePorts` has
//! string keys and a 0 value (the control channel): all normal.

use std::net::IpAddr;

use super::{findings::*, networks::MainNetworks};
use crate::{
    config::{documents::Object, Cidr},
    intent::vmi::MigrationStatus,
};

/// What is known of the migration network, to judge target addresses by.
#[derive(Debug, Default)]
pub struct MigrationNetwork {
    /// The ranges a target address may be in to count as on it.
    pub ranges: Vec<Cidr>,
    /// Whether `ranges` are the migration network's (from the named NAD or
    /// `--cidr`), not merely every NAD given.
    pub configured: bool,
    /// Whether HyperConverged or KubeVirt names a migration network at all.
    pub named: bool,
}

/// The enumerations of `status.migrationState` (KubeVirt core/v1 types.go).
const ENUMS: [(&str, &[&str]); 3] = [
    ("migrationNetworkType", &["Pod", "Migration"]),
    ("mode", &["PreCopy", "PostCopy", "Paused"]),
    ("abortStatus", &["Succeeded", "Failed", "Aborting"]),
];

/// One VMI or VMIM.
pub fn check(
    object: &Object,
    network: &MigrationNetwork,
    main: &MainNetworks,
    findings: &mut Findings,
) {
    let vmim = object.kind == "VirtualMachineInstanceMigration";
    if vmim {
        let has_vmi = object.value["spec"]["vmiName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        if !has_vmi {
            findings.object(
                object,
                MIG_VMIM_NO_VMI,
                "spec.vmiName",
                "no `spec.vmiName`: the migration names no VMI to move".into(),
                "set `spec.vmiName` to the VirtualMachineInstance's name".into(),
            );
        }
    }
    let status = MigrationStatus::read(&object.value);
    let state = &object.value["status"]["migrationState"];
    for (key, values) in ENUMS {
        if let Some(value) = state[key].as_str().filter(|v| !values.contains(v)) {
            findings.object(
                object,
                FIELD_ENUM,
                &format!("status.migrationState.{key}"),
                format!(
                    "`{key}` {value:?} is none of {}: migverify cannot say what it means",
                    values.join(", ")
                ),
                "nothing to fix in the object; a newer KubeVirt may have added the value".into(),
            );
        }
    }
    let failed_phase = vmim && status.phase.as_deref() == Some("Failed");
    if failed_phase || status.failed {
        failed(object, &status, failed_phase, findings);
    } else if vmim && status.unfinished() {
        let phase = status.phase.as_deref().unwrap_or_default();
        let waiting = if status.conditions.is_empty() {
            String::new()
        } else {
            format!(" Its conditions: {}.", status.conditions.join(", "))
        };
        findings.object(
            object,
            MIG_NOT_FINISHED,
            "status.phase",
            format!(
                "the migration is in phase {phase}, not finished: nothing has moved yet, so there is no network to \
                 judge.{waiting}"
            ),
            format!(
                "see what it waits for: `kubectl describe vmim {}{}`; check again when it is Succeeded or Failed",
                object.name.as_deref().unwrap_or("NAME"),
                object.namespace.as_deref().map(|n| format!(" -n {n}")).unwrap_or_default()
            ),
        );
    }
    // A VMIM without migrationState has nothing to say about the network.
    if !vmim || status.has_state {
        target_address(object, &status, network, main, findings);
    }
}

fn failed(object: &Object, status: &MigrationStatus, phase: bool, findings: &mut Findings) {
    let reason = status
        .failure_reason
        .as_deref()
        .map(|r| format!(" KubeVirt's reason: {r}."))
        .unwrap_or_default();
    let recorded = if status.has_state {
        ""
    } else {
        " No migrationState was recorded: neither the target nor the network is known."
    };
    let (path, what) = if phase {
        ("status.phase", "the migration is in phase Failed")
    } else {
        (
            "status.migrationState.failed",
            "`migrationState.failed` is true",
        )
    };
    findings.object(
        object,
        MIG_FAILED,
        path,
        format!("FAIL: {what}: the VM did not move.{reason}{recorded}"),
        "find the cause in the target virt-launcher pod's events and virt-handler's log on both nodes, then migrate \
         again"
            .into(),
    );
}

/// The seed's verification step, made exact: where did the target listen?
fn target_address(
    object: &Object,
    status: &MigrationStatus,
    network: &MigrationNetwork,
    main: &MainNetworks,
    findings: &mut Findings,
) {
    let path = "status.migrationState.targetNodeAddress";
    let Some(text) = status.target_address.as_deref() else {
        let message = if status.has_state
            && !status.completed
            && !status.failed
            && !status.unfinished()
        {
            "no targetNodeAddress: the migration never reached a listening target (completed and failed are \
             omitted when false, so this state is no success either)"
        } else {
            "no targetNodeAddress: no migration has reached its target yet, so there is nothing to confirm"
        };
        findings.object(
            object,
            VMI_NO_TARGET,
            path,
            message.into(),
            "check again during or after a migration: `oc get vmi NAME -o yaml`".into(),
        );
        return;
    };
    let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        findings.object(
            object,
            VMI_TARGET_INVALID,
            path,
            format!("targetNodeAddress {text:?} is not an IP address"),
            "read it again from the cluster; KubeVirt writes a plain IP".into(),
        );
        return;
    };
    let which = if network.configured {
        "the migration network"
    } else {
        "a secondary network given"
    };
    let recorded = status.network_type.as_deref();
    if let Some(range) = network.ranges.iter().find(|r| r.contains(ip)) {
        findings.object(
            object,
            VMI_TARGET_ON_MIGRATION_NETWORK,
            path,
            format!("PASS: the target listened on {ip}, inside {which}'s range {range}: the migration used it"),
            "nothing to fix".into(),
        );
    } else if let Some(main_network) = main.containing(ip) {
        findings.object(
            object,
            VMI_TARGET_ON_POD_NETWORK,
            path,
            format!(
                "FAIL: the target listened on {ip}, inside the {} {}: the migration crossed the main network, not the \
                 migration network (virt-handler had no migration0 and advertised its pod IP)",
                main_network.role, main_network.cidr
            ),
            fix_fallback(),
        );
    } else if network.configured {
        let ranges: Vec<String> = network.ranges.iter().map(ToString::to_string).collect();
        findings.object(
            object,
            VMI_TARGET_OUTSIDE_MIGRATION_NETWORK,
            path,
            format!(
                "FAIL: the target listened on {ip}, outside the migration network's range {}: the migration did not \
                 use the migration network (virt-handler advertises migration0's address when it has one)",
                ranges.join(", ")
            ),
            fix_fallback(),
        );
    } else if recorded == Some("Pod") && network.named {
        findings.object(
            object,
            VMI_TARGET_ON_POD_NETWORK,
            path,
            format!(
                "FAIL: KubeVirt recorded migrationNetworkType Pod for the migration to {ip}, though a migration \
                 network is named: it crossed the pod network"
            ),
            fix_fallback(),
        );
    } else if recorded == Some("Migration") {
        findings.object(
            object,
            VMI_TARGET_ON_MIGRATION_NETWORK,
            path,
            format!(
                "PASS: KubeVirt recorded migrationNetworkType Migration: the target listened on {ip}, on migration0"
            ),
            "nothing to fix".into(),
        );
    } else {
        let known = if network.ranges.is_empty() && main.is_empty() {
            "no migration range or main network was given to compare with".to_string()
        } else {
            format!(
                "it is outside {} and every known main network",
                if network.ranges.is_empty() {
                    "any migration range".to_string()
                } else {
                    format!("{which}'s range")
                }
            )
        };
        findings.object(
            object,
            VMI_TARGET_UNKNOWN_NETWORK,
            path,
            format!("the target listened on {ip}, but {known}: which network carried the migration is unknown"),
            "pass the migration NetworkAttachmentDefinition (or --cidr) and the cluster Network config (or \
             --pod-cidr) too"
                .into(),
        );
    }
}

fn fix_fallback() -> String {
    "check the migration NetworkAttachmentDefinition and that virt-handler pods restarted with migration0: \
     `migverify check --host` on a node"
        .into()
}
