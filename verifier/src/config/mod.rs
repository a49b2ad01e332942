//! Inputs migverify reads: the endpoints KubeVirt publishes for a
//! migration, migration network CIDRs.

pub mod endpoints;

pub use endpoints::{Cidr, Endpoint, InputError};
