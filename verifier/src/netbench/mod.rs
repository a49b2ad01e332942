//! Benchmarking the migration network before a migration needs it:
//! `bench serve` on one end, `bench run` on the other, traffic shaped like a
//! KubeVirt migration (a main stream and parallel channels, mutual TLS,
//! bulk one way), and the figures answered in migration terms.
//!
//! `protocol` is the wire format, `tls` the credentials, `server` and
//! `client` the two ends, `iperf` the reference figure, `answers` the
//! budget questions, `run` one observed and judged run.

pub mod answers;
pub mod client;
pub mod iperf;
pub mod protocol;
pub mod run;
pub mod server;
pub mod tls;

use std::{
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use serde::Serialize;

/// Whether a TCP port answers: the cross-cluster synchronization
/// controller's (KubeVirt's `synchronizationPort`, 9185 by default).
#[derive(Clone, Debug, Serialize)]
pub struct Reachability {
    pub address: SocketAddr,
    pub reachable: bool,
    /// Why not, when not.
    pub error: Option<String>,
    pub connect_ms: Option<u64>,
}

/// Makes TCP connections with a timeout (the lab makes them inside a
/// namespace).
pub type Connector<'a> = &'a (dyn Fn(SocketAddr, Duration) -> std::io::Result<TcpStream> + Sync);

/// Connects from wherever this process is.
pub fn connect_here(peer: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    TcpStream::connect_timeout(&peer, timeout)
}

pub fn reachable(address: SocketAddr, timeout: Duration, connect: Connector) -> Reachability {
    let started = std::time::Instant::now();
    match connect(address, timeout) {
        Ok(_) => Reachability {
            address,
            reachable: true,
            error: None,
            connect_ms: Some(started.elapsed().as_millis() as u64),
        },
        Err(e) => Reachability {
            address,
            reachable: false,
            error: Some(e.to_string()),
            connect_ms: None,
        },
    }
}

/// Every address of this host's (this namespace's) interfaces: what a
/// certificate made here must name for clients to dial any of them.
pub fn local_addresses() -> Vec<std::net::IpAddr> {
    crate::checks::netlink::addresses()
        .unwrap_or_default()
        .into_iter()
        .map(|a| a.addr)
        .collect()
}
