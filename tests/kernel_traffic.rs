//! Real traffic through `upcalld run` on Linux's openvswitch module: hosts
//! in network namespaces this test creates, their veth peers ports of a
//! kernel datapath, the daemon translating OpenFlow rules into kernel
//! flows. The scenarios of the embedded datapath's traffic tests
//! (tests/conntrack_traffic.rs, tests/normal_traffic.rs, tests/learning.rs)
//! on the kernel: a stateful firewall with a 1 MiB TCP transfer and an
//! ICMP error passing as `+rel`, SNAT, DNAT to one of two backends (the
//! kernel's connection tracker, driven through `ct` and `recirc`), FTP
//! data connections passing as `+rel` through the kernel's FTP helper
//! (`ct(alg=ftp)`), UDP datagrams bigger than the MTU (reassembled by the
//! kernel for `ct`, fragmented again on output), NORMAL
//! with two access VLANs and a trunk, and OVS's advanced tutorial's
//! learning switch. Run inside the kernel VM (`.ci/kernel-vm.sh`, or
//! `cargo test`, whose tests/kernel_vm.rs runs that); each test skips
//! where the `ovs_datapath` family is absent, unless
//! `OVS_KERNEL_REQUIRED=1`.

mod common;
mod kernel_common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pattern, ping_ok, tcp_transfer};
use kernel_common::daemon::*;
use kernel_common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// The daemon child process (see `kernel_common::daemon`).
#[test]
#[ignore = "the daemon process of the kernel traffic tests, started by them"]
fn daemon_child() {
    daemon_child_main();
}

/// Traffic in an emulated VM is slow: generous timeouts.
const SLOW: Duration = Duration::from_secs(20);

/// Host `letter` of test `tag`, at `10.79.<subnet>.<last>` with MAC
/// `02:00:00:79:<subnet>:<last>`.
fn host(tag: &str, letter: char, subnet: u8, last: u8) -> Host {
    up_host(
        &format!("ukt-{tag}-{letter}"),
        &format!("uk{tag}{letter}"),
        Ipv4Addr::new(10, 79, subnet, last),
        [2, 0, 0, 0x79, subnet, last],
    )
}

/// The daemon on kernel datapath `dp` with `hosts` on ports 1, 2, …, each
/// port's extra config lines (NORMAL's VLANs) from `port_lines`.
fn daemon(tag: &str, dp: &str, hosts: &[&Host], port_lines: &[&str], rules: &str) -> Daemon {
    let ports: Vec<&str> = hosts.iter().map(|h| h.port.as_str()).collect();
    daemon_on_ports(tag, dp, &ports, port_lines, rules)
}

/// A static neighbor entry in `host`: `addr` is at `mac`.
fn neighbor(host: &Host, addr: Ipv4Addr, mac: [u8; 6]) {
    let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    run(
        "/sbin/ip",
        &[
            "-n",
            &host.netns,
            "neigh",
            "replace",
            &addr.to_string(),
            "lladdr",
            &mac.join(":"),
            "dev",
            "eth0",
        ],
    );
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The kernel's flows, as `ovs-dpctl dump-flows` prints them, for a
/// failure message.
fn kernel_flows(dp: &str) -> String {
    dpctl_flows(dp).join("\n")
}

/// A TCP listener in `host` on `port`: accepts one connection and returns
/// the peer's address and how many bytes it sent.
fn tcp_server(
    host: &Host,
    port: u16,
) -> std::thread::JoinHandle<std::io::Result<(SocketAddr, usize)>> {
    let addr = host.addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = host
        .spawn(move || {
            let l = TcpListener::bind((addr, port)).expect("bind");
            ready_tx.send(()).unwrap();
            let (mut s, peer) = l.accept().expect("accept");
            s.set_read_timeout(Some(SLOW)).unwrap();
            let mut got = Vec::new();
            s.read_to_end(&mut got).expect("read");
            (peer, got.len())
        })
        .unwrap();
    ready_rx.recv().unwrap();
    h
}

fn tcp_send(host: &Host, to: SocketAddr, bytes: usize) -> Result<(), String> {
    host.run(move || {
        let mut s = TcpStream::connect_timeout(&to, SLOW).map_err(|e| format!("connect: {e}"))?;
        s.write_all(&vec![7u8; bytes])
            .map_err(|e| format!("write: {e}"))
    })
    .unwrap()
}

const FIREWALL: &str = "\
table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=50,ct_state=-trk,ip,actions=ct(table=1)
table=0,priority=1,actions=drop
table=1,priority=50,ct_state=+trk+new,ip,in_port=1,actions=ct(commit),output:2
table=1,priority=50,ct_state=+trk+est,ip,in_port=1,actions=output:2
table=1,priority=50,ct_state=+trk+est,ip,in_port=2,actions=output:1
table=1,priority=50,ct_state=+trk+rel,ip,in_port=2,actions=output:1
table=1,priority=1,actions=drop
";

/// A stateful firewall: a may open connections to b, b only answer them.
#[test]
fn stateful_firewall_passes_replies_and_related_errors_only() {
    if !ovs_present() {
        return;
    }
    let (ha, hb) = (host("fw", 'a', 1, 1), host("fw", 'b', 1, 2));
    let dp = "ktfw";
    let d = daemon("ktfw", dp, &[&ha, &hb], &[], FIREWALL);
    let diag = || format!("{}\nkernel flows:\n{}", d.diagnosis(), kernel_flows(dp));

    assert!(ping_ok(&ha, hb.addr, 10), "a -> b ping\n{}", diag());
    assert!(!ping_ok(&hb, ha.addr, 2), "b -> a ping must be dropped");

    let len = 1 << 20;
    let got = tcp_transfer(&ha, &hb, 5001, len, SLOW)
        .unwrap_or_else(|e| panic!("a -> b TCP: {e}\n{}", diag()));
    assert!(got == pattern(len), "1 MiB through the firewall, intact");
    assert!(
        tcp_transfer(&hb, &ha, 5002, 10, Duration::from_secs(3)).is_err(),
        "b -> a TCP must be dropped"
    );

    // a's UDP to a closed port of b: b's "port unreachable" is an ICMP
    // error about a committed connection, so it passes as +rel and a's
    // connected socket sees the refusal.
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    let refused = ha
        .run(move || {
            let s = UdpSocket::bind((a_addr, 0)).unwrap();
            s.connect((b_addr, 7777)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            s.send(b"anyone?").unwrap();
            s.recv(&mut [0; 64]).map_err(|e| e.kind())
        })
        .unwrap();
    assert_eq!(
        refused,
        Err(std::io::ErrorKind::ConnectionRefused),
        "{}",
        diag()
    );

    // The kernel holds the first pass (ct, then recirculate) and the
    // resumed passes, the related one among them.
    let flows = dpctl_dump(dp);
    assert!(
        flows
            .iter()
            .any(|f| f.actions.starts_with("ct,recirc(0x") && f.flow.contains("ct_state(-trk)")),
        "no first pass:\n{}",
        diag()
    );
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains("+rel") && f.flow.contains("in_port(2)") && f.actions == "1"),
        "no +rel flow:\n{}",
        diag()
    );
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains("+new") && f.actions == "ct(commit),2"),
        "no committing flow:\n{}",
        diag()
    );
}

/// OVS's FTP firewall on the kernel: only a's FTP control connection may
/// start new, committed with the kernel's FTP helper (`nf_conntrack_ftp`);
/// the data connections it announces pass as `+new+rel`, the active one
/// from b, the passive one from a; any other new connection is dropped.
#[test]
fn ftp_data_passes_the_kernel_firewall_as_related() {
    if !ovs_present() {
        return;
    }
    let (ha, hb) = (host("ftp", 'a', 8, 1), host("ftp", 'b', 8, 2));
    let dp = "ktftp";
    let rules = "\
table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=50,ct_state=-trk,ip,actions=ct(table=1)
table=0,priority=1,actions=drop
table=1,priority=60,ct_state=+trk+new-rel,tcp,in_port=1,tp_dst=21,actions=ct(commit,alg=ftp),output:2
table=1,priority=50,ct_state=+trk+new+rel,tcp,in_port=1,actions=ct(commit),output:2
table=1,priority=50,ct_state=+trk+new+rel,tcp,in_port=2,actions=ct(commit),output:1
table=1,priority=40,ct_state=+trk+est,ip,in_port=1,actions=output:2
table=1,priority=40,ct_state=+trk+est,ip,in_port=2,actions=output:1
table=1,priority=1,actions=drop
";
    let d = daemon("ktftp", dp, &[&ha, &hb], &[], rules);
    let diag = || format!("{}\nkernel flows:\n{}", d.diagnosis(), kernel_flows(dp));

    let size = 300_000;
    let want = (size, common::ftp::digest(&pattern(size)));
    let server = common::ftp::ftp_server(&hb, hb.addr.into(), size);
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    let got = ha
        .run(move || common::ftp::ftp_client(a_addr.into(), b_addr.into(), SLOW))
        .unwrap();
    let (seen, _) = server.join().unwrap().unwrap().unwrap();
    assert_eq!(
        got,
        Ok(vec![want, want]),
        "active, then passive; server read {seen:?}\n{}",
        diag()
    );
    assert!(
        seen.iter().any(|l| l.starts_with("PORT 10,79,8,1,")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "PASV"), "{seen:?}");
    // Not a firewall that lets everything new through.
    assert!(
        tcp_transfer(&ha, &hb, 5003, 10, Duration::from_secs(3)).is_err(),
        "a -> b TCP to another port must be dropped"
    );

    let flows = dpctl_dump(dp);
    assert!(
        flows
            .iter()
            .any(|f| f.actions == "ct(commit,helper=ftp),2" && f.flow.contains("+new")),
        "the control connection committed with the helper:\n{}",
        diag()
    );
    assert!(
        flows.iter().any(|f| f.flow.contains("+rel")
            && f.flow.contains("in_port(2)")
            && f.actions == "ct(commit),1"),
        "the active data connection, from b, as +new+rel:\n{}",
        diag()
    );
    assert!(
        flows.iter().any(|f| f.flow.contains("+rel")
            && f.flow.contains("in_port(1)")
            && f.actions == "ct(commit),2"),
        "the passive data connection, from a, as +new+rel:\n{}",
        diag()
    );
    // The kernel's tracker holds the control connection and the two data
    // connections it expected (the second to a port only PASV named).
    let conntrack = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    let tcp: Vec<&str> = conntrack
        .lines()
        .filter(|l| l.contains(" tcp ") && l.contains("src=10.79.8."))
        .collect();
    assert!(
        tcp.iter().any(|l| l.contains(" dport=21 ")) && tcp.len() >= 3,
        "{conntrack}"
    );
}

/// UDP datagrams bigger than the MTU through the kernel firewall: the
/// kernel reassembles the fragments for `ct`, the upcall of the
/// reassembled datagram carries the size it came in (`OVS_PACKET_ATTR_MRU`),
/// and the daemon's execute hands that back so the kernel fragments it
/// again on output; b's unsolicited big datagrams are dropped.
#[test]
fn udp_datagrams_larger_than_the_mtu_pass_the_kernel_firewall() {
    if !ovs_present() {
        return;
    }
    let (ha, hb) = (host("frag", 'a', 9, 1), host("frag", 'b', 9, 2));
    let dp = "ktfrag";
    let d = daemon("ktfrag", dp, &[&ha, &hb], &[], FIREWALL);
    let diag = || format!("{}\nkernel flows:\n{}", d.diagnosis(), kernel_flows(dp));
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    // Three IPv4 fragments on the veths' 1500-byte MTU.
    let len = 4000;
    let datagram = move |i: u8| {
        let mut d = pattern(len);
        d[0] = i;
        d
    };

    // b echoes each datagram back, as big.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = hb
        .spawn(move || {
            let s = UdpSocket::bind((b_addr, 6100)).unwrap();
            s.set_read_timeout(Some(SLOW)).unwrap();
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0; 65536];
            while got.len() < 3 {
                let Ok((n, from)) = s.recv_from(&mut buf) else {
                    break;
                };
                got.push(buf[..n].to_vec());
                s.send_to(&buf[..n], from).unwrap();
            }
            got
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let replies = ha
        .run(move || {
            let s = UdpSocket::bind((a_addr, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut replies = Vec::new();
            let mut buf = vec![0; 65536];
            for i in 0..3u8 {
                s.send_to(&datagram(i), (b_addr, 6100)).unwrap();
                if let Ok(n) = s.recv(&mut buf) {
                    replies.push(buf[..n].to_vec());
                }
            }
            replies
        })
        .unwrap();
    let got = echo.join().unwrap().unwrap();
    let want: Vec<Vec<u8>> = (0..3u8).map(datagram).collect();
    assert!(
        got == want,
        "a -> b: {} of 3 big datagrams intact\n{}",
        got.len(),
        diag()
    );
    assert!(
        replies == want,
        "b's big replies pass as +est: {} of 3\n{}",
        replies.len(),
        diag()
    );

    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = ha
        .spawn(move || {
            let s = UdpSocket::bind((a_addr, 6200)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            ready_tx.send(()).unwrap();
            s.recv(&mut vec![0; 65536]).is_ok()
        })
        .unwrap();
    ready_rx.recv().unwrap();
    hb.run(move || {
        let s = UdpSocket::bind((b_addr, 0)).unwrap();
        for i in 0..3u8 {
            s.send_to(&datagram(i), (a_addr, 6200)).unwrap();
        }
    })
    .unwrap();
    assert!(
        !listener.join().unwrap().unwrap(),
        "b -> a big UDP must be dropped\n{}",
        diag()
    );
    let conntrack = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    assert!(
        conntrack
            .lines()
            .any(|l| l.contains(" udp ") && l.contains(" dport=6100 ")),
        "{conntrack}"
    );
    assert!(
        !conntrack.lines().any(|l| l.contains(" dport=6200 ")),
        "{conntrack}"
    );
}

/// The timeout (seconds left) the kernel's tracker gives the connection
/// to UDP port `dport`, from `/proc/net/nf_conntrack`.
fn kernel_conntrack_timeout(dport: u16) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/nf_conntrack").ok()?;
    let line = text
        .lines()
        .find(|l| l.contains(" udp ") && l.contains(&format!(" dport={dport} ")))?;
    line.split_whitespace().nth(4)?.parse().ok()
}

/// Zones' timeout policies on the kernel datapath: the daemon creates
/// OVS's cttimeout objects, a commit in zone 5 names zone 5's, and the
/// kernel keeps an unreplied UDP connection there as long as that policy
/// says (1000 s), while zone 9, without a policy, has the kernel's 30 s.
#[test]
fn zone_timeout_policies_reach_the_kernel_tracker() {
    if !ovs_present() {
        return;
    }
    let (ha, hb) = (host("tp", 'a', 7, 1), host("tp", 'b', 7, 2));
    let dp = "kttp";
    let mut config = kernel_config(
        dp,
        &[],
        "max_idle_ms = 60000",
        "on_exit = \"delete\"\n[datapath.conntrack]\n\
         zone_timeouts = { 5 = { udp_single = 1000 } }",
    );
    for (i, h) in [&ha, &hb].iter().enumerate() {
        config.push_str(&format!(
            "[[port]]\nname = \"{}\"\nnumber = {}\n",
            h.port,
            i + 1
        ));
    }
    let rules = "\
table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=50,udp,in_port=1,udp_dst=7001,actions=ct(commit,zone=5),output:2
table=0,priority=50,udp,in_port=1,udp_dst=7002,actions=ct(commit,zone=9),output:2
table=0,priority=1,actions=drop
";
    let mut d = Daemon::start("kttp", &config, rules);
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    d.wait_until("both connections tracked", || {
        ha.run(move || {
            let s = UdpSocket::bind((a_addr, 0)).unwrap();
            s.send_to(b"zone 5", (b_addr, 7001)).unwrap();
            s.send_to(b"zone 9", (b_addr, 7002)).unwrap();
        })
        .unwrap();
        std::thread::sleep(Duration::from_millis(300));
        kernel_conntrack_timeout(7001).is_some() && kernel_conntrack_timeout(7002).is_some()
    });
    let conntrack = std::fs::read_to_string("/proc/net/nf_conntrack").unwrap_or_default();
    let zone5 = kernel_conntrack_timeout(7001).unwrap();
    let zone9 = kernel_conntrack_timeout(7002).unwrap();
    assert!(
        (900..=1000).contains(&zone5),
        "zone 5's policy gives 1000 s, the kernel says {zone5}:\n{conntrack}\n{}",
        kernel_flows(dp)
    );
    assert!(
        zone9 <= 30,
        "zone 9 has the kernel's 30 s, not {zone9}:\n{conntrack}"
    );
    let flows = dpctl_dump(dp);
    assert!(
        flows
            .iter()
            .any(|f| f.actions == "ct(commit,zone=5,timeout=ovs_tp_1_udp4),2"
                && f.flow.contains("proto=17")),
        "the commit names the udp4 policy and matches the protocol:\n{}",
        kernel_flows(dp)
    );
}

/// SNAT: b sees a's connections come from another address, and its
/// answers reach a.
#[test]
fn snat_shows_b_another_source_address() {
    if !ovs_present() {
        return;
    }
    let (ha, hb) = (host("sn", 'a', 2, 1), host("sn", 'b', 2, 2));
    let nat_ip = Ipv4Addr::new(10, 79, 2, 100);
    let rules = format!(
        "\
table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=50,ip,in_port=1,actions=ct(commit,zone=1,nat(src={nat_ip})),output:2
table=0,priority=50,ip,in_port=2,actions=ct(zone=1,nat),output:1
"
    );
    let dp = "ktsn";
    let d = daemon("ktsn", dp, &[&ha, &hb], &[], &rules);
    // b answers the translated address at a's MAC.
    neighbor(&hb, nat_ip, ha.mac);
    let server = tcp_server(&hb, 5001);
    tcp_send(&ha, (hb.addr, 5001).into(), 100_000).unwrap_or_else(|e| {
        panic!(
            "a -> b through SNAT: {e}\n{}\nkernel flows:\n{}",
            d.diagnosis(),
            kernel_flows(dp)
        )
    });
    let (peer, bytes) = server.join().unwrap().unwrap();
    assert_eq!(peer.ip(), nat_ip, "b sees the SNAT address");
    assert_eq!(bytes, 100_000);
    let flows = dpctl_dump(dp);
    assert!(
        flows
            .iter()
            .any(|f| f.actions == format!("ct(commit,zone=1,nat(src={nat_ip})),2")),
        "{}",
        kernel_flows(dp)
    );
    assert!(
        flows.iter().any(|f| f.actions == "ct(zone=1,nat),1"),
        "{}",
        kernel_flows(dp)
    );
}

/// DNAT: connections to a virtual IP are spread over two backends, and
/// their answers come back from the virtual IP.
#[test]
fn dnat_balances_a_virtual_ip_over_two_backends() {
    if !ovs_present() {
        return;
    }
    let (ha, hb, hc) = (
        host("dn", 'a', 3, 1),
        host("dn", 'b', 3, 2),
        host("dn", 'c', 3, 3),
    );
    let vip = Ipv4Addr::new(10, 79, 3, 100);
    let rules = format!(
        "\
table=0,priority=100,arp,in_port=1,actions=output:2,output:3
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=100,arp,in_port=3,actions=output:1
table=0,priority=50,ip,in_port=1,actions=ct(commit,zone=2,nat(dst={}-{}:8080),table=1)
table=0,priority=50,ip,in_port=2,actions=ct(zone=2,nat),output:1
table=0,priority=50,ip,in_port=3,actions=ct(zone=2,nat),output:1
table=1,priority=50,ip,nw_dst={},actions=mod_dl_dst:{},output:2
table=1,priority=50,ip,nw_dst={},actions=mod_dl_dst:{},output:3
",
        hb.addr,
        hc.addr,
        hb.addr,
        mac(hb.mac),
        hc.addr,
        mac(hc.mac)
    );
    let dp = "ktdn";
    let d = daemon("ktdn", dp, &[&ha, &hb, &hc], &[], &rules);
    neighbor(&ha, vip, [2, 0, 0, 0x79, 3, 100]);
    let n = 16;
    let done = Arc::new(AtomicU32::new(0));
    // Each backend takes whatever comes until all n were served.
    let backends: Vec<_> = [&hb, &hc]
        .iter()
        .map(|h| {
            let (addr, done) = (h.addr, done.clone());
            let (tx, rx) = std::sync::mpsc::channel();
            let t = h
                .spawn(move || {
                    let l = TcpListener::bind((addr, 8080)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    tx.send(()).unwrap();
                    let mut got = 0;
                    let start = Instant::now();
                    while done.load(Ordering::Relaxed) < n && start.elapsed() < 3 * SLOW {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                s.set_nonblocking(false).unwrap();
                                s.set_read_timeout(Some(SLOW)).unwrap();
                                let mut buf = Vec::new();
                                if s.read_to_end(&mut buf).is_ok() && buf.len() == 1000 {
                                    got += 1;
                                    done.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                    got
                })
                .unwrap();
            rx.recv().unwrap();
            t
        })
        .collect();
    // The kernel picks a backend by a hash of the source and destination
    // addresses (nf_nat's `find_best_ips_proto`), not ports: one client
    // address always lands on one backend. a connects from eight.
    let ip_in_a = |args: &[&str]| {
        run(
            "/sbin/ip",
            &[&["-n", ha.netns.as_str()], args, &["dev", "eth0"]].concat(),
        )
    };
    for i in 0..n {
        if i % 2 == 0 {
            let src = Ipv4Addr::new(10, 79, 3, 10 + i as u8 / 2).to_string();
            ip_in_a(&["addr", "add", &format!("{src}/24")]);
            ip_in_a(&["route", "replace", &format!("{vip}/32"), "src", &src]);
        }
        tcp_send(&ha, (vip, 80).into(), 1000).unwrap_or_else(|e| {
            panic!(
                "a -> VIP, connection {i}: {e}\n{}\nkernel flows:\n{}",
                d.diagnosis(),
                kernel_flows(dp)
            )
        });
    }
    let counts: Vec<u32> = backends
        .into_iter()
        .map(|t| t.join().unwrap().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u32>(), n, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "both backends serve: {counts:?}"
    );
    // The first pass translates and recirculates; the resumed pass routes
    // on the translated destination.
    let flows = dpctl_dump(dp);
    assert!(
        flows.iter().any(|f| f.actions.starts_with(&format!(
            "ct(commit,zone=2,nat(dst={}-{}:8080)),recirc(0x",
            hb.addr, hc.addr
        ))),
        "{}",
        kernel_flows(dp)
    );
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains(&format!("dst={}", hc.addr))
                && f.flow.starts_with("recirc_id(0x")
                && f.actions.ends_with(",3")),
        "{}",
        kernel_flows(dp)
    );
}

/// From the trunk host: sends ICMP echo requests to `dst` tagged `vid`
/// and returns the VLAN of the reply that came back (0: untagged), if
/// one did.
fn trunk_echo(t: &Host, vid: u16, dst_mac: [u8; 6], dst: Ipv4Addr, src: Ipv4Addr) -> Option<u16> {
    use messages::flow::{Flow, FlowVlan, ETH_TYPE_IP, ETH_TYPE_VLAN_8021Q, VLAN_CFI};
    let mut request = Flow {
        dl_src: t.mac,
        dl_dst: dst_mac,
        dl_type: ETH_TYPE_IP,
        nw_src: src.into(),
        nw_dst: dst.into(),
        nw_proto: 1,
        nw_ttl: 64,
        tp_src: 8, // echo request
        ..Flow::default()
    };
    request.vlans[0] = FlowVlan {
        tpid: ETH_TYPE_VLAN_8021Q,
        tci: VLAN_CFI | vid,
    };
    let frame = messages::compose::flow_compose(&request);
    t.run(move || {
        let port = upcalld::dpif_netdev::PortIo::open_packet("eth0").expect("AF_PACKET on eth0");
        let mut buf = Vec::new();
        let mut scratch = vec![0; upcalld::dpif_netdev::MAX_FRAME];
        for _ in 0..5 {
            port.send(&frame).expect("sending a tagged frame");
            let until = Instant::now() + Duration::from_millis(1500);
            while Instant::now() < until {
                if !port.recv(&mut buf, &mut scratch, true).expect("receiving") {
                    continue;
                }
                let f = messages::extract::flow_extract(&buf, &Flow::default());
                let reply = f.dl_type == ETH_TYPE_IP
                    && f.nw_proto == 1
                    && f.tp_src == 0
                    && f.nw_src == request.nw_dst
                    && f.nw_dst == request.nw_src;
                if reply {
                    let v = f.vlans[0];
                    return Some(if v.tci & VLAN_CFI != 0 {
                        v.tci & 0xfff
                    } else {
                        0
                    });
                }
            }
        }
        None
    })
    .expect("running in the trunk host's namespace")
}

/// NORMAL: ports 1 and 2 in access VLAN 10, port 3 in access VLAN 20 but
/// addressed in VLAN 10's subnet (only the VLANs keep it apart), port 4 a
/// trunk of both.
#[test]
fn normal_keeps_access_vlans_apart_and_the_trunk_carries_both_tagged() {
    if !ovs_present() {
        return;
    }
    let a1 = host("nm", 'a', 4, 1);
    let a2 = host("nm", 'b', 4, 2);
    let b2 = host("nm", 'c', 4, 9);
    let t = host("nm", 't', 5, 5);
    // The trunk host's frames are tagged by hand; a1 knows its MAC.
    neighbor(&a1, Ipv4Addr::new(10, 79, 4, 5), t.mac);
    let dp = "ktnm";
    let d = daemon(
        "ktnm",
        dp,
        &[&a1, &a2, &b2, &t],
        &["tag = 10", "tag = 10", "tag = 20", "trunks = [10, 20]"],
        "table=0,priority=0,actions=NORMAL\n",
    );
    let diag = || format!("{}\nkernel flows:\n{}", d.diagnosis(), kernel_flows(dp));

    assert!(ping_ok(&a1, a2.addr, 10), "a1 -> a2 (VLAN 10)\n{}", diag());
    assert!(ping_ok(&a2, a1.addr, 3), "a2 -> a1 (VLAN 10)");
    assert!(!ping_ok(&a1, b2.addr, 3), "a1 reached b2 across VLANs");
    assert!(!ping_ok(&b2, a2.addr, 3), "b2 reached a2 across VLANs");
    // The trunk: an echo request tagged 10 reaches a1 (untagged there),
    // and its reply comes back tagged 10; tagged 20 it never gets there.
    let (a1_addr, t_addr) = (a1.addr, Ipv4Addr::new(10, 79, 4, 5));
    assert_eq!(
        trunk_echo(&t, 10, a1.mac, a1_addr, t_addr),
        Some(10),
        "trunk <-> a1 in VLAN 10\n{}",
        diag()
    );
    assert_eq!(
        trunk_echo(&t, 20, a1.mac, a1_addr, t_addr),
        None,
        "a VLAN 20 frame reached a1"
    );

    let fdb = d.ctl(Ctl::FdbShow, "");
    let has = |port: u32, vlan: u16, m: [u8; 6]| {
        fdb.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 4 && w[0] == port.to_string() && w[1] == vlan.to_string() && w[2] == mac(m)
        })
    };
    for (port, vlan, m) in [
        (1, 10, a1.mac),
        (2, 10, a2.mac),
        (3, 20, b2.mac),
        (4, 10, t.mac),
    ] {
        assert!(
            has(port, vlan, m),
            "port {port} VLAN {vlan} not learned:\n{fdb}"
        );
    }
    assert!(!has(3, 10, b2.mac), "b2 learned in VLAN 10:\n{fdb}");

    // In the kernel: frames from the trunk match their tag and have it
    // popped; frames from a1 to the trunk have VLAN 10 pushed.
    let flows = dpctl_dump(dp);
    assert!(
        flows.iter().any(|f| f.flow.contains("in_port(4)")
            && f.flow.contains("vlan(vid=10")
            && f.actions.contains("pop_vlan")),
        "no tagged flow from the trunk:\n{}",
        diag()
    );
    assert!(
        flows.iter().any(|f| f.flow.contains("in_port(1)")
            && f.actions.contains("push_vlan(vid=10")
            && f.actions.ends_with(",4")),
        "nothing pushed VLAN 10 to the trunk:\n{}",
        diag()
    );
}

/// OVS's advanced tutorial's tables 0-4 (tests/learning.rs has them with
/// more commentary): port 1 a trunk, ports 3 and 4 access ports of VLAN
/// 30, MACs learned into table 10 by `learn`.
const TUTORIAL: &str = "\
table=0,dl_src=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop
table=0,dl_dst=01:80:c2:00:00:00/ff:ff:ff:ff:ff:f0,actions=drop
table=0,priority=0,actions=resubmit(,1)
table=1,priority=0,actions=drop
table=1,priority=99,in_port=1,actions=resubmit(,2)
table=1,priority=99,in_port=2,vlan_tci=0,actions=mod_vlan_vid:20,resubmit(,2)
table=1,priority=99,in_port=3,vlan_tci=0,actions=mod_vlan_vid:30,resubmit(,2)
table=1,priority=99,in_port=4,vlan_tci=0,actions=mod_vlan_vid:30,resubmit(,2)
table=2,actions=learn(table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,3)
table=3,priority=50,actions=resubmit(,10),resubmit(,4)
table=3,priority=99,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,4)
table=4,reg0=1,actions=1
table=4,reg0=2,vlan_tci=0x1000/0x1000,actions=strip_vlan,2
table=4,reg0=3,vlan_tci=0x1000/0x1000,actions=strip_vlan,3
table=4,reg0=4,vlan_tci=0x1000/0x1000,actions=strip_vlan,4
table=4,reg0=0,priority=99,dl_vlan=20,actions=1,strip_vlan,2
table=4,reg0=0,priority=99,dl_vlan=30,actions=1,strip_vlan,3,4
table=4,reg0=0,priority=50,actions=1
";

/// The tutorial's switch floods until it has learned, then forwards
/// unicast to the learned port alone, in the kernel.
#[test]
fn the_tutorial_learning_switch_forwards_to_learned_ports() {
    if !ovs_present() {
        return;
    }
    let trunk = host("ln", 't', 6, 3);
    let (a, b) = (host("ln", 'a', 6, 1), host("ln", 'b', 6, 2));
    // Port 2 exists in the tutorial; here it is the trunk's neighbour
    // left empty: ports 1 (trunk), 3 (a), 4 (b).
    let spare = host("ln", 's', 6, 4);
    let dp = "ktln";
    let d = daemon("ktln", dp, &[&trunk, &spare, &a, &b], &[], TUTORIAL);
    let diag = || format!("{}\nkernel flows:\n{}", d.diagnosis(), kernel_flows(dp));
    let learned = |m: [u8; 6]| {
        let needle = format!("dl_dst={}", mac(m));
        d.ctl(Ctl::DumpFlows, "")
            .lines()
            .find(|l| l.contains("table=10,") && l.contains(&needle))
            .map(str::to_string)
    };

    assert!(ping_ok(&a, b.addr, 10), "ping a -> b\n{}", diag());
    let start = Instant::now();
    while learned(a.mac).is_none() || learned(b.mac).is_none() {
        assert!(start.elapsed() < SLOW, "a and b not learned\n{}", diag());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        learned(a.mac)
            .unwrap()
            .ends_with("actions=load:0x3->NXM_NX_REG0[0..15]"),
        "{:?}",
        learned(a.mac)
    );
    let len = 256 << 10;
    let got = tcp_transfer(&a, &b, 5003, len, SLOW)
        .unwrap_or_else(|e| panic!("TCP a -> b: {e}\n{}", diag()));
    assert!(got == pattern(len), "TCP data corrupted on the way");
    // Unicast from a to b goes to port 4 alone once learned: the flows
    // that flooded before are revalidated to it.
    let src_dst = format!("eth(src={},dst={})", mac(a.mac), mac(b.mac));
    let start = Instant::now();
    loop {
        let flows = dpctl_dump(dp);
        let unicast: Vec<&DpctlFlow> = flows.iter().filter(|f| f.flow.contains(&src_dst)).collect();
        if !unicast.is_empty() && unicast.iter().all(|f| f.actions == "4") {
            break;
        }
        assert!(
            start.elapsed() < SLOW,
            "a -> b unicast flows not output to port 4 alone\n{}",
            diag()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
