//! Classifier lookups per second, with and without wildcard tracking, on
//! the workload of OVS's `test-classifier benchmark` (see
//! ../shared/bench/README.md): 13 fields with two values each, rules over
//! 1 subtable and over 20 subtables, 1 000 and 100 000 rules, 8192 flows
//! looked up in random order.
//!
//! Run: `cargo bench --bench classifier`.

use std::hint::black_box;
use std::time::{Duration, Instant};

use actors::classifier::{Classifier, RuleEntry};
use messages::field::Field;
use messages::flow::Flow;
use messages::ofp::{Instructions, Match, Rule};
use std::sync::Arc;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const N_FIELDS: usize = 13;

/// (field, value 0, value 1, mask).
fn fields() -> [(Field, u128, u128, u128); N_FIELDS] {
    let full = u128::MAX;
    [
        (Field::TunId, 0, 0xfedc_ba98_7654_3210, full),
        (Field::Metadata, 0, 0xfedc_ba98_7654_3210, full),
        (Field::Ipv4Src, 0xc0a8_0001, 0xc0a0_4455, full),
        (Field::Ipv4Dst, 0xc0a8_0002, 0xc0a0_4455, full),
        (Field::InPort, 1, 0xfffe, full),
        (Field::VlanTci, 101, 0, full),
        (Field::EthType, 0x0800, 0x0806, full),
        (Field::TcpSrc, 49362, 80, full),
        (Field::TcpDst, 6667, 22, full),
        (Field::EthSrc, 0x0002_e30f_80a4, 0x5e33_7f5f_1e99, full),
        (Field::EthDst, 0x4a27_71ae_64c1, 0xffff_ffff_ffff, full),
        (Field::IpProto, 6, 1, full),
        (Field::NwTos, 48, 0, 0xfc),
    ]
}

fn flow_for(pattern: u32) -> Flow {
    let mut f = Flow::default();
    for (i, (field, v0, v1, _)) in fields().iter().enumerate() {
        let v = if pattern & (1 << i) != 0 { *v1 } else { *v0 };
        field.set(&mut f, v);
    }
    Field::NwTos.set(&mut f, 48);
    f
}

/// Builds a classifier of `n_rules` rules; each rule matches all fields
/// except those of one of `subtable_sets` random field sets.
fn build(n_rules: usize, n_subtables: usize, rng: &mut Rng) -> Classifier {
    // Distinct sets of up to 3 wildcarded fields, one per subtable.
    let mut wildcard_sets: Vec<u32> = vec![0];
    while wildcard_sets.len() < n_subtables {
        let s = rng.next() as u32 & ((1 << N_FIELDS) - 1);
        if s.count_ones() <= 3 && !wildcard_sets.contains(&s) {
            wildcard_sets.push(s);
        }
    }
    let mut cls = Classifier::new();
    for id in 0..n_rules {
        let pattern = rng.next() as u32;
        let skip = wildcard_sets[rng.below(n_subtables as u64) as usize];
        let mut m = Match::catchall();
        for (i, (field, v0, v1, mask)) in fields().iter().enumerate() {
            if skip & (1 << i) != 0 {
                continue;
            }
            let v = if pattern & (1 << i) != 0 { *v1 } else { *v0 };
            m.set_field_masked(*field, v, *mask);
        }
        let rule = Rule {
            table: 0,
            priority: rng.below(65535) as u16,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            matches: m,
            instructions: Instructions::default(),
        };
        if cls.find_exact(&rule.matches, rule.priority).is_none() {
            cls.insert(Arc::new(RuleEntry {
                id: id as u64,
                rule,
                added: std::time::Instant::now(),
            }));
        }
    }
    cls
}

fn measure(name: &str, cls: &Classifier, flows: &[Flow], with_wc: bool) {
    let mut lookups = 0u64;
    let mut hits = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(bench_millis()) {
        for f in flows {
            let mut wc = Flow::default();
            let r = if with_wc {
                cls.lookup(f, &mut wc)
            } else {
                cls.lookup(f, black_box(&mut wc))
            };
            hits += r.is_some() as u64;
            black_box(&wc);
        }
        lookups += flows.len() as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{name:<40} {:>8.2} M lookups/s  {:>7.0} ns/lookup  hit rate {:>5.1}%",
        lookups as f64 / secs / 1e6,
        secs * 1e9 / lookups as f64,
        hits as f64 * 100.0 / lookups as f64
    );
}

fn main() {
    let mut rng = Rng(0x0123_4567_89ab_cdef);
    let flows: Vec<Flow> = (0..8192).map(|_| flow_for(rng.next() as u32)).collect();
    println!("classifier benchmark (1 thread; every lookup tracks wildcards)");
    for &(n_rules, n_subtables) in &[(1_000, 1), (100_000, 1), (1_000, 20), (100_000, 20)] {
        let t = Instant::now();
        let cls = build(n_rules, n_subtables, &mut rng);
        let build_s = t.elapsed().as_secs_f64();
        println!(
            "-- {n_rules} rules, {} subtables (built in {:.2} s, {:.1} µs/insert)",
            cls.n_subtables(),
            build_s,
            build_s * 1e6 / n_rules as f64
        );
        measure(
            &format!("{n_rules} rules / {n_subtables} subtables"),
            &cls,
            &flows,
            true,
        );
    }
}

fn bench_millis() -> u64 {
    std::env::var("CLS_MILLIS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1500)
}
