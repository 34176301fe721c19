//! Text syntaxes: OpenFlow rules (`ovs-ofctl add-flows`) and flows (`ofproto/trace`).
