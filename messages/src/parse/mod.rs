//! Text syntaxes: OpenFlow rules (`ovs-ofctl add-flows`) and flows (`ofproto/trace`).

pub mod flow;
mod learn;
pub mod rules;
pub(crate) mod syntax;
