//! The few rtnetlink requests migverify makes, directly: links (flags, MTU,
//! kind, carrier, bridge VLAN filtering, the link a macvlan or veth points
//! at and that link's namespace id), addresses, bridge port VLANs, the route
//! the kernel would pick for a destination and the default route, and the
//! id this namespace gives another (the host checks, the agent, the
//! discovery), and removing a clsact qdisc (the data plane on kernels before
//! 6.6: the image has no `tc` to do it). Everything runs in the calling
//! thread's network namespace.
// Namespace ids, the default route and the qdisc serve the data plane's
// side, which is in the build with the data plane only.
#![cfg_attr(not(feature = "dataplane"), allow(dead_code))]

use std::{
    io,
    mem::size_of,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    os::fd::{AsRawFd, FromRawFd, OwnedFd},
};

const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;
const RTM_DELQDISC: u16 = 37;
/// `TCA_KIND` of a qdisc request.
const TCA_KIND: u16 = 1;
/// The clsact qdisc's parent and handle (`TC_H_CLSACT`, `TC_H_MAKE(TC_H_CLSACT, 0)`).
const TC_H_CLSACT: u32 = 0xFFFF_FFF1;
const CLSACT_HANDLE: u32 = 0xFFFF_0000;
const RTM_NEWNSID: u16 = 88;
const RTM_GETNSID: u16 = 90;

const IFLA_IFNAME: u16 = 3;
const IFLA_LINK: u16 = 5;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_CARRIER: u16 = 33;
const IFLA_LINK_NETNSID: u16 = 37;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const RTEXT_FILTER_BRVLAN: u32 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const NETNSA_NSID: u16 = 1;
const NETNSA_FD: u16 = 3;
const RT_TABLE_MAIN: u8 = 254;

pub const IFF_UP: u32 = 0x1;
pub const IFF_LOWER_UP: u32 = 0x1_0000;
/// Route scope "universe": a global address.
pub const RT_SCOPE_UNIVERSE: u8 = 0;

/// One network interface as the kernel reports it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub flags: u32,
    pub mtu: u32,
    /// `macvlan`, `bridge`, `veth`, ... (`None` for plain devices).
    pub kind: Option<String>,
    pub carrier: Option<bool>,
    pub master: Option<u32>,
    /// For bridges whose kernel reports it.
    pub vlan_filtering: Option<bool>,
    /// The link this one rests on: a macvlan's lower device, a veth's peer.
    pub link: Option<u32>,
    /// The namespace of [`Link::link`], as this namespace numbers it
    /// ([`nsid_of`]); `None`: this namespace.
    pub link_netnsid: Option<i32>,
}

impl Link {
    pub fn is_up(&self) -> bool {
        self.flags & IFF_UP != 0
    }

    /// Up with a lower layer (carrier) up.
    pub fn has_carrier(&self) -> bool {
        self.flags & IFF_LOWER_UP != 0 && self.carrier != Some(false)
    }
}

/// One address on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub index: u32,
    pub addr: IpAddr,
    pub prefix: u8,
    pub scope: u8,
}

/// A bridge port's VLAN memberships (`bridge vlan show`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortVlans {
    pub index: u32,
    pub vids: Vec<u16>,
}

pub fn links() -> io::Result<Vec<Link>> {
    let mut request = vec![0u8; 16]; // struct ifinfomsg, family AF_UNSPEC
    request[0] = libc::AF_UNSPEC as u8;
    Ok(exchange(RTM_GETLINK, NLM_F_DUMP, &request)?
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWLINK)
        .filter_map(|(_, payload)| parse_link(payload))
        .collect())
}

pub fn addresses() -> io::Result<Vec<Address>> {
    let request = vec![0u8; 8]; // struct ifaddrmsg, family AF_UNSPEC
    Ok(exchange(RTM_GETADDR, NLM_F_DUMP, &request)?
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWADDR)
        .filter_map(|(_, payload)| parse_address(payload))
        .collect())
}

/// VLAN memberships of every bridge port; empty on kernels without bridge
/// VLAN filtering.
pub fn bridge_vlans() -> io::Result<Vec<PortVlans>> {
    let mut request = vec![0u8; 16];
    request[0] = libc::AF_BRIDGE as u8;
    push_attr(
        &mut request,
        IFLA_EXT_MASK,
        &RTEXT_FILTER_BRVLAN.to_ne_bytes(),
    );
    Ok(exchange(RTM_GETLINK, NLM_F_DUMP, &request)?
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWLINK)
        .filter_map(|(_, payload)| parse_port_vlans(payload))
        .collect())
}

/// The interface index the kernel would send to `dst` through
/// (`ip route get DST`); `None` if it has no route.
pub fn route_to(dst: IpAddr) -> io::Result<Option<u32>> {
    let (family, bytes, bits): (u8, Vec<u8>, u8) = match dst {
        IpAddr::V4(a) => (libc::AF_INET as u8, a.octets().to_vec(), 32),
        IpAddr::V6(a) => (libc::AF_INET6 as u8, a.octets().to_vec(), 128),
    };
    let mut request = vec![0u8; 12]; // struct rtmsg
    request[0] = family;
    request[1] = bits;
    push_attr(&mut request, RTA_DST, &bytes);
    match exchange(RTM_GETROUTE, 0, &request) {
        Ok(replies) => Ok(replies
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWROUTE)
            .find_map(|(_, payload)| parse_route_oif(payload))),
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH)
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Removes the clsact qdisc of interface `ifindex` and every filter on it
/// (`tc qdisc del dev IFACE clsact`). Needs CAP_NET_ADMIN.
pub fn delete_clsact(ifindex: u32) -> io::Result<()> {
    // struct tcmsg: family, 3 bytes of padding, ifindex, handle, parent, info.
    let mut request = vec![0u8; 4];
    request.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    request.extend_from_slice(&CLSACT_HANDLE.to_ne_bytes());
    request.extend_from_slice(&TC_H_CLSACT.to_ne_bytes());
    request.extend_from_slice(&0u32.to_ne_bytes());
    push_attr(&mut request, TCA_KIND, b"clsact\0");
    exchange(RTM_DELQDISC, NLM_F_ACK, &request).map(drop)
}

/// The interface index of the default route (main table, IPv4 first);
/// `None` without one.
pub fn default_route() -> io::Result<Option<u32>> {
    for family in [libc::AF_INET, libc::AF_INET6] {
        let mut request = vec![0u8; 12]; // struct rtmsg
        request[0] = family as u8;
        let found = exchange(RTM_GETROUTE, NLM_F_DUMP, &request)?
            .iter()
            .filter(|(kind, _)| *kind == RTM_NEWROUTE)
            .filter(|(_, payload)| {
                // rtm_dst_len 0, rtm_table main, rtm_type unicast.
                payload.len() >= 12
                    && payload[1] == 0
                    && payload[4] == RT_TABLE_MAIN
                    && payload[7] == 1
            })
            .find_map(|(_, payload)| parse_route_oif(payload));
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// The id this namespace gives the namespace `fd` refers to (`ip netns
/// list-id`): what [`Link::link_netnsid`] says; `None` when it has none.
pub fn nsid_of(fd: std::os::fd::BorrowedFd) -> io::Result<Option<i32>> {
    let mut request = vec![0u8; 4]; // struct rtgenmsg, aligned
    push_attr(
        &mut request,
        NETNSA_FD,
        &(fd.as_raw_fd() as u32).to_ne_bytes(),
    );
    Ok(exchange(RTM_GETNSID, 0, &request)?
        .iter()
        .filter(|(kind, _)| *kind == RTM_NEWNSID)
        .find_map(|(_, payload)| {
            attributes(payload.get(4..)?)
                .find(|(kind, _)| *kind == NETNSA_NSID)
                .and_then(|(_, v)| u32_of(v))
        })
        .map(|id| id as i32)
        .filter(|id| *id >= 0))
}

fn push_attr(buf: &mut Vec<u8>, kind: u16, data: &[u8]) {
    let len = 4 + data.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(data);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// Sends one request and collects the replies (type, payload) until the
/// dump ends, or the single reply of a plain request.
fn exchange(kind: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    // SAFETY: plain syscalls; the fd is owned right away.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket(2) and is owned by nothing else.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let timeout = libc::timeval {
        tv_sec: 5,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a correctly sized timeval.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        )
    };
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
            socket.as_raw_fd(),
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
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
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

/// Splits one datagram into messages; `Some(())` once the exchange is over.
fn split_messages(mut data: &[u8], out: &mut Vec<(u16, Vec<u8>)>) -> io::Result<Option<()>> {
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
fn attributes(mut data: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
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

fn u32_of(data: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(data.get(0..4)?.try_into().ok()?))
}

fn parse_link(payload: &[u8]) -> Option<Link> {
    let header = payload.get(0..16)?;
    let mut link = Link {
        index: u32_of(&header[4..8])?,
        flags: u32_of(&header[8..12])?,
        ..Link::default()
    };
    for (kind, value) in attributes(&payload[16..]) {
        match kind {
            IFLA_IFNAME => {
                link.name = String::from_utf8_lossy(value)
                    .trim_end_matches('\0')
                    .to_string()
            }
            IFLA_MTU => link.mtu = u32_of(value)?,
            IFLA_MASTER => link.master = u32_of(value),
            IFLA_LINK => link.link = u32_of(value).filter(|index| *index != 0),
            IFLA_LINK_NETNSID => link.link_netnsid = u32_of(value).map(|id| id as i32),
            IFLA_CARRIER => link.carrier = value.first().map(|c| *c != 0),
            IFLA_LINKINFO => {
                for (info, data) in attributes(value) {
                    match info {
                        IFLA_INFO_KIND => {
                            link.kind = Some(
                                String::from_utf8_lossy(data)
                                    .trim_end_matches('\0')
                                    .to_string(),
                            )
                        }
                        IFLA_INFO_DATA if link.kind.as_deref() == Some("bridge") => {
                            link.vlan_filtering = attributes(data)
                                .find(|(k, _)| *k == IFLA_BR_VLAN_FILTERING)
                                .and_then(|(_, v)| v.first().map(|f| *f != 0));
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    Some(link)
}

fn parse_address(payload: &[u8]) -> Option<Address> {
    let header = payload.get(0..8)?;
    let (family, prefix, scope, index) = (header[0], header[1], header[3], u32_of(&header[4..8])?);
    let mut local = None;
    let mut address = None;
    for (kind, value) in attributes(&payload[8..]) {
        let ip = ip_of(family, value);
        match kind {
            IFA_LOCAL => local = ip,
            IFA_ADDRESS => address = ip,
            _ => {}
        }
    }
    Some(Address {
        index,
        addr: local.or(address)?,
        prefix,
        scope,
    })
}

fn parse_port_vlans(payload: &[u8]) -> Option<PortVlans> {
    let index = u32_of(payload.get(4..8)?)?;
    let spec = attributes(payload.get(16..)?)
        .find(|(kind, _)| *kind == IFLA_AF_SPEC)?
        .1;
    let vids = attributes(spec)
        .filter(|(kind, _)| *kind == IFLA_BRIDGE_VLAN_INFO)
        .filter_map(|(_, info)| Some(u16::from_ne_bytes(info.get(2..4)?.try_into().ok()?)))
        .collect();
    Some(PortVlans { index, vids })
}

fn parse_route_oif(payload: &[u8]) -> Option<u32> {
    attributes(payload.get(12..)?)
        .find(|(kind, _)| *kind == RTA_OIF)
        .and_then(|(_, v)| u32_of(v))
}

fn ip_of(family: u8, data: &[u8]) -> Option<IpAddr> {
    match i32::from(family) {
        libc::AF_INET => Some(IpAddr::V4(Ipv4Addr::from(
            <[u8; 4]>::try_from(data.get(0..4)?).ok()?,
        ))),
        libc::AF_INET6 => Some(IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(data.get(0..16)?).ok()?,
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attr(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut buf = Vec::new();
        push_attr(&mut buf, kind, data);
        buf
    }

    #[test]
    fn parses_a_link_with_bridge_info() {
        let mut payload = vec![0u8; 16];
        payload[4..8].copy_from_slice(&7u32.to_ne_bytes());
        payload[8..12].copy_from_slice(&(IFF_UP | IFF_LOWER_UP).to_ne_bytes());
        payload.extend(attr(IFLA_IFNAME, b"br-mig\0"));
        payload.extend(attr(IFLA_MTU, &9000u32.to_ne_bytes()));
        let data = attr(IFLA_BR_VLAN_FILTERING, &[1]);
        let info = [
            attr(IFLA_INFO_KIND, b"bridge\0"),
            attr(IFLA_INFO_DATA | 0x8000, &data),
        ]
        .concat();
        payload.extend(attr(IFLA_LINKINFO | 0x8000, &info));
        let link = parse_link(&payload).unwrap();
        assert_eq!(
            (
                link.index,
                link.name.as_str(),
                link.mtu,
                link.kind.as_deref(),
                link.vlan_filtering
            ),
            (7, "br-mig", 9000, Some("bridge"), Some(true))
        );
        assert!(link.is_up() && link.has_carrier());
    }

    #[test]
    fn parses_addresses_port_vlans_and_routes() {
        let mut payload = vec![libc::AF_INET as u8, 24, 0, 0];
        payload.extend_from_slice(&3u32.to_ne_bytes());
        payload.extend(attr(IFA_ADDRESS, &[10, 200, 5, 11]));
        let address = parse_address(&payload).unwrap();
        assert_eq!(
            (address.index, address.addr, address.prefix),
            (3, "10.200.5.11".parse().unwrap(), 24)
        );

        let mut port = vec![0u8; 16];
        port[4..8].copy_from_slice(&4u32.to_ne_bytes());
        let vlans = [
            attr(IFLA_BRIDGE_VLAN_INFO, &[0, 0, 2, 0]),
            attr(IFLA_BRIDGE_VLAN_INFO, &[6, 0, 100, 0]),
        ]
        .concat();
        port.extend(attr(IFLA_AF_SPEC, &vlans));
        let expected: Vec<u16> = vec![u16::from_ne_bytes([2, 0]), u16::from_ne_bytes([100, 0])];
        assert_eq!(
            parse_port_vlans(&port),
            Some(PortVlans {
                index: 4,
                vids: expected
            })
        );

        let mut route = vec![0u8; 12];
        route.extend(attr(RTA_OIF, &5u32.to_ne_bytes()));
        assert_eq!(parse_route_oif(&route), Some(5));
    }

    #[test]
    fn malformed_replies_are_errors_not_panics() {
        let mut out = Vec::new();
        assert!(split_messages(
            &[40, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            &mut out
        )
        .is_err());
        assert_eq!(attributes(&[200, 0, 1, 0, 1]).count(), 0);
        assert_eq!(parse_link(&[0; 3]), None);
    }

    #[test]
    fn reads_this_namespace() {
        let links = links().expect("RTM_GETLINK needs no privilege");
        let lo = links.iter().find(|l| l.name == "lo").expect("lo");
        assert_eq!(lo.mtu, 65536);
        let addresses = addresses().unwrap();
        assert!(
            addresses
                .iter()
                .any(|a| a.index == lo.index && a.addr.is_loopback())
                || !lo.is_up()
        );
        if lo.is_up() {
            assert_eq!(
                route_to("127.0.0.1".parse().unwrap()).unwrap(),
                Some(lo.index)
            );
        }
    }
}
