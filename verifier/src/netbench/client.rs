//! `bench run`'s traffic: a main stream and N parallel channels to a
//! `bench serve`, bulk one way as a multifd migration sends pages, for a
//! duration or a volume, with the sender's progress sampled per interval.

use std::{
    io::{self, Read as _, Write as _},
    net::SocketAddr,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use rustls::ClientConfig;
use serde::Serialize;

use super::{
    protocol::{self, Hello, ProtocolError, Role, Status},
    tls::{client_wire, Wire},
    Connector,
};
use crate::measure::series::Interval;

/// How much to send.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Amount {
    Duration(Duration),
    /// Bytes over all sending streams together.
    Bytes(u64),
}

impl Amount {
    /// From `--bytes` (which wins) or `--duration` seconds (default 10).
    pub fn from_flags(duration_s: Option<f64>, bytes: Option<u64>) -> Result<Amount, String> {
        match (duration_s, bytes) {
            (_, Some(0)) => Err("--bytes 0: give a positive volume".into()),
            (_, Some(bytes)) => Ok(Amount::Bytes(bytes)),
            (seconds, None) => {
                let seconds = seconds.unwrap_or(10.0);
                Duration::try_from_secs_f64(seconds)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .map(Amount::Duration)
                    .ok_or_else(|| format!("--duration {seconds}: not a positive duration"))
            }
        }
    }
}

pub struct RunOptions {
    pub peer: SocketAddr,
    /// Parallel channels besides the main stream; 0 sends on the main stream.
    pub streams: u16,
    pub amount: Amount,
    pub tls: Option<Arc<ClientConfig>>,
    pub token: Vec<u8>,
    /// Sampling interval of the sender's progress.
    pub interval: Duration,
}

/// How long a stream's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A path that stops taking data (or a server that stops answering) for
/// this long fails the run instead of hanging it.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{role}: connecting to {peer}: {source}")]
    Connect {
        role: String,
        peer: SocketAddr,
        source: io::Error,
    },
    #[error("{role}: the server at {peer} {status}")]
    Refused {
        role: String,
        peer: SocketAddr,
        status: &'static str,
    },
    #[error("{role}: {source}")]
    Io { role: String, source: io::Error },
    #[error("the hello: {0}")]
    Hello(#[from] ProtocolError),
    #[error("reading random bytes: {0}")]
    Random(io::Error),
}

#[derive(Clone, Debug, Serialize)]
pub struct StreamResult {
    /// "main" or "channel N".
    pub role: String,
    pub local: String,
    pub sent_bytes: u64,
    /// What the server says it received on this stream.
    pub received_bytes: u64,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub run_id: String,
    pub peer: SocketAddr,
    pub tls: bool,
    pub streams: u16,
    pub sent_bytes: u64,
    pub received_bytes: u64,
    /// From the first byte sent to the last count received.
    pub elapsed_s: f64,
    /// Received bytes over the elapsed time, bits per second.
    pub mean_bps: u64,
    pub per_stream: Vec<StreamResult>,
    /// The sender's progress per interval (what the application handed to
    /// the kernel; the wire figures come from the observers).
    #[serde(skip)]
    pub intervals: Vec<Interval>,
}

fn role_name(role: Role) -> String {
    match role {
        Role::Main => "main".into(),
        Role::Channel(n) => format!("channel {n}"),
    }
}

fn random<const N: usize>() -> Result<Vec<u8>, ClientError> {
    let mut bytes = vec![0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(ClientError::Random)?;
    Ok(bytes)
}

/// One open, accepted connection.
struct Stream {
    role: Role,
    local: String,
    wire: Box<dyn Wire>,
}

fn open(
    options: &RunOptions,
    connect: Connector,
    run_id: [u8; 16],
    role: Role,
) -> Result<Stream, ClientError> {
    let peer = options.peer;
    let name = role_name(role);
    let socket = connect(peer, CONNECT_TIMEOUT).map_err(|source| ClientError::Connect {
        role: name.clone(),
        peer,
        source,
    })?;
    let io_error = |source| ClientError::Io {
        role: name.clone(),
        source,
    };
    let _ = socket.set_nodelay(true);
    socket
        .set_write_timeout(Some(STALL_TIMEOUT))
        .and_then(|()| socket.set_read_timeout(Some(STALL_TIMEOUT)))
        .map_err(io_error)?;
    let local = socket.local_addr().map_err(io_error)?.to_string();
    let mut wire = client_wire(socket, options.tls.as_ref(), peer.ip()).map_err(io_error)?;
    let hello = Hello {
        role,
        streams: options.streams,
        run_id,
        token: options.token.clone(),
    }
    .encode()?;
    wire.write_all(&hello).map_err(io_error)?;
    wire.flush().map_err(io_error)?;
    let mut status = [0u8; 1];
    wire.read_exact(&mut status).map_err(io_error)?;
    match Status::from_u8(status[0]) {
        Some(Status::Accepted) => Ok(Stream { role, local, wire }),
        Some(refused) => Err(ClientError::Refused {
            role: name,
            peer,
            status: refused.describe(),
        }),
        None => Err(ClientError::Refused {
            role: name,
            peer,
            status: "answered with an unknown status (not a migverify bench server?)",
        }),
    }
}

/// Runs one benchmark against `options.peer`.
pub fn run(options: &RunOptions, connect: Connector) -> Result<RunResult, ClientError> {
    let run_id: [u8; 16] = random::<16>()?.try_into().expect("16 bytes");
    // Incompressible, as guest memory pages mostly are on the wire.
    let payload = random::<{ 1 << 20 }>()?;
    let mut main = open(options, connect, run_id, Role::Main)?;
    let mut channels = (0..options.streams)
        .map(|n| open(options, connect, run_id, Role::Channel(n)))
        .collect::<Result<Vec<_>, _>>()?;
    let senders: Vec<&mut Stream> = if channels.is_empty() {
        vec![&mut main]
    } else {
        channels.iter_mut().collect()
    };
    let sent_total = Arc::new(AtomicU64::new(0));
    let running = AtomicUsize::new(senders.len());
    let count = senders.len() as u64;
    let started = Instant::now();
    let deadline = match options.amount {
        Amount::Duration(d) => Some(started + d),
        Amount::Bytes(_) => None,
    };
    let mut intervals = Vec::new();
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = senders
            .into_iter()
            .enumerate()
            .map(|(i, stream)| {
                let quota = match options.amount {
                    Amount::Bytes(n) => Some(n / count + u64::from((i as u64) < n % count)),
                    Amount::Duration(_) => None,
                };
                let (payload, sent_total, running) = (&payload, &sent_total, &running);
                scope.spawn(move || {
                    let result = send(stream, payload, deadline, quota, sent_total);
                    running.fetch_sub(1, Ordering::SeqCst);
                    result
                })
            })
            .collect();
        // Sample the senders' progress while they run.
        let (mut last_at, mut last_sent) = (Instant::now(), 0u64);
        while running.load(Ordering::SeqCst) > 0 {
            std::thread::sleep(options.interval.min(Duration::from_millis(20)));
            let now = Instant::now();
            if now.duration_since(last_at) >= options.interval
                || running.load(Ordering::SeqCst) == 0
            {
                let sent = sent_total.load(Ordering::Relaxed);
                intervals.push(Interval {
                    at_ms: now.duration_since(started).as_millis() as u64,
                    length_ms: now.duration_since(last_at).as_millis().max(1) as u64,
                    bytes: sent - last_sent,
                });
                (last_at, last_sent) = (now, sent);
            }
        }
        handles
            .into_iter()
            .map(|h| h.join().expect("a sender does not panic"))
            .collect::<Vec<_>>()
    });
    let mut per_stream = Vec::new();
    if channels.is_empty() {
        // The main stream carried the data and has been ended.
        let (sent, received) = results.into_iter().next().expect("one sender")?;
        per_stream.push(stream_result(&main, sent, received));
    } else {
        // The main stream ends last, as QEMU's does.
        let (_, received) = finish(&mut main, 0)?;
        per_stream.push(stream_result(&main, 0, received));
        for (result, channel) in results.into_iter().zip(&channels) {
            let (sent, received) = result?;
            per_stream.push(stream_result(channel, sent, received));
        }
    }
    let elapsed = started.elapsed();
    let sent_bytes = per_stream.iter().map(|s| s.sent_bytes).sum();
    let received_bytes: u64 = per_stream.iter().map(|s| s.received_bytes).sum();
    Ok(RunResult {
        run_id: run_id.iter().map(|b| format!("{b:02x}")).collect(),
        peer: options.peer,
        tls: options.tls.is_some(),
        streams: options.streams,
        sent_bytes,
        received_bytes,
        elapsed_s: elapsed.as_secs_f64(),
        mean_bps: (u128::from(received_bytes) * 8 * 1_000_000 / elapsed.as_micros().max(1)) as u64,
        per_stream,
        intervals,
    })
}

fn stream_result(stream: &Stream, sent_bytes: u64, received_bytes: u64) -> StreamResult {
    StreamResult {
        role: role_name(stream.role),
        local: stream.local.clone(),
        sent_bytes,
        received_bytes,
    }
}

/// Sends until the deadline or the quota, then ends the stream; what was
/// sent and what the server counted.
fn send(
    stream: &mut Stream,
    payload: &[u8],
    deadline: Option<Instant>,
    quota: Option<u64>,
    sent_total: &AtomicU64,
) -> Result<(u64, u64), ClientError> {
    const CHUNK: usize = 256 * 1024;
    let mut sent = 0u64;
    let mut offset = 0usize;
    loop {
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        let left = quota.map_or(CHUNK as u64, |q| q - sent);
        if left == 0 {
            break;
        }
        let n = (CHUNK as u64).min(left) as usize;
        if offset + n > payload.len() {
            offset = 0;
        }
        stream
            .wire
            .write_all(&payload[offset..offset + n])
            .map_err(|source| ClientError::Io {
                role: role_name(stream.role),
                source,
            })?;
        offset += n;
        sent += n as u64;
        sent_total.fetch_add(n as u64, Ordering::Relaxed);
    }
    finish(stream, sent)
}

/// Ends the stream's data and reads the server's count of it.
fn finish(stream: &mut Stream, sent: u64) -> Result<(u64, u64), ClientError> {
    let io_error = |source| ClientError::Io {
        role: role_name(stream.role),
        source,
    };
    stream.wire.flush().map_err(io_error)?;
    stream.wire.finish_sending().map_err(io_error)?;
    let received = protocol::read_count(&mut stream.wire).map_err(io_error)?;
    Ok((sent, received))
}
