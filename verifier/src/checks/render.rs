//! `check`'s report for machines (JSON) and for a terminal.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::{budget::BudgetLine, findings::Finding, Report};
use crate::{units::rate_and_bytes, verdict::Severity};

/// The report as JSON: the verdict, counts by severity, every finding and
/// budget line, the main networks in force.
pub fn json(report: &Report) -> Value {
    json!({
        "schema_version": 1,
        "verdict": report.verdict(),
        "summary": {
            "errors": report.count(Severity::Error),
            "warnings": report.count(Severity::Warning),
            "infos": report.count(Severity::Info),
        },
        "findings": report.findings.0,
        "budgets": report.budgets,
        "main_networks": report.main.0.iter().map(|n| json!({
            "role": n.role.to_string(), "cidr": n.cidr.to_string(), "origin": n.origin,
        })).collect::<Vec<_>>(),
    })
}

/// The report for a terminal: findings grouped by object, in the order
/// objects were first named, the worst first within each; then the budget
/// lines and the verdict.
pub fn text(report: &Report) -> String {
    let mut groups: BTreeMap<usize, (&str, Vec<&Finding>)> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for finding in &report.findings.0 {
        let position = order
            .iter()
            .position(|o| *o == finding.object)
            .unwrap_or_else(|| {
                order.push(&finding.object);
                order.len() - 1
            });
        groups
            .entry(position)
            .or_insert((&finding.object, Vec::new()))
            .1
            .push(finding);
    }
    let mut out = String::new();
    for (object, mut findings) in groups.into_values() {
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        out += &format!("{object}\n");
        for f in findings {
            let location = f
                .location
                .as_deref()
                .map(|l| format!("  ({l})"))
                .unwrap_or_default();
            out += &format!(
                "  {:<7} {} {}  {}{location}\n",
                f.severity.as_str(),
                f.id,
                f.name,
                f.path
            );
            out += &format!("          {}\n", f.message);
            if !f.fix.starts_with("nothing to fix") {
                out += &format!("          fix: {}\n", f.fix);
            }
        }
        out += "\n";
    }
    for line in &report.budgets {
        out += &budget_text(line);
    }
    out += &format!(
        "{} error(s), {} warning(s), {} info: {}\n",
        report.count(Severity::Error),
        report.count(Severity::Warning),
        report.count(Severity::Info),
        report.verdict().as_str()
    );
    out
}

fn budget_text(line: &BudgetLine) -> String {
    let b = &line.budget;
    let mut out = format!("budget for {} (limits from {})\n", line.vm, line.source);
    out += &format!(
        "  completion timeout  {} s/GiB x {} (size {} bytes in units of 10^9, rounded up) = {} s\n",
        b.completion_timeout_per_gib, b.size_units, b.size_bytes, b.completion_timeout_s
    );
    out += &format!(
        "  minimum rate        {} to move the memory once in that time\n",
        rate_and_bytes(b.min_rate_bps)
    );
    out += &format!(
        "  node drain          {} migration(s) at once per node: {} on its migration NIC\n",
        line.parallel_outbound_per_node,
        rate_and_bytes(line.node_drain_rate_bps)
    );
    out += &format!(
        "  progress timeout    {} s without progress cancels a migration\n",
        line.progress_timeout_s
    );
    if let Some(cap) = line.bandwidth_per_migration_bps {
        out += &format!("  bandwidth cap       {}\n", rate_and_bytes(cap));
    }
    for assumption in &line.assumptions {
        out += &format!("  assumed: {assumption}\n");
    }
    out + "\n"
}
