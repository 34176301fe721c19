//! The megaflow as `ofproto/trace` prints it after `Megaflow: ` (OVS's
//! `match_format`): the flow under its wildcards, fields in OVS's order,
//! each only when some bit of it is matched.

use super::ofp_rule::format_match_fields;
use crate::flow::{Flow, FlowWildcards};

/// Formats `flow & wc` as OVS's `match_format` does.
pub fn format_megaflow(flow: &Flow, wc: &FlowWildcards) -> String {
    format_match_fields(&flow.masked(wc), wc, None, true)
}
