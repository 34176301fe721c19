//! The reassembler on real frames: in order, out of order, overlaps, too
//! small and too many fragments, expiry, IPv6, and NAT carried back to the
//! fragments.

use super::*;
use crate::dpif_netdev::conntrack::packet;

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];

fn eth(ty: u16, l3: &[u8]) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ty.to_be_bytes());
    f.extend_from_slice(l3);
    f
}

fn ip4_header(total: usize, id: u16, frag: u16, src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
    h[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h[6..8].copy_from_slice(&frag.to_be_bytes());
    h.extend_from_slice(&src);
    h.extend_from_slice(&dst);
    let sum = checksum::internet(&h);
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    h
}

/// A UDP segment of `len` payload bytes with its checksum for `src`→`dst`.
fn udp(src: &[u8], dst: &[u8], len: usize) -> Vec<u8> {
    let mut u = vec![0x30, 0x39, 0x00, 0x35, 0, 0, 0, 0];
    u[4..6].copy_from_slice(&((8 + len) as u16).to_be_bytes());
    u.extend((0..len).map(|i| (i % 251) as u8));
    let pseudo = if src.len() == 4 {
        checksum::pseudo_header_v4(
            u32::from_be_bytes(src.try_into().unwrap()),
            u32::from_be_bytes(dst.try_into().unwrap()),
            17,
            u.len() as u16,
        )
    } else {
        checksum::pseudo_header_v6(
            src.try_into().unwrap(),
            dst.try_into().unwrap(),
            17,
            u.len() as u32,
        )
    };
    let sum = !checksum::combine(pseudo, checksum::ones_sum(&u));
    u[6..8].copy_from_slice(&sum.to_be_bytes());
    u
}

/// An IPv4 UDP datagram, whole and cut into fragments of `per` data bytes.
fn v4_fragments(id: u16, len: usize, per: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let seg = udp(&A, &B, len);
    let mut whole = ip4_header(20 + seg.len(), id, 0, A, B);
    whole.extend_from_slice(&seg);
    let whole = eth(0x0800, &whole);
    let mut frags = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let n = per.min(seg.len() - off);
        let more = off + n < seg.len();
        let flags = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        let mut ip = ip4_header(20 + n, id, flags, A, B);
        ip.extend_from_slice(&seg[off..off + n]);
        frags.push(eth(0x0800, &ip));
        off += n;
    }
    (whole, frags)
}

fn reassembler() -> Ipf<u32> {
    Ipf::new(IpfConfig::default())
}

/// Feeds fragments (tagged with their index as metadata) until one
/// completes the datagram.
fn feed(ipf: &Ipf<u32>, frags: &[Vec<u8>], order: &[usize]) -> Option<Reassembled<u32>> {
    for (n, &i) in order.iter().enumerate() {
        let mut f = frags[i].clone();
        match ipf.handle(&mut f, i as u32, 0, 0, 1000) {
            Verdict::Held => assert!(f.is_empty(), "a held frame is taken"),
            Verdict::Complete(r) => {
                assert_eq!(n + 1, order.len(), "completed early");
                return Some(r);
            }
            v => panic!("fragment {i}: {v:?}"),
        }
    }
    None
}

#[test]
fn in_order_fragments_make_the_datagram() {
    let ipf = reassembler();
    let (whole, frags) = v4_fragments(7, 3000, 1480);
    assert_eq!(frags.len(), 3);
    let r = feed(&ipf, &frags, &[0, 1, 2]).expect("complete");
    assert_eq!(r.datagram, whole);
    assert!(packet::parse(&r.datagram).is_some(), "the datagram tracks");
    let out = r.into_fragments();
    let sent: Vec<_> = out.iter().map(|f| (f.md, f.frame.clone())).collect();
    assert_eq!(
        sent,
        vec![
            (0, frags[0].clone()),
            (1, frags[1].clone()),
            (2, frags[2].clone())
        ]
    );
    assert_eq!(ipf.held(), 0);
    assert_eq!(ipf.v4.accepted.load(Ordering::Relaxed), 3);
    assert_eq!(ipf.v4.completed.load(Ordering::Relaxed), 3);
}

#[test]
fn out_of_order_fragments_are_sent_in_datagram_order() {
    let ipf = reassembler();
    let (whole, frags) = v4_fragments(8, 5000, 1232);
    assert_eq!(frags.len(), 5);
    let r = feed(&ipf, &frags, &[4, 2, 0, 3, 1]).expect("complete");
    assert_eq!(r.datagram, whole);
    let order: Vec<u32> = r.into_fragments().iter().map(|f| f.md).collect();
    assert_eq!(order, vec![0, 1, 2, 3, 4]);
}

#[test]
fn overlapping_and_duplicate_fragments_are_invalid() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(9, 3000, 1480);
    let mut f = frags[0].clone();
    assert!(matches!(ipf.handle(&mut f, 0, 0, 0, 0), Verdict::Held));
    // The same fragment again.
    let mut dup = frags[0].clone();
    assert!(matches!(ipf.handle(&mut dup, 9, 0, 0, 0), Verdict::Invalid));
    assert!(!dup.is_empty(), "an invalid fragment is not taken");
    // One that starts inside the first.
    let seg = udp(&A, &B, 3000);
    let mut ip = ip4_header(20 + 1480, 9, 0x2000 | 100, A, B);
    ip.extend_from_slice(&seg[800..2280]);
    let mut overlap = eth(0x0800, &ip);
    assert!(matches!(
        ipf.handle(&mut overlap, 9, 0, 0, 0),
        Verdict::Invalid
    ));
    assert_eq!(ipf.v4.overlapped.load(Ordering::Relaxed), 2);
    // The rest still completes it.
    assert!(feed(&ipf, &frags, &[1, 2]).is_some());
}

#[test]
fn small_fragments_other_than_the_last_are_invalid() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(10, 3000, 800);
    let mut f = frags[0].clone();
    assert!(matches!(ipf.handle(&mut f, 0, 0, 0, 0), Verdict::Invalid));
    assert_eq!(ipf.v4.too_small.load(Ordering::Relaxed), 1);
    // A small last fragment is fine.
    let (_, frags) = v4_fragments(11, 1500, 1480);
    assert_eq!(frags[1].len(), 14 + 20 + 28);
    assert!(feed(&ipf, &frags, &[1, 0]).is_some());
}

#[test]
fn too_many_fragments_are_invalid() {
    // At most 4 held at once.
    let ipf: Ipf<u32> = Ipf::new(IpfConfig {
        max_frags: 4,
        ..IpfConfig::default()
    });
    for id in 0..4 {
        let (_, frags) = v4_fragments(100 + id, 3000, 1480);
        let mut f = frags[0].clone();
        assert!(matches!(ipf.handle(&mut f, 0, 0, 0, 0), Verdict::Held));
    }
    let (_, frags) = v4_fragments(200, 3000, 1480);
    let mut f = frags[0].clone();
    assert!(matches!(ipf.handle(&mut f, 0, 0, 0, 0), Verdict::Invalid));
    assert_eq!(ipf.held(), 4);
}

#[test]
fn incomplete_lists_expire_and_their_fragments_go_on() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(12, 3000, 1480);
    let mut f0 = frags[0].clone();
    let mut f2 = frags[2].clone();
    assert!(matches!(ipf.handle(&mut f0, 0, 0, 0, 1000), Verdict::Held));
    assert!(matches!(ipf.handle(&mut f2, 2, 0, 0, 2000), Verdict::Held));
    assert!(ipf.expired(1000 + LIST_TIMEOUT_MS).is_empty(), "not yet");
    let out = ipf.expired(1001 + LIST_TIMEOUT_MS);
    assert_eq!(out.iter().map(|f| f.md).collect::<Vec<_>>(), vec![0, 2]);
    assert_eq!(ipf.held(), 0);
    assert_eq!(ipf.v4.expired.load(Ordering::Relaxed), 2);
    // The missing piece alone starts a new list.
    let mut f1 = frags[1].clone();
    assert!(matches!(
        ipf.handle(&mut f1, 1, 0, 0, 20_000),
        Verdict::Held
    ));
}

/// A list no packet sends on after it expired is purged 10 s later, and
/// counted; one sent on in time is not.
#[test]
fn expired_lists_nothing_sent_on_are_purged() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(14, 3000, 1480);
    let (_, other) = v4_fragments(15, 3000, 1480);
    let mut f0 = frags[0].clone();
    let mut f2 = frags[2].clone();
    let mut g0 = other[0].clone();
    assert!(matches!(ipf.handle(&mut f0, 0, 0, 0, 1000), Verdict::Held));
    assert!(matches!(ipf.handle(&mut f2, 2, 0, 0, 2000), Verdict::Held));
    assert!(matches!(ipf.handle(&mut g0, 9, 0, 0, 5000), Verdict::Held));
    let first_expiry = 1000 + LIST_TIMEOUT_MS;
    assert_eq!(ipf.purge(first_expiry + 1), 0, "expired, not yet purged");
    assert_eq!(ipf.purge(first_expiry + PURGE_AFTER_MS - 1), 0);
    assert_eq!(ipf.purge(first_expiry + PURGE_AFTER_MS), 2);
    assert_eq!(ipf.held(), 1, "the later list waits on");
    assert_eq!(ipf.v4.purged.load(Ordering::Relaxed), 2);
    assert_eq!(ipf.v4.expired.load(Ordering::Relaxed), 0);
    let status = ipf.status();
    assert!(status.contains("        v4 frags purged: 2\n"), "{status}");
    assert!(status.contains("        num frag: 1\n"), "{status}");
    // Sent on at expiry by a packet through ct: nothing left to purge.
    assert_eq!(ipf.expired(5001 + LIST_TIMEOUT_MS).len(), 1);
    assert_eq!(ipf.purge(u64::MAX / 2), 0);
    assert_eq!(ipf.held(), 0);
}

#[test]
fn zones_and_recirculations_keep_their_own_lists() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(13, 3000, 1480);
    for (zone, recirc) in [(1, 0), (2, 0), (1, 5)] {
        let mut f = frags[0].clone();
        assert!(matches!(
            ipf.handle(&mut f, 0, zone, recirc, 0),
            Verdict::Held
        ));
    }
    let mut f1 = frags[1].clone();
    assert!(matches!(ipf.handle(&mut f1, 1, 1, 5, 0), Verdict::Held));
    let mut f2 = frags[2].clone();
    assert!(matches!(
        ipf.handle(&mut f2, 2, 1, 5, 0),
        Verdict::Complete(_)
    ));
    assert_eq!(ipf.held(), 2);
}

#[test]
fn nat_on_the_datagram_reaches_the_fragments() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(14, 3000, 1480);
    let mut r = feed(&ipf, &frags, &[0, 1, 2]).expect("complete");
    // Source NAT to 192.168.1.1 port 40000, as the tracker rewrites it.
    let ct = crate::dpif_netdev::conntrack::Conntrack::new(Default::default());
    let mut md = crate::dpif_netdev::conntrack::CtMetadata::default();
    let cmd = crate::dpif_netdev::conntrack::CtCommand {
        commit: true,
        nat: Some(crate::dpif_netdev::conntrack::NatSpec {
            kind: Some(crate::dpif_netdev::conntrack::NatKind::Src),
            addr_min: [192, 168, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            addr_max: [192, 168, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            port_min: 40000,
            port_max: 40000,
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(ct.execute(&mut r.datagram, &mut md, &cmd, 0));
    let out = r.into_fragments();
    // Every fragment has the new source and a good header checksum; joined
    // again, the datagram's UDP checksum holds and its port is the new one.
    let mut seg = Vec::new();
    for f in &out {
        let ip = &f.frame[14..];
        assert_eq!(&ip[12..16], &[192, 168, 1, 1]);
        assert!(checksum::verify(0, &ip[..20]));
        seg.extend_from_slice(&ip[20..]);
    }
    assert_eq!(&seg[0..2], &40000u16.to_be_bytes());
    let pseudo =
        checksum::pseudo_header_v4(0xc0a8_0101, u32::from_be_bytes(B), 17, seg.len() as u16);
    assert!(checksum::verify(pseudo, &seg));
}

/// An IPv6 UDP datagram cut into fragments of `per` bytes (a multiple of
/// 8), each with a fragment header after a destination-options header.
fn v6_fragments(len: usize, per: usize) -> (Vec<u8>, Vec<Vec<u8>>) {
    let src = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
    let dst = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
    let seg = udp(&src, &dst, len);
    let header = |plen: usize, next: u8| {
        let mut h = vec![0x60, 0, 0, 0, 0, 0, next, 64];
        h[4..6].copy_from_slice(&(plen as u16).to_be_bytes());
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        h
    };
    // Destination options: next header, length 0, 6 bytes of PadN.
    let opts = |next: u8| vec![next, 0, 1, 4, 0, 0, 0, 0];
    let mut whole = header(8 + seg.len(), 60);
    whole.extend(opts(17));
    whole.extend_from_slice(&seg);
    let mut frags = Vec::new();
    let mut off = 0;
    while off < seg.len() {
        let n = per.min(seg.len() - off);
        let more = off + n < seg.len();
        let mut ip = header(16 + n, 60);
        ip.extend(opts(44));
        let offlg = off as u16 | u16::from(more);
        ip.extend_from_slice(&[17, 0]);
        ip.extend_from_slice(&offlg.to_be_bytes());
        ip.extend_from_slice(&0xdead_beefu32.to_be_bytes());
        ip.extend_from_slice(&seg[off..off + n]);
        frags.push(eth(0x86dd, &ip));
        off += n;
    }
    (eth(0x86dd, &whole), frags)
}

#[test]
fn ipv6_fragments_make_a_datagram_without_fragment_header() {
    let ipf = reassembler();
    let (whole, frags) = v6_fragments(4000, 1448);
    assert_eq!(frags.len(), 3);
    let r = feed(&ipf, &frags, &[2, 0, 1]).expect("complete");
    assert_eq!(r.datagram, whole);
    assert!(packet::parse(&r.datagram).is_some(), "the datagram tracks");
    assert_eq!(ipf.v6.completed.load(Ordering::Relaxed), 3);
    let out = r.into_fragments();
    assert_eq!(out[0].frame, frags[0]);
    // Not fragments: untouched, nothing held.
    let mut w = whole.clone();
    assert!(matches!(ipf.handle(&mut w, 0, 0, 0, 0), Verdict::Whole));
    assert_eq!(w, whole);
}

#[test]
fn status_prints_as_ovs() {
    let ipf = reassembler();
    let (_, frags) = v4_fragments(15, 3000, 1480);
    feed(&ipf, &frags, &[0, 1, 2]);
    let s = ipf.status();
    assert!(s.starts_with("        Fragmentation Module Status\n"));
    assert!(s.contains("        max num frags (v4/v6): 1000\n"));
    assert!(s.contains("        v4 frags completed: 3\n"));
    assert!(s.contains("        min v6 frag size: 1280\n"));
}

#[test]
fn settings_out_of_ovs_bounds_are_refused() {
    let small = IpfConfig {
        min_v4_frag_size: 399,
        ..IpfConfig::default()
    };
    assert!(small
        .check()
        .unwrap_err()
        .contains("min_v4_frag_size = 399"));
    let many = IpfConfig {
        max_frags: 5001,
        ..IpfConfig::default()
    };
    assert!(many.check().unwrap_err().contains("at most 5000"));
}
