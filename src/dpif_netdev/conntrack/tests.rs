//! The tracker on real frames: TCP windows, UDP, ICMP and errors about
//! connections, IPv6, zones, mark and label, NAT with checksums, timeouts,
//! limits and untrackable packets.

use super::packet::{TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN};
use super::state::*;
use super::*;
use messages::wire::checksum;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const C: [u8; 4] = [10, 0, 0, 3];

fn eth(ty: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ip4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, proto, 0, 0];
    h[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum::internet(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h.extend_from_slice(l4);
    h
}

fn l4_sum4(src: [u8; 4], dst: [u8; 4], proto: u8, seg: &mut [u8], at: usize) {
    let pseudo = checksum::pseudo_header_v4(
        u32::from_be_bytes(src),
        u32::from_be_bytes(dst),
        proto,
        seg.len() as u16,
    );
    let sum = !checksum::combine(pseudo, checksum::ones_sum(seg));
    seg[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

fn tcp_seg(sport: u16, dport: u16, flags: u16, seq: u32, ack: u32, data: usize) -> Vec<u8> {
    let mut t = Vec::new();
    t.extend_from_slice(&sport.to_be_bytes());
    t.extend_from_slice(&dport.to_be_bytes());
    t.extend_from_slice(&seq.to_be_bytes());
    t.extend_from_slice(&ack.to_be_bytes());
    t.extend_from_slice(&[0x50, flags as u8, 0xfa, 0x00, 0, 0, 0, 0]);
    t.resize(20 + data, 0x61);
    t
}

struct Tcp {
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
}

impl Tcp {
    fn frame(&self, flags: u16, seq: u32, ack: u32, data: usize) -> Vec<u8> {
        let mut t = tcp_seg(self.sport, self.dport, flags, seq, ack, data);
        l4_sum4(self.src, self.dst, 6, &mut t, 16);
        eth(0x0800, &ip4(self.src, self.dst, 6, &t))
    }
    fn rev(&self) -> Tcp {
        Tcp {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }
}

fn udp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&sport.to_be_bytes());
    u.extend_from_slice(&dport.to_be_bytes());
    u.extend_from_slice(&12u16.to_be_bytes());
    u.extend_from_slice(&[0, 0, 1, 2, 3, 4]);
    l4_sum4(src, dst, 17, &mut u, 6);
    eth(0x0800, &ip4(src, dst, 17, &u))
}

fn icmp(src: [u8; 4], dst: [u8; 4], ty: u8, code: u8, rest: &[u8]) -> Vec<u8> {
    let mut m = vec![ty, code, 0, 0];
    m.extend_from_slice(rest);
    let sum = checksum::internet(&m);
    m[2..4].copy_from_slice(&sum.to_be_bytes());
    eth(0x0800, &ip4(src, dst, 1, &m))
}

fn echo(src: [u8; 4], dst: [u8; 4], ty: u8, id: u16) -> Vec<u8> {
    let mut rest = id.to_be_bytes().to_vec();
    rest.extend_from_slice(&[0, 1, 9, 9, 9, 9]);
    icmp(src, dst, ty, 0, &rest)
}

/// An ICMP error from `src` to `dst` quoting `frame`'s IP packet.
fn icmp_error(src: [u8; 4], dst: [u8; 4], frame: &[u8]) -> Vec<u8> {
    let mut rest = vec![0, 0, 0, 0];
    rest.extend_from_slice(&frame[14..14 + 28]);
    icmp(src, dst, 3, 3, &rest)
}

fn v6(last: u8) -> [u8; 16] {
    let mut a = [0; 16];
    a[0] = 0xfd;
    a[15] = last;
    a
}

fn ip6(src: [u8; 16], dst: [u8; 16], proto: u8, l4: &mut [u8], sum_at: usize) -> Vec<u8> {
    let pseudo = checksum::pseudo_header_v6(&src, &dst, proto, l4.len() as u32);
    let sum = !checksum::combine(pseudo, checksum::ones_sum(l4));
    l4[sum_at..sum_at + 2].copy_from_slice(&sum.to_be_bytes());
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    h.extend_from_slice(&[proto, 64]);
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    h.extend_from_slice(l4);
    eth(0x86dd, &h)
}

fn ct() -> Conntrack {
    Conntrack::new(ConntrackConfig::default())
}

fn commit(zone: u16) -> CtCommand {
    CtCommand {
        zone,
        commit: true,
        ..CtCommand::default()
    }
}

/// Runs `frame` through `ct` fresh (no earlier ct state) and returns its
/// state.
fn run(ct: &Conntrack, frame: &mut Vec<u8>, cmd: &CtCommand, now: u64) -> CtMetadata {
    let mut md = CtMetadata::default();
    ct.execute(frame, &mut md, cmd, now);
    md
}

fn st(ct: &Conntrack, frame: &[u8], cmd: &CtCommand, now: u64) -> u8 {
    run(ct, &mut frame.to_vec(), cmd, now).state
}

const NO_COMMIT: CtCommand = CtCommand {
    zone: 0,
    commit: false,
    force: false,
    mark: None,
    label: None,
    nat: None,
    timeout_policy: 0,
    alg: None,
};

#[test]
fn tcp_handshake_data_and_out_of_window() {
    let ct = ct();
    let c = Tcp {
        src: A,
        dst: B,
        sport: 40000,
        dport: 80,
    };
    let s = c.rev();
    // Not committed: new, but nothing kept.
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN, 100, 0, 0), &NO_COMMIT, 0),
        TRACKED | NEW
    );
    assert!(ct.is_empty());
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN, 100, 0, 0), &commit(0), 0),
        TRACKED | NEW
    );
    assert_eq!(ct.len(), 1);
    // A retransmitted SYN is still new.
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN, 100, 0, 0), &NO_COMMIT, 1),
        TRACKED | NEW
    );
    assert_eq!(
        st(
            &ct,
            &s.frame(TCP_SYN | TCP_ACK, 7000, 101, 0),
            &NO_COMMIT,
            2
        ),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    assert_eq!(
        st(&ct, &c.frame(TCP_ACK, 101, 7001, 0), &NO_COMMIT, 3),
        TRACKED | ESTABLISHED
    );
    assert_eq!(
        st(
            &ct,
            &c.frame(TCP_ACK | TCP_PSH, 101, 7001, 1000),
            &NO_COMMIT,
            4
        ),
        TRACKED | ESTABLISHED
    );
    // Far beyond the window the server advertised (0xfa00 bytes): invalid.
    assert_eq!(
        st(
            &ct,
            &c.frame(TCP_ACK, 101 + 200_000, 7001, 100),
            &NO_COMMIT,
            5
        ),
        TRACKED | INVALID
    );
    // Acking what the client never sent: invalid.
    assert_eq!(
        st(
            &ct,
            &s.frame(TCP_ACK, 7001, 101 + 300_000, 0),
            &NO_COMMIT,
            5
        ),
        TRACKED | INVALID
    );
    let dump: Vec<String> = ct
        .entries(None, 6)
        .iter()
        .map(|e| dump::format_entry(e, false))
        .collect();
    assert_eq!(
        dump,
        ["tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),reply=(src=10.0.0.2,dst=10.0.0.1,sport=80,dport=40000),protoinfo=(state=ESTABLISHED)"]
    );
    // Closing: FIN both ways, then the last ack.
    assert_eq!(
        st(
            &ct,
            &c.frame(TCP_ACK | TCP_FIN, 1101, 7001, 0),
            &NO_COMMIT,
            7
        ) & ESTABLISHED,
        ESTABLISHED
    );
    assert_eq!(
        st(
            &ct,
            &s.frame(TCP_ACK | TCP_FIN, 7001, 1102, 0),
            &NO_COMMIT,
            8
        ) & ESTABLISHED,
        ESTABLISHED
    );
    assert_eq!(
        st(&ct, &c.frame(TCP_ACK, 1102, 7002, 0), &NO_COMMIT, 9),
        TRACKED | ESTABLISHED
    );
    let e = &ct.entries(None, 10)[0];
    assert_eq!(e.tcp_state.map(|t| t.dump_name()), Some("TIME_WAIT"));
    // A new SYN on the closed connection replaces it.
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN, 99_000, 0, 0), &commit(0), 11),
        TRACKED | NEW
    );
    assert_eq!(
        ct.entries(None, 12)[0].tcp_state.map(|t| t.dump_name()),
        Some("SYN_SENT")
    );
}

#[test]
fn what_cannot_open_a_connection_is_invalid() {
    let ct = ct();
    let c = Tcp {
        src: A,
        dst: B,
        sport: 40000,
        dport: 80,
    };
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN | TCP_ACK, 1, 1, 0), &commit(0), 0),
        TRACKED | INVALID
    );
    assert_eq!(
        st(&ct, &c.frame(TCP_SYN | TCP_RST, 1, 1, 0), &commit(0), 0),
        TRACKED | INVALID
    );
    assert_eq!(
        st(&ct, &echo(A, B, 0, 7), &commit(0), 0),
        TRACKED | INVALID,
        "an echo reply"
    );
    assert!(ct.is_empty());
    // A midstream ACK may open one (OVS picks up established streams).
    assert_eq!(
        st(&ct, &c.frame(TCP_ACK, 1, 1, 10), &commit(0), 0),
        TRACKED | NEW
    );
    assert!(ct.counters.invalid.load(Ordering::Relaxed) >= 3);
}

#[test]
fn rst_must_hit_the_sequence() {
    let ct = ct();
    let c = Tcp {
        src: A,
        dst: B,
        sport: 1234,
        dport: 22,
    };
    let s = c.rev();
    st(&ct, &c.frame(TCP_SYN, 100, 0, 0), &commit(0), 0);
    st(
        &ct,
        &s.frame(TCP_SYN | TCP_ACK, 7000, 101, 0),
        &NO_COMMIT,
        0,
    );
    st(&ct, &c.frame(TCP_ACK, 101, 7001, 0), &NO_COMMIT, 0);
    assert_eq!(
        st(
            &ct,
            &s.frame(TCP_RST | TCP_ACK, 9000, 101, 0),
            &NO_COMMIT,
            0
        ),
        TRACKED | INVALID
    );
    assert_eq!(
        st(
            &ct,
            &s.frame(TCP_RST | TCP_ACK, 7001, 101, 0),
            &NO_COMMIT,
            0
        ),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
}

#[test]
fn udp_and_icmp_echo() {
    let ct = ct();
    assert_eq!(st(&ct, &udp(A, 5000, B, 53), &commit(0), 0), TRACKED | NEW);
    assert_eq!(
        st(&ct, &udp(A, 5000, B, 53), &NO_COMMIT, 1),
        TRACKED | NEW,
        "no reply yet"
    );
    assert_eq!(
        st(&ct, &udp(B, 53, A, 5000), &NO_COMMIT, 2),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    assert_eq!(
        st(&ct, &udp(A, 5000, B, 53), &NO_COMMIT, 3),
        TRACKED | ESTABLISHED
    );
    // Unsolicited from b: new, never established.
    assert_eq!(st(&ct, &udp(B, 53, A, 5001), &NO_COMMIT, 3), TRACKED | NEW);

    assert_eq!(st(&ct, &echo(A, B, 8, 77), &commit(0), 0), TRACKED | NEW);
    assert_eq!(
        st(&ct, &echo(B, A, 0, 77), &NO_COMMIT, 1),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    assert_eq!(
        st(&ct, &echo(B, A, 0, 78), &NO_COMMIT, 1),
        TRACKED | INVALID,
        "another id"
    );
    let dump: Vec<String> = ct
        .entries(None, 2)
        .iter()
        .map(|e| dump::format_entry(e, false))
        .collect();
    assert_eq!(
        dump,
        [
            "icmp,orig=(src=10.0.0.1,dst=10.0.0.2,id=77,type=8,code=0),reply=(src=10.0.0.2,dst=10.0.0.1,id=77,type=0,code=0)",
            "udp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=5000,dport=53),reply=(src=10.0.0.2,dst=10.0.0.1,sport=53,dport=5000)",
        ]
    );
}

#[test]
fn icmp_errors_about_a_tracked_connection_are_related() {
    let ct = ct();
    let c = Tcp {
        src: A,
        dst: B,
        sport: 40000,
        dport: 80,
    };
    let syn = c.frame(TCP_SYN, 100, 0, 0);
    st(&ct, &syn, &commit(0), 0);
    // b (or a router on the way, c) says the port is unreachable.
    assert_eq!(
        st(&ct, &icmp_error(B, A, &syn), &NO_COMMIT, 1),
        TRACKED | RELATED | REPLY_DIR
    );
    assert_eq!(
        st(&ct, &icmp_error(C, A, &syn), &NO_COMMIT, 1),
        TRACKED | RELATED | REPLY_DIR
    );
    // About a connection nobody made: invalid, and never committed.
    let other = Tcp {
        src: A,
        dst: B,
        sport: 40001,
        dport: 80,
    }
    .frame(TCP_SYN, 1, 0, 0);
    assert_eq!(
        st(&ct, &icmp_error(B, A, &other), &commit(0), 1),
        TRACKED | INVALID
    );
    // Quoting a packet a did not send: invalid.
    assert_eq!(
        st(&ct, &icmp_error(B, C, &syn), &NO_COMMIT, 1),
        TRACKED | INVALID
    );
    // UDP too.
    let u = udp(A, 5000, B, 53);
    st(&ct, &u, &commit(0), 0);
    assert_eq!(
        st(&ct, &icmp_error(B, A, &u), &NO_COMMIT, 1),
        TRACKED | RELATED | REPLY_DIR
    );
    assert_eq!(ct.len(), 2);
}

#[test]
fn ipv6_tcp_and_icmpv6() {
    let ct = ct();
    let (a, b) = (v6(1), v6(2));
    let mut syn = tcp_seg(40000, 443, TCP_SYN, 5, 0, 0);
    let syn = ip6(a, b, 6, &mut syn, 16);
    let mut synack = tcp_seg(443, 40000, TCP_SYN | TCP_ACK, 900, 6, 0);
    let synack = ip6(b, a, 6, &mut synack, 16);
    assert_eq!(st(&ct, &syn, &commit(3), 0), TRACKED | NEW);
    assert_eq!(
        st(&ct, &synack, &commit(3), 1),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    let mut req = vec![128, 0, 0, 0, 0, 9, 0, 1];
    let req = ip6(a, b, 58, &mut req, 2);
    let mut rep = vec![129, 0, 0, 0, 0, 9, 0, 1];
    let rep = ip6(b, a, 58, &mut rep, 2);
    assert_eq!(st(&ct, &req, &commit(3), 0), TRACKED | NEW);
    assert_eq!(
        st(&ct, &rep, &commit(3), 1),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    // A "port unreachable" from b about the SYN.
    let mut err = vec![1, 4, 0, 0, 0, 0, 0, 0];
    err.extend_from_slice(&syn[14..14 + 48]);
    let err = ip6(b, a, 58, &mut err, 2);
    assert_eq!(st(&ct, &err, &commit(3), 2), TRACKED | RELATED | REPLY_DIR);
    let dump: Vec<String> = ct
        .entries(Some(3), 2)
        .iter()
        .map(|e| dump::format_entry(e, false))
        .collect();
    assert_eq!(
        dump,
        [
            "tcp,orig=(src=fd00::1,dst=fd00::2,sport=40000,dport=443),reply=(src=fd00::2,dst=fd00::1,sport=443,dport=40000),zone=3,protoinfo=(state=ESTABLISHED)",
            "icmpv6,orig=(src=fd00::1,dst=fd00::2,id=9,type=128,code=0),reply=(src=fd00::2,dst=fd00::1,id=9,type=129,code=0),zone=3",
        ]
    );
    // A fragment header: not tracked.
    let mut frag = vec![6, 0, 0, 0, 0, 0, 0, 1];
    frag.extend_from_slice(&tcp_seg(1, 2, TCP_SYN, 0, 0, 0));
    let mut f = ip6(a, b, 44, &mut frag, 0);
    assert_eq!(run(&ct, &mut f, &commit(3), 0).state, TRACKED | INVALID);
}

#[test]
fn zones_keep_connections_apart() {
    let ct = ct();
    let u = udp(A, 5000, B, 53);
    st(&ct, &u, &commit(1), 0);
    assert_eq!(
        st(&ct, &udp(B, 53, A, 5000), &NO_COMMIT, 1),
        TRACKED | NEW,
        "zone 0"
    );
    assert_eq!(
        st(
            &ct,
            &udp(B, 53, A, 5000),
            &CtCommand {
                zone: 1,
                ..NO_COMMIT
            },
            1
        ),
        TRACKED | ESTABLISHED | REPLY_DIR
    );
    // Entering another zone forgets the state of the previous one.
    let mut md = run(&ct, &mut u.clone(), &commit(1), 2);
    assert_eq!(md.zone, 1);
    ct.execute(
        &mut u.clone(),
        &mut md,
        &CtCommand {
            zone: 2,
            ..NO_COMMIT
        },
        2,
    );
    assert_eq!((md.state, md.zone), (TRACKED | NEW, 2));
    ct.flush(Some(1));
    assert!(ct.is_empty());
}

#[test]
fn mark_and_label_stay_with_the_connection() {
    let ct = ct();
    let u = udp(A, 5000, B, 53);
    let cmd = CtCommand {
        mark: Some((0x12, 0xff)),
        label: Some((1 << 100, 1 << 100)),
        ..commit(0)
    };
    let md = run(&ct, &mut u.clone(), &cmd, 0);
    assert_eq!((md.mark, md.label), (0x12, 1 << 100));
    let md = run(&ct, &mut udp(B, 53, A, 5000), &NO_COMMIT, 1);
    assert_eq!((md.mark, md.label), (0x12, 1 << 100));
    // A masked write keeps the other bits.
    let cmd = CtCommand {
        mark: Some((0x100, 0xf00)),
        ..commit(0)
    };
    assert_eq!(run(&ct, &mut u.clone(), &cmd, 2).mark, 0x112);
    let orig = md.orig.unwrap();
    assert_eq!((orig.src_port, orig.dst_port, orig.proto), (5000, 53, 17));
    assert_eq!(&orig.src[..4], &A);
    let line = dump::format_entry(&ct.entries(None, 3)[0], false);
    assert!(
        line.ends_with(",mark=274,labels=0x10000000000000000000000000"),
        "{line}"
    );
}

fn frame_ok(frame: &[u8]) -> packet::CtPacket {
    packet::parse(frame).expect("a frame with valid checksums")
}

fn ip_of(frame: &[u8], src: bool) -> [u8; 4] {
    let at = if src { 26 } else { 30 };
    frame[at..at + 4].try_into().unwrap()
}

fn ports_of(frame: &[u8]) -> (u16, u16) {
    (
        u16::from_be_bytes([frame[34], frame[35]]),
        u16::from_be_bytes([frame[36], frame[37]]),
    )
}

fn snat_to(addr: [u8; 4], ports: Option<(u16, u16)>) -> CtCommand {
    let mut a = [0; 16];
    a[..4].copy_from_slice(&addr);
    let (port_min, port_max) = ports.unwrap_or((0, 0));
    CtCommand {
        nat: Some(NatSpec {
            kind: Some(NatKind::Src),
            addr_min: a,
            addr_max: a,
            port_min,
            port_max,
            ..NatSpec::default()
        }),
        ..commit(0)
    }
}

#[test]
fn snat_rewrites_both_directions_with_valid_checksums() {
    let ct = ct();
    let nat_ip = [192, 168, 9, 9];
    let c = Tcp {
        src: A,
        dst: B,
        sport: 40000,
        dport: 80,
    };
    let mut syn = c.frame(TCP_SYN, 100, 0, 0);
    let md = run(&ct, &mut syn, &snat_to(nat_ip, None), 0);
    assert_eq!(md.state, TRACKED | NEW | SRC_NAT);
    frame_ok(&syn);
    assert_eq!((ip_of(&syn, true), ip_of(&syn, false)), (nat_ip, B));
    assert_eq!(ports_of(&syn), (40000, 80), "the original port was free");
    // b answers the translated address; the reply is un-NATed.
    let s = Tcp {
        src: B,
        dst: nat_ip,
        sport: 80,
        dport: 40000,
    };
    let mut synack = s.frame(TCP_SYN | TCP_ACK, 7000, 101, 0);
    let nat_only = CtCommand {
        nat: Some(NatSpec::default()),
        ..NO_COMMIT
    };
    let md = run(&ct, &mut synack, &nat_only, 1);
    assert_eq!(md.state, TRACKED | ESTABLISHED | REPLY_DIR | DST_NAT);
    frame_ok(&synack);
    assert_eq!((ip_of(&synack, true), ip_of(&synack, false)), (B, A));
    let orig = md.orig.unwrap();
    assert_eq!((&orig.src[..4], &orig.dst[..4]), (&A[..], &B[..]));
    let line = dump::format_entry(&ct.entries(None, 1)[0], false);
    assert_eq!(
        line,
        "tcp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=40000,dport=80),reply=(src=10.0.0.2,dst=192.168.9.9,sport=80,dport=40000),protoinfo=(state=ESTABLISHED)"
    );
    // A second client with the same port gets another port.
    let c2 = Tcp {
        src: C,
        dst: B,
        sport: 40000,
        dport: 80,
    };
    let mut syn2 = c2.frame(TCP_SYN, 5, 0, 0);
    run(&ct, &mut syn2, &snat_to(nat_ip, None), 2);
    frame_ok(&syn2);
    assert_eq!(ip_of(&syn2, true), nat_ip);
    assert_ne!(ports_of(&syn2).0, 40000);
    assert!(ports_of(&syn2).0 >= 1024);
}

#[test]
fn snat_port_range_exhaustion_is_counted() {
    let ct = ct();
    let nat_ip = [192, 168, 9, 9];
    let cmd = snat_to(nat_ip, Some((2000, 2001)));
    for (i, src) in [A, C, [10, 0, 0, 4]].into_iter().enumerate() {
        let mut f = udp(src, 6000, B, 53);
        let md = run(&ct, &mut f, &cmd, 0);
        if i < 2 {
            assert_eq!(md.state, TRACKED | NEW | SRC_NAT);
            assert!((2000..=2001).contains(&ports_of(&f).0));
            frame_ok(&f);
        } else {
            assert_eq!(md.state, TRACKED | NEW, "not committed");
        }
    }
    assert_eq!(ct.len(), 2);
    assert_eq!(ct.counters.nat_exhausted.load(Ordering::Relaxed), 1);
}

#[test]
fn dnat_balances_over_a_range_and_replies_come_from_the_vip() {
    let ct = ct();
    let vip = [10, 0, 0, 100];
    let backends = [[10, 0, 1, 1], [10, 0, 1, 2]];
    let mut min = [0; 16];
    min[..4].copy_from_slice(&backends[0]);
    let mut max = [0; 16];
    max[..4].copy_from_slice(&backends[1]);
    let cmd = CtCommand {
        nat: Some(NatSpec {
            kind: Some(NatKind::Dst),
            addr_min: min,
            addr_max: max,
            port_min: 8080,
            port_max: 8080,
            ..NatSpec::default()
        }),
        ..commit(0)
    };
    let mut seen = std::collections::BTreeSet::new();
    for sport in 30000..30040u16 {
        let c = Tcp {
            src: A,
            dst: vip,
            sport,
            dport: 80,
        };
        let mut syn = c.frame(TCP_SYN, 1, 0, 0);
        let md = run(&ct, &mut syn, &cmd, 0);
        assert_eq!(md.state, TRACKED | NEW | DST_NAT);
        frame_ok(&syn);
        let backend = ip_of(&syn, false);
        assert!(backends.contains(&backend));
        assert_eq!(ports_of(&syn), (sport, 8080));
        seen.insert(backend);
        // The backend's answer leaves as the VIP's.
        let s = Tcp {
            src: backend,
            dst: A,
            sport: 8080,
            dport: sport,
        };
        let mut synack = s.frame(TCP_SYN | TCP_ACK, 50, 2, 0);
        let md = run(&ct, &mut synack, &cmd, 1);
        assert_eq!(md.state, TRACKED | ESTABLISHED | REPLY_DIR | SRC_NAT);
        frame_ok(&synack);
        assert_eq!(
            (ip_of(&synack, true), ports_of(&synack)),
            (vip, (80, sport))
        );
    }
    assert_eq!(seen.len(), 2, "both backends used");
}

#[test]
fn an_icmp_error_about_a_natted_connection_is_translated_inside_too() {
    let ct = ct();
    let vip = [10, 0, 0, 100];
    let backend = [10, 0, 1, 1];
    let mut a16 = [0; 16];
    a16[..4].copy_from_slice(&backend);
    let cmd = CtCommand {
        nat: Some(NatSpec {
            kind: Some(NatKind::Dst),
            addr_min: a16,
            addr_max: a16,
            ..NatSpec::default()
        }),
        ..commit(0)
    };
    let u = udp(A, 5000, vip, 53);
    let mut sent = u.clone();
    run(&ct, &mut sent, &cmd, 0);
    assert_eq!(ip_of(&sent, false), backend);
    // The backend says "port unreachable" about what it received.
    let mut err = icmp_error(backend, A, &sent);
    let md = run(&ct, &mut err, &cmd, 1);
    assert_eq!(md.state, TRACKED | RELATED | REPLY_DIR | SRC_NAT);
    frame_ok(&err);
    assert_eq!(ip_of(&err, true), vip, "outer source");
    // The quoted packet is the one a sent.
    assert_eq!(&err[14 + 28..14 + 28 + 20][12..20], &u[14..34][12..20]);
}

#[test]
fn zone_timeout_policies_apply_to_the_connections_committed_with_them() {
    let config = ConntrackConfig {
        timeouts: TimeoutPolicy {
            udp_first: 50,
            ..TimeoutPolicy::default()
        },
        zone_timeouts: [
            (
                5,
                ZoneTimeouts {
                    udp_first: Some(7),
                    udp_multiple: Some(9),
                    ..Default::default()
                },
            ),
            (
                6,
                ZoneTimeouts {
                    tcp_syn_sent: Some(3),
                    ..Default::default()
                },
            ),
            (
                7,
                ZoneTimeouts {
                    udp_first: Some(7),
                    udp_multiple: Some(9),
                    ..Default::default()
                },
            ),
        ]
        .into(),
        ..ConntrackConfig::default()
    };
    let policies = config.timeout_policies();
    // Equal policies share an id; the default is 0.
    assert_eq!(policies.zones(), &[(5, 1), (6, 2), (7, 1)].into());
    assert_eq!(policies.get(2).udp_first, 50, "unset: the default policy's");
    assert_eq!(policies.get(9), policies.get(0));
    let ct = Conntrack::new(config);
    let in_zone5 = CtCommand {
        timeout_policy: 1,
        ..commit(5)
    };
    st(&ct, &udp(A, 1, B, 2), &in_zone5, 0);
    st(&ct, &udp(A, 3, B, 4), &commit(0), 0);
    let timeouts = |now| {
        let mut e: Vec<(u16, u32)> = ct
            .entries(None, now)
            .iter()
            .map(|e| (e.orig.zone, e.timeout_s))
            .collect();
        e.sort();
        e
    };
    assert_eq!(timeouts(0), [(0, 50), (5, 7)]);
    // The reply updates it with its own policy's timeout, whatever the
    // `ct` that sees the reply names.
    st(
        &ct,
        &udp(B, 2, A, 1),
        &CtCommand {
            zone: 5,
            ..NO_COMMIT
        },
        1_000,
    );
    assert_eq!(timeouts(1_000), [(0, 49), (5, 9)]);
    assert!(ct.entries(Some(5), 10_000).is_empty());
}

#[test]
fn idle_connections_expire_by_state() {
    let config = ConntrackConfig {
        timeouts: TimeoutPolicy {
            udp_first: 5,
            udp_multiple: 20,
            ..TimeoutPolicy::default()
        },
        ..ConntrackConfig::default()
    };
    let ct = Conntrack::new(config);
    st(&ct, &udp(A, 1, B, 2), &commit(0), 0);
    assert_eq!(ct.entries(None, 4_000).len(), 1);
    assert!(ct.entries(None, 5_000).is_empty());
    assert_eq!(
        st(&ct, &udp(B, 2, A, 1), &NO_COMMIT, 5_000),
        TRACKED | NEW,
        "gone"
    );
    st(&ct, &udp(A, 1, B, 2), &commit(0), 10_000);
    st(&ct, &udp(B, 2, A, 1), &NO_COMMIT, 11_000);
    assert_eq!(ct.entries(None, 11_000)[0].timeout_s, 20);
    assert_eq!(
        st(&ct, &udp(A, 1, B, 2), &NO_COMMIT, 30_000),
        TRACKED | ESTABLISHED
    );
    // The sweep removes expired connections without packets of theirs.
    st(&ct, &udp(C, 1, B, 2), &NO_COMMIT, 60_000);
    assert!(ct.is_empty());
    assert!(ct.counters.expired.load(Ordering::Relaxed) >= 2);
}

#[test]
fn a_full_table_refuses_commits_and_counts_them() {
    let mut zone_limits = std::collections::BTreeMap::new();
    zone_limits.insert(7, 1);
    let ct = Conntrack::new(ConntrackConfig {
        max_connections: 3,
        zone_limits,
        ..ConntrackConfig::default()
    });
    for port in 1..=4 {
        let md = run(&ct, &mut udp(A, port, B, 53), &commit(0), 0);
        assert_eq!(md.state, TRACKED | NEW);
    }
    assert_eq!(ct.len(), 3);
    assert_eq!(ct.counters.full.load(Ordering::Relaxed), 1);
    ct.flush(None);
    run(&ct, &mut udp(A, 1, B, 53), &commit(7), 0);
    run(&ct, &mut udp(A, 2, B, 53), &commit(7), 0);
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.counters.full.load(Ordering::Relaxed), 2);
}

#[test]
fn untrackable_packets_are_invalid() {
    let ct = ct();
    let good = udp(A, 5000, B, 53);
    let mut cases: Vec<Vec<u8>> = Vec::new();
    cases.push(good[..30].to_vec()); // truncated IP header
    let mut bad_ip_sum = good.clone();
    bad_ip_sum[24] ^= 1;
    cases.push(bad_ip_sum);
    let mut bad_udp_sum = good.clone();
    bad_udp_sum[40] ^= 1;
    cases.push(bad_udp_sum);
    let mut later_frag = good.clone();
    later_frag[20] = 0x00;
    later_frag[21] = 0x10;
    let sum = checksum::internet(&{
        let mut h = later_frag[14..34].to_vec();
        h[10] = 0;
        h[11] = 0;
        h
    });
    later_frag[24..26].copy_from_slice(&sum.to_be_bytes());
    cases.push(later_frag);
    let mut port0 = udp(A, 0, B, 53);
    cases.push(std::mem::take(&mut port0));
    cases.push(eth(0x0806, &[0; 28])); // ARP
    for (i, f) in cases.iter_mut().enumerate() {
        let md = run(&ct, f, &commit(4), 0);
        assert_eq!((md.state, md.zone), (TRACKED | INVALID, 4), "case {i}");
    }
    assert!(ct.is_empty());
    assert_eq!(
        ct.counters.untrackable.load(Ordering::Relaxed),
        cases.len() as u64
    );
}

/// OVS 3.1's userspace tracker has no SCTP: it tracks it as another
/// protocol, by addresses alone (ports 0 in its dump), so two
/// associations between the same addresses are one connection.
#[test]
fn sctp_is_tracked_by_addresses_alone_as_in_ovs() {
    let ct = ct();
    let sctp = |src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16| {
        let mut l4 = vec![0u8; 12];
        l4[0..2].copy_from_slice(&sport.to_be_bytes());
        l4[2..4].copy_from_slice(&dport.to_be_bytes());
        eth(0x0800, &ip4(src, dst, 132, &l4))
    };
    assert_eq!(
        st(&ct, &sctp(A, 1000, B, 2000), &commit(3), 0),
        TRACKED | NEW
    );
    assert_eq!(
        st(&ct, &sctp(A, 1001, B, 2001), &commit(3), 1),
        TRACKED | NEW
    );
    assert_eq!(ct.len(), 1);
    let reply = st(&ct, &sctp(B, 2000, A, 1000), &commit(3), 2);
    assert_eq!(reply & (ESTABLISHED | REPLY_DIR), ESTABLISHED | REPLY_DIR);
    let line = dump::format_entry(&ct.entries(None, 3)[0], false);
    assert!(
        line.starts_with("sctp,orig=(src=10.0.0.1,dst=10.0.0.2,sport=0,dport=0),"),
        "{line}"
    );
}

#[test]
fn force_starts_over_from_the_reply_direction() {
    let ct = ct();
    st(&ct, &udp(A, 5000, B, 53), &commit(0), 0);
    let force = CtCommand {
        force: true,
        ..commit(0)
    };
    assert_eq!(st(&ct, &udp(B, 53, A, 5000), &force, 1), TRACKED | NEW);
    let e = &ct.entries(None, 1)[0];
    assert_eq!(&e.orig.src.addr[..4], &B);
    // In the original direction, force changes nothing.
    assert_eq!(st(&ct, &udp(B, 53, A, 5000), &force, 2), TRACKED | NEW);
    assert_eq!(ct.len(), 1);
}

#[test]
fn a_natted_packet_is_found_again_by_a_later_ct_in_the_zone() {
    let ct = ct();
    let nat_ip = [192, 168, 9, 9];
    let mut f = udp(A, 5000, B, 53);
    let mut md = run(&ct, &mut f, &snat_to(nat_ip, None), 0);
    // A second ct (after recirculation) in the same zone, without nat.
    ct.execute(&mut f, &mut md, &NO_COMMIT, 1);
    assert_eq!(md.state & (TRACKED | NEW | INVALID), TRACKED | NEW);
    assert_eq!(ct.len(), 1);
    // And with nat: not translated twice.
    let before = f.clone();
    let nat_only = CtCommand {
        nat: Some(NatSpec::default()),
        ..NO_COMMIT
    };
    ct.execute(&mut f, &mut md, &nat_only, 2);
    assert_eq!(f, before);
    assert_eq!(md.state & INVALID, 0);
}

#[test]
fn random_frames_never_panic() {
    let ct = ct();
    let mut seed = 0x1234_5678_u64;
    let mut next = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let base = [
        Tcp {
            src: A,
            dst: B,
            sport: 1,
            dport: 2,
        }
        .frame(TCP_SYN, 1, 0, 0),
        udp(A, 5000, B, 53),
        icmp_error(B, A, &udp(A, 5000, B, 53)),
    ];
    for i in 0..20_000 {
        let mut f = base[i % 3].clone();
        let n = (next() % 4) as usize;
        for _ in 0..n {
            let at = (next() as usize) % f.len();
            f[at] = next() as u8;
        }
        f.truncate((next() as usize) % (f.len() + 1));
        let cmd = CtCommand {
            nat: (i % 2 == 0).then(|| snat_to(C, Some((1, 3))).nat.unwrap()),
            ..commit((i % 3) as u16)
        };
        run(&ct, &mut f, &cmd, i as u64);
    }
    let _ = (TCP_FIN, TCP_RST);
}
