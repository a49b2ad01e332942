//! Ethernet frames built with pnet, for program tests and benchmarks that
//! feed the observers through `BPF_PROG_TEST_RUN`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use pnet_packet::{
    ethernet::{EtherType, EtherTypes, MutableEthernetPacket},
    ip::IpNextHeaderProtocols,
    ipv4::{self, MutableIpv4Packet},
    ipv6::MutableIpv6Packet,
    tcp::{self, MutableTcpPacket, TcpOption, TcpPacket},
    vlan::MutableVlanPacket,
    Packet as _,
};

/// 802.1ad service tag, the outer tag of QinQ.
pub const ETHERTYPE_8021AD: u16 = 0x88a8;
const ETHERTYPE_8021Q: u16 = 0x8100;

/// A TCP segment and the headers around it.
#[derive(Clone, Debug)]
pub struct TcpSegment {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub ack: u32,
    /// `pnet_packet::tcp::TcpFlags` bits.
    pub flags: u8,
    pub window: u16,
    /// TCP timestamps option (TSval, TSecr).
    pub timestamps: Option<(u32, u32)>,
    /// Maximum segment size option (first, as Linux puts it in a SYN).
    pub mss: Option<u16>,
    pub payload: Vec<u8>,
    /// 802.1Q/802.1ad tags, outermost first: (TPID, VID).
    pub vlans: Vec<(u16, u16)>,
    /// IPv4: set the more-fragments flag. IPv6: add a fragment header.
    pub fragment: bool,
    /// IPv6 only: a hop-by-hop options header before TCP.
    pub hop_by_hop: bool,
}

impl TcpSegment {
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        TcpSegment {
            src,
            dst,
            seq: 1000,
            ack: 1,
            flags: tcp::TcpFlags::ACK,
            window: 512,
            timestamps: None,
            mss: None,
            payload: Vec::new(),
            vlans: Vec::new(),
            fragment: false,
            hop_by_hop: false,
        }
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn flags(mut self, flags: u8) -> Self {
        self.flags = flags;
        self
    }

    pub fn seq(mut self, seq: u32) -> Self {
        self.seq = seq;
        self
    }

    pub fn vlan(mut self, vid: u16) -> Self {
        let tpid = if self.vlans.is_empty() {
            ETHERTYPE_8021Q
        } else {
            ETHERTYPE_8021AD
        };
        // A new tag goes outside the existing ones.
        self.vlans.insert(0, (tpid, vid));
        self
    }

    pub fn mss(mut self, mss: u16) -> Self {
        self.mss = Some(mss);
        self
    }

    pub fn timestamps(mut self, tsval: u32, tsecr: u32) -> Self {
        self.timestamps = Some((tsval, tsecr));
        self
    }

    /// The whole frame, checksums filled in.
    pub fn frame(&self) -> Vec<u8> {
        let tcp = self.tcp_bytes();
        let (ethertype, l3) = match (self.src.ip(), self.dst.ip()) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => {
                (EtherTypes::Ipv4, ipv4_packet(src, dst, &tcp, self.fragment))
            }
            (IpAddr::V6(src), IpAddr::V6(dst)) => (
                EtherTypes::Ipv6,
                ipv6_packet(src, dst, &tcp, self.hop_by_hop, self.fragment),
            ),
            _ => panic!("TcpSegment: source and destination of different IP versions"),
        };
        ethernet(&self.vlans, ethertype, &l3)
    }

    fn tcp_bytes(&self) -> Vec<u8> {
        let mut options: Vec<TcpOption> = Vec::new();
        let mut options_len = 0;
        if let Some(mss) = self.mss {
            options.push(TcpOption::mss(mss));
            options_len += 4;
        }
        if let Some((tsval, tsecr)) = self.timestamps {
            options.extend([
                TcpOption::nop(),
                TcpOption::nop(),
                TcpOption::timestamp(tsval, tsecr),
            ]);
            options_len += 12;
        }
        let header_len = 20 + options_len;
        let mut bytes = vec![0u8; header_len + self.payload.len()];
        let mut tcp = MutableTcpPacket::new(&mut bytes).expect("buffer fits a TCP header");
        tcp.set_source(self.src.port());
        tcp.set_destination(self.dst.port());
        tcp.set_sequence(self.seq);
        tcp.set_acknowledgement(self.ack);
        tcp.set_data_offset((header_len / 4) as u8);
        tcp.set_flags(self.flags);
        tcp.set_window(self.window);
        tcp.set_options(&options);
        tcp.set_payload(&self.payload);
        let checksum = {
            let view = TcpPacket::new(tcp.packet()).expect("same buffer");
            match (self.src.ip(), self.dst.ip()) {
                (IpAddr::V4(s), IpAddr::V4(d)) => tcp::ipv4_checksum(&view, &s, &d),
                (IpAddr::V6(s), IpAddr::V6(d)) => tcp::ipv6_checksum(&view, &s, &d),
                _ => unreachable!("checked in frame()"),
            }
        };
        tcp.set_checksum(checksum);
        bytes
    }
}

fn ipv4_packet(
    src: std::net::Ipv4Addr,
    dst: std::net::Ipv4Addr,
    payload: &[u8],
    more_fragments: bool,
) -> Vec<u8> {
    let mut bytes = vec![0u8; 20 + payload.len()];
    let mut ip = MutableIpv4Packet::new(&mut bytes).expect("buffer fits an IPv4 header");
    ip.set_version(4);
    ip.set_header_length(5);
    ip.set_total_length(bytes_len(20 + payload.len()));
    ip.set_ttl(64);
    ip.set_next_level_protocol(IpNextHeaderProtocols::Tcp);
    ip.set_source(src);
    ip.set_destination(dst);
    if more_fragments {
        ip.set_flags(ipv4::Ipv4Flags::MoreFragments);
    }
    ip.set_payload(payload);
    let checksum = ipv4::checksum(&ip.to_immutable());
    ip.set_checksum(checksum);
    bytes
}

fn ipv6_packet(
    src: std::net::Ipv6Addr,
    dst: std::net::Ipv6Addr,
    tcp: &[u8],
    hop_by_hop: bool,
    fragment: bool,
) -> Vec<u8> {
    // Extension headers are 8 bytes each here: next header, length, padding.
    let mut chain = Vec::new();
    let mut next = IpNextHeaderProtocols::Tcp.0;
    if fragment {
        // Fragment header: next, reserved, offset 0 + M flag, identification.
        let mut header = vec![next, 0, 0, 1, 0, 0, 0, 42];
        header.extend_from_slice(&chain);
        chain = header;
        next = IpNextHeaderProtocols::Ipv6Frag.0;
    }
    if hop_by_hop {
        // Hop-by-hop: next, length 0 (8 bytes), PadN option of 4 bytes.
        let mut header = vec![next, 0, 1, 4, 0, 0, 0, 0];
        header.extend_from_slice(&chain);
        chain = header;
        next = IpNextHeaderProtocols::Hopopt.0;
    }
    chain.extend_from_slice(tcp);
    let mut bytes = vec![0u8; 40 + chain.len()];
    let mut ip = MutableIpv6Packet::new(&mut bytes).expect("buffer fits an IPv6 header");
    ip.set_version(6);
    ip.set_payload_length(bytes_len(chain.len()));
    ip.set_next_header(pnet_packet::ip::IpNextHeaderProtocol(next));
    ip.set_hop_limit(64);
    ip.set_source(src);
    ip.set_destination(dst);
    ip.set_payload(&chain);
    bytes
}

fn bytes_len(len: usize) -> u16 {
    u16::try_from(len).expect("test frames stay below 64 KiB")
}

/// An Ethernet frame with the given tags (outermost first) around `payload`.
pub fn ethernet(vlans: &[(u16, u16)], ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let tags = vlans.len() * 4;
    let mut bytes = vec![0u8; 14 + tags + payload.len()];
    let mut eth = MutableEthernetPacket::new(&mut bytes).expect("buffer fits an Ethernet header");
    eth.set_destination([0x02, 0, 0, 0, 0, 2].into());
    eth.set_source([0x02, 0, 0, 0, 0, 1].into());
    let first = vlans
        .first()
        .map_or(ethertype, |&(tpid, _)| EtherType(tpid));
    eth.set_ethertype(first);
    let mut offset = 14;
    for (i, &(_, vid)) in vlans.iter().enumerate() {
        let inner = vlans
            .get(i + 1)
            .map_or(ethertype, |&(tpid, _)| EtherType(tpid));
        let mut tag = MutableVlanPacket::new(&mut bytes[offset..]).expect("room for the tag");
        tag.set_vlan_identifier(vid);
        tag.set_ethertype(inner);
        offset += 4;
    }
    bytes[offset..].copy_from_slice(payload);
    bytes
}

/// An ARP request: the non-IP frame every network carries.
pub fn arp_frame() -> Vec<u8> {
    arp(
        1,
        Ipv4Addr::new(10, 0, 0, 1),
        Ipv4Addr::new(10, 0, 0, 2),
        &[],
    )
}

/// An ARP packet (`op` 1 request, 2 reply) from `sender` about `target`,
/// inside the given tags (outermost first: TPID, VID).
pub fn arp(op: u16, sender: Ipv4Addr, target: Ipv4Addr, vlans: &[(u16, u16)]) -> Vec<u8> {
    // Hardware Ethernet, protocol IPv4, sizes 6/4, then the opcode.
    let mut arp = vec![0, 1, 8, 0, 6, 4];
    arp.extend_from_slice(&op.to_be_bytes());
    arp.extend_from_slice(&[0x02, 0, 0, 0, 0, 1]);
    arp.extend_from_slice(&sender.octets());
    arp.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    arp.extend_from_slice(&target.octets());
    ethernet(vlans, EtherTypes::Arp, &arp)
}
