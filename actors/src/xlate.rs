//! Translation of OpenFlow actions into datapath actions and a megaflow mask.
//!
//! API contract (implementation in progress on main):
//! `xlate(&Tables, &Flow) -> XlateOutput { actions: OdpActions,
//! wc: FlowWildcards, rules: Vec<u64> /* ids of the rules that matched */ }`
//! — a pure function; the megaflow is `(flow & wc, wc)`.
