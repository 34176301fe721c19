//! The Linux openvswitch module's generic netlink families
//! (`ovs_datapath`, `ovs_vport`, `ovs_flow`, `ovs_packet`) as typed
//! messages, without I/O.
//!
//! - [`families`]: [`OvsMessage`] (`ovs_header` + attributes) for each
//!   family, a payload of `netlink_packet_generic::GenlMessage`.
//! - [`key`]: flow key/mask attributes; [`flow_key`]: `Flow` ⇄ attributes
//!   with the kernel's nesting and prerequisite rules.
//! - [`actions`]: action attributes ⇄ [`crate::odp::OdpAction`].
//! - [`consts`]: every number used, from the uapi `linux/openvswitch.h`.
//! - [`cttimeout`]: nfnetlink's conntrack timeout policies, for zones'
//!   timeout policies on the kernel datapath.
//! - [`rtnl`]: the host's IPv4 routes and neighbours (rtnetlink dumps
//!   and notifications), for native tunnelling's underlay.
//! - [`tunnel_link`]: tunnel devices made over rtnetlink (OVS's
//!   `dpif-netlink-rtnl`), attached to the kernel datapath as netdevs.
//! - [`writer`]: requests written straight into a send buffer (the
//!   handlers' puts and executes), the same bytes as the typed form.
//!
//! Decoding never trusts its input: a bad length, an unknown nested shape
//! or a value the `Flow` cannot hold is a `DecodeError` naming the
//! attribute, never a panic.

pub mod actions;
pub mod consts;
pub mod cttimeout;
pub mod families;
pub mod flow_key;
pub mod key;
pub mod meter;
mod nla;
pub mod rtnl;
pub mod tunnel_link;
pub mod writer;

pub use actions::{actions_from_attrs, actions_to_attrs, ActionAttr};
pub use families::{
    parse_upcall, tunnel_kind_of_vport_type, tunnel_vport_options, tunnel_vport_type,
    tunnel_vport_udp_port, tunnel_vport_vxlan_gbp, DpAttr, DpMessage, FlowAttr, FlowMessage,
    OvsAttr, OvsDpStats, OvsMessage, PacketAttr, PacketMessage, VportAttr, VportMessage,
};
pub use flow_key::{
    installed_megaflow_attrs, kernel_mask, key_from_attrs, key_to_attrs, mask_from_attrs,
    megaflow_to_attrs, metadata_to_attrs,
};
pub use key::{KeyAttr, TunnelAttr};
pub use netlink_packet_core::DecodeError;

#[cfg(test)]
mod tests;
