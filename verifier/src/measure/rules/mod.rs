//! The rules a verdict rests on, one function each, shared by the live
//! view (`watch`, evaluated every refresh against "now") and the final
//! report (`verify`, `lab run`, the agent, evaluated at the end of the
//! observation), so an operator sees the same reason, under the same
//! stable ID, while it happens and afterwards.
//!
//! Two families: the judgements of a migration against what the
//! configuration and the budgets expect ([`network`], [`budget`]), and the
//! named causes of a stuck or slow migration, each with the evidence on
//! the wire that supports it ([`connection`], [`rate`], [`reach`],
//! [`converge`]). Every
//! cause rests on what the observers count per connection and direction
//! (payload that advanced the sequence, retransmissions, zero windows,
//! segment sizes, the SYN's MSS, SYN / SYN-ACK / FIN / RST) and on ARP per
//! address, because an unreachable peer sends no SYN at all: the kernel
//! holds it until the target's address resolves.

mod budget;
mod connection;
mod converge;
mod network;
pub mod rate;
mod reach;
#[cfg(test)]
mod tests;

use verifier_ebpf::{NeighborKey, NeighborStats};

use super::{
    budget::BudgetReport,
    migration::{Figures, Group},
    reasons::Reason,
};
use crate::{
    config::{Cidr, Endpoint},
    flows::{FlowTable, SlotInfo},
    intent::Ended,
};

/// Whether the rules judge a moment in a running observation or its end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// `watch`: every refresh, about now.
    Live,
    /// `verify`, `lab run`, the agent: once, about the whole observation.
    Final,
}

/// What the judge knows beyond the measurements.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The migration network's CIDRs; empty: not checked.
    pub cidrs: Vec<Cidr>,
    /// The VLAN the NAD puts migration traffic on.
    pub vlan: Option<u16>,
    /// Endpoints were published, so traffic was expected.
    pub expect_traffic: bool,
    /// The traffic is a bench's bulk transfer, not a migration: it moves
    /// no memory, so there is no pre-copy to judge.
    pub bulk_transfer: bool,
}

/// Everything the rules look at besides each migration's own figures.
pub struct Scene<'a> {
    pub table: &'a FlowTable,
    pub slots: &'a [Option<SlotInfo>],
    pub endpoints: &'a [Endpoint],
    pub neighbors: &'a [(NeighborKey, NeighborStats)],
    pub expectations: &'a Expectations,
    /// Now (live) or the end of the observation, ms since it started.
    pub now_ms: u64,
    /// When the endpoints became known, ms since the observation started.
    pub endpoints_since_ms: u64,
    pub phase: Phase,
}

/// One migration as the rules see it.
pub struct Subject<'a> {
    pub group: &'a Group<'a>,
    pub figures: &'a Figures,
    pub budget: &'a BudgetReport,
    /// How it ended, where whoever ran it said.
    pub ended: Option<Ended>,
}

/// Within this share of a budget is a warning.
pub const NEAR_BUDGET: f64 = 0.8;

/// The judgements of each migration against the configuration and its
/// budgets.
pub fn judgements(scene: &Scene, migrations: &[Subject]) -> Vec<Reason> {
    let mut reasons = Vec::new();
    for subject in migrations {
        let id = &subject.figures.id;
        let about = |reason: Reason| reason.about(id.clone());
        reasons.extend(network::outside_cidr(scene.expectations, subject.figures).map(about));
        reasons.extend(network::vlan(scene.expectations, subject.figures).map(about));
        reasons.extend(budget::stall(subject).map(about));
        reasons.extend(budget::completion(subject).map(about));
        reasons.extend(budget::few_rtt_samples(subject.figures).map(about));
    }
    super::reasons::sort(&mut reasons);
    reasons
}

/// The named causes that hold, with their evidence.
pub fn causes(scene: &Scene, migrations: &[Subject]) -> Vec<Reason> {
    let mut causes = Vec::new();
    for subject in migrations {
        let id = &subject.figures.id;
        let about = |reason: Reason| reason.about(id.clone());
        let facts = connection::Facts::of(scene, subject);
        causes.extend(connection::peer_unreachable(subject, &facts).map(about));
        let mtu = connection::mtu_blackhole(&facts).map(about);
        let blackhole = connection::blackhole(subject, &facts).map(about);
        // Loss explains a stall better than a closed window, a cap a slow rate.
        let lossy = mtu.is_some() || blackhole.is_some();
        causes.extend(mtu);
        causes.extend(blackhole);
        causes.extend(connection::reset_after_connect(&facts).map(about));
        let cap = rate::rate_cap(scene, subject).map(about);
        let capped = cap.is_some();
        causes.extend(cap);
        if !lossy {
            causes.extend(rate::receiver_bound(scene, subject, &facts, capped).map(about));
        }
        causes.extend(network::fallback_primary(subject.figures).map(about));
        causes.extend(converge::not_converging(scene, subject).map(about));
    }
    let unreachable = reach::unreachable_by_arp(scene, &mut causes);
    reach::no_traffic(scene, migrations, &unreachable, &mut causes);
    causes
}

fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
