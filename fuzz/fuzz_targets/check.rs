//! Any bytes through the whole of `migverify check` without the host: the
//! YAML/JSON reader (and its `kubectl describe` detection), the CNI config
//! strings inside NADs, every object and cross-object check (kinds and near
//! misses, metadata, placeholders, VMI/VMIM status), the budgets, and the
//! JSON rendering of the findings.
//! It must never panic, whatever the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use verifier::{
    checks::{check_objects, networks::MainRole, Options},
    config::documents::load_bytes,
};

fuzz_target!(|data: &[u8]| {
    let Ok(objects) = load_bytes("fuzz.yaml", data) else { return };
    let mut options = Options::default();
    options.main.add(MainRole::Pod, "10.128.0.0/14".parse().unwrap(), "fuzz".into());
    options.vm_memory = Some("16Gi".parse().unwrap());
    // Half the inputs with a migration range and a node count given as
    // flags (--cidr, --nodes), half with only what the objects say.
    if data.first().is_some_and(|b| b % 2 == 0) {
        options.migration.push("10.200.5.0/24".parse().unwrap());
        options.nodes = Some(3);
    }
    let report = check_objects(&objects, &options);
    for finding in &report.findings.0 {
        serde_json::to_string(finding).expect("findings serialize");
    }
    serde_json::to_string(&report.budgets).expect("budgets serialize");
    // Quantities straight from the input too.
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(q) = text.trim().parse::<verifier::config::quantity::Quantity>() {
            let _ = (q.value(), q.ceil_in_units(1_000_000_000));
        }
    }
});
