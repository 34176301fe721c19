//! Datapath action attributes (`OVS_ACTION_ATTR_*`) and their conversion
//! from and to [`OdpAction`].

use netlink_packet_core::{DecodeError, Emitable, Nla, NlaBuffer, Parseable};

use super::consts::*;
use super::key::KeyAttr;
use super::nla::*;
use crate::flow::VLAN_CFI;
use crate::odp::{ArpKey, EthKey, Ipv4Key, Ipv6Key, NdKey, OdpAction, PortsKey, SetHeader};

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
    Recirc(u32),
    /// Any other action, kept as received.
    Other(u16, Vec<u8>),
}

impl Nla for ActionAttr {
    fn value_len(&self) -> usize {
        match self {
            ActionAttr::Output(_) | ActionAttr::Recirc(_) => 4,
            ActionAttr::Userspace { userdata, .. } => {
                8 + userdata
                    .as_ref()
                    .map_or(0, |u| (4 + u.len()).next_multiple_of(4))
            }
            ActionAttr::Set(k) => k.buffer_len(),
            ActionAttr::SetMasked { key, .. } => 4 + (2 * key.payload_len()).next_multiple_of(4),
            ActionAttr::PushVlan { .. } => 4,
            ActionAttr::PopVlan => 0,
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
            ActionAttr::Recirc(_) => OVS_ACTION_ATTR_RECIRC,
            ActionAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            ActionAttr::Output(x) | ActionAttr::Recirc(x) => b.copy_from_slice(&x.to_ne_bytes()),
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
            ActionAttr::PopVlan => {}
            ActionAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
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
                ActionAttr::Recirc(id) => {
                    return Err(DecodeError::from(format!(
                        "action recirc({id}) is not supported"
                    )))
                }
                ActionAttr::Other(k, _) => {
                    return Err(DecodeError::from(format!(
                        "action type {k} is not supported"
                    )))
                }
            })
        })
        .collect()
}
