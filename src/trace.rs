//! `upcalld trace`: what OVS's `ofproto/trace` prints, for one flow or for
//! a file of flows (the oracle's TSV format).

use messages::format::megaflow::format_megaflow;
use messages::format::odp_actions::format_odp_actions;
use messages::parse::flow::parse_trace_flow;

use std::collections::BTreeSet;
use std::sync::Arc;

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

/// Traces one flow in `ofproto/trace` syntax on the switch `cfg` describes.
/// A flow OVS would reject gets OVS's message, after
/// `Bad openflow flow syntax: FLOW: `.
pub fn trace(tables: &Tables, flow_text: &str, cfg: &XlateConfig) -> Result<TraceResult, String> {
    let flow = parse_trace_flow(flow_text)
        .map_err(|e| format!("Bad openflow flow syntax: {flow_text}: {e}"))?;
    let out = xlate(tables, &flow, cfg);
    Ok(TraceResult {
        actions: format_odp_actions(&out.actions),
        megaflow: format_megaflow(&flow, &out.wc),
    })
}

/// The switch `upcalld trace` models: a bridge on Open vSwitch's dummy
/// datapath, whose own port (`LOCAL`) is datapath port 100, with the ports
/// `ports` (all port numbers when `None`).
pub fn dummy_bridge(ports: Option<BTreeSet<u32>>) -> XlateConfig {
    const LOCAL: u32 = 100;
    XlateConfig {
        local_port: LOCAL,
        ports: ports.map(|mut p| {
            p.insert(LOCAL);
            Arc::new(p)
        }),
        ..XlateConfig::default()
    }
}

/// Parses a port list such as `1-8,12`.
pub fn parse_port_list(s: &str) -> Result<BTreeSet<u32>, String> {
    let mut ports = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("bad port list {s:?}: {t:?} is not a port number"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 65535 {
                    return Err(format!("bad port list {s:?}: range {part:?}"));
                }
                ports.extend(a..=b);
            }
            None => {
                ports.insert(num(part)?);
            }
        }
    }
    Ok(ports)
}

/// One TSV line per flow: `flow<TAB>actions<TAB>megaflow`, or
/// `flow<TAB>ERROR<TAB><TAB>message` for a flow OVS would reject.
pub fn trace_lines(tables: &Tables, flows: &str, cfg: &XlateConfig) -> String {
    let mut out = String::new();
    for line in flows.lines() {
        let flow = line.trim();
        if flow.is_empty() || flow.starts_with('#') {
            continue;
        }
        match trace(tables, flow, cfg) {
            Ok(r) => {
                out.push_str(&format!("{flow}\t{}\t{}\n", r.actions, r.megaflow));
            }
            Err(e) => out.push_str(&format!("{flow}\tERROR\t\t{e}\n")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_lists() {
        assert_eq!(
            parse_port_list("1-3,8")
                .unwrap()
                .into_iter()
                .collect::<Vec<_>>(),
            vec![1, 2, 3, 8]
        );
        assert!(parse_port_list("1-x").is_err());
        assert!(parse_port_list("5-2").is_err());
    }

    #[test]
    fn outputs_to_missing_ports_are_dropped() {
        let rules =
            messages::parse::rules::parse_rules("priority=1,actions=output:2,output:9,LOCAL")
                .unwrap();
        let tables = Tables::from_rules(rules);
        let flow = "in_port=1,dl_type=0x88cc";
        let all = trace(&tables, flow, &dummy_bridge(None)).unwrap();
        assert_eq!(all.actions, "2,9,100");
        let some = dummy_bridge(Some(parse_port_list("1-8").unwrap()));
        assert_eq!(trace(&tables, flow, &some).unwrap().actions, "2,100");
    }
}
