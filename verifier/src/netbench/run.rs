//! One bench run, observed when there are interfaces: the migration-shaped
//! traffic, the iperf3 reference and the reachability check, judged as
//! `verify` judges a migration, and answered in budget terms.

use std::{net::SocketAddr, time::Duration};

use serde_json::{json, Value};
use verifier_ebpf::Channel;

use super::{answers, client, iperf, reachable, Connector};
use crate::{
    config::{Cidr, Endpoint},
    dataplane::AttachSpec,
    intent::{Limits, VmSize},
    measure::{
        judge::{Expectations, Judgement},
        reasons::{BENCH_IPERF3, BENCH_IPERF3_FAILED, BENCH_NOTHING_MOVED, BENCH_SYNC_UNREACHABLE},
        series,
    },
    report::{DataplaneHealth, Report},
    session::Criteria,
    units::{bytes, rate},
};

/// Everything one measurement needs, from flags or from the lab.
pub struct Plan<'a> {
    pub options: client::RunOptions,
    pub connect: Connector<'a>,
    /// `iperf3 -c` after this prefix, against this server.
    pub iperf: Option<(Vec<String>, SocketAddr)>,
    pub sync: Option<SocketAddr>,
    pub ifaces: Vec<AttachSpec>,
    /// The kernel hook the observers attach with.
    pub hooks: crate::dataplane::Hooks,
    pub cidrs: Vec<Cidr>,
    pub vlan: Option<u16>,
    pub limits: Limits,
    pub size: Option<VmSize>,
    pub assumptions: Vec<String>,
}

/// The id the bench's connections are grouped under.
const BENCH_ID: &str = "bench";

/// Runs the bench (observed when there are interfaces), the reference and
/// the reachability check, and judges.
pub fn measure(plan: Plan) -> anyhow::Result<Report> {
    let endpoint = Endpoint {
        addr: plan.options.peer,
        channel: Channel::Memory,
        migration: Some(BENCH_ID.into()),
    };
    // The iperf3 reference runs under the same conditions as the bench:
    // with the observers attached when the bench had them.
    let reference = || {
        plan.iperf.as_ref().map(|(prefix, server)| {
            let prefix: Vec<&str> = prefix.iter().map(String::as_str).collect();
            iperf::run(
                &prefix,
                *server,
                plan.options.streams.max(1),
                plan.options.amount,
            )
        })
    };
    let (result, observed, reference) = if plan.ifaces.is_empty() {
        let result = client::run(&plan.options, plan.connect)?;
        (result, None, reference())
    } else {
        let (result, collected, reference) = observed(&plan, &endpoint, reference)?;
        (result, Some(collected), reference)
    };
    eprintln!(
        "migverify: bench sent {} bytes in {:.1} s over {} stream(s), the server received {}",
        result.sent_bytes,
        result.elapsed_s,
        result.per_stream.len(),
        result.received_bytes
    );
    let sync = plan
        .sync
        .map(|address| reachable(address, Duration::from_secs(2), plan.connect));

    let mut criteria = Criteria::new(plan.limits, plan.options.interval.as_millis() as u64);
    criteria.assumptions = plan.assumptions;
    let size = plan.size.unwrap_or_else(|| {
        criteria.assumptions.push(
            "no VM size given (--vm-memory): answers are for 10^9 bytes, the size that needs the most rate per unit \
             of budget"
                .into(),
        );
        VmSize {
            bytes: 1_000_000_000,
            source: "assumed: one unit (10^9 bytes)".into(),
        }
    });
    criteria.endpoints = vec![endpoint];
    criteria.expectations = Expectations {
        cidrs: plan.cidrs,
        vlan: plan.vlan,
        expect_traffic: true,
        bulk_transfer: true,
    };
    criteria.size = Some(size.clone());
    let mut report = match &observed {
        Some(collected) => criteria.report(collected),
        None => {
            criteria.assumptions.push(
                "no interface observed (-i): rates are what the sender handed the kernel, not measured on the wire"
                    .into(),
            );
            // Without wire figures only the bench's own reasons judge it.
            Report::new(
                Judgement::default(),
                &criteria.limits,
                DataplaneHealth {
                    observed_s: result.elapsed_s,
                    ..DataplaneHealth::default()
                },
                criteria.assumptions.clone(),
            )
        }
    };
    // The wire's figures when observed, else what the sender handed the kernel.
    let wire = report.migrations.iter().find(|m| m.figures.id == BENCH_ID);
    let (source, throughput) = match wire {
        Some(m) => ("wire", m.figures.throughput_bps.clone()),
        None => ("sender", series::throughput(&trim(&result.intervals))),
    };
    let answers = answers::answers(&criteria.limits, &size, throughput.p5, throughput.p50);
    for reason in answers::reasons(&answers) {
        report.add_reason(reason);
    }
    if result.received_bytes == 0 {
        report.add_reason(BENCH_NOTHING_MOVED.raise(
            format!("the server at {} received nothing", result.peer),
            json!({}),
        ));
    }
    let mut reference_json = Value::Null;
    match reference {
        Some(Ok(iperf)) => {
            let ratio = result.mean_bps as f64 / iperf.received_bps.max(1) as f64;
            report.add_reason(BENCH_IPERF3.raise(
                format!(
                    "migration-shaped traffic reached {} against iperf3's {} with {} stream(s) ({:.0}%)",
                    rate(result.mean_bps),
                    rate(iperf.received_bps),
                    iperf.streams,
                    ratio * 100.0
                ),
                json!({ "iperf3": iperf }),
            ));
            reference_json = json!({ "result": iperf, "ratio": ratio });
        }
        Some(Err(e)) => {
            report.add_reason(
                BENCH_IPERF3_FAILED.raise(format!("no iperf3 reference: {e}"), json!({})),
            );
            reference_json = json!({ "error": e.to_string() });
        }
        None => {}
    }
    if let Some(sync) = sync.as_ref().filter(|s| !s.reachable) {
        report.add_reason(BENCH_SYNC_UNREACHABLE.raise(
            format!(
                "the synchronization controller port {} does not answer ({}): cross-cluster migration needs it",
                sync.address,
                sync.error.as_deref().unwrap_or("no answer")
            ),
            json!({ "sync": sync }),
        ));
    }
    report.bench = Some(json!({
        "run": result,
        "rate_source": source,
        "throughput_bps": throughput,
        "answers": answers,
        "iperf3": reference_json,
        "sync": sync,
    }));
    Ok(report)
}

/// The bench with the observers attached to `plan`'s interfaces, the
/// reference after it under the same conditions.
#[cfg(feature = "dataplane")]
fn observed<R>(
    plan: &Plan,
    endpoint: &Endpoint,
    reference: impl FnOnce() -> R,
) -> anyhow::Result<(client::RunResult, crate::flows::Collected, R)> {
    use tokio::sync::{mpsc, oneshot};

    use crate::session::Session;

    let mut session = Session::start(&plan.ifaces, &plan.cidrs, plan.hooks)?;
    let (done, finished) = oneshot::channel::<()>();
    let (_requests_tx, requests) = mpsc::channel(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (result, collected) = std::thread::scope(|scope| {
        let bench = scope.spawn(|| {
            let result = client::run(&plan.options, plan.connect);
            let _ = done.send(());
            result
        });
        let collected = runtime.block_on(session.collect(
            std::slice::from_ref(endpoint),
            plan.options.interval,
            requests,
            async {
                let _ = finished.await;
            },
            |_| false,
        ));
        (
            bench.join().expect("the bench thread does not panic"),
            collected,
        )
    });
    let reference = reference();
    session.detach();
    Ok((result?, collected?, reference))
}

/// Without the data plane in the build, nothing can be observed.
#[cfg(not(feature = "dataplane"))]
fn observed<R>(
    _: &Plan,
    _: &Endpoint,
    _: impl FnOnce() -> R,
) -> anyhow::Result<(client::RunResult, crate::flows::Collected, R)> {
    anyhow::bail!(
        "this migverify is built without the data plane (cargo feature `dataplane`): \
         bench run cannot observe interfaces (-i); leave them out, or use the default build"
    )
}

/// The sender's first interval holds the socket buffers filling and its
/// last one is partial: neither is the link's rate.
fn trim(intervals: &[series::Interval]) -> Vec<series::Interval> {
    if intervals.len() > 4 {
        intervals[1..intervals.len() - 1].to_vec()
    } else {
        intervals.to_vec()
    }
}

/// The answers of a report's `bench` part, for a terminal.
pub fn text(bench: &Value) -> String {
    let u = |v: &Value| v.as_u64().unwrap_or(0);
    let a = &bench["answers"];
    let seconds = |v: &Value| {
        v.as_f64()
            .map_or_else(|| "never".to_string(), |s| format!("{s:.1} s"))
    };
    let largest = |v: &Value| v.as_u64().map_or_else(|| "any size".to_string(), bytes);
    let mut out = String::from("\nbench\n");
    out += &format!(
        "  rate ({})       p5 {}  p50 {}  mean received {}\n",
        bench["rate_source"].as_str().unwrap_or("?"),
        rate(u(&bench["throughput_bps"]["p5"])),
        rate(u(&bench["throughput_bps"]["p50"])),
        rate(u(&bench["run"]["mean_bps"]))
    );
    out += &format!(
        "  VM of {} ({} units): budget {} s, needs {}; takes {} at p50, {} at p5\n",
        bytes(u(&a["size_bytes"])),
        u(&a["size_units"]),
        u(&a["completion_timeout_s"]),
        rate(u(&a["min_rate_bps"])),
        seconds(&a["at_p50"]["completion_s"]),
        seconds(&a["at_p5"]["completion_s"])
    );
    out += &format!(
        "  largest VM that fits: {} at p50, {} at p5\n",
        largest(&a["at_p50"]["largest_vm_bytes"]),
        largest(&a["at_p5"]["largest_vm_bytes"])
    );
    out += &format!(
        "  parallel migrations at the minimum rate: {} (parallelOutboundMigrationsPerNode {})\n",
        u(&a["parallel_supported"]),
        u(&a["parallel_outbound_migrations_per_node"])
    );
    if let Some(iperf) = bench["iperf3"]["result"].as_object() {
        out += &format!(
            "  iperf3 reference: {} ({:.0}% of it)\n",
            rate(iperf["received_bps"].as_u64().unwrap_or(0)),
            bench["iperf3"]["ratio"].as_f64().unwrap_or(0.0) * 100.0
        );
    }
    if let Some(sync) = bench["sync"].as_object() {
        out += &format!(
            "  sync port {}: {}\n",
            sync["address"].as_str().unwrap_or("?"),
            if sync["reachable"] == true {
                "reachable"
            } else {
                "unreachable"
            }
        );
    }
    out
}
