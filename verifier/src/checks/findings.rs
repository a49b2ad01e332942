//! Findings and the catalogue of every check that can raise one.
//!
//! Each check has a stable ID (`MV-AREA-NNN`), a short name and a fixed
//! severity; its doc comment is its catalogue entry, ending in `Fix:` and
//! the fix (each finding's own fix names the exact field or command). `docs/checks.md` is
//! rendered from [`CATALOGUE`] and a test keeps the two equal.

use serde::Serialize;

use crate::config::documents::Object;
pub use crate::verdict::Severity;

/// One kind of finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Check {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// What the check looks at and why it matters for migration.
    pub summary: &'static str,
}

macro_rules! catalogue {
    ($( $(#[doc = $doc:literal])+ $konst:ident = $id:literal $name:literal $severity:ident; )+) => {
        $(
            $(#[doc = $doc])+
            pub const $konst: Check = Check {
                id: $id,
                name: $name,
                severity: Severity::$severity,
                summary: concat!($($doc, "\n"),+),
            };
        )+
        /// Every check, in catalogue order.
        pub const CATALOGUE: &[Check] = &[$($konst),+];
        /// Each ID with the name of its constant, for the test that every
        /// check is raised somewhere.
        #[cfg(test)]
        pub const CATALOGUE_NAMES: &[(&str, &str)] = &[$(($id, stringify!($konst))),+];
    };
}

catalogue! {
    /// The object's kind is not one migverify checks; it was skipped.
    /// Fix: nothing, unless the kind was meant to be one migverify reads.
    INPUT_UNSUPPORTED_KIND = "MV-INPUT-001" "unsupported-kind" Info;
    /// A document without `kind` or `apiVersion` is not a Kubernetes object:
    /// nothing in it can be checked.
    /// Fix: pass objects as `oc get KIND NAME -o yaml` prints them.
    INPUT_NOT_AN_OBJECT = "MV-INPUT-002" "not-an-object" Error;
    /// The object has no `metadata.name`; other objects cannot refer to it.
    /// Fix: add `metadata.name`.
    INPUT_NO_NAME = "MV-INPUT-003" "no-name" Warning;
    /// `kind` is a kind migverify checks up to letter case (`Kubevirt`):
    /// kinds are case-sensitive, and `kubectl apply` answers `no matches for
    /// kind`. The content is still checked as the kind meant.
    /// Fix: write the kind as served (`kind: KubeVirt`).
    INPUT_KIND_NEAR_MISS = "MV-INPUT-004" "kind-near-miss" Error;
    /// A kind migverify checks under an `apiVersion` that does not serve it
    /// (MigrationPolicy in `kubevirt.io/v1alpha1` instead of
    /// `migrations.kubevirt.io/v1alpha1`): `kubectl apply` answers `no matches
    /// for kind`. The content is still checked.
    /// Fix: write the apiVersion that serves the kind
    /// (`migrations.kubevirt.io/v1alpha1`).
    INPUT_API_VERSION_MISMATCH = "MV-INPUT-005" "api-version-mismatch" Error;
    /// A value that is a documentation placeholder left unsubstituted: a
    /// whole `<...>` token (`<network>`, `<migration_policy>`) or an asciidoc
    /// callout marker at the end (`my-secondary-network <1>`). No object can
    /// be named so; as a migration network, virt-handler would ask Multus for
    /// `<network>@migration0` and not start.
    /// Fix: put the real value in place of the placeholder, or delete the
    /// callout marker.
    INPUT_DOC_PLACEHOLDER = "MV-INPUT-006" "doc-placeholder" Error;
    /// A field has the wrong type (a string where a number belongs, ...). The
    /// API server or the CNI plugin rejects it, or reads it as something else.
    /// Fix: write the value in the type named (quote label values and ConfigMap
    /// data: `"true"`).
    FIELD_WRONG_TYPE = "MV-FIELD-001" "wrong-type" Error;
    /// A field the plugin or API does not know. It is ignored, so whatever it
    /// was meant to set (often a misspelt field) does not happen.
    /// Fix: rename it to the field meant (the finding names the nearest), or
    /// remove it.
    FIELD_UNKNOWN = "MV-FIELD-002" "unknown-field" Warning;
    /// A status field holds a value the KubeVirt API does not define
    /// (`migrationNetworkType` other than Pod or Migration, `mode`,
    /// `abortStatus`): migverify cannot say what it means.
    /// Fix: nothing in the object; a newer KubeVirt may have added the value.
    FIELD_ENUM = "MV-FIELD-003" "unknown-enum-value" Warning;

    /// A NetworkAttachmentDefinition without `spec.config`: Multus looks for
    /// a CNI config file of the same name on each node instead.
    /// Fix: put the CNI config in `spec.config` as a JSON string.
    NAD_NO_CONFIG = "MV-NAD-001" "no-config" Warning;
    /// `spec.config` must be the CNI configuration as a JSON *string*; a YAML
    /// mapping there is rejected by the API server.
    /// Fix: quote the JSON: `config: '{...}'` or a `|` block.
    NAD_CONFIG_NOT_STRING = "MV-NAD-002" "config-not-a-string" Error;
    /// `spec.config` is not valid JSON: Multus cannot attach the network and
    /// the pod (virt-handler, for a migration network) does not start.
    /// Fix: correct the JSON (`jq` shows where it breaks); delete documentation
    /// callouts.
    NAD_CONFIG_NOT_JSON = "MV-NAD-003" "config-not-json" Error;
    /// `cniVersion` is not a CNI specification version the plugins implement.
    /// Fix: write `"cniVersion": "0.3.1"`.
    NAD_CNI_VERSION = "MV-NAD-004" "cni-version" Error;
    /// `cniVersion` is missing; the seed's table requires it (0.3.1).
    /// Fix: add `"cniVersion": "0.3.1"`.
    NAD_CNI_VERSION_MISSING = "MV-NAD-005" "cni-version-missing" Warning;
    /// The CNI config's `name` has characters libcni refuses. (No `name` is
    /// fine: Multus fills in the NAD's `metadata.name`.)
    /// Fix: use letters, digits, `-`, `_` and `.`, or leave `name` out.
    NAD_NAME = "MV-NAD-006" "cni-name" Error;
    /// The CNI config has no plugin `type`: nothing would be run.
    /// Fix: add `"type": "macvlan"` (or bridge, ...).
    NAD_TYPE_MISSING = "MV-NAD-007" "type-missing" Error;
    /// A configuration list (`plugins`) with no plugin in it.
    /// Fix: add the interface plugin as the first entry of `plugins`.
    NAD_EMPTY_PLUGIN_LIST = "MV-NAD-008" "empty-plugin-list" Error;
    /// A plugin type whose fields migverify does not check in depth.
    /// Fix: nothing; macvlan and bridge are checked in depth.
    NAD_UNCHECKED_TYPE = "MV-NAD-009" "unchecked-plugin-type" Info;
    /// `mtu` outside what Linux accepts (68..=65535; IPv6 needs 1280).
    /// Fix: set the migration NICs' MTU (`"mtu": 9000`), or remove `mtu`.
    NAD_MTU_RANGE = "MV-NAD-010" "mtu-range" Error;

    /// `vlan` outside 0..=4094: the bridge plugin refuses the config.
    /// Fix: use the VLAN id the migration NICs' switch ports carry, 1 to 4094.
    BRIDGE_VLAN_RANGE = "MV-BRIDGE-001" "vlan-range" Error;
    /// A `vlanTrunk` entry the bridge plugin refuses: an `id` or
    /// `minID`/`maxID` outside 1..=4094, `minID` > `maxID`, or only one of
    /// the two bounds.
    /// Fix: write `{"id": 42}` or `{"minID": 100, "maxID": 200}` with ids 1 to
    /// 4094.
    BRIDGE_TRUNK_ENTRY = "MV-BRIDGE-002" "vlan-trunk-entry" Error;
    /// `vlan` and `vlanTrunk` together: the bridge plugin makes a port
    /// either an access port or a trunk, never both, and refuses the config.
    /// Fix: keep `vlan` for an access port, or only `vlanTrunk`.
    BRIDGE_VLAN_AND_TRUNK = "MV-BRIDGE-003" "vlan-and-trunk" Error;
    /// Overlapping `vlanTrunk` entries: harmless, but a sign of a typo.
    /// Fix: merge or correct the entries.
    BRIDGE_TRUNK_OVERLAP = "MV-BRIDGE-004" "vlan-trunk-overlap" Warning;
    /// `isDefaultGateway: true` with `isGateway: false`: the plugin sets
    /// `isGateway` anyway; the config says the opposite of what happens.
    /// Fix: remove `"isGateway": false`, or set `isDefaultGateway` to false.
    BRIDGE_DEFAULT_GATEWAY_IMPLIES_GATEWAY = "MV-BRIDGE-005" "default-gateway-implies-gateway" Warning;
    /// `ipMasq` without `isGateway`: the bridge has no address to masquerade
    /// behind, so the setting has no effect.
    /// Fix: add `"isGateway": true`, or remove `ipMasq`.
    BRIDGE_IPMASQ_WITHOUT_GATEWAY = "MV-BRIDGE-006" "ipmasq-without-gateway" Warning;
    /// `forceAddress` without `isGateway`: the bridge gets no address, so
    /// there is nothing to force.
    /// Fix: remove `forceAddress`, or add `"isGateway": true`.
    BRIDGE_FORCE_ADDRESS_WITHOUT_GATEWAY = "MV-BRIDGE-007" "force-address-without-gateway" Info;
    /// `preserveDefaultVlan` without `vlan` or `vlanTrunk` has no effect.
    /// Fix: remove `preserveDefaultVlan`.
    BRIDGE_PRESERVE_DEFAULT_VLAN_ALONE = "MV-BRIDGE-008" "preserve-default-vlan-without-vlan" Info;
    /// `vlan: 0` means "no VLAN": the port is untagged.
    /// Fix: remove `vlan`, or set the VLAN id the migration NICs carry.
    BRIDGE_VLAN_ZERO = "MV-BRIDGE-009" "vlan-zero" Info;
    /// `hairpinMode` and `promiscMode` together: older bridge plugins refuse
    /// the pair ("cannot set hairpin mode and promiscuous mode at the same time").
    /// Fix: keep one of the two.
    BRIDGE_HAIRPIN_AND_PROMISC = "MV-BRIDGE-010" "hairpin-and-promisc" Warning;
    /// `isGateway` with no IPAM: there is no address to give the bridge.
    /// Fix: add an `ipam` section, or remove `isGateway`.
    BRIDGE_GATEWAY_WITHOUT_IPAM = "MV-BRIDGE-011" "gateway-without-ipam" Warning;
    /// With a `vlan`, the plugin turns on `vlan_filtering` on the bridge and
    /// tags the pod's port; frames reach other nodes only if the uplink NIC
    /// is also a member of that VLAN (`bridge vlan add vid VLAN dev UPLINK`).
    /// Fix: on every node `bridge vlan add vid VLAN dev UPLINK`.
    BRIDGE_UPLINK_VLAN = "MV-BRIDGE-012" "uplink-must-allow-vlan" Info;

    /// macvlan without `master`: the plugin uses the interface of the node's
    /// default route, which is usually the primary (pod/machine) NIC: the
    /// migration traffic would share the main network's wire.
    /// Fix: name the migration NIC: `"master": "eth1"`.
    MACVLAN_NO_MASTER = "MV-MACVLAN-001" "no-master" Warning;
    /// macvlan `mode` is none of bridge, private, vepa, passthru.
    /// Fix: write `"mode": "bridge"`.
    MACVLAN_MODE = "MV-MACVLAN-002" "mode" Error;

    /// An `ipam` section without `type`: no IPAM plugin runs, the interface
    /// gets no address.
    /// Fix: add `"type": "whereabouts"` (or host-local, static, dhcp).
    IPAM_TYPE_MISSING = "MV-IPAM-001" "type-missing" Error;
    /// An IPAM type migverify does not know (whereabouts, host-local,
    /// static and dhcp are checked).
    /// Fix: use whereabouts for a migration network.
    IPAM_TYPE_UNKNOWN = "MV-IPAM-002" "type-unknown" Warning;
    /// A range or subnet that is not a CIDR (`10.200.5.0/24`).
    /// Fix: write the range as ADDRESS/PREFIX (`10.200.5.0/24`).
    IPAM_RANGE_INVALID = "MV-IPAM-003" "range-invalid" Error;
    /// `range_start`/`range_end` (or host-local's `rangeStart`/`rangeEnd`)
    /// outside the range, or start after end.
    /// Fix: put the bounds inside the range, start before end.
    IPAM_RANGE_BOUNDS = "MV-IPAM-004" "range-bounds" Error;
    /// An `exclude` entry that is not a CIDR or lies outside the range.
    /// Fix: exclude CIDRs inside the range, or remove the entry.
    IPAM_EXCLUDE = "MV-IPAM-005" "exclude" Error;
    /// The range leaves fewer than two addresses to hand out: every node's
    /// virt-handler needs one.
    /// Fix: widen the range or its bounds, or exclude less.
    IPAM_RANGE_EXHAUSTED = "MV-IPAM-006" "range-exhausted" Error;
    /// The range overlaps a main network (pods, services, machines). The seed:
    /// "this range must not overlap the main network's addresses"; routes
    /// would send migration traffic (or pod traffic) the wrong way.
    /// Fix: pick a range no main network uses.
    IPAM_OVERLAPS_MAIN_NETWORK = "MV-IPAM-007" "overlaps-main-network" Error;
    /// No Network config or CIDR flags were given: overlaps with the main
    /// networks were not checked.
    /// Fix: pass the cluster Network config or `--pod-cidr`, `--service-cidr`,
    /// `--machine-cidr`.
    IPAM_MAIN_NETWORKS_UNKNOWN = "MV-IPAM-008" "main-networks-unknown" Info;
    /// static IPAM without a valid `addresses` list.
    /// Fix: write `"addresses": [{"address": "10.200.5.10/24"}]`.
    IPAM_STATIC_ADDRESSES = "MV-IPAM-009" "static-addresses" Error;
    /// The range has host bits set (`10.200.5.7/24`); the network used is the
    /// masked one.
    /// Fix: write the network address (`10.200.5.0/24`).
    IPAM_HOST_BITS = "MV-IPAM-010" "range-host-bits" Info;
    /// whereabouts `node_slice_size` that whereabouts refuses: not a prefix
    /// length, wider than the range it slices, or a range with host bits
    /// (`DivideRangeBySize`).
    /// Fix: a prefix at least as long as the range's (`/24` slices of a `/20`),
    /// on a range written as its network address.
    IPAM_NODE_SLICE = "MV-IPAM-011" "node-slice-size" Error;

    /// The migration network names a NetworkAttachmentDefinition that is not
    /// among the inputs, though others are: virt-handler pods would not start.
    /// Fix: name an existing NetworkAttachmentDefinition, or create it in the
    /// install namespace.
    MIG_NAD_NOT_FOUND = "MV-MIG-001" "network-not-found" Error;
    /// The migration network's NetworkAttachmentDefinition was not given, so
    /// it was not checked.
    /// Fix: pass the NetworkAttachmentDefinition too (`oc get net-attach-def
    /// NAME -n NS -o yaml`).
    MIG_NAD_NOT_GIVEN = "MV-MIG-002" "network-not-given" Warning;
    /// A NetworkAttachmentDefinition of that name exists, but not in the
    /// install namespace, where KubeVirt looks for it.
    /// Fix: create the NetworkAttachmentDefinition in the install namespace.
    MIG_NAD_WRONG_NAMESPACE = "MV-MIG-003" "network-wrong-namespace" Error;
    /// No migration network is configured: migrations cross the pod network.
    /// Fix: create a migration NetworkAttachmentDefinition and name it in the
    /// migration settings.
    MIG_NO_NETWORK = "MV-MIG-004" "no-migration-network" Warning;
    /// `parallelOutboundMigrationsPerNode` above
    /// `parallelMigrationsPerCluster`: the per-node limit can never be reached.
    /// Fix: lower the per-node limit, or raise the per-cluster one.
    MIG_PARALLEL_LIMITS = "MV-MIG-005" "parallel-limits" Warning;
    /// A parallelism limit of 0: no migration can start, node drains hang.
    /// Fix: set it to at least 1.
    MIG_PARALLEL_ZERO = "MV-MIG-006" "parallel-zero" Error;
    /// `completionTimeoutPerGiB` or `progressTimeout` not positive: every
    /// migration is cancelled at once.
    /// Fix: set seconds above 0, or remove the field.
    MIG_TIMEOUT = "MV-MIG-007" "timeout-not-positive" Error;
    /// `bandwidthPerMigration` is not a valid, non-negative quantity.
    /// Fix: write a quantity of bytes per second (`64Mi`; 0 is unlimited).
    MIG_BANDWIDTH_INVALID = "MV-MIG-008" "bandwidth-invalid" Error;
    /// `bandwidthPerMigration` below 1Mi: a quantity without unit is bytes
    /// per second (`64` is 64 B/s, not 64 MiB/s).
    /// Fix: write the unit: `64Mi` is 64 MiB/s.
    MIG_BANDWIDTH_TINY = "MV-MIG-009" "bandwidth-tiny" Warning;
    /// With `--vm-memory`: `bandwidthPerMigration` is below the rate the
    /// completion budget needs, so such a VM can never finish migrating.
    /// Fix: raise `bandwidthPerMigration` (0 is unlimited) or
    /// `completionTimeoutPerGiB`.
    MIG_BUDGET_UNREACHABLE = "MV-MIG-010" "budget-unreachable" Error;
    /// The migration network's IPAM cannot give each node's virt-handler its
    /// own address: no IPAM, `static` (the same address on every node) or
    /// `host-local` (each node allocates alone, so addresses repeat).
    /// Fix: whereabouts IPAM with one cluster-wide range.
    MIG_NAD_IPAM = "MV-MIG-011" "network-ipam" Error;
    /// HyperConverged and KubeVirt CRs name different migration networks;
    /// the HyperConverged operator overwrites the KubeVirt CR.
    /// Fix: set the network in HyperConverged only.
    MIG_HCO_KUBEVIRT_DISAGREE = "MV-MIG-012" "hco-kubevirt-disagree" Warning;
    /// A VirtualMachineInstanceMigration without `spec.vmiName`.
    /// Fix: set `spec.vmiName`.
    MIG_VMIM_NO_VMI = "MV-MIG-013" "vmim-no-vmi" Error;
    /// The migration failed: a VirtualMachineInstanceMigration in phase
    /// `Failed`, or `status.migrationState.failed: true`. Whatever network it
    /// was meant to use, it did not move the VM.
    /// Fix: find the cause in the target pod's events and virt-handler's logs,
    /// then migrate again.
    MIG_FAILED = "MV-MIG-014" "migration-failed" Error;
    /// A VirtualMachineInstanceMigration not in a final phase (Pending,
    /// Scheduling, ...): nothing has moved yet; its conditions say what it
    /// waits for.
    /// Fix: `kubectl describe vmim NAME` says what it waits for; check again
    /// when it is Succeeded or Failed.
    MIG_NOT_FINISHED = "MV-MIG-015" "migration-not-finished" Warning;
    /// `maxDowntimeMs` outside the CRD's 1..=2000000 (or past the integer
    /// range): the API server refuses the object.
    /// Fix: milliseconds from 1 to 2000000 (KubeVirt's default is 300).
    MIG_MAX_DOWNTIME = "MV-MIG-016" "max-downtime-range" Error;
    /// A MigrationPolicy without `spec.selectors`: the CRD requires it, and a
    /// policy that selects nothing applies to no VM.
    /// Fix: add `spec.selectors` with `namespaceSelector` and/or
    /// `virtualMachineInstanceSelector`.
    MIG_POLICY_NO_SELECTORS = "MV-MIG-017" "policy-no-selectors" Error;
    /// The `kubevirt-config` ConfigMap: KubeVirt has not read it since v0.48
    /// (and HyperConverged removes it), so its migration settings have no
    /// effect; they belong in the KubeVirt or HyperConverged CR.
    /// Fix: move the settings to KubeVirt `spec.configuration.migrations`
    /// (HyperConverged `spec.liveMigrationConfig`) and delete the ConfigMap.
    MIG_LEGACY_CONFIGMAP = "MV-MIG-018" "legacy-kubevirt-config" Warning;
    /// The migration network uses DHCP IPAM: migration0 gets an address only
    /// while the CNI dhcp daemon runs on every node and a DHCP server answers
    /// on the migration segment, and migverify has no range to check.
    /// Fix: run the CNI dhcp daemon on every node and a DHCP server on the
    /// migration segment, or use whereabouts.
    MIG_NAD_DHCP = "MV-MIG-019" "network-dhcp" Warning;
    /// The migration network uses `host-device`: the plugin moves the node's
    /// NIC into the virt-handler pod, so the node itself no longer has it.
    /// Fix: use macvlan or a bridge on that NIC, which share it.
    MIG_NAD_HOST_DEVICE = "MV-MIG-020" "network-host-device" Warning;
    /// The migration network's range (or its whereabouts node slices) holds
    /// fewer addresses than there are nodes: some virt-handler pods get no
    /// migration0 address and do not start.
    /// Fix: widen the range (or the node slices' range), or exclude fewer
    /// addresses.
    MIG_NAD_TOO_SMALL = "MV-MIG-021" "network-range-too-small" Error;

    /// The migration target listened on the migration network's range: the
    /// migration used the secondary network (PASS).
    /// Fix: nothing.
    VMI_TARGET_ON_MIGRATION_NETWORK = "MV-VMI-001" "target-on-migration-network" Info;
    /// The migration target listened on a main-network (pod) address: the
    /// migration used the pod network, as virt-handler does silently when it
    /// has no `migration0` (FAIL).
    /// Fix: check the migration NetworkAttachmentDefinition and virt-handler's
    /// `migration0` (`migverify check --host`).
    VMI_TARGET_ON_POD_NETWORK = "MV-VMI-002" "target-on-pod-network" Error;
    /// The target address is in neither the migration range nor a known main
    /// network: the migration used an unknown path.
    /// Fix: pass the migration NetworkAttachmentDefinition (or `--cidr`) and
    /// the main networks too.
    VMI_TARGET_UNKNOWN_NETWORK = "MV-VMI-003" "target-on-unknown-network" Warning;
    /// No `status.migrationState.targetNodeAddress` yet: nothing to confirm.
    /// Fix: check again during or after a migration.
    VMI_NO_TARGET = "MV-VMI-004" "no-target-address" Info;
    /// `targetNodeAddress` is not an IP address.
    /// Fix: read it again from the cluster.
    VMI_TARGET_INVALID = "MV-VMI-005" "target-address-invalid" Error;
    /// A migration network is configured (its range known from the named
    /// NetworkAttachmentDefinition or `--cidr`) and the target listened
    /// outside it: the migration did not use the migration network (FAIL).
    /// Fix: check the migration NetworkAttachmentDefinition and virt-handler's
    /// `migration0` (`migverify check --host`).
    VMI_TARGET_OUTSIDE_MIGRATION_NETWORK = "MV-VMI-006" "target-outside-migration-network" Error;

    /// No `migration0` in virt-handler's namespace: virt-handler advertises
    /// its pod IP and migrations silently cross the pod network.
    /// Fix: fix the migration NetworkAttachmentDefinition, then restart
    /// virt-handler.
    HOST_NO_MIGRATION0 = "MV-HOST-001" "no-migration0" Error;
    /// An interface given to check does not exist.
    /// Fix: name an interface that exists (`ip link` in that namespace).
    HOST_NO_INTERFACE = "MV-HOST-002" "no-interface" Error;
    /// An interface on the migration path is down or has no carrier.
    /// Fix: bring the link up and check its cable or switch port.
    HOST_DOWN = "MV-HOST-003" "down" Error;
    /// `migration0` has no global address: virt-handler has nothing to advertise.
    /// Fix: check the NetworkAttachmentDefinition's IPAM.
    HOST_NO_ADDRESS = "MV-HOST-004" "no-address" Error;
    /// `migration0`'s address is outside the NetworkAttachmentDefinition's range.
    /// Fix: restart virt-handler after fixing the NetworkAttachmentDefinition.
    HOST_ADDRESS_OUTSIDE_RANGE = "MV-HOST-005" "address-outside-range" Error;
    /// An interface on the migration path has a smaller MTU than `migration0`:
    /// full-size segments are dropped there after the handshake succeeds,
    /// and the migration stalls.
    /// Fix: raise the MTU of every interface on the path to `migration0`'s.
    HOST_MTU_PATH = "MV-HOST-006" "mtu-path" Error;
    /// `migration0`'s MTU differs from the NetworkAttachmentDefinition's `mtu`.
    /// Fix: make the NetworkAttachmentDefinition's `mtu` and the interface
    /// agree.
    HOST_MTU_NAD = "MV-HOST-007" "mtu-nad" Warning;
    /// The NetworkAttachmentDefinition asks for a VLAN but the bridge does not
    /// filter VLANs: the tag is not applied.
    /// Fix: turn on `vlan_filtering` on the bridge.
    HOST_VLAN_FILTERING_OFF = "MV-HOST-008" "vlan-filtering-off" Error;
    /// A migration port applies a different VLAN than the
    /// NetworkAttachmentDefinition asks for (or than the other nodes): the
    /// nodes cannot reach each other on the migration network.
    /// Fix: `bridge vlan add vid VLAN dev PORT` with the
    /// NetworkAttachmentDefinition's VLAN.
    HOST_VLAN_MISMATCH = "MV-HOST-009" "vlan-mismatch" Error;
    /// The route to a peer's migration address does not leave through
    /// `migration0`: migration traffic would take another network.
    /// Fix: remove the route that takes the migration range elsewhere.
    HOST_ROUTE = "MV-HOST-010" "route-not-via-migration0" Error;
    /// A peer's migration address does not answer (no TCP answer, not even a
    /// reset, within the timeout).
    /// Fix: check the VLAN, switch ports and firewalls between the nodes.
    HOST_PEER_UNREACHABLE = "MV-HOST-011" "peer-unreachable" Error;
    /// Small packets reach the peer but a full-MTU one does not: an MTU
    /// black hole on the path.
    /// Fix: raise the MTU on the switches of the path, or lower `migration0`'s.
    HOST_PATH_MTU_BLACKHOLE = "MV-HOST-012" "path-mtu-blackhole" Error;
    /// The cross-cluster synchronization controller port (9185 unless
    /// configured) does not answer on the peer cluster's migration address.
    /// Fix: check the peer's virt-synchronization-controller and firewalls.
    HOST_SYNC_PORT = "MV-HOST-013" "sync-port-unreachable" Error;
    /// `migration0`'s subnet overlaps another interface's: routing to peers
    /// becomes ambiguous.
    /// Fix: pick a migration range no other interface uses.
    HOST_ADDRESS_OVERLAP = "MV-HOST-014" "address-overlap" Error;
    /// A peer's migration address answered through `migration0`, full-size
    /// packets included (PASS).
    /// Fix: nothing.
    HOST_PEER_REACHABLE = "MV-HOST-015" "peer-reachable" Info;
    /// `migration0` is up with an address in the migration range (PASS).
    /// Fix: nothing.
    HOST_MIGRATION0_OK = "MV-HOST-016" "migration0-ok" Info;
}

/// One thing found wrong (or confirmed right) in an object or on a host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub name: &'static str,
    pub severity: Severity,
    /// `Kind namespace/name`, or the host interface.
    pub object: String,
    /// The field path in the object (`spec.config.vlan`), or the interface.
    pub path: String,
    /// `file:line` where the input has lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// What is wrong and why it matters for migration.
    pub message: String,
    /// The exact field or command that fixes it.
    pub fix: String,
}

/// The findings of one run, in the order they were raised.
#[derive(Debug, Default)]
pub struct Findings(pub Vec<Finding>);

impl Findings {
    /// A finding about `path` of `object`.
    pub fn object(
        &mut self,
        object: &Object,
        check: Check,
        path: &str,
        message: String,
        fix: String,
    ) {
        self.0.push(Finding {
            id: check.id,
            name: check.name,
            severity: check.severity,
            object: object.describe(),
            path: path.to_string(),
            location: Some(object.location(path)),
            message,
            fix,
        });
    }

    /// A finding about something without an input line (a host, an interface).
    pub fn other(
        &mut self,
        check: Check,
        object: String,
        path: &str,
        message: String,
        fix: String,
    ) {
        self.0.push(Finding {
            id: check.id,
            name: check.name,
            severity: check.severity,
            object,
            path: path.to_string(),
            location: None,
            message,
            fix,
        });
    }

    pub fn ids(&self) -> Vec<&'static str> {
        self.0.iter().map(|f| f.id).collect()
    }
}

/// The catalogue as Markdown, the generated part of `docs/checks.md`.
pub fn catalogue_markdown() -> String {
    let mut out = String::new();
    let mut area = "";
    for check in CATALOGUE {
        let this_area = check.id.split('-').nth(1).unwrap_or_default();
        if this_area != area {
            area = this_area;
            out += &format!(
                "\n### {area}\n\n| ID | name | severity | what and why | fix |\n| --- | --- | --- | --- | --- |\n"
            );
        }
        let summary = check
            .summary
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let (what, fix) = summary.split_once(" Fix: ").unwrap_or((&summary, ""));
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            check.id,
            check.name,
            check.severity.as_str(),
            what.replace('|', "\\|"),
            fix.replace('|', "\\|")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_and_names_are_unique_and_well_formed() {
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for check in CATALOGUE {
            assert!(ids.insert(check.id), "{} twice", check.id);
            let area = check.id.split('-').nth(1).unwrap();
            assert!(
                names.insert((area, check.name)),
                "{} twice in {area}",
                check.name
            );
            assert!(
                check.summary.contains("Fix: "),
                "{} has no `Fix:` line",
                check.id
            );
            let parts: Vec<_> = check.id.split('-').collect();
            assert!(
                parts.len() == 3
                    && parts[0] == "MV"
                    && parts[2].len() == 3
                    && parts[2].bytes().all(|b| b.is_ascii_digit()),
                "{}",
                check.id
            );
        }
    }

    /// `docs/checks.md` carries the catalogue between two markers; rewrite
    /// it with `MIGVERIFY_BLESS=1 cargo test -p verifier --lib checks`.
    #[test]
    fn docs_checks_md_matches_the_catalogue() {
        const BEGIN: &str =
            "<!-- BEGIN CATALOGUE (generated from verifier/src/checks/findings.rs) -->\n";
        const END: &str = "<!-- END CATALOGUE -->";
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/checks.md");
        let doc = std::fs::read_to_string(path).expect("docs/checks.md");
        let (head, rest) = doc
            .split_once(BEGIN)
            .expect("BEGIN marker in docs/checks.md");
        let (current, tail) = rest.split_once(END).expect("END marker in docs/checks.md");
        let generated = catalogue_markdown();
        if current != generated {
            if std::env::var_os("MIGVERIFY_BLESS").is_some() {
                std::fs::write(path, format!("{head}{BEGIN}{generated}{END}{tail}")).unwrap();
            } else {
                panic!("docs/checks.md is out of date: run MIGVERIFY_BLESS=1 cargo test -p verifier --lib checks");
            }
        }
    }
}
