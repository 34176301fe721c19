//! What the datapath needs from packet parsing: a frame's flow key, and
//! datapath actions applied to a frame.
//!
//! Interim implementation covering Ethernet, ARP, IPv4 and its TCP, UDP and
//! ICMP ports, and Ethernet rewrites; it gives way to `messages::extract`
//! and `messages::execute` when those land.

use messages::flow::*;
use messages::odp::{OdpAction, SetHeader};

/// The datapath flow key of `frame` arriving on `in_port`.
pub fn extract_key(frame: &[u8], in_port: u32) -> Flow {
    let mut f = Flow {
        in_port,
        ..Flow::default()
    };
    let Some(eth) = frame.get(..14) else {
        return f;
    };
    f.dl_dst.copy_from_slice(&eth[0..6]);
    f.dl_src.copy_from_slice(&eth[6..12]);
    f.dl_type = u16::from_be_bytes([eth[12], eth[13]]);
    let l3 = &frame[14..];
    match f.dl_type {
        ETH_TYPE_ARP => {
            if let Some(a) = l3.get(..28) {
                f.nw_proto = a[7];
                f.arp_sha.copy_from_slice(&a[8..14]);
                f.nw_src = u32::from_be_bytes([a[14], a[15], a[16], a[17]]);
                f.arp_tha.copy_from_slice(&a[18..24]);
                f.nw_dst = u32::from_be_bytes([a[24], a[25], a[26], a[27]]);
            }
        }
        ETH_TYPE_IP => {
            let Some(ip) = l3.get(..20) else { return f };
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            f.nw_tos = ip[1];
            f.nw_ttl = ip[8];
            f.nw_proto = ip[9];
            f.nw_src = u32::from_be_bytes([ip[12], ip[13], ip[14], ip[15]]);
            f.nw_dst = u32::from_be_bytes([ip[16], ip[17], ip[18], ip[19]]);
            let frag = u16::from_be_bytes([ip[6], ip[7]]);
            if frag & 0x3fff != 0 {
                f.nw_frag = FLOW_NW_FRAG_ANY;
                if frag & 0x1fff != 0 {
                    f.nw_frag |= FLOW_NW_FRAG_LATER;
                    return f;
                }
            }
            let l4 = l3.get(ihl..).unwrap_or(&[]);
            match f.nw_proto {
                IPPROTO_TCP => {
                    if let Some(t) = l4.get(..14) {
                        f.tp_src = u16::from_be_bytes([t[0], t[1]]);
                        f.tp_dst = u16::from_be_bytes([t[2], t[3]]);
                        f.tcp_flags = u16::from_be_bytes([t[12], t[13]]) & 0x0fff;
                    }
                }
                IPPROTO_UDP => {
                    if let Some(u) = l4.get(..4) {
                        f.tp_src = u16::from_be_bytes([u[0], u[1]]);
                        f.tp_dst = u16::from_be_bytes([u[2], u[3]]);
                    }
                }
                IPPROTO_ICMP => {
                    if let Some(c) = l4.get(..2) {
                        f.tp_src = c[0].into();
                        f.tp_dst = c[1].into();
                    }
                }
                _ => {}
            }
        }
        _ => {}
    }
    f
}

/// Why an action could not be applied to a frame.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ActionError(String);

/// Applies one non-output action to `frame`, keeping `key` in step.
pub fn apply(frame: &mut [u8], key: &mut Flow, action: &OdpAction) -> Result<(), ActionError> {
    match action {
        OdpAction::SetMasked(SetHeader::Ethernet { key: k, mask: m }) => {
            let eth = frame
                .get_mut(..12)
                .ok_or_else(|| ActionError("frame shorter than an Ethernet header".into()))?;
            for i in 0..6 {
                eth[i] = (eth[i] & !m.dst[i]) | (k.dst[i] & m.dst[i]);
                eth[6 + i] = (eth[6 + i] & !m.src[i]) | (k.src[i] & m.src[i]);
            }
            key.dl_dst.copy_from_slice(&eth[0..6]);
            key.dl_src.copy_from_slice(&eth[6..12]);
            Ok(())
        }
        other => Err(ActionError(format!(
            "action {other:?} is not supported yet"
        ))),
    }
}
