//! The pipeline actions `clone`, `output(port=…,max_len=…)`,
//! `check_pkt_larger`, `exit`, the NXM stack and output to a 32-bit
//! register, with real traffic through the daemon on the embedded
//! datapath: hosts A, B and C in network namespaces this test creates.
//! A's UDP datagrams reach B only when they are at most 300 bytes long
//! (the datapath's `check_pkt_len` decides per packet, under one
//! megaflow), and C sees every one of them cut to 60 bytes by a truncating
//! output inside a clone. `multipath` spreads UDP flows over B and C as
//! OVS's hash picks (what `trace`, identical to OVS 3.1 in
//! `tests/ovs_cases/40-*`, says for each), and a `bundle` follows its
//! members' ports as their links go down and up and as they leave the
//! bridge.

mod common;

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

const RULES: &str = "\
table=0,priority=100,in_port=1,udp,actions=clone(output(port=3,max_len=60)),check_pkt_larger(300)->NXM_NX_REG0[0],resubmit(,1)
table=0,priority=90,in_port=1,actions=push:NXM_NX_REG1[],load:2->NXM_NX_REG1[],output:NXM_NX_REG1[],pop:NXM_NX_REG1[]
table=0,priority=90,in_port=2,actions=output:1
table=1,priority=100,reg0=0x1/0x1,actions=exit
table=1,priority=90,actions=output:2
";

const UDP_PORT: u16 = 7777;

/// Lengths of the frames carrying UDP to `UDP_PORT` that arrive on this
/// namespace's `eth0` within `wait` (call inside it with [`Host::spawn`]): an
/// AF_PACKET socket sees them before IP would drop a truncated one.
fn capture_udp_frames(wait: Duration) -> std::io::Result<Vec<usize>> {
    let sock = upcalld::raw_socket::packet_socket("eth0", libc::ETH_P_ALL as u16)?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while let Some(left) = wait.checked_sub(start.elapsed()) {
        let Some(n) = upcalld::raw_socket::recv_within(&sock, &mut buf, left)? else {
            continue;
        };
        let f = &buf[..n];
        let udp_to_us = f.len() >= 38
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[36..38] == UDP_PORT.to_be_bytes();
        if udp_to_us {
            seen.push(f.len());
        }
    }
    Ok(seen)
}

#[test]
fn check_pkt_larger_clone_and_truncation_on_real_traffic() {
    require_root();
    let (a, b) = two_hosts("pa");
    let c = Host::create(
        "uct-pa-c",
        "ucpac",
        Ipv4Addr::new(10, 77, 0, 3),
        [2, 0, 0, 0x77, 0, 3],
    )
    .expect("creating host C");
    let d = Daemon::start("pa", &[(&a.port, 1), (&b.port, 2), (&c.port, 3)], RULES, "");

    let receiver = b
        .spawn(|| {
            let sock = UdpSocket::bind(("0.0.0.0", UDP_PORT)).unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(6) {
                if let Ok(n) = sock.recv(&mut buf) {
                    got.push(n);
                }
            }
            got
        })
        .unwrap();
    let capture = c
        .spawn(|| capture_udp_frames(Duration::from_secs(6)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let to = SocketAddr::from((b.addr, UDP_PORT));
    a.run(move || {
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        // The first datagram waits for ARP; space them out.
        for len in [100usize, 1000, 100, 1000, 250, 400] {
            sock.send_to(&vec![0x5a; len], to).unwrap();
            std::thread::sleep(Duration::from_millis(400));
        }
    })
    .unwrap();
    let got = receiver.join().unwrap().unwrap();
    let frames = capture.join().unwrap().unwrap().unwrap();

    assert_eq!(
        got,
        [100, 100, 250],
        "B gets the datagrams of at most 300 bytes of frame; log:\n{}",
        d.log()
    );
    assert!(
        frames.len() >= 5 && frames.iter().all(|&n| n == 60),
        "C sees each datagram cut to 60 bytes: {frames:?}"
    );
    let flows: Vec<String> = d
        .ctl(Ctl::DumpDpFlows, "")
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        flows.iter().any(|f| f.contains("proto=17")
            && f.ends_with("actions:clone(trunc(60),3),check_pkt_len(size=300,gt(drop),le(2))")),
        "one megaflow decides per packet: {flows:#?}"
    );
}

/// Source ports of the UDP datagrams to `UDP_PORT` that arrive on this
/// namespace's `eth0` within `wait` (call inside it with [`Host::spawn`]).
fn capture_udp_sources(wait: Duration) -> std::io::Result<Vec<u16>> {
    let sock = upcalld::raw_socket::packet_socket("eth0", libc::ETH_P_ALL as u16)?;
    let mut seen = Vec::new();
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    while let Some(left) = wait.checked_sub(start.elapsed()) {
        let Some(n) = upcalld::raw_socket::recv_within(&sock, &mut buf, left)? else {
            continue;
        };
        let f = &buf[..n];
        if f.len() >= 38
            && f[12..14] == [0x08, 0x00]
            && f[23] == 17
            && f[36..38] == UDP_PORT.to_be_bytes()
        {
            seen.push(u16::from_be_bytes([f[34], f[35]]));
        }
    }
    Ok(seen)
}

/// Sends one datagram from each of `sources` on A to B's `UDP_PORT`, and
/// returns the source ports B's and C's `eth0` saw.
fn spread(a: &Host, b: &Host, c: &Host, sources: Vec<u16>) -> (Vec<u16>, Vec<u16>) {
    let wait = Duration::from_secs(4);
    let on_b = b.spawn(move || capture_udp_sources(wait)).unwrap();
    let on_c = c.spawn(move || capture_udp_sources(wait)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let to = SocketAddr::from((b.addr, UDP_PORT));
    a.run(move || {
        for p in sources {
            let sock = UdpSocket::bind(("0.0.0.0", p)).unwrap();
            sock.send_to(b"spread", to).unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .unwrap();
    let mut got_b = on_b.join().unwrap().unwrap().unwrap();
    // C's capture fails while its link is down: it then saw nothing.
    let mut got_c = on_c.join().unwrap().unwrap().unwrap_or_default();
    got_b.sort_unstable();
    got_c.sort_unstable();
    (got_b, got_c)
}

#[test]
fn multipath_and_bundle_choose_as_open_vswitch_on_real_traffic() {
    require_root();
    let (a, b) = two_hosts("mp");
    let c = Host::create(
        "uct-mp-c",
        "ucmpc",
        Ipv4Addr::new(10, 77, 0, 3),
        [2, 0, 0, 0x77, 0, 3],
    )
    .expect("creating host C");
    let rules = "\
table=0,priority=100,in_port=1,udp,actions=multipath(symmetric_l3l4+udp,0,hrw,2,0,NXM_NX_REG0[0..15]),resubmit(,1)
table=0,priority=90,in_port=1,actions=output:2
table=0,priority=90,in_port=2,actions=output:1
table=1,reg0=0,actions=output:2
table=1,reg0=1,actions=output:3
";
    let d = Daemon::start("mp", &[(&a.port, 1), (&b.port, 2), (&c.port, 3)], rules, "");
    // ARP for B first, so that every datagram leaves A at once.
    assert!(ping_ok(&a, b.addr, 5), "A reaches B");
    let sources: Vec<u16> = (41000..41040).collect();
    let (on_b, on_c) = spread(&a, &b, &c, sources.clone());

    // Where OVS's hash sends each flow: what the trace says.
    let tables =
        actors::tables::Tables::from_rules(messages::parse::rules::parse_rules(rules).unwrap());
    let cfg = upcalld::trace::dummy_bridge(None);
    let (mut want_b, mut want_c) = (Vec::new(), Vec::new());
    for p in &sources {
        let flow = format!(
            "in_port=1,udp,dl_src=02:00:00:77:00:01,dl_dst=02:00:00:77:00:02,\
             nw_src={},nw_dst={},nw_ttl=64,udp_src={p},udp_dst={UDP_PORT}",
            a.addr, b.addr
        );
        match upcalld::trace::trace(&tables, &flow, &cfg)
            .unwrap()
            .actions
            .as_str()
        {
            "2" => want_b.push(*p),
            "3" => want_c.push(*p),
            other => panic!("{flow}: {other}"),
        }
    }
    assert!(
        !want_b.is_empty() && !want_c.is_empty(),
        "the hash spreads: {want_b:?} {want_c:?}"
    );
    assert_eq!(
        (on_b, on_c),
        (want_b, want_c),
        "each flow where OVS's hash puts it; log:\n{}",
        d.log()
    );

    // active_backup: C's port first while the bridge has it, then B's.
    d.ctl(
        Ctl::AddFlow,
        "table=0,priority=200,in_port=1,udp,actions=bundle(eth_src,0,active_backup,ofport,members:3,2)",
    );
    let sources: Vec<u16> = (42000..42005).collect();
    let (on_b, on_c) = spread(&a, &b, &c, sources.clone());
    assert_eq!(
        (on_b, on_c),
        (vec![], sources),
        "C's port is the live first member"
    );
    // C's link down: its port is not live (a fast-failover bucket's watch,
    // OVS's `may_enable`), so B's is chosen; up again, C's.
    let link = |state: &str| ip(&["-n", &c.netns, "link", "set", "eth0", state]);
    let mut source = 43000u16;
    let mut lands_on = |want_c: bool| {
        for _ in 0..8 {
            source += 1;
            let (on_b, on_c) = spread(&a, &b, &c, vec![source]);
            if (if want_c { on_c } else { on_b }) == [source] {
                return true;
            }
        }
        false
    };
    link("down");
    assert!(
        lands_on(false),
        "C's link down: B's port; log:\n{}",
        d.log()
    );
    link("up");
    assert!(
        lands_on(true),
        "C's link up: C's port again; log:\n{}",
        d.log()
    );
    d.ctl(Ctl::DelPort, &c.port);
    let sources: Vec<u16> = (42010..42015).collect();
    let (on_b, _) = spread(&a, &b, &c, sources.clone());
    assert_eq!(on_b, sources, "with port 3 gone, B's is; log:\n{}", d.log());
}
