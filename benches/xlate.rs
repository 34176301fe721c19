//! Translations per second over the oracle's rule sets: every case of
//! ../shared/oracle, each flow of the case translated (lookup with
//! wildcard tracking through all tables, actions, megaflow mask) in a loop.
//!
//! Run: `cargo bench --bench xlate`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use messages::flow::Flow;
use messages::parse::flow::parse_trace_flow;
use messages::parse::rules::parse_rules;

fn main() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/oracle");
    if !corpus.join("cases.tsv").exists() {
        println!("xlate benchmark skipped: {} not found", corpus.display());
        return;
    }
    let cfg = XlateConfig::default();
    println!("xlate benchmark (1 thread, the oracle's rule sets)");
    for tier in ["tier1", "tier2", "tier3"] {
        let mut cases: Vec<(Tables, Vec<Flow>)> = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(corpus.join(tier))
            .expect("tier directory")
            .map(|e| e.expect("entry").path())
            .collect();
        dirs.sort();
        for dir in dirs {
            let rules = std::fs::read_to_string(dir.join("rules.of13")).expect("rules");
            let tables = Tables::from_rules(parse_rules(&rules).expect("rules parse"));
            let flows = std::fs::read_to_string(dir.join("flows.txt")).expect("flows");
            let flows = flows
                .lines()
                .filter_map(|l| parse_trace_flow(l).ok())
                .collect();
            cases.push((tables, flows));
        }
        let n_flows: usize = cases.iter().map(|(_, f)| f.len()).sum();
        let mut done = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            for (tables, flows) in &cases {
                for f in flows {
                    black_box(xlate(tables, f, &cfg));
                }
            }
            done += n_flows as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{tier}: {} cases, {n_flows} flows: {:.2} M xlate/s ({:.0} ns per translation)",
            cases.len(),
            done as f64 / secs / 1e6,
            secs * 1e9 / done as f64
        );
    }
}
