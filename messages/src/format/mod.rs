//! Printing in OVS formats.

pub mod megaflow;
pub mod odp_actions;
pub mod odp_flow;
