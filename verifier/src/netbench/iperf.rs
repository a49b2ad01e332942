//! The reference figure: iperf3 over the same path with as many streams,
//! so the migration-shaped rate can be read against the raw link's.
//! `iperf3 -s` must already run on the peer (the lab starts one).

use std::{net::SocketAddr, process::Command};

use serde::Serialize;

use super::client::Amount;

#[derive(Debug, thiserror::Error)]
pub enum IperfError {
    #[error("running iperf3: {0} (install it, e.g. apt-get install iperf3)")]
    Spawn(std::io::Error),
    #[error("iperf3 against {peer}: {message}")]
    Failed { peer: SocketAddr, message: String },
}

#[derive(Clone, Debug, Serialize)]
pub struct IperfResult {
    /// Where iperf3 -s listened.
    pub server: SocketAddr,
    pub streams: u16,
    /// What the server received, bits per second.
    pub received_bps: u64,
    pub retransmits: Option<u64>,
}

/// Runs `iperf3 -c` (after `prefix`, e.g. `ip netns exec NS`) with the bench's
/// stream count and amount.
pub fn run(
    prefix: &[&str],
    server: SocketAddr,
    streams: u16,
    amount: Amount,
) -> Result<IperfResult, IperfError> {
    let mut args: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "iperf3",
            "-J",
            "-c",
            &server.ip().to_string(),
            "-p",
            &server.port().to_string(),
            "-P",
            &streams.to_string(),
        ]
        .map(String::from),
    );
    match amount {
        Amount::Duration(d) => args.extend(["-t".into(), d.as_secs().max(1).to_string()]),
        Amount::Bytes(n) => args.extend(["-n".into(), n.to_string()]),
    }
    let out = Command::new(&args[0])
        .args(&args[1..])
        .output()
        .map_err(IperfError::Spawn)?;
    let failed = |message: String| IperfError::Failed {
        peer: server,
        message,
    };
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        failed(format!(
            "no JSON from iperf3 ({})",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    })?;
    if let Some(error) = json["error"].as_str() {
        return Err(failed(error.to_string()));
    }
    let received = json
        .pointer("/end/sum_received/bits_per_second")
        .and_then(|v| v.as_f64())
        .ok_or_else(|| failed("its JSON has no end.sum_received.bits_per_second".into()))?;
    Ok(IperfResult {
        server,
        streams,
        received_bps: received as u64,
        retransmits: json
            .pointer("/end/sum_sent/retransmits")
            .and_then(|v| v.as_u64()),
    })
}
