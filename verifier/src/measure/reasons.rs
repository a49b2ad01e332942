//! The catalogue of every reason a verdict can rest on: the configuration
//! and budget reasons, the named causes of a stuck or slow migration, and
//! the lab's and the bench's own.
//!
//! Each reason has a stable ID, the severities it is raised at, whether
//! `watch` raises it live, the Kubernetes Event reason the agent posts for
//! it, and the doc line that says when it holds. Everything that raises a
//! reason names it from here; `docs/verify.md` and `docs/watch.md` carry
//! the tables rendered from [`CATALOGUE`], and a test keeps them equal.

use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::verdict::{Severity, Verdict};

/// One kind of reason.
#[derive(Debug, PartialEq, Eq)]
pub struct ReasonKind {
    pub id: &'static str,
    /// The severities it is raised at; the first is its usual one.
    pub severities: &'static [Severity],
    /// Whether the live evaluation (`watch`, the metrics) raises it too.
    /// The others judge a whole observation: a budget, the VLANs and
    /// addresses a migration used, the count of RTT samples.
    pub live: bool,
    /// The Kubernetes Event reason the agent posts when this is the first
    /// error of a migration it judged.
    pub event: Option<&'static str>,
    /// When it holds.
    pub when: &'static str,
}

macro_rules! catalogue {
    ($( $(#[doc = $doc:literal])+ $konst:ident = $id:literal [$($severity:ident),+] $live:ident $($event:literal)?; )+) => {
        $(
            $(#[doc = $doc])+
            pub static $konst: ReasonKind = ReasonKind {
                id: $id,
                severities: &[$(Severity::$severity),+],
                live: catalogue!(@live $live),
                event: catalogue!(@event $($event)?),
                when: concat!($($doc, "\n"),+),
            };
        )+
        /// Every reason, in catalogue order.
        pub static CATALOGUE: &[&ReasonKind] = &[$(&$konst),+];
    };
    (@live live) => { true };
    (@live final) => { false };
    (@event $event:literal) => { Some($event) };
    (@event) => { None };
}

catalogue! {
    /// Migration bytes crossed a primary (pod) interface: virt-handler did
    /// not use the migration network.
    FALLBACK_PRIMARY = "fallback.primary-network" [Error] live "MigrationNetworkFallback";
    /// A target endpoint lies outside the migration network's CIDRs.
    FALLBACK_OUTSIDE_CIDR = "fallback.outside-cidr" [Error] final "MigrationNetworkFallback";
    /// Migration traffic carried a VLAN tag other than the NAD's.
    VLAN_MISMATCH = "vlan.mismatch" [Error] final "MigrationNetworkVlanMismatch";
    /// The NAD names a VLAN, but no observed interface carried a tag.
    VLAN_NOT_SEEN = "vlan.not-seen" [Warning] final;
    /// No payload moved for longer than `progressTimeout`.
    BUDGET_STALL = "budget.stall" [Error] final "MigrationStalled";
    /// A stall over 80% of `progressTimeout`.
    BUDGET_STALL_NEAR = "budget.stall-near" [Warning] final;
    /// The projected completion exceeds the completion budget.
    BUDGET_COMPLETION = "budget.completion" [Error] final "MigrationOverBudget";
    /// The projection is over 80% of the completion budget.
    BUDGET_COMPLETION_NEAR = "budget.completion-near" [Warning] final;
    /// Fewer than 10 RTT samples: the latency figures rest on too little.
    RTT_FEW_SAMPLES = "rtt.few-samples" [Warning] final;
    /// No migration traffic (error when endpoints were published; live:
    /// published endpoints and no packet for them, not even ARP, after
    /// 5 s).
    TRAFFIC_NONE = "traffic.none" [Error, Warning] live "MigrationTrafficNotSeen";
    /// The data plane lost segments or events (counted): figures may be low.
    DATAPLANE_LOST = "dataplane.lost" [Warning] final;
    /// In the lab: QEMU's migration did not complete.
    LAB_MIGRATION_FAILED = "lab.migration-failed" [Error] final;
    /// SYNs without SYN-ACK, a reset answering the SYN, or ARP for the
    /// target unanswered (a warning for an address of the CIDR that no
    /// migration published).
    PEER_UNREACHABLE = "cause.peer-unreachable" [Error, Warning] live "MigrationPeerUnreachable";
    /// The handshake completed, then full-size segments were retransmitted
    /// with no acknowledged progress.
    MTU_BLACKHOLE = "cause.mtu-blackhole" [Error] live "MigrationStalled";
    /// The stream moved, then stopped being acknowledged while the sender
    /// retransmits.
    BLACKHOLE = "cause.blackhole" [Error] live "MigrationStalled";
    /// A flat rate at a limit; a warning or an error as the projection at
    /// it nears or exceeds the completion budget.
    RATE_CAP = "cause.rate-cap" [Info, Warning, Error] live "MigrationOverBudget";
    /// Zero windows from the target while the migration stands still, or
    /// is too slow for its budget with no cap to explain it.
    RECEIVER_BOUND = "cause.receiver-bound" [Warning] live "MigrationStalled";
    /// Reset within 3 s of connecting, after at most a handshake's worth of
    /// payload.
    RESET_AFTER_CONNECT = "cause.reset-after-connect" [Error] live "MigrationConnectionReset";
    /// Pre-copy does not converge: past its first pass the migration has
    /// sent its whole size again and kept re-sending for longer than the
    /// first pass took (the guest dirties memory about as fast as the link
    /// carries it). An error while it runs and when it failed; a warning
    /// when how it ended is unknown; information when it completed anyway.
    NOT_CONVERGING = "cause.not-converging" [Error, Warning, Info] live "MigrationNotConverging";
    /// bench: a VM of the given size takes longer than its completion
    /// budget at the median rate.
    BENCH_COMPLETION = "bench.completion" [Error] final;
    /// bench: the VM fits at the median rate but not at the sustained (p5)
    /// one, or takes over 80% of its budget.
    BENCH_COMPLETION_NEAR = "bench.completion-near" [Warning] final;
    /// bench: the link carries fewer migrations at the budget's minimum
    /// rate than `parallelOutboundMigrationsPerNode`.
    BENCH_PARALLEL = "bench.parallel" [Warning] final;
    /// bench: `bandwidthPerMigration` is below the link's median rate and
    /// sets each migration's speed.
    BENCH_BANDWIDTH_PER_MIGRATION = "bench.bandwidth-per-migration" [Info] final;
    /// bench: the server received nothing.
    BENCH_NOTHING_MOVED = "bench.nothing-moved" [Error] final;
    /// bench: migration-shaped traffic against iperf3's rate on the same path.
    BENCH_IPERF3 = "bench.iperf3" [Info] final;
    /// bench: the iperf3 reference could not run.
    BENCH_IPERF3_FAILED = "bench.iperf3-failed" [Warning] final;
    /// bench: the synchronization controller's port does not answer
    /// (cross-cluster migration needs it).
    BENCH_SYNC_UNREACHABLE = "bench.sync-unreachable" [Error] final;
}

/// The Event reasons of a judged migration that no catalogue entry names.
pub const EVENT_VERIFIED: &str = "MigrationNetworkVerified";
pub const EVENT_FAILED: &str = "MigrationNetworkFailed";

impl ReasonKind {
    /// This reason at its usual severity, about no one migration.
    pub fn raise(&'static self, message: String, evidence: Value) -> Reason {
        self.raise_at(self.severities[0], message, evidence)
    }

    /// This reason at `severity`, one of those it is raised at.
    pub fn raise_at(&'static self, severity: Severity, message: String, evidence: Value) -> Reason {
        debug_assert!(
            self.severities.contains(&severity),
            "{} is not raised at {severity:?}",
            self.id
        );
        Reason {
            kind: self,
            severity,
            message,
            migration: None,
            evidence,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Reason {
    #[serde(rename = "id", serialize_with = "id_of")]
    pub kind: &'static ReasonKind,
    pub severity: Severity,
    pub message: String,
    /// The migration it is about, if one.
    pub migration: Option<String>,
    pub evidence: Value,
}

fn id_of<S: Serializer>(kind: &&'static ReasonKind, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(kind.id)
}

impl Reason {
    pub fn id(&self) -> &'static str {
        self.kind.id
    }

    /// The same reason, about `migration`.
    pub fn about(self, migration: impl Into<String>) -> Reason {
        Reason {
            migration: Some(migration.into()),
            ..self
        }
    }
}

/// Errors first, then warnings, then information; stable within each.
pub fn sort(reasons: &mut [Reason]) {
    reasons.sort_by_key(|r| std::cmp::Reverse(r.severity));
}

/// The verdict of a set of reasons.
pub fn verdict(reasons: &[Reason]) -> Verdict {
    Verdict::of(reasons.iter().map(|r| r.severity))
}

/// The catalogue as the Markdown table of `docs/verify.md`.
pub fn verify_markdown() -> String {
    let mut out = String::from(
        "| id | severity | live | Event reason | when |\n| --- | --- | --- | --- | --- |\n",
    );
    for kind in CATALOGUE {
        out += &format!(
            "| `{}` | {} | {} | {} | {} |\n",
            kind.id,
            severities(kind),
            if kind.live { "yes" } else { "no" },
            kind.event.map_or("-".into(), |e| format!("`{e}`")),
            one_line(kind.when)
        );
    }
    out
}

/// The reasons `watch` raises live, as the Markdown table of `docs/watch.md`.
pub fn watch_markdown() -> String {
    let mut out = String::from("| id | severity | when |\n| --- | --- | --- |\n");
    for kind in CATALOGUE.iter().filter(|k| k.live) {
        out += &format!(
            "| `{}` | {} | {} |\n",
            kind.id,
            severities(kind),
            one_line(kind.when)
        );
    }
    out
}

fn severities(kind: &ReasonKind) -> String {
    kind.severities
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" / ")
}

fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .replace('|', "\\|")
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_and_events_camel_case() {
        let mut ids = HashSet::new();
        for kind in CATALOGUE {
            assert!(ids.insert(kind.id), "{} twice", kind.id);
            let (area, name) = kind.id.split_once('.').expect("area.name");
            assert!(!area.is_empty() && !name.is_empty(), "{}", kind.id);
            assert!(
                kind.event
                    .is_none_or(|e| e.starts_with("Migration") && !e.contains(' ')),
                "{}",
                kind.id
            );
        }
    }

    /// Each doc carries its table between two markers; rewrite them with
    /// `MIGVERIFY_BLESS=1 cargo test -p verifier --lib reasons`.
    #[test]
    fn docs_verify_and_watch_match_the_catalogue() {
        const BEGIN: &str =
            "<!-- BEGIN REASONS (generated from verifier/src/measure/reasons.rs) -->\n";
        const END: &str = "<!-- END REASONS -->";
        for (doc, generated) in [
            ("verify.md", verify_markdown()),
            ("watch.md", watch_markdown()),
        ] {
            let path = format!("{}/../docs/{doc}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).expect("the doc");
            let (head, rest) = text
                .split_once(BEGIN)
                .unwrap_or_else(|| panic!("BEGIN marker in docs/{doc}"));
            let (current, tail) = rest
                .split_once(END)
                .unwrap_or_else(|| panic!("END marker in docs/{doc}"));
            if current != generated {
                if std::env::var_os("MIGVERIFY_BLESS").is_some() {
                    std::fs::write(&path, format!("{head}{BEGIN}{generated}{END}{tail}")).unwrap();
                } else {
                    panic!("docs/{doc} is out of date: run MIGVERIFY_BLESS=1 cargo test -p verifier --lib reasons");
                }
            }
        }
    }
}
