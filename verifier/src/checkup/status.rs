//! The checkup's output: the `status.*` keys it writes into its ConfigMap,
//! in the kiagnose style, from `bench run`'s JSON report.

use std::collections::BTreeMap;

use serde_json::Value;

pub const START: &str = "status.startTimestamp";
pub const COMPLETION: &str = "status.completionTimestamp";
pub const SUCCEEDED: &str = "status.succeeded";
pub const FAILURE_REASON: &str = "status.failureReason";
pub const RESULT_PREFIX: &str = "status.result.";

/// The report's JSON object, found in the client pod's log (stdout and
/// stderr interleaved: the report is the pretty-printed object that starts
/// with a line `{` and ends with a line `}`).
pub fn report_from_log(log: &str) -> Option<Value> {
    let lines: Vec<&str> = log.lines().collect();
    let start = lines.iter().position(|l| *l == "{")?;
    let end = start + lines[start..].iter().position(|l| *l == "}")?;
    serde_json::from_str(&lines[start..=end].join("\n")).ok()
}

/// What the checkup concludes from a report: `status.result.*` (without
/// the prefix), whether it succeeded and, if not, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub result: BTreeMap<String, String>,
    pub succeeded: bool,
    pub failure_reason: String,
}

/// A report value as a ConfigMap string: integers as they are, fractions
/// to one decimal; nothing for null.
fn text(value: &Value) -> Option<String> {
    Some(match value {
        Value::Null => return None,
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() => format!("{f:.1}"),
            _ => n.to_string(),
        },
        other => other.to_string(),
    })
}

/// Turns `bench run`'s report into the checkup's results. The checkup
/// fails (succeeded=false) on a FAIL verdict: the VM misses its budget at
/// the median rate, nothing arrived, or the wire shows the traffic off the
/// migration network; a WARN verdict succeeds with its reasons in
/// `status.result.reasons`.
pub fn outcome(report: &Value) -> Result<Outcome, String> {
    let bench = report
        .get("bench")
        .filter(|b| b.is_object())
        .ok_or("the report has no bench section")?;
    let verdict = report["verdict"]
        .as_str()
        .ok_or("the report has no verdict")?;
    let answers = &bench["answers"];
    let mut result = BTreeMap::new();
    let mut put = |key: &str, value: &Value| {
        if let Some(text) = text(value) {
            result.insert(key.to_string(), text);
        }
    };
    put("verdict", &report["verdict"]);
    put("rateSource", &bench["rate_source"]);
    put("sustainedRateBitsPerSecond", &bench["throughput_bps"]["p5"]);
    put("medianRateBitsPerSecond", &bench["throughput_bps"]["p50"]);
    put("meanReceivedBitsPerSecond", &bench["run"]["mean_bps"]);
    put("receivedBytes", &bench["run"]["received_bytes"]);
    put("benchSeconds", &bench["run"]["elapsed_s"]);
    put("vmMemoryBytes", &answers["size_bytes"]);
    put("completionTimeoutSeconds", &answers["completion_timeout_s"]);
    put("minimumRateBitsPerSecond", &answers["min_rate_bps"]);
    for (at, name) in [("at_p50", "MedianRate"), ("at_p5", "SustainedRate")] {
        let a = &answers[at];
        // No completion time: nothing moved; no largest VM: every size fits.
        let or = |v: &Value, word: &str| match v {
            Value::Null => Value::String(word.into()),
            v => v.clone(),
        };
        put(
            &format!("completionSecondsAt{name}"),
            &or(&a["completion_s"], "never"),
        );
        put(&format!("fitsAt{name}"), &a["fits"]);
        put(
            &format!("largestVmBytesAt{name}"),
            &or(&a["largest_vm_bytes"], "any"),
        );
    }
    put(
        "parallelMigrationsSupported",
        &answers["parallel_supported"],
    );
    put(
        "parallelOutboundMigrationsPerNode",
        &answers["parallel_outbound_migrations_per_node"],
    );
    put(
        "bandwidthPerMigrationLimits",
        &answers["bandwidth_per_migration_limits"],
    );
    let reasons = |severity: &str| -> Vec<String> {
        report["reasons"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["severity"] == severity)
            .map(|r| {
                format!(
                    "{}: {}",
                    r["id"].as_str().unwrap_or("?"),
                    r["message"].as_str().unwrap_or("")
                )
            })
            .collect()
    };
    let errors = reasons("error");
    let warnings = reasons("warning");
    let listed: Vec<&String> = errors.iter().chain(&warnings).collect();
    if !listed.is_empty() {
        result.insert(
            "reasons".into(),
            listed
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join("; "),
        );
    }
    let succeeded = verdict != "FAIL";
    let failure_reason = if succeeded {
        String::new()
    } else if errors.is_empty() {
        "the bench's verdict is FAIL".into()
    } else {
        errors.join("; ")
    };
    Ok(Outcome {
        result,
        succeeded,
        failure_reason,
    })
}

/// The `data` changes of one status write: every key set to a value, or
/// `None` to remove it (a merge patch's null). Old `status.*` keys not
/// written now are removed, so a rerun never shows stale results.
pub fn changes(
    current: &BTreeMap<String, String>,
    now: &BTreeMap<String, String>,
) -> BTreeMap<String, Option<String>> {
    let mut out: BTreeMap<String, Option<String>> = current
        .keys()
        .filter(|k| k.starts_with("status.") && !now.contains_key(*k))
        .map(|k| (k.clone(), None))
        .collect();
    out.extend(now.iter().map(|(k, v)| (k.clone(), Some(v.clone()))));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn report(verdict: &str, reasons: Value) -> Value {
        json!({
            "schema_version": 1,
            "verdict": verdict,
            "reasons": reasons,
            "bench": {
                "run": {"mean_bps": 190_000_000u64, "received_bytes": 118_000_000u64, "elapsed_s": 5.02},
                "rate_source": "sender",
                "throughput_bps": {"p5": 185_000_000u64, "p50": 190_800_000u64},
                "answers": {
                    "size_bytes": 268435456u64, "completion_timeout_s": 150, "min_rate_bps": 14316557u64,
                    "at_p50": {"completion_s": 11.25, "fits": true, "largest_vm_bytes": null},
                    "at_p5": {"completion_s": null, "fits": false, "largest_vm_bytes": 0},
                    "parallel_supported": 13, "parallel_outbound_migrations_per_node": 2,
                    "bandwidth_per_migration_limits": false
                }
            }
        })
    }

    #[test]
    fn results_from_a_report() {
        let out = outcome(&report("PASS", json!([]))).unwrap();
        assert!(out.succeeded);
        assert_eq!(out.failure_reason, "");
        let r = &out.result;
        assert_eq!(r["verdict"], "PASS");
        assert_eq!(r["sustainedRateBitsPerSecond"], "185000000");
        assert_eq!(r["medianRateBitsPerSecond"], "190800000");
        assert_eq!(r["completionSecondsAtMedianRate"], "11.2");
        assert_eq!(r["completionSecondsAtSustainedRate"], "never");
        assert_eq!(r["largestVmBytesAtMedianRate"], "any");
        assert_eq!(r["largestVmBytesAtSustainedRate"], "0");
        assert_eq!(r["parallelMigrationsSupported"], "13");
        assert_eq!(r["fitsAtMedianRate"], "true");
        assert!(!r.contains_key("reasons"));

        let out = outcome(&report(
            "FAIL",
            json!([
                {"id": "bench.budget-missed", "severity": "error", "message": "too slow"},
                {"id": "bench.near-budget", "severity": "warning", "message": "close"},
                {"id": "x", "severity": "info", "message": "fyi"}
            ]),
        ))
        .unwrap();
        assert!(!out.succeeded);
        assert_eq!(out.failure_reason, "bench.budget-missed: too slow");
        assert_eq!(
            out.result["reasons"],
            "bench.budget-missed: too slow; bench.near-budget: close"
        );
        assert!(outcome(&json!({"verdict": "PASS"})).is_err());
    }

    #[test]
    fn the_report_in_a_log_with_stderr_around_it() {
        let log = "migverify: bench sent 5 bytes\n{\n  \"verdict\": \"PASS\",\n  \"x\": {\n    \"y\": 1\n  }\n}\nmigverify: bye\n";
        assert_eq!(
            report_from_log(log),
            Some(json!({"verdict": "PASS", "x": {"y": 1}}))
        );
        assert_eq!(report_from_log("migverify: refused\n"), None);
    }

    #[test]
    fn stale_status_keys_are_removed() {
        let current: BTreeMap<String, String> = [
            ("spec.timeout", "5m"),
            ("status.result.verdict", "PASS"),
            ("status.failureReason", ""),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let now = BTreeMap::from([(START.to_string(), "2026-01-01T00:00:00Z".to_string())]);
        let c = changes(&current, &now);
        assert_eq!(c["status.result.verdict"], None);
        assert_eq!(c["status.failureReason"], None);
        assert_eq!(c[START].as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(!c.contains_key("spec.timeout"));
    }
}
