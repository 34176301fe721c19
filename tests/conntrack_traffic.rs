//! Real traffic through the userspace datapath's connection tracker:
//! hosts in network namespaces this test creates, joined by veth pairs to
//! an embedded datapath whose megaflows (installed directly, as the slow
//! path would) send packets through `ct` and recirculate them. A stateful
//! firewall with a 1 MiB TCP transfer and an ICMP error passing as `+rel`,
//! SNAT, and DNAT to one of two backends.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::dpif::{DpifOp, FlowPut, PutMode};
use messages::flow::{CS_ESTABLISHED, CS_INVALID, CS_NEW, CS_RELATED, CS_TRACKED};
use messages::odp::{CtAction, EthKey, NatAction, NatAddrs, NatKind, OdpAction, SetHeader};
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

#[test]
fn stateful_firewall_passes_replies_and_related_errors_only() {
    let mut bed = Bed::new("cf", 2);
    let (a, b) = (1, 2);
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    bed.put(
        m().ip().ct(0),
        vec![ct(0, false, None), OdpAction::Recirc(1)],
    );
    let r1 = || M::default().recirc(1).ip();
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
    bed.put(r1().in_port(b).ct(CS_TRACKED | CS_RELATED), vec![out(a)]);
    bed.put(r1().in_port(b).ct(CS_TRACKED | CS_INVALID), vec![]);
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

#[test]
fn snat_shows_b_another_source_address() {
    let mut bed = Bed::new("cs", 2);
    let (a, b) = (1, 2);
    let nat_ip = Ipv4Addr::new(10, 78, 0, 100);
    let snat = NatAction {
        kind: Some(NatKind::Src),
        addrs: Some(NatAddrs::V4 {
            min: nat_ip.into(),
            max: nat_ip.into(),
        }),
        ..NatAction::default()
    };
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

#[test]
fn udp_datagrams_larger_than_the_mtu_pass_the_firewall_reassembled() {
    let mut bed = Bed::new("cg", 2);
    let (a, b) = (1, 2);
    bed.put(m().arp().in_port(a), vec![out(b)]);
    bed.put(m().arp().in_port(b), vec![out(a)]);
    bed.put(
        m().ip().ct(0),
        vec![ct(0, false, None), OdpAction::Recirc(1)],
    );
    let r1 = || M::default().recirc(1).ip();
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
    let (ha, hb) = (&bed.hosts[0], &bed.hosts[1]);
    let (a_addr, b_addr) = (ha.addr, hb.addr);
    // 4000 bytes: three IPv4 fragments on the veths' 1500-byte MTU.
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
    assert_eq!(got.len(), 3, "b got every big datagram from a");
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
    let status = bed.dp.conntrack().fragments.status();
    let completed = status
        .lines()
        .find_map(|l| l.trim().strip_prefix("v4 frags completed: "))
        .and_then(|n| n.parse::<u64>().ok());
    assert_eq!(completed, Some(30), "{status}");
    assert!(status.contains("        num frag: 0\n"), "{status}");
    let dump = bed.dump_conntrack();
    assert!(
        dump.iter()
            .any(|l| l.starts_with("udp,orig=(src=10.78.0.1,dst=10.78.0.2,")
                && l.contains("dport=6100)")),
        "{dump:#?}"
    );
    assert!(!dump.iter().any(|l| l.contains("dport=6200)")), "{dump:#?}");
}
