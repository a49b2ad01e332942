//! The clsact fallback (kernels before 6.6: RHEL 9, RHCOS), forced on this
//! kernel: the observers count as with tcx, and what migverify added goes
//! when it detaches, removed over rtnetlink (the `FROM scratch` image has
//! no `tc`), while a clsact qdisc someone else made stays.
//!
//! Privileged and serial: `flock /tmp/migverify-lab.lock cargo test -p
//! verifier --test clsact -- --test-threads=1`.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{TcpListener, TcpStream},
};

use verifier::dataplane::{AttachMode, AttachSpec, Dataplane, Hooks};

use support::{privileged, VethPair};

fn tcp_transfer(pair: &VethPair, len: usize) {
    let listener = pair
        .b
        .netns()
        .run(|| TcpListener::bind("10.99.0.2:5002"))
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
        .run(|| TcpStream::connect("10.99.0.2:5002"))
        .unwrap()
        .expect("connect from namespace a");
    client.write_all(&vec![0x5a; len]).expect("write");
    drop(client);
    assert_eq!(server.join().unwrap(), len);
}

/// `tc qdisc show dev va`. (Debian's tc 6.1 lists no filter of this
/// kernel's cls_bpf, so the filters are judged by the counts instead.)
fn qdiscs(pair: &VethPair) -> String {
    pair.a.exec(&["tc", "qdisc", "show", "dev", "va"])
}

#[test]
fn forced_clsact_counts_as_the_kernel_and_removes_its_qdisc() {
    if !privileged("forced_clsact_counts_as_the_kernel_and_removes_its_qdisc") {
        return;
    }
    let pair = VethPair::new();
    tcp_transfer(&pair, 1);
    let spec: AttachSpec = format!("migration:va@{}", pair.a.name).parse().unwrap();
    {
        let mut dataplane = Dataplane::load().expect("load");
        dataplane.set_hooks(Hooks::Clsact);
        dataplane.attach_all(&[spec]).expect("attach");
        let attachment = &dataplane.attachments()[0];
        assert_eq!(attachment.mode, AttachMode::Clsact { added_qdisc: true });
        let qdiscs = qdiscs(&pair);
        assert!(qdiscs.contains("qdisc clsact"), "{qdiscs}");
        let before = pair.a.link_stats("va");
        tcp_transfer(&pair, 2_000_000);
        let after = pair.a.link_stats("va");
        let [rx, tx] = dataplane.hook_counters(attachment.slot).unwrap();
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
    let qdiscs = qdiscs(&pair);
    assert!(
        !qdiscs.contains("clsact"),
        "dropping the Dataplane removes the qdisc it added (and its filters with it): {qdiscs}"
    );
}

#[test]
fn a_clsact_qdisc_made_by_someone_else_stays() {
    if !privileged("a_clsact_qdisc_made_by_someone_else_stays") {
        return;
    }
    let pair = VethPair::new();
    pair.a.exec(&["tc", "qdisc", "add", "dev", "va", "clsact"]);
    let spec: AttachSpec = format!("va@{}", pair.a.name).parse().unwrap();
    {
        let mut dataplane = Dataplane::load().expect("load");
        dataplane.set_hooks(Hooks::Clsact);
        dataplane.attach_all(&[spec]).expect("attach");
        assert_eq!(
            dataplane.attachments()[0].mode,
            AttachMode::Clsact { added_qdisc: false }
        );
    }
    let qdiscs = qdiscs(&pair);
    assert!(
        qdiscs.contains("qdisc clsact"),
        "not ours to remove: {qdiscs}"
    );
}
