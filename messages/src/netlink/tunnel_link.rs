//! Tunnel devices over rtnetlink, made as OVS's `dpif-netlink-rtnl` makes
//! them: a metadata-collecting (`external`) VXLAN or Geneve device on one
//! UDP port that also takes IPv6 datagrams with a zero UDP checksum, to be
//! attached to the datapath as a netdev vport. The module's own tunnel
//! vports (`OVS_VPORT_TYPE_GENEVE`) make their Geneve device refusing such
//! datagrams, and a tunnel without `csum=true` sends exactly those over an
//! IPv6 underlay. No I/O; a malformed reply is skipped, never a panic.

use crate::tunnel::TunnelKind;

const NLMSG_HDR: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_GETLINK: u16 = 18;
const IFINFOMSG_LEN: usize = 16;
const IFF_UP: u32 = 0x1;
const IFLA_IFNAME: u16 = 3;
const IFLA_MTU: u16 = 4;
const IFLA_LINKINFO: u16 = 18;
const IFLA_INFO_KIND: u16 = 1;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_GENEVE_PORT: u16 = 5;
const IFLA_GENEVE_COLLECT_METADATA: u16 = 6;
const IFLA_GENEVE_UDP_ZERO_CSUM6_RX: u16 = 10;
const IFLA_VXLAN_LEARNING: u16 = 7;
const IFLA_VXLAN_PORT: u16 = 15;
const IFLA_VXLAN_UDP_ZERO_CSUM6_RX: u16 = 20;
const IFLA_VXLAN_GBP: u16 = 23;
const IFLA_VXLAN_COLLECT_METADATA: u16 = 25;
/// The largest MTU each device takes at creation (no limit on what the
/// datapath sends through it, as the module's tunnel vports ask): a
/// Geneve device's is `IP_MAX_MTU` less its UDP and Geneve headers (16)
/// and Ethernet's (14); OVS asks for 65535, which such a kernel refuses.
const GENEVE_MTU: u32 = 65535 - 16 - 14;
const VXLAN_MTU: u32 = 65535;

/// A tunnel device: its type, UDP port and VXLAN's Group Policy extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelLink {
    pub kind: TunnelKind,
    pub udp_port: u16,
    pub vxlan_gbp: bool,
}

/// What the kernel answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LinkReply {
    /// An acknowledgement (`Ok`) or an error (the positive errno).
    Ack(Result<(), i32>),
    /// A device: its name and, when it is a tunnel device made as
    /// [`create_request`] makes one, what it is.
    Link {
        name: String,
        tunnel: Option<TunnelLink>,
    },
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(ty: u16, flags: u16, seq: u32, ifi_flags: u32) -> Writer {
        let mut m = Vec::with_capacity(128);
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&flags.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        // ifinfomsg: family, pad, type, index, then flags and the change
        // mask (the same bits: set exactly these).
        m.extend_from_slice(&[0; 8]);
        m.extend_from_slice(&ifi_flags.to_ne_bytes());
        m.extend_from_slice(&ifi_flags.to_ne_bytes());
        Writer(m)
    }

    fn attr(&mut self, ty: u16, value: &[u8]) -> &mut Self {
        self.0
            .extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(value);
        self.0.resize(align(self.0.len()), 0);
        self
    }

    fn name(&mut self, name: &str) -> &mut Self {
        let mut v = name.as_bytes().to_vec();
        v.push(0);
        self.attr(IFLA_IFNAME, &v)
    }

    fn begin_nest(&mut self, ty: u16) -> usize {
        let at = self.0.len();
        self.attr(ty, &[]);
        at
    }

    fn end_nest(&mut self, at: usize) {
        let len = (self.0.len() - at) as u16;
        self.0[at..at + 2].copy_from_slice(&len.to_ne_bytes());
    }

    fn finish(mut self) -> Vec<u8> {
        let len = self.0.len() as u32;
        self.0[..4].copy_from_slice(&len.to_ne_bytes());
        self.0
    }
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// `RTM_NEWLINK` making device `name` up, failing if it exists.
pub fn create_request(name: &str, link: &TunnelLink, seq: u32) -> Vec<u8> {
    let mut w = Writer::new(
        RTM_NEWLINK,
        NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL,
        seq,
        IFF_UP,
    );
    let mtu = match link.kind {
        TunnelKind::Geneve => GENEVE_MTU,
        TunnelKind::Vxlan => VXLAN_MTU,
    };
    w.name(name).attr(IFLA_MTU, &mtu.to_ne_bytes());
    let info = w.begin_nest(IFLA_LINKINFO);
    w.attr(IFLA_INFO_KIND, link.kind.name().as_bytes());
    let data = w.begin_nest(IFLA_INFO_DATA);
    let port = link.udp_port.to_be_bytes();
    match link.kind {
        TunnelKind::Geneve => {
            w.attr(IFLA_GENEVE_COLLECT_METADATA, &[])
                .attr(IFLA_GENEVE_UDP_ZERO_CSUM6_RX, &[1])
                .attr(IFLA_GENEVE_PORT, &port);
        }
        TunnelKind::Vxlan => {
            w.attr(IFLA_VXLAN_LEARNING, &[0])
                .attr(IFLA_VXLAN_COLLECT_METADATA, &[1])
                .attr(IFLA_VXLAN_UDP_ZERO_CSUM6_RX, &[1]);
            if link.vxlan_gbp {
                w.attr(IFLA_VXLAN_GBP, &[]);
            }
            w.attr(IFLA_VXLAN_PORT, &port);
        }
    }
    w.end_nest(data);
    w.end_nest(info);
    w.finish()
}

/// `RTM_DELLINK` of device `name`.
pub fn delete_request(name: &str, seq: u32) -> Vec<u8> {
    let mut w = Writer::new(RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK, seq, 0);
    w.name(name);
    w.finish()
}

/// `RTM_GETLINK` of device `name` (answered with the device, or an error).
pub fn get_request(name: &str, seq: u32) -> Vec<u8> {
    let mut w = Writer::new(RTM_GETLINK, NLM_F_REQUEST, seq, 0);
    w.name(name);
    w.finish()
}

/// The replies in one datagram; other messages and malformed ones are
/// skipped.
pub fn parse_replies(buf: &[u8]) -> Vec<LinkReply> {
    let mut out = Vec::new();
    let mut rest = buf;
    while rest.len() >= NLMSG_HDR {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        if len < NLMSG_HDR || len > rest.len() {
            break;
        }
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let body = &rest[NLMSG_HDR..len];
        match ty {
            NLMSG_ERROR if body.len() >= 4 => {
                let e = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
                out.push(LinkReply::Ack(if e == 0 { Ok(()) } else { Err(-e) }));
            }
            RTM_NEWLINK if body.len() >= IFINFOMSG_LEN => {
                out.extend(parse_link(&body[IFINFOMSG_LEN..]));
            }
            _ => {}
        }
        rest = &rest[align(len).min(rest.len())..];
    }
    out
}

/// The attributes of a message or nest: (type, value) pairs, the nested
/// and byte-order flags masked off.
fn attrs(mut b: &[u8]) -> Vec<(u16, &[u8])> {
    let mut v = Vec::new();
    while b.len() >= 4 {
        let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
        let ty = u16::from_ne_bytes([b[2], b[3]]) & 0x3fff;
        if len < 4 || len > b.len() {
            break;
        }
        v.push((ty, &b[4..len]));
        b = &b[align(len).min(b.len())..];
    }
    v
}

fn get<'a>(list: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    list.iter().find(|(t, _)| *t == ty).map(|a| a.1)
}

fn parse_link(b: &[u8]) -> Option<LinkReply> {
    let all = attrs(b);
    let name = get(&all, IFLA_IFNAME)?;
    let name = String::from_utf8_lossy(name.split(|&c| c == 0).next().unwrap_or(&[])).into_owned();
    let tunnel = get(&all, IFLA_LINKINFO).and_then(|info| {
        let info = attrs(info);
        let kind = get(&info, IFLA_INFO_KIND)?;
        let kind = kind.split(|&c| c == 0).next().unwrap_or(&[]);
        let data = attrs(get(&info, IFLA_INFO_DATA)?);
        let u8_is = |ty, want: u8| get(&data, ty) == Some(&[want][..]);
        let port = |ty| Some(u16::from_be_bytes(get(&data, ty)?.try_into().ok()?));
        match kind {
            b"geneve" => (get(&data, IFLA_GENEVE_COLLECT_METADATA).is_some()
                && u8_is(IFLA_GENEVE_UDP_ZERO_CSUM6_RX, 1))
            .then_some(TunnelLink {
                kind: TunnelKind::Geneve,
                udp_port: port(IFLA_GENEVE_PORT)?,
                vxlan_gbp: false,
            }),
            b"vxlan" => (u8_is(IFLA_VXLAN_COLLECT_METADATA, 1)
                && u8_is(IFLA_VXLAN_LEARNING, 0)
                && u8_is(IFLA_VXLAN_UDP_ZERO_CSUM6_RX, 1))
            .then_some(TunnelLink {
                kind: TunnelKind::Vxlan,
                udp_port: port(IFLA_VXLAN_PORT)?,
                vxlan_gbp: get(&data, IFLA_VXLAN_GBP).is_some(),
            }),
            _ => None,
        }
    });
    Some(LinkReply::Link { name, tunnel })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request turned into what the kernel answers a GETLINK with: the
    /// same attributes after the ifinfomsg.
    fn as_reply(mut request: Vec<u8>) -> Vec<u8> {
        request[4..6].copy_from_slice(&RTM_NEWLINK.to_ne_bytes());
        request
    }

    #[test]
    fn created_devices_read_back_and_errors_are_errnos() {
        for link in [
            TunnelLink {
                kind: TunnelKind::Geneve,
                udp_port: 6081,
                vxlan_gbp: false,
            },
            TunnelLink {
                kind: TunnelKind::Vxlan,
                udp_port: 4789,
                vxlan_gbp: false,
            },
            TunnelLink {
                kind: TunnelKind::Vxlan,
                udp_port: 4790,
                vxlan_gbp: true,
            },
        ] {
            let req = create_request("genev_sys_6081", &link, 7);
            assert_eq!(req.len() % 4, 0);
            assert_eq!(
                u32::from_ne_bytes(req[..4].try_into().unwrap()) as usize,
                req.len()
            );
            assert_eq!(
                parse_replies(&as_reply(req)),
                vec![LinkReply::Link {
                    name: "genev_sys_6081".into(),
                    tunnel: Some(link)
                }]
            );
        }
        // A Geneve device that refuses zero IPv6 checksums (the module's
        // own vport makes such) is not one of ours.
        let mut w = Writer::new(RTM_NEWLINK, 0, 1, 0);
        w.name("genev_sys_6081");
        let info = w.begin_nest(IFLA_LINKINFO);
        w.attr(IFLA_INFO_KIND, b"geneve");
        let data = w.begin_nest(IFLA_INFO_DATA);
        w.attr(IFLA_GENEVE_COLLECT_METADATA, &[])
            .attr(IFLA_GENEVE_UDP_ZERO_CSUM6_RX, &[0])
            .attr(IFLA_GENEVE_PORT, &6081u16.to_be_bytes());
        w.end_nest(data);
        w.end_nest(info);
        let mut all = w.finish();
        // EEXIST, then an acknowledgement, then a truncated message.
        for errno in [-17i32, 0] {
            all.extend_from_slice(&36u32.to_ne_bytes());
            all.extend_from_slice(&NLMSG_ERROR.to_ne_bytes());
            all.extend_from_slice(&[0; 10]);
            all.extend_from_slice(&errno.to_ne_bytes());
            all.extend_from_slice(&[0; 16]);
        }
        all.extend_from_slice(&delete_request("x", 1)[..20]);
        assert_eq!(
            parse_replies(&all),
            vec![
                LinkReply::Link {
                    name: "genev_sys_6081".into(),
                    tunnel: None
                },
                LinkReply::Ack(Err(17)),
                LinkReply::Ack(Ok(())),
            ]
        );
        assert!(parse_replies(&[1, 2, 3]).is_empty());
        assert_eq!(get_request("vxlan_sys_4789", 2).len(), 16 + 16 + 20);
    }
}
