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
