//! `upcalld trace`: what OVS's `ofproto/trace` prints, for one flow or for
//! a file of flows (the oracle's TSV format).

use messages::format::megaflow::format_megaflow;
use messages::format::odp_actions::format_odp_actions;
use messages::parse::flow::parse_trace_flow;

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};

/// The two lines `ofproto/trace` ends with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceResult {
    /// The text after `Datapath actions: `.
    pub actions: String,
    /// The text after `Megaflow: `.
    pub megaflow: String,
}

/// Traces one flow in `ofproto/trace` syntax. A flow OVS would reject gets
/// OVS's message, after `Bad openflow flow syntax: FLOW: `.
pub fn trace(tables: &Tables, flow_text: &str) -> Result<TraceResult, String> {
    let flow = parse_trace_flow(flow_text)
        .map_err(|e| format!("Bad openflow flow syntax: {flow_text}: {e}"))?;
    let out = xlate(tables, &flow, &trace_config());
    Ok(TraceResult {
        actions: format_odp_actions(&out.actions),
        megaflow: format_megaflow(&flow, &out.wc),
    })
}

/// The switch `trace` models: Open vSwitch's dummy datapath, whose bridge
/// port (`LOCAL`) is datapath port 100; every other port number exists.
fn trace_config() -> XlateConfig {
    XlateConfig {
        local_port: 100,
        ..XlateConfig::default()
    }
}

/// One TSV line per flow: `flow<TAB>actions<TAB>megaflow`, or
/// `flow<TAB>ERROR<TAB><TAB>message` for a flow OVS would reject.
pub fn trace_lines(tables: &Tables, flows: &str) -> String {
    let mut out = String::new();
    for line in flows.lines() {
        let flow = line.trim();
        if flow.is_empty() || flow.starts_with('#') {
            continue;
        }
        match trace(tables, flow) {
            Ok(r) => {
                out.push_str(&format!("{flow}\t{}\t{}\n", r.actions, r.megaflow));
            }
            Err(e) => out.push_str(&format!("{flow}\tERROR\t\t{e}\n")),
        }
    }
    out
}
