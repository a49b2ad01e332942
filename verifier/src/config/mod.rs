//! Inputs migverify reads: the endpoints KubeVirt publishes for a
//! migration, migration network CIDRs.

pub mod documents;
pub mod endpoints;
pub mod quantity;

pub use endpoints::{Cidr, Endpoint, InputError};
