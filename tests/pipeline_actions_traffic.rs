//! The pipeline actions `clone`, `output(port=…,max_len=…)`,
//! `check_pkt_larger`, `exit`, the NXM stack and output to a 32-bit
//! register, with real traffic through the daemon on the embedded
//! datapath: hosts A, B and C in network namespaces this test creates.
//! A's UDP datagrams reach B only when they are at most 300 bytes long
//! (the datapath's `check_pkt_len` decides per packet, under one
//! megaflow), and C sees every one of them cut to 60 bytes by a truncating
//! output inside a clone.

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
