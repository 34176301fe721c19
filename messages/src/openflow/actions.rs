//! Actions and instructions on the wire: OpenFlow 1.0 actions, OpenFlow
//! 1.3 actions and instructions, and the Nicira actions (NXAST) both carry.
//! Each upcalld action maps to the encoding OVS uses for it in that
//! version (`ofp-actions.c`), so that what `ovs-ofctl` sends comes back
//! unchanged in a flow dump.

use crate::field::Field;
use crate::field::FieldInfo;
use crate::field::{self, ones};
use crate::flow::*;
use crate::learn::{Learn, LearnDst, LearnSpec, LearnSrc, Subfield};
use crate::odp::{NatAction, NatAddrs, NatKind};
use crate::ofp::{
    packet_in_reason, port, ControllerAction, CtSpec, CtZone, Instructions, Match, OfAction,
    NO_METER,
};

use super::nxm;
use super::{ErrorKind as E, OfpError, Put, Reader, NX_VENDOR_ID, OFP10, ONF_VENDOR_ID};
use crate::field::NxmHeader;

// OpenFlow 1.0 action types.
const OFPAT10_OUTPUT: u16 = 0;
const OFPAT10_SET_VLAN_VID: u16 = 1;
const OFPAT10_SET_VLAN_PCP: u16 = 2;
const OFPAT10_STRIP_VLAN: u16 = 3;
const OFPAT10_SET_DL_SRC: u16 = 4;
const OFPAT10_SET_DL_DST: u16 = 5;
const OFPAT10_SET_NW_SRC: u16 = 6;
const OFPAT10_SET_NW_DST: u16 = 7;
const OFPAT10_SET_NW_TOS: u16 = 8;
const OFPAT10_SET_TP_SRC: u16 = 9;
const OFPAT10_SET_TP_DST: u16 = 10;
// OpenFlow 1.1+ action types.
const OFPAT_OUTPUT: u16 = 0;
const OFPAT_PUSH_VLAN: u16 = 17;
const OFPAT_POP_VLAN: u16 = 18;
const OFPAT_DEC_NW_TTL: u16 = 24;
const OFPAT_GROUP: u16 = 22;
const OFPAT_SET_FIELD: u16 = 25;
const OFPAT_EXPERIMENTER: u16 = 0xffff;
// Nicira action subtypes.
const NXAST_RESUBMIT: u16 = 1;
const NXAST_REG_MOVE: u16 = 6;
const NXAST_REG_LOAD: u16 = 7;
const NXAST_RESUBMIT_TABLE: u16 = 14;
const NXAST_OUTPUT_REG: u16 = 15;
const NXAST_DEC_TTL: u16 = 18;
const NXAST_CONTROLLER: u16 = 20;
const NXAST_CONTROLLER2: u16 = 37;
// NXAST_CONTROLLER2's properties (OVS's `nx_action_controller2_prop_type`).
const NXAC2PT_MAX_LEN: u16 = 0;
const NXAC2PT_CONTROLLER_ID: u16 = 1;
const NXAC2PT_REASON: u16 = 2;
const NXAC2PT_USERDATA: u16 = 3;
const NXAC2PT_PAUSE: u16 = 4;
const NXAC2PT_METER_ID: u16 = 5;
const NXAST_DEC_TTL_CNT_IDS: u16 = 21;
const NXAST_WRITE_METADATA: u16 = 22;
const NXAST_REG_LOAD2: u16 = 33;
const NXAST_CT: u16 = 35;
const NXAST_NAT: u16 = 36;
const NXAST_CT_CLEAR: u16 = 43;
const NXAST_FIN_TIMEOUT: u16 = 19;
const NXAST_CONJUNCTION: u16 = 34;
const NXAST_LEARN: u16 = 16;
const NXAST_LEARN2: u16 = 45;
// `learn` flags, and a spec's header: source and destination kinds and
// the width of its value.
const NX_LEARN_F_SEND_FLOW_REM: u16 = 1;
const NX_LEARN_F_DELETE_LEARNED: u16 = 2;
const NX_LEARN_F_WRITE_RESULT: u16 = 4;
const NX_LEARN_SRC_IMMEDIATE: u16 = 1 << 13;
const NX_LEARN_DST_MASK: u16 = 3 << 11;
const NX_LEARN_DST_MATCH: u16 = 0;
const NX_LEARN_DST_LOAD: u16 = 1 << 11;
const NX_LEARN_DST_OUTPUT: u16 = 2 << 11;
const NX_LEARN_N_BITS_MASK: u16 = 0x3ff;
const NXAST_SET_TUNNEL: u16 = 2;
const NXAST_SET_QUEUE: u16 = 4;
const NXAST_SET_TUNNEL64: u16 = 9;
const NXAST_POP_QUEUE: u16 = 5;
const NXAST_EXIT: u16 = 17;
const NXAST_STACK_PUSH: u16 = 27;
const NXAST_STACK_POP: u16 = 28;
const NXAST_OUTPUT_TRUNC: u16 = 39;
const NXAST_CLONE: u16 = 42;
const NXAST_CHECK_PKT_LARGER: u16 = 49;
const OFPAT_SET_QUEUE: u16 = 21;
const NXAST_NOTE: u16 = 8;
const NXAST_MULTIPATH: u16 = 10;
const NXAST_BUNDLE: u16 = 12;
const NXAST_BUNDLE_LOAD: u16 = 13;
const NXAST_SAMPLE: u16 = 29;
const NXAST_SAMPLE2: u16 = 38;
const NXAST_SAMPLE3: u16 = 41;
// OVS's testing actions (its switch takes them only with --enable-dummy).
const NXAST_DEBUG_SLOW: u16 = 254;
const NXAST_DEBUG_RECIRC: u16 = 255;
/// NXM_OF_IN_PORT's header: a bundle's member type.
const NXM_OF_IN_PORT: u32 = 0x0000_0002;
// MPLS: OpenFlow 1.1+ actions, and Nicira's for 1.0.
const OFPAT_SET_MPLS_TTL: u16 = 15;
const OFPAT_DEC_MPLS_TTL: u16 = 16;
const OFPAT_PUSH_MPLS: u16 = 19;
const OFPAT_POP_MPLS: u16 = 20;
const NXAST_PUSH_MPLS: u16 = 23;
const NXAST_POP_MPLS: u16 = 24;
const NXAST_SET_MPLS_TTL: u16 = 25;
const NXAST_DEC_MPLS_TTL: u16 = 26;
const NXAST_SET_MPLS_LABEL: u16 = 30;
const NXAST_SET_MPLS_TC: u16 = 31;
const OFPAT10_ENQUEUE: u16 = 11;
// `ct` flags, `nat` flags and the `nat` parameters present.
const NX_CT_F_COMMIT: u16 = 1;
const NX_CT_F_FORCE: u16 = 2;
const NX_NAT_F_SRC: u16 = 1;
const NX_NAT_F_DST: u16 = 2;
const NX_NAT_F_PERSISTENT: u16 = 4;
const NX_NAT_F_PROTO_HASH: u16 = 8;
const NX_NAT_F_PROTO_RANDOM: u16 = 16;
const NX_NAT_RANGE_IPV4_MIN: u16 = 1;
const NX_NAT_RANGE_IPV4_MAX: u16 = 2;
const NX_NAT_RANGE_IPV6_MIN: u16 = 4;
const NX_NAT_RANGE_IPV6_MAX: u16 = 8;
const NX_NAT_RANGE_PROTO_MIN: u16 = 16;
const NX_NAT_RANGE_PROTO_MAX: u16 = 32;
// OpenFlow 1.1+ instruction types.
const OFPIT_GOTO_TABLE: u16 = 1;
const OFPIT_WRITE_METADATA: u16 = 2;
const OFPIT_WRITE_ACTIONS: u16 = 3;
const OFPIT_APPLY_ACTIONS: u16 = 4;
const OFPIT_CLEAR_ACTIONS: u16 = 5;
const OFPIT_METER: u16 = 6;

/// The 16-bit OpenFlow 1.0 form of OFPP_IN_PORT.
const OFPP10_IN_PORT: u16 = 0xfff8;

/// Decodes an action list. `m` is the rule's match: OpenFlow 1.0's
/// VLAN and transport-port actions become what they mean for it, as
/// `ovs-ofctl` turns `mod_vlan_vid` and `mod_tp_src` into OpenFlow 1.3.
pub fn decode_actions(version: u8, buf: &[u8], m: &Match) -> Result<Instructions, OfpError> {
    let mut ins = Instructions::default();
    let mut r = Reader::new(buf, E::ActionBadLen);
    while !r.is_empty() {
        let kind = r.u16("action type")?;
        let len = usize::from(r.u16("action length")?);
        if len < 8 || len % 8 != 0 || len - 4 > r.remaining() {
            return Err(OfpError::new(
                E::ActionBadLen,
                format!("action type {kind} has length {len}"),
            ));
        }
        let body = r.bytes(len - 4, "action body")?;
        let mut a = Reader::new(body, E::ActionBadLen);
        if kind == OFPAT_EXPERIMENTER {
            decode_nx(version, &mut a, m, &mut ins)?;
        } else if version == OFP10 {
            decode_of10(kind, &mut a, m, &mut ins.apply)?;
        } else {
            decode_of13(kind, &mut a, &mut ins.apply)?;
        }
    }
    Ok(ins)
}

fn bad(kind: E, what: impl Into<String>) -> OfpError {
    OfpError::new(kind, what)
}

fn set(field: Field, value: u128) -> OfAction {
    OfAction::SetField {
        field,
        value,
        mask: field.full_mask(),
    }
}

/// OVS's `decode_OFPAT_RAW_PUSH_MPLS`: the EtherType must be MPLS's.
fn push_mpls(ethertype: u16) -> Result<OfAction, OfpError> {
    if !eth_type_mpls(ethertype) {
        return Err(bad(
            E::ActionBadArgument,
            format!("push_mpls:{ethertype:#06x} (not an MPLS EtherType)"),
        ));
    }
    Ok(OfAction::PushMpls { ethertype })
}

fn output(port: u32, max_len: u16) -> Result<OfAction, OfpError> {
    if port == 0 || port == port::ANY || (port::FIRST_RESERVED..port::IN_PORT).contains(&port) {
        return Err(bad(
            E::ActionBadOutPort,
            format!("output to port {port:#x}"),
        ));
    }
    Ok(if port == port::CONTROLLER {
        OfAction::Controller(ControllerAction::output(max_len))
    } else {
        OfAction::Output { port, max_len }
    })
}

/// OVS's `ofpacts_check` for what actions need of the packet: a field an
/// action reads or writes must exist in what the match (and the VLAN
/// pushes and pops before it) says of the packet; so must the IP header
/// `ct` tracks. `pop_vlan`, `dec_ttl` and `fin_timeout` without theirs are
/// refused too, except in the action set, where OVS lets them stand.
/// OpenFlow 1.0 is let off all but `ct`: OVS lets its `mod_*` actions
/// (which arrive here as `set_field`s) and those three stand there, and
/// only a Nicira `set_field` or `load` would be refused.
pub fn check_prerequisites(version: u8, m: &Match, ins: &Instructions) -> Result<(), OfpError> {
    let of10 = version == OFP10;
    let mut flow = m.flow;
    check_list(of10, of10, &mut flow, &ins.apply)?;
    if let Some(set) = &ins.write_actions {
        check_list(of10, true, &mut flow, set)?;
    }
    Ok(())
}

fn check_list(
    of10: bool,
    lenient: bool,
    flow: &mut Flow,
    actions: &[OfAction],
) -> Result<(), OfpError> {
    let need = |ok: bool, what: &str| {
        if ok {
            Ok(())
        } else {
            Err(bad(
                E::ActionMatchInconsistent,
                format!("{what}: prerequisites not met"),
            ))
        }
    };
    let field_ok = |flow: &Flow, f: Field| need(f.prereqs_ok(flow), field::by_field(f).name);
    for a in actions {
        match a {
            OfAction::SetField { .. } | OfAction::Load { .. } | OfAction::Move { .. } if of10 => {}
            OfAction::SetField { field, .. } | OfAction::Load { field, .. } => {
                field_ok(flow, *field)?;
                if *field == Field::VlanVid {
                    need(flow.vlans[0].tci & VLAN_CFI != 0, "vlan_vid")?;
                }
            }
            OfAction::Move { src, dst, .. } => {
                field_ok(flow, *src)?;
                field_ok(flow, *dst)?;
            }
            OfAction::PushVlan { tpid } => {
                flow.vlans[0].tpid = *tpid;
                flow.vlans[0].tci |= VLAN_CFI;
            }
            OfAction::PopVlan => {
                need(lenient || flow.vlans[0].tci & VLAN_CFI != 0, "pop_vlan")?;
                flow.vlans[0].tci = 0;
            }
            OfAction::DecTtl => need(lenient || flow.is_ip_any(), "dec_ttl")?,
            // OVS's `check_PUSH_MPLS`, `check_POP_MPLS`, `check_set_mpls`:
            // the payload of a pushed label is opaque.
            OfAction::PushMpls { ethertype } => {
                flow.dl_type = *ethertype;
                flow.nw_proto = 0;
            }
            OfAction::PopMpls { ethertype } => {
                need(of10 || eth_type_mpls(flow.dl_type), "pop_mpls")?;
                flow.dl_type = *ethertype;
            }
            OfAction::SetMplsLabel(_)
            | OfAction::SetMplsTc(_)
            | OfAction::SetMplsTtl(_)
            | OfAction::DecMplsTtl => need(of10 || eth_type_mpls(flow.dl_type), "MPLS action")?,
            OfAction::FinTimeout { .. } => need(
                lenient || flow.is_ip_any() && flow.nw_proto == IPPROTO_TCP,
                "fin_timeout",
            )?,
            OfAction::Ct(_) => need(flow.is_ip_any(), "ct")?,
            _ => {}
        }
    }
    Ok(())
}

/// OVS's `decode_ofpat_set_field`: the value must be one the field can
/// match, and a VLAN ID must carry the "present" bit in value and mask.
fn check_set_field(info: &FieldInfo, value: u128, mask: u128) -> Result<(), OfpError> {
    let present = u128::from(VLAN_CFI);
    let vlan_ok = info.field != Field::VlanVid || (value & mask & present != 0);
    if !nxm::value_ok(info, value) || !vlan_ok {
        return Err(bad(
            E::ActionBadSetArgument,
            format!("set_field: {value:#x} is not a valid {}", info.name),
        ));
    }
    Ok(())
}

/// Whether the match requires a VLAN tag (OVS's `flow_has_vlan` for the
/// VLAN actions).
fn has_vlan(m: &Match) -> bool {
    m.mask.vlans[0].tci & VLAN_CFI != 0 && m.flow.vlans[0].tci & VLAN_CFI != 0
}

fn decode_of10(
    kind: u16,
    a: &mut Reader<'_>,
    m: &Match,
    out: &mut Vec<OfAction>,
) -> Result<(), OfpError> {
    match kind {
        OFPAT10_OUTPUT => {
            let p = super::port_from_of10(a.u16("port")?);
            let max_len = a.u16("max_len")?;
            out.push(output(p, max_len)?);
        }
        OFPAT10_ENQUEUE => {
            let port = super::port_from_of10(a.u16("port")?);
            a.skip(6, "pad")?;
            let queue = a.u32("queue_id")?;
            // OVS's `decode_OFPAT_RAW10_ENQUEUE`.
            if port >= port::MAX && port != port::IN_PORT && port != port::LOCAL {
                return Err(bad(
                    E::ActionBadOutPort,
                    format!("enqueue to port {port:#x}"),
                ));
            }
            out.push(OfAction::Enqueue { port, queue });
        }
        OFPAT10_SET_VLAN_VID | OFPAT10_SET_VLAN_PCP => {
            let v = a.u16("vlan")?;
            if !has_vlan(m) {
                out.push(OfAction::PushVlan {
                    tpid: ETH_TYPE_VLAN_8021Q,
                });
            }
            if kind == OFPAT10_SET_VLAN_VID {
                if v > 0xfff {
                    return Err(bad(E::ActionBadArgument, format!("VLAN id {v}")));
                }
                out.push(set(Field::VlanVid, u128::from(v | VLAN_CFI)));
            } else {
                let pcp = v >> 8;
                if pcp > 7 {
                    return Err(bad(E::ActionBadArgument, format!("VLAN PCP {pcp}")));
                }
                out.push(set(Field::VlanPcp, u128::from(pcp)));
            }
        }
        OFPAT10_STRIP_VLAN => out.push(OfAction::PopVlan),
        OFPAT10_SET_DL_SRC | OFPAT10_SET_DL_DST => {
            let mac = a.bytes(6, "MAC")?;
            let v = mac.iter().fold(0u128, |acc, b| (acc << 8) | u128::from(*b));
            let f = if kind == OFPAT10_SET_DL_SRC {
                Field::EthSrc
            } else {
                Field::EthDst
            };
            out.push(set(f, v));
        }
        OFPAT10_SET_NW_SRC | OFPAT10_SET_NW_DST => {
            let v = a.u32("address")?;
            let f = if kind == OFPAT10_SET_NW_SRC {
                Field::Ipv4Src
            } else {
                Field::Ipv4Dst
            };
            out.push(set(f, v.into()));
        }
        OFPAT10_SET_NW_TOS => {
            let tos = a.u8("tos")?;
            if tos & 3 != 0 {
                return Err(bad(
                    E::ActionBadArgument,
                    format!("nw_tos {tos} has ECN bits"),
                ));
            }
            out.push(set(Field::IpDscp, u128::from(tos >> 2)));
        }
        OFPAT10_SET_TP_SRC | OFPAT10_SET_TP_DST => {
            let v = a.u16("port")?;
            let src = kind == OFPAT10_SET_TP_SRC;
            let f = match (m.flow.nw_proto, src) {
                (IPPROTO_UDP, true) => Field::UdpSrc,
                (IPPROTO_UDP, false) => Field::UdpDst,
                (IPPROTO_SCTP, true) => Field::SctpSrc,
                (IPPROTO_SCTP, false) => Field::SctpDst,
                (_, true) => Field::TcpSrc,
                (_, false) => Field::TcpDst,
            };
            out.push(set(f, v.into()));
        }
        _ => {
            return Err(bad(
                E::ActionBadType,
                format!("OpenFlow 1.0 action type {kind} is not supported"),
            ))
        }
    }
    Ok(())
}

fn decode_of13(kind: u16, a: &mut Reader<'_>, out: &mut Vec<OfAction>) -> Result<(), OfpError> {
    match kind {
        OFPAT_OUTPUT => {
            let p = a.u32("port")?;
            let max_len = a.u16("max_len")?;
            out.push(output(p, max_len)?);
        }
        OFPAT_PUSH_VLAN => {
            let tpid = a.u16("ethertype")?;
            if tpid != ETH_TYPE_VLAN_8021Q && tpid != ETH_TYPE_VLAN_8021AD {
                return Err(bad(E::ActionBadArgument, format!("push_vlan:{tpid:#x}")));
            }
            out.push(OfAction::PushVlan { tpid });
        }
        OFPAT_POP_VLAN => out.push(OfAction::PopVlan),
        OFPAT_PUSH_MPLS => out.push(push_mpls(a.u16("ethertype")?)?),
        OFPAT_POP_MPLS => out.push(OfAction::PopMpls {
            ethertype: a.u16("ethertype")?,
        }),
        OFPAT_SET_MPLS_TTL => out.push(OfAction::SetMplsTtl(a.u8("mpls_ttl")?)),
        OFPAT_DEC_MPLS_TTL => out.push(OfAction::DecMplsTtl),
        OFPAT_DEC_NW_TTL => out.push(OfAction::DecTtl),
        OFPAT_GROUP => out.push(OfAction::Group(a.u32("group_id")?)),
        OFPAT_SET_QUEUE => out.push(OfAction::SetQueue(a.u32("queue_id")?)),
        OFPAT_SET_FIELD => {
            let raw = a.u32("set_field header")?;
            let exp = (raw >> 16 == 0xffff)
                .then(|| a.u32("experimenter"))
                .transpose()?;
            let info = nxm::field_for_header(raw, exp).ok_or_else(|| {
                bad(
                    E::ActionBadSetType,
                    format!("set_field of unknown field {raw:#010x}"),
                )
            })?;
            if raw & 0x100 != 0 {
                return Err(bad(E::ActionBadSetArgument, "set_field with a mask"));
            }
            if !info.writable {
                return Err(bad(
                    E::ActionBadSetType,
                    format!("{} is read-only", info.name),
                ));
            }
            let value = read_value(a, value_len(raw, exp))?;
            check_set_field(info, value, info.byte_mask())?;
            out.push(set(info.field, value));
        }
        _ => {
            return Err(bad(
                E::ActionBadType,
                format!("action type {kind} is not supported"),
            ))
        }
    }
    Ok(())
}

/// The value length an NXM/OXM header gives (a variable-length field,
/// `tun_metadataN`, may be sent shorter than it is).
fn value_len(raw: u32, exp: Option<u32>) -> u8 {
    let len = (raw & 0xff) as u8 - if exp.is_some() { 4 } else { 0 };
    if raw & 0x100 != 0 {
        len / 2
    } else {
        len
    }
}

fn read_value(a: &mut Reader<'_>, n: u8) -> Result<u128, OfpError> {
    let b = a.bytes(usize::from(n), "field value")?;
    Ok(b.iter().fold(0u128, |acc, x| (acc << 8) | u128::from(*x)))
}

/// The field a header in an NXAST action names, with its width.
/// Bits `ofs..ofs + n_bits` of `info`'s field, refused as OVS's
/// `mf_check_src`/`mf_check_dst` refuse them.
fn subfield(
    info: &field::FieldInfo,
    ofs: u16,
    n_bits: u16,
    written: bool,
) -> Result<Subfield, OfpError> {
    if n_bits == 0 || u32::from(ofs) + u32::from(n_bits) > u32::from(info.n_bits) {
        return Err(bad(
            E::ActionBadArgument,
            format!(
                "bits {ofs}..{} of {} are out of range",
                u32::from(ofs) + u32::from(n_bits),
                info.name
            ),
        ));
    }
    if written && !info.writable {
        return Err(bad(
            E::ActionBadArgument,
            format!("{} is not writable", info.name),
        ));
    }
    Ok(Subfield {
        field: info.field,
        ofs: ofs as u8,
        n_bits: n_bits as u8,
    })
}

fn must_be_zero(bytes: &[u8], what: &str) -> Result<(), OfpError> {
    if bytes.iter().any(|b| *b != 0) {
        return Err(bad(
            E::ActionBadArgument,
            format!("{what}: nonzero padding"),
        ));
    }
    Ok(())
}

fn nx_field(raw: u32) -> Result<&'static field::FieldInfo, OfpError> {
    nxm::field_for_header(raw, None)
        .ok_or_else(|| bad(E::ActionBadArgument, format!("unknown field {raw:#010x}")))
}

fn decode_nx(
    version: u8,
    a: &mut Reader<'_>,
    m: &Match,
    ins: &mut Instructions,
) -> Result<(), OfpError> {
    let vendor = a.u32("vendor")?;
    if vendor != NX_VENDOR_ID {
        return Err(bad(E::ActionBadVendor, format!("vendor {vendor:#x}")));
    }
    let subtype = a.u16("subtype")?;
    let out = &mut ins.apply;
    match subtype {
        NXAST_RESUBMIT | NXAST_RESUBMIT_TABLE => {
            let p = a.u16("in_port")?;
            let table = if subtype == NXAST_RESUBMIT_TABLE {
                let t = a.u8("table")?;
                (t != 0xff).then_some(t)
            } else {
                None
            };
            let in_port = (p != OFPP10_IN_PORT || subtype == NXAST_RESUBMIT)
                .then(|| super::port_from_of10(p));
            out.push(OfAction::Resubmit { in_port, table });
        }
        NXAST_REG_MOVE => {
            let n_bits = a.u16("n_bits")?;
            let src_ofs = a.u16("src_ofs")?;
            let dst_ofs = a.u16("dst_ofs")?;
            let src = nx_field(a.u32("src")?)?;
            let dst = nx_field(a.u32("dst")?)?;
            let fits = |ofs: u16, f: &field::FieldInfo| {
                u32::from(ofs) + u32::from(n_bits) <= u32::from(f.n_bits)
            };
            if n_bits == 0 || !fits(src_ofs, src) || !fits(dst_ofs, dst) || !dst.writable {
                return Err(bad(E::ActionBadArgument, "move: bits out of range"));
            }
            out.push(OfAction::Move {
                src: src.field,
                src_ofs: src_ofs as u8,
                dst: dst.field,
                dst_ofs: dst_ofs as u8,
                n_bits: n_bits as u8,
            });
        }
        NXAST_REG_LOAD => {
            let ofs_nbits = a.u16("ofs_nbits")?;
            let dst = nx_field(a.u32("dst")?)?;
            let value = a.u64("value")?;
            let (ofs, n) = (u32::from(ofs_nbits >> 6), u32::from(ofs_nbits & 0x3f) + 1);
            if ofs + n > u32::from(dst.n_bits) || !dst.writable {
                return Err(bad(E::ActionBadArgument, format!("load into {}", dst.name)));
            }
            if n < 64 && value >> n != 0 {
                return Err(bad(E::ActionBadArgument, "load: value wider than its bits"));
            }
            // upcalld's ports are 32 bits: only a whole 16-bit port maps
            // onto one (the rules parser says the same).
            if dst.syntax == field::Syntax::Port && n != u32::from(dst.n_bits) {
                return Err(bad(
                    E::ActionBadArgument,
                    format!("unsupported partial load of {}", dst.name),
                ));
            }
            out.push(OfAction::Load {
                field: dst.field,
                value: u128::from(value) << ofs,
                mask: ones(n) << ofs,
            });
        }
        NXAST_REG_LOAD2 => {
            let raw = a.u32("field header")?;
            let exp = (raw >> 16 == 0xffff)
                .then(|| a.u32("experimenter"))
                .transpose()?;
            let info = nxm::field_for_header(raw, exp)
                .ok_or_else(|| bad(E::ActionBadSetType, format!("field {raw:#010x}")))?;
            let n = value_len(raw, exp);
            let value = read_value(a, n)?;
            let mask = if raw & 0x100 != 0 {
                read_value(a, n)?
            } else {
                info.byte_mask()
            };
            if !info.writable {
                return Err(bad(
                    E::ActionBadSetType,
                    format!("{} is read-only", info.name),
                ));
            }
            check_set_field(info, value & mask, mask)?;
            out.push(OfAction::SetField {
                field: info.field,
                value: value & mask,
                mask: mask & info.field.full_mask(),
            });
        }
        NXAST_OUTPUT_REG => {
            let ofs_nbits = a.u16("ofs_nbits")?;
            let src = nx_field(a.u32("src")?)?;
            let _max_len = a.u16("max_len")?;
            let (ofs, n) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
            if u32::from(ofs + n) > u32::from(src.n_bits) {
                return Err(bad(E::ActionBadArgument, "output_reg: bits out of range"));
            }
            out.push(OfAction::OutputReg {
                field: src.field,
                ofs: ofs as u8,
                n_bits: n as u8,
            });
        }
        NXAST_CT => out.push(OfAction::Ct(Box::new(decode_ct(a)?))),
        NXAST_NAT => out.push(OfAction::Nat(decode_nat(a)?)),
        NXAST_CT_CLEAR => out.push(OfAction::CtClear),
        NXAST_SET_TUNNEL => {
            a.skip(2, "pad")?;
            out.push(OfAction::SetTunnel {
                tun_id: a.u32("tun_id")?.into(),
                wide: false,
            });
        }
        NXAST_SET_TUNNEL64 => {
            a.skip(6, "pad")?;
            out.push(OfAction::SetTunnel {
                tun_id: a.u64("tun_id")?,
                wide: true,
            });
        }
        NXAST_DEC_TTL => out.push(OfAction::DecTtl),
        NXAST_DEC_TTL_CNT_IDS => {
            let n = a.u16("n_controllers")?;
            a.skip(4, "zeros")?;
            let ids = (0..n)
                .map(|_| a.u16("controller id"))
                .collect::<Result<Vec<u16>, _>>()?;
            out.push(OfAction::DecTtlIds(ids));
        }
        NXAST_CONTROLLER => {
            let max_len = a.u16("max_len")?;
            let controller_id = a.u16("controller_id")?;
            let reason = a.u8("reason")?;
            out.push(OfAction::Controller(ControllerAction {
                controller_id,
                reason,
                ..ControllerAction::output(max_len)
            }));
        }
        NXAST_CONTROLLER2 => out.push(OfAction::Controller(decode_controller2(a)?)),
        NXAST_CONJUNCTION => {
            let clause = a.u8("clause")?;
            let n_clauses = a.u8("n_clauses")?;
            let id = a.u32("id")?;
            if !(2..=64).contains(&n_clauses) || clause >= n_clauses {
                return Err(bad(
                    E::ActionBadArgument,
                    format!("conjunction clause {clause} of {n_clauses} is out of range"),
                ));
            }
            out.push(OfAction::Conjunction {
                id,
                clause,
                n_clauses,
            });
        }
        NXAST_FIN_TIMEOUT => {
            let idle_timeout = a.u16("fin_idle_timeout")?;
            let hard_timeout = a.u16("fin_hard_timeout")?;
            out.push(OfAction::FinTimeout {
                idle_timeout,
                hard_timeout,
            });
        }
        NXAST_LEARN | NXAST_LEARN2 => out.push(OfAction::Learn(Box::new(decode_learn(
            a,
            subtype == NXAST_LEARN2,
        )?))),
        NXAST_PUSH_MPLS => out.push(push_mpls(a.u16("ethertype")?)?),
        NXAST_POP_MPLS => out.push(OfAction::PopMpls {
            ethertype: a.u16("ethertype")?,
        }),
        NXAST_SET_MPLS_TTL => out.push(OfAction::SetMplsTtl(a.u8("ttl")?)),
        NXAST_DEC_MPLS_TTL => out.push(OfAction::DecMplsTtl),
        NXAST_SET_MPLS_LABEL => {
            a.skip(2, "pad")?;
            let label = a.u32("label")?;
            if label > 0xf_ffff {
                return Err(bad(E::ActionBadArgument, format!("MPLS label {label}")));
            }
            out.push(OfAction::SetMplsLabel(label));
        }
        NXAST_SET_MPLS_TC => {
            let tc = a.u8("tc")?;
            if tc > 7 {
                return Err(bad(E::ActionBadArgument, format!("MPLS TC {tc}")));
            }
            out.push(OfAction::SetMplsTc(tc));
        }
        NXAST_NOTE => {
            let n = a.remaining();
            out.push(OfAction::Note(a.bytes(n, "note")?.to_vec()));
        }
        NXAST_MULTIPATH => out.push(OfAction::Multipath(decode_multipath(a)?)),
        NXAST_BUNDLE | NXAST_BUNDLE_LOAD => out.push(OfAction::Bundle(Box::new(decode_bundle(
            a,
            subtype == NXAST_BUNDLE_LOAD,
        )?))),
        NXAST_SAMPLE | NXAST_SAMPLE2 | NXAST_SAMPLE3 => {
            out.push(OfAction::Sample(decode_sample(a, subtype)?))
        }
        NXAST_DEBUG_RECIRC => out.push(OfAction::DebugRecirc),
        NXAST_DEBUG_SLOW => out.push(OfAction::DebugSlow),
        NXAST_SET_QUEUE => {
            a.skip(2, "pad")?;
            out.push(OfAction::SetQueue(a.u32("queue_id")?));
        }
        NXAST_POP_QUEUE => out.push(OfAction::PopQueue),
        NXAST_EXIT => out.push(OfAction::Exit),
        NXAST_STACK_PUSH | NXAST_STACK_POP => {
            let ofs = a.u16("offset")?;
            let info = nx_field(a.u32("field")?)?;
            let n_bits = a.u16("n_bits")?;
            must_be_zero(a.bytes(6, "zero")?, "stack action")?;
            let push = subtype == NXAST_STACK_PUSH;
            let sf = subfield(info, ofs, n_bits, !push)?;
            out.push(if push {
                OfAction::StackPush(sf)
            } else {
                OfAction::StackPop(sf)
            });
        }
        NXAST_OUTPUT_TRUNC => {
            let port = super::port_from_of10(a.u16("port")?);
            let max_len = a.u32("max_len")?;
            // OVS's `decode_NXAST_RAW_OUTPUT_TRUNC` and the ports its
            // `parse_truncate_subfield` takes.
            if max_len < 14 {
                return Err(bad(
                    E::ActionBadArgument,
                    format!("output_trunc max_len {max_len} is shorter than an Ethernet header"),
                ));
            }
            if port >= port::MAX && port != port::LOCAL && port != port::IN_PORT {
                return Err(bad(
                    E::ActionBadOutPort,
                    format!("output_trunc to port {port:#x}"),
                ));
            }
            out.push(OfAction::OutputTrunc { port, max_len });
        }
        NXAST_CHECK_PKT_LARGER => {
            let pkt_len = a.u16("pkt_len")?;
            let ofs = a.u16("offset")?;
            let info = nx_field(a.u32("field")?)?;
            let dst = subfield(info, ofs, 1, true)?;
            out.push(OfAction::CheckPktLarger { pkt_len, dst });
        }
        NXAST_CLONE => {
            a.skip(6, "pad")?;
            // The nested actions are of the message's version, checked
            // against the rule's match as the outer ones.
            let nested = decode_actions(version, a.buf, m)?;
            if nested.write_metadata.is_some() {
                return Err(bad(E::ActionBadType, "write_metadata inside clone"));
            }
            out.push(OfAction::Clone(nested.apply));
        }
        NXAST_WRITE_METADATA => {
            a.skip(6, "pad")?;
            let value = a.u64("metadata")?;
            let mask = a.u64("mask")?;
            ins.write_metadata = Some((value & mask, mask));
        }
        _ => {
            return Err(bad(
                E::ActionBadVendorType,
                format!("Nicira action subtype {subtype} is not supported"),
            ))
        }
    }
    Ok(())
}

/// A subfield an NXAST action writes, from its NXM header and
/// `ofs_nbits` (`(ofs << 6) | (n_bits - 1)`).
fn decode_dst(raw: u32, ofs_nbits: u16, what: &str) -> Result<Subfield, OfpError> {
    let info = nx_field(raw)?;
    let (ofs, n_bits) = (ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1);
    if u32::from(ofs + n_bits) > u32::from(info.n_bits) {
        return Err(bad(
            E::ActionBadArgument,
            format!(
                "{what}: bits {ofs}..{} beyond {}",
                ofs + n_bits - 1,
                info.name
            ),
        ));
    }
    if !info.writable {
        return Err(bad(
            E::ActionBadArgument,
            format!("{what}: {} is read-only", info.name),
        ));
    }
    Ok(Subfield {
        field: info.field,
        ofs: ofs as u8,
        n_bits: n_bits as u8,
    })
}

/// NXAST_MULTIPATH after its subtype (OVS's `decode_NXAST_RAW_MULTIPATH`).
fn decode_multipath(a: &mut Reader<'_>) -> Result<crate::multipath::Multipath, OfpError> {
    use crate::multipath::{HashFields, Multipath, MultipathAlgorithm};
    let fields = a.u16("fields")?;
    let basis = a.u16("basis")?;
    a.skip(2, "pad")?;
    let algorithm = a.u16("algorithm")?;
    let max_link = a.u16("max_link")?;
    let arg = a.u32("arg")?;
    a.skip(2, "pad")?;
    let ofs_nbits = a.u16("ofs_nbits")?;
    let dst = decode_dst(a.u32("dst")?, ofs_nbits, "multipath")?;
    let fields = HashFields::from_wire(fields)
        .ok_or_else(|| bad(E::ActionBadArgument, format!("multipath: fields {fields}")))?;
    let algorithm = MultipathAlgorithm::from_wire(algorithm).ok_or_else(|| {
        bad(
            E::ActionBadArgument,
            format!("multipath: algorithm {algorithm}"),
        )
    })?;
    let n_links = u32::from(max_link) + 1;
    if u32::from(dst.n_bits) < 32 - (n_links - 1).leading_zeros() {
        return Err(bad(
            E::ActionBadArgument,
            format!("multipath: {} bits cannot hold {n_links} links", dst.n_bits),
        ));
    }
    Ok(Multipath {
        fields,
        basis,
        algorithm,
        max_link,
        arg,
        dst,
    })
}

/// NXAST_BUNDLE and NXAST_BUNDLE_LOAD after their subtype (OVS's
/// `decode_bundle`).
fn decode_bundle(a: &mut Reader<'_>, load: bool) -> Result<crate::multipath::Bundle, OfpError> {
    use crate::multipath::{Bundle, BundleAlgorithm, HashFields, BUNDLE_MAX_MEMBERS};
    let algorithm = a.u16("algorithm")?;
    let fields = a.u16("fields")?;
    let basis = a.u16("basis")?;
    let member_type = a.u32("member_type")?;
    let n_members = usize::from(a.u16("n_members")?);
    let ofs_nbits = a.u16("ofs_nbits")?;
    let dst_raw = a.u32("dst")?;
    let zero = a.bytes(4, "reserved")?;
    let arg = |what: String| Err(bad(E::ActionBadArgument, format!("bundle: {what}")));
    let Some(fields) = HashFields::from_wire(fields) else {
        return arg(format!("fields {fields}"));
    };
    let Some(algorithm) = BundleAlgorithm::from_wire(algorithm) else {
        return arg(format!("algorithm {algorithm}"));
    };
    if n_members > BUNDLE_MAX_MEMBERS {
        return arg(format!("{n_members} members"));
    }
    if member_type != NXM_OF_IN_PORT {
        return arg(format!("member type {member_type:#x}"));
    }
    if zero.iter().any(|b| *b != 0) {
        return arg("reserved field is nonzero".into());
    }
    let dst = if load {
        let dst = decode_dst(dst_raw, ofs_nbits, "bundle_load")?;
        if dst.n_bits < 16 {
            return arg("bundle_load needs a destination of at least 16 bits".into());
        }
        Some(dst)
    } else {
        if ofs_nbits != 0 || dst_raw != 0 {
            return arg("nonzero reserved fields".into());
        }
        None
    };
    if a.remaining() < 2 * n_members {
        return Err(bad(
            E::ActionBadLen,
            format!("bundle: {} bytes for {n_members} members", a.remaining()),
        ));
    }
    let mut members = Vec::with_capacity(n_members);
    for _ in 0..n_members {
        let p = super::port_from_of10(a.u16("member")?);
        if p == port::CONTROLLER {
            return Err(bad(E::ActionBadOutPort, "bundle: controller member"));
        }
        members.push(p);
    }
    Ok(Bundle {
        fields,
        basis,
        algorithm,
        dst,
        members,
    })
}

/// NXAST_SAMPLE, SAMPLE2 (with a sampling port) and SAMPLE3 (and a
/// direction) after their subtype.
fn decode_sample(a: &mut Reader<'_>, subtype: u16) -> Result<crate::ofp::SampleAction, OfpError> {
    use crate::ofp::{SampleAction, SampleDirection};
    let probability = a.u16("probability")?;
    let collector_set_id = a.u32("collector_set_id")?;
    let obs_domain_id = a.u32("obs_domain_id")?;
    let obs_point_id = a.u32("obs_point_id")?;
    let (mut sampling_port, mut direction) = (port::ANY, SampleDirection::Default);
    if subtype != NXAST_SAMPLE {
        let p = a.u16("sampling_port")?;
        if p != 0xffff {
            sampling_port = super::port_from_of10(p);
        }
        let d = a.u8("direction")?;
        let zeros = a.bytes(5, "pad")?;
        if subtype == NXAST_SAMPLE3 {
            if zeros.iter().any(|b| *b != 0) {
                return Err(bad(E::ActionBadArgument, "sample: nonzero padding"));
            }
            direction = match d {
                0 => SampleDirection::Default,
                1 => SampleDirection::Ingress,
                2 => SampleDirection::Egress,
                _ => return Err(bad(E::ActionBadArgument, format!("sample: direction {d}"))),
            };
        }
    }
    if probability == 0 {
        return Err(bad(E::ActionBadArgument, "sample: probability 0"));
    }
    Ok(SampleAction {
        probability,
        collector_set_id,
        obs_domain_id,
        obs_point_id,
        sampling_port,
        direction,
    })
}

fn decode_ct(a: &mut Reader<'_>) -> Result<CtSpec, OfpError> {
    let flags = a.u16("flags")?;
    let zone_src = a.u32("zone_src")?;
    let zone = a.u16("zone")?;
    let table = a.u8("recirc_table")?;
    a.skip(3, "pad")?;
    let alg = a.u16("alg")?;
    let zone = if zone_src == 0 {
        CtZone::Imm(zone)
    } else {
        let f = nx_field(zone_src)?;
        let (ofs, n) = (zone >> 6, (zone & 0x3f) + 1);
        if n != 16 || u32::from(ofs + n) > u32::from(f.n_bits) {
            return Err(bad(E::ActionBadArgument, "ct zone: 16 bits of a field"));
        }
        CtZone::Field {
            field: f.field,
            ofs: ofs as u8,
            n_bits: n as u8,
        }
    };
    // The nested actions run as a list of their own (OpenFlow 1.3 form).
    let nested = decode_actions(super::OFP13, a.buf, &Match::default())?;
    Ok(CtSpec {
        commit: flags & NX_CT_F_COMMIT != 0,
        force: flags & NX_CT_F_FORCE != 0,
        zone,
        table: (table != 0xff).then_some(table),
        alg,
        actions: nested.apply,
    })
}

/// A field header in a `learn` (4 bytes, or 8 for an experimenter's).
fn learn_field(a: &mut Reader<'_>, what: &str) -> Result<&'static field::FieldInfo, OfpError> {
    let raw = a.u32(what)?;
    let exp = (raw >> 16 == 0xffff)
        .then(|| a.u32("experimenter"))
        .transpose()?;
    nxm::field_for_header(raw, exp).ok_or_else(|| {
        bad(
            E::ActionBadArgument,
            format!("learn: unknown field {raw:#010x}"),
        )
    })
}

/// `n_bits` bits at `ofs` of a field a `learn` names, checked as OVS's
/// `mf_check_src`/`mf_check_dst` check them.
fn learn_subfield(
    a: &mut Reader<'_>,
    n_bits: u16,
    what: &str,
    writes: bool,
) -> Result<Subfield, OfpError> {
    let info = learn_field(a, what)?;
    let ofs = a.u16("ofs")?;
    if u32::from(ofs) + u32::from(n_bits) > u32::from(info.n_bits) {
        return Err(bad(
            E::ActionBadArgument,
            format!(
                "learn: bits {ofs}..{} of {} are out of range",
                ofs + n_bits,
                info.name
            ),
        ));
    }
    if writes && !info.writable {
        return Err(bad(
            E::ActionBadArgument,
            format!("learn: {} is read-only", info.name),
        ));
    }
    Ok(Subfield {
        field: info.field,
        ofs: ofs as u8,
        n_bits: n_bits as u8,
    })
}

/// NXAST_LEARN, or NXAST_LEARN2 (which adds `limit` and `result_dst`).
fn decode_learn(a: &mut Reader<'_>, learn2: bool) -> Result<Learn, OfpError> {
    let idle_timeout = a.u16("idle_timeout")?;
    let hard_timeout = a.u16("hard_timeout")?;
    let priority = a.u16("priority")?;
    let cookie = a.u64("cookie")?;
    let flags = a.u16("flags")?;
    let table = a.u8("table_id")?;
    a.skip(1, "pad")?;
    let fin_idle_timeout = a.u16("fin_idle_timeout")?;
    let fin_hard_timeout = a.u16("fin_hard_timeout")?;
    let known = NX_LEARN_F_SEND_FLOW_REM
        | NX_LEARN_F_DELETE_LEARNED
        | if learn2 { NX_LEARN_F_WRITE_RESULT } else { 0 };
    if flags & !known != 0 {
        return Err(bad(
            E::ActionBadArgument,
            format!("learn: flags {flags:#x}"),
        ));
    }
    if table == 0xff {
        return Err(bad(E::ActionBadArgument, "learn: table 255"));
    }
    let mut learn = Learn {
        table,
        priority,
        idle_timeout,
        hard_timeout,
        fin_idle_timeout,
        fin_hard_timeout,
        cookie,
        send_flow_rem: flags & NX_LEARN_F_SEND_FLOW_REM != 0,
        delete_learned: flags & NX_LEARN_F_DELETE_LEARNED != 0,
        ..Learn::default()
    };
    if learn2 {
        learn.limit = a.u32("limit")?;
        let result_ofs = a.u16("result_dst_ofs")?;
        a.skip(2, "pad")?;
        if flags & NX_LEARN_F_WRITE_RESULT != 0 {
            let info = learn_field(a, "result_dst")?;
            if u32::from(result_ofs) >= u32::from(info.n_bits) || !info.writable {
                return Err(bad(E::ActionBadArgument, "learn: bad result_dst"));
            }
            learn.result_dst = Some(Subfield {
                field: info.field,
                ofs: result_ofs as u8,
                n_bits: 1,
            });
        }
    }
    // Specs until a zero header or the end; what follows the zero header
    // is padding and must be zeros.
    while a.remaining() >= 2 {
        let header = a.u16("spec header")?;
        if header == 0 {
            break;
        }
        let n_bits = header & NX_LEARN_N_BITS_MASK;
        if n_bits == 0 || n_bits > 128 {
            return Err(bad(
                E::ActionBadArgument,
                format!("learn: a spec of {n_bits} bits"),
            ));
        }
        let src = if header & NX_LEARN_SRC_IMMEDIATE != 0 {
            let n_bytes = 2 * n_bits.div_ceil(16);
            let v = a.bytes(usize::from(n_bytes), "immediate value")?;
            // Right-aligned; only the low `n_bits` count.
            let tail = &v[v.len().saturating_sub(16)..];
            let value = tail
                .iter()
                .fold(0u128, |acc, x| (acc << 8) | u128::from(*x));
            LearnSrc::Immediate(value & ones(u32::from(n_bits)))
        } else {
            LearnSrc::Field(learn_subfield(a, n_bits, "source", false)?)
        };
        let dst = match header & NX_LEARN_DST_MASK {
            NX_LEARN_DST_MATCH => LearnDst::Match(learn_subfield(a, n_bits, "destination", false)?),
            NX_LEARN_DST_LOAD => LearnDst::Load(learn_subfield(a, n_bits, "destination", true)?),
            NX_LEARN_DST_OUTPUT => LearnDst::Output,
            _ => return Err(bad(E::ActionBadArgument, "learn: reserved destination")),
        };
        learn.specs.push(LearnSpec {
            src,
            dst,
            n_bits: n_bits as u8,
        });
    }
    if a.bytes(a.remaining(), "padding")?.iter().any(|b| *b != 0) {
        return Err(bad(
            E::ActionBadArgument,
            "learn: bytes after the last spec",
        ));
    }
    Ok(learn)
}

fn decode_nat(a: &mut Reader<'_>) -> Result<NatAction, OfpError> {
    a.skip(2, "pad")?;
    let flags = a.u16("flags")?;
    let present = a.u16("range_present")?;
    let kind = match (flags & NX_NAT_F_SRC != 0, flags & NX_NAT_F_DST != 0) {
        (true, false) => Some(NatKind::Src),
        (false, true) => Some(NatKind::Dst),
        (false, false) => None,
        (true, true) => return Err(bad(E::ActionBadArgument, "nat: both src and dst")),
    };
    let has = |bit: u16| present & bit != 0;
    let mut addrs = None;
    if has(NX_NAT_RANGE_IPV4_MIN) {
        let min = a.u32("ipv4 min")?;
        let max = if has(NX_NAT_RANGE_IPV4_MAX) {
            a.u32("ipv4 max")?
        } else {
            min
        };
        addrs = Some(NatAddrs::V4 { min, max });
    } else if has(NX_NAT_RANGE_IPV6_MIN) {
        let mut min = [0; 16];
        min.copy_from_slice(a.bytes(16, "ipv6 min")?);
        let mut max = min;
        if has(NX_NAT_RANGE_IPV6_MAX) {
            max.copy_from_slice(a.bytes(16, "ipv6 max")?);
        }
        addrs = Some(NatAddrs::V6 { min, max });
    }
    let ports = if has(NX_NAT_RANGE_PROTO_MIN) {
        let min = a.u16("port min")?;
        let max = if has(NX_NAT_RANGE_PROTO_MAX) {
            a.u16("port max")?
        } else {
            min
        };
        Some((min, max))
    } else {
        None
    };
    Ok(NatAction {
        kind,
        addrs,
        ports,
        persistent: flags & NX_NAT_F_PERSISTENT != 0,
        hash: flags & NX_NAT_F_PROTO_HASH != 0,
        random: flags & NX_NAT_F_PROTO_RANDOM != 0,
    })
}

/// Decodes OpenFlow 1.3 instructions.
pub fn decode_instructions(buf: &[u8]) -> Result<Instructions, OfpError> {
    let mut ins = Instructions::default();
    let mut seen = Vec::new();
    let mut r = Reader::new(buf, E::InstBadLen);
    while !r.is_empty() {
        let kind = r.u16("instruction type")?;
        let len = usize::from(r.u16("instruction length")?);
        if len < 8 || len % 8 != 0 || len - 4 > r.remaining() {
            return Err(bad(
                E::InstBadLen,
                format!("instruction {kind} has length {len}"),
            ));
        }
        if seen.contains(&kind) {
            return Err(bad(E::InstDup, format!("instruction {kind} twice")));
        }
        seen.push(kind);
        let body = r.bytes(len - 4, "instruction")?;
        let mut b = Reader::new(body, E::InstBadLen);
        match kind {
            OFPIT_GOTO_TABLE => ins.goto_table = Some(b.u8("table")?),
            OFPIT_WRITE_METADATA => {
                b.skip(4, "pad")?;
                let v = b.u64("metadata")?;
                let m = b.u64("mask")?;
                ins.write_metadata = Some((v & m, m));
            }
            OFPIT_APPLY_ACTIONS | OFPIT_WRITE_ACTIONS => {
                b.skip(4, "pad")?;
                let acts = decode_actions(super::OFP13, b.buf, &Match::default())?;
                if acts.write_metadata.is_some() {
                    return Err(bad(E::ActionBadVendorType, "write_metadata as an action"));
                }
                if kind == OFPIT_APPLY_ACTIONS {
                    ins.apply = acts.apply;
                } else if let Some(a) = acts.apply.iter().find(|a| !a.allowed_in_action_set()) {
                    return Err(bad(
                        E::ActionBadType,
                        format!(
                            "disallowed action in action set: {}",
                            crate::format::ofp_rule::format_action(a)
                        ),
                    ));
                } else {
                    ins.write_actions = Some(acts.apply);
                }
            }
            OFPIT_CLEAR_ACTIONS => ins.clear_actions = true,
            OFPIT_METER => {
                let m = b.u32("meter_id")?;
                if m == 0 || m > crate::meter::METER_MAX {
                    return Err(bad(E::MeterInvalid, format!("meter instruction to {m:#x}")));
                }
                ins.meter = Some(m);
            }
            _ => return Err(bad(E::InstUnknown, format!("instruction type {kind}"))),
        }
    }
    Ok(ins)
}

/// NXAST_CONTROLLER2 after its subtype: 6 bytes of padding, then
/// properties (type, length with the 4-byte header, value, padding to 8).
fn decode_controller2(a: &mut Reader<'_>) -> Result<ControllerAction, OfpError> {
    let pad = a.bytes(6, "pad")?;
    if pad.iter().any(|b| *b != 0) {
        return Err(bad(E::ActionBadArgument, "controller2: nonzero padding"));
    }
    let mut c = ControllerAction::output(u16::MAX);
    while !a.is_empty() {
        let kind = a.u16("controller2 property type")?;
        let len = usize::from(a.u16("controller2 property length")?);
        if len < 4 {
            return Err(bad(
                E::ActionBadLen,
                format!("controller2 property {kind} of length {len}"),
            ));
        }
        let value = a.bytes(len - 4, "controller2 property")?;
        let padding = len.next_multiple_of(8) - len;
        a.skip(padding.min(a.remaining()), "controller2 property padding")?;
        // As OVS's `ofpprop_parse_*`: 8- and 16-bit values may come with
        // padding (OpenFlow gives 16-bit properties a length of 8), 32-bit
        // ones may not.
        let value_of = |n: usize, exact: bool| {
            let ok = value.len() == n || (!exact && value.len() > n);
            ok.then(|| &value[..n]).ok_or_else(|| {
                bad(
                    E::ActionBadLen,
                    format!(
                        "controller2 property {kind}: {} bytes, not {n}",
                        value.len()
                    ),
                )
            })
        };
        let be16 = |v: &[u8]| u16::from_be_bytes([v[0], v[1]]);
        match kind {
            NXAC2PT_MAX_LEN => c.max_len = be16(value_of(2, false)?),
            NXAC2PT_CONTROLLER_ID => c.controller_id = be16(value_of(2, false)?),
            NXAC2PT_REASON => c.reason = value_of(1, false)?[0],
            NXAC2PT_USERDATA => c.userdata = value.to_vec(),
            NXAC2PT_PAUSE => c.pause = true,
            NXAC2PT_METER_ID => {
                let v = value_of(4, true)?;
                c.meter_id = u32::from_be_bytes([v[0], v[1], v[2], v[3]]);
            }
            _ => {
                return Err(bad(
                    E::ActionBadArgument,
                    format!("controller2: unknown property {kind}"),
                ))
            }
        }
    }
    Ok(c)
}

/// A `controller` action as OVS's `encode_CONTROLLER` sends it: an
/// output to CONTROLLER when only `max_len` is set, NXAST_CONTROLLER
/// without userdata, pause or meter, NXAST_CONTROLLER2 otherwise.
fn put_controller(of10: bool, c: &ControllerAction, out: &mut Vec<u8>) {
    if c.is_output() {
        return put_output(of10, port::CONTROLLER, c.max_len, out);
    }
    if c.userdata.is_empty() && !c.pause && c.meter_id == NO_METER {
        put_nx_header(out, 16, NXAST_CONTROLLER);
        out.put_u16(c.max_len);
        out.put_u16(c.controller_id);
        out.put_u8(c.reason);
        out.put_u8(0);
        return;
    }
    let start = out.len();
    put_nx_header(out, 0, NXAST_CONTROLLER2);
    out.put_zeros(6);
    let prop = |out: &mut Vec<u8>, kind: u16, value: &[u8]| {
        out.put_u16(kind);
        out.put_u16(4 + value.len() as u16);
        out.extend_from_slice(value);
        out.put_zeros((4 + value.len()).next_multiple_of(8) - (4 + value.len()));
    };
    // 16-bit values with two bytes of padding (OVS's `ofpprop_put_be16`).
    let be16 = |v: u16| [(v >> 8) as u8, v as u8, 0, 0];
    if c.max_len != u16::MAX {
        prop(out, NXAC2PT_MAX_LEN, &be16(c.max_len));
    }
    if c.controller_id != 0 {
        prop(out, NXAC2PT_CONTROLLER_ID, &be16(c.controller_id));
    }
    if c.reason != packet_in_reason::ACTION {
        prop(out, NXAC2PT_REASON, &[c.reason]);
    }
    if !c.userdata.is_empty() {
        prop(out, NXAC2PT_USERDATA, &c.userdata);
    }
    if c.pause {
        prop(out, NXAC2PT_PAUSE, &[]);
    }
    if c.meter_id != NO_METER {
        prop(out, NXAC2PT_METER_ID, &c.meter_id.to_be_bytes());
    }
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
}

/// A subfield's `ofs_nbits`: `(ofs << 6) | (n_bits - 1)`.
fn ofs_nbits(sf: &Subfield) -> u16 {
    u16::from(sf.ofs) << 6 | (u16::from(sf.n_bits) - 1)
}

fn put_nx_header(out: &mut Vec<u8>, len: u16, subtype: u16) {
    out.put_u16(OFPAT_EXPERIMENTER);
    out.put_u16(len);
    out.put_u32(NX_VENDOR_ID);
    out.put_u16(subtype);
}

/// The header an action names `field` by. A field with no NXM or OXM
/// header upcalld codes (`xxreg0`, `tun_flags`, `ct_nw_src`, …) cannot be
/// sent in an action: refused, rather than sent under another field's
/// header.
fn header_of(field: Field, oxm: bool) -> Result<NxmHeader, OfpError> {
    let info = field::by_field(field);
    nxm::header_for(info, oxm).ok_or_else(|| {
        OfpError::new(
            E::ActionBadSetType,
            format!(
                "field {} has no NXM/OXM header upcalld can encode, so an action naming it cannot be sent over OpenFlow",
                info.name
            ),
        )
    })
}

/// The 32-bit header a Nicira action's fixed field slot names `field` by
/// (`move`, `output:REG`, `push`/`pop`, `load`, `check_pkt_larger`, `ct`'s
/// zone): an experimenter header (`actset_output`'s) does not fit there.
fn nxm_header_of(field: Field) -> Result<NxmHeader, OfpError> {
    let h = header_of(field, false)?;
    if h.class == field::EXPERIMENTER {
        return Err(OfpError::new(
            E::ActionBadSetType,
            format!(
                "field {} has only an experimenter header, which this action's 32-bit field slot cannot carry",
                field::by_field(field).name
            ),
        ));
    }
    Ok(h)
}

/// The header a Nicira action's field slot names `field` by when the
/// action touches its bits below `end`: the NXM header, unless those bits
/// reach past it; then the OXM one, as OVS names a 32-bit port
/// (`OXM_OF_IN_PORT`: `NXM_OF_IN_PORT` has 16 bits). Refused when no
/// header is wide enough, rather than sent as a slot the header cannot hold.
fn nxm_header_spanning(field: Field, end: u32) -> Result<NxmHeader, OfpError> {
    let fits = |h: &NxmHeader| u32::from(h.len) * 8 >= end;
    let nxm = nxm_header_of(field)?;
    if fits(&nxm) {
        return Ok(nxm);
    }
    let wider = field::FIELDS
        .iter()
        .filter(|info| info.field == field)
        .flat_map(|info| [info.nxm_header, info.oxm_header])
        .flatten()
        .find(|h| h.class != field::EXPERIMENTER && fits(h));
    match wider {
        Some(h) => Ok(h),
        None => Err(OfpError::new(
            E::ActionBadSetType,
            format!(
                "bits up to {end} of field {} are past its {}-bit header",
                field::by_field(field).name,
                u32::from(nxm.len) * 8
            ),
        )),
    }
}

/// Encodes one action in `version`.
pub fn encode_action(version: u8, a: &OfAction, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let of10 = version == OFP10;
    match a {
        OfAction::Output { port, max_len } => put_output(of10, *port, *max_len, out),
        OfAction::Controller(c) => put_controller(of10, c, out),
        OfAction::PushVlan { tpid } if !of10 => {
            out.put_u16(OFPAT_PUSH_VLAN);
            out.put_u16(8);
            out.put_u16(*tpid);
            out.put_zeros(2);
        }
        // OpenFlow 1.0's SET_VLAN_VID pushes a tag when there is none.
        OfAction::PushVlan { .. } => {}
        OfAction::PopVlan if of10 => {
            out.put_u16(OFPAT10_STRIP_VLAN);
            out.put_u16(8);
            out.put_zeros(4);
        }
        OfAction::PopVlan => {
            out.put_u16(OFPAT_POP_VLAN);
            out.put_u16(8);
            out.put_zeros(4);
        }
        OfAction::DecTtl if of10 => {
            put_nx_header(out, 16, NXAST_DEC_TTL);
            out.put_zeros(6);
        }
        OfAction::DecTtl => {
            out.put_u16(OFPAT_DEC_NW_TTL);
            out.put_u16(8);
            out.put_zeros(4);
        }
        OfAction::DecTtlIds(ids) => {
            let start = out.len();
            put_nx_header(out, 0, NXAST_DEC_TTL_CNT_IDS);
            out.put_u16(ids.len() as u16);
            out.put_zeros(4);
            for id in ids {
                out.put_u16(*id);
            }
            out.pad8_from(start);
            let len = (out.len() - start) as u16;
            out.set_u16(start + 2, len);
        }
        OfAction::SetField { field, value, mask } => {
            // A variable-length field (tun_metadataN) has no REG_LOAD
            // form in 1.0: OVS sends REG_LOAD2 there.
            let variable = matches!(field, Field::TunMetadata { .. });
            if *mask != field.full_mask() || (of10 && variable) {
                put_reg_load2(*field, *value, *mask, out)?;
            } else if of10 {
                put_of10_set(*field, *value, out)?;
            } else {
                let h = header_of(*field, true)?;
                let start = out.len();
                out.put_u16(OFPAT_SET_FIELD);
                out.put_u16(0);
                nxm::put_entry(out, h, *value, u128::MAX);
                out.pad8_from(start);
                let len = (out.len() - start) as u16;
                out.set_u16(start + 2, len);
            }
        }
        OfAction::Load { field, value, mask } => put_reg_loads(*field, *value, *mask, out)?,
        OfAction::Move {
            src,
            src_ofs,
            dst,
            dst_ofs,
            n_bits,
        } => {
            put_nx_header(out, 24, NXAST_REG_MOVE);
            out.put_u16((*n_bits).into());
            out.put_u16((*src_ofs).into());
            out.put_u16((*dst_ofs).into());
            let (src_end, dst_end) = (
                u32::from(*src_ofs) + u32::from(*n_bits),
                u32::from(*dst_ofs) + u32::from(*n_bits),
            );
            out.put_u32(nxm_header_spanning(*src, src_end)?.raw(false));
            out.put_u32(nxm_header_spanning(*dst, dst_end)?.raw(false));
        }
        OfAction::OutputReg { field, ofs, n_bits } => {
            put_nx_header(out, 24, NXAST_OUTPUT_REG);
            out.put_u16((u16::from(*ofs) << 6) | (u16::from(*n_bits) - 1));
            let end = u32::from(*ofs) + u32::from(*n_bits);
            out.put_u32(nxm_header_spanning(*field, end)?.raw(false));
            out.put_u16(0);
            out.put_zeros(6);
        }
        OfAction::CtClear => {
            put_nx_header(out, 16, NXAST_CT_CLEAR);
            out.put_zeros(6);
        }
        OfAction::Conjunction {
            id,
            clause,
            n_clauses,
        } => {
            put_nx_header(out, 16, NXAST_CONJUNCTION);
            out.put_u8(*clause);
            out.put_u8(*n_clauses);
            out.put_u32(*id);
        }
        OfAction::FinTimeout {
            idle_timeout,
            hard_timeout,
        } => {
            put_nx_header(out, 16, NXAST_FIN_TIMEOUT);
            out.put_u16(*idle_timeout);
            out.put_u16(*hard_timeout);
            out.put_zeros(2);
        }
        OfAction::Learn(learn) => put_learn(learn, out)?,
        OfAction::Ct(ct) => put_ct(version, ct, out)?,
        OfAction::Nat(nat) => put_nat(nat, out),
        OfAction::PushMpls { ethertype } | OfAction::PopMpls { ethertype } => {
            let push = matches!(a, OfAction::PushMpls { .. });
            if of10 {
                put_nx_header(
                    out,
                    16,
                    if push {
                        NXAST_PUSH_MPLS
                    } else {
                        NXAST_POP_MPLS
                    },
                );
                out.put_u16(*ethertype);
                out.put_zeros(4);
            } else {
                out.put_u16(if push {
                    OFPAT_PUSH_MPLS
                } else {
                    OFPAT_POP_MPLS
                });
                out.put_u16(8);
                out.put_u16(*ethertype);
                out.put_zeros(2);
            }
        }
        // OVS sends label and TC as set_field from OpenFlow 1.2 on.
        OfAction::SetMplsLabel(label) if !of10 => {
            encode_action(version, &set(Field::MplsLabel, u128::from(*label)), out)?
        }
        OfAction::SetMplsLabel(label) => {
            put_nx_header(out, 16, NXAST_SET_MPLS_LABEL);
            out.put_zeros(2);
            out.put_u32(*label);
        }
        OfAction::SetMplsTc(tc) if !of10 => {
            encode_action(version, &set(Field::MplsTc, u128::from(*tc)), out)?
        }
        OfAction::SetMplsTc(tc) => {
            put_nx_header(out, 16, NXAST_SET_MPLS_TC);
            out.put_u8(*tc);
            out.put_zeros(5);
        }
        OfAction::SetMplsTtl(ttl) if of10 => {
            put_nx_header(out, 16, NXAST_SET_MPLS_TTL);
            out.put_u8(*ttl);
            out.put_zeros(5);
        }
        OfAction::SetMplsTtl(ttl) => {
            out.put_u16(OFPAT_SET_MPLS_TTL);
            out.put_u16(8);
            out.put_u8(*ttl);
            out.put_zeros(3);
        }
        OfAction::DecMplsTtl if of10 => {
            put_nx_header(out, 16, NXAST_DEC_MPLS_TTL);
            out.put_zeros(6);
        }
        OfAction::DecMplsTtl => {
            out.put_u16(OFPAT_DEC_MPLS_TTL);
            out.put_u16(8);
            out.put_zeros(4);
        }
        OfAction::Exit => {
            put_nx_header(out, 16, NXAST_EXIT);
            out.put_zeros(6);
        }
        OfAction::PopQueue => {
            put_nx_header(out, 16, NXAST_POP_QUEUE);
            out.put_zeros(6);
        }
        OfAction::Note(bytes) => {
            let start = out.len();
            put_nx_header(out, 0, NXAST_NOTE);
            out.extend_from_slice(bytes);
            let len = (out.len() - start).next_multiple_of(8).max(16);
            out.put_zeros(start + len - out.len());
            out.set_u16(start + 2, len as u16);
        }
        OfAction::Multipath(mp) => {
            put_nx_header(out, 32, NXAST_MULTIPATH);
            out.put_u16(mp.fields as u16);
            out.put_u16(mp.basis);
            out.put_zeros(2);
            out.put_u16(mp.algorithm as u16);
            out.put_u16(mp.max_link);
            out.put_u32(mp.arg);
            out.put_zeros(2);
            out.put_u16(ofs_nbits(&mp.dst));
            out.put_u32(nxm_header_of(mp.dst.field)?.raw(false));
        }
        OfAction::Bundle(b) => {
            let members_len = (2 * b.members.len()).next_multiple_of(8);
            let subtype = if b.dst.is_some() {
                NXAST_BUNDLE_LOAD
            } else {
                NXAST_BUNDLE
            };
            put_nx_header(out, (32 + members_len) as u16, subtype);
            out.put_u16(b.algorithm as u16);
            out.put_u16(b.fields as u16);
            out.put_u16(b.basis);
            out.put_u32(NXM_OF_IN_PORT);
            out.put_u16(b.members.len() as u16);
            match &b.dst {
                Some(dst) => {
                    out.put_u16(ofs_nbits(dst));
                    out.put_u32(nxm_header_of(dst.field)?.raw(false));
                }
                None => out.put_zeros(6),
            }
            out.put_zeros(4);
            for p in &b.members {
                out.put_u16(super::port_to_of10(*p));
            }
            out.put_zeros(members_len - 2 * b.members.len());
        }
        // OVS's `encode_SAMPLE`: the oldest form that carries it all.
        OfAction::Sample(smp) => {
            use crate::ofp::SampleDirection;
            let subtype = if smp.direction != SampleDirection::Default {
                NXAST_SAMPLE3
            } else if smp.sampling_port != port::ANY {
                NXAST_SAMPLE2
            } else {
                NXAST_SAMPLE
            };
            put_nx_header(out, if subtype == NXAST_SAMPLE { 24 } else { 32 }, subtype);
            out.put_u16(smp.probability);
            out.put_u32(smp.collector_set_id);
            out.put_u32(smp.obs_domain_id);
            out.put_u32(smp.obs_point_id);
            if subtype != NXAST_SAMPLE {
                out.put_u16(if smp.sampling_port == port::ANY {
                    0xffff
                } else {
                    super::port_to_of10(smp.sampling_port)
                });
                out.put_u8(smp.direction as u8);
                out.put_zeros(5);
            }
        }
        OfAction::DebugRecirc | OfAction::DebugSlow => {
            let subtype = if matches!(a, OfAction::DebugRecirc) {
                NXAST_DEBUG_RECIRC
            } else {
                NXAST_DEBUG_SLOW
            };
            put_nx_header(out, 16, subtype);
            out.put_zeros(6);
        }
        // OpenFlow 1.2+ has set_field for it, which OVS sends there.
        OfAction::SetTunnel { tun_id, .. } if !of10 => encode_action(
            version,
            &OfAction::SetField {
                field: Field::TunId,
                value: (*tun_id).into(),
                mask: Field::TunId.full_mask(),
            },
            out,
        )?,
        OfAction::SetTunnel { tun_id, wide } => {
            if *wide || *tun_id > u64::from(u32::MAX) {
                put_nx_header(out, 24, NXAST_SET_TUNNEL64);
                out.put_zeros(6);
                out.put_u64(*tun_id);
            } else {
                put_nx_header(out, 16, NXAST_SET_TUNNEL);
                out.put_zeros(2);
                out.put_u32(*tun_id as u32);
            }
        }
        // OpenFlow 1.0 has no groups; OVS sends the 1.1 action there too.
        OfAction::Group(g) => {
            out.put_u16(OFPAT_GROUP);
            out.put_u16(8);
            out.put_u32(*g);
        }
        OfAction::SetQueue(q) if of10 => {
            put_nx_header(out, 16, NXAST_SET_QUEUE);
            out.put_zeros(2);
            out.put_u32(*q);
        }
        OfAction::SetQueue(q) => {
            out.put_u16(OFPAT_SET_QUEUE);
            out.put_u16(8);
            out.put_u32(*q);
        }
        // OpenFlow 1.1+ has no enqueue: OVS sends set_queue, output, pop_queue.
        OfAction::Enqueue { port, queue } if of10 => {
            out.put_u16(OFPAT10_ENQUEUE);
            out.put_u16(16);
            out.put_u16(super::port_to_of10(*port));
            out.put_zeros(6);
            out.put_u32(*queue);
        }
        OfAction::Enqueue { port, queue } => {
            encode_action(version, &OfAction::SetQueue(*queue), out)?;
            put_output(false, *port, u16::MAX, out);
            encode_action(version, &OfAction::PopQueue, out)?;
        }
        OfAction::StackPush(sf) | OfAction::StackPop(sf) => {
            let subtype = if matches!(a, OfAction::StackPush(_)) {
                NXAST_STACK_PUSH
            } else {
                NXAST_STACK_POP
            };
            put_nx_header(out, 24, subtype);
            out.put_u16(sf.ofs.into());
            out.put_u32(nxm_header_of(sf.field)?.raw(false));
            out.put_u16(sf.n_bits.into());
            out.put_zeros(6);
        }
        OfAction::OutputTrunc { port, max_len } => {
            put_nx_header(out, 16, NXAST_OUTPUT_TRUNC);
            out.put_u16(super::port_to_of10(*port));
            out.put_u32(*max_len);
        }
        OfAction::CheckPktLarger { pkt_len, dst } => {
            put_nx_header(out, 24, NXAST_CHECK_PKT_LARGER);
            out.put_u16(*pkt_len);
            out.put_u16(dst.ofs.into());
            out.put_u32(nxm_header_of(dst.field)?.raw(false));
            out.put_zeros(6);
        }
        OfAction::Clone(inner) => {
            let start = out.len();
            put_nx_header(out, 0, NXAST_CLONE);
            out.put_zeros(6);
            for a in inner {
                encode_action(version, a, out)?;
            }
            let len = (out.len() - start) as u16;
            out.set_u16(start + 2, len);
        }
        OfAction::Resubmit { in_port, table } => {
            let p = in_port.map_or(OFPP10_IN_PORT, super::port_to_of10);
            match table {
                None if in_port.is_some() => {
                    put_nx_header(out, 16, NXAST_RESUBMIT);
                    out.put_u16(p);
                    out.put_zeros(4);
                }
                t => {
                    put_nx_header(out, 16, NXAST_RESUBMIT_TABLE);
                    out.put_u16(p);
                    out.put_u8(t.unwrap_or(0xff));
                    out.put_zeros(3);
                }
            }
        }
    }
    Ok(())
}

/// A `learn` as OVS encodes it: NXAST_LEARN, or NXAST_LEARN2 when it has
/// a `limit` or a `result_dst`; fields by their NXM headers.
fn put_learn(learn: &Learn, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let start = out.len();
    let learn2 = learn.limit != 0 || learn.result_dst.is_some();
    put_nx_header(out, 0, if learn2 { NXAST_LEARN2 } else { NXAST_LEARN });
    out.put_u16(learn.idle_timeout);
    out.put_u16(learn.hard_timeout);
    out.put_u16(learn.priority);
    out.put_u64(learn.cookie);
    let mut flags = 0;
    if learn.send_flow_rem {
        flags |= NX_LEARN_F_SEND_FLOW_REM;
    }
    if learn.delete_learned {
        flags |= NX_LEARN_F_DELETE_LEARNED;
    }
    if learn.result_dst.is_some() {
        flags |= NX_LEARN_F_WRITE_RESULT;
    }
    out.put_u16(flags);
    out.put_u8(learn.table);
    out.put_u8(0);
    out.put_u16(learn.fin_idle_timeout);
    out.put_u16(learn.fin_hard_timeout);
    if learn2 {
        out.put_u32(learn.limit);
        out.put_u16(learn.result_dst.map_or(0, |d| d.ofs.into()));
        out.put_zeros(2);
        if let Some(d) = learn.result_dst {
            put_field_header(d.field, out)?;
        }
    }
    let put_subfield = |sf: &Subfield, out: &mut Vec<u8>| -> Result<(), OfpError> {
        put_field_header(sf.field, out)?;
        out.put_u16(sf.ofs.into());
        Ok(())
    };
    for spec in &learn.specs {
        let n_bits = u16::from(spec.n_bits);
        let (src_kind, dst_kind) = (
            match spec.src {
                LearnSrc::Field(_) => 0,
                LearnSrc::Immediate(_) => NX_LEARN_SRC_IMMEDIATE,
            },
            match spec.dst {
                LearnDst::Match(_) => NX_LEARN_DST_MATCH,
                LearnDst::Load(_) => NX_LEARN_DST_LOAD,
                LearnDst::Output => NX_LEARN_DST_OUTPUT,
            },
        );
        out.put_u16(n_bits | src_kind | dst_kind);
        match spec.src {
            LearnSrc::Field(sf) => put_subfield(&sf, out)?,
            LearnSrc::Immediate(v) => {
                let n_bytes = usize::from(2 * n_bits.div_ceil(16));
                let be = v.to_be_bytes();
                out.put_zeros(n_bytes.saturating_sub(16));
                out.extend_from_slice(&be[16 - n_bytes.min(16)..]);
            }
        }
        match spec.dst {
            LearnDst::Match(sf) | LearnDst::Load(sf) => put_subfield(&sf, out)?,
            LearnDst::Output => {}
        }
    }
    out.pad8_from(start);
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
    Ok(())
}

/// A field's NXM header (OXM or experimenter where it has no NXM one), as
/// OVS's `nx_put_mff_header` writes it in Nicira actions.
fn put_field_header(field: Field, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let h = header_of(field, false)?;
    out.put_u32(h.raw(false));
    if h.class == 0xffff {
        out.put_u32(ONF_VENDOR_ID);
    }
    Ok(())
}

fn put_ct(version: u8, ct: &CtSpec, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let start = out.len();
    put_nx_header(out, 0, NXAST_CT);
    let mut flags = 0;
    if ct.commit {
        flags |= NX_CT_F_COMMIT;
    }
    if ct.force {
        flags |= NX_CT_F_FORCE;
    }
    out.put_u16(flags);
    match ct.zone {
        CtZone::Imm(z) => {
            out.put_u32(0);
            out.put_u16(z);
        }
        CtZone::Field { field, ofs, n_bits } => {
            out.put_u32(nxm_header_of(field)?.raw(false));
            out.put_u16((u16::from(ofs) << 6) | (u16::from(n_bits) - 1));
        }
    }
    out.put_u8(ct.table.unwrap_or(0xff));
    out.put_zeros(3);
    out.put_u16(ct.alg);
    for a in &ct.actions {
        encode_action(version, a, out)?;
    }
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
    Ok(())
}

fn put_nat(nat: &NatAction, out: &mut Vec<u8>) {
    let start = out.len();
    put_nx_header(out, 0, NXAST_NAT);
    out.put_zeros(2);
    let mut flags = match nat.kind {
        Some(NatKind::Src) => NX_NAT_F_SRC,
        Some(NatKind::Dst) => NX_NAT_F_DST,
        None => 0,
    };
    for (on, bit) in [
        (nat.persistent, NX_NAT_F_PERSISTENT),
        (nat.hash, NX_NAT_F_PROTO_HASH),
        (nat.random, NX_NAT_F_PROTO_RANDOM),
    ] {
        if on {
            flags |= bit;
        }
    }
    out.put_u16(flags);
    let present_at = out.len();
    out.put_u16(0);
    let mut present = 0;
    match nat.addrs {
        Some(NatAddrs::V4 { min, max }) => {
            out.put_u32(min);
            present |= NX_NAT_RANGE_IPV4_MIN;
            if max != min {
                out.put_u32(max);
                present |= NX_NAT_RANGE_IPV4_MAX;
            }
        }
        Some(NatAddrs::V6 { min, max }) => {
            out.extend_from_slice(&min);
            present |= NX_NAT_RANGE_IPV6_MIN;
            if max != min {
                out.extend_from_slice(&max);
                present |= NX_NAT_RANGE_IPV6_MAX;
            }
        }
        None => {}
    }
    if let Some((min, max)) = nat.ports {
        out.put_u16(min);
        present |= NX_NAT_RANGE_PROTO_MIN;
        if max != min {
            out.put_u16(max);
            present |= NX_NAT_RANGE_PROTO_MAX;
        }
    }
    out.set_u16(present_at, present);
    out.pad8_from(start);
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
}

fn put_output(of10: bool, port: u32, max_len: u16, out: &mut Vec<u8>) {
    if of10 {
        out.put_u16(OFPAT10_OUTPUT);
        out.put_u16(8);
        out.put_u16(super::port_to_of10(port));
        out.put_u16(max_len);
    } else {
        out.put_u16(OFPAT_OUTPUT);
        out.put_u16(16);
        out.put_u32(port);
        out.put_u16(max_len);
        out.put_zeros(6);
    }
}

/// OpenFlow 1.0 has no set-field: its own actions where they exist, else
/// Nicira's REG_LOAD of the whole field, as OVS encodes them.
fn put_of10_set(field: Field, value: u128, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let small = |out: &mut Vec<u8>, kind: u16, v: u32, width: u8| {
        out.put_u16(kind);
        out.put_u16(8);
        match width {
            1 => {
                out.put_u8(v as u8);
                out.put_zeros(3);
            }
            2 => {
                out.put_u16(v as u16);
                out.put_zeros(2);
            }
            _ => out.put_u32(v),
        }
    };
    match field {
        Field::EthSrc | Field::EthDst => {
            out.put_u16(if field == Field::EthSrc {
                OFPAT10_SET_DL_SRC
            } else {
                OFPAT10_SET_DL_DST
            });
            out.put_u16(16);
            out.extend_from_slice(&value.to_be_bytes()[10..]);
            out.put_zeros(6);
        }
        Field::Ipv4Src => small(out, OFPAT10_SET_NW_SRC, value as u32, 4),
        Field::Ipv4Dst => small(out, OFPAT10_SET_NW_DST, value as u32, 4),
        Field::IpDscp => small(out, OFPAT10_SET_NW_TOS, (value as u32) << 2, 1),
        Field::TcpSrc | Field::UdpSrc | Field::SctpSrc => {
            small(out, OFPAT10_SET_TP_SRC, value as u32, 2)
        }
        Field::TcpDst | Field::UdpDst | Field::SctpDst => {
            small(out, OFPAT10_SET_TP_DST, value as u32, 2)
        }
        Field::VlanVid => small(out, OFPAT10_SET_VLAN_VID, (value as u32) & 0xfff, 2),
        Field::VlanPcp => small(out, OFPAT10_SET_VLAN_PCP, (value as u32) << 8, 2),
        _ => put_reg_loads(field, value, field.full_mask(), out)?,
    }
    Ok(())
}

/// One REG_LOAD per contiguous run of mask bits (at most 64 bits each).
fn put_reg_loads(field: Field, value: u128, mask: u128, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let n_bits = field.n_bits();
    let h = nxm_header_spanning(field, 128 - mask.leading_zeros())?;
    let mut ofs = 0;
    while ofs < n_bits {
        if mask >> ofs & 1 == 0 {
            ofs += 1;
            continue;
        }
        let mut end = ofs;
        while end < n_bits && end - ofs < 64 && mask >> end & 1 == 1 {
            end += 1;
        }
        let n = end - ofs;
        put_nx_header(out, 24, NXAST_REG_LOAD);
        out.put_u16(((ofs as u16) << 6) | (n as u16 - 1));
        out.put_u32(h.raw(false));
        out.put_u64(((value >> ofs) & ones(n)) as u64);
        ofs = end;
    }
    Ok(())
}

fn put_reg_load2(field: Field, value: u128, mask: u128, out: &mut Vec<u8>) -> Result<(), OfpError> {
    let start = out.len();
    put_nx_header(out, 0, NXAST_REG_LOAD2);
    nxm::put_entry(out, header_of(field, true)?, value, mask);
    out.pad8_from(start);
    let len = (out.len() - start) as u16;
    out.set_u16(start + 2, len);
    Ok(())
}

/// Encodes an action list (OpenFlow 1.0: with goto_table as
/// `resubmit(,N)` and write_metadata as Nicira's action, as OVS does).
pub fn encode_actions_of10(ins: &Instructions, out: &mut Vec<u8>) -> Result<(), OfpError> {
    for a in &ins.apply {
        encode_action(OFP10, a, out)?;
    }
    if let Some((v, m)) = ins.write_metadata {
        put_nx_header(out, 32, NXAST_WRITE_METADATA);
        out.put_zeros(6);
        out.put_u64(v);
        out.put_u64(m);
    }
    if let Some(t) = ins.goto_table {
        encode_action(
            OFP10,
            &OfAction::Resubmit {
                in_port: None,
                table: Some(t),
            },
            out,
        )?;
    }
    Ok(())
}

/// Encodes OpenFlow 1.3 instructions in OVS's order.
pub fn encode_instructions(
    version: u8,
    ins: &Instructions,
    out: &mut Vec<u8>,
) -> Result<(), OfpError> {
    let list = |out: &mut Vec<u8>, kind: u16, acts: &[OfAction]| -> Result<(), OfpError> {
        let start = out.len();
        out.put_u16(kind);
        out.put_u16(0);
        out.put_zeros(4);
        for a in acts {
            encode_action(version, a, out)?;
        }
        let len = (out.len() - start) as u16;
        out.set_u16(start + 2, len);
        Ok(())
    };
    if let Some(m) = ins.meter {
        out.put_u16(OFPIT_METER);
        out.put_u16(8);
        out.put_u32(m);
    }
    if !ins.apply.is_empty() {
        list(out, OFPIT_APPLY_ACTIONS, &ins.apply)?;
    }
    if ins.clear_actions {
        out.put_u16(OFPIT_CLEAR_ACTIONS);
        out.put_u16(8);
        out.put_zeros(4);
    }
    if let Some(w) = &ins.write_actions {
        list(out, OFPIT_WRITE_ACTIONS, w)?;
    }
    if let Some((v, m)) = ins.write_metadata {
        out.put_u16(OFPIT_WRITE_METADATA);
        out.put_u16(24);
        out.put_zeros(4);
        out.put_u64(v);
        out.put_u64(m);
    }
    if let Some(t) = ins.goto_table {
        out.put_u16(OFPIT_GOTO_TABLE);
        out.put_u16(8);
        out.put_u8(t);
        out.put_zeros(3);
    }
    Ok(())
}
