//! Frames through the userspace datapath's connection tracker, as a
//! sequence: each input is a run of packets (built from a few hosts and
//! ports so that they meet the same connections, with right checksums,
//! then now and then a byte corrupted or the frame cut short) sent with a
//! `ct` command each (zone, commit, force, SNAT/DNAT ranges) while the
//! clock moves on. Beyond "no panic", it checks that every packet leaves
//! tracked with a consistent state, that NAT leaves a trackable frame
//! trackable (its checksums still right), and that the table keeps to its
//! limit. Now and then a UDP datagram goes in as fragments (sizes, order,
//! overlaps, losses and ids chosen) through the reassembler first, whose
//! expired and purged lists must leave nothing held that it counts as
//! gone.

#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use messages::wire::checksum;
use upcalld::dpif_netdev::conntrack::ipf::{Verdict, LIST_TIMEOUT_MS, PURGE_AFTER_MS};
use upcalld::dpif_netdev::conntrack::packet::parse;
use upcalld::dpif_netdev::conntrack::{
    state, Conntrack, ConntrackConfig, CtCommand, CtMetadata, NatKind, NatSpec, TimeoutPolicy,
};

const LIMIT: u32 = 64;

fn addr(u: &mut Unstructured, ipv6: bool) -> Result<[u8; 16]> {
    let host = u.int_in_range(1..=4u8)?;
    let mut a = [0; 16];
    if ipv6 {
        a[0] = 0xfd;
        a[15] = host;
    } else {
        a[..4].copy_from_slice(&[10, 0, 0, host]);
    }
    Ok(a)
}

/// A frame from a few hosts and ports, with right checksums.
fn frame(u: &mut Unstructured) -> Result<Vec<u8>> {
    let ipv6 = u.ratio(1, 4)?;
    let (src, dst) = (addr(u, ipv6)?, addr(u, ipv6)?);
    let proto = *u.choose(&[6u8, 17, 1, 58, 132, 47])?;
    let mut l4 = match proto {
        6 => {
            let mut t = vec![0; 20];
            t[0..2].copy_from_slice(&u.int_in_range(1000..=1003u16)?.to_be_bytes());
            t[2..4].copy_from_slice(&u.int_in_range(80..=81u16)?.to_be_bytes());
            let seq = *u.choose(&[0u32, 1000, 1001, 5000, 5001, 70_000, u32::MAX])?;
            let ack = *u.choose(&[0u32, 1001, 5001, 6001, 1_000_000])?;
            t[4..8].copy_from_slice(&seq.wrapping_add(u.int_in_range(0..=3000)?).to_be_bytes());
            t[8..12].copy_from_slice(&ack.to_be_bytes());
            t[12] = 0x50;
            t[13] = u.arbitrary()?;
            t[14..16].copy_from_slice(&u.arbitrary::<u16>()?.to_be_bytes());
            if u.ratio(1, 3)? {
                // A window-scale option.
                t[12] = 0x60;
                t.extend_from_slice(&[1, 3, 3, u.int_in_range(0..=15)?]);
            }
            t.resize(t.len() + u.int_in_range(0..=1400)?, 0x61);
            t
        }
        17 => {
            let mut t = vec![0; 8];
            t[0..2].copy_from_slice(&u.int_in_range(5000..=5002u16)?.to_be_bytes());
            t[2..4].copy_from_slice(&u.int_in_range(53..=54u16)?.to_be_bytes());
            t.resize(8 + u.int_in_range(0..=64)?, 0);
            let len = t.len() as u16;
            t[4..6].copy_from_slice(&len.to_be_bytes());
            t
        }
        1 | 58 => {
            let ty = if proto == 1 {
                *u.choose(&[8u8, 0, 3, 11, 13, 14, 5])?
            } else {
                *u.choose(&[128u8, 129, 1, 2, 3, 4])?
            };
            let mut t = vec![ty, u.int_in_range(0..=1)?, 0, 0, 0, u.int_in_range(1..=2)?, 0, 1];
            // Errors quote a packet: the rest of the input's next frame.
            if matches!(ty, 3 | 11 | 5 | 1..=4) && u.ratio(2, 3)? {
                let inner = frame(u)?;
                t.extend_from_slice(inner.get(14..).unwrap_or(&[]));
            }
            t
        }
        _ => {
            let n = u.int_in_range(0..=40)?;
            u.bytes(n)?.to_vec()
        }
    };
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    if ipv6 {
        let sum_at = match proto {
            6 => Some(16),
            17 => Some(6),
            58 => Some(2),
            _ => None,
        };
        if let Some(at) = sum_at.filter(|&at| at + 2 <= l4.len()) {
            let pseudo = checksum::pseudo_header_v6(&src, &dst, proto, l4.len() as u32);
            let sum = !checksum::combine(pseudo, checksum::ones_sum(&l4));
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
        f.extend_from_slice(&(l4.len() as u16).to_be_bytes());
        f.extend_from_slice(&[proto, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
    } else {
        let (s4, d4): ([u8; 4], [u8; 4]) = (src[..4].try_into().unwrap(), dst[..4].try_into().unwrap());
        let sum_at = match proto {
            6 => Some(16),
            17 => Some(6),
            1 => Some(2),
            _ => None,
        };
        if let Some(at) = sum_at.filter(|&at| at + 2 <= l4.len()) {
            let pseudo = if proto == 1 {
                0
            } else {
                checksum::pseudo_header_v4(
                    u32::from_be_bytes(s4),
                    u32::from_be_bytes(d4),
                    proto,
                    l4.len() as u16,
                )
            };
            let sum = !checksum::combine(pseudo, checksum::ones_sum(&l4));
            l4[at..at + 2].copy_from_slice(&sum.to_be_bytes());
        }
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0];
        ip[2..4].copy_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
        if u.ratio(1, 20)? {
            // A fragment, first or later.
            ip[6] = *u.choose(&[0x20u8, 0x00, 0x20])?;
            ip[7] = *u.choose(&[0u8, 0x10, 0x10])?;
        }
        ip.extend_from_slice(&s4);
        ip.extend_from_slice(&d4);
        let sum = checksum::internet(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&ip);
    }
    f.extend_from_slice(&l4);
    if u.ratio(1, 10)? && !f.is_empty() {
        let at = u.choose_index(f.len())?;
        f[at] ^= u.int_in_range(1..=255)?;
    }
    if u.ratio(1, 10)? {
        let keep = u.choose_index(f.len() + 1)?;
        f.truncate(keep);
    }
    Ok(f)
}

/// A UDP datagram from a few hosts cut into fragments of chosen sizes,
/// some overlapping, in a chosen order, some lost or repeated.
fn fragments(u: &mut Unstructured) -> Result<Vec<Vec<u8>>> {
    let ipv6 = u.ratio(1, 3)?;
    let (src, dst) = (addr(u, ipv6)?, addr(u, ipv6)?);
    let id = u.int_in_range(1..=3u16)?;
    let len = u.int_in_range(8..=5000usize)?;
    let mut data = vec![0u8; len];
    data[..2].copy_from_slice(&u.int_in_range(5000..=5001u16)?.to_be_bytes());
    data[2..4].copy_from_slice(&53u16.to_be_bytes());
    data[4..6].copy_from_slice(&(len as u16).to_be_bytes());
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < len {
        let size = *u.choose(&[1480usize, 1448, 1232, 1208, 600, 8])?;
        let start = if u.ratio(1, 10)? { at.saturating_sub(8) } else { at };
        let end = (start + size).min(len);
        pieces.push((start, end));
        at = end;
    }
    let mut frames = Vec::new();
    for &(start, end) in &pieces {
        let more = end < len;
        let off = (start / 8) as u16;
        let body = &data[start..end];
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if ipv6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&((8 + body.len()) as u16).to_be_bytes());
            f.extend_from_slice(&[44, 64]);
            f.extend_from_slice(&src);
            f.extend_from_slice(&dst);
            f.extend_from_slice(&[17, 0]);
            f.extend_from_slice(&(off << 3 | u16::from(more)).to_be_bytes());
            f.extend_from_slice(&u32::from(id).to_be_bytes());
        } else {
            let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0];
            ip[2..4].copy_from_slice(&((20 + body.len()) as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&id.to_be_bytes());
            ip[6..8].copy_from_slice(&(off | if more { 0x2000 } else { 0 }).to_be_bytes());
            ip.extend_from_slice(&src[..4]);
            ip.extend_from_slice(&dst[..4]);
            let sum = checksum::internet(&ip);
            ip[10..12].copy_from_slice(&sum.to_be_bytes());
            f.extend_from_slice(&[0x08, 0x00]);
            f.extend_from_slice(&ip);
        }
        f.extend_from_slice(body);
        frames.push(f);
    }
    let mut out = Vec::new();
    while !frames.is_empty() {
        let f = frames.remove(u.choose_index(frames.len())?);
        if u.ratio(1, 10)? {
            continue;
        }
        if u.ratio(1, 10)? {
            out.push(f.clone());
        }
        out.push(f);
    }
    Ok(out)
}

fn command(u: &mut Unstructured) -> Result<CtCommand> {
    let nat = if u.ratio(1, 3)? {
        let ipv6 = u.ratio(1, 4)?;
        let min = addr(u, ipv6)?;
        let mut max = min;
        max[if ipv6 { 15 } else { 3 }] += u.int_in_range(0..=2)?;
        let (port_min, port_max) = if u.arbitrary()? {
            let lo = u.int_in_range(1..=3000u16)?;
            (lo, lo + u.int_in_range(0..=2)?)
        } else {
            (0, 0)
        };
        Some(NatSpec {
            kind: *u.choose(&[None, Some(NatKind::Src), Some(NatKind::Dst)])?,
            addr_min: if u.ratio(1, 5)? { [0; 16] } else { min },
            addr_max: max,
            port_min,
            port_max,
            persistent: u.arbitrary()?,
            random: u.arbitrary()?,
        })
    } else {
        None
    };
    Ok(CtCommand {
        zone: u.int_in_range(0..=2)?,
        commit: u.arbitrary()?,
        force: u.ratio(1, 8)?,
        mark: if u.ratio(1, 4)? { Some((u.arbitrary()?, u.arbitrary()?)) } else { None },
        label: if u.ratio(1, 8)? { Some((u.arbitrary()?, u.arbitrary()?)) } else { None },
        nat,
        timeout_policy: 0,
        alg: match u.int_in_range(0..=3)? {
            0 => Some(upcalld::dpif_netdev::conntrack::alg::Alg::Ftp),
            1 => Some(upcalld::dpif_netdev::conntrack::alg::Alg::Tftp),
            _ => None,
        },
    })
}

fn run(u: &mut Unstructured) -> Result<()> {
    let ct = Conntrack::new(ConntrackConfig {
        max_connections: LIMIT,
        timeouts: TimeoutPolicy {
            tcp_syn_sent: 2,
            udp_first: 3,
            icmp_first: 2,
            ..TimeoutPolicy::default()
        },
        ..ConntrackConfig::default()
    });
    let mut now = 0u64;
    let mut md = CtMetadata::default();
    while !u.is_empty() {
        if u.ratio(1, 8)? {
            let cmd = command(u)?;
            for mut f in fragments(u)? {
                now += u.int_in_range(0..=LIST_TIMEOUT_MS / 4)?;
                let held = ct.fragments.held();
                match ct.fragments.handle(&mut f, Default::default(), cmd.zone, 0, now) {
                    Verdict::Held => assert_eq!(ct.fragments.held(), held + 1),
                    Verdict::Complete(mut r) => {
                        let mut dmd = CtMetadata::default();
                        ct.execute(&mut r.datagram, &mut dmd, &cmd, now);
                        assert_ne!(dmd.state & state::TRACKED, 0);
                        let n = r.into_fragments().len();
                        assert!(n >= 1 && ct.fragments.held() + n == held + 1, "{n} {held}");
                    }
                    Verdict::Whole | Verdict::Invalid => assert_eq!(ct.fragments.held(), held),
                }
                assert!(ct.fragments.held() <= 1000);
                let held = ct.fragments.held();
                let sent = ct.fragments.expired(now).len();
                let purged = ct.fragments.purge(now);
                assert_eq!(ct.fragments.held(), held - sent - purged);
            }
            // Nothing is held past its purge time.
            ct.fragments.purge(now + LIST_TIMEOUT_MS + PURGE_AFTER_MS);
            assert_eq!(ct.fragments.held(), 0, "{}", ct.fragments.status());
            continue;
        }
        let mut f = frame(u)?;
        let cmd = command(u)?;
        if u.ratio(1, 2)? {
            // A new packet, not one continuing through the pipeline.
            md = CtMetadata::default();
        }
        now += u.int_in_range(0..=1500u64)?;
        let trackable = parse(&f).is_some();
        // As in OVS, a later `ct` in the same zone adds to the state an
        // earlier one left (only entering another zone starts afresh), so
        // the verdict's bits exclude each other only for a fresh packet.
        let fresh = md.state == 0 || md.zone != cmd.zone;
        let natted = ct.execute(&mut f, &mut md, &cmd, now);
        assert_ne!(md.state & state::TRACKED, 0);
        assert_eq!(md.zone, cmd.zone);
        if fresh {
            let verdict = md.state & (state::NEW | state::ESTABLISHED | state::INVALID);
            assert!(verdict.count_ones() <= 1, "{:#x}", md.state);
            if md.state & state::RELATED != 0 {
                assert_eq!(verdict, 0, "{:#x}", md.state);
            }
        }
        if natted {
            assert!(trackable);
            assert!(parse(&f).is_some(), "NAT broke a checksum: {f:02x?}");
        }
        assert!(ct.len() <= LIMIT as usize);
    }
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = run(&mut Unstructured::new(data));
});
