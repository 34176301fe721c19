//! Packets for the controllers: what a `controller` action sent up, on
//! its way from the handlers to the OpenFlow connections that want it.
//!
//! Both datapaths deliver a `controller` action as a `userspace` action
//! upcall whose userdata is a [`ControllerCookie`] (OVS's): the first packet of
//! a flow as well as later ones (the handler executes the first packet's
//! actions like any other, and that execution upcalls it), so there is one
//! path for every packet-in. A handler hands the packet to
//! [`PacketIns::deliver`] (a [`Fanout`]), which copies a reference into the
//! bounded queue of each subscribed connection; a full queue drops the
//! packet for that connection and counts it (OVS's per-controller
//! packet-in queue).

use std::sync::Arc;

use messages::flow::Flow;
use messages::odp::ControllerCookie;

use crate::fanout::Fanout;
use crate::recirc::FrozenState;

/// A packet for the controllers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerPacket {
    /// The `userspace` action's cookie: reason, controller id, max_len,
    /// rule cookie.
    pub cookie: ControllerCookie,
    /// The table of the rule whose action sent it.
    pub table: u8,
    /// The datapath's key for the packet as the actions before the
    /// `controller` action left it (its metadata: in_port, tunnel, ct),
    /// with the registers and `metadata` the translation had then, from
    /// the frozen state.
    pub key: Flow,
    /// The `controller` action's userdata (NXT_PACKET_IN2's).
    pub userdata: Vec<u8>,
    /// The whole frame; each connection truncates it to `max_len`.
    pub packet: Vec<u8>,
    /// A `controller(pause)`'s frozen pipeline, which the packet-in hands
    /// to the controller as its continuation.
    pub continuation: Option<Arc<FrozenState>>,
    /// The datapath port the packet came in on.
    pub odp_port: u32,
}

/// The connections that want packet-ins, each with a bounded queue (a
/// full one drops and counts).
pub type PacketIns = Fanout<ControllerPacket>;
/// One connection's queue of packet-ins.
pub type Subscription = crate::fanout::Subscription<ControllerPacket>;
