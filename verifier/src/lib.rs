//! migverify: verifies on the wire that KubeVirt live-migration traffic uses
//! the dedicated migration network, and measures it.
//!
//! One module per concern: `dataplane` loads and attaches the eBPF observers
//! and reads their maps; `cli` turns commands into runs and exit codes.
//!
//! Without the `dataplane` feature (default on) the crate builds with no
//! aya and no eBPF toolchain: what attaches (the data plane's loader, the
//! collector, the session, discovery, the lab, the agent, the metrics) is
//! left out, and `check`, `checkup` and `bench` remain.

#[cfg(feature = "dataplane")]
pub mod agent;
pub mod checks;
pub mod checkup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dataplane;
#[cfg(feature = "dataplane")]
pub mod discovery;
pub mod flows;
pub mod frames;
pub mod intent;
#[cfg(feature = "dataplane")]
pub mod lab;
pub mod measure;
#[cfg(feature = "dataplane")]
pub mod metrics;
pub mod netbench;
pub mod pki;
pub mod report;
pub mod session;
pub mod units;
pub mod verdict;

/// The source revision this binary was built from: `MIGVERIFY_REVISION` at
/// build time (the image build passes it), else `git rev-parse` of the
/// workspace, else `unknown`. Exposed as `migverify_build_info`.
pub const REVISION: &str = env!("MIGVERIFY_REVISION");
