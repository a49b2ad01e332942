//! The few rtnetlink requests the host checks need, made directly: links
//! (flags, MTU, kind, carrier, bridge VLAN filtering), addresses, bridge
//! port VLANs, and the route the kernel would pick for a destination.
//! Everything runs in the calling thread's network namespace.

use std::{
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use crate::netlink::{attributes, push_attr, u32_of, Socket, NLM_F_DUMP};

const RTM_NEWLINK: u16 = 16;
const RTM_GETLINK: u16 = 18;
const RTM_NEWADDR: u16 = 20;
const RTM_GETADDR: u16 = 22;
const RTM_NEWROUTE: u16 = 24;
const RTM_GETROUTE: u16 = 26;

const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_AF_SPEC: u16 = 26;
const IFLA_EXT_MASK: u16 = 29;
const IFLA_CARRIER: u16 = 33;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BR_VLAN_FILTERING: u16 = 7;
const IFLA_BRIDGE_VLAN_INFO: u16 = 2;
const RTEXT_FILTER_BRVLAN: u32 = 2;
const IFA_ADDRESS: u16 = 1;
const IFA_LOCAL: u16 = 2;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;

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

/// Sends one rtnetlink request and collects the replies.
fn exchange(kind: u16, flags: u16, payload: &[u8]) -> io::Result<Vec<(u16, Vec<u8>)>> {
    Socket::open(libc::NETLINK_ROUTE)?.exchange(kind, flags, payload)
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
    use crate::netlink::split_messages;

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
