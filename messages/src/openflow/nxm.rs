//! NXM and OXM: a match as a list of type-length-value entries. Both share
//! one header layout (class 16 bits, field 7, has-mask 1, length 8); NXM
//! (Nicira, OpenFlow 1.0) uses classes 0 and 1, OXM (OpenFlow 1.2+) class
//! 0x8000, and OVS accepts either kind in both, so decoding does too.
//! Encoding follows OVS's `nx_put_raw`: the fields a match pins, each
//! under the header OVS picks for that version.

use std::sync::OnceLock;

use crate::field::{self, Field, FieldInfo, NxmHeader, EXPERIMENTER, FIELDS, NXM_NX, OXM_OF};
use crate::flow::*;
use crate::ofp::{port, Match};

use super::{ErrorKind, OfpError, Put, Reader, ONF_VENDOR_ID};

/// `NXM_NX_TUN_METADATA0`'s field number; `tun_metadataN` is 40 + N.
/// Their length is the TLV map's for the field (OVS's variable-length
/// fields): a switch sends that many bytes, a controller may send fewer
/// (the value's low bytes).
const TUN_METADATA_FIELD0: u8 = 40;

/// What a header means: a field, or NXM's cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Meaning {
    Field(&'static FieldInfo),
    Cookie,
}

/// Every header upcalld decodes: the field table's NXM and OXM headers,
/// then the two that belong to no field entry.
fn headers() -> &'static [(NxmHeader, Meaning)] {
    static HEADERS: OnceLock<Vec<(NxmHeader, Meaning)>> = OnceLock::new();
    HEADERS.get_or_init(|| {
        let mut all: Vec<_> = FIELDS
            .iter()
            .flat_map(|f| {
                [f.nxm_header, f.oxm_header]
                    .into_iter()
                    .flatten()
                    .map(move |h| (h, Meaning::Field(f)))
            })
            .collect();
        // NXM's cookie (`NXM_NX_COOKIE`), in flow stats requests.
        all.push((NxmHeader::new(NXM_NX, 30, 8), Meaning::Cookie));
        // OpenFlow 1.5's `OXM_OF_TCP_FLAGS`, which OVS decodes beside
        // ONF's experimenter field of OpenFlow 1.3.
        let tcp_flags = field::by_field(Field::TcpFlags);
        all.push((NxmHeader::new(OXM_OF, 42, 2), Meaning::Field(tcp_flags)));
        all
    })
}

/// The header OVS writes for a field: NXM names in OpenFlow 1.0, OXM
/// names (where the field has one) in 1.2+, `tcp_flags` as ONF's
/// experimenter field in 1.3.
pub fn header_for(info: &FieldInfo, oxm: bool) -> Option<NxmHeader> {
    if let Field::TunMetadata { idx, len, .. } = info.field {
        return Some(NxmHeader::new(NXM_NX, TUN_METADATA_FIELD0 + idx, len));
    }
    let (preferred, other) = if oxm {
        (info.oxm_header, info.nxm_header)
    } else {
        (info.nxm_header, info.oxm_header)
    };
    preferred.or(other).or_else(|| {
        // A field listed under another name for the same slot
        // (`vlan_pcp` under `dl_vlan_pcp`, `in_port` under `in_port_oxm`).
        let first = field::by_field(info.field);
        (first.name != info.name)
            .then(|| header_for(first, oxm))
            .flatten()
    })
}

/// The field a header names, for actions (`load`, `move`, `set_field`).
pub fn field_for_header(raw: u32, exp: Option<u32>) -> Option<&'static FieldInfo> {
    let class = (raw >> 16) as u16;
    let field = ((raw >> 9) & 0x7f) as u8;
    let masked = raw & 0x100 != 0;
    let mut len = (raw & 0xff) as u8;
    if class == EXPERIMENTER {
        if exp != Some(ONF_VENDOR_ID) {
            return None;
        }
        len = len.saturating_sub(4);
    }
    if masked {
        len /= 2;
    }
    if let Some(info) = tun_metadata_for(class, field, len) {
        return Some(info);
    }
    headers().iter().find_map(|(h, m)| match m {
        Meaning::Field(info) if h.class == class && h.field == field && h.len == len => Some(*info),
        _ => None,
    })
}

/// `tun_metadataN` for an NXM header of `len` value bytes, if the TLV map
/// has that field and `len` fits its mapping.
fn tun_metadata_for(class: u16, field: u8, len: u8) -> Option<&'static FieldInfo> {
    let idx = field.checked_sub(TUN_METADATA_FIELD0)?;
    if class != NXM_NX || usize::from(idx) >= TUN_METADATA_NUM {
        return None;
    }
    let info = field::by_name(&format!("tun_metadata{idx}"))?;
    (len >= 1 && len <= info.n_bytes).then_some(info)
}

/// A decoded match, with the cookie NXM may carry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decoded {
    pub matches: Match,
    /// `NXM_NX_COOKIE`: value and mask.
    pub cookie: Option<(u64, u64)>,
}

/// Decodes `buf` (the entries only, no padding) into a match. `strict`
/// refuses unknown fields and unmet prerequisites (flow mods); a lenient
/// decode skips unknown fields (stats requests), as OVS does.
pub fn decode(buf: &[u8], strict: bool) -> Result<Decoded, OfpError> {
    let mut r = Reader::new(buf, ErrorKind::MatchBadLen);
    let mut out = Decoded::default();
    let mut seen: Vec<Field> = Vec::new();
    while !r.is_empty() {
        let raw = r.u32("match field header")?;
        let class = (raw >> 16) as u16;
        let masked = raw & 0x100 != 0;
        let mut payload_len = usize::from((raw & 0xff) as u8);
        let exp = if class == EXPERIMENTER {
            payload_len = payload_len.checked_sub(4).ok_or_else(|| {
                OfpError::new(
                    ErrorKind::MatchBadLen,
                    "experimenter field shorter than its id",
                )
            })?;
            Some(r.u32("experimenter id")?)
        } else {
            None
        };
        let payload = r.bytes(payload_len, "match field value")?;
        if payload_len == 0 || (masked && payload_len % 2 != 0) {
            return Err(OfpError::new(
                ErrorKind::MatchBadLen,
                format!("match field {raw:#010x} has a bad length"),
            ));
        }
        let vlen = if masked { payload_len / 2 } else { payload_len };
        let field_no = ((raw >> 9) & 0x7f) as u8;
        let tun_md = tun_metadata_for(class, field_no, vlen.min(255) as u8);
        let meaning = tun_md.map(Meaning::Field).or_else(|| {
            headers().iter().find_map(|(h, m)| {
                (h.class == class
                    && h.field == field_no
                    && usize::from(h.len) == vlen
                    && (class != EXPERIMENTER || exp == Some(ONF_VENDOR_ID)))
                .then_some(*m)
            })
        });
        let value = be_uint(&payload[..vlen]);
        let mask = if masked {
            be_uint(&payload[vlen..])
        } else {
            ones_bytes(vlen)
        };
        let info = match meaning {
            None if strict => {
                return Err(OfpError::new(
                    ErrorKind::MatchBadField,
                    format!("unknown match field {raw:#010x}"),
                ))
            }
            None => continue,
            Some(Meaning::Cookie) => {
                if out.cookie.is_some() {
                    return Err(OfpError::new(ErrorKind::MatchDupField, "cookie twice"));
                }
                out.cookie = Some((value as u64 & mask as u64, mask as u64));
                continue;
            }
            Some(Meaning::Field(info)) => info,
        };
        let name = info.name;
        if masked && !info.maskable {
            return Err(OfpError::new(
                ErrorKind::MatchBadMask,
                format!("{name} cannot be masked"),
            ));
        }
        if value & !mask != 0 {
            return Err(OfpError::new(
                ErrorKind::MatchBadWildcards,
                format!("{name}: value has bits outside its mask"),
            ));
        }
        let field = info.field;
        let slot = slot_of(field);
        if seen.contains(&slot) && !matches!(field, Field::VlanPcp | Field::IpEcn) {
            return Err(OfpError::new(
                ErrorKind::MatchDupField,
                format!("{name} appears twice"),
            ));
        }
        seen.push(slot);
        if strict && !prereq_met(&out.matches, field) {
            return Err(OfpError::new(
                ErrorKind::MatchBadPrereq,
                format!("{name}: prerequisites not met"),
            ));
        }
        let value = if info.name == "in_port" {
            u128::from(super::port_from_of10(value as u16))
        } else {
            value
        };
        if !value_ok(info, value) {
            return Err(OfpError::new(
                ErrorKind::MatchBadValue,
                format!("{name}: value {value:#x} out of range"),
            ));
        }
        let mask = if masked {
            mask
        } else {
            crate::parse::syntax::exact_mask(info)
        };
        crate::parse::rules::set_match_field(&mut out.matches, info, value, mask);
    }
    Ok(out)
}

/// The value range OVS's `mf_is_value_valid` allows (for matches and
/// set-field actions).
pub(crate) fn value_ok(info: &FieldInfo, v: u128) -> bool {
    match info.field {
        // A port number OVS can have, or a reserved port.
        Field::InPort => v < u128::from(port::FIRST_RESERVED) || v >= u128::from(port::MAX),
        Field::VlanVid => v <= 0x1fff,
        Field::VlanPcp => v <= 7,
        Field::IpDscp => v <= 0x3f,
        Field::NwTos => v & 3 == 0,
        Field::IpEcn => v <= 3,
        Field::IpFrag => v <= 3,
        Field::Ipv6Label => v <= 0xfffff,
        Field::ArpOp => v <= 0xff,
        Field::MplsLabel => v <= 0xfffff,
        Field::MplsTc => v <= 7,
        Field::MplsBos => v <= 1,
        _ => true,
    }
}

/// Fields that share bits of one `Flow` slot count as one for duplicates.
fn slot_of(f: Field) -> Field {
    use Field::*;
    match f {
        VlanVid | DlVlan | VlanTci => VlanTci,
        NwTos | IpDscp => NwTos,
        ArpSpa => Ipv4Src,
        ArpTpa => Ipv4Dst,
        ArpOp => IpProto,
        NdSll => ArpSha,
        NdTll => ArpTha,
        UdpSrc | SctpSrc | IcmpType | Icmpv6Type => TcpSrc,
        UdpDst | SctpDst | IcmpCode | Icmpv6Code => TcpDst,
        f => f,
    }
}

/// OVS's `mf_are_match_prereqs_ok`: the match so far pins what the field
/// needs (the EtherType, the IP protocol, the ICMPv6 type for ND fields).
fn prereq_met(m: &Match, field: Field) -> bool {
    let exact = |f: Field| f.get(&m.mask) == f.full_mask();
    let dl = |t: u16| exact(Field::EthType) && m.flow.dl_type == t;
    let ip = dl(ETH_TYPE_IP);
    let ip6 = dl(ETH_TYPE_IPV6);
    let proto = |p: u8| exact(Field::IpProto) && m.flow.nw_proto == p;
    let icmp6_type = |t: u16| m.mask.tp_src & 0xff == 0xff && m.flow.tp_src & 0xff == t;
    use crate::field::Prereq as P;
    match field.prereq() {
        P::None => true,
        P::Vlan => m.mask.vlans[0].tci & VLAN_CFI != 0 && m.flow.vlans[0].tci & VLAN_CFI != 0,
        P::Mpls => dl(ETH_TYPE_MPLS) || dl(ETH_TYPE_MPLS_MCAST),
        P::Arp => dl(ETH_TYPE_ARP) || dl(ETH_TYPE_RARP),
        P::Ip => ip,
        P::Ipv6 => ip6,
        P::IpAny => ip || ip6,
        P::Tcp => (ip || ip6) && proto(IPPROTO_TCP),
        P::Udp => (ip || ip6) && proto(IPPROTO_UDP),
        P::Sctp => (ip || ip6) && proto(IPPROTO_SCTP),
        P::Icmpv4 => ip && proto(IPPROTO_ICMP),
        P::Icmpv6 => ip6 && proto(IPPROTO_ICMPV6),
        P::Nd => {
            ip6 && proto(IPPROTO_ICMPV6)
                && (icmp6_type(ND_NEIGHBOR_SOLICIT) || icmp6_type(ND_NEIGHBOR_ADVERT))
        }
        P::NdSolicit => ip6 && proto(IPPROTO_ICMPV6) && icmp6_type(ND_NEIGHBOR_SOLICIT),
        P::NdAdvert => ip6 && proto(IPPROTO_ICMPV6) && icmp6_type(ND_NEIGHBOR_ADVERT),
        P::CtValid => {
            let valid = CS_NEW | CS_ESTABLISHED | CS_REPLY_DIR;
            m.mask.ct_state & valid != 0 && m.flow.ct_state & valid != 0
        }
    }
}

fn be_uint(b: &[u8]) -> u128 {
    b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x))
}

fn ones_bytes(n: usize) -> u128 {
    if n >= 16 {
        u128::MAX
    } else {
        (1u128 << (n * 8)) - 1
    }
}

/// Appends one entry: the header, the value, and the mask unless it is
/// all ones.
pub fn put_entry(out: &mut Vec<u8>, h: NxmHeader, value: u128, mask: u128) {
    let full = ones_bytes(usize::from(h.len));
    let masked = mask & full != full;
    out.put_u32(h.raw(masked));
    if h.class == EXPERIMENTER {
        out.put_u32(ONF_VENDOR_ID);
    }
    let n = usize::from(h.len);
    out.extend_from_slice(&(value & mask).to_be_bytes()[16 - n..]);
    if masked {
        out.extend_from_slice(&mask.to_be_bytes()[16 - n..]);
    }
}

/// Encodes `m` as NXM (`oxm` false) or OXM entries, without padding.
pub fn encode(m: &Match, oxm: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    let (f, w) = (&m.flow, &m.mask);
    let put = |out: &mut Vec<u8>, name: &str, value: u128, mask: u128| {
        if mask == 0 {
            return;
        }
        let Some(info) = field::by_name(name) else {
            return;
        };
        // A field narrower than its bytes (arp_op in nw_proto, vlan_vid's
        // 13 bits) matched on all its bits goes without a mask.
        let exact = mask == info.field.full_mask() && info.field != Field::Ipv6Label;
        if let Some(h) = header_for(info, oxm) {
            put_entry(out, h, value, if exact { u128::MAX } else { mask });
        }
    };
    let mac = |a: [u8; 6]| be_uint(&a);
    if w.in_port != 0 {
        if oxm {
            put(&mut out, "in_port_oxm", f.in_port.into(), u32::MAX.into());
        } else {
            let p = super::port_to_of10(f.in_port);
            put(&mut out, "in_port", p.into(), 0xffff);
        }
    }
    put(&mut out, "eth_src", mac(f.dl_src), mac(w.dl_src));
    put(&mut out, "eth_dst", mac(f.dl_dst), mac(w.dl_dst));
    put(&mut out, "eth_type", f.dl_type.into(), w.dl_type.into());
    let (tci, tci_mask) = (f.vlans[0].tci, w.vlans[0].tci);
    if oxm {
        let vid_cfi = VLAN_VID_MASK | VLAN_CFI;
        put(
            &mut out,
            "vlan_vid",
            (tci & vid_cfi).into(),
            (tci_mask & vid_cfi).into(),
        );
        if tci & vid_cfi != 0 && tci_mask & VLAN_PCP_MASK != 0 {
            put(&mut out, "vlan_pcp", (tci >> VLAN_PCP_SHIFT).into(), 0xff);
        }
    } else {
        put(&mut out, "vlan_tci", tci.into(), tci_mask.into());
    }
    if w.dl_type == u16::MAX && eth_type_mpls(f.dl_type) {
        let (lse, lm) = (f.mpls_lse[0], w.mpls_lse[0]);
        if oxm {
            put(
                &mut out,
                "mpls_label",
                (lse >> 12).into(),
                (lm >> 12).into(),
            );
            put(
                &mut out,
                "mpls_tc",
                ((lse >> 9) & 7).into(),
                ((lm >> 9) & 7).into(),
            );
            put(
                &mut out,
                "mpls_bos",
                ((lse >> 8) & 1).into(),
                ((lm >> 8) & 1).into(),
            );
        }
        put(
            &mut out,
            "mpls_ttl",
            (lse & 0xff).into(),
            (lm & 0xff).into(),
        );
    }
    let ip = f.dl_type == ETH_TYPE_IP;
    let ip6 = f.dl_type == ETH_TYPE_IPV6;
    if w.dl_type == u16::MAX && (ip || ip6) {
        if ip {
            put(&mut out, "ip_src", f.nw_src.into(), w.nw_src.into());
            put(&mut out, "ip_dst", f.nw_dst.into(), w.nw_dst.into());
        } else {
            put(
                &mut out,
                "ipv6_src",
                be_uint(&f.ipv6_src),
                be_uint(&w.ipv6_src),
            );
            put(
                &mut out,
                "ipv6_dst",
                be_uint(&f.ipv6_dst),
                be_uint(&w.ipv6_dst),
            );
            let label_mask = if w.ipv6_label == u32::MAX {
                u32::MAX
            } else {
                w.ipv6_label
            };
            put(
                &mut out,
                "ipv6_label",
                f.ipv6_label.into(),
                label_mask.into(),
            );
        }
        put(
            &mut out,
            "ip_frag",
            f.nw_frag.into(),
            (w.nw_frag & FLOW_NW_FRAG_MASK).into(),
        );
        if w.nw_tos & 0xfc != 0 {
            if oxm {
                put(&mut out, "ip_dscp", (f.nw_tos >> 2).into(), 0xff);
            } else {
                put(&mut out, "nw_tos", (f.nw_tos & 0xfc).into(), 0xff);
            }
        }
        if w.nw_tos & 3 != 0 {
            put(&mut out, "nw_ecn", (f.nw_tos & 3).into(), 0xff);
        }
        put(&mut out, "nw_ttl", f.nw_ttl.into(), w.nw_ttl.into());
        put(&mut out, "nw_proto", f.nw_proto.into(), w.nw_proto.into());
        if w.nw_proto == u8::MAX {
            let (ps, pd) = (
                (f.tp_src.into(), w.tp_src.into()),
                (f.tp_dst.into(), w.tp_dst.into()),
            );
            match f.nw_proto {
                IPPROTO_TCP => {
                    put(&mut out, "tcp_src", ps.0, ps.1);
                    put(&mut out, "tcp_dst", pd.0, pd.1);
                    put(
                        &mut out,
                        "tcp_flags",
                        f.tcp_flags.into(),
                        w.tcp_flags.into(),
                    );
                }
                IPPROTO_UDP => {
                    put(&mut out, "udp_src", ps.0, ps.1);
                    put(&mut out, "udp_dst", pd.0, pd.1);
                }
                IPPROTO_SCTP => {
                    put(&mut out, "sctp_src", ps.0, ps.1);
                    put(&mut out, "sctp_dst", pd.0, pd.1);
                }
                IPPROTO_ICMP if ip => {
                    put(
                        &mut out,
                        "icmp_type",
                        (f.tp_src & 0xff).into(),
                        (w.tp_src & 0xff).into(),
                    );
                    put(
                        &mut out,
                        "icmp_code",
                        (f.tp_dst & 0xff).into(),
                        (w.tp_dst & 0xff).into(),
                    );
                }
                IPPROTO_ICMPV6 if ip6 => {
                    put(
                        &mut out,
                        "icmpv6_type",
                        (f.tp_src & 0xff).into(),
                        (w.tp_src & 0xff).into(),
                    );
                    put(
                        &mut out,
                        "icmpv6_code",
                        (f.tp_dst & 0xff).into(),
                        (w.tp_dst & 0xff).into(),
                    );
                    put(
                        &mut out,
                        "nd_target",
                        be_uint(&f.nd_target),
                        be_uint(&w.nd_target),
                    );
                    put(&mut out, "nd_sll", mac(f.arp_sha), mac(w.arp_sha));
                    put(&mut out, "nd_tll", mac(f.arp_tha), mac(w.arp_tha));
                }
                _ => {}
            }
        }
    } else if w.dl_type == u16::MAX && (f.dl_type == ETH_TYPE_ARP || f.dl_type == ETH_TYPE_RARP) {
        // The 16-bit arp_op lives in the 8-bit nw_proto.
        let op_mask = if w.nw_proto == u8::MAX {
            u128::MAX
        } else {
            w.nw_proto.into()
        };
        put(&mut out, "arp_op", f.nw_proto.into(), op_mask);
        put(&mut out, "arp_spa", f.nw_src.into(), w.nw_src.into());
        put(&mut out, "arp_tpa", f.nw_dst.into(), w.nw_dst.into());
        put(&mut out, "arp_sha", mac(f.arp_sha), mac(w.arp_sha));
        put(&mut out, "arp_tha", mac(f.arp_tha), mac(w.arp_tha));
    }
    put(&mut out, "tun_id", f.tun_id.into(), w.tun_id.into());
    put(&mut out, "tun_src", f.tun_src.into(), w.tun_src.into());
    put(&mut out, "tun_dst", f.tun_dst.into(), w.tun_dst.into());
    for (idx, _) in crate::tlv::current().iter() {
        let name = format!("tun_metadata{idx}");
        if let Some(info) = field::by_name(&name) {
            put(&mut out, &name, info.field.get(f), info.field.get(w));
        }
    }
    put(&mut out, "pkt_mark", f.pkt_mark.into(), w.pkt_mark.into());
    for i in 0..f.regs.len() {
        put(
            &mut out,
            &format!("reg{i}"),
            f.regs[i].into(),
            w.regs[i].into(),
        );
    }
    put(&mut out, "metadata", f.metadata.into(), w.metadata.into());
    put(&mut out, "ct_state", f.ct_state.into(), w.ct_state.into());
    put(&mut out, "ct_zone", f.ct_zone.into(), w.ct_zone.into());
    put(&mut out, "ct_mark", f.ct_mark.into(), w.ct_mark.into());
    put(
        &mut out,
        "ct_label",
        be_uint(&f.ct_label),
        be_uint(&w.ct_label),
    );
    put(
        &mut out,
        "recirc_id",
        f.recirc_id.into(),
        w.recirc_id.into(),
    );
    put(&mut out, "dp_hash", f.dp_hash.into(), w.dp_hash.into());
    // The rest by the table's accessors (the ct tuple after ct_state,
    // which it needs).
    for name in [
        "conj_id",
        "actset_output",
        "tun_ipv6_src",
        "tun_ipv6_dst",
        "tun_gbp_id",
        "tun_gbp_flags",
        "tun_flags",
        "ct_nw_proto",
        "ct_nw_src",
        "ct_nw_dst",
        "ct_ipv6_src",
        "ct_ipv6_dst",
        "ct_tp_src",
        "ct_tp_dst",
    ] {
        if let Some(info) = field::by_name(name) {
            put(&mut out, name, info.field.get(f), info.field.get(w));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_two_fields_share_a_header() {
        let all = headers();
        for (i, (h, _)) in all.iter().enumerate() {
            assert!(
                all[i + 1..].iter().all(|(o, _)| o != h),
                "header {h:?} twice"
            );
        }
        let reg3 = field_for_header(NxmHeader::new(NXM_NX, 3, 4).raw(false), None);
        assert_eq!(reg3.map(|f| f.field), Some(Field::Reg(3)));
        let tcp_flags = by_field_header(Field::TcpFlags, true);
        assert_eq!(tcp_flags, Some(NxmHeader::new(EXPERIMENTER, 42, 2)));
    }

    fn by_field_header(f: Field, oxm: bool) -> Option<NxmHeader> {
        header_for(field::by_field(f), oxm)
    }
}
