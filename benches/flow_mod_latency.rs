//! Flow mods against lookups (issue 12, item 6): how long after a rule is
//! added to a 100 000-rule table the first lookup on the new snapshot
//! completes, and how long lookups take while a stream of flow mods
//! publishes snapshot after snapshot.
//!
//! The rule-table's work per change is measured in process: copy the
//! tables (persistent maps), apply the change, `Tables::prepare` (build
//! the lookup indexes the change dropped), publish. A second thread plays
//! a handler: it takes the latest snapshot and times every lookup on it.
//! Times are wall clock on a shared machine: preemption shows up in the
//! maxima, so the percentiles say more.
//!
//! Run: `cargo bench --bench flow_mod_latency`.

use std::hint::black_box;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::tables::Tables;
use messages::field::Field;
use messages::flow::{Flow, FlowWildcards};
use messages::ofp::{Instructions, Match, OfAction, Rule};
use parking_lot::Mutex;

const N_RULES: usize = 100_000;
const N_SUBTABLES: u32 = 20;

/// xorshift64*: a small deterministic generator.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Rule `i`: an exact `nw_src`/`nw_dst` pair under one of `N_SUBTABLES`
/// masks of `tp_dst`, as a firewall's per-address rules look.
fn rule(i: u32) -> Rule {
    let mut m = Match::catchall();
    m.set_field(Field::EthType, 0x0800);
    m.set_field(Field::IpProto, 6);
    m.set_field(Field::Ipv4Src, u128::from(0x0a00_0000 | i));
    m.set_field(Field::Ipv4Dst, u128::from(0xc0a8_0000 | (i % 251)));
    let bits = 16 - (i % N_SUBTABLES) as u128 % 16;
    let mask = (0xffffu128 << (16 - bits)) & 0xffff;
    m.set_field_masked(Field::TcpDst, 80 & mask, mask);
    Rule {
        table: 0,
        priority: (100 + i % 1000) as u16,
        cookie: u64::from(i),
        idle_timeout: 0,
        hard_timeout: 0,
        flags: 0,
        matches: m,
        instructions: Instructions {
            apply: vec![OfAction::Output {
                port: 1 + i % 8,
                max_len: 0,
            }],
            ..Instructions::default()
        },
    }
}

/// A packet that rule `i` matches.
fn flow(i: u32) -> Flow {
    let mut f = Flow::default();
    Field::EthType.set(&mut f, 0x0800);
    Field::IpProto.set(&mut f, 6);
    Field::Ipv4Src.set(&mut f, u128::from(0x0a00_0000 | i));
    Field::Ipv4Dst.set(&mut f, u128::from(0xc0a8_0000 | (i % 251)));
    Field::TcpDst.set(&mut f, 80);
    f
}

/// This thread's CPU time: what a change costs the rule-table, whatever
/// else the machine runs.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn lookup(t: &Tables, f: &Flow) -> bool {
    let mut wc = FlowWildcards::default();
    black_box(t.lookup(0, f, &mut wc)).is_some()
}

/// Percentiles of `v` (sorted here), as `p50 … max` in microseconds.
fn summary(v: &mut [Duration]) -> String {
    v.sort();
    let at = |q: f64| v[((v.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e6;
    format!(
        "p50 {:>8.2} µs  p99 {:>8.2} µs  p99.9 {:>8.2} µs  max {:>8.2} µs  (n={})",
        at(0.5),
        at(0.99),
        at(0.999),
        at(1.0),
        v.len()
    )
}

fn main() {
    let start = Instant::now();
    let mut tables = Tables::from_rules((0..N_RULES as u32).map(rule));
    tables.prepare();
    println!(
        "-- {} rules in table 0 over {N_SUBTABLES} subtables (built in {:.2} s)",
        tables.len(),
        start.elapsed().as_secs_f64()
    );

    // One rule added, then the first lookup on that snapshot: with
    // `prepare` before publishing (as the rule-table does), and without it
    // (a change edits built indexes, so nothing is left to build).
    let mut prepared = Vec::new();
    let mut prepared_cpu = Vec::new();
    let mut first_lookup = Vec::new();
    let mut unprepared_first_lookup = Vec::new();
    for k in 0..300u32 {
        let i = N_RULES as u32 + k;
        let (t0, c0) = (Instant::now(), thread_cpu());
        let mut next = tables.clone();
        next.add(rule(i));
        next.prepare();
        prepared.push(t0.elapsed());
        prepared_cpu.push(thread_cpu() - c0);
        let t1 = Instant::now();
        assert!(lookup(&next, &flow(i)));
        first_lookup.push(t1.elapsed());

        let mut raw = tables.clone();
        raw.add(rule(i));
        let t2 = Instant::now();
        assert!(lookup(&raw, &flow(i)));
        unprepared_first_lookup.push(t2.elapsed());
        tables = next;
    }
    println!(
        "add-flow -> snapshot prepared      {}",
        summary(&mut prepared)
    );
    println!(
        "  the same, CPU time               {}",
        summary(&mut prepared_cpu)
    );
    println!(
        "first lookup, prepared snapshot    {}",
        summary(&mut first_lookup)
    );
    println!(
        "first lookup, no prepare() call     {}",
        summary(&mut unprepared_first_lookup)
    );

    // A stream of flow mods (add one, delete one) publishing every
    // snapshot, and a handler timing each lookup on the latest one.
    let published = Arc::new(Mutex::new(Arc::new(tables.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (published, stop) = (published.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut t = tables;
            // Oldest first: each mod adds a rule and deletes the oldest.
            let mut ids: std::collections::VecDeque<u64> = t.rules().iter().map(|e| e.id).collect();
            let mut n = 0u64;
            let mut next_rule = 2 * N_RULES as u32;
            while !stop.load(Ordering::Relaxed) {
                let mut copy = t.clone();
                ids.push_back(copy.add(rule(next_rule)).id);
                let doomed = ids.pop_front().and_then(|id| copy.get(id)).cloned();
                copy.delete(doomed.into_iter().collect());
                copy.prepare();
                t = copy;
                *published.lock() = Arc::new(t.clone());
                next_rule += 1;
                n += 1;
            }
            n
        })
    };
    let mut rng = Rng(0x1234_5678);
    let mut latencies = Vec::with_capacity(4_000_000);
    let mut over_10us = 0u64;
    let run = Instant::now();
    while run.elapsed() < Duration::from_secs(3) {
        let snapshot = published.lock().clone();
        for _ in 0..64 {
            let f = flow(rng.next() as u32 % (2 * N_RULES as u32));
            let t0 = Instant::now();
            lookup(&snapshot, &f);
            let d = t0.elapsed();
            over_10us += u64::from(d > Duration::from_micros(10));
            latencies.push(d);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mods = writer.join().expect("writer thread");
    let secs = run.elapsed().as_secs_f64();
    println!(
        "lookups during {:.0} flow mods/s     {}",
        mods as f64 / secs,
        summary(&mut latencies)
    );
    println!(
        "lookups over 10 µs: {over_10us} of {} ({:.4} %)",
        latencies.len(),
        100.0 * over_10us as f64 / latencies.len() as f64
    );
}
