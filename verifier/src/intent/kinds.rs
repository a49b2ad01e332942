//! Which kind an object is: the kinds migverify reads, the apiVersions the
//! API server serves each under, and near misses (the kind right but for
//! letter case, or under a group of its family that does not serve it).
//! A kind alone never selects a reader: Multus' legacy `Network` is not
//! OpenShift's cluster `Network` config.

/// One kind migverify reads.
#[derive(Debug, PartialEq, Eq)]
pub struct Kind {
    pub name: &'static str,
    /// Every apiVersion the API server serves it under, the preferred first.
    pub api_versions: &'static [&'static str],
    /// The suffix its group shares with its family's other groups
    /// (`kubevirt.io`); empty for the core group, which has no family.
    family: &'static str,
}

pub const NAD: Kind = Kind {
    name: "NetworkAttachmentDefinition",
    api_versions: &["k8s.cni.cncf.io/v1"],
    family: "cni.cncf.io",
};
pub const HYPERCONVERGED: Kind = Kind {
    name: "HyperConverged",
    api_versions: &["hco.kubevirt.io/v1beta1", "hco.kubevirt.io/v1"],
    family: "kubevirt.io",
};
/// KubeVirt still serves its CRDs under the deprecated v1alpha3 too.
pub const KUBEVIRT: Kind = Kind {
    name: "KubeVirt",
    api_versions: &["kubevirt.io/v1", "kubevirt.io/v1alpha3"],
    family: "kubevirt.io",
};
pub const MIGRATION_POLICY: Kind = Kind {
    name: "MigrationPolicy",
    api_versions: &["migrations.kubevirt.io/v1alpha1"],
    family: "kubevirt.io",
};
pub const VMI: Kind = Kind {
    name: "VirtualMachineInstance",
    api_versions: &["kubevirt.io/v1", "kubevirt.io/v1alpha3"],
    family: "kubevirt.io",
};
pub const VMIM: Kind = Kind {
    name: "VirtualMachineInstanceMigration",
    api_versions: &["kubevirt.io/v1", "kubevirt.io/v1alpha3"],
    family: "kubevirt.io",
};
/// OpenShift's cluster network configuration (the main networks).
pub const NETWORK_CONFIG: Kind = Kind {
    name: "Network",
    api_versions: &["config.openshift.io/v1", "operator.openshift.io/v1"],
    family: "openshift.io",
};
/// Only the legacy `kubevirt-config` ConfigMap means anything to migverify.
pub const CONFIG_MAP: Kind = Kind {
    name: "ConfigMap",
    api_versions: &["v1"],
    family: "",
};
/// Nodes are counted: each runs a virt-handler that needs a migration address.
pub const NODE: Kind = Kind {
    name: "Node",
    api_versions: &["v1"],
    family: "",
};

pub const KINDS: &[&Kind] = &[
    &NAD,
    &HYPERCONVERGED,
    &KUBEVIRT,
    &MIGRATION_POLICY,
    &VMI,
    &VMIM,
    &NETWORK_CONFIG,
    &CONFIG_MAP,
    &NODE,
];

/// What an object's `kind` and `apiVersion` make it.
#[derive(Debug, PartialEq, Eq)]
pub enum Recognized {
    /// A kind migverify reads, under an apiVersion that serves it.
    Exact(&'static Kind),
    /// The kind meant, written with other letter case (`Kubevirt`).
    NearMiss(&'static Kind),
    /// The kind, under a group of its family or a version that does not
    /// serve it (MigrationPolicy in `kubevirt.io/v1alpha1`).
    OtherVersion(&'static Kind),
    /// Not a kind migverify reads (or one of the same name from another
    /// product, such as Multus' legacy `kubernetes.cni.cncf.io` Network).
    Unknown,
}

/// The group of an apiVersion (`""` for the core `v1`).
pub fn group(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(group, _)| group)
}

impl Kind {
    fn of_family(&self, api_version: &str) -> bool {
        let group = group(api_version);
        self.api_versions.contains(&api_version)
            || self.api_versions.iter().any(|v| self::group(v) == group)
            || (!self.family.is_empty() && !group.is_empty() && group.ends_with(self.family))
    }

    /// The apiVersion to write.
    pub fn preferred(&self) -> &'static str {
        self.api_versions[0]
    }
}

pub fn recognize(kind: &str, api_version: &str) -> Recognized {
    if let Some(known) = KINDS.iter().find(|k| k.name == kind) {
        return if known.api_versions.contains(&api_version) {
            Recognized::Exact(known)
        } else if known.of_family(api_version) {
            Recognized::OtherVersion(known)
        } else {
            Recognized::Unknown
        };
    }
    match KINDS.iter().find(|k| k.name.eq_ignore_ascii_case(kind)) {
        Some(known) if known.of_family(api_version) => Recognized::NearMiss(known),
        _ => Recognized::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_told_by_kind_and_group() {
        use Recognized::*;
        assert_eq!(recognize("KubeVirt", "kubevirt.io/v1"), Exact(&KUBEVIRT));
        assert_eq!(recognize("Kubevirt", "kubevirt.io/v1"), NearMiss(&KUBEVIRT));
        assert_eq!(
            recognize("MigrationPolicy", "kubevirt.io/v1alpha1"),
            OtherVersion(&MIGRATION_POLICY)
        );
        assert_eq!(
            recognize("HyperConverged", "hco.kubevirt.io/v1alpha1"),
            OtherVersion(&HYPERCONVERGED)
        );
        assert_eq!(recognize("Network", "kubernetes.cni.cncf.io/v1"), Unknown);
        assert_eq!(
            recognize("Network", "operator.openshift.io/v1"),
            Exact(&NETWORK_CONFIG)
        );
        assert_eq!(recognize("ConfigMap", "apps/v1"), Unknown);
        assert_eq!(recognize("VirtualMachine", "kubevirt.io/v1"), Unknown);
        assert_eq!(
            recognize("VirtualMachineInstanceMigration", "kubevirt.io/v1alpha3"),
            Exact(&VMIM)
        );
    }
}
