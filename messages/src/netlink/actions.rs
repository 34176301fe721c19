//! Datapath action attributes (`OVS_ACTION_ATTR_*`) and their conversion
//! from and to [`OdpAction`].

use netlink_packet_core::{DecodeError, Emitable, Nla, NlaBuffer, Parseable};

use super::consts::*;
use super::key::KeyAttr;
use super::nla::*;
use crate::flow::VLAN_CFI;
use crate::odp::{
    ArpKey, CtAction, CtHelper, EthKey, Ipv4Key, Ipv6Key, NatAction, NatAddrs, NatKind, NdKey,
    OdpAction, PortsKey, SetHeader,
};

/// OVS userspace's `OVS_ACTION_ATTR_TUNNEL_PUSH` and `_POP`.
const OVS_ACTION_ATTR_TUNNEL_PUSH: u16 = 23;
const OVS_ACTION_ATTR_TUNNEL_POP: u16 = 24;

/// One `OVS_ACTION_ATTR_*` attribute.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ActionAttr {
    Output(u32),
    Userspace {
        pid: u32,
        userdata: Option<Vec<u8>>,
    },
    /// Sets a whole header (the kernel reports actions it turned into
    /// masked sets this way).
    Set(KeyAttr),
    /// Sets the bits of `key` selected by `mask`; both have the same type.
    SetMasked {
        key: KeyAttr,
        mask: KeyAttr,
    },
    PushVlan {
        tpid: u16,
        tci: u16,
    },
    PopVlan,
    /// `OVS_ACTION_ATTR_PUSH_MPLS`: `struct ovs_action_push_mpls`.
    PushMpls {
        lse: u32,
        ethertype: u16,
    },
    /// `OVS_ACTION_ATTR_POP_MPLS`: the EtherType after the pop.
    PopMpls(u16),
    Recirc(u32),
    /// `OVS_ACTION_ATTR_CT` and its nested `OVS_CT_ATTR_*`.
    Ct(CtAction),
    CtClear,
    /// `OVS_ACTION_ATTR_CLONE`: nested actions run on a copy.
    Clone(Vec<ActionAttr>),
    /// `OVS_ACTION_ATTR_TRUNC`: the next output sends at most this many bytes.
    Trunc(u32),
    /// `OVS_ACTION_ATTR_METER`: the datapath's meter with this id.
    Meter(u32),
    /// `OVS_ACTION_ATTR_HASH`: `struct ovs_action_hash { alg, basis }`.
    Hash {
        alg: u32,
        basis: u32,
    },
    /// `OVS_ACTION_ATTR_CHECK_PKT_LEN`: `gt` for packets longer than
    /// `pkt_len`, `le` for the others.
    CheckPktLen {
        pkt_len: u16,
        gt: Vec<ActionAttr>,
        le: Vec<ActionAttr>,
    },
    /// Any other action, kept as received.
    Other(u16, Vec<u8>),
}

impl Nla for ActionAttr {
    fn value_len(&self) -> usize {
        match self {
            ActionAttr::Output(_)
            | ActionAttr::Recirc(_)
            | ActionAttr::Trunc(_)
            | ActionAttr::Meter(_) => 4,
            ActionAttr::Clone(inner) => inner.as_slice().buffer_len(),
            ActionAttr::CheckPktLen { .. } => emit_check_pkt_len(self).len(),
            ActionAttr::Userspace { userdata, .. } => {
                8 + userdata
                    .as_ref()
                    .map_or(0, |u| (4 + u.len()).next_multiple_of(4))
            }
            ActionAttr::Set(k) => k.buffer_len(),
            ActionAttr::SetMasked { key, .. } => 4 + (2 * key.payload_len()).next_multiple_of(4),
            ActionAttr::PushVlan { .. } => 4,
            ActionAttr::PushMpls { .. } => 8,
            ActionAttr::PopMpls(_) => 2,
            ActionAttr::Hash { .. } => 8,
            ActionAttr::PopVlan | ActionAttr::CtClear => 0,
            ActionAttr::Ct(ct) => emit_ct(ct).len(),
            ActionAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            ActionAttr::Output(_) => OVS_ACTION_ATTR_OUTPUT,
            ActionAttr::Userspace { .. } => OVS_ACTION_ATTR_USERSPACE,
            ActionAttr::Set(_) => OVS_ACTION_ATTR_SET,
            ActionAttr::SetMasked { .. } => OVS_ACTION_ATTR_SET_MASKED,
            ActionAttr::PushVlan { .. } => OVS_ACTION_ATTR_PUSH_VLAN,
            ActionAttr::PopVlan => OVS_ACTION_ATTR_POP_VLAN,
            ActionAttr::PushMpls { .. } => OVS_ACTION_ATTR_PUSH_MPLS,
            ActionAttr::PopMpls(_) => OVS_ACTION_ATTR_POP_MPLS,
            ActionAttr::Recirc(_) => OVS_ACTION_ATTR_RECIRC,
            ActionAttr::Ct(_) => OVS_ACTION_ATTR_CT,
            ActionAttr::CtClear => OVS_ACTION_ATTR_CT_CLEAR,
            ActionAttr::Clone(_) => OVS_ACTION_ATTR_CLONE,
            ActionAttr::Trunc(_) => OVS_ACTION_ATTR_TRUNC,
            ActionAttr::Meter(_) => OVS_ACTION_ATTR_METER,
            ActionAttr::Hash { .. } => OVS_ACTION_ATTR_HASH,
            ActionAttr::CheckPktLen { .. } => OVS_ACTION_ATTR_CHECK_PKT_LEN,
            ActionAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            ActionAttr::Output(x)
            | ActionAttr::Recirc(x)
            | ActionAttr::Trunc(x)
            | ActionAttr::Meter(x) => b.copy_from_slice(&x.to_ne_bytes()),
            ActionAttr::Clone(inner) => inner.as_slice().emit(b),
            ActionAttr::Hash { alg, basis } => {
                b[0..4].copy_from_slice(&alg.to_ne_bytes());
                b[4..8].copy_from_slice(&basis.to_ne_bytes());
            }
            ActionAttr::CheckPktLen { .. } => b.copy_from_slice(&emit_check_pkt_len(self)),
            ActionAttr::Userspace { pid, userdata } => {
                emit_attr_header(&mut b[0..4], OVS_USERSPACE_ATTR_PID, 4);
                b[4..8].copy_from_slice(&pid.to_ne_bytes());
                if let Some(u) = userdata {
                    emit_attr_header(&mut b[8..12], OVS_USERSPACE_ATTR_USERDATA, u.len());
                    b[12..12 + u.len()].copy_from_slice(u);
                    b[12 + u.len()..].fill(0);
                }
            }
            ActionAttr::Set(k) => k.emit(b),
            ActionAttr::SetMasked { key, mask } => {
                let n = key.payload_len();
                emit_attr_header(&mut b[0..4], key.kind(), 2 * n);
                key.emit_payload(&mut b[4..4 + n]);
                mask.emit_payload(&mut b[4 + n..4 + 2 * n]);
                b[4 + 2 * n..].fill(0);
            }
            ActionAttr::PushVlan { tpid, tci } => {
                b[0..2].copy_from_slice(&tpid.to_be_bytes());
                b[2..4].copy_from_slice(&tci.to_be_bytes());
            }
            ActionAttr::PushMpls { lse, ethertype } => {
                b[0..4].copy_from_slice(&lse.to_be_bytes());
                b[4..6].copy_from_slice(&ethertype.to_be_bytes());
                b[6..8].fill(0);
            }
            ActionAttr::PopMpls(ethertype) => b.copy_from_slice(&ethertype.to_be_bytes()),
            ActionAttr::PopVlan | ActionAttr::CtClear => {}
            ActionAttr::Ct(ct) => b.copy_from_slice(&emit_ct(ct)),
            ActionAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

/// The nested attributes of `OVS_ACTION_ATTR_CHECK_PKT_LEN`, in the order
/// OVS's `xlate_check_pkt_larger` writes them.
fn emit_check_pkt_len(a: &ActionAttr) -> Vec<u8> {
    let mut out = Vec::new();
    if let ActionAttr::CheckPktLen { pkt_len, gt, le } = a {
        put_attr(
            &mut out,
            OVS_CHECK_PKT_LEN_ATTR_PKT_LEN,
            &pkt_len.to_ne_bytes(),
        );
        put_attr(
            &mut out,
            OVS_CHECK_PKT_LEN_ATTR_ACTIONS_IF_GREATER,
            &emit_action_attrs(gt),
        );
        put_attr(
            &mut out,
            OVS_CHECK_PKT_LEN_ATTR_ACTIONS_IF_LESS_EQUAL,
            &emit_action_attrs(le),
        );
    }
    out
}

/// Decodes `OVS_ACTION_ATTR_CHECK_PKT_LEN`'s payload.
fn parse_check_pkt_len(v: &[u8]) -> Result<ActionAttr, DecodeError> {
    let (mut pkt_len, mut gt, mut le) = (None, None, None);
    for (kind, p) in nested(v, "OVS_ACTION_ATTR_CHECK_PKT_LEN")? {
        match kind {
            OVS_CHECK_PKT_LEN_ATTR_PKT_LEN => {
                pkt_len = Some(u16::from_ne_bytes(fixed(
                    &p,
                    "OVS_CHECK_PKT_LEN_ATTR_PKT_LEN",
                )?))
            }
            OVS_CHECK_PKT_LEN_ATTR_ACTIONS_IF_GREATER => gt = Some(parse_action_attrs(&p)?),
            OVS_CHECK_PKT_LEN_ATTR_ACTIONS_IF_LESS_EQUAL => le = Some(parse_action_attrs(&p)?),
            other => {
                return Err(DecodeError::from(format!(
                    "OVS_ACTION_ATTR_CHECK_PKT_LEN: unknown attribute {other}"
                )))
            }
        }
    }
    match (pkt_len, gt, le) {
        (Some(pkt_len), Some(gt), Some(le)) => Ok(ActionAttr::CheckPktLen { pkt_len, gt, le }),
        _ => Err(DecodeError::from(
            "OVS_ACTION_ATTR_CHECK_PKT_LEN: needs a length and both action lists",
        )),
    }
}

/// Appends one attribute (header, payload, padding to 4 bytes).
fn put_attr(out: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    out.extend_from_slice(&((payload.len() + 4) as u16).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload);
    out.resize(out.len().next_multiple_of(4), 0);
}

/// The nested attributes of `OVS_ACTION_ATTR_CT`, in the order OVS's
/// `compose_conntrack_action` writes them. The zone is always sent.
fn emit_ct(ct: &CtAction) -> Vec<u8> {
    let mut out = Vec::new();
    if ct.force {
        put_attr(&mut out, OVS_CT_ATTR_FORCE_COMMIT, &[]);
    } else if ct.commit {
        put_attr(&mut out, OVS_CT_ATTR_COMMIT, &[]);
    }
    put_attr(&mut out, OVS_CT_ATTR_ZONE, &ct.zone.to_ne_bytes());
    if let Some((v, m)) = ct.mark {
        let mut p = v.to_ne_bytes().to_vec();
        p.extend_from_slice(&m.to_ne_bytes());
        put_attr(&mut out, OVS_CT_ATTR_MARK, &p);
    }
    if let Some((v, m)) = ct.labels {
        // OVS's `ovs_u128` in memory: the value in host order.
        let mut p = v.to_ne_bytes().to_vec();
        p.extend_from_slice(&m.to_ne_bytes());
        put_attr(&mut out, OVS_CT_ATTR_LABELS, &p);
    }
    if let Some(h) = ct.helper {
        let mut p = h.name().as_bytes().to_vec();
        p.push(0);
        put_attr(&mut out, OVS_CT_ATTR_HELPER, &p);
    }
    if let Some(t) = &ct.timeout {
        let mut p = t.as_bytes().to_vec();
        p.push(0);
        put_attr(&mut out, OVS_CT_ATTR_TIMEOUT, &p);
    }
    if let Some(nat) = &ct.nat {
        put_attr(&mut out, OVS_CT_ATTR_NAT, &emit_nat(nat));
    }
    out
}

/// The nested attributes of `OVS_CT_ATTR_NAT` (OVS's `put_ct_nat`): an
/// address or port maximum only when it is above the minimum.
fn emit_nat(nat: &NatAction) -> Vec<u8> {
    let mut out = Vec::new();
    let Some(kind) = nat.kind else {
        return out;
    };
    let flag = match kind {
        NatKind::Src => OVS_NAT_ATTR_SRC,
        NatKind::Dst => OVS_NAT_ATTR_DST,
    };
    put_attr(&mut out, flag, &[]);
    if nat.persistent {
        put_attr(&mut out, OVS_NAT_ATTR_PERSISTENT, &[]);
    }
    if nat.hash {
        put_attr(&mut out, OVS_NAT_ATTR_PROTO_HASH, &[]);
    } else if nat.random {
        put_attr(&mut out, OVS_NAT_ATTR_PROTO_RANDOM, &[]);
    }
    match nat.addrs {
        Some(NatAddrs::V4 { min, max }) => {
            put_attr(&mut out, OVS_NAT_ATTR_IP_MIN, &min.to_be_bytes());
            if max > min {
                put_attr(&mut out, OVS_NAT_ATTR_IP_MAX, &max.to_be_bytes());
            }
        }
        Some(NatAddrs::V6 { min, max }) => {
            put_attr(&mut out, OVS_NAT_ATTR_IP_MIN, &min);
            if max > min {
                put_attr(&mut out, OVS_NAT_ATTR_IP_MAX, &max);
            }
        }
        None => {}
    }
    if let (Some(_), Some((min, max))) = (nat.addrs, nat.ports) {
        put_attr(&mut out, OVS_NAT_ATTR_PROTO_MIN, &min.to_ne_bytes());
        if max > min {
            put_attr(&mut out, OVS_NAT_ATTR_PROTO_MAX, &max.to_ne_bytes());
        }
    }
    out
}

fn nested(v: &[u8], what: &str) -> Result<Vec<(u16, Vec<u8>)>, DecodeError> {
    netlink_packet_core::NlasIterator::new(v)
        .map(|nla| {
            let nla = nla.map_err(|e| DecodeError::from(format!("{what}: {e}")))?;
            Ok((nla.kind(), nla.value().to_vec()))
        })
        .collect()
}

/// Decodes `OVS_ACTION_ATTR_CT`'s payload; unknown attributes are refused
/// (a datapath never sends back what it was not given), the event mask
/// (which only concerns ctnetlink listeners) is accepted and dropped.
fn parse_ct(v: &[u8]) -> Result<CtAction, DecodeError> {
    let mut ct = CtAction::default();
    for (kind, p) in nested(v, "OVS_ACTION_ATTR_CT")? {
        match kind {
            OVS_CT_ATTR_COMMIT => ct.commit = true,
            OVS_CT_ATTR_FORCE_COMMIT => {
                ct.commit = true;
                ct.force = true;
            }
            OVS_CT_ATTR_ZONE => ct.zone = u16_ne(&p, "OVS_CT_ATTR_ZONE")?,
            OVS_CT_ATTR_MARK => {
                let b: [u8; 8] = fixed(&p, "OVS_CT_ATTR_MARK")?;
                ct.mark = Some((
                    u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                    u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
                ));
            }
            OVS_CT_ATTR_LABELS => {
                let b: [u8; 32] = fixed(&p, "OVS_CT_ATTR_LABELS")?;
                let half = |h: &[u8]| u128::from_ne_bytes(h.try_into().unwrap_or([0; 16]));
                ct.labels = Some((half(&b[..16]), half(&b[16..])));
            }
            OVS_CT_ATTR_HELPER => {
                ct.helper = Some(match string(&p, "OVS_CT_ATTR_HELPER")?.as_str() {
                    "ftp" => CtHelper::Ftp,
                    "tftp" => CtHelper::Tftp,
                    other => {
                        return Err(DecodeError::from(format!(
                            "OVS_CT_ATTR_HELPER: unknown helper {other:?}"
                        )))
                    }
                })
            }
            OVS_CT_ATTR_TIMEOUT => ct.timeout = Some(string(&p, "OVS_CT_ATTR_TIMEOUT")?),
            OVS_CT_ATTR_NAT => ct.nat = Some(parse_nat(&p)?),
            OVS_CT_ATTR_EVENTMASK => {}
            other => {
                return Err(DecodeError::from(format!(
                    "OVS_ACTION_ATTR_CT: unknown attribute {other}"
                )))
            }
        }
    }
    Ok(ct)
}

fn parse_nat(v: &[u8]) -> Result<NatAction, DecodeError> {
    let mut nat = NatAction::default();
    let (mut ip_min, mut ip_max) = (None::<Vec<u8>>, None::<Vec<u8>>);
    let (mut port_min, mut port_max) = (None, None);
    for (kind, p) in nested(v, "OVS_CT_ATTR_NAT")? {
        match kind {
            OVS_NAT_ATTR_SRC => nat.kind = Some(NatKind::Src),
            OVS_NAT_ATTR_DST => nat.kind = Some(NatKind::Dst),
            OVS_NAT_ATTR_IP_MIN => ip_min = Some(p),
            OVS_NAT_ATTR_IP_MAX => ip_max = Some(p),
            OVS_NAT_ATTR_PROTO_MIN => port_min = Some(u16_ne(&p, "OVS_NAT_ATTR_PROTO_MIN")?),
            OVS_NAT_ATTR_PROTO_MAX => port_max = Some(u16_ne(&p, "OVS_NAT_ATTR_PROTO_MAX")?),
            OVS_NAT_ATTR_PERSISTENT => nat.persistent = true,
            OVS_NAT_ATTR_PROTO_HASH => nat.hash = true,
            OVS_NAT_ATTR_PROTO_RANDOM => nat.random = true,
            other => {
                return Err(DecodeError::from(format!(
                    "OVS_CT_ATTR_NAT: unknown attribute {other}"
                )))
            }
        }
    }
    nat.addrs = match ip_min {
        None => None,
        Some(min) => match min.len() {
            4 => {
                let min = u32::from_be_bytes(fixed(&min, "OVS_NAT_ATTR_IP_MIN")?);
                let max = match ip_max {
                    Some(m) => u32::from_be_bytes(fixed(&m, "OVS_NAT_ATTR_IP_MAX")?),
                    None => min,
                };
                Some(NatAddrs::V4 { min, max })
            }
            16 => {
                let min: [u8; 16] = fixed(&min, "OVS_NAT_ATTR_IP_MIN")?;
                let max = match ip_max {
                    Some(m) => fixed(&m, "OVS_NAT_ATTR_IP_MAX")?,
                    None => min,
                };
                Some(NatAddrs::V6 { min, max })
            }
            n => {
                return Err(DecodeError::from(format!(
                    "OVS_NAT_ATTR_IP_MIN: {n} bytes, expected 4 or 16"
                )))
            }
        },
    };
    nat.ports = port_min.map(|min| (min, port_max.unwrap_or(min)));
    Ok(nat)
}

/// Writes a netlink attribute header (length includes the header).
fn emit_attr_header(b: &mut [u8], kind: u16, payload_len: usize) {
    b[0..2].copy_from_slice(&((payload_len + 4) as u16).to_ne_bytes());
    b[2..4].copy_from_slice(&kind.to_ne_bytes());
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for ActionAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_ACTION_ATTR_OUTPUT => ActionAttr::Output(u32_ne(v, "OVS_ACTION_ATTR_OUTPUT")?),
            OVS_ACTION_ATTR_RECIRC => ActionAttr::Recirc(u32_ne(v, "OVS_ACTION_ATTR_RECIRC")?),
            OVS_ACTION_ATTR_USERSPACE => {
                let mut pid = None;
                let mut userdata = None;
                for nla in netlink_packet_core::NlasIterator::new(v) {
                    let nla = nla.map_err(|e| {
                        DecodeError::from(format!("OVS_ACTION_ATTR_USERSPACE: {e}"))
                    })?;
                    match nla.kind() {
                        OVS_USERSPACE_ATTR_PID => {
                            pid = Some(u32_ne(nla.value(), "OVS_USERSPACE_ATTR_PID")?)
                        }
                        OVS_USERSPACE_ATTR_USERDATA => userdata = Some(nla.value().to_vec()),
                        _ => {}
                    }
                }
                let pid = pid.ok_or_else(|| {
                    DecodeError::from("OVS_ACTION_ATTR_USERSPACE: no OVS_USERSPACE_ATTR_PID")
                })?;
                ActionAttr::Userspace { pid, userdata }
            }
            OVS_ACTION_ATTR_SET => {
                let mut inner: Vec<KeyAttr> = parse_list(v, "OVS_ACTION_ATTR_SET")?;
                if inner.len() != 1 {
                    return Err(DecodeError::from(format!(
                        "OVS_ACTION_ATTR_SET: {} nested attributes, expected 1",
                        inner.len()
                    )));
                }
                ActionAttr::Set(inner.remove(0))
            }
            OVS_ACTION_ATTR_SET_MASKED => {
                let inner = netlink_packet_core::NlasIterator::new(v)
                    .next()
                    .ok_or_else(|| DecodeError::from("OVS_ACTION_ATTR_SET_MASKED: empty"))?
                    .map_err(|e| DecodeError::from(format!("OVS_ACTION_ATTR_SET_MASKED: {e}")))?;
                let payload = inner.value();
                if !payload.len().is_multiple_of(2) {
                    return Err(DecodeError::from(format!(
                        "OVS_ACTION_ATTR_SET_MASKED: odd payload length {}",
                        payload.len()
                    )));
                }
                let (k, m) = payload.split_at(payload.len() / 2);
                ActionAttr::SetMasked {
                    key: KeyAttr::parse_payload(inner.kind(), k)?,
                    mask: KeyAttr::parse_payload(inner.kind(), m)?,
                }
            }
            OVS_ACTION_ATTR_PUSH_VLAN => {
                let b: [u8; 4] = fixed(v, "OVS_ACTION_ATTR_PUSH_VLAN")?;
                ActionAttr::PushVlan {
                    tpid: u16::from_be_bytes([b[0], b[1]]),
                    tci: u16::from_be_bytes([b[2], b[3]]),
                }
            }
            OVS_ACTION_ATTR_POP_VLAN => ActionAttr::PopVlan,
            OVS_ACTION_ATTR_PUSH_MPLS => {
                let b: [u8; 8] = fixed(v, "OVS_ACTION_ATTR_PUSH_MPLS")?;
                ActionAttr::PushMpls {
                    lse: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                    ethertype: u16::from_be_bytes([b[4], b[5]]),
                }
            }
            OVS_ACTION_ATTR_POP_MPLS => {
                let b: [u8; 2] = fixed(v, "OVS_ACTION_ATTR_POP_MPLS")?;
                ActionAttr::PopMpls(u16::from_be_bytes(b))
            }
            OVS_ACTION_ATTR_CT => ActionAttr::Ct(parse_ct(v)?),
            OVS_ACTION_ATTR_CT_CLEAR => ActionAttr::CtClear,
            OVS_ACTION_ATTR_TRUNC => ActionAttr::Trunc(u32_ne(v, "OVS_ACTION_ATTR_TRUNC")?),
            OVS_ACTION_ATTR_METER => ActionAttr::Meter(u32_ne(v, "OVS_ACTION_ATTR_METER")?),
            OVS_ACTION_ATTR_HASH if v.len() == 8 => ActionAttr::Hash {
                alg: u32_ne(&v[..4], "OVS_ACTION_ATTR_HASH")?,
                basis: u32_ne(&v[4..], "OVS_ACTION_ATTR_HASH")?,
            },
            OVS_ACTION_ATTR_CLONE => ActionAttr::Clone(parse_action_attrs(v)?),
            OVS_ACTION_ATTR_CHECK_PKT_LEN => parse_check_pkt_len(v)?,
            other => ActionAttr::Other(other, v.to_vec()),
        })
    }
}

/// Encodes an action list (the payload of `OVS_FLOW_ATTR_ACTIONS`).
pub fn emit_action_attrs(attrs: &[ActionAttr]) -> Vec<u8> {
    let mut out = vec![0u8; attrs.buffer_len()];
    attrs.emit(&mut out);
    out
}

/// Parses an action list.
pub fn parse_action_attrs(buf: &[u8]) -> Result<Vec<ActionAttr>, DecodeError> {
    parse_list(buf, "actions")
}

fn set_header_attrs(h: &SetHeader) -> (KeyAttr, KeyAttr) {
    match *h {
        SetHeader::Ethernet { key, mask } => (KeyAttr::Ethernet(key), KeyAttr::Ethernet(mask)),
        SetHeader::Ipv4 { key, mask } => (KeyAttr::Ipv4(key), KeyAttr::Ipv4(mask)),
        SetHeader::Ipv6 { key, mask } => (KeyAttr::Ipv6(key), KeyAttr::Ipv6(mask)),
        SetHeader::Tcp { key, mask } => (KeyAttr::Tcp(key), KeyAttr::Tcp(mask)),
        SetHeader::Udp { key, mask } => (KeyAttr::Udp(key), KeyAttr::Udp(mask)),
        SetHeader::Sctp { key, mask } => (KeyAttr::Sctp(key), KeyAttr::Sctp(mask)),
        SetHeader::Arp { key, mask } => (KeyAttr::Arp(key), KeyAttr::Arp(mask)),
        SetHeader::Nd { key, mask } => (KeyAttr::Nd(key), KeyAttr::Nd(mask)),
        SetHeader::SkbPriority { key, mask } => (KeyAttr::Priority(key), KeyAttr::Priority(mask)),
        SetHeader::SkbMark { key, mask } => (KeyAttr::SkbMark(key), KeyAttr::SkbMark(mask)),
    }
}

/// The `ActionAttr`s of `actions`. A masked set carries only the masked
/// bits of its value (the kernel refuses others); a pushed TCI gets
/// `VLAN_CFI`, which the kernel requires.
pub fn actions_to_attrs(actions: &[OdpAction]) -> Vec<ActionAttr> {
    actions
        .iter()
        .map(|a| match a {
            OdpAction::Output(p) => ActionAttr::Output(*p),
            OdpAction::Userspace { pid, userdata } => ActionAttr::Userspace {
                pid: *pid,
                userdata: (!userdata.is_empty()).then(|| userdata.clone()),
            },
            OdpAction::SetMasked(h) => {
                let (key, mask) = set_header_attrs(h);
                let mut k = vec![0u8; key.payload_len()];
                let mut m = vec![0u8; mask.payload_len()];
                key.emit_payload(&mut k);
                mask.emit_payload(&mut m);
                for (kb, mb) in k.iter_mut().zip(&m) {
                    *kb &= mb;
                }
                // Re-parsing bytes of the right length for their type
                // cannot fail; keeping `key` unmasked would be the fallback.
                let masked = KeyAttr::parse_payload(key.kind(), &k).unwrap_or(key);
                ActionAttr::SetMasked { key: masked, mask }
            }
            OdpAction::PushVlan { tpid, tci } => ActionAttr::PushVlan {
                tpid: *tpid,
                tci: tci | VLAN_CFI,
            },
            OdpAction::PopVlan => ActionAttr::PopVlan,
            OdpAction::PushMpls { lse, ethertype } => ActionAttr::PushMpls {
                lse: *lse,
                ethertype: *ethertype,
            },
            OdpAction::PopMpls(ethertype) => ActionAttr::PopMpls(*ethertype),
            OdpAction::SetMpls(lse) => ActionAttr::Set(KeyAttr::Mpls(vec![*lse])),
            OdpAction::SetTunnel(t) => ActionAttr::Set(KeyAttr::Tunnel(t.clone())),
            OdpAction::Ct(ct) => ActionAttr::Ct(ct.clone()),
            OdpAction::CtClear => ActionAttr::CtClear,
            OdpAction::Recirc(id) => ActionAttr::Recirc(*id),
            OdpAction::Clone(inner) => ActionAttr::Clone(actions_to_attrs(inner)),
            OdpAction::Trunc(n) => ActionAttr::Trunc(*n),
            OdpAction::Meter(n) => ActionAttr::Meter(*n),
            OdpAction::Hash { alg, basis } => ActionAttr::Hash {
                alg: *alg,
                basis: *basis,
            },
            OdpAction::CheckPktLen { pkt_len, gt, le } => ActionAttr::CheckPktLen {
                pkt_len: *pkt_len,
                gt: actions_to_attrs(gt),
                le: actions_to_attrs(le),
            },
            // Userspace-only actions, OVS's numbers (the kernel's 23 and
            // 24 are other actions): a kernel datapath never gets them,
            // as its configuration refuses native tunnelling.
            OdpAction::TnlPush(p) => {
                ActionAttr::Other(OVS_ACTION_ATTR_TUNNEL_PUSH, p.header.clone())
            }
            OdpAction::TnlPop(port) => {
                ActionAttr::Other(OVS_ACTION_ATTR_TUNNEL_POP, port.to_ne_bytes().to_vec())
            }
        })
        .collect()
}

/// A full mask for the writable fields of a header attribute, for turning
/// a plain `SET` into a masked one.
fn full_set_mask(key: &KeyAttr) -> Option<KeyAttr> {
    const ONES6: [u8; 6] = [0xff; 6];
    const ONES16: [u8; 16] = [0xff; 16];
    Some(match key {
        KeyAttr::Ethernet(_) => KeyAttr::Ethernet(EthKey {
            src: ONES6,
            dst: ONES6,
        }),
        KeyAttr::Ipv4(_) => KeyAttr::Ipv4(Ipv4Key {
            src: u32::MAX,
            dst: u32::MAX,
            proto: 0,
            tos: u8::MAX,
            ttl: u8::MAX,
            frag: 0,
        }),
        KeyAttr::Ipv6(_) => KeyAttr::Ipv6(Ipv6Key {
            src: ONES16,
            dst: ONES16,
            label: 0x000f_ffff,
            proto: 0,
            tclass: u8::MAX,
            hlimit: u8::MAX,
            frag: 0,
        }),
        KeyAttr::Tcp(_) | KeyAttr::Udp(_) | KeyAttr::Sctp(_) => {
            let p = PortsKey {
                src: u16::MAX,
                dst: u16::MAX,
            };
            match key {
                KeyAttr::Tcp(_) => KeyAttr::Tcp(p),
                KeyAttr::Udp(_) => KeyAttr::Udp(p),
                _ => KeyAttr::Sctp(p),
            }
        }
        KeyAttr::Arp(_) => KeyAttr::Arp(ArpKey {
            sip: u32::MAX,
            tip: u32::MAX,
            op: u16::MAX,
            sha: ONES6,
            tha: ONES6,
        }),
        KeyAttr::Nd(_) => KeyAttr::Nd(NdKey {
            target: ONES16,
            sll: ONES6,
            tll: ONES6,
        }),
        KeyAttr::Priority(_) => KeyAttr::Priority(u32::MAX),
        KeyAttr::SkbMark(_) => KeyAttr::SkbMark(u32::MAX),
        _ => return None,
    })
}

fn set_header(key: &KeyAttr, mask: &KeyAttr) -> Result<SetHeader, DecodeError> {
    Ok(match (key, mask) {
        (KeyAttr::Ethernet(key), KeyAttr::Ethernet(mask)) => SetHeader::Ethernet {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Ipv4(key), KeyAttr::Ipv4(mask)) => SetHeader::Ipv4 {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Ipv6(key), KeyAttr::Ipv6(mask)) => SetHeader::Ipv6 {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Tcp(key), KeyAttr::Tcp(mask)) => SetHeader::Tcp {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Udp(key), KeyAttr::Udp(mask)) => SetHeader::Udp {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Sctp(key), KeyAttr::Sctp(mask)) => SetHeader::Sctp {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Arp(key), KeyAttr::Arp(mask)) => SetHeader::Arp {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Nd(key), KeyAttr::Nd(mask)) => SetHeader::Nd {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::Priority(key), KeyAttr::Priority(mask)) => SetHeader::SkbPriority {
            key: *key,
            mask: *mask,
        },
        (KeyAttr::SkbMark(key), KeyAttr::SkbMark(mask)) => SetHeader::SkbMark {
            key: *key,
            mask: *mask,
        },
        _ => {
            return Err(DecodeError::from(format!(
                "set action: unsupported header attribute type {}",
                key.kind()
            )))
        }
    })
}

/// Decodes action attributes into [`OdpAction`]s; actions upcalld does not
/// model are refused with an error naming them.
pub fn actions_from_attrs(attrs: &[ActionAttr]) -> Result<Vec<OdpAction>, DecodeError> {
    attrs
        .iter()
        .map(|a| {
            Ok(match a {
                ActionAttr::Output(p) => OdpAction::Output(*p),
                ActionAttr::Userspace { pid, userdata } => OdpAction::Userspace {
                    pid: *pid,
                    userdata: userdata.clone().unwrap_or_default(),
                },
                ActionAttr::Set(KeyAttr::Tunnel(t)) => OdpAction::SetTunnel(t.clone()),
                // The kernel reports a whole-entry MPLS set either way.
                ActionAttr::Set(KeyAttr::Mpls(lses)) if lses.len() == 1 => {
                    OdpAction::SetMpls(lses[0])
                }
                ActionAttr::SetMasked {
                    key: KeyAttr::Mpls(lses),
                    mask: KeyAttr::Mpls(masks),
                } if lses.len() == 1 && masks[..] == [u32::MAX] => OdpAction::SetMpls(lses[0]),
                ActionAttr::Set(key) => {
                    let mask = full_set_mask(key).ok_or_else(|| {
                        DecodeError::from(format!(
                            "set action: unsupported header attribute type {}",
                            key.kind()
                        ))
                    })?;
                    OdpAction::SetMasked(set_header(key, &mask)?)
                }
                ActionAttr::SetMasked { key, mask } => OdpAction::SetMasked(set_header(key, mask)?),
                ActionAttr::PushVlan { tpid, tci } => OdpAction::PushVlan {
                    tpid: *tpid,
                    tci: *tci,
                },
                ActionAttr::PopVlan => OdpAction::PopVlan,
                ActionAttr::PushMpls { lse, ethertype } => OdpAction::PushMpls {
                    lse: *lse,
                    ethertype: *ethertype,
                },
                ActionAttr::PopMpls(ethertype) => OdpAction::PopMpls(*ethertype),
                ActionAttr::Recirc(id) => OdpAction::Recirc(*id),
                ActionAttr::Ct(ct) => OdpAction::Ct(ct.clone()),
                ActionAttr::CtClear => OdpAction::CtClear,
                ActionAttr::Clone(inner) => OdpAction::Clone(actions_from_attrs(inner)?),
                ActionAttr::Trunc(n) => OdpAction::Trunc(*n),
                ActionAttr::Meter(n) => OdpAction::Meter(*n),
                ActionAttr::Hash { alg, basis } => OdpAction::Hash {
                    alg: *alg,
                    basis: *basis,
                },
                ActionAttr::CheckPktLen { pkt_len, gt, le } => OdpAction::CheckPktLen {
                    pkt_len: *pkt_len,
                    gt: actions_from_attrs(gt)?,
                    le: actions_from_attrs(le)?,
                },
                ActionAttr::Other(k, _) => {
                    return Err(DecodeError::from(format!(
                        "action type {k} is not supported"
                    )))
                }
            })
        })
        .collect()
}
