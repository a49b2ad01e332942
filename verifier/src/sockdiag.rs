//! The kernel's own view of TCP sockets, read over sock_diag
//! (`NETLINK_SOCK_DIAG`, `INET_DIAG_INFO`: the `struct tcp_info` that
//! `ss -ti` prints) inside the sockets' network namespaces. migverify reads
//! the smoothed RTT (`tcpi_rtt`, `srtt_us >> 3`) and its variation of the
//! migration connections' sending side this way: on machines without
//! fentry or kprobes it is the kernel's figure that needs no tracing.

use std::{
    collections::{HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use crate::{
    dataplane::{netns::run_in, Netns},
    netlink::{attributes, u32_of, Socket},
};

/// `SOCK_DIAG_BY_FAMILY`.
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `INET_DIAG_INFO`: the attribute holding `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// `struct inet_diag_msg` before its attributes.
const DIAG_MSG_LEN: usize = 72;
/// `tcpi_rtt` and `tcpi_rttvar` in `struct tcp_info` (after eight bytes of
/// state and fifteen u32 fields), microseconds.
const TCPI_RTT: usize = 68;
const TCPI_RTTVAR: usize = 72;
/// How many reads a connection is looked for in every namespace before it
/// is taken to live elsewhere (the target node's end, another node's
/// namespace): its socket exists from its SYN on, before the wire saw it.
const TRIES: u8 = 3;

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

/// A connection as its client's socket names it: (local, remote).
type Pair = (SocketAddr, SocketAddr);

/// sock_diag sockets in the namespaces to read, and where each connection
/// was found.
#[derive(Debug, Default)]
pub struct Sockets {
    sockets: Vec<Socket>,
    /// The namespace (an index into `sockets`) each socket was found in.
    home: HashMap<Pair, usize>,
    /// Connections not found in any namespace, and how many times.
    absent: HashMap<Pair, u8>,
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

    /// The sockets of `wanted` that are in the namespaces read, each found
    /// by an exact lookup (the kernel's hash of the four-tuple). A dump
    /// would walk the host's whole established table for every namespace
    /// and family, whatever few sockets are asked for: 262 144 buckets on
    /// a 24 GiB machine, 7% of a core at ten reads a second in four
    /// namespaces. A socket gone (its namespace deleted) is simply absent.
    pub fn lookup(&mut self, wanted: &[Pair]) -> Vec<TcpSocket> {
        let asked: HashSet<&Pair> = wanted.iter().collect();
        self.home.retain(|pair, _| asked.contains(pair));
        self.absent.retain(|pair, _| asked.contains(pair));
        let mut found = Vec::new();
        for &pair in wanted {
            if self.absent.get(&pair).is_some_and(|tries| *tries >= TRIES) {
                continue;
            }
            // Where it was last time first, then everywhere else.
            let last = self.home.get(&pair).copied();
            let hit = last
                .into_iter()
                .chain((0..self.sockets.len()).filter(|index| Some(*index) != last))
                .find_map(|index| Some((index, find(&self.sockets[index], pair)?)));
            match hit {
                Some((index, socket)) => {
                    self.home.insert(pair, index);
                    self.absent.remove(&pair);
                    found.push(socket);
                }
                None => *self.absent.entry(pair).or_default() += 1,
            }
        }
        found
    }
}

/// The socket `(local, remote)` in `socket`'s namespace, if it is there.
fn find(socket: &Socket, (local, remote): Pair) -> Option<TcpSocket> {
    let replies = socket
        .exchange(SOCK_DIAG_BY_FAMILY, 0, &exact_request(local, remote))
        .ok()?;
    replies
        .iter()
        .filter(|(kind, _)| *kind == SOCK_DIAG_BY_FAMILY)
        .find_map(|(_, payload)| parse(payload))
}

/// `struct inet_diag_req_v2` naming one TCP socket by its four-tuple
/// (`struct inet_diag_sockid`: ports and addresses in network order, any
/// interface, no cookie), with `tcp_info`.
fn exact_request(local: SocketAddr, remote: SocketAddr) -> Vec<u8> {
    let mut request = vec![0u8; 56];
    request[0] = match local.ip() {
        IpAddr::V4(_) => libc::AF_INET as u8,
        IpAddr::V6(_) => libc::AF_INET6 as u8,
    };
    request[1] = libc::IPPROTO_TCP as u8;
    request[2] = 1 << (INET_DIAG_INFO - 1);
    request[8..10].copy_from_slice(&local.port().to_be_bytes());
    request[10..12].copy_from_slice(&remote.port().to_be_bytes());
    let put = |request: &mut [u8], at: usize, ip: IpAddr| match ip {
        IpAddr::V4(v4) => request[at..at + 4].copy_from_slice(&v4.octets()),
        IpAddr::V6(v6) => request[at..at + 16].copy_from_slice(&v6.octets()),
    };
    put(&mut request, 12, local.ip());
    put(&mut request, 28, remote.ip());
    // INET_DIAG_NOCOOKIE: match whatever cookie the socket has.
    request[48..56].fill(0xff);
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
    fn finds_a_connection_in_this_namespace_by_its_addresses() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let mut client = TcpStream::connect(server).unwrap();
        let (mut accepted, _) = listener.accept().unwrap();
        client.write_all(&[1; 1000]).unwrap();
        let mut buf = [0; 1000];
        accepted.read_exact(&mut buf).unwrap();
        let (mut sockets, errors) = Sockets::open([None]);
        assert!(errors.is_empty(), "{errors:?}");
        let mine = (client.local_addr().unwrap(), server);
        // A port nobody uses on the same addresses.
        let gone = (SocketAddr::new(mine.0.ip(), 1), server);
        let found = sockets.lookup(&[mine, gone]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!((found[0].local, found[0].remote), mine);
        // Loopback: a smoothed RTT of some microseconds, under a second.
        assert!((1..1_000_000).contains(&found[0].srtt_us), "{found:?}");
        // The one that is not here is asked for TRIES reads, then no more.
        for _ in 1..TRIES {
            sockets.lookup(&[mine, gone]);
        }
        assert_eq!(sockets.absent.get(&gone), Some(&TRIES));
        assert_eq!(sockets.lookup(&[mine, gone]).len(), 1);
        assert_eq!(sockets.absent.get(&gone), Some(&TRIES));
        // Neither asked for any more: both forgotten.
        assert!(sockets.lookup(&[]).is_empty());
        assert!(sockets.home.is_empty() && sockets.absent.is_empty());
    }

    #[test]
    fn short_replies_are_skipped() {
        assert_eq!(parse(&[0; 40]), None);
        assert_eq!(parse(&[0; DIAG_MSG_LEN]), None);
    }
}
