//! `bench serve`: accepts runs, sinks their data, answers with counts.
//!
//! A thread per connection, so one slow or hostile client never holds up
//! another; every hello is read under a timeout and every refusal is one
//! line on stderr, never an end of the server.

use std::{
    collections::HashMap,
    io::{self, Read},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use rustls::ServerConfig;

use super::{
    protocol::{self, read_hello, Hello, Role, Status},
    tls::server_wire,
};

/// More connections at once than any run needs (a main stream and up to
/// 64 channels) for a handful of runs.
const MAX_CONNECTIONS: usize = 512;
/// A client has this long for its TLS handshake and hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(5);
/// A receiving socket with no data for this long is given up.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

pub struct ServerOptions {
    pub tls: Option<Arc<ServerConfig>>,
    /// Required in every hello when set.
    pub token: Option<Vec<u8>>,
}

/// The runs whose main stream is open, and the channels each has opened.
#[derive(Default)]
struct Runs {
    open: Mutex<HashMap<[u8; 16], Vec<u16>>>,
}

/// Serves until the process is stopped; errors only when the listening
/// socket itself fails.
pub fn serve(listener: TcpListener, options: ServerOptions) -> io::Result<()> {
    let options = Arc::new(options);
    let runs = Arc::new(Runs::default());
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let (socket, peer) = match listener.accept() {
            Ok(accepted) => accepted,
            // Out of fds or a connection reset before accept: not fatal.
            Err(e) if is_transient(&e) => {
                eprintln!("bench serve: accept: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            Err(e) => return Err(e),
        };
        let (options, runs, active) = (options.clone(), runs.clone(), active.clone());
        let busy = active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS;
        std::thread::spawn(move || {
            if let Err(message) = handle(socket, &options, &runs, busy) {
                eprintln!("bench serve: {peer}: {message}");
            }
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    ) || matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

fn handle(
    socket: TcpStream,
    options: &ServerOptions,
    runs: &Runs,
    busy: bool,
) -> Result<(), String> {
    socket
        .set_read_timeout(Some(HELLO_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let _ = socket.set_nodelay(true);
    let raw = socket.try_clone().map_err(|e| e.to_string())?;
    let mut wire = server_wire(socket, options.tls.as_ref())
        .map_err(|e| format!("refused: TLS handshake: {e}"))?;
    let hello = read_hello(&mut wire).map_err(|e| format!("refused: {e}"))?;
    let status = admit(&hello, options, runs, busy);
    protocol::write_status(&mut wire, status).map_err(|e| e.to_string())?;
    if status != Status::Accepted {
        return Err(format!("{} ({:?})", status.describe(), hello.role));
    }
    raw.set_read_timeout(Some(IDLE_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let received = sink(&mut wire);
    if hello.role == Role::Main {
        runs.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&hello.run_id);
    }
    let received = received.map_err(|e| format!("{:?}: receiving: {e}", hello.role))?;
    protocol::write_count(&mut wire, received).map_err(|e| e.to_string())?;
    let _ = wire.finish_sending();
    Ok(())
}

/// Whether a hello may go on: the token, then the run it belongs to.
fn admit(hello: &Hello, options: &ServerOptions, runs: &Runs, busy: bool) -> Status {
    if busy {
        return Status::Busy;
    }
    if let Some(token) = &options.token {
        if !same(token, &hello.token) {
            return Status::Unauthorized;
        }
    }
    let mut open = runs.open.lock().unwrap_or_else(|p| p.into_inner());
    match hello.role {
        Role::Main => {
            if open.contains_key(&hello.run_id) {
                return Status::UnknownRun;
            }
            open.insert(hello.run_id, Vec::new());
            Status::Accepted
        }
        Role::Channel(index) => match open.get_mut(&hello.run_id) {
            Some(channels) if !channels.contains(&index) => {
                channels.push(index);
                Status::Accepted
            }
            _ => Status::UnknownRun,
        },
    }
}

/// Compares without stopping at the first difference, so timing does not
/// tell how much of a guessed token was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Reads to the end of the runner's data; the payload bytes received.
fn sink(wire: &mut impl Read) -> io::Result<u64> {
    let mut buffer = vec![0u8; 256 * 1024];
    let mut received = 0u64;
    loop {
        match wire.read(&mut buffer) {
            Ok(0) => return Ok(received),
            Ok(n) => received += n as u64,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Where the server listens, for its first line.
pub fn describe(addr: SocketAddr, options: &ServerOptions) -> String {
    format!(
        "bench serve: listening on {addr} ({}, {})",
        if options.tls.is_some() {
            "TLS"
        } else {
            "cleartext"
        },
        if options.token.is_some() {
            "token required"
        } else {
            "no token"
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
        assert!(same(b"", b""));
    }

    #[test]
    fn channels_need_their_open_run_and_the_token() {
        let options = ServerOptions {
            tls: None,
            token: Some(b"t".to_vec()),
        };
        let runs = Runs::default();
        let hello = |role, token: &[u8]| Hello {
            role,
            streams: 2,
            run_id: [1; 16],
            token: token.to_vec(),
        };
        assert_eq!(
            admit(&hello(Role::Main, b"x"), &options, &runs, false),
            Status::Unauthorized
        );
        assert_eq!(
            admit(&hello(Role::Channel(0), b"t"), &options, &runs, false),
            Status::UnknownRun
        );
        assert_eq!(
            admit(&hello(Role::Main, b"t"), &options, &runs, false),
            Status::Accepted
        );
        assert_eq!(
            admit(&hello(Role::Channel(0), b"t"), &options, &runs, false),
            Status::Accepted
        );
        // The same channel twice is not let in.
        assert_eq!(
            admit(&hello(Role::Channel(0), b"t"), &options, &runs, false),
            Status::UnknownRun
        );
        assert_eq!(
            admit(&hello(Role::Channel(1), b"t"), &options, &runs, true),
            Status::Busy
        );
    }
}
