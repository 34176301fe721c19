//! Conjunctive matches and `learn`, in process (one thread):
//!
//! - classifier lookups with wildcard tracking in a table of 10 000
//!   conjunctive flows (5 000 `nw_src` clauses × 5 000 `nw_dst` clauses of
//!   one conjunction, its `conj_id` rule, a default), for packets that
//!   complete the conjunction, match one dimension only, or none; next to
//!   the same lookups in a table of 10 000 ordinary `nw_src` rules;
//! - learn actions per second: translations that run the advanced
//!   tutorial's MAC learning, and the rule-table's side of it (each
//!   learned rule added as a new version, or refreshed).
//!
//! OVS's side, on the same rule sets through its whole upcall path, is
//! `tools/conj_learn_sitting.py`. Run: `cargo bench --bench conjunction`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::classifier::{Classifier, RuleEntry};
use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use messages::field::Field;
use messages::flow::{Flow, ETH_TYPE_IP};
use messages::ofp::{Instructions, Match, OfAction, Rule};
use messages::parse::rules::parse_rule;

const N_CLAUSES: u32 = 5_000;

fn src(i: u32) -> u32 {
    0xc0a8_0000 + i
}

fn dst(i: u32) -> u32 {
    0x0a00_0000 + (i << 4)
}

fn entry(id: u64, priority: u16, fields: &[(Field, u128)], apply: Vec<OfAction>) -> Arc<RuleEntry> {
    let mut m = Match::catchall();
    for &(f, v) in fields {
        m.set_field(f, v);
    }
    Arc::new(RuleEntry {
        id,
        rule: Rule {
            table: 0,
            priority,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            matches: m,
            instructions: Instructions {
                apply,
                ..Instructions::default()
            },
        },
        added: Instant::now(),
    })
}

fn conjunctive_table() -> Classifier {
    let mut c = Classifier::new();
    let ip = (Field::EthType, u128::from(ETH_TYPE_IP));
    let conj = |clause| {
        vec![OfAction::Conjunction {
            id: 7,
            clause,
            n_clauses: 2,
        }]
    };
    for i in 0..N_CLAUSES {
        let id = u64::from(i) * 2;
        c.insert(entry(
            id,
            100,
            &[ip, (Field::Ipv4Src, src(i).into())],
            conj(0),
        ));
        c.insert(entry(
            id + 1,
            100,
            &[ip, (Field::Ipv4Dst, dst(i).into())],
            conj(1),
        ));
    }
    let out = vec![OfAction::Output {
        port: 2,
        max_len: 0,
    }];
    c.insert(entry(1 << 40, 100, &[ip, (Field::ConjId, 7)], out.clone()));
    c.insert(entry((1 << 40) + 1, 0, &[], out));
    c
}

fn plain_table() -> Classifier {
    let mut c = Classifier::new();
    let ip = (Field::EthType, u128::from(ETH_TYPE_IP));
    for i in 0..2 * N_CLAUSES {
        let out = vec![OfAction::Output {
            port: 2,
            max_len: 0,
        }];
        c.insert(entry(
            i.into(),
            100,
            &[ip, (Field::Ipv4Src, src(i).into())],
            out,
        ));
    }
    c
}

fn packet(s: u32, d: u32) -> Flow {
    Flow {
        in_port: 1,
        dl_type: ETH_TYPE_IP,
        nw_proto: 6,
        nw_src: s,
        nw_dst: d,
        tp_src: 1000,
        tp_dst: 80,
        ..Flow::default()
    }
}

fn rate(name: &str, mut f: impl FnMut() -> u64) {
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1000) {
        n += f();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<58} {:>8.3} M/s  {:>7.0} ns each",
        n as f64 / secs / 1e6,
        secs * 1e9 / n as f64
    );
}

fn lookups(name: &str, c: &Classifier, flows: &[Flow]) {
    rate(name, || {
        for f in flows {
            let mut wc = Flow::default();
            black_box(c.lookup(f, &mut wc));
            black_box(&wc);
        }
        flows.len() as u64
    });
}

fn main() {
    let t = Instant::now();
    let conj = conjunctive_table();
    println!(
        "10 000 conjunctive flows built in {:.0} ms ({} subtables)",
        t.elapsed().as_secs_f64() * 1e3,
        conj.n_subtables()
    );
    let both: Vec<Flow> = (0..4096)
        .map(|i| packet(src(i * 7 % N_CLAUSES), dst(i * 13 % N_CLAUSES)))
        .collect();
    let one: Vec<Flow> = (0..4096)
        .map(|i| packet(src(i * 7 % N_CLAUSES), 0x0b00_0001))
        .collect();
    let none: Vec<Flow> = (0..4096)
        .map(|i| packet(0xac10_0000 + i, 0x0b00_0001))
        .collect();
    lookups(
        "conjunctive table: both dimensions match (conj_id)",
        &conj,
        &both,
    );
    lookups(
        "conjunctive table: one dimension matches (default)",
        &conj,
        &one,
    );
    lookups(
        "conjunctive table: no clause matches (default)",
        &conj,
        &none,
    );
    let plain = plain_table();
    lookups("10 000 ordinary nw_src rules: hit", &plain, &both);

    let tables = Tables::from_rules(
        [
            "table=0,priority=0,actions=learn(table=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,1)",
            "table=1,priority=0,actions=output:2",
        ]
        .iter()
        .map(|l| parse_rule(l).unwrap()),
    );
    let cfg = XlateConfig {
        side_effects: true,
        ..XlateConfig::default()
    };
    let macs: Vec<Flow> = (0..4096u64)
        .map(|i| {
            let mut f = packet(1, 2);
            Field::EthSrc.set(&mut f, u128::from(0x0200_0000_0000 + i));
            f
        })
        .collect();
    rate(
        "learn actions translated (rule built, megaflow mask)",
        || {
            for f in &macs {
                black_box(xlate(&tables, f, &cfg));
            }
            macs.len() as u64
        },
    );
    let learned: Vec<_> = macs
        .iter()
        .flat_map(|f| xlate(&tables, f, &cfg).learned)
        .collect();
    let mut t = tables.clone();
    let mut next = 0;
    rate(
        "learned rules applied by the rule-table (add, each a version)",
        || {
            // New MACs each round: 4096 fresh rules on top of those so far.
            for l in &learned {
                let mut l = l.clone();
                Field::EthDst.set(&mut l.rule.matches.flow, 0x0400_0000_0000 + next);
                next += 1;
                black_box(t.learn(l));
            }
            learned.len() as u64
        },
    );
    let mut t = tables.clone();
    for l in &learned {
        t.learn(l.clone());
    }
    rate("learned rules refreshed (identical rule present)", || {
        for l in &learned {
            black_box(t.learn(l.clone()));
        }
        learned.len() as u64
    });
}
