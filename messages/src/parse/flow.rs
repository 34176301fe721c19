//! Flows in the syntax `ofproto/trace` takes (OVS's
//! `parse_ofp_exact_flow`): `field=value` pairs and protocol shorthands,
//! every field exact, fields left out zero.
//!
//! Fields are set in the order given and each one's prerequisites must
//! already hold, so `tp_src`/`tp_dst` (OVS's aliases of `tcp_src` and
//! `tcp_dst`) need TCP, and `icmp_type` needs ICMPv4. The errors are OVS's
//! own text, so that a trace can print them as OVS does after
//! `Bad openflow flow syntax: `.

use std::fmt;

use super::rules::PROTOCOLS;
use super::syntax::{exact_mask, key_values, parse_field_value};
use crate::field::Field;
use crate::field::{self, prereqs_hold, FieldInfo};
use crate::flow::*;
use crate::ofp::port;

/// A flow that does not parse. Displays as OVS's message:
/// `<flow>: <reason>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowParseError {
    /// The whole flow text, as given.
    pub flow: String,
    /// What is wrong, e.g. `prerequisites not met for setting tp_src`.
    pub reason: String,
}

impl fmt::Display for FlowParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.flow, self.reason)
    }
}

impl std::error::Error for FlowParseError {}

/// Parses a `--ct-next` argument of `ofproto/trace` (OVS's
/// `parse_ct_state` then `validate_ct_state`): state names separated by
/// commas or spaces, e.g. `trk,est`.
pub fn parse_ct_next(s: &str) -> Result<u8, String> {
    let mut state = 0u8;
    for name in s.split([',', ' ']).filter(|n| !n.is_empty()) {
        let bit = super::syntax::CT_STATE_NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(b, _)| *b as u8)
            .ok_or_else(|| format!("{name}: unknown connection tracking state flag"))?;
        state |= bit;
    }
    let shown = crate::format::ct_state_flags(state);
    let invalid = |why: &str| Err(format!("{shown}: invalid connection state: {why}"));
    if state != 0 && state & CS_TRACKED == 0 {
        return invalid("If \"trk\" is unset, no other flags are set");
    }
    if state & CS_INVALID != 0 && state & !(CS_TRACKED | CS_INVALID) != 0 {
        return invalid("when \"inv\" is set, only \"trk\" may also be set");
    }
    if state & CS_NEW != 0 && state & CS_ESTABLISHED != 0 {
        return invalid("\"new\" and \"est\" are mutually exclusive");
    }
    if state & CS_NEW != 0 && state & CS_REPLY_DIR != 0 {
        return invalid("\"new\" and \"rpy\" are mutually exclusive");
    }
    Ok(state)
}

/// Parses a flow as `ofproto/trace` does. A flow without `in_port` comes
/// from no port (`port::ANY`, OVS's `OFPP_NONE`).
pub fn parse_trace_flow(s: &str) -> Result<Flow, FlowParseError> {
    let fail = |reason: String| FlowParseError {
        flow: s.to_string(),
        reason,
    };
    let mut flow = Flow::default();
    for kv in key_values(s, 0) {
        if let Some(&(_, dl_type, nw_proto)) = PROTOCOLS.iter().find(|(n, _, _)| *n == kv.key) {
            if flow.dl_type != 0 {
                return Err(fail("Ethernet type set multiple times".into()));
            }
            flow.dl_type = dl_type;
            if nw_proto != 0 {
                if flow.nw_proto != 0 {
                    return Err(fail("network protocol set multiple times".into()));
                }
                flow.nw_proto = nw_proto;
            }
            continue;
        }
        let Some(info) = field::by_name(kv.key) else {
            return Err(fail(format!("unknown field {}", kv.key)));
        };
        if !prereqs_hold(info.prereq, &flow) {
            return Err(fail(format!(
                "prerequisites not met for setting {}",
                kv.key
            )));
        }
        if info.field.get(&flow) != 0 {
            return Err(fail(format!("field {} set multiple times", kv.key)));
        }
        let (value, mask) = parse_field_value(info, kv.value)
            .map_err(|e| fail(format!("bad value for {} ({})", kv.key, e.ovs)))?;
        // ct_state's eight flags are the whole field, as a number gives them.
        let exact = mask == exact_mask(info) || (info.field == Field::CtState && mask == 0xff);
        if !exact {
            return Err(fail(format!(
                "bad value for {} ({}: wildcards not allowed here)",
                kv.key, kv.value
            )));
        }
        if value > info.bit_mask() && !fits_anyway(info, value) {
            return Err(fail(format!(
                "bad value for {} ({}: value too large for {}-bit field {})",
                kv.key, kv.value, info.n_bits, info.name
            )));
        }
        set_flow_field(&mut flow, info, value);
    }
    if flow.in_port == 0 {
        flow.in_port = port::ANY;
    }
    Ok(flow)
}

/// Values that OVS takes although they are wider than the field's bits.
fn fits_anyway(info: &FieldInfo, value: u128) -> bool {
    match info.field {
        // OpenFlow 1.0's "no VLAN".
        Field::DlVlan => value == 0xffff,
        Field::InPort => true,
        // nw_tos keeps its DSCP bits only.
        Field::NwTos => true,
        _ => false,
    }
}

/// Stores one field's value as OVS's `mf_set_flow_value` does.
fn set_flow_field(flow: &mut Flow, info: &FieldInfo, value: u128) {
    let (v8, v16) = (value as u8, value as u16);
    let vlan = &mut flow.vlans[0];
    match info.field {
        Field::DlVlan => {
            if v16 == 0xffff {
                vlan.tci = 0;
            } else {
                vlan.tci = (vlan.tci & !VLAN_VID_MASK) | VLAN_CFI | (v16 & VLAN_VID_MASK);
            }
        }
        Field::VlanVid => vlan.tci = (vlan.tci & !0x1fff) | (v16 & 0x1fff),
        Field::VlanPcp => {
            vlan.tci = (vlan.tci & !VLAN_PCP_MASK) | ((v16 & 7) << VLAN_PCP_SHIFT) | VLAN_CFI
        }
        Field::VlanTci => vlan.tci = v16,
        Field::NwTos => flow.nw_tos = (flow.nw_tos & 0x03) | (v8 & 0xfc),
        Field::ArpOp => flow.nw_proto = v8,
        field => field.set(flow, value),
    }
    // A tag given without a TPID is an 802.1Q tag.
    let vlan = &mut flow.vlans[0];
    if vlan.tpid == 0 && vlan.tci & VLAN_CFI != 0 {
        vlan.tpid = ETH_TYPE_VLAN_8021Q;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_complete_tcp_packet() {
        let f = parse_trace_flow(
            "in_port=1,dl_vlan=10,dl_vlan_pcp=3,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,\
             dl_type=0x0800,nw_src=192.0.2.1,nw_dst=10.1.1.1,nw_proto=6,nw_tos=32,nw_ttl=64,\
             tp_src=40000,tp_dst=22,tcp_flags=0x012",
        )
        .unwrap();
        assert_eq!(f.in_port, 1);
        assert_eq!(
            f.vlans[0],
            FlowVlan {
                tpid: 0x8100,
                tci: 0x700a
            }
        );
        assert_eq!(f.dl_src, [0, 0, 0, 0, 0, 1]);
        assert_eq!(
            (f.nw_src, f.nw_dst, f.nw_proto, f.nw_tos, f.nw_ttl),
            (0xc000_0201, 0x0a01_0101, 6, 32, 64)
        );
        assert_eq!((f.tp_src, f.tp_dst, f.tcp_flags), (40000, 22, 0x012));
    }

    #[test]
    fn shorthands_fragments_and_defaults() {
        let f = parse_trace_flow("udp6,ipv6_src=2001:db8::1,nw_frag=first,udp_dst=53").unwrap();
        assert_eq!(
            (f.dl_type, f.nw_proto, f.nw_frag, f.tp_dst),
            (ETH_TYPE_IPV6, 17, 1, 53)
        );
        assert_eq!(f.in_port, port::ANY);
        let f = parse_trace_flow(
            "icmp6,icmpv6_type=135,icmpv6_code=0,nd_target=::1,nd_sll=00:00:00:00:00:05",
        )
        .unwrap();
        assert_eq!((f.tp_src, f.nd_target[15], f.arp_sha[5]), (135, 1, 5));
    }

    #[test]
    fn errors_read_like_ovs() {
        let reason = |s: &str| parse_trace_flow(s).unwrap_err().reason;
        assert_eq!(
            reason("udp,tp_src=1"),
            "prerequisites not met for setting tp_src"
        );
        assert_eq!(
            reason("ip,nw_dst=10.0.0.0/8"),
            "bad value for nw_dst (10.0.0.0/8: wildcards not allowed here)"
        );
        assert_eq!(
            reason("tcp,tcp_flags=+syn"),
            "bad value for tcp_flags (+syn: wildcards not allowed here)"
        );
        assert_eq!(reason("ip,bogus=1"), "unknown field bogus");
        assert_eq!(
            reason("tcp,nw_proto=6"),
            "field nw_proto set multiple times"
        );
        assert_eq!(reason("ip,tcp"), "Ethernet type set multiple times");
        assert_eq!(
            reason("tcp,nw_frag=later,tp_dst=80"),
            "prerequisites not met for setting tp_dst"
        );
        assert_eq!(
            reason("ip,nw_frag=yes"),
            "bad value for nw_frag (yes: wildcards not allowed here)"
        );
        let e = parse_trace_flow("arp,tp_dst=80").unwrap_err();
        assert_eq!(
            e.to_string(),
            "arp,tp_dst=80: prerequisites not met for setting tp_dst"
        );
    }
}
