//! Netlink transport, made directly: one socket, a request, the replies
//! until the dump ends; attributes in and out. rtnetlink (the host checks)
//! and sock_diag (the kernel's view of the migration sockets) speak through
//! it. A socket talks to the network namespace it was opened in, whichever
//! thread uses it later.

use std::{
    io,
    mem::size_of,
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

pub const NLMSG_ERROR: u16 = 2;
pub const NLMSG_DONE: u16 = 3;
pub const NLM_F_REQUEST: u16 = 0x1;
pub const NLM_F_DUMP: u16 = 0x300;

/// A netlink socket of one protocol, in the namespace it was opened in.
#[derive(Debug)]
pub struct Socket {
    fd: OwnedFd,
}

impl Socket {
    /// Opens a socket of `protocol` (`NETLINK_ROUTE`, `NETLINK_SOCK_DIAG`)
    /// in the calling thread's network namespace.
    pub fn open(protocol: i32) -> io::Result<Socket> {
        // SAFETY: plain syscalls; the fd is owned right away.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                protocol,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let timeout = libc::timeval {
            tv_sec: 5,
            tv_usec: 0,
        };
        // SAFETY: setsockopt with a correctly sized timeval.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&timeout as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        };
        Ok(Socket { fd })
    }

    /// Sends one request and collects the replies (type, payload) until the
    /// dump ends, or the single reply of a plain request.
    pub fn exchange(
        &self,
        kind: u16,
        flags: u16,
        payload: &[u8],
    ) -> io::Result<Vec<(u16, Vec<u8>)>> {
        let mut message = Vec::with_capacity(16 + payload.len());
        message.extend_from_slice(&((16 + payload.len()) as u32).to_ne_bytes());
        message.extend_from_slice(&kind.to_ne_bytes());
        message.extend_from_slice(&(NLM_F_REQUEST | flags).to_ne_bytes());
        message.extend_from_slice(&1u32.to_ne_bytes()); // sequence
        message.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel
        message.extend_from_slice(payload);
        // SAFETY: sending an initialised buffer of the given length.
        if unsafe {
            libc::send(
                self.fd.as_raw_fd(),
                message.as_ptr().cast(),
                message.len(),
                0,
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut replies = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            // SAFETY: receiving into a buffer we own, within its length.
            let n =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            match split_messages(&buf[..n as usize], &mut replies)? {
                Some(()) => return Ok(replies),
                None if flags & NLM_F_DUMP == 0 && !replies.is_empty() => return Ok(replies),
                None => {}
            }
        }
    }
}

/// Appends one attribute, padded to four bytes.
pub fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Splits one datagram into messages; `Some(())` once the exchange is over.
pub fn split_messages(mut data: &[u8], out: &mut Vec<(u16, Vec<u8>)>) -> io::Result<Option<()>> {
    while data.len() >= 16 {
        let len = u32::from_ne_bytes(data[0..4].try_into().unwrap_or_default()) as usize;
        let kind = u16::from_ne_bytes([data[4], data[5]]);
        if len < 16 || len > data.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "truncated netlink message",
            ));
        }
        let payload = &data[16..len];
        match kind {
            NLMSG_DONE => return Ok(Some(())),
            NLMSG_ERROR => {
                let code = payload
                    .get(0..4)
                    .map(|b| i32::from_ne_bytes(b.try_into().unwrap_or_default()))
                    .unwrap_or(0);
                return if code == 0 {
                    Ok(Some(()))
                } else {
                    Err(io::Error::from_raw_os_error(-code))
                };
            }
            _ => out.push((kind, payload.to_vec())),
        }
        data = &data[len.next_multiple_of(4).min(data.len())..];
    }
    Ok(None)
}

/// The attributes (type, data) in `data`; stops at the first malformed one.
pub fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if data.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([data[0], data[1]]) as usize;
        let kind = u16::from_ne_bytes([data[2], data[3]]) & 0x3fff; // without NLA_F_NESTED / _NET_BYTEORDER
        if len < 4 || len > data.len() {
            return None;
        }
        let value = &data[4..len];
        data = &data[len.next_multiple_of(4).min(data.len())..];
        Some((kind, value))
    })
}

pub fn u32_of(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?))
}
