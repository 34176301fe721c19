//! Packets for the controllers: what a `controller` action sent up, on
//! its way from the handlers to the OpenFlow connections that want it.
//!
//! Both datapaths deliver a `controller` action as a `userspace` action
//! upcall whose userdata is a [`ControllerUserdata`]: the first packet of
//! a flow as well as later ones (the handler executes the first packet's
//! actions like any other, and that execution upcalls it), so there is one
//! path for every packet-in. A handler hands the packet to
//! [`PacketIns::deliver`] (a [`Fanout`]), which copies a reference into the
//! bounded queue of each subscribed connection; a full queue drops the
//! packet for that connection and counts it (OVS's per-controller
//! packet-in queue).

use messages::flow::Flow;

use crate::fanout::Fanout;

/// Why the controller gets the packet (OpenFlow's `ofp_packet_in_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControllerReason {
    /// A table-miss rule (priority 0, matching everything) sent it.
    NoMatch = 0,
    /// Any other `controller` action.
    Action = 1,
}

/// What translation puts in the userdata of the `userspace` action that
/// sends a packet to the controller: the bytes `b"ctrl"`, then `max_len`
/// (big endian), the reason, the table and the rule's cookie (big endian).
/// The datapath hands it back with the packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ControllerUserdata {
    pub max_len: u16,
    pub reason: ControllerReason,
    pub table: u8,
    pub cookie: u64,
}

const MAGIC: &[u8; 4] = b"ctrl";
const USERDATA_LEN: usize = 16;

impl ControllerUserdata {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(USERDATA_LEN);
        v.extend_from_slice(MAGIC);
        v.extend_from_slice(&self.max_len.to_be_bytes());
        v.push(self.reason as u8);
        v.push(self.table);
        v.extend_from_slice(&self.cookie.to_be_bytes());
        v
    }

    /// None for userdata that is not a controller action's.
    pub fn decode(b: &[u8]) -> Option<ControllerUserdata> {
        if b.len() != USERDATA_LEN || &b[..4] != MAGIC {
            return None;
        }
        let reason = match b[6] {
            0 => ControllerReason::NoMatch,
            1 => ControllerReason::Action,
            _ => return None,
        };
        Some(ControllerUserdata {
            max_len: u16::from_be_bytes([b[4], b[5]]),
            reason,
            table: b[7],
            cookie: u64::from_be_bytes(b[8..16].try_into().ok()?),
        })
    }
}

/// A packet for the controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerPacket {
    pub userdata: ControllerUserdata,
    /// The datapath's key for the packet as the actions before the
    /// `controller` action left it (its metadata: in_port, tunnel, ct).
    pub key: Flow,
    /// The whole frame; each connection truncates it to `max_len`.
    pub packet: Vec<u8>,
}

/// The connections that want packet-ins, each with a bounded queue (a
/// full one drops and counts).
pub type PacketIns = Fanout<ControllerPacket>;
/// One connection's queue of packet-ins.
pub type Subscription = crate::fanout::Subscription<ControllerPacket>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn userdata_round_trips_and_foreign_userdata_is_refused() {
        let u = ControllerUserdata {
            max_len: 128,
            reason: ControllerReason::NoMatch,
            table: 3,
            cookie: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(ControllerUserdata::decode(&u.encode()), Some(u));
        assert_eq!(ControllerUserdata::decode(b"ctrl\xff\xff"), None);
        let mut bad = u.encode();
        bad[6] = 9;
        assert_eq!(ControllerUserdata::decode(&bad), None);
        assert_eq!(ControllerUserdata::decode(&[0u8; 16]), None);
    }
}
