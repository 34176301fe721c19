//! Real traffic through the userspace datapath's connection tracker:
//! hosts in network namespaces this test creates, joined by veth pairs to
//! an embedded datapath whose megaflows (installed directly, as the slow
//! path would) send packets through `ct` and recirculate them. A stateful
//! firewall with a 1 MiB TCP transfer and an ICMP error passing as `+rel`,
//! SNAT, and DNAT to one of two backends; UDP datagrams bigger than the
//! MTU, IPv4 and IPv6 (fragments reassembled before tracking); FTP
//! (Python's ftplib against a minimal server, tests/common/ftp.rs, active
//! and passive, with and without SNAT, and over IPv6 with EPRT/EPSV) and
//! TFTP data connections passing as related.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::ftp::*;
use common::*;
use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::dpif::{DpifOp, FlowPut, PutMode};
use messages::flow::{CS_ESTABLISHED, CS_INVALID, CS_NEW, CS_RELATED, CS_TRACKED};
use messages::odp::{
    CtAction, CtHelper, EthKey, NatAction, NatAddrs, NatKind, OdpAction, SetHeader,
};
use messages::{Flow, Megaflow};
use upcalld::dpif_netdev::conntrack::dump::format_entry;
use upcalld::dpif_netdev::{Netdev, NetdevConfig};
use upcalld::netns::Host;

/// The datapath and its hosts; host `i` is on port `i + 1`.
struct Bed {
    dp: Arc<Netdev>,
    hosts: Vec<Host>,
    next_ufid: u128,
}

impl Bed {
    fn new(tag: &str, n: u8) -> Bed {
        require_root();
        let hosts: Vec<Host> = (0..n)
            .map(|i| {
                let letter = (b'a' + i) as char;
                Host::create(
                    &format!("uct-{tag}-{letter}"),
                    &format!("uc{tag}{letter}"),
                    Ipv4Addr::new(10, 78, 0, i + 1),
                    [2, 0, 0, 0x78, 0, i + 1],
                )
                .expect("creating a host")
            })
            .collect();
        let dp = Arc::new(Netdev::new(NetdevConfig::default()));
        for (i, h) in hosts.iter().enumerate() {
            dp.port_add(&PortSpec {
                name: h.port.clone(),
                kind: PortKind::System,
                number: Some(i as u32 + 1),
            })
            .expect("adding a port");
        }
        Bed {
            dp,
            hosts,
            next_ufid: 1,
        }
    }

    /// Installs a megaflow.
    fn put(&mut self, m: M, actions: Vec<OdpAction>) {
        let ufid = self.next_ufid;
        self.next_ufid += 1;
        let r = self.dp.operate(&mut [DpifOp::put(FlowPut {
            ufid,
            megaflow: Megaflow::new(&m.key, &m.mask),
            actions: Arc::new(actions),
            mode: PutMode::Create,
            reset_stats: false,
        })]);
        assert!(r[0].is_ok(), "{r:?}");
    }

    fn dump_conntrack(&self) -> Vec<String> {
        self.dp
            .conntrack()
            .entries(None, messages::dpif::monotonic_ms())
            .iter()
            .map(|e| format_entry(e, false))
            .collect()
    }
}

/// A megaflow's key and mask, built field by field.
#[derive(Clone, Copy, Default)]
struct M {
    key: Flow,
    mask: Flow,
}

impl M {
    fn recirc(mut self, id: u32) -> M {
        self.key.recirc_id = id;
        self.mask.recirc_id = u32::MAX;
        self
    }
    fn in_port(mut self, p: u32) -> M {
        self.key.in_port = p;
        self.mask.in_port = u32::MAX;
        self
    }
    fn dl_type(mut self, t: u16) -> M {
        self.key.dl_type = t;
        self.mask.dl_type = u16::MAX;
        self
    }
    fn ip(self) -> M {
        self.dl_type(0x0800)
    }
    fn arp(self) -> M {
        self.dl_type(0x0806)
    }
    /// `ct_state` with the bits of `trk|new|est|rel|inv` exactly `bits`.
    fn ct(mut self, bits: u8) -> M {
        self.key.ct_state = bits;
        self.mask.ct_state = CS_TRACKED | CS_NEW | CS_ESTABLISHED | CS_RELATED | CS_INVALID;
        self
    }
    fn nw_dst(mut self, a: Ipv4Addr) -> M {
        self.key.nw_dst = a.into();
        self.mask.nw_dst = u32::MAX;
        self
    }
}

fn m() -> M {
    M::default().recirc(0)
}

fn ct(zone: u16, commit: bool, nat: Option<NatAction>) -> OdpAction {
    OdpAction::Ct(CtAction {
        zone,
        commit,
        nat,
        ..CtAction::default()
    })
}

fn out(p: u32) -> OdpAction {
    OdpAction::Output(p)
}

fn set_eth_dst(mac: [u8; 6]) -> OdpAction {
    OdpAction::SetMasked(SetHeader::Ethernet {
        key: EthKey {
            src: [0; 6],
            dst: mac,
        },
        mask: EthKey {
            src: [0; 6],
            dst: [0xff; 6],
        },
    })
}

/// A static neighbor entry in `host`: `addr` is at `mac`.
fn neighbor(host: &Host, addr: Ipv4Addr, mac: [u8; 6]) {
    let mac: Vec<String> = mac.iter().map(|b| format!("{b:02x}")).collect();
    let st = std::process::Command::new("ip")
        .args(["-n", &host.netns, "neigh", "replace", &addr.to_string()])
        .args(["lladdr", &mac.join(":"), "dev", "eth0"])
        .status()
        .expect("running ip");
    assert!(st.success());
}

/// A TCP listener in `host` on `port`: accepts `n` connections and
/// returns, for each, the peer's address and the bytes it sent.
fn tcp_server(
    host: &Host,
    port: u16,
    n: usize,
) -> std::thread::JoinHandle<std::io::Result<Vec<(SocketAddr, usize)>>> {
    let addr = host.addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = host
        .spawn(move || {
            let l = TcpListener::bind((addr, port)).expect("bind");
            ready_tx.send(()).unwrap();
            (0..n)
                .map(|_| {
                    let (mut s, peer) = l.accept().expect("accept");
                    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                    let mut got = Vec::new();
                    s.read_to_end(&mut got).expect("read");
                    (peer, got.len())
                })
                .collect()
        })
        .unwrap();
    ready_rx.recv().unwrap();
    h
}

fn tcp_send(host: &Host, to: SocketAddr, bytes: usize) -> Result<(), String> {
    host.run(move || {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(3))
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(&vec![7u8; bytes])
            .map_err(|e| format!("write: {e}"))
    })
    .unwrap()
}

/// Megaflows of a stateful firewall between ports `a` and `b`: ARP passes,
/// IPv4 and IPv6 are tracked in zone 0 and recirculated; `a` may open
/// connections (committed), `b` only answer them; invalid packets are
/// dropped.
fn firewall_a_to_b(bed: &mut Bed, a: u32, b: u32) {
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    for dl_type in [0x0800, 0x86dd] {
        bed.put(
            m().dl_type(dl_type).ct(0),
            vec![ct(0, false, None), OdpAction::Recirc(1)],
        );
        let r1 = || M::default().recirc(1).dl_type(dl_type);
        bed.put(
            r1().in_port(a).ct(CS_TRACKED | CS_NEW),
            vec![ct(0, true, None), out(b)],
        );
        bed.put(
            r1().in_port(a).ct(CS_TRACKED | CS_ESTABLISHED),
            vec![out(b)],
        );
        bed.put(r1().in_port(a).ct(CS_TRACKED | CS_INVALID), vec![]);
        bed.put(r1().in_port(b).ct(CS_TRACKED | CS_NEW), vec![]);
        bed.put(
            r1().in_port(b).ct(CS_TRACKED | CS_ESTABLISHED),
            vec![out(a)],
        );
        bed.put(r1().in_port(b).ct(CS_TRACKED | CS_INVALID), vec![]);
    }
}

/// IPv6 addresses `fc00:78::<i+1>` for the bed's hosts (no duplicate
/// address detection), each knowing the others' MACs: no neighbour
/// discovery, which the firewalls here would have to let through.
fn with_ipv6(bed: &Bed) -> Vec<Ipv6Addr> {
    let addrs: Vec<Ipv6Addr> = (0..bed.hosts.len())
        .map(|i| Ipv6Addr::new(0xfc00, 0x78, 0, 0, 0, 0, 0, i as u16 + 1))
        .collect();
    let ip = |args: &[&str]| {
        let st = std::process::Command::new("ip")
            .args(args)
            .status()
            .expect("running ip");
        assert!(st.success(), "ip {args:?}");
    };
    for (h, addr) in bed.hosts.iter().zip(&addrs) {
        let cidr = format!("{addr}/64");
        ip(&["-n", &h.netns, "addr", "add", &cidr, "dev", "eth0", "nodad"]);
        for (other, other_addr) in bed.hosts.iter().zip(&addrs) {
            if other.netns != h.netns {
                let mac: Vec<String> = other.mac.iter().map(|b| format!("{b:02x}")).collect();
                let (o, mac) = (other_addr.to_string(), mac.join(":"));
                ip(&[
                    "-n",
                    &h.netns,
                    "-6",
                    "neigh",
                    "replace",
                    &o,
                    "lladdr",
                    &mac,
                    "nud",
                    "permanent",
                    "dev",
                    "eth0",
                ]);
            }
        }
    }
    addrs
}

#[test]
fn stateful_firewall_passes_replies_and_related_errors_only() {
    let mut bed = Bed::new("cf", 2);
    let (a, b) = (1, 2);
    firewall_a_to_b(&mut bed, a, b);
    let r1 = || M::default().recirc(1).ip();
    bed.put(r1().in_port(b).ct(CS_TRACKED | CS_RELATED), vec![out(a)]);
    let (ha, hb) = (&bed.hosts[0], &bed.hosts[1]);

    assert!(ping_ok(ha, hb.addr, 5), "a -> b ping");
    assert!(!ping_ok(hb, ha.addr, 2), "b -> a ping must be dropped");

    let len = 1 << 20;
    let got = tcp_transfer(ha, hb, 5001, len, Duration::from_secs(10)).expect("a -> b TCP");
    assert!(got == pattern(len), "1 MiB through the firewall, intact");
    assert!(
        tcp_transfer(hb, ha, 5002, 10, Duration::from_secs(2)).is_err(),
        "b -> a TCP must be dropped"
    );

    // Unsolicited UDP from b never reaches a.
    let a_addr = ha.addr;
    let listener = ha
        .spawn(move || {
            let s = UdpSocket::bind((a_addr, 6000)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            s.recv(&mut [0; 64]).is_ok()
        })
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let b_addr = hb.addr;
    hb.run(move || {
        let s = UdpSocket::bind((b_addr, 0)).unwrap();
        for _ in 0..3 {
            s.send_to(b"hello", (a_addr, 6000)).unwrap();
        }
    })
    .unwrap();
    assert!(
        !listener.join().unwrap().unwrap(),
        "b -> a UDP must be dropped"
    );

    // a's UDP to a closed port of b: b's "port unreachable" is an ICMP
    // error about a committed connection, so it passes as +rel and a's
    // connected socket sees the refusal.
    let refused = ha
        .run(move || {
            let s = UdpSocket::bind((a_addr, 0)).unwrap();
            s.connect((b_addr, 7777)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send(b"anyone?").unwrap();
            s.recv(&mut [0; 64]).map_err(|e| e.kind())
        })
        .unwrap();
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));

    let dump = bed.dump_conntrack();
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.1,dst=10.78.0.2,")
                && l.contains("dport=5001)")),
        "{dump:#?}"
    );
    assert!(
        dump.iter()
            .any(|l| l.starts_with("udp,") && l.contains("dport=7777)")),
        "{dump:#?}"
    );
    assert!(
        !dump
            .iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.2,")),
        "b's connection attempts were never committed: {dump:#?}"
    );
}

/// `nat(src=IP)`: source NAT to one address.
fn snat_to(ip: Ipv4Addr) -> NatAction {
    NatAction {
        kind: Some(NatKind::Src),
        addrs: Some(NatAddrs::V4 {
            min: ip.into(),
            max: ip.into(),
        }),
        ..NatAction::default()
    }
}

#[test]
fn snat_shows_b_another_source_address() {
    let mut bed = Bed::new("cs", 2);
    let (a, b) = (1, 2);
    let nat_ip = Ipv4Addr::new(10, 78, 0, 100);
    let snat = snat_to(nat_ip);
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    bed.put(m().ip().in_port(a), vec![ct(1, true, Some(snat)), out(b)]);
    bed.put(
        m().ip().in_port(b),
        vec![ct(1, false, Some(NatAction::default())), out(a)],
    );
    // b answers the translated address at a's MAC.
    neighbor(&bed.hosts[1], nat_ip, bed.hosts[0].mac);
    let server = tcp_server(&bed.hosts[1], 5001, 1);
    tcp_send(&bed.hosts[0], (bed.hosts[1].addr, 5001).into(), 100_000)
        .expect("a -> b through SNAT");
    let seen = server.join().unwrap().unwrap();
    assert_eq!(seen[0].0.ip(), nat_ip, "b sees the SNAT address");
    assert_eq!(seen[0].1, 100_000);
    let dump = bed.dump_conntrack();
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.1,dst=10.78.0.2,")
                && l.contains("reply=(src=10.78.0.2,dst=10.78.0.100,")
                && l.contains(",zone=1,")),
        "{dump:#?}"
    );
}

#[test]
fn dnat_balances_a_virtual_ip_over_two_backends() {
    let mut bed = Bed::new("cd", 3);
    let (a, b, c) = (1, 2, 3);
    let vip = Ipv4Addr::new(10, 78, 0, 100);
    let vip_mac = [2, 0, 0, 0x78, 0, 100];
    let (b_addr, c_addr) = (bed.hosts[1].addr, bed.hosts[2].addr);
    let dnat = NatAction {
        kind: Some(NatKind::Dst),
        addrs: Some(NatAddrs::V4 {
            min: b_addr.into(),
            max: c_addr.into(),
        }),
        ports: Some((8080, 8080)),
        ..NatAction::default()
    };
    bed.put(m().arp().in_port(a), vec![out(b), out(c)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    bed.put(m().arp().in_port(c), vec![out(a)]);
    bed.put(
        m().ip().in_port(a),
        vec![ct(2, true, Some(dnat)), OdpAction::Recirc(7)],
    );
    let r7 = || M::default().recirc(7).ip().in_port(a);
    bed.put(
        r7().nw_dst(b_addr),
        vec![set_eth_dst(bed.hosts[1].mac), out(b)],
    );
    bed.put(
        r7().nw_dst(c_addr),
        vec![set_eth_dst(bed.hosts[2].mac), out(c)],
    );
    for p in [b, c] {
        bed.put(
            m().ip().in_port(p),
            vec![ct(2, false, Some(NatAction::default())), out(a)],
        );
    }
    neighbor(&bed.hosts[0], vip, vip_mac);
    let n = 16;
    // Each backend takes whatever comes: count connections per backend.
    let counts: Vec<_> = [1, 2]
        .iter()
        .map(|&i| {
            let addr = bed.hosts[i].addr;
            let (tx, rx) = std::sync::mpsc::channel();
            let h = bed.hosts[i]
                .spawn(move || {
                    let l = TcpListener::bind((addr, 8080)).unwrap();
                    l.set_nonblocking(true).unwrap();
                    tx.send(()).unwrap();
                    let mut got = 0;
                    let start = std::time::Instant::now();
                    while start.elapsed() < Duration::from_secs(8) {
                        match l.accept() {
                            Ok((mut s, _)) => {
                                s.set_nonblocking(false).unwrap();
                                s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                                let mut buf = Vec::new();
                                if s.read_to_end(&mut buf).is_ok() && buf.len() == 1000 {
                                    got += 1;
                                }
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                    got
                })
                .unwrap();
            rx.recv().unwrap();
            h
        })
        .collect();
    for _ in 0..n {
        tcp_send(&bed.hosts[0], (vip, 80).into(), 1000).expect("a -> VIP");
    }
    let counts: Vec<u32> = counts
        .into_iter()
        .map(|h| h.join().unwrap().unwrap())
        .collect();
    assert_eq!(counts.iter().sum::<u32>(), n, "{counts:?}");
    assert!(
        counts.iter().all(|&c| c > 0),
        "both backends serve: {counts:?}"
    );
    let dump = bed.dump_conntrack();
    assert_eq!(dump.len(), n as usize, "{dump:#?}");
    assert!(dump
        .iter()
        .all(|l| l.contains("dst=10.78.0.100,sport=") && l.contains(",sport=8080,")));
}

/// Big UDP datagrams (three fragments each on the veths' 1500-byte MTU)
/// from a to b, b's echoes and b's unsolicited ones through the firewall:
/// IPv4 (`ipv6 == false`) or IPv6.
fn big_udp_through_the_firewall(tag: &str, ipv6: bool) {
    let mut bed = Bed::new(tag, 2);
    let (a, b) = (1, 2);
    firewall_a_to_b(&mut bed, a, b);
    let (a_addr, b_addr): (IpAddr, IpAddr) = if ipv6 {
        let v6 = with_ipv6(&bed);
        // The first datagram sent right after the addresses were added
        // was now and then lost on the way into b (under load): wait
        // until a ping passes.
        let pings = |to: Ipv6Addr| {
            std::process::Command::new("ip")
                .args([
                    "netns",
                    "exec",
                    &bed.hosts[0].netns,
                    "ping",
                    "-6",
                    "-c",
                    "1",
                ])
                .args(["-W", "1", &to.to_string()])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        assert!((0..10).any(|_| pings(v6[1])), "a -> b ping over IPv6");
        (v6[0].into(), v6[1].into())
    } else {
        (bed.hosts[0].addr.into(), bed.hosts[1].addr.into())
    };
    let (ha, hb) = (&bed.hosts[0], &bed.hosts[1]);
    let len = 4000;

    // b echoes each datagram back, as big.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let echo = hb
        .spawn(move || {
            let s = UdpSocket::bind((b_addr, 6100)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            ready_tx.send(()).unwrap();
            let mut got = Vec::new();
            let mut buf = vec![0; 65536];
            while let Ok((n, from)) = s.recv_from(&mut buf) {
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
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut replies = Vec::new();
            let mut buf = vec![0; 65536];
            for i in 0..3u8 {
                let mut d = pattern(len);
                d[0] = i;
                s.send_to(&d, (b_addr, 6100)).unwrap();
                if let Ok(n) = s.recv(&mut buf) {
                    replies.push(buf[..n].to_vec());
                }
            }
            replies
        })
        .unwrap();
    let got = echo.join().unwrap().unwrap();
    let want: Vec<Vec<u8>> = (0..3u8)
        .map(|i| {
            let mut d = pattern(len);
            d[0] = i;
            d
        })
        .collect();
    let status = || bed.dp.conntrack().fragments.status();
    assert_eq!(
        got.len(),
        3,
        "b got every big datagram from a: {:?}, a got replies {:?}\n{}\n{:#?}\nexec errors {:?}",
        got.iter().map(|d| (d[0], d.len())).collect::<Vec<_>>(),
        replies.iter().map(|d| (d[0], d.len())).collect::<Vec<_>>(),
        status(),
        bed.dump_conntrack(),
        bed.dp.tx_drops()
    );
    assert!(got == want, "a -> b datagrams intact");
    assert!(replies == want, "b's big replies pass as +est, intact");

    // b's unsolicited big datagrams are dropped, reassembled or not.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let listener = ha
        .spawn(move || {
            let s = UdpSocket::bind((a_addr, 6200)).unwrap();
            s.set_read_timeout(Some(Duration::from_millis(1500)))
                .unwrap();
            ready_tx.send(()).unwrap();
            s.recv(&mut vec![0; 65536]).is_ok()
        })
        .unwrap();
    ready_rx.recv().unwrap();
    hb.run(move || {
        let s = UdpSocket::bind((b_addr, 0)).unwrap();
        for _ in 0..3 {
            s.send_to(&pattern(len), (a_addr, 6200)).unwrap();
        }
    })
    .unwrap();
    assert!(
        !listener.join().unwrap().unwrap(),
        "b -> a big UDP must be dropped"
    );

    // Each pass through `ct` reassembles, 3 fragments a datagram: a's 3
    // datagrams at the first `ct`, its first again at the `ct(commit)` of
    // +new, b's 3 replies and b's 3 unsolicited ones at the first `ct`.
    let status = status();
    let family = if ipv6 { "v6" } else { "v4" };
    let completed = status
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix(&format!("{family} frags completed: "))
        })
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(completed, Some(30), "{status}");
    assert!(status.contains("        num frag: 0\n"), "{status}");
    let dump = bed.dump_conntrack();
    assert!(
        dump.iter().any(
            |l| l.starts_with(&format!("udp,orig=(src={a_addr},dst={b_addr},"))
                && l.contains("dport=6100)")
        ),
        "{dump:#?}"
    );
    assert!(!dump.iter().any(|l| l.contains("dport=6200)")), "{dump:#?}");
}

#[test]
fn udp_datagrams_larger_than_the_mtu_pass_the_firewall_reassembled() {
    big_udp_through_the_firewall("cg", false);
}

#[test]
fn ipv6_udp_datagrams_larger_than_the_mtu_pass_the_firewall_reassembled() {
    big_udp_through_the_firewall("c6", true);
}

/// `M` for TCP or UDP to a destination port.
fn l4_dst(mut m: M, proto: u8, port: u16) -> M {
    m.key.nw_proto = proto;
    m.mask.nw_proto = u8::MAX;
    m.key.tp_dst = port;
    m.mask.tp_dst = u16::MAX;
    m
}

fn ct_alg(zone: u16, nat: Option<NatAction>, helper: CtHelper) -> OdpAction {
    OdpAction::Ct(CtAction {
        zone,
        commit: true,
        nat,
        helper: Some(helper),
        ..CtAction::default()
    })
}

/// Python's ftplib in `host`: one session retrieving a file in active
/// mode, then in passive mode; prints length and digest of each.
fn ftplib_client(host: &Host, server: IpAddr) -> Vec<(usize, u64)> {
    let script = "\
import ftplib, sys
f = ftplib.FTP()
f.connect(sys.argv[1], 21, timeout=5)
f.login()
for pasv in (False, True):
    f.set_pasv(pasv)
    buf = bytearray()
    f.retrbinary('RETR data', buf.extend)
    print(len(buf), sum((i + 1) * b for i, b in enumerate(buf)) % 1000003)
f.quit()
";
    let out = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &host.netns,
            "timeout",
            "20",
            "python3",
            "-c",
            script,
        ])
        .arg(server.to_string())
        .output()
        .expect("running python3");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "ftplib client failed: {}{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        .map(|l| {
            let (n, d) = l.split_once(' ').expect("two numbers");
            (n.parse().unwrap(), d.parse().unwrap())
        })
        .collect()
}

/// Megaflows of a firewall between ports `a` and `b` for EtherType
/// `dl_type` where only a's FTP and TFTP control connections may start
/// new, committed with their helpers, and what those expect (+rel);
/// nothing else new passes (no flow: a miss nobody answers).
fn helper_firewall(bed: &mut Bed, a: u32, b: u32, dl_type: u16) {
    bed.put(
        m().dl_type(dl_type).ct(0),
        vec![ct(0, false, None), OdpAction::Recirc(1)],
    );
    let r1 = || M::default().recirc(1).dl_type(dl_type);
    bed.put(
        l4_dst(r1().in_port(a).ct(CS_TRACKED | CS_NEW), 6, 21),
        vec![ct_alg(0, None, CtHelper::Ftp), out(b)],
    );
    bed.put(
        l4_dst(r1().in_port(a).ct(CS_TRACKED | CS_NEW), 17, 69),
        vec![ct_alg(0, None, CtHelper::Tftp), out(b)],
    );
    for (from, to) in [(a, b), (b, a)] {
        bed.put(
            r1().in_port(from).ct(CS_TRACKED | CS_NEW | CS_RELATED),
            vec![ct(0, true, None), out(to)],
        );
        bed.put(
            r1().in_port(from).ct(CS_TRACKED | CS_ESTABLISHED),
            vec![out(to)],
        );
        bed.put(
            r1().in_port(from)
                .ct(CS_TRACKED | CS_ESTABLISHED | CS_RELATED),
            vec![out(to)],
        );
    }
}

#[test]
fn ftp_and_tftp_data_pass_a_firewall_that_allows_only_their_control_as_related() {
    let mut bed = Bed::new("ca", 2);
    let (a, b) = (1, 2);
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    helper_firewall(&mut bed, a, b, 0x0800);
    let (ha, hb) = (&bed.hosts[0], &bed.hosts[1]);
    let size = 300_000;
    let want = (size, digest(&pattern(size)));

    let server = ftp_server(hb, hb.addr.into(), size);
    let got = ftplib_client(ha, hb.addr.into());
    let (seen, _) = server.join().unwrap().unwrap().unwrap();
    assert_eq!(
        got,
        vec![want, want],
        "active, then passive; commands {seen:?}"
    );
    assert!(
        seen.iter().any(|l| l.starts_with("PORT 10,78,0,1,")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "PASV"), "{seen:?}");

    // TFTP: the server answers a read request from another port.
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let tftpd = hb
        .spawn(move || {
            let s = UdpSocket::bind((b_addr, 69)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            ready_tx.send(()).unwrap();
            let mut buf = [0; 512];
            let (n, client) = s.recv_from(&mut buf).unwrap();
            // DATA block 1, from a port of its own.
            let t = UdpSocket::bind((b_addr, 0)).unwrap();
            t.send_to(b"\x00\x03\x00\x01hello over tftp", client)
                .unwrap();
            (buf[..n].to_vec(), t.local_addr().unwrap().port())
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let reply = ha
        .run(move || {
            let s = UdpSocket::bind((a_addr, 0)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            s.send_to(b"\x00\x01file\x00octet\x00", (b_addr, 69))
                .unwrap();
            let mut buf = [0; 512];
            s.recv_from(&mut buf)
                .map(|(n, from)| (buf[..n].to_vec(), from.port()))
        })
        .unwrap();
    let (request, data_port) = tftpd.join().unwrap().unwrap();
    assert_eq!(request, b"\x00\x01file\x00octet\x00");
    let (data, from_port) = reply.expect("the TFTP reply passes as related");
    assert_eq!(data, b"\x00\x03\x00\x01hello over tftp");
    assert_eq!(from_port, data_port);
    assert_ne!(from_port, 69);

    let dump = bed.dump_conntrack();
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.1,dst=10.78.0.2,")
                && l.contains(",dport=21)")
                && l.ends_with(",helper=ftp")),
        "{dump:#?}"
    );
    assert!(
        dump.iter()
            .any(|l| l.starts_with("udp,") && l.ends_with(",helper=tftp")),
        "{dump:#?}"
    );
    // The active data connection, from b, and the passive one, from a.
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.2,dst=10.78.0.1,")),
        "{dump:#?}"
    );
    assert!(
        dump.iter()
            .filter(|l| l.starts_with("tcp,orig=(src=10.78.0.1,"))
            .count()
            >= 2,
        "{dump:#?}"
    );
    let expectations = bed
        .dp
        .conntrack()
        .counters
        .expectations
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(expectations >= 3, "{expectations}");
}

/// IPv6 FTP: Python's ftplib asks for its data connections with `EPRT`
/// (active) and `EPSV` (passive), RFC 2428; the helper expects them from
/// those commands and their replies, and they pass the firewall as +rel.
#[test]
fn ipv6_ftp_data_passes_as_related_from_eprt_and_epsv() {
    let mut bed = Bed::new("c7", 2);
    let (a, b) = (1, 2);
    helper_firewall(&mut bed, a, b, 0x86dd);
    let v6 = with_ipv6(&bed);
    let (ha, hb) = (&bed.hosts[0], &bed.hosts[1]);
    let size = 300_000;
    let want = (size, digest(&pattern(size)));

    let server = ftp_server(hb, v6[1].into(), size);
    let got = ftplib_client(ha, v6[1].into());
    let (seen, _) = server.join().unwrap().unwrap().unwrap();
    assert_eq!(
        got,
        vec![want, want],
        "active, then passive; commands {seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with(&format!("EPRT |2|{}|", v6[0]))),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "EPSV"), "{seen:?}");

    let dump = bed.dump_conntrack();
    assert!(
        dump.iter().any(
            |l| l.starts_with("tcp,orig=(src=fc00:78::1,dst=fc00:78::2,")
                && l.contains(",dport=21)")
                && l.ends_with(",helper=ftp")
        ),
        "{dump:#?}"
    );
    // The active data connection, from b, and the passive one, from a.
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=fc00:78::2,dst=fc00:78::1,")),
        "{dump:#?}"
    );
    assert!(
        dump.iter()
            .filter(|l| l.starts_with("tcp,orig=(src=fc00:78::1,"))
            .count()
            >= 2,
        "{dump:#?}"
    );
}

#[test]
fn ftp_through_snat_names_the_translated_address_and_shifts_sequences() {
    let mut bed = Bed::new("cn", 2);
    let (a, b) = (1, 2);
    let nat_ip = Ipv4Addr::new(10, 78, 0, 100);
    let snat = snat_to(nat_ip);
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    bed.put(
        m().ip().in_port(a),
        vec![ct_alg(1, Some(snat), CtHelper::Ftp), out(b)],
    );
    bed.put(
        m().ip().in_port(b),
        vec![ct(1, true, Some(NatAction::default())), out(a)],
    );
    neighbor(&bed.hosts[1], nat_ip, bed.hosts[0].mac);
    let size = 200_000;
    let want = (size, digest(&pattern(size)));
    let server = ftp_server(&bed.hosts[1], bed.hosts[1].addr.into(), size);
    let got = ftplib_client(&bed.hosts[0], bed.hosts[1].addr.into());
    let (seen, peer) = server.join().unwrap().unwrap().unwrap();
    assert_eq!(
        got,
        vec![want, want],
        "active, then passive; commands {seen:?}"
    );
    assert_eq!(
        peer.ip(),
        nat_ip,
        "b sees the control connection from the SNAT address"
    );
    // The PORT command names the translated address (2 bytes longer:
    // every later segment's sequence number shifts, or the session would
    // stall).
    assert!(
        seen.iter().any(|l| l.starts_with("PORT 10,78,0,100,")),
        "{seen:?}"
    );
    assert!(seen.iter().any(|l| l == "QUIT"), "{seen:?}");
    let dump = bed.dump_conntrack();
    // The active data connection from b to the translated address goes to
    // a; the passive one from a leaves translated.
    assert!(
        dump.iter().any(
            |l| l.starts_with("tcp,orig=(src=10.78.0.2,dst=10.78.0.100,")
                && l.contains("reply=(src=10.78.0.1,dst=10.78.0.2,")
        ),
        "{dump:#?}"
    );
    assert!(
        dump.iter()
            .any(|l| l.starts_with("tcp,orig=(src=10.78.0.1,dst=10.78.0.2,")
                && !l.contains("dport=21)")
                && l.contains("reply=(src=10.78.0.2,dst=10.78.0.100,")),
        "{dump:#?}"
    );
}
