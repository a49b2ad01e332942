//! The kernel's own view of TCP sockets, read over sock_diag
//! (`NETLINK_SOCK_DIAG`, `INET_DIAG_INFO`: the `struct tcp_info` that
//! `ss -ti` prints) inside the sockets' network namespaces. migverify reads
//! the smoothed RTT (`tcpi_rtt`, `srtt_us >> 3`) and its variation of the
//! migration connections' sending side this way: on machines without
//! fentry or kprobes it is the kernel's figure that needs no tracing.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::{
    dataplane::{netns::run_in, Netns},
    netlink::{attributes, u32_of, Socket, NLM_F_DUMP},
};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// TCP states with data in flight: ESTABLISHED, FIN_WAIT1, FIN_WAIT2,
/// CLOSE_WAIT, LAST_ACK, CLOSING (bit = 1 << state).
const STATES: u32 = (1 << 1) | (1 << 4) | (1 << 5) | (1 << 8) | (1 << 9) | (1 << 11);
/// `struct inet_diag_msg` before its attributes.
const DIAG_MSG_LEN: usize = 72;
/// `tcpi_rtt` and `tcpi_rttvar` in `struct tcp_info` (after eight bytes of
/// state and fifteen u32 fields), microseconds.
const TCPI_RTT: usize = 68;
const TCPI_RTTVAR: usize = 72;

/// One TCP socket as the kernel reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSocket {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    /// Smoothed RTT, microseconds (`tcpi_rtt`).
    pub srtt_us: u32,
    /// Its mean deviation, microseconds (`tcpi_rttvar`).
    pub rttvar_us: u32,
}

/// sock_diag sockets in the namespaces to read.
#[derive(Debug, Default)]
pub struct Sockets {
    sockets: Vec<Socket>,
}

impl Sockets {
    /// A sock_diag socket in each of `namespaces` (`None`: this one).
    /// Namespaces that cannot be entered are left out, with why.
    pub fn open<'a>(
        namespaces: impl IntoIterator<Item = Option<&'a Netns>>,
    ) -> (Sockets, Vec<String>) {
        let mut sockets = Sockets::default();
        let mut errors = Vec::new();
        for netns in namespaces {
            match run_in(netns, || Socket::open(libc::NETLINK_SOCK_DIAG)) {
                Ok(Ok(socket)) => sockets.sockets.push(socket),
                Ok(Err(e)) | Err(e) => errors.push(format!(
                    "sock_diag in {}: {e}",
                    netns.map_or_else(|| "this namespace".to_string(), ToString::to_string)
                )),
            }
        }
        (sockets, errors)
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Every TCP socket with data in flight, both families, every namespace.
    pub fn tcp(&self) -> io::Result<Vec<TcpSocket>> {
        let mut found = Vec::new();
        for socket in &self.sockets {
            for family in [libc::AF_INET as u8, libc::AF_INET6 as u8] {
                for (kind, payload) in
                    socket.exchange(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, &request(family))?
                {
                    if kind == SOCK_DIAG_BY_FAMILY {
                        found.extend(parse(&payload));
                    }
                }
            }
        }
        Ok(found)
    }
}

/// `struct inet_diag_req_v2` for every TCP socket of `family` in [`STATES`],
/// with `tcp_info`.
fn request(family: u8) -> Vec<u8> {
    let mut request = vec![0u8; 56];
    request[0] = family;
    request[1] = libc::IPPROTO_TCP as u8;
    request[2] = 1 << (INET_DIAG_INFO - 1);
    request[4..8].copy_from_slice(&STATES.to_ne_bytes());
    request
}

fn parse(payload: &[u8]) -> Option<TcpSocket> {
    let header = payload.get(..DIAG_MSG_LEN)?;
    let family = i32::from(header[0]);
    let port = |at: usize| u16::from_be_bytes([header[at], header[at + 1]]);
    let addr = |at: usize| -> Option<IpAddr> {
        let bytes = &header[at..at + 16];
        match family {
            libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
                <[u8; 4]>::try_from(&bytes[..4]).ok()?,
            ))),
            libc::AF_INET6 => {
                let v6 = Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?);
                // A dual-stack socket's IPv4 peer.
                Some(v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4))
            }
            _ => None,
        }
    };
    let info = attributes(&payload[DIAG_MSG_LEN..])
        .find(|(kind, _)| *kind == INET_DIAG_INFO)?
        .1;
    Some(TcpSocket {
        local: SocketAddr::new(addr(8)?, port(4)),
        remote: SocketAddr::new(addr(24)?, port(6)),
        srtt_us: u32_of(info.get(TCPI_RTT..)?)?,
        rttvar_us: u32_of(info.get(TCPI_RTTVAR..)?)?,
    })
}

#[cfg(test)]
mod tests {
    use std::{
        io::{Read as _, Write as _},
        net::{TcpListener, TcpStream},
    };

    use super::*;

    #[test]
    fn reads_the_rtt_of_a_connection_in_this_namespace() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        client.write_all(&[1; 1000]).unwrap();
        let mut buf = [0; 1000];
        accepted.read_exact(&mut buf).unwrap();
        let (sockets, errors) = Sockets::open([None]);
        assert!(errors.is_empty(), "{errors:?}");
        let found = sockets.tcp().expect("sock_diag needs no privilege");
        let mine = found
            .iter()
            .find(|s| s.local == client.local_addr().unwrap() && s.remote == server)
            .unwrap_or_else(|| panic!("{found:?}"));
        // Loopback: a smoothed RTT of some microseconds, under a second.
        assert!((1..1_000_000).contains(&mine.srtt_us), "{mine:?}");
    }

    #[test]
    fn short_replies_are_skipped() {
        assert_eq!(parse(&[0; 40]), None);
        assert_eq!(parse(&[0; DIAG_MSG_LEN]), None);
    }
}
