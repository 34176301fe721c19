use actors::dpif::{key_ufid, megaflow_ufid};
use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use messages::extract::flow_extract;
use messages::flow::datapath_mask;
use messages::Flow;
use std::time::Instant;
use upcalld::dpif_netdev::{read_replay_file, FlowTable};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let text = std::fs::read_to_string("../shared/bench/setup-rate.rules").unwrap();
    let rules = upcalld::daemon::parse_rules(&text, "x").unwrap();
    let tables = Tables::from_rules(rules);
    let frames = read_replay_file(std::path::Path::new(&std::env::args().nth(1).unwrap())).unwrap();
    let cfg = XlateConfig::default();
    for round in 0..6 {
        let t0 = Instant::now();
        let keys: Vec<Flow> = frames
            .iter()
            .map(|f| {
                flow_extract(
                    &f.frame,
                    &Flow {
                        in_port: f.in_port.unwrap_or(0),
                        ..Flow::default()
                    },
                )
            })
            .collect();
        let t1 = Instant::now();
        let ufids: Vec<u128> = keys.iter().map(key_ufid).collect();
        let t2 = Instant::now();
        let outs: Vec<_> = keys.iter().map(|k| xlate(&tables, k, &cfg)).collect();
        let t3 = Instant::now();
        let puts: Vec<_> = keys
            .iter()
            .zip(&outs)
            .map(|(k, o)| {
                let m = datapath_mask(k, &o.wc);
                (megaflow_ufid(k, &m), k.masked(&m), m, o.actions.clone())
            })
            .collect();
        let t4 = Instant::now();
        let mut ft = FlowTable::new(1_000_000);
        for (u, k, m, a) in puts {
            let _ = ft.create(u, &k, &m, a);
        }
        let t5 = Instant::now();
        let mut n = 0;
        for k in &keys {
            if ft.lookup(k).is_some() {
                n += 1;
            }
        }
        let t6 = Instant::now();
        let per = |a: Instant, b: Instant| (b - a).as_nanos() as f64 / keys.len() as f64;
        println!("round {round}: extract {:.0} ns, key_ufid {:.0}, xlate {:.0}, put-build {:.0}, create {:.0}, lookup {:.0} ({} hits, {} masks) {}", per(t0,t1), per(t1,t2), per(t2,t3), per(t3,t4), per(t4,t5), per(t5,t6), n, ft.n_masks(), ufids.len());
    }
}
