//! migverify: verifies on the wire that KubeVirt live-migration traffic uses
//! the dedicated migration network, and measures it.
//!
//! One module per concern: `dataplane` loads and attaches the eBPF observers
//! and reads their maps; `cli` turns commands into runs and exit codes.

pub mod agent;
pub mod checks;
pub mod checkup;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dataplane;
pub mod flows;
pub mod frames;
pub mod intent;
pub mod lab;
pub mod measure;
pub mod metrics;
pub mod netbench;
pub mod netlink;
pub mod report;
pub mod session;
pub mod sockdiag;
pub mod units;
pub mod verdict;
