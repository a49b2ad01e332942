//! A stand-in for libvirt's migration control channel, the port KubeVirt
//! publishes with the value 0: the source's libvirt talks to the target's
//! over it before, during and after QEMU moves the memory. Real TCP from
//! node A's virt-handler namespace to node B's migration address, on an
//! ephemeral port, framed as libvirt's RPC frames its messages (a 4-byte
//! length, then program, version, procedure, type, serial and status, then
//! an XDR body): open the connection, `DOMAIN_MIGRATE_PREPARE3_PARAMS` with
//! the domain's XML and a cookie, keepalive pings while the memory moves,
//! `DOMAIN_MIGRATE_FINISH3_PARAMS`, close. Small and request/response, as
//! the real one is; it carries no migration data.

use std::{
    io::{self, Read as _, Write as _},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};

use super::LabError;
use crate::dataplane::Netns;

/// libvirt's remote program and its keepalive program ("keep").
const REMOTE_PROGRAM: u32 = 0x2000_8086;
const KEEPALIVE_PROGRAM: u32 = 0x6b65_6570;
/// Procedures, as numbered in libvirt's remote_protocol.x.
const PROC_CONNECT_OPEN: u32 = 1;
const PROC_CONNECT_CLOSE: u32 = 2;
const PROC_MIGRATE_PREPARE3_PARAMS: u32 = 303;
const PROC_MIGRATE_FINISH3_PARAMS: u32 = 306;
const PROC_KEEPALIVE_PING: u32 = 1;
const PROC_KEEPALIVE_PONG: u32 = 2;
/// Message types: a call, its reply, a one-way message (keepalive).
const CALL: u32 = 0;
const REPLY: u32 = 1;
const MESSAGE: u32 = 2;
const HEADER: usize = 28;
/// libvirt pings every 5 s by default; the lab's migrations last seconds.
const KEEPALIVE_EVERY: Duration = Duration::from_secs(1);
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What crossed the control channel.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ControlAccount {
    /// The target's port (the one published with 0).
    pub port: u16,
    /// Calls and keepalives the source sent, and their bytes.
    pub requests: u64,
    pub sent_bytes: u64,
    /// Replies and pongs the target sent, and their bytes.
    pub replies: u64,
    pub received_bytes: u64,
}

/// The target's end: listening on an ephemeral port of its migration
/// address, answering one connection on a thread of its own.
pub struct ControlServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl ControlServer {
    /// Listens in `netns` on `address`, port 0.
    pub fn listen(netns: &str, address: IpAddr) -> Result<ControlServer, LabError> {
        let listener = Netns::parse(netns)
            .run(|| TcpListener::bind((address, 0)))
            .and_then(|bound| bound)
            .map_err(|e| LabError::Io(format!("control channel: listening in {netns}: {e}")))?;
        let port = listener
            .local_addr()
            .map_err(|e| LabError::Io(e.to_string()))?
            .port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::spawn(move || serve(listener, &stopping));
        Ok(ControlServer {
            port,
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for ControlServer {
    /// Stops waiting for a connection that never came; a connection being
    /// served ends when the source closes it.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: TcpListener, stop: &AtomicBool) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let mut stream = loop {
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    };
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    while let Some((header, _body)) = read_frame(&mut stream)? {
        let reply = match (header.program, header.procedure) {
            (KEEPALIVE_PROGRAM, PROC_KEEPALIVE_PING) => Header {
                procedure: PROC_KEEPALIVE_PONG,
                ..header
            },
            (REMOTE_PROGRAM, _) => Header {
                kind: REPLY,
                ..header
            },
            _ => continue,
        };
        let body = match (header.program, header.procedure) {
            // A cookie back (libvirt's carries the target's NBD and
            // graphics details), and no URI: the source uses the one given.
            (REMOTE_PROGRAM, PROC_MIGRATE_PREPARE3_PARAMS) => {
                let mut body = opaque(&cookie("prepare", 384));
                body.extend_from_slice(&0u32.to_be_bytes());
                body
            }
            // The domain on the target (name, UUID, id) and a cookie.
            (REMOTE_PROGRAM, PROC_MIGRATE_FINISH3_PARAMS) => {
                let mut body = opaque(b"mvlab-vm");
                body.extend_from_slice(&[0x6d; 16]);
                body.extend_from_slice(&1u32.to_be_bytes());
                body.extend(opaque(&cookie("finish", 256)));
                body
            }
            _ => Vec::new(),
        };
        write_frame(&mut stream, &reply, &body)?;
        if header.program == REMOTE_PROGRAM && header.procedure == PROC_CONNECT_CLOSE {
            break;
        }
    }
    Ok(())
}

/// The source's end.
pub struct ControlClient {
    stream: TcpStream,
    serial: u32,
    last_keepalive: Instant,
    account: ControlAccount,
}

impl ControlClient {
    /// Connects from `netns` to the target's control port, opens the
    /// connection and prepares the migration, as libvirt's peer-to-peer
    /// migration does before QEMU migrates.
    pub fn prepare(netns: &str, target: SocketAddr, vm: &str) -> Result<ControlClient, LabError> {
        let stream = Netns::parse(netns)
            .run(|| TcpStream::connect_timeout(&target, IO_TIMEOUT))
            .and_then(|connected| connected)
            .map_err(|e| LabError::Io(format!("control channel: connecting to {target}: {e}")))?;
        let _ = stream.set_nodelay(true);
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| LabError::Io(e.to_string()))?;
        let mut client = ControlClient {
            stream,
            serial: 0,
            last_keepalive: Instant::now(),
            account: ControlAccount {
                port: target.port(),
                ..ControlAccount::default()
            },
        };
        let mut open = opaque(b"qemu:///system");
        open.extend_from_slice(&0u32.to_be_bytes());
        client.call(REMOTE_PROGRAM, PROC_CONNECT_OPEN, CALL, &open)?;
        // The domain's XML and the source's cookie, as typed parameters.
        let mut prepare = opaque(domain_xml(vm).as_bytes());
        prepare.extend(opaque(&cookie("begin", 512)));
        prepare.extend_from_slice(&0u32.to_be_bytes());
        client.call(REMOTE_PROGRAM, PROC_MIGRATE_PREPARE3_PARAMS, CALL, &prepare)?;
        Ok(client)
    }

    /// A keepalive ping, answered, when one is due.
    pub fn keepalive(&mut self) -> Result<(), LabError> {
        if self.last_keepalive.elapsed() >= KEEPALIVE_EVERY {
            self.last_keepalive = Instant::now();
            self.call(KEEPALIVE_PROGRAM, PROC_KEEPALIVE_PING, MESSAGE, &[])?;
        }
        Ok(())
    }

    /// Finishes the migration on the target and closes the connection.
    pub fn finish(mut self, completed: bool) -> Result<ControlAccount, LabError> {
        let mut finish = opaque(&cookie("perform", 256));
        finish.extend_from_slice(&0u32.to_be_bytes());
        finish.extend_from_slice(&u32::from(!completed).to_be_bytes());
        self.call(REMOTE_PROGRAM, PROC_MIGRATE_FINISH3_PARAMS, CALL, &finish)?;
        self.call(REMOTE_PROGRAM, PROC_CONNECT_CLOSE, CALL, &[])?;
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        Ok(self.account)
    }

    fn call(
        &mut self,
        program: u32,
        procedure: u32,
        kind: u32,
        body: &[u8],
    ) -> Result<(), LabError> {
        let io = |e: io::Error| LabError::Io(format!("control channel: {e}"));
        self.serial += 1;
        let header = Header {
            program,
            version: 1,
            procedure,
            kind,
            serial: self.serial,
            status: 0,
        };
        self.account.sent_bytes += write_frame(&mut self.stream, &header, body).map_err(io)?;
        self.account.requests += 1;
        let (reply, body) = read_frame(&mut self.stream)
            .map_err(io)?
            .ok_or_else(|| LabError::Io("control channel: the target closed it".into()))?;
        if reply.serial != self.serial {
            return Err(LabError::Io(format!(
                "control channel: reply to serial {} for {}",
                reply.serial, self.serial
            )));
        }
        self.account.received_bytes += (HEADER + body.len()) as u64;
        self.account.replies += 1;
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Header {
    program: u32,
    version: u32,
    procedure: u32,
    kind: u32,
    serial: u32,
    status: u32,
}

/// Writes one frame; its length on the wire.
fn write_frame(stream: &mut TcpStream, h: &Header, body: &[u8]) -> io::Result<u64> {
    let length = HEADER + body.len();
    let mut frame = Vec::with_capacity(length);
    for word in [
        length as u32,
        h.program,
        h.version,
        h.procedure,
        h.kind,
        h.serial,
        h.status,
    ] {
        frame.extend_from_slice(&word.to_be_bytes());
    }
    frame.extend_from_slice(body);
    stream.write_all(&frame)?;
    Ok(frame.len() as u64)
}

/// Reads one frame; `None` at the end of the stream.
fn read_frame(stream: &mut TcpStream) -> io::Result<Option<(Header, Vec<u8>)>> {
    let mut length = [0u8; 4];
    match stream.read_exact(&mut length) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let length = u32::from_be_bytes(length) as usize;
    if !(HEADER..=1 << 20).contains(&length) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a frame of {length} bytes"),
        ));
    }
    let mut rest = vec![0u8; length - 4];
    stream.read_exact(&mut rest)?;
    let word = |i: usize| u32::from_be_bytes(rest[i * 4..i * 4 + 4].try_into().expect("4 bytes"));
    let header = Header {
        program: word(0),
        version: word(1),
        procedure: word(2),
        kind: word(3),
        serial: word(4),
        status: word(5),
    };
    Ok(Some((header, rest[HEADER - 4..].to_vec())))
}

/// XDR variable-length opaque data: length, bytes, padding to 4.
fn opaque(bytes: &[u8]) -> Vec<u8> {
    let mut out = (bytes.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(bytes);
    out.resize(out.len().next_multiple_of(4), 0);
    out
}

/// A migration cookie of about `size` bytes (libvirt's are XML).
fn cookie(phase: &str, size: usize) -> Vec<u8> {
    let mut text = format!("<qemu-migration><name>mvlab</name><phase>{phase}</phase>");
    while text.len() < size {
        text += "<feature/>";
    }
    text += "</qemu-migration>";
    text.into_bytes()
}

fn domain_xml(vm: &str) -> String {
    let mut xml = format!(
        "<domain type='kvm'><name>{vm}</name><memory unit='KiB'>262144</memory><os><type arch='x86_64' \
         machine='q35'>hvm</type></os><devices>"
    );
    for i in 0..24 {
        xml += &format!("<controller type='pci' index='{i}' model='pcie-root-port'/>");
    }
    xml + "</devices></domain>"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xdr_opaque_data_is_padded_to_four_bytes() {
        assert_eq!(opaque(b"abc"), [0, 0, 0, 3, b'a', b'b', b'c', 0]);
        assert_eq!(opaque(b""), [0, 0, 0, 0]);
    }
}
