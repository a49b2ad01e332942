//! The PrometheusRule and the Grafana dashboard in deploy/monitoring/, held
//! to the series migverify really serves: promtool parses the rules (their
//! annotation templates included) and every panel's query, then
//! `promtool test rules` replays series recorded from lab runs
//! (verifier/tests/alerts/*.yaml, each with its provenance; made by
//! verifier/tests/watch/record.rs) and each alert fires where it should and
//! nowhere else. The lab has no kube-state-metrics and loses no data, so
//! `kube_pod_info` and the loss counters' increments are written here, and
//! say so.
//!
//! Needs promtool (Debian's `prometheus`, installed by `cargo xtask setup`).
//! Unprivileged.

use std::{path::PathBuf, process::Command};

use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Whether promtool runs here; under `cargo xtask test` it must.
fn promtool() -> bool {
    let found = Command::new("promtool").arg("--version").output().is_ok();
    if !found {
        assert!(
            std::env::var_os("MIGVERIFY_PRIVILEGED_TESTS").is_none(),
            "promtool is missing: `cargo xtask setup` installs Debian's prometheus package"
        );
        eprintln!("skipping: promtool is missing (cargo xtask setup installs it)");
    }
    found
}

fn yaml(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn run(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?}:\n{text}");
    text
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("migverify-alerts-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The recorded series of one run.
fn recorded(name: &str) -> Vec<Value> {
    let file = yaml(&root().join(format!("verifier/tests/alerts/{name}.yaml")));
    assert_eq!(file["interval"], "1s");
    file["input_series"].as_array().unwrap().clone()
}

fn alert(labels: Value) -> Value {
    json!({ "exp_labels": labels })
}

#[test]
fn the_rules_parse_and_fire_on_recorded_series() {
    if !promtool() {
        return;
    }
    let dir = scratch("rules");
    let rule = yaml(&root().join("deploy/monitoring/prometheusrule.yaml"));
    // As the operator hands them to Prometheus: the spec is a rule file.
    let full = serde_yaml_ng::to_string(&rule["spec"]).unwrap();
    std::fs::write(dir.join("rules.yaml"), &full).unwrap();
    let checked = run(&dir, &["check", "rules", "rules.yaml"]);
    eprintln!("{checked}");
    assert!(checked.contains("SUCCESS: 5 rules found"), "{checked}");
    // promtool compares annotations word for word; they are checked above
    // (templates parse), the expressions, `for` and labels here.
    let mut bare = rule["spec"].clone();
    for group in bare["groups"].as_array_mut().unwrap() {
        for r in group["rules"].as_array_mut().unwrap() {
            r.as_object_mut().unwrap().remove("annotations");
        }
    }
    std::fs::write(
        dir.join("bare.yaml"),
        serde_yaml_ng::to_string(&bare).unwrap(),
    )
    .unwrap();

    let migration = "default/mvlab-vm";
    let quiet = |at: &str| {
        [
            "MigverifyMigrationOffSecondaryNetwork",
            "MigverifyMigrationProjectedOverBudget",
            "MigverifyMigrationStalled",
            "MigverifyDataPlaneLoss",
        ]
        .map(|name| json!({ "eval_time": at, "alertname": name, "exp_alerts": [] }))
        .to_vec()
    };
    let mut tests = Vec::new();
    // A healthy migration over the secondary network: nothing fires, while
    // it runs or after.
    let mut checks = quiet("5s");
    checks.extend(quiet("12s"));
    tests.push(json!({ "interval": "1s", "input_series": recorded("secondary"), "alert_rule_test": checks }));
    // virt-handler without migration0: the bytes cross the pod network.
    let mut checks = quiet("2s");
    checks.push(json!({
        "eval_time": "9s", "alertname": "MigverifyMigrationOffSecondaryNetwork",
        "exp_alerts": [alert(json!({ "severity": "critical", "node": "lab", "migration": migration }))],
    }));
    checks.push(
        json!({ "eval_time": "9s", "alertname": "MigverifyMigrationStalled", "exp_alerts": [] }),
    );
    tests.push(json!({ "interval": "1s", "input_series": recorded("pod-network-fallback"), "alert_rule_test": checks }));
    // A black hole mid-migration: stalled, and why.
    let mut checks = quiet("8s");
    checks.push(json!({
        "eval_time": "20s", "alertname": "MigverifyMigrationStalled",
        "exp_alerts": [alert(json!({ "severity": "critical", "node": "lab", "migration": migration, "id": "cause.blackhole" }))],
    }));
    checks.push(json!({ "eval_time": "20s", "alertname": "MigverifyMigrationOffSecondaryNetwork", "exp_alerts": [] }));
    tests.push(
        json!({ "interval": "1s", "input_series": recorded("stall"), "alert_rule_test": checks }),
    );
    // A 64 GiB VM at 100 Mbit/s with 2 s per 10^9 bytes: over budget.
    tests.push(json!({
        "interval": "1s", "input_series": recorded("over-budget"),
        "alert_rule_test": [
            { "eval_time": "8s", "alertname": "MigverifyMigrationProjectedOverBudget", "exp_alerts": [] },
            { "eval_time": "20s", "alertname": "MigverifyMigrationProjectedOverBudget",
              "exp_alerts": [alert(json!({ "severity": "warning", "node": "lab", "migration": migration }))] },
            { "eval_time": "20s", "alertname": "MigverifyMigrationOffSecondaryNetwork", "exp_alerts": [] },
        ],
    }));
    // The agent on node-a waits for virt-handler, then attaches (recorded);
    // kube-state-metrics says virt-handler runs on node-a and node-b
    // (written here): node-b has no agent and is named, node-a is not.
    let mut agent = recorded("agent-attaches");
    for node in ["node-a", "node-b"] {
        agent.push(json!({
            "series": format!("kube_pod_info{{namespace=\"kubevirt\",pod=\"virt-handler-{node}\",node=\"{node}\"}}"),
            "values": "1+0x400",
        }));
    }
    tests.push(json!({
        "interval": "1s", "input_series": agent,
        "alert_rule_test": [
            { "eval_time": "5s", "alertname": "MigverifyAgentNotAttached", "exp_alerts": [] },
            { "eval_time": "310s", "alertname": "MigverifyAgentNotAttached",
              "exp_alerts": [alert(json!({ "severity": "warning", "node": "node-b" }))] },
        ],
    }));
    // Data-plane loss: the loss counters of the healthy run, then (written
    // here: the lab loses nothing) the flow table fills for a moment.
    let mut loss = recorded("secondary");
    let values = "0 0 0 0 0 3 9 9 9 9 9 9";
    for series in loss.iter_mut() {
        if series["series"]
            .as_str()
            .unwrap()
            .starts_with("migverify_flow_table_full_total")
        {
            series["values"] = json!(values);
        }
    }
    tests.push(json!({
        "interval": "1s", "input_series": loss,
        "alert_rule_test": [
            { "eval_time": "4s", "alertname": "MigverifyDataPlaneLoss", "exp_alerts": [] },
            { "eval_time": "8s", "alertname": "MigverifyDataPlaneLoss",
              "exp_alerts": [alert(json!({ "severity": "warning", "node": "lab" }))] },
        ],
    }));
    let unit = json!({ "rule_files": ["bare.yaml"], "evaluation_interval": "1s", "tests": tests });
    std::fs::write(
        dir.join("test.yaml"),
        serde_yaml_ng::to_string(&unit).unwrap(),
    )
    .unwrap();
    let tested = run(&dir, &["test", "rules", "test.yaml"]);
    eprintln!("{tested}");
    assert!(tested.contains("SUCCESS"), "{tested}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every query of every panel parses as PromQL (as a recording rule for
/// promtool), and names only series migverify serves (or kube-state-metrics').
#[test]
fn the_dashboard_queries_parse_and_name_served_series() {
    if !promtool() {
        return;
    }
    let path = root().join("deploy/monitoring/grafana-dashboard.json");
    let dashboard: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert!(dashboard["title"]
        .as_str()
        .is_some_and(|t| t.contains("migverify")));
    let mut rules = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap();
            // Grafana's variables, as a query would have them filled in.
            let expr = expr
                .replace("$node", "node-a")
                .replace("$__rate_interval", "1m");
            assert!(expr.contains("migverify_"), "{}: {expr}", panel["title"]);
            rules.push(
                json!({ "record": format!("dashboard:panel_{}", rules.len()), "expr": expr }),
            );
        }
    }
    assert!(rules.len() >= 8, "{} queries", rules.len());
    let docs = std::fs::read_to_string(root().join("docs/metrics.md")).unwrap();
    for rule in &rules {
        let expr = rule["expr"].as_str().unwrap();
        for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
            if let Some(family) = word.strip_prefix("migverify_") {
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| family.strip_suffix(s))
                    .unwrap_or(family);
                assert!(
                    docs.contains(&format!("migverify_{family}")),
                    "the dashboard reads migverify_{family}, which docs/metrics.md does not list"
                );
            }
        }
    }
    let dir = scratch("dashboard");
    let file = json!({ "groups": [{ "name": "dashboard", "rules": rules }] });
    std::fs::write(
        dir.join("panels.yaml"),
        serde_yaml_ng::to_string(&file).unwrap(),
    )
    .unwrap();
    let checked = run(&dir, &["check", "rules", "panels.yaml"]);
    assert!(checked.contains("SUCCESS"), "{checked}");
    let _ = std::fs::remove_dir_all(&dir);
}
