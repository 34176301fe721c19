//! Requests written straight into a send buffer: the hot path's encoder.
//!
//! Building a request as typed values (`NetlinkMessage` of a `GenlMessage`
//! of an [`OvsMessage`](super::OvsMessage)) and serializing it works out
//! each nested attribute's length once per level above it, and allocates
//! each level: measured natively, a flow put and an execute of one upcall
//! cost about 11 µs that way, ten times the upcall's translation. Here the
//! headers are written in place and their lengths patched afterwards, so a
//! handler appends each of its ops to the batch's buffer in one pass, with
//! the same bytes the typed form serializes to (the tests check it).

use netlink_packet_core::{Emitable, Nla, NLM_F_ACK, NLM_F_REQUEST};

use super::key::KeyAttr;

/// Length of `struct nlmsghdr`, `struct genlmsghdr`, `struct ovs_header`
/// and `struct nlattr`.
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;
const OVS_HEADER_LEN: usize = 4;
const NLA_HDRLEN: usize = 4;

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One request being appended to a buffer: `nlmsghdr` (sequence 0: the
/// sender numbers the messages of a batch), `genlmsghdr`, `ovs_header`,
/// then attributes. [`MessageWriter::finish`] sets its length.
pub struct MessageWriter<'a> {
    out: &'a mut Vec<u8>,
    start: usize,
}

/// Who a request is for and what it asks.
#[derive(Clone, Copy, Debug)]
pub struct RequestHeader {
    /// The generic netlink family's resolved id.
    pub family_id: u16,
    /// `NLM_F_*` flags besides `NLM_F_REQUEST | NLM_F_ACK`, which are
    /// always set (every request gets exactly one answer).
    pub flags: u16,
    pub cmd: u8,
    /// The family's version (`OvsAttr::VERSION`).
    pub version: u8,
    pub dp_ifindex: i32,
}

impl<'a> MessageWriter<'a> {
    /// Starts a request at the end of `out`.
    pub fn begin(out: &'a mut Vec<u8>, h: RequestHeader) -> Self {
        let start = out.len();
        let flags = NLM_F_REQUEST | NLM_F_ACK | h.flags;
        out.extend_from_slice(&0u32.to_ne_bytes()); // length, set by finish
        out.extend_from_slice(&h.family_id.to_ne_bytes());
        out.extend_from_slice(&flags.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes()); // sequence
        out.extend_from_slice(&0u32.to_ne_bytes()); // port id
        out.extend_from_slice(&[h.cmd, h.version, 0, 0]);
        out.extend_from_slice(&h.dp_ifindex.to_ne_bytes());
        debug_assert_eq!(
            out.len() - start,
            NLMSG_HDRLEN + GENL_HDRLEN + OVS_HEADER_LEN
        );
        MessageWriter { out, start }
    }

    /// An attribute with `value` as its bytes.
    pub fn attr(&mut self, kind: u16, value: &[u8]) -> &mut Self {
        self.header(kind, value.len());
        self.out.extend_from_slice(value);
        self.pad();
        self
    }

    /// An attribute holding a list of attributes.
    pub fn nested<T: Nla>(&mut self, kind: u16, list: &[T]) -> &mut Self {
        let len = list.buffer_len();
        self.header(kind, len);
        let at = self.out.len();
        self.out.resize(at + len, 0);
        list.emit(&mut self.out[at..]);
        self
    }

    /// An attribute holding flow key attributes (a key or a mask), each
    /// written in place, nested ones too. The same bytes as
    /// [`MessageWriter::nested`], which works out each attribute's length
    /// several times over (a handler writes some twenty a put).
    pub fn key_attrs(&mut self, kind: u16, attrs: &[KeyAttr]) -> &mut Self {
        let at = open_nested(self.out, kind);
        for a in attrs {
            write_key_attr(self.out, a);
        }
        close_nested(self.out, at);
        self
    }

    /// Ends the request: its length goes into its header.
    pub fn finish(self) {
        let len = (self.out.len() - self.start) as u32;
        self.out[self.start..self.start + 4].copy_from_slice(&len.to_ne_bytes());
    }

    fn header(&mut self, kind: u16, value_len: usize) {
        let len = (NLA_HDRLEN + value_len) as u16;
        self.out.extend_from_slice(&len.to_ne_bytes());
        self.out.extend_from_slice(&kind.to_ne_bytes());
    }

    fn pad(&mut self) {
        let padded = self.start + align4(self.out.len() - self.start);
        self.out.resize(padded, 0);
    }
}

/// Starts a nested attribute at the end of `out` (an aligned offset);
/// returns where, for [`close_nested`].
fn open_nested(out: &mut Vec<u8>, kind: u16) -> usize {
    let at = out.len();
    out.extend_from_slice(&0u16.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    at
}

/// Sets the length of the nested attribute started at `at`.
fn close_nested(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u16;
    out[at..at + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Appends one key attribute, padded, at an aligned end of `out`.
fn write_key_attr(out: &mut Vec<u8>, a: &KeyAttr) {
    if let KeyAttr::Encap(inner) = a {
        let at = open_nested(out, a.kind());
        for i in inner {
            write_key_attr(out, i);
        }
        close_nested(out, at);
        return;
    }
    let len = a.payload_len();
    out.extend_from_slice(&((NLA_HDRLEN + len) as u16).to_ne_bytes());
    out.extend_from_slice(&a.kind().to_ne_bytes());
    let at = out.len();
    out.resize(at + align4(len), 0);
    a.emit_payload(&mut out[at..at + len]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dpif::PacketMetadata;
    use crate::flow::{Flow, ETH_TYPE_IP};
    use crate::netlink::consts::*;
    use crate::netlink::{
        actions_to_attrs, megaflow_to_attrs, metadata_to_attrs, FlowAttr, FlowMessage, OvsAttr,
        PacketAttr, PacketMessage,
    };
    use crate::odp::OdpAction;
    use netlink_packet_core::NLM_F_CREATE;

    /// The typed form, serialized.
    fn typed<A: OvsAttr>(
        family_id: u16,
        msg: crate::netlink::OvsMessage<A>,
        flags: u16,
    ) -> Vec<u8> {
        msg.into_request(family_id, flags)
    }

    fn key() -> Flow {
        Flow {
            in_port: 11,
            dl_type: ETH_TYPE_IP,
            nw_src: 0xc0a8_0001,
            nw_dst: 0x0a00_0001,
            nw_proto: 6,
            nw_ttl: 64,
            tp_src: 1024,
            tp_dst: 80,
            ..Flow::default()
        }
    }

    #[test]
    fn key_attributes_written_in_place_are_the_bytes_of_the_generic_writer() {
        use crate::flow::{FlowVlan, ETH_TYPE_VLAN_8021AD, ETH_TYPE_VLAN_8021Q, VLAN_CFI};
        let mut two_tags = key();
        two_tags.vlans[0] = FlowVlan {
            tpid: ETH_TYPE_VLAN_8021AD,
            tci: VLAN_CFI | 10,
        };
        two_tags.vlans[1] = FlowVlan {
            tpid: ETH_TYPE_VLAN_8021Q,
            tci: VLAN_CFI | 20,
        };
        let mask = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_dst: 0xffff_ff00,
            nw_proto: u8::MAX,
            tp_dst: u16::MAX,
            ..Flow::default()
        };
        for k in [key(), two_tags] {
            let (ka, ma) = megaflow_to_attrs(&k, &mask);
            let header = RequestHeader {
                family_id: 0x1d,
                flags: 0,
                cmd: CMD_NEW,
                version: FlowAttr::VERSION,
                dp_ifindex: 7,
            };
            let (mut generic, mut in_place) = (vec![0xaa; 4], vec![0xaa; 4]);
            let mut w = MessageWriter::begin(&mut generic, header);
            w.nested(OVS_FLOW_ATTR_KEY, &ka)
                .nested(OVS_FLOW_ATTR_MASK, &ma);
            w.finish();
            let mut w = MessageWriter::begin(&mut in_place, header);
            w.key_attrs(OVS_FLOW_ATTR_KEY, &ka)
                .key_attrs(OVS_FLOW_ATTR_MASK, &ma);
            w.finish();
            assert_eq!(in_place, generic, "{k:?}");
        }
    }

    #[test]
    fn a_put_and_an_execute_are_the_bytes_of_their_typed_forms() {
        let mask = Flow {
            in_port: u32::MAX,
            dl_type: u16::MAX,
            nw_dst: u32::MAX,
            nw_proto: u8::MAX,
            tp_dst: u16::MAX,
            ..Flow::default()
        };
        let actions = vec![OdpAction::Output(2), OdpAction::Output(3)];
        let (k, m) = megaflow_to_attrs(&key(), &mask);
        let ufid = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210u128;
        let flags = OVS_UFID_F_OMIT_KEY | OVS_UFID_F_OMIT_MASK | OVS_UFID_F_OMIT_ACTIONS;
        let want = typed(
            0x1d,
            FlowMessage::new(
                CMD_NEW,
                7,
                vec![
                    FlowAttr::Key(k.clone()),
                    FlowAttr::Mask(m.clone()),
                    FlowAttr::Actions(actions_to_attrs(&actions)),
                    FlowAttr::Ufid(ufid),
                    FlowAttr::UfidFlags(flags),
                ],
            ),
            NLM_F_CREATE,
        );
        // Written after something already in the buffer.
        let mut out = vec![0xaa; 8];
        let mut w = MessageWriter::begin(
            &mut out,
            RequestHeader {
                family_id: 0x1d,
                flags: NLM_F_CREATE,
                cmd: CMD_NEW,
                version: FlowAttr::VERSION,
                dp_ifindex: 7,
            },
        );
        w.nested(OVS_FLOW_ATTR_KEY, &k)
            .nested(OVS_FLOW_ATTR_MASK, &m)
            .nested(OVS_FLOW_ATTR_ACTIONS, &actions_to_attrs(&actions))
            .attr(OVS_FLOW_ATTR_UFID, &ufid.to_ne_bytes())
            .attr(OVS_FLOW_ATTR_UFID_FLAGS, &flags.to_ne_bytes());
        w.finish();
        assert_eq!(out[..8], [0xaa; 8]);
        assert_eq!(out[8..], want[..]);

        // A packet whose length is not a multiple of 4: padded.
        let packet: Vec<u8> = (0..61).collect();
        let md = metadata_to_attrs(&PacketMetadata::of(&key()));
        let want = typed(
            0x1e,
            PacketMessage::new(
                OVS_PACKET_CMD_EXECUTE,
                7,
                vec![
                    PacketAttr::Packet(packet.clone()),
                    PacketAttr::Key(md.clone()),
                    PacketAttr::Actions(actions_to_attrs(&actions)),
                ],
            ),
            0,
        );
        let mut out = Vec::new();
        let mut w = MessageWriter::begin(
            &mut out,
            RequestHeader {
                family_id: 0x1e,
                flags: 0,
                cmd: OVS_PACKET_CMD_EXECUTE,
                version: PacketAttr::VERSION,
                dp_ifindex: 7,
            },
        );
        w.attr(OVS_PACKET_ATTR_PACKET, &packet)
            .nested(OVS_PACKET_ATTR_KEY, &md)
            .nested(OVS_PACKET_ATTR_ACTIONS, &actions_to_attrs(&actions));
        w.finish();
        assert_eq!(out, want);
    }
}
