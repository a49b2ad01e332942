//! NetworkAttachmentDefinitions: the CNI config in `spec.config` (a JSON
//! string), checked with the semantics of the plugins that read it: the
//! bridge plugin (every field of the seed's table), macvlan, and their IPAM.
//!
//! Field names are matched as the plugins' Go `encoding/json` matches them,
//! ignoring case; types as Go decodes them, so `"vlan": "2"` is the error
//! the plugin would return, not a value migverify guesses at.

use serde_json::{Map, Value};

use super::{
    fields::{field, Ctx},
    findings::*,
    ipam,
    networks::MainNetworks,
};
use crate::config::documents::Object;

/// CNI specification versions the reference plugins implement.
const CNI_VERSIONS: &[&str] = &[
    "0.1.0", "0.2.0", "0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0",
];

/// Fields every plugin config may carry (CNI spec, Multus, runtime).
const COMMON_FIELDS: &[&str] = &[
    "cniVersion",
    "name",
    "type",
    "ipam",
    "dns",
    "capabilities",
    "args",
    "runtimeConfig",
    "prevResult",
];
const LIST_FIELDS: &[&str] = &[
    "cniVersion",
    "cniVersions",
    "name",
    "plugins",
    "disableCheck",
    "disableGC",
    "loadOnlyInlinedPlugins",
];
const BRIDGE_FIELDS: &[&str] = &[
    "bridge",
    "isGateway",
    "isDefaultGateway",
    "forceAddress",
    "ipMasq",
    "ipMasqBackend",
    "mtu",
    "hairpinMode",
    "promiscMode",
    "vlan",
    "vlanTrunk",
    "preserveDefaultVlan",
    "macspoofchk",
    "enabledad",
    "disableContainerInterface",
    "portIsolation",
];
const MACVLAN_FIELDS: &[&str] = &["master", "mode", "mtu", "linkInContainer", "mac"];
const MACVLAN_MODES: &[&str] = &["bridge", "private", "vepa", "passthru"];

/// Lints a NetworkAttachmentDefinition as Multus, libcni and the plugins
/// read it (what it sets up is [`crate::intent::Nad::read`]'s).
pub fn check_nad(object: &Object, findings: &mut Findings, main: &MainNetworks) {
    let located;
    let mut ctx = Ctx {
        object,
        findings,
        reader: "Multus",
        api: false,
    };
    let Some(root) = object.value.as_object() else {
        return;
    };
    let spec = ctx.map(root, "spec", "");
    let parsed;
    let config = match spec.and_then(|spec| field(spec, "config")) {
        None => {
            ctx.raise(
                NAD_NO_CONFIG,
                "spec.config",
                "no `spec.config`: Multus looks for a CNI config file of this name on every node instead, \
                 which migverify cannot see"
                    .into(),
                "put the CNI config in `spec.config` as a JSON string".into(),
            );
            return;
        }
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(value) => {
                parsed = value;
                // Fields inside the JSON get their own lines where the file's map onto them.
                located = object.with_json_lines("spec.config", text);
                ctx.object = &located;
                &parsed
            }
            Err(e) => {
                ctx.raise(
                    NAD_CONFIG_NOT_JSON,
                    "spec.config",
                    format!(
                        "`spec.config` is not valid JSON ({e} of the string{}): Multus cannot attach this network \
                         and the pods that ask for it do not start",
                        callouts(text)
                    ),
                    "correct the JSON; `jq . <<< \"$CONFIG\"` shows where it breaks (single quotes around the \
                     YAML value keep the JSON's double quotes intact)"
                        .into(),
                );
                return;
            }
        },
        Some(other @ Value::Object(_)) => {
            ctx.raise(
                NAD_CONFIG_NOT_STRING,
                "spec.config",
                "`spec.config` is a YAML mapping; the API server accepts only a string holding the CNI config JSON"
                    .into(),
                "quote the JSON: `config: '{\"cniVersion\": \"0.3.1\", ...}'` (or a `|` block)".into(),
            );
            other
        }
        Some(other) => {
            ctx.raise(
                FIELD_WRONG_TYPE,
                "spec.config",
                format!(
                    "`spec.config` is {}; Multus expects the CNI config as a JSON string",
                    crate::config::documents::kind_of(other)
                ),
                "write `config: '{\"cniVersion\": \"0.3.1\", \"name\": ..., \"type\": ...}'`"
                    .into(),
            );
            return;
        }
    };
    let Some(conf) = config.as_object() else {
        ctx.raise(
            NAD_CONFIG_NOT_JSON,
            "spec.config",
            format!("`spec.config` holds {}, not a JSON object", crate::config::documents::kind_of(config)),
            "write the CNI config as a JSON object: `{\"cniVersion\": \"0.3.1\", \"name\": ..., \"type\": ...}`".into(),
        );
        return;
    };
    ctx.reader = "libcni";
    check_version_and_name(&mut ctx, conf);
    if conf.contains_key("plugins") {
        ctx.unknown_fields(conf, LIST_FIELDS, "spec.config", true);
        let plugins = ctx
            .list(conf, "plugins", "spec.config")
            .cloned()
            .unwrap_or_default();
        if plugins.is_empty() {
            ctx.raise(
                NAD_EMPTY_PLUGIN_LIST,
                "spec.config.plugins",
                "`spec.config.plugins` is empty: no plugin runs".into(),
                "add the interface plugin (macvlan or bridge) as the first entry of `plugins`"
                    .into(),
            );
        }
        for (n, plugin) in plugins.iter().enumerate() {
            let path = format!("spec.config.plugins[{n}]");
            let Some(plugin) = ctx.as_map(plugin, &path) else {
                continue;
            };
            check_plugin(&mut ctx, plugin, &path, main, false);
        }
    } else {
        check_plugin(&mut ctx, conf, "spec.config", main, true);
    }
}

fn check_version_and_name(ctx: &mut Ctx, conf: &Map<String, Value>) {
    match ctx.str(conf, "cniVersion", "spec.config") {
        Some(version) if !CNI_VERSIONS.contains(&version) => ctx.raise(
            NAD_CNI_VERSION,
            "spec.config.cniVersion",
            format!("`cniVersion` {version:?} is not a CNI specification version ({})", CNI_VERSIONS.join(", ")),
            "write `\"cniVersion\": \"0.3.1\"` as the OpenShift documentation does".into(),
        ),
        Some(_) => {}
        None if field(conf, "cniVersion").is_none() => ctx.raise(
            NAD_CNI_VERSION_MISSING,
            "spec.config.cniVersion",
            "no `cniVersion`: plugins fall back to the oldest specification (0.1.0), whose results carry no \
             interface list"
                .into(),
            "add `\"cniVersion\": \"0.3.1\"`".into(),
        ),
        None => {}
    }
    // No `name` is fine: Multus fills in the NAD's metadata.name
    // (net-attach-def-client GetCNIConfigFromSpec) before libcni reads it.
    match ctx.str(conf, "name", "spec.config") {
        Some(name) if !name.is_empty() && !valid_network_name(name) => ctx.raise(
            NAD_NAME,
            "spec.config.name",
            format!("the CNI network name {name:?} has characters libcni refuses"),
            "use letters, digits, `-`, `_` and `.`, starting with a letter or digit".into(),
        ),
        _ => {}
    }
}

/// The asciidoc callout markers (`<3>`) a JSON copied from documentation
/// source carries, as a hint.
fn callouts(text: &str) -> String {
    let markers: Vec<&str> = text
        .split_whitespace()
        .filter(|w| {
            w.len() > 2
                && w.starts_with('<')
                && w.ends_with('>')
                && w[1..w.len() - 1].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    if markers.is_empty() {
        String::new()
    } else {
        format!(
            "; it holds asciidoc callout markers copied with the documentation's source: {}: delete them",
            markers.join(" ")
        )
    }
}

/// libcni's rule for network names.
fn valid_network_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// Checks one plugin entry. `top` is true for a single (not list) config,
/// where cniVersion and name sit beside the plugin's own fields.
fn check_plugin(
    ctx: &mut Ctx,
    plugin: &Map<String, Value>,
    path: &str,
    main: &MainNetworks,
    top: bool,
) {
    let Some(kind) = ctx.str(plugin, "type", path) else {
        if field(plugin, "type").is_none() {
            ctx.raise(
                NAD_TYPE_MISSING,
                &format!("{path}.type"),
                format!("`{path}` has no `type`: no plugin would run"),
                "add `\"type\": \"macvlan\"` (or bridge, ...)".into(),
            );
        }
        return;
    };
    let own: &[&str] = match kind {
        "bridge" => BRIDGE_FIELDS,
        "macvlan" => MACVLAN_FIELDS,
        _ => &[],
    };
    if own.is_empty() {
        ctx.raise(
            NAD_UNCHECKED_TYPE,
            &format!("{path}.type"),
            format!("plugin type {kind:?}: migverify checks its IPAM but not its own fields"),
            "nothing to fix; macvlan and bridge are checked in depth".into(),
        );
    } else {
        ctx.reader = if kind == "bridge" {
            "the bridge plugin"
        } else {
            "the macvlan plugin"
        };
        let known: Vec<&str> = COMMON_FIELDS
            .iter()
            .chain(own)
            .copied()
            .chain(if top { LIST_FIELDS } else { &[] }.iter().copied())
            .collect();
        ctx.unknown_fields(plugin, &known, path, true);
    }
    mtu(ctx, plugin, path);
    match kind {
        "bridge" => bridge(ctx, plugin, path),
        "macvlan" => macvlan(ctx, plugin, path),
        _ => {}
    }
    if let Some(section) = ctx.map(plugin, "ipam", path) {
        ipam::check(ctx, section, &format!("{path}.ipam"), main);
    }
}

fn mtu(ctx: &mut Ctx, plugin: &Map<String, Value>, path: &str) {
    let Some(mtu) = ctx.int(plugin, "mtu", path) else {
        return;
    };
    if mtu != 0 && !(68..=65535).contains(&mtu) {
        ctx.raise(
            NAD_MTU_RANGE,
            &format!("{path}.mtu"),
            format!("`mtu` {mtu} is outside what Linux accepts (68 to 65535; 0 keeps the kernel's default)"),
            "set the MTU of the migration NICs and switches, e.g. `\"mtu\": 9000`, or remove `mtu`".into(),
        );
    }
}

fn bridge(ctx: &mut Ctx, conf: &Map<String, Value>, path: &str) {
    let at = |key: &str| format!("{path}.{key}");
    let flag = |ctx: &mut Ctx, key: &str| ctx.bool(conf, key, path);
    let bridge = ctx.str(conf, "bridge", path).unwrap_or("cni0");
    let mut vlan: Option<i64> = None;
    let is_gateway = flag(ctx, "isGateway");
    let is_default_gateway = flag(ctx, "isDefaultGateway").unwrap_or(false);
    let ip_masq = flag(ctx, "ipMasq").unwrap_or(false);
    let force_address = flag(ctx, "forceAddress").unwrap_or(false);
    let hairpin = flag(ctx, "hairpinMode").unwrap_or(false);
    let promisc = flag(ctx, "promiscMode").unwrap_or(false);
    let preserve = flag(ctx, "preserveDefaultVlan");
    for key in [
        "macspoofchk",
        "enabledad",
        "disableContainerInterface",
        "portIsolation",
    ] {
        flag(ctx, key);
    }
    ctx.str(conf, "ipMasqBackend", path);

    if is_default_gateway && is_gateway == Some(false) {
        ctx.raise(
            BRIDGE_DEFAULT_GATEWAY_IMPLIES_GATEWAY,
            &at("isGateway"),
            "`isDefaultGateway: true` makes the plugin set `isGateway` to true; `isGateway: false` is ignored"
                .into(),
            "remove `\"isGateway\": false`, or set `isDefaultGateway` to false".into(),
        );
    }
    let gateway = is_gateway.unwrap_or(false) || is_default_gateway;
    if ip_masq && !gateway {
        ctx.raise(
            BRIDGE_IPMASQ_WITHOUT_GATEWAY,
            &at("ipMasq"),
            "`ipMasq: true` without `isGateway`: the bridge has no address, so there is nothing to masquerade \
             behind and the setting does nothing"
                .into(),
            "add `\"isGateway\": true`, or remove `ipMasq`".into(),
        );
    }
    if force_address && !gateway {
        ctx.raise(
            BRIDGE_FORCE_ADDRESS_WITHOUT_GATEWAY,
            &at("forceAddress"),
            "`forceAddress` without `isGateway`: the bridge gets no address, so there is nothing to force".into(),
            "remove `forceAddress`, or add `\"isGateway\": true`".into(),
        );
    }
    if gateway
        && field(conf, "ipam")
            .and_then(Value::as_object)
            .is_none_or(|m| m.is_empty())
    {
        ctx.raise(
            BRIDGE_GATEWAY_WITHOUT_IPAM,
            &at("isGateway"),
            "`isGateway` without IPAM: the gateway address comes from the IPAM result, and there is none".into(),
            "add an `ipam` section, or remove `isGateway`".into(),
        );
    }
    if hairpin && promisc {
        ctx.raise(
            BRIDGE_HAIRPIN_AND_PROMISC,
            &at("promiscMode"),
            "`hairpinMode` and `promiscMode` together: older bridge plugins refuse the pair (\"cannot set \
             hairpin mode and promiscuous mode at the same time\")"
                .into(),
            "keep one of the two".into(),
        );
    }

    match ctx.int(conf, "vlan", path) {
        Some(v) if !(0..=4094).contains(&v) => ctx.raise(
            BRIDGE_VLAN_RANGE,
            &at("vlan"),
            format!("`vlan` {v} is outside 0..=4094; the bridge plugin refuses the config (\"invalid VLAN ID\")"),
            "use the VLAN id the migration NICs' switch ports carry, 1 to 4094".into(),
        ),
        Some(0) => ctx.raise(
            BRIDGE_VLAN_ZERO,
            &at("vlan"),
            "`vlan: 0` means no VLAN: the port is untagged".into(),
            "remove `vlan`, or set the VLAN id the migration NICs carry".into(),
        ),
        Some(v) => {
            vlan = Some(v);
            ctx.raise(
                BRIDGE_UPLINK_VLAN,
                &at("vlan"),
                format!(
                    "`vlan` {v}: the plugin tags the pod's port and turns on vlan_filtering on bridge {}; other \
                     nodes are reached only if the uplink NIC is a member of VLAN {v} too",
                    bridge
                ),
                format!("on every node: `bridge vlan add vid {v} dev UPLINK` (UPLINK: the NIC enslaved to the bridge)"),
            );
        }
        None => {}
    }
    let trunk = trunk(ctx, conf, path);
    if vlan.is_some() && trunk.is_some() {
        ctx.raise(
            BRIDGE_VLAN_AND_TRUNK,
            &at("vlanTrunk"),
            "`vlan` and `vlanTrunk` together: the bridge plugin makes a port an access port or a trunk, never both, \
             and refuses the config"
                .into(),
            "keep `vlan` for an access port (the usual migration network), or only `vlanTrunk`".into(),
        );
    }
    if preserve.is_some() && vlan.is_none() && trunk.is_none() {
        ctx.raise(
            BRIDGE_PRESERVE_DEFAULT_VLAN_ALONE,
            &at("preserveDefaultVlan"),
            "`preserveDefaultVlan` has an effect only with `vlan` or `vlanTrunk`".into(),
            "remove `preserveDefaultVlan`".into(),
        );
    }
}

/// Checks `vlanTrunk`; returns the VLAN ids it covers, if it has any entry.
fn trunk(ctx: &mut Ctx, conf: &Map<String, Value>, path: &str) -> Option<Vec<(i64, i64)>> {
    let entries = ctx.list(conf, "vlanTrunk", path)?.clone();
    let mut ranges: Vec<(i64, i64, String)> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        let entry_path = format!("{path}.vlanTrunk[{n}]");
        let Some(entry) = ctx.as_map(entry, &entry_path) else {
            continue;
        };
        ctx.unknown_fields(entry, &["id", "minID", "maxID"], &entry_path, true);
        let bad = |ctx: &mut Ctx, why: String| {
            ctx.raise(
                BRIDGE_TRUNK_ENTRY,
                &entry_path,
                format!("`{entry_path}`: {why}; the bridge plugin refuses the config"),
                "write `{\"id\": 42}` or `{\"minID\": 100, \"maxID\": 200}` with ids from 1 to 4094".into(),
            )
        };
        let (id, min, max) = (
            ctx.int(entry, "id", &entry_path),
            ctx.int(entry, "minID", &entry_path),
            ctx.int(entry, "maxID", &entry_path),
        );
        let in_range = |v: i64| (1..=4094).contains(&v);
        let mut push = |lo: i64, hi: i64| ranges.push((lo, hi, entry_path.clone()));
        match (min, max) {
            (Some(lo), Some(hi)) if !in_range(lo) || !in_range(hi) => {
                bad(ctx, format!("minID {lo} / maxID {hi} outside 1..=4094"))
            }
            (Some(lo), Some(hi)) if lo > hi => {
                bad(ctx, format!("minID {lo} is greater than maxID {hi}"))
            }
            (Some(lo), Some(hi)) => push(lo, hi),
            (Some(_), None) | (None, Some(_)) => {
                bad(ctx, "minID and maxID must be given together".into())
            }
            (None, None) => {}
        }
        match id {
            Some(v) if !in_range(v) => bad(ctx, format!("id {v} outside 1..=4094")),
            Some(v) => push(v, v),
            None if min.is_none() && max.is_none() && field(entry, "id").is_none() => {
                bad(ctx, "neither `id` nor `minID`/`maxID`".into())
            }
            None => {}
        }
    }
    let mut sorted = ranges.clone();
    sorted.sort();
    for pair in sorted.windows(2) {
        let ((_, a_hi, a_path), (b_lo, _, b_path)) = (&pair[0], &pair[1]);
        if b_lo <= a_hi {
            ctx.raise(
                BRIDGE_TRUNK_OVERLAP,
                b_path,
                format!("`{b_path}` overlaps `{a_path}`"),
                "merge or correct the entries; the trunk is their union".into(),
            );
        }
    }
    (!entries.is_empty()).then(|| ranges.into_iter().map(|(lo, hi, _)| (lo, hi)).collect())
}

fn macvlan(ctx: &mut Ctx, conf: &Map<String, Value>, path: &str) {
    ctx.str(conf, "master", path);
    if field(conf, "master").is_none() {
        ctx.raise(
            MACVLAN_NO_MASTER,
            &format!("{path}.master"),
            "no `master`: macvlan uses the interface of the node's default route, normally the primary NIC, so \
             migration traffic shares the main network's wire"
                .into(),
            "name the migration NIC: `\"master\": \"eth1\"`".into(),
        );
    }
    if let Some(mode) = ctx.str(conf, "mode", path) {
        if !MACVLAN_MODES.contains(&mode) {
            ctx.raise(
                MACVLAN_MODE,
                &format!("{path}.mode"),
                format!(
                    "macvlan `mode` {mode:?} is none of {}; the plugin refuses the config",
                    MACVLAN_MODES.join(", ")
                ),
                "write `\"mode\": \"bridge\"`".into(),
            );
        }
    }
    ctx.bool(conf, "linkInContainer", path);
    ctx.str(conf, "mac", path);
}
