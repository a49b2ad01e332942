//! The observers in the real kernel: program tests through
//! BPF_PROG_TEST_RUN, and attachments to veths carrying real TCP traffic.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpListener, TcpStream},
};

use aya::programs::{SchedClassifier, TcAttachType, TestRun as _, TestRunOptions};
use verifier::{
    dataplane::{AttachSpec, Dataplane, DataplaneError, Role},
    frames::{self, TcpSegment},
};
use verifier_ebpf::HookCounters;

use support::{privileged, VethPair};

/// What a TC program returns to mean "carry on as if we were not here".
const TC_ACT_UNSPEC: u32 = -1i32 as u32;

fn v4(addr: &str) -> SocketAddr {
    addr.parse().unwrap()
}

/// Frames of every shape the observers must let through untouched.
fn frame_zoo() -> Vec<(&'static str, Vec<u8>)> {
    let seg = TcpSegment::new(v4("10.200.5.11:41000"), v4("10.200.5.12:49152"))
        .payload(b"QEVM\0\0\0\x03");
    let seg6 = TcpSegment::new(
        "[fd00::1]:41000".parse().unwrap(),
        "[fd00::2]:49152".parse().unwrap(),
    )
    .payload(&[7; 100]);
    let mut truncated_tcp = seg.frame();
    truncated_tcp.truncate(14 + 20 + 8);
    let mut bad_ihl = seg.frame();
    bad_ihl[14] = 0x4f; // IHL of 60 bytes in a frame that has 20
    let garbage: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let mut hop_frag6 = seg6.clone();
    hop_frag6.hop_by_hop = true;
    hop_frag6.fragment = true;
    let mut frag4 = seg.clone();
    frag4.fragment = true;
    vec![
        ("ipv4 tcp", seg.frame()),
        ("ipv6 tcp", seg6.frame()),
        ("802.1Q ipv4", seg.clone().vlan(100).frame()),
        ("QinQ ipv4", seg.clone().vlan(100).vlan(200).frame()),
        ("ipv6 hop-by-hop + fragment", hop_frag6.frame()),
        ("ipv4 fragment", frag4.frame()),
        ("arp", frames::arp_frame()),
        (
            "ethernet header only, non-IP",
            frames::arp_frame()[..14].to_vec(),
        ),
        ("truncated tcp header", truncated_tcp),
        ("bad ipv4 header length", bad_ihl),
        ("garbage", garbage),
    ]
}

#[test]
fn every_frame_passes_through_and_is_counted() {
    if !privileged("every_frame_passes_through_and_is_counted") {
        return;
    }
    let mut dataplane = Dataplane::load().expect("load");
    dataplane
        .load_classifier()
        .expect("verifier accepts the classifier");
    let program = dataplane.program_mut("ingress_00");
    program.load().expect("verifier accepts the program");
    let mut expected = HookCounters::default();
    for (shape, frame) in frame_zoo() {
        let mut out = vec![0u8; frame.len() + 64];
        let result = program
            .test_run(TestRunOptions {
                data_in: Some(&frame),
                data_out: Some(&mut out),
                ..TestRunOptions::new()
            })
            .unwrap_or_else(|e| panic!("{shape}: test_run failed: {e}"));
        assert_eq!(
            result.return_value, TC_ACT_UNSPEC,
            "{shape}: not pass-through"
        );
        assert_eq!(
            &out[..result.data_size_out as usize],
            &frame[..],
            "{shape}: frame changed"
        );
        expected.packets += 1;
        expected.bytes += frame.len() as u64;
    }
    let [ingress, egress] = dataplane.hook_counters(0).unwrap();
    assert_eq!(ingress, expected);
    assert_eq!(egress, HookCounters::default());
}

#[test]
fn the_kernel_refuses_to_run_frames_too_short_for_their_headers() {
    if !privileged("the_kernel_refuses_to_run_frames_shorter_than_ethernet") {
        return;
    }
    let mut dataplane = Dataplane::load().expect("load");
    dataplane.load_classifier().expect("load classifier");
    let program = dataplane.program_mut("ingress_01");
    program.load().expect("load program");
    // The kernel wants a whole Ethernet header, and a whole IP header when
    // the EtherType says IP, before it runs the program at all.
    let ipv4 = TcpSegment::new(v4("10.0.0.1:1"), v4("10.0.0.2:2")).frame();
    for frame in [&[][..], &[0u8; 13][..], &ipv4[..14], &ipv4[..14 + 19]] {
        let error = program
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .expect_err("BPF_PROG_TEST_RUN rejects frames without an Ethernet header");
        let errno = std::iter::successors(Some(&error as &dyn std::error::Error), |e| e.source())
            .find_map(|e| e.downcast_ref::<std::io::Error>()?.raw_os_error());
        assert_eq!(
            errno,
            Some(libc::EINVAL),
            "{} bytes: {error:?}",
            frame.len()
        );
    }
    assert_eq!(
        dataplane.hook_counters(1).unwrap(),
        [HookCounters::default(); 2]
    );
}

/// Sends `len` bytes over TCP from `va` to `vb` and waits until all arrived.
fn tcp_transfer(pair: &VethPair, len: usize) {
    let listener = pair
        .b
        .netns()
        .run(|| TcpListener::bind("10.99.0.2:5001"))
        .unwrap()
        .expect("bind in namespace b");
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().expect("accept");
        let mut received = Vec::new();
        conn.read_to_end(&mut received).expect("read");
        received.len()
    });
    let mut client = pair
        .a
        .netns()
        .run(|| TcpStream::connect("10.99.0.2:5001"))
        .unwrap()
        .expect("connect from namespace a");
    client.write_all(&vec![0x5a; len]).expect("write");
    drop(client);
    assert_eq!(server.join().unwrap(), len);
}

#[test]
fn counts_match_the_kernel_on_a_veth_in_another_namespace() {
    if !privileged("counts_match_the_kernel_on_a_veth_in_another_namespace") {
        return;
    }
    let pair = VethPair::new();
    // Resolve the neighbour first so ARP stays out of the window measured.
    tcp_transfer(&pair, 1);
    let mut dataplane = Dataplane::load().expect("load");
    let spec: AttachSpec = format!("migration:va@{}", pair.a.name).parse().unwrap();
    dataplane.attach_all(&[spec]).expect("attach");
    let attachment = &dataplane.attachments()[0];
    assert_eq!(attachment.spec.role, Role::Migration);

    let before = pair.a.link_stats("va");
    tcp_transfer(&pair, 3_000_000);
    let after = pair.a.link_stats("va");
    let [rx, tx] = dataplane.hook_counters(attachment.slot).unwrap();

    assert!(
        tx.bytes > 3_000_000,
        "the payload went out through va: {tx:?}"
    );
    assert_eq!(
        (rx.packets, rx.bytes, tx.packets, tx.bytes),
        (
            after.0 - before.0,
            after.1 - before.1,
            after.2 - before.2,
            after.3 - before.3
        ),
        "observer counts (left) against the kernel's (right)"
    );
}

#[test]
fn detaching_leaves_no_program_on_the_interface() {
    if !privileged("detaching_leaves_no_program_on_the_interface") {
        return;
    }
    let pair = VethPair::new();
    let spec: AttachSpec = format!("va@{}", pair.a.name).parse().unwrap();
    // Program names as the kernel keeps them, per direction, via tcx.
    let programs = || -> Vec<String> {
        let query = || {
            [TcAttachType::Ingress, TcAttachType::Egress]
                .into_iter()
                .flat_map(|direction| {
                    SchedClassifier::query_tcx("va", direction)
                        .expect("query tcx")
                        .1
                })
                .map(|info| info.name_as_str().unwrap_or("?").to_string())
                .collect()
        };
        pair.a.netns().run(query).unwrap()
    };
    {
        let mut dataplane = Dataplane::load().expect("load");
        dataplane
            .attach_all(std::slice::from_ref(&spec))
            .expect("attach");
        assert_eq!(programs(), ["ingress_00", "egress_00"]);
    }
    assert_eq!(
        programs(),
        Vec::<String>::new(),
        "dropping the Dataplane detaches"
    );
}

#[test]
fn bad_attachments_are_clear_errors_and_leave_nothing_attached() {
    if !privileged("bad_attachments_are_clear_errors_and_leave_nothing_attached") {
        return;
    }
    let pair = VethPair::new();
    let mut dataplane = Dataplane::load().expect("load");
    let good: AttachSpec = format!("va@{}", pair.a.name).parse().unwrap();
    let missing: AttachSpec = format!("nosuch0@{}", pair.a.name).parse().unwrap();
    let error = dataplane.attach_all(&[good.clone(), missing]).unwrap_err();
    assert!(
        matches!(error, DataplaneError::NoSuchInterface { .. }),
        "{error}"
    );
    assert_eq!(
        error.to_string(),
        format!("no interface nosuch0 in network namespace {}", pair.a.name)
    );
    assert!(dataplane.attachments().is_empty());

    let no_ns: AttachSpec = "va@mvt-does-not-exist".parse().unwrap();
    let error = dataplane.attach_all(&[no_ns]).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("cannot enter network namespace mvt-does-not-exist"),
        "{error}"
    );

    dataplane.attach_all(std::slice::from_ref(&good)).unwrap();
    let error = dataplane.attach(good).unwrap_err();
    assert!(matches!(error, DataplaneError::Duplicate { .. }), "{error}");
}

mod classification {
    //! Every classification rule and header shape through BPF_PROG_TEST_RUN,
    //! read back from the flow tables and the event ring buffer.

    use super::*;
    use pnet_packet::tcp::TcpFlags;
    use verifier::dataplane::to_addr;
    use verifier_ebpf::{Channel, EventKind, FlowEvent, FlowKey, FlowStats, Reason};

    fn loaded() -> Dataplane {
        let mut dataplane = Dataplane::load().expect("load");
        dataplane.load_classifier().expect("load classifier");
        for name in ["ingress_00", "egress_00"] {
            dataplane.program_mut(name).load().expect("load program");
        }
        dataplane
    }

    fn run(dataplane: &mut Dataplane, program: &str, frame: &[u8]) {
        let result = dataplane
            .program_mut(program)
            .test_run(TestRunOptions {
                data_in: Some(frame),
                ..TestRunOptions::new()
            })
            .expect("test_run");
        assert_eq!(result.return_value, TC_ACT_UNSPEC);
    }

    /// The entry of the flow `src` -> `dst` at slot 0 in `direction`.
    fn stats(dataplane: &Dataplane, src: &str, dst: &str, direction: u8) -> Option<FlowStats> {
        let (src, dst) = (v4_or_6(src), v4_or_6(dst));
        let (s, family) = to_addr(src.ip());
        let (d, _) = to_addr(dst.ip());
        let key = FlowKey {
            src: s,
            dst: d,
            sport: src.port(),
            dport: dst.port(),
            family,
            slot: 0,
            direction,
            _pad: 0,
        };
        dataplane
            .flows()
            .unwrap()
            .into_iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| s)
    }

    fn v4_or_6(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    const INGRESS: u8 = 0;
    const EGRESS: u8 = 1;

    #[test]
    fn published_endpoints_classify_both_directions() {
        if !privileged("published_endpoints_classify_both_directions") {
            return;
        }
        let mut dp = loaded();
        dp.add_endpoint(&"10.200.5.12:49152".parse().unwrap())
            .unwrap();
        dp.add_endpoint(&"10.200.5.12:41000=control".parse().unwrap())
            .unwrap();
        let out =
            TcpSegment::new(v4("10.200.5.11:50000"), v4("10.200.5.12:49152")).payload(&[1; 100]);
        let back = TcpSegment::new(v4("10.200.5.12:49152"), v4("10.200.5.11:50000"));
        let control =
            TcpSegment::new(v4("10.200.5.11:50001"), v4("10.200.5.12:41000")).payload(&[1; 10]);
        let unrelated =
            TcpSegment::new(v4("10.200.5.11:50002"), v4("10.200.5.12:8080")).payload(&[1; 10]);
        for frame in [&out, &back, &control, &unrelated] {
            run(&mut dp, "ingress_00", &frame.frame());
        }
        let s = stats(&dp, "10.200.5.11:50000", "10.200.5.12:49152", INGRESS)
            .expect("forward classified");
        assert_eq!(
            (s.channel, s.reason),
            (Channel::Memory as u8, Reason::Endpoint as u8)
        );
        assert_eq!((s.packets, s.unique_payload_bytes), (1, 100));
        let s = stats(&dp, "10.200.5.12:49152", "10.200.5.11:50000", INGRESS)
            .expect("reverse classified");
        assert_eq!(s.channel, Channel::Memory as u8);
        let s = stats(&dp, "10.200.5.11:50001", "10.200.5.12:41000", INGRESS)
            .expect("control classified");
        assert_eq!(s.channel, Channel::Control as u8);
        assert!(
            stats(&dp, "10.200.5.11:50002", "10.200.5.12:8080", INGRESS).is_none(),
            "unrelated port"
        );
        assert_eq!(dp.flows().unwrap().len(), 3);
    }

    #[test]
    fn cidrs_classify_in_place_and_beyond_in_the_trie() {
        if !privileged("cidrs_classify_in_place_and_beyond_in_the_trie") {
            return;
        }
        let mut dp = loaded();
        // Eight fast entries, then two that land in the LPM trie.
        for i in 0..8 {
            dp.add_cidr(format!("10.{i}.0.0/16").parse().unwrap())
                .unwrap();
        }
        dp.add_cidr("fd00:200:5::/64".parse().unwrap()).unwrap();
        dp.add_cidr("192.0.2.7".parse().unwrap()).unwrap();
        let cases = [
            ("10.3.1.1:1000", "10.3.1.2:2000", true),
            ("10.9.1.1:1000", "10.9.1.2:2000", false),
            ("[fd00:200:5::11]:1000", "[fd00:200:5::12]:2000", true),
            ("[fd00:200:6::11]:1000", "[fd00:200:6::12]:2000", false),
            ("198.51.100.1:1000", "192.0.2.7:2000", true),
            ("198.51.100.1:1000", "192.0.2.8:2000", false),
        ];
        for (src, dst, _) in cases {
            run(
                &mut dp,
                "ingress_00",
                &TcpSegment::new(v4_or_6(src), v4_or_6(dst)).frame(),
            );
        }
        for (src, dst, classified) in cases {
            let s = stats(&dp, src, dst, INGRESS);
            assert_eq!(s.is_some(), classified, "{src} -> {dst}");
            if let Some(s) = s {
                assert_eq!(
                    (s.reason, s.channel),
                    (Reason::Cidr as u8, Channel::Unknown as u8)
                );
            }
        }
    }

    #[test]
    fn cleartext_streams_are_recognised_by_their_magic() {
        if !privileged("cleartext_streams_are_recognised_by_their_magic") {
            return;
        }
        let mut dp = loaded();
        let mut events = dp.take_events().unwrap();
        let main = TcpSegment::new(v4("10.9.9.1:40000"), v4("10.9.9.2:5555"));
        let multifd = TcpSegment::new(v4("10.9.9.1:40001"), v4("10.9.9.2:5555"));
        run(
            &mut dp,
            "ingress_00",
            &main.clone().payload(b"QEVM\0\0\0\x03rest").frame(),
        );
        run(
            &mut dp,
            "ingress_00",
            &multifd
                .clone()
                .payload(&[0x11, 0x22, 0x33, 0x44, 0, 0, 0, 1, 9, 9])
                .frame(),
        );
        // Later segments carry no magic: the learned endpoint finds them.
        run(
            &mut dp,
            "ingress_00",
            &main.clone().seq(1012).payload(&[7; 500]).frame(),
        );
        // A wrong version is not a stream start.
        let other = TcpSegment::new(v4("10.9.9.1:40002"), v4("10.9.9.3:6666"));
        run(
            &mut dp,
            "ingress_00",
            &other.payload(b"QEVM\0\0\0\x02").frame(),
        );
        let s = stats(&dp, "10.9.9.1:40000", "10.9.9.2:5555", INGRESS).unwrap();
        assert_eq!(
            (s.reason, s.channel),
            (Reason::Signature as u8, Channel::Memory as u8)
        );
        assert_eq!((s.packets, s.unique_payload_bytes), (2, 512));
        assert!(stats(&dp, "10.9.9.1:40001", "10.9.9.2:5555", INGRESS).is_some());
        assert!(stats(&dp, "10.9.9.1:40002", "10.9.9.3:6666", INGRESS).is_none());
        let mut kinds = Vec::new();
        while let Some(item) = events.next() {
            // SAFETY: the programs write FlowEvents.
            let event = unsafe { (item.as_ptr() as *const FlowEvent).read_unaligned() };
            kinds.push((
                EventKind::try_from(event.kind),
                Reason::try_from(event.reason),
                event.key.sport,
            ));
        }
        assert_eq!(
            kinds,
            [
                (Ok(EventKind::NewFlow), Ok(Reason::Signature), 40000),
                (Ok(EventKind::NewFlow), Ok(Reason::Signature), 40001)
            ]
        );
    }

    #[test]
    fn vlan_tags_and_extension_headers() {
        if !privileged("vlan_tags_and_extension_headers") {
            return;
        }
        let mut dp = loaded();
        dp.add_cidr("10.200.5.0/24".parse().unwrap()).unwrap();
        dp.add_cidr("fd00:200:5::/64".parse().unwrap()).unwrap();
        let seg = |sport: u16| {
            TcpSegment::new(v4(&format!("10.200.5.11:{sport}")), v4("10.200.5.12:49152"))
        };
        run(&mut dp, "ingress_00", &seg(1).vlan(100).frame());
        run(&mut dp, "ingress_00", &seg(2).vlan(100).vlan(200).frame());
        let mut first_fragment = seg(3);
        first_fragment.fragment = true;
        run(&mut dp, "ingress_00", &first_fragment.frame());
        let mut v6 = TcpSegment::new(
            "[fd00:200:5::11]:4".parse().unwrap(),
            "[fd00:200:5::12]:49152".parse().unwrap(),
        )
        .payload(&[3; 40]);
        v6.hop_by_hop = true;
        v6.fragment = true;
        run(&mut dp, "ingress_00", &v6.frame());
        assert_eq!(
            stats(&dp, "10.200.5.11:1", "10.200.5.12:49152", INGRESS)
                .unwrap()
                .vlan,
            100
        );
        // QinQ: the outermost tag is the one the wire carries between nodes.
        assert_eq!(
            stats(&dp, "10.200.5.11:2", "10.200.5.12:49152", INGRESS)
                .unwrap()
                .vlan,
            200
        );
        assert!(stats(&dp, "10.200.5.11:3", "10.200.5.12:49152", INGRESS).is_some());
        let s = stats(&dp, "[fd00:200:5::11]:4", "[fd00:200:5::12]:49152", INGRESS).unwrap();
        assert_eq!(s.unique_payload_bytes, 40);
        // A fragment after the first has no TCP header: counted, not parsed.
        let mut later = seg(5).frame();
        later[14 + 6] = 0x00;
        later[14 + 7] = 0x10; // fragment offset 16 x 8 bytes
        run(&mut dp, "ingress_00", &later);
        assert_eq!(dp.stats().unwrap().fragments, 1);
        assert!(stats(&dp, "10.200.5.11:5", "10.200.5.12:49152", INGRESS).is_none());
    }

    /// Segments `(seq, payload length)` of one connection to a published
    /// endpoint through `program`, and what its flow entry holds after.
    fn one_flow(program: &str, direction: u8, segments: &[(u32, usize)]) -> FlowStats {
        let mut dp = loaded();
        dp.add_endpoint(&"10.200.5.12:49152".parse().unwrap())
            .unwrap();
        let seg = TcpSegment::new(v4("10.200.5.11:50000"), v4("10.200.5.12:49152"));
        for &(seq, len) in segments {
            run(
                &mut dp,
                program,
                &seg.clone().seq(seq).payload(&vec![0; len]).frame(),
            );
        }
        stats(&dp, "10.200.5.11:50000", "10.200.5.12:49152", direction).unwrap()
    }

    #[test]
    fn payload_counts_once_and_retransmissions_are_counted_apart() {
        if !privileged("payload_counts_once_and_retransmissions_are_counted_apart") {
            return;
        }
        let s = one_flow(
            "egress_00",
            EGRESS,
            &[
                (1000, 100),
                (1100, 100),
                (1000, 100),
                (1150, 100),
                (1300, 0),
            ],
        );
        // 1000..1250 moved forward; 100 bytes resent, 50 of the last overlap.
        assert_eq!(s.unique_payload_bytes, 250);
        assert_eq!(s.retransmitted_bytes, 150);
        assert_eq!(s.retransmits, 1);
        assert_eq!(s.packets, 5);
    }

    /// The flow table fills, the overflow is counted, and the entries of
    /// forgotten (judged) migrations serve new flows. A CPU's flow cache
    /// still pointing at a freed or reused entry never counts a segment
    /// into another flow.
    #[test]
    fn forgotten_flows_free_their_entries_for_new_ones() {
        if !privileged("forgotten_flows_free_their_entries_for_new_ones") {
            return;
        }
        let mut dp = loaded();
        dp.add_cidr("10.0.0.0/8".parse().unwrap()).unwrap();
        let judged = v4("10.9.0.2:49152");
        let segment = |i: u32, server: SocketAddr| {
            let client = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 40000));
            TcpSegment::new(client, server).payload(&[1; 10]).frame()
        };
        // Ten flows of the migration to be judged, the rest to another.
        let capacity = verifier_ebpf::MAX_FLOWS;
        for i in 0..capacity {
            let server = if i < 10 { judged } else { v4("10.9.0.1:49152") };
            run(&mut dp, "ingress_00", &segment(i, server));
        }
        assert_eq!(dp.flows().unwrap().len(), capacity as usize);
        assert_eq!(dp.stats().unwrap().flow_table_full, 0);
        run(&mut dp, "ingress_00", &segment(0, v4("10.9.0.4:49152")));
        assert_eq!(dp.stats().unwrap().flow_table_full, 1, "overflow counted");

        dp.forget(&[judged].into_iter().collect()).unwrap();
        assert_eq!(dp.flows().unwrap().len(), capacity as usize - 10);
        // Flow 0 again: its CPU's cache points at a cleared entry, so it is
        // a new flow with fresh counters, not the old entry revived.
        run(&mut dp, "ingress_00", &segment(0, judged));
        let flow0 = stats(&dp, "10.1.0.0:40000", "10.9.0.2:49152", INGRESS).expect("flow 0 kept");
        assert_eq!(flow0.packets, 1);
        // Nine more freed entries, then full again.
        let new_server = v4("10.9.0.3:49152");
        for i in 0..10 {
            run(&mut dp, "ingress_00", &segment(i, new_server));
        }
        assert_eq!(dp.flows().unwrap().len(), capacity as usize);
        assert_eq!(
            dp.stats().unwrap().flow_table_full,
            2,
            "only the tenth new flow lost"
        );
        // The reused entries count for their new flows only.
        run(&mut dp, "ingress_00", &segment(0, judged));
        let flow0 = stats(&dp, "10.1.0.0:40000", "10.9.0.2:49152", INGRESS).unwrap();
        assert_eq!(flow0.packets, 2);
        for i in 0..9 {
            let client = format!("10.1.0.{i}:40000");
            let s = stats(&dp, &client, "10.9.0.3:49152", INGRESS).expect("new flow kept");
            assert_eq!((s.packets, s.unique_payload_bytes), (1, 10), "flow {i}");
        }
    }

    #[test]
    fn late_segments_fill_the_gap_a_reordering_left() {
        if !privileged("late_segments_fill_the_gap_a_reordering_left") {
            return;
        }
        // 1300.. arrives before 1100..1300, whose two halves come late and
        // in reverse order; then 1100.. is sent again, a real retransmission.
        let s = one_flow(
            "ingress_00",
            INGRESS,
            &[
                (1000, 100),
                (1300, 100),
                (1200, 100),
                (1100, 100),
                (1100, 100),
                (1400, 100),
            ],
        );
        assert_eq!(s.unique_payload_bytes, 500);
        assert_eq!(s.retransmitted_bytes, 100);
        assert_eq!(s.retransmits, 1);
    }

    #[test]
    fn arp_is_counted_per_address_asked_for_and_answering() {
        if !privileged("arp_is_counted_per_address_asked_for_and_answering") {
            return;
        }
        use std::net::Ipv4Addr;
        let mut dp = loaded();
        dp.add_cidr("10.200.5.0/24".parse().unwrap()).unwrap();
        let (a, b) = (Ipv4Addr::new(10, 200, 5, 11), Ipv4Addr::new(10, 200, 5, 12));
        let tagged = [(0x8100, 100)];
        // Two unanswered requests for b (one tagged in-band), a probe for
        // b (checks the address is free: no answer due), b's reply seen
        // at ingress, and a gratuitous announcement from a.
        run(&mut dp, "egress_00", &frames::arp(1, a, b, &[]));
        run(&mut dp, "egress_00", &frames::arp(1, a, b, &tagged));
        run(
            &mut dp,
            "egress_00",
            &frames::arp(1, Ipv4Addr::UNSPECIFIED, b, &[]),
        );
        run(&mut dp, "ingress_00", &frames::arp(2, b, a, &[]));
        run(&mut dp, "egress_00", &frames::arp(1, a, a, &[]));
        // Outside the migration network: not kept.
        run(&mut dp, "egress_00", &frames::arp_frame());
        let neighbors = dp.neighbors().unwrap();
        let find = |addr: Ipv4Addr, direction: u8| {
            neighbors
                .iter()
                .find(|(k, _)| {
                    k.addr == u32::from_ne_bytes(addr.octets()) && k.direction == direction
                })
                .map(|(_, s)| *s)
                .unwrap_or_else(|| panic!("no entry for {addr} {direction}: {neighbors:?}"))
        };
        let asked = find(b, EGRESS);
        assert_eq!((asked.requests, asked.replies, asked.vlan), (2, 0, 100));
        assert!(asked.first_request_ns > 0 && asked.last_request_ns >= asked.first_request_ns);
        let answered = find(b, INGRESS);
        assert_eq!((answered.requests, answered.replies), (0, 1));
        let announced = find(a, EGRESS);
        assert_eq!((announced.requests, announced.replies), (0, 1));
        assert_eq!(neighbors.len(), 3, "{neighbors:?}");
        // ARP is still no IP: the drop statistics say so.
        assert_eq!(dp.stats().unwrap().not_ip, 6);
    }

    #[test]
    fn the_mss_of_a_syn_is_kept() {
        if !privileged("the_mss_of_a_syn_is_kept") {
            return;
        }
        let mut dp = loaded();
        dp.add_endpoint(&"10.200.5.12:49152".parse().unwrap())
            .unwrap();
        let syn = TcpSegment::new(v4("10.200.5.11:50000"), v4("10.200.5.12:49152"))
            .flags(TcpFlags::SYN)
            .mss(8960)
            .timestamps(1, 0);
        run(&mut dp, "egress_00", &syn.frame());
        // A later segment's bytes in the option's place change nothing.
        let data = TcpSegment::new(v4("10.200.5.11:50000"), v4("10.200.5.12:49152"))
            .seq(1001)
            .payload(&[2, 4, 0, 1]);
        run(&mut dp, "egress_00", &data.frame());
        let s = stats(&dp, "10.200.5.11:50000", "10.200.5.12:49152", EGRESS).unwrap();
        assert_eq!(s.mss, 8960);
    }

    #[test]
    fn a_timestamp_echo_gives_one_rtt_sample() {
        if !privileged("a_timestamp_echo_gives_one_rtt_sample") {
            return;
        }
        let mut dp = loaded();
        dp.add_endpoint(&"10.200.5.12:49152".parse().unwrap())
            .unwrap();
        let mut events = dp.take_events().unwrap();
        let data =
            TcpSegment::new(v4("10.200.5.11:50000"), v4("10.200.5.12:49152")).payload(&[0; 100]);
        let ack =
            TcpSegment::new(v4("10.200.5.12:49152"), v4("10.200.5.11:50000")).flags(TcpFlags::ACK);
        run(
            &mut dp,
            "egress_00",
            &data.clone().timestamps(777, 1).frame(),
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
        run(
            &mut dp,
            "ingress_00",
            &ack.clone().timestamps(9, 777).frame(),
        );
        // The same echo again is no new sample.
        run(&mut dp, "ingress_00", &ack.timestamps(9, 777).frame());
        let mut rtts = Vec::new();
        while let Some(item) = events.next() {
            // SAFETY: the programs write FlowEvents.
            let event = unsafe { (item.as_ptr() as *const FlowEvent).read_unaligned() };
            if event.kind == EventKind::Rtt as u8 {
                rtts.push(event.value_ns);
            }
        }
        assert_eq!(rtts.len(), 1, "{rtts:?}");
        assert!((20_000_000..1_000_000_000).contains(&rtts[0]), "{rtts:?}");
    }
}

#[test]
fn real_tcp_payload_is_counted_exactly_per_flow() {
    if !privileged("real_tcp_payload_is_counted_exactly_per_flow") {
        return;
    }
    let pair = VethPair::new();
    let mut dataplane = Dataplane::load().expect("load");
    dataplane
        .add_endpoint(&"10.99.0.2:5001".parse().unwrap())
        .unwrap();
    let specs: Vec<AttachSpec> = [
        format!("migration:va@{}", pair.a.name),
        format!("migration:vb@{}", pair.b.name),
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    dataplane.attach_all(&specs).expect("attach");
    const SENT: usize = 5_000_000;
    tcp_transfer(&pair, SENT);
    let flows = dataplane.flows().unwrap();
    let dataplane_stats = dataplane.stats().unwrap();
    let to_server: Vec<_> = flows.iter().filter(|(k, _)| k.dport == 5001).collect();
    // va egress and vb ingress: the same connection seen twice.
    assert_eq!(to_server.len(), 2, "{flows:?}");
    for (key, stats) in to_server {
        assert_eq!(
            stats.unique_payload_bytes, SENT as u64,
            "slot {} direction {}: {stats:?}, {dataplane_stats:?}",
            key.slot, key.direction
        );
        // No assertion on retransmissions: a busy veth backlog can drop and
        // the sender then resends for real; the payload stays exact.
    }
    let from_server: u64 = flows
        .iter()
        .filter(|(k, _)| k.sport == 5001)
        .map(|(_, s)| s.unique_payload_bytes)
        .sum();
    assert_eq!(from_server, 0, "the server sent nothing");
}
