//! A source node's migrations together: more at once than
//! `parallelOutboundMigrationsPerNode`, and less rate than those running
//! together need.

use serde_json::json;

use crate::{
    measure::{
        node::NodeFigures,
        reasons::{Reason, PARALLEL_OVER_LIMIT, PARALLEL_RATE},
    },
    units::rate,
};

/// More migrations moved at once from the node than the limit allows.
pub fn over_limit(node: &NodeFigures) -> Option<Reason> {
    (node.peak_parallel as u64 > node.parallel_limit).then(|| {
        PARALLEL_OVER_LIMIT.raise(
            format!(
                "{} migrations moved at once from {} ({}), more than parallelOutboundMigrationsPerNode {}: the \
                 limits judged by are not those in force",
                node.peak_parallel,
                node.source,
                node.peak_migrations.join(", "),
                node.parallel_limit
            ),
            json!({ "node": node }),
        )
    })
}

/// Migrations running together need more than the link gave them then.
pub fn rate_shortfall(node: &NodeFigures) -> Option<Reason> {
    let gave = node.gave_bps?;
    (node.peak_parallel >= 2 && gave < node.need_bps).then(|| {
        PARALLEL_RATE.raise(
            format!(
                "{} migrations at once from {} need {} on the migration NIC (each its completion budget's \
                 least rate); the link gave {} while they ran together",
                node.peak_parallel,
                node.source,
                rate(node.need_bps),
                rate(gave)
            ),
            json!({ "node": node }),
        )
    })
}
