//! IPAM sections of a CNI config: whereabouts (the seed's migration
//! network), host-local, static and dhcp. Ranges are checked for shape,
//! bounds and exclusions, and against the cluster's main networks.

use std::net::IpAddr;

use serde_json::{Map, Value};

use super::{
    fields::Ctx,
    findings::{
        IPAM_EXCLUDE, IPAM_HOST_BITS, IPAM_NODE_SLICE, IPAM_OVERLAPS_MAIN_NETWORK,
        IPAM_RANGE_BOUNDS, IPAM_RANGE_EXHAUSTED, IPAM_RANGE_INVALID, IPAM_STATIC_ADDRESSES,
        IPAM_TYPE_MISSING, IPAM_TYPE_UNKNOWN,
    },
    networks::MainNetworks,
};
use crate::{
    config::{endpoints::number_of, Cidr},
    intent::network::{assignable, host_bounds, node_slice_size},
};

const WHEREABOUTS_FIELDS: &[&str] = &[
    "type",
    "range",
    "range_start",
    "range_end",
    "exclude",
    "ipRanges",
    "gateway",
    "routes",
    "dns",
    "addresses",
    "network_name",
    "enable_overlapping_ranges",
    "node_slice_size",
    "log_file",
    "log_level",
    "leader_lease_duration",
    "leader_renew_deadline",
    "leader_retry_period",
    "reconciler_cron_expression",
    "kubernetes",
    "datastore",
    "etcd_host",
    "etcd_username",
    "etcd_password",
    "etcd_key_file",
    "etcd_cert_file",
    "etcd_ca_cert_file",
    "configuration_path",
    "sleep_for_race",
];
const WHEREABOUTS_RANGE_FIELDS: &[&str] = &["range", "range_start", "range_end", "exclude"];
const HOST_LOCAL_FIELDS: &[&str] = &[
    "type",
    "subnet",
    "rangeStart",
    "rangeEnd",
    "gateway",
    "ranges",
    "routes",
    "resolvConf",
    "dataDir",
];
const HOST_LOCAL_RANGE_FIELDS: &[&str] = &["subnet", "rangeStart", "rangeEnd", "gateway"];
const STATIC_FIELDS: &[&str] = &["type", "addresses", "routes", "dns"];
const DHCP_FIELDS: &[&str] = &[
    "type",
    "daemonSocketPath",
    "request",
    "provide",
    "timeout",
    "resendMax",
    "broadcast",
];

/// Checks an `ipam` section at `path` (e.g. `spec.config.ipam`).
pub fn check(ctx: &mut Ctx, ipam: &Map<String, Value>, path: &str, main: &MainNetworks) {
    // The ranges as this pass reads them, to check them against the main networks.
    let mut ranges: Vec<Cidr> = Vec::new();
    let Some(kind) = ctx.str(ipam, "type", path) else {
        if !ipam.is_empty() {
            ctx.raise(
                IPAM_TYPE_MISSING,
                &format!("{path}.type"),
                format!(
                    "`{path}` has no `type`: no IPAM plugin runs and the interface gets no address"
                ),
                format!(
                    "add `\"type\": \"whereabouts\"` (or host-local, static, dhcp) to `{path}`"
                ),
            );
        }
        return;
    };
    ctx.reader = "the IPAM plugin";
    match kind {
        "whereabouts" => {
            ctx.unknown_fields(ipam, WHEREABOUTS_FIELDS, path, true);
            let listed = ctx
                .list(ipam, "ipRanges", path)
                .cloned()
                .unwrap_or_default();
            if ipam.contains_key("range") || listed.is_empty() {
                ranges.extend(whereabouts_range(ctx, ipam, path));
            }
            node_slice(ctx, ipam, path);
            for (n, entry) in listed.iter().enumerate() {
                let entry_path = format!("{path}.ipRanges[{n}]");
                if let Some(entry) = ctx.as_map(entry, &entry_path) {
                    ctx.unknown_fields(entry, WHEREABOUTS_RANGE_FIELDS, &entry_path, true);
                    ranges.extend(whereabouts_range(ctx, entry, &entry_path));
                }
            }
        }
        "host-local" => {
            ctx.unknown_fields(ipam, HOST_LOCAL_FIELDS, path, true);
            if ipam.contains_key("subnet") {
                ranges.extend(host_local_range(ctx, ipam, path));
            }
            for (n, set) in ctx
                .list(ipam, "ranges", path)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let set_path = format!("{path}.ranges[{n}]");
                let Value::Array(set) = set else {
                    ctx.raise(
                        super::findings::FIELD_WRONG_TYPE,
                        &set_path,
                        format!("`{set_path}` must be a list of ranges (host-local's `ranges` is a list of lists)"),
                        "write `\"ranges\": [[{\"subnet\": \"10.200.5.0/24\"}]]`".into(),
                    );
                    continue;
                };
                for (m, range) in set.iter().enumerate() {
                    let range_path = format!("{set_path}[{m}]");
                    if let Some(range) = ctx.as_map(range, &range_path) {
                        ctx.unknown_fields(range, HOST_LOCAL_RANGE_FIELDS, &range_path, true);
                        ranges.extend(host_local_range(ctx, range, &range_path));
                    }
                }
            }
            if ranges.is_empty() {
                ctx.raise(
                    IPAM_RANGE_INVALID,
                    &format!("{path}.subnet"),
                    format!("host-local IPAM at `{path}` has neither `subnet` nor `ranges`: it has nothing to allocate"),
                    format!("add `\"subnet\": \"10.200.5.0/24\"` to `{path}`"),
                );
            }
        }
        "static" => {
            ctx.unknown_fields(ipam, STATIC_FIELDS, path, true);
            ranges.extend(static_addresses(ctx, ipam, path));
        }
        "dhcp" => {
            ctx.unknown_fields(ipam, DHCP_FIELDS, path, true);
        }
        other => {
            ctx.raise(
                IPAM_TYPE_UNKNOWN,
                &format!("{path}.type"),
                format!("IPAM type {other:?} is not one migverify checks; its ranges were not checked"),
                "use whereabouts for a migration network (one cluster-wide pool, an address per node)".into(),
            );
        }
    }
    for cidr in &ranges {
        if let Some(network) = main.overlapping(cidr) {
            ctx.raise(
                IPAM_OVERLAPS_MAIN_NETWORK,
                path,
                format!(
                    "the range {cidr} overlaps the {} {} (from {}); addresses in both make routing send \
                     migration or pod traffic the wrong way",
                    network.role, network.cidr, network.origin
                ),
                format!("pick a range outside {}, e.g. one in 10.200.0.0/16 that no main network uses", network.cidr),
            );
        }
    }
}

/// One whereabouts range (`range`, `range_start`, `range_end`, `exclude`).
fn whereabouts_range(ctx: &mut Ctx, map: &Map<String, Value>, path: &str) -> Option<Cidr> {
    let Some(text) = ctx.str(map, "range", path) else {
        ctx.raise(
            IPAM_RANGE_INVALID,
            &format!("{path}.range"),
            format!("whereabouts at `{path}` has no `range`: it has no addresses to hand out"),
            format!("add `\"range\": \"10.200.5.0/24\"` to `{path}`"),
        );
        return None;
    };
    let range_path = format!("{path}.range");
    // whereabouts also takes `FIRST-CIDR`: a start address before the range.
    let (inline_start, cidr_text) = match text.split_once('-') {
        Some((start, cidr)) => (Some(start), cidr),
        None => (None, text),
    };
    let cidr = parse_cidr(ctx, cidr_text, &range_path, "range")?;
    let mut start = inline_start.and_then(|s| parse_ip(ctx, s, &range_path, cidr));
    if let Some(s) = ctx.str(map, "range_start", path) {
        start = parse_ip(ctx, s, &format!("{path}.range_start"), cidr);
    }
    let end = ctx
        .str(map, "range_end", path)
        .and_then(|e| parse_ip(ctx, e, &format!("{path}.range_end"), cidr));
    let (first, last) = bounds(ctx, cidr, start, end, path, ("range_start", "range_end"));
    let mut excluded = Vec::new();
    for (n, entry) in ctx
        .list(map, "exclude", path)
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let entry_path = format!("{path}.exclude[{n}]");
        let Some(text) = entry.as_str() else {
            ctx.raise(
                IPAM_EXCLUDE,
                &entry_path,
                format!("`{entry_path}` must be a CIDR string"),
                format!("write it as \"{}/32\"", cidr.addr),
            );
            continue;
        };
        let Ok(excluded_cidr) = text.parse::<Cidr>() else {
            ctx.raise(
                IPAM_EXCLUDE,
                &entry_path,
                format!("`{entry_path}` {text:?} is not a CIDR; whereabouts refuses the config"),
                "write an address with its prefix, e.g. \"10.200.5.1/32\"".into(),
            );
            continue;
        };
        if !super::networks::overlaps(&cidr, &excluded_cidr) {
            ctx.raise(
                IPAM_EXCLUDE,
                &entry_path,
                format!("`{entry_path}` {text} lies outside the range {cidr}: it excludes nothing"),
                format!("exclude addresses inside {cidr}, or remove the entry"),
            );
            continue;
        }
        let (lo, hi) = excluded_cidr.bounds();
        excluded.push((lo.max(first), hi.min(last)));
    }
    exhaustion(ctx, cidr, first, last, &excluded, path);
    Some(cidr)
}

/// whereabouts' `node_slice_size`: a prefix length no wider than the range,
/// which must have no host bits (`DivideRangeBySize` refuses both).
fn node_slice(ctx: &mut Ctx, ipam: &Map<String, Value>, path: &str) {
    let Some(text) = ctx.str(ipam, "node_slice_size", path) else {
        return;
    };
    let at = format!("{path}.node_slice_size");
    let range = ipam
        .get("range")
        .and_then(Value::as_str)
        .map(|r| r.rsplit_once('-').map_or(r, |(_, cidr)| cidr))
        .and_then(|r| r.parse::<Cidr>().ok());
    let problem = match (node_slice_size(text), range) {
        (None, _) => Some(format!("{text:?} is not a prefix length such as \"/24\"")),
        (Some(size), Some(range)) if size < range.prefix => Some(format!(
            "/{size} is wider than the range {range} it slices (whereabouts: \"subnetMaskSize must be greater or \
             equal than netMaskSize\")"
        )),
        (Some(size), Some(range)) if size > if range.addr.is_ipv4() { 32 } else { 128 } => {
            Some(format!("/{size} is longer than an address"))
        }
        (Some(_), Some(range)) if range.network() != range => Some(format!(
            "the range {range} has host bits set, which whereabouts refuses when slicing it (\"netCIDR is not a valid \
             network address\")"
        )),
        _ => None,
    };
    if let Some(problem) = problem {
        ctx.raise(
            IPAM_NODE_SLICE,
            &at,
            format!("`node_slice_size` {problem}: whereabouts refuses the config and no node gets an address"),
            "give a prefix at least as long as the range's, e.g. \"/24\" slices of a /20 (16 nodes), on a range \
             written as its network address"
                .into(),
        );
    }
}

/// One host-local range (`subnet`, `rangeStart`, `rangeEnd`).
fn host_local_range(ctx: &mut Ctx, map: &Map<String, Value>, path: &str) -> Option<Cidr> {
    let text = ctx.str(map, "subnet", path)?;
    let cidr = parse_cidr(ctx, text, &format!("{path}.subnet"), "subnet")?;
    let start = ctx
        .str(map, "rangeStart", path)
        .and_then(|s| parse_ip(ctx, s, &format!("{path}.rangeStart"), cidr));
    let end = ctx
        .str(map, "rangeEnd", path)
        .and_then(|e| parse_ip(ctx, e, &format!("{path}.rangeEnd"), cidr));
    let (first, last) = bounds(ctx, cidr, start, end, path, ("rangeStart", "rangeEnd"));
    exhaustion(ctx, cidr, first, last, &[], path);
    Some(cidr)
}

/// static IPAM's `addresses`: the networks they are in.
fn static_addresses(ctx: &mut Ctx, map: &Map<String, Value>, path: &str) -> Vec<Cidr> {
    let list = ctx
        .list(map, "addresses", path)
        .cloned()
        .unwrap_or_default();
    if list.is_empty() {
        ctx.raise(
            IPAM_STATIC_ADDRESSES,
            &format!("{path}.addresses"),
            format!("static IPAM at `{path}` has no `addresses`: the interface gets none"),
            format!("add `\"addresses\": [{{\"address\": \"10.200.5.10/24\"}}]` to `{path}`"),
        );
    }
    let mut networks = Vec::new();
    for (n, entry) in list.iter().enumerate() {
        let entry_path = format!("{path}.addresses[{n}]");
        let Some(entry) = ctx.as_map(entry, &entry_path) else {
            continue;
        };
        ctx.unknown_fields(entry, &["address", "gateway"], &entry_path, true);
        let address = ctx.str(entry, "address", &entry_path);
        match address.map(|a| (a, a.parse::<Cidr>())) {
            Some((text, Ok(cidr))) if text.contains('/') => networks.push(cidr.network()),
            _ => ctx.raise(
                IPAM_STATIC_ADDRESSES,
                &format!("{entry_path}.address"),
                format!(
                    "`{entry_path}.address` must be an address with its prefix (got {})",
                    address.map_or("nothing".to_string(), |a| format!("{a:?}"))
                ),
                "write it as \"10.200.5.10/24\"".into(),
            ),
        }
    }
    networks
}

fn parse_cidr(ctx: &mut Ctx, text: &str, path: &str, what: &str) -> Option<Cidr> {
    let bad = |ctx: &mut Ctx| {
        ctx.raise(
            IPAM_RANGE_INVALID,
            path,
            format!("`{path}` {text:?} is not a CIDR; the IPAM plugin refuses the config"),
            format!("write the {what} as ADDRESS/PREFIX, e.g. \"10.200.5.0/24\""),
        )
    };
    if !text.contains('/') {
        bad(ctx);
        return None;
    }
    let Ok(cidr) = text.parse::<Cidr>() else {
        bad(ctx);
        return None;
    };
    let network = cidr.network();
    if network != cidr {
        ctx.raise(
            IPAM_HOST_BITS,
            path,
            format!("`{path}` {text} has host bits set; the network used is {network}"),
            format!("write \"{network}\""),
        );
    }
    Some(network)
}

fn parse_ip(ctx: &mut Ctx, text: &str, path: &str, cidr: Cidr) -> Option<IpAddr> {
    match text.parse::<IpAddr>() {
        Ok(ip) if cidr.contains(ip) => Some(ip),
        Ok(ip) => {
            ctx.raise(
                IPAM_RANGE_BOUNDS,
                path,
                format!(
                    "`{path}` {ip} is outside the range {cidr}; the IPAM plugin refuses the config"
                ),
                format!("pick an address inside {cidr}"),
            );
            None
        }
        Err(_) => {
            ctx.raise(
                IPAM_RANGE_BOUNDS,
                path,
                format!("`{path}` {text:?} is not an IP address"),
                format!("write a plain address inside {cidr}, without prefix"),
            );
            None
        }
    }
}

/// The first and last assignable address as numbers, after checking that
/// the start is not after the end.
fn bounds(
    ctx: &mut Ctx,
    cidr: Cidr,
    start: Option<IpAddr>,
    end: Option<IpAddr>,
    path: &str,
    names: (&str, &str),
) -> (u128, u128) {
    // IPv4 ranges skip the network and broadcast addresses (not for /31, /32).
    let (low, high) = host_bounds(cidr);
    let first = start.map_or(low, number_of);
    let last = end.map_or(high, number_of);
    if first > last {
        ctx.raise(
            IPAM_RANGE_BOUNDS,
            &format!("{path}.{}", names.0),
            format!(
                "`{}` {} is after `{}` {}: the range is empty",
                names.0,
                start.map_or_else(|| "(start of range)".into(), |s| s.to_string()),
                names.1,
                end.map_or_else(|| "(end of range)".into(), |e| e.to_string())
            ),
            format!("swap `{}` and `{}`", names.0, names.1),
        );
    }
    (first, last)
}

/// Raises range-exhausted when fewer than two addresses remain.
fn exhaustion(
    ctx: &mut Ctx,
    cidr: Cidr,
    first: u128,
    last: u128,
    excluded: &[(u128, u128)],
    path: &str,
) {
    if first > last {
        return; // already reported as bounds
    }
    let left = assignable(first, last, excluded);
    if left < 2 {
        ctx.raise(
            IPAM_RANGE_EXHAUSTED,
            path,
            format!(
                "the range {cidr} leaves {left} assignable address{} after bounds and exclusions; every node's \
                 virt-handler needs its own",
                if left == 1 { "" } else { "es" }
            ),
            "widen the range or the range_start/range_end bounds, or exclude less".into(),
        );
    }
}
