//! Which network a migration used: the pod network instead of the
//! migration network, a target outside the migration CIDRs, a VLAN other
//! than the NAD's.

use std::net::{IpAddr, SocketAddr};

use serde_json::json;

use super::Expectations;
use crate::{
    dataplane::Role,
    measure::{
        migration::Figures,
        reasons::{Reason, FALLBACK_OUTSIDE_CIDR, FALLBACK_PRIMARY, VLAN_MISMATCH, VLAN_NOT_SEEN},
    },
};

/// A target endpoint outside the migration network's CIDRs.
pub fn outside_cidr(expectations: &Expectations, f: &Figures) -> Option<Reason> {
    if expectations.cidrs.is_empty() {
        return None;
    }
    let outside: Vec<&String> = f
        .targets
        .iter()
        .filter(|t| {
            t.parse::<SocketAddr>()
                .map(|s| s.ip())
                .is_ok_and(|ip: IpAddr| !expectations.cidrs.iter().any(|c| c.contains(ip)))
        })
        .collect();
    if outside.is_empty() {
        return None;
    }
    let cidrs: Vec<String> = expectations.cidrs.iter().map(ToString::to_string).collect();
    Some(FALLBACK_OUTSIDE_CIDR.raise(
        format!(
            "the target endpoint {} is outside the migration network {}: the migration left it",
            outside
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            cidrs.join(", ")
        ),
        json!({ "targets": outside, "cidrs": cidrs }),
    ))
}

/// A VLAN tag other than the NAD's, or none where the NAD names one.
/// Untagged bytes are normal on access ports (migration0, the pod's veth);
/// a tag other than the NAD's is not, anywhere.
pub fn vlan(expectations: &Expectations, f: &Figures) -> Option<Reason> {
    let expected = expectations.vlan?;
    let tagged: Vec<&String> = f
        .bytes_by_vlan
        .keys()
        .filter(|v| *v != "untagged")
        .collect();
    let other: Vec<&&String> = tagged
        .iter()
        .filter(|v| ***v != expected.to_string())
        .collect();
    let evidence = json!({ "expected": expected, "bytes_by_vlan": f.bytes_by_vlan });
    if !other.is_empty() {
        Some(VLAN_MISMATCH.raise(
            format!(
                "migration traffic carried VLAN {} where the NAD says {expected}: the switch ports or the \
                 NAD's vlan are misconfigured",
                other
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            evidence,
        ))
    } else if tagged.is_empty() {
        Some(VLAN_NOT_SEEN.raise(
            format!(
                "the NAD puts migration traffic on VLAN {expected}, but no observed interface carried a tag: \
                 observe the bridge or its uplink to confirm the VLAN"
            ),
            evidence,
        ))
    } else {
        None
    }
}

/// Migration bytes on an interface of role `primary`.
pub fn fallback_primary(f: &Figures) -> Option<Reason> {
    if f.bytes_by_role.primary == 0 {
        return None;
    }
    let on: Vec<String> = f
        .bytes_by_interface
        .iter()
        .filter(|i| i.role == Role::Primary)
        .map(|i| {
            i.netns
                .as_ref()
                .map_or(i.interface.clone(), |ns| format!("{}@{ns}", i.interface))
        })
        .collect();
    Some(FALLBACK_PRIMARY.raise(
        format!(
            "{} bytes of this migration crossed the primary (pod) network on {}: virt-handler did not use \
             the migration network (is migration0 missing from the virt-handler pod?)",
            f.bytes_by_role.primary,
            on.join(", ")
        ),
        json!({ "bytes_by_role": f.bytes_by_role, "interfaces": on }),
    ))
}
