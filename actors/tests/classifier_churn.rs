//! The classifier against a linear scan under insert/remove churn, as OVS's
//! `test-classifier` checks its classifier against `tcls`: after every
//! change, each lookup must find a rule of the highest priority that any
//! live rule matching the flow has, and every flow that agrees with the
//! looked-up one on the bits the lookup un-wildcarded must get an answer
//! of that same priority (the megaflow the wildcards describe is sound).
//! Snapshots (clones) taken along the way must keep answering for the rules
//! they held.

use std::sync::Arc;

use actors::classifier::{Classifier, RuleEntry};
use messages::field::Field;
use messages::ofp::{Instructions, Match, Rule};
use messages::Flow;
use proptest::prelude::*;
use proptest::strategy::ValueTree;

const IPS: [u32; 5] = [
    0x0a00_0001,
    0x0a00_0002,
    0x0a00_0102,
    0x0a01_0101,
    0xc0a8_0001,
];
const PORTS: [u16; 5] = [0, 22, 80, 443, 8080];
const MACS: [u128; 3] = [0x0200_0000_0001, 0x0200_0000_0002, 0x0400_0000_0001];

/// One condition of a rule: a field, a value and a mask.
type Cond = (Field, u128, u128);

fn prefix(len: u32) -> u128 {
    if len == 0 {
        0
    } else {
        u128::from(u32::MAX << (32 - len))
    }
}

fn cond() -> impl Strategy<Value = Cond> {
    prop_oneof![
        (1u128..4).prop_map(|p| (Field::InPort, p, u128::MAX)),
        prop::sample::select(vec![0x0800u128, 0x86dd]).prop_map(|t| (Field::EthType, t, u128::MAX)),
        (
            prop::sample::select(IPS.to_vec()),
            prop::sample::select(vec![8u32, 16, 24, 32])
        )
            .prop_map(|(ip, len)| (Field::Ipv4Src, u128::from(ip), prefix(len))),
        (
            prop::sample::select(IPS.to_vec()),
            prop::sample::select(vec![8u32, 16, 24, 32])
        )
            .prop_map(|(ip, len)| (Field::Ipv4Dst, u128::from(ip), prefix(len))),
        // A mask that is not a prefix: no trie can decide it.
        prop::sample::select(IPS.to_vec()).prop_map(|ip| (
            Field::Ipv4Dst,
            u128::from(ip),
            0x00ff_00ff
        )),
        prop::sample::select(vec![6u128, 17]).prop_map(|p| (Field::IpProto, p, u128::MAX)),
        (
            prop::sample::select(PORTS.to_vec()),
            prop::sample::select(vec![0xffffu128, 0xff00, 0xfff0])
        )
            .prop_map(|(p, m)| (Field::TcpDst, u128::from(p), m)),
        prop::sample::select(MACS.to_vec()).prop_map(|m| (Field::EthSrc, m, u128::MAX)),
    ]
}

/// A rule's priority and conditions.
type Spec = (u16, Vec<Cond>);

fn spec() -> impl Strategy<Value = Spec> {
    (0u16..6, prop::collection::vec(cond(), 0..4))
}

fn flow() -> impl Strategy<Value = Flow> {
    (
        1u32..4,
        prop::sample::select(vec![0x0800u16, 0x86dd]),
        prop::sample::select(IPS.to_vec()),
        prop::sample::select(IPS.to_vec()),
        prop::sample::select(vec![6u8, 17]),
        prop::sample::select(PORTS.to_vec()),
        prop::sample::select(MACS.to_vec()),
    )
        .prop_map(
            |(in_port, dl_type, nw_src, nw_dst, nw_proto, tp_dst, mac)| {
                let mut f = Flow {
                    in_port,
                    dl_type,
                    nw_src,
                    nw_dst,
                    nw_proto,
                    tp_dst,
                    ..Flow::default()
                };
                Field::EthSrc.set(&mut f, mac);
                f
            },
        )
}

#[derive(Clone, Debug)]
enum Op {
    Insert(Spec),
    /// Remove the live rule at this index (modulo their number).
    Remove(usize),
    Lookup(Box<(Flow, Flow)>),
    Snapshot,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => spec().prop_map(Op::Insert),
        2 => any::<usize>().prop_map(Op::Remove),
        4 => (flow(), flow()).prop_map(|(f, noise)| Op::Lookup(Box::new((f, noise)))),
        1 => Just(Op::Snapshot),
    ]
}

fn entry(id: u64, (priority, conds): &Spec) -> Arc<RuleEntry> {
    let mut matches = Match::catchall();
    for &(field, value, mask) in conds {
        matches.set_field_masked(field, value, mask);
    }
    Arc::new(RuleEntry {
        id,
        rule: Rule {
            table: 0,
            priority: *priority,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            matches,
            instructions: Instructions::default(),
        },
        added: std::time::Instant::now(),
    })
}

/// The highest priority of the rules that match `flow`, by linear scan.
fn linear(rules: &[Arc<RuleEntry>], flow: &Flow) -> Option<u16> {
    rules
        .iter()
        .filter(|r| r.rule.matches.matches(flow))
        .map(|r| r.rule.priority)
        .max()
}

/// `flow` where `wc` has bits, `noise` elsewhere.
fn inside(flow: &Flow, wc: &Flow, noise: &Flow) -> Flow {
    let mut out = *noise;
    for ((o, f), w) in out.words_mut().iter_mut().zip(flow.words()).zip(wc.words()) {
        *o = (f & w) | (*o & !w);
    }
    out
}

fn check(
    c: &Classifier,
    rules: &[Arc<RuleEntry>],
    f: &Flow,
    noise: &Flow,
) -> Result<(), TestCaseError> {
    let mut wc = Flow::default();
    let found = c.lookup(f, &mut wc);
    let want = linear(rules, f);
    prop_assert_eq!(found.map(|r| r.rule.priority), want, "flow {:?}", f);
    if let Some(r) = found {
        prop_assert!(r.rule.matches.matches(f));
        prop_assert!(
            rules.iter().any(|l| Arc::ptr_eq(l, r)),
            "a rule that is not live"
        );
    }
    // Every flow inside the megaflow gets an answer of the same priority.
    let g = inside(f, &wc, noise);
    prop_assert_eq!(
        linear(rules, &g),
        want,
        "flow {:?} inside wc {:?} of {:?}",
        g,
        wc,
        f
    );
    if let Some(r) = found {
        prop_assert!(
            r.rule.matches.matches(&g),
            "the rule found does not match {:?}",
            g
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn classifier_agrees_with_a_linear_scan_under_churn(ops in prop::collection::vec(op(), 1..120)) {
        let mut c = Classifier::new();
        let mut live: Vec<Arc<RuleEntry>> = Vec::new();
        let mut snapshots: Vec<(Classifier, Vec<Arc<RuleEntry>>)> = Vec::new();
        for (id, op) in ops.into_iter().enumerate() {
            match op {
                Op::Insert(s) => {
                    let e = entry(id as u64, &s);
                    // As the tables do: a rule with the same match and
                    // priority replaces the old one.
                    if let Some(old) = c.find_exact(&e.rule.matches, e.rule.priority).cloned() {
                        prop_assert!(c.remove(&old));
                        live.retain(|l| !Arc::ptr_eq(l, &old));
                    }
                    c.insert(e.clone());
                    live.push(e);
                }
                Op::Remove(i) if !live.is_empty() => {
                    let e = live.swap_remove(i % live.len());
                    prop_assert!(c.remove(&e));
                    prop_assert!(!c.remove(&e), "removed twice");
                }
                Op::Remove(_) => {}
                Op::Lookup(pair) => check(&c, &live, &pair.0, &pair.1)?,
                Op::Snapshot => snapshots.push((c.clone(), live.clone())),
            }
            prop_assert_eq!(c.len(), live.len());
        }
        // Snapshots answer for the rules they held, whatever came after.
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for (snap, rules) in &snapshots {
            prop_assert_eq!(snap.len(), rules.len());
            for _ in 0..8 {
                let f = flow().new_tree(&mut runner).unwrap().current();
                let noise = flow().new_tree(&mut runner).unwrap().current();
                check(snap, rules, &f, &noise)?;
            }
        }
    }
}
