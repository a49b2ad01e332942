//! What to attach to: an interface, its namespace and its network role.

use std::{fmt, str::FromStr};

use serde::Serialize;

use super::netns::Netns;

/// The part an interface plays for live migration. Verdicts are judged by
/// the role of the interface where migration bytes were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The migration NIC, virt-handler's `migration0`, the migration bridge's ports.
    Migration,
    /// The bridge device of a bridge-CNI migration network.
    Bridge,
    /// The pod (primary) network: migration bytes here are a fallback.
    Primary,
    /// Anything else worth watching; never judged.
    Other,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Migration => "migration",
            Role::Bridge => "bridge",
            Role::Primary => "primary",
            Role::Other => "other",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One interface to observe: `[ROLE:]IFACE[@NETNS]`.
///
/// `migration:migration0@/proc/4242/ns/net`, `primary:eth0@mvlab-vha`,
/// `eth1`. Without a role the interface is `other`: watched, never judged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachSpec {
    pub role: Role,
    pub iface: String,
    pub netns: Option<Netns>,
}

impl fmt::Display for AttachSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.role, self.iface)?;
        if let Some(netns) = &self.netns {
            write!(f, "@{netns}")?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error("empty interface name in `{0}` (expected [ROLE:]IFACE[@NETNS])")]
    EmptyInterface(String),
    #[error("unknown role `{role}` in `{spec}` (expected migration, bridge, primary or other)")]
    UnknownRole { role: String, spec: String },
    #[error("empty namespace after `@` in `{0}`")]
    EmptyNetns(String),
    #[error("interface name `{0}` is longer than 15 bytes")]
    NameTooLong(String),
}

impl FromStr for AttachSpec {
    type Err = SpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let (rest, netns) = match spec.split_once('@') {
            Some((_, "")) => return Err(SpecError::EmptyNetns(spec.into())),
            Some((rest, netns)) => (rest, Some(Netns::parse(netns))),
            None => (spec, None),
        };
        let (role, iface) = match rest.split_once(':') {
            Some((role, iface)) => {
                let role = <Role as clap::ValueEnum>::from_str(role, true).map_err(|_| {
                    SpecError::UnknownRole {
                        role: role.into(),
                        spec: spec.into(),
                    }
                })?;
                (role, iface)
            }
            None => (Role::Other, rest),
        };
        if iface.is_empty() {
            return Err(SpecError::EmptyInterface(spec.into()));
        }
        // IFNAMSIZ is 16 including the terminating NUL.
        if iface.len() > 15 {
            return Err(SpecError::NameTooLong(iface.into()));
        }
        Ok(AttachSpec {
            role,
            iface: iface.into(),
            netns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_part() {
        let spec: AttachSpec = "migration:migration0@/proc/42/ns/net".parse().unwrap();
        assert_eq!(spec.role, Role::Migration);
        assert_eq!(spec.iface, "migration0");
        assert_eq!(
            spec.netns.unwrap().path(),
            std::path::Path::new("/proc/42/ns/net")
        );

        let spec: AttachSpec = "Primary:eth0@mvlab-vha".parse().unwrap();
        assert_eq!(spec.role, Role::Primary);
        assert_eq!(
            spec.netns.unwrap().path(),
            std::path::Path::new("/var/run/netns/mvlab-vha")
        );
    }

    #[test]
    fn bare_interface_is_other_in_this_namespace() {
        let spec: AttachSpec = "eth1".parse().unwrap();
        assert_eq!(
            (spec.role, spec.iface.as_str(), spec.netns),
            (Role::Other, "eth1", None)
        );
    }

    #[test]
    fn rejects_malformed_specs() {
        assert!(matches!(
            "bogus:eth0".parse::<AttachSpec>(),
            Err(SpecError::UnknownRole { .. })
        ));
        assert!(matches!(
            "migration:".parse::<AttachSpec>(),
            Err(SpecError::EmptyInterface(_))
        ));
        assert!(matches!(
            "eth0@".parse::<AttachSpec>(),
            Err(SpecError::EmptyNetns(_))
        ));
        assert!(matches!(
            "a-very-long-interface".parse::<AttachSpec>(),
            Err(SpecError::NameTooLong(_))
        ));
    }
}
