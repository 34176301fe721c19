//! Application-level gateways (`ct(alg=ftp)`, `ct(alg=tftp)`), as OVS's
//! userspace conntrack has them (lib/conntrack.c): a control connection
//! committed with a helper is read for the data connections it announces;
//! each becomes an *expectation*, and the first packet of a connection
//! matching one is `+new+rel`, keeps the parent's mark, label and original
//! tuple, and under NAT is translated as its parent is.
//!
//! - FTP (TCP port 21): `PORT` and `227` (PASV) replies on IPv4, `EPRT`
//!   and `EXTENDED PASSIVE` (EPSV) on IPv6 announce the data port; under
//!   NAT the address in the message is rewritten to the translated one,
//!   and the length change is carried by shifting the sequence numbers of
//!   every later segment in that direction (and the acknowledgements of
//!   the other).
//! - TFTP (UDP port 69): a request expects the server's reply from any
//!   port to the client's port.
//!
//! Pure logic over frames: parsing and rewriting here, the table's part in
//! `mod.rs`.

use std::net::{Ipv4Addr, Ipv6Addr};

use messages::wire::checksum;

use super::packet::{pseudo_header, ConnKey, CtPacket, IPPROTO_TCP, IPPROTO_UDP};

pub use messages::odp::CtHelper as Alg;

const FTP_PORT: u16 = 21;
const TFTP_PORT: u16 = 69;
/// OVS reads at most this much of a control segment's payload
/// (`LARGEST_FTP_MSG_OF_INTEREST`, less its terminating NUL).
const LARGEST_MESSAGE: usize = 127;

/// The helper a packet's connection would use, by its ports (OVS's
/// `get_alg_ctl_type`); never for an ICMP error about a connection.
pub(super) fn ctl_type(pkt: &CtPacket) -> Option<Alg> {
    if pkt.related {
        return None;
    }
    let k = &pkt.key;
    match k.proto {
        IPPROTO_UDP if k.dst.port == TFTP_PORT => Some(Alg::Tftp),
        IPPROTO_TCP if k.src.port == FTP_PORT || k.dst.port == FTP_PORT => Some(Alg::Ftp),
        _ => None,
    }
}

/// A data connection a control connection announced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Expectation {
    /// The control connection's original key.
    pub parent: ConnKey,
    pub mark: u32,
    pub label: u128,
    /// Under NAT: the address the related connection is translated to,
    /// and whether it replaces the destination of its replies (SNAT) or
    /// the source (DNAT).
    pub nat_addr: [u8; 16],
    pub nat_reply_dst: bool,
}

/// The key an expectation is found by: any source port.
pub(super) fn expectation_key(key: &ConnKey) -> ConnKey {
    let mut k = *key;
    k.src.port = 0;
    k
}

/// The expectation a control packet creates for a data connection to
/// `port` (OVS's `expectation_create`): `reply` is the packet's direction,
/// `dnat` whether the parent is destination-NATed.
pub(super) fn expect(
    fwd: &ConnKey,
    rev: &ConnKey,
    dnat: bool,
    mark: u32,
    label: u128,
    port: u16,
    reply: bool,
) -> (ConnKey, Expectation) {
    // From the side that did not send the announcement to the one that did.
    let (src, dst, nat_addr, nat_reply_dst) = match (reply, dnat) {
        (true, false) => (fwd.src.addr, fwd.dst.addr, rev.dst.addr, true),
        (true, true) => (fwd.src.addr, fwd.dst.addr, rev.src.addr, false),
        (false, false) => (rev.src.addr, rev.dst.addr, fwd.src.addr, false),
        (false, true) => (rev.src.addr, rev.dst.addr, fwd.dst.addr, true),
    };
    let mut key = ConnKey {
        zone: fwd.zone,
        proto: fwd.proto,
        ipv6: fwd.ipv6,
        ..ConnKey::default()
    };
    key.src.addr = src;
    key.dst.addr = dst;
    key.dst.port = port;
    (
        key,
        Expectation {
            parent: *fwd,
            mark,
            label,
            nat_addr,
            nat_reply_dst,
        },
    )
}

/// How an FTP control segment reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FtpMessage {
    /// An announcement that does not parse, or names a third party's
    /// address: the packet is `+inv`.
    Invalid,
    Announce(Announce),
}

/// A data port announcement and where its address text is in the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Announce {
    pub port: u16,
    /// `PORT`/`EPRT` (the client listens) rather than a passive reply.
    pub active: bool,
    pub addr_at: usize,
    pub addr_len: usize,
}

/// The control message of a segment: its payload up to
/// [`LARGEST_MESSAGE`] bytes or a NUL, as OVS copies it.
fn message(payload: &[u8]) -> &[u8] {
    let m = &payload[..payload.len().min(LARGEST_MESSAGE)];
    m.iter().position(|&b| b == 0).map_or(m, |n| &m[..n])
}

fn starts_with_ignore_case(m: &[u8], word: &[u8]) -> bool {
    m.len() >= word.len() && m[..word.len()].eq_ignore_ascii_case(word)
}

fn contains_ignore_case(m: &[u8], word: &[u8]) -> bool {
    m.windows(word.len()).any(|w| w.eq_ignore_ascii_case(word))
}

/// Digits from `at`, at most `max` of them and at least one, as a number.
fn number(m: &[u8], at: usize, max: usize) -> Option<(u32, usize)> {
    let n = m[at.min(m.len())..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if n == 0 || n > max {
        return None;
    }
    let v = std::str::from_utf8(&m[at..at + n]).ok()?.parse().ok()?;
    Some((v, at + n))
}

fn skip_non_digits(m: &[u8], at: usize) -> usize {
    at + m[at.min(m.len())..]
        .iter()
        .take_while(|b| !b.is_ascii_digit())
        .count()
}

/// Whether a segment announces a data port at all (OVS's
/// `detect_ftp_ctl_type`).
pub(super) fn ftp_announces(payload: &[u8], ipv6: bool) -> bool {
    let m = message(payload);
    if ipv6 {
        starts_with_ignore_case(m, b"EPRT") || contains_ignore_case(m, b"EXTENDED PASSIVE")
    } else {
        starts_with_ignore_case(m, b"PORT") || starts_with_ignore_case(m, b"227")
    }
}

/// Parses an IPv4 `PORT h1,h2,h3,h4,p1,p2` or `227 … (h1,h2,h3,h4,p1,p2)`;
/// the address it names must be one of `allowed` (OVS refuses a third
/// party's, "although most servers will block this exploit").
pub(super) fn parse_v4(payload: &[u8], allowed: [[u8; 4]; 2]) -> FtpMessage {
    parse_v4_inner(message(payload), allowed).map_or(FtpMessage::Invalid, FtpMessage::Announce)
}

fn parse_v4_inner(m: &[u8], allowed: [[u8; 4]; 2]) -> Option<Announce> {
    let active = starts_with_ignore_case(m, b"PORT");
    let space = 3 + m.get(3..)?.iter().position(|&b| b == b' ')?;
    let addr_at = skip_non_digits(m, space);
    // Four numbers and commas: the address.
    let mut at = addr_at;
    let mut commas = 0;
    while commas < 4 && at < m.len() {
        if m[at] == b',' {
            commas += 1;
        }
        at += 1;
    }
    if commas != 4 {
        return None;
    }
    let addr_len = at - 1 - addr_at;
    let text: String = m[addr_at..at - 1]
        .iter()
        .map(|&b| if b == b',' { '.' } else { char::from(b) })
        .collect();
    let addr: Ipv4Addr = text.parse().ok()?;
    let (hi, at) = number(m, at, 3)?;
    let (lo, _) = number(m, at + 1, 3)?;
    if hi > 255 || lo > 255 {
        return None;
    }
    if !allowed.contains(&addr.octets()) {
        return None;
    }
    Some(Announce {
        port: (hi << 8 | lo) as u16,
        active,
        addr_at,
        addr_len,
    })
}

/// Parses an IPv6 `EPRT |2|addr|port|` or `229 Entering Extended Passive
/// Mode (|||port|)`; an active one's address must be one of `allowed`.
pub(super) fn parse_v6(payload: &[u8], allowed: [[u8; 16]; 2]) -> FtpMessage {
    parse_v6_inner(message(payload), allowed).map_or(FtpMessage::Invalid, FtpMessage::Announce)
}

fn parse_v6_inner(m: &[u8], allowed: [[u8; 16]; 2]) -> Option<Announce> {
    if starts_with_ignore_case(m, b"EPRT") {
        let at = skip_non_digits(m, 4);
        if m.get(at) != Some(&b'2') || m.get(at + 1).is_none_or(|b| b.is_ascii_digit()) {
            return None;
        }
        let addr_at = at + 2;
        let addr_len = m[addr_at.min(m.len())..]
            .iter()
            .take_while(|b| b.is_ascii_hexdigit() || **b == b':' || **b == b'.')
            .count();
        let addr: Ipv6Addr = std::str::from_utf8(&m[addr_at..addr_at + addr_len])
            .ok()?
            .parse()
            .ok()?;
        if !allowed.contains(&addr.octets()) {
            return None;
        }
        let (port, _) = number(m, addr_at + addr_len + 1, 5)?;
        Some(Announce {
            port: u16::try_from(port).ok()?,
            active: true,
            addr_at,
            addr_len,
        })
    } else {
        let paren = m.iter().position(|&b| b == b'(')?;
        let (port, _) = number(m, skip_non_digits(m, paren), 5)?;
        Some(Announce {
            port: u16::try_from(port).ok()?,
            active: false,
            addr_at: 0,
            addr_len: 0,
        })
    }
}

/// The text an address is written as in an FTP message.
pub(super) fn address_text(addr: &[u8; 16], ipv6: bool) -> String {
    if ipv6 {
        Ipv6Addr::from(*addr).to_string()
    } else {
        Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3])
            .to_string()
            .replace('.', ",")
    }
}

/// Where a TCP segment's payload starts.
pub(super) fn payload_at(frame: &[u8], pkt: &CtPacket) -> usize {
    pkt.l4 + usize::from(frame[pkt.l4 + 12] >> 4) * 4
}

/// Replaces `len` bytes at `at` of the frame's IP packet with `text`,
/// fixing the IP length (and IPv4 header checksum); returns the change in
/// length. The TCP checksum is left for [`tcp_checksum`].
pub(super) fn replace(
    frame: &mut Vec<u8>,
    pkt: &mut CtPacket,
    at: usize,
    len: usize,
    text: &[u8],
) -> i32 {
    frame.truncate(pkt.end);
    frame.splice(at..at + len, text.iter().copied());
    let delta = text.len() as i32 - len as i32;
    pkt.end = (pkt.end as i32 + delta) as usize;
    let l3 = pkt.l3;
    if pkt.key.ipv6 {
        let plen = (pkt.end - l3 - 40) as u16;
        frame[l3 + 4..l3 + 6].copy_from_slice(&plen.to_be_bytes());
    } else {
        let total = (pkt.end - l3) as u16;
        frame[l3 + 2..l3 + 4].copy_from_slice(&total.to_be_bytes());
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
        let sum = checksum::internet(&frame[l3..l3 + ihl]);
        frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    }
    delta
}

/// Shifts a TCP sequence (`ack`: the acknowledgement) number by `by`.
pub(super) fn shift(frame: &mut [u8], pkt: &CtPacket, ack: bool, by: i32) {
    let at = pkt.l4 + if ack { 8 } else { 4 };
    let v = u32::from_be_bytes(frame[at..at + 4].try_into().expect("4 bytes"));
    frame[at..at + 4].copy_from_slice(&v.wrapping_add_signed(by).to_be_bytes());
}

/// Recomputes a TCP segment's checksum.
pub(super) fn tcp_checksum(frame: &mut [u8], pkt: &CtPacket) {
    let at = pkt.l4 + 16;
    frame[at..at + 2].copy_from_slice(&[0, 0]);
    let sum = !checksum::combine(
        pseudo_header(frame, pkt),
        checksum::ones_sum(&frame[pkt.l4..pkt.end]),
    );
    frame[at..at + 2].copy_from_slice(&sum.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: [u8; 4] = [10, 0, 0, 1];
    const B: [u8; 4] = [10, 0, 0, 2];

    #[test]
    fn port_and_pasv_parse_as_ovs() {
        let port = b"PORT 10,0,0,1,195,80\r\n";
        assert!(ftp_announces(port, false));
        assert_eq!(
            parse_v4(port, [A, B]),
            FtpMessage::Announce(Announce {
                port: 195 * 256 + 80,
                active: true,
                addr_at: 5,
                addr_len: 8,
            })
        );
        let pasv = b"227 Entering Passive Mode (10,0,0,2,78,52).\r\n";
        assert!(ftp_announces(pasv, false));
        match parse_v4(pasv, [A, B]) {
            FtpMessage::Announce(a) => {
                assert_eq!((a.port, a.active), (78 * 256 + 52, false));
                assert_eq!(&pasv[a.addr_at..a.addr_at + a.addr_len], b"10,0,0,2");
            }
            m => panic!("{m:?}"),
        }
        // Lower case commands count too; other messages announce nothing.
        assert!(ftp_announces(b"port 1,2,3,4,5,6", false));
        assert!(!ftp_announces(b"226 Transfer complete.\r\n", false));
        assert!(!ftp_announces(b"RETR file\r\n", false));
    }

    #[test]
    fn bad_or_third_party_announcements_are_invalid() {
        for bad in [
            &b"PORT 10,0,0,1,256,1\r\n"[..],
            b"PORT 10,0,0,1\r\n",
            b"PORT 10,0,0,1,1,\r\n",
            b"PORT 10,0,0,300,1,1\r\n",
            b"PORT\r\n",
            // Someone else's address: the bounce attack.
            b"PORT 10,0,0,9,4,1\r\n",
        ] {
            assert_eq!(parse_v4(bad, [A, B]), FtpMessage::Invalid, "{bad:?}");
        }
    }

    #[test]
    fn eprt_and_epsv_parse_as_ovs() {
        let a6: [u8; 16] = "fd00::1".parse::<Ipv6Addr>().unwrap().octets();
        let b6: [u8; 16] = "fd00::2".parse::<Ipv6Addr>().unwrap().octets();
        let eprt = b"EPRT |2|fd00::1|40001|\r\n";
        assert!(ftp_announces(eprt, true));
        assert_eq!(
            parse_v6(eprt, [a6, b6]),
            FtpMessage::Announce(Announce {
                port: 40001,
                active: true,
                addr_at: 8,
                addr_len: 7,
            })
        );
        let epsv = b"229 Entering Extended Passive Mode (|||40002|)\r\n";
        assert!(ftp_announces(epsv, true));
        assert!(matches!(
            parse_v6(epsv, [a6, b6]),
            FtpMessage::Announce(Announce {
                port: 40002,
                active: false,
                ..
            })
        ));
        assert_eq!(
            parse_v6(b"EPRT |1|10.0.0.1|40001|\r\n", [a6, b6]),
            FtpMessage::Invalid
        );
        assert_eq!(
            parse_v6(b"EPRT |2|fd00::9|40001|\r\n", [a6, b6]),
            FtpMessage::Invalid
        );
    }

    #[test]
    fn expectations_point_back_at_the_announcer() {
        let mut fwd = ConnKey {
            proto: IPPROTO_TCP,
            zone: 3,
            ..ConnKey::default()
        };
        fwd.src.addr[..4].copy_from_slice(&A);
        fwd.dst.addr[..4].copy_from_slice(&B);
        fwd.src.port = 40000;
        fwd.dst.port = 21;
        // SNAT of A to 10.0.0.100.
        let mut rev = fwd.reversed();
        rev.dst.addr[..4].copy_from_slice(&[10, 0, 0, 100]);
        // PORT from the client: B connects back to the translated address.
        let (k, e) = expect(&fwd, &rev, false, 7, 0, 5000, false);
        assert_eq!(&k.src.addr[..4], &B);
        assert_eq!(&k.dst.addr[..4], &[10, 0, 0, 100]);
        assert_eq!((k.src.port, k.dst.port, k.zone), (0, 5000, 3));
        assert_eq!(&e.nat_addr[..4], &A);
        assert!(!e.nat_reply_dst);
        // PASV reply from the server: A connects to B.
        let (k, e) = expect(&fwd, &rev, false, 7, 0, 6000, true);
        assert_eq!((&k.src.addr[..4], &k.dst.addr[..4]), (&A[..], &B[..]));
        assert_eq!(&e.nat_addr[..4], &[10, 0, 0, 100]);
        assert!(e.nat_reply_dst);
        assert_eq!(address_text(&e.nat_addr, false), "10,0,0,100");
    }
}
