use super::*;
use messages::field::Field;
use messages::flow::{ETH_TYPE_IP, IPPROTO_TCP};
use messages::ofp::Instructions;

fn rule(id: u64, priority: u16, fields: &[(Field, u128, u128)]) -> Arc<RuleEntry> {
    let mut m = Match::catchall();
    for &(f, v, mask) in fields {
        m.set_field_masked(f, v, mask);
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
            instructions: Instructions::default(),
        },
        added: std::time::Instant::now(),
    })
}

const FULL: u128 = u128::MAX;

fn tcp_flow(in_port: u32, nw_dst: u32, tp_dst: u16) -> Flow {
    Flow {
        in_port,
        dl_type: ETH_TYPE_IP,
        nw_proto: IPPROTO_TCP,
        nw_dst,
        tp_dst,
        ..Flow::default()
    }
}

#[test]
fn highest_priority_match_wins() {
    let mut c = Classifier::new();
    c.insert(rule(1, 10, &[(Field::EthType, 0x0800, FULL)]));
    c.insert(rule(2, 20, &[(Field::InPort, 1, FULL)]));
    c.insert(rule(3, 5, &[]));
    let mut wc = Flow::default();
    assert_eq!(c.lookup(&tcp_flow(1, 0, 0), &mut wc).unwrap().id, 2);
    let mut wc = Flow::default();
    assert_eq!(c.lookup(&tcp_flow(2, 0, 0), &mut wc).unwrap().id, 1);
    assert_eq!(c.len(), 3);
}

#[test]
fn prefix_trie_unwildcards_only_the_bits_needed() {
    let mut c = Classifier::new();
    c.insert(rule(
        1,
        10,
        &[
            (Field::EthType, 0x0800, FULL),
            (Field::Ipv4Dst, 0x0a00_0000, 0xff00_0000),
        ],
    ));
    let mut wc = Flow::default();
    assert!(c.lookup(&tcp_flow(1, 0xc0a8_0101, 0), &mut wc).is_none());
    // 192.x differs from 10.x in the first bit.
    assert_eq!(wc.nw_dst, 0x8000_0000);
}

#[test]
fn staged_lookup_stops_at_the_first_stage_that_misses() {
    let mut c = Classifier::new();
    c.insert(rule(
        1,
        10,
        &[
            (Field::InPort, 1, FULL),
            (Field::EthType, 0x0800, FULL),
            (Field::IpProto, 6, FULL),
            (Field::TcpDst, 80, FULL),
        ],
    ));
    let mut wc = Flow::default();
    assert!(c.lookup(&tcp_flow(2, 0, 80), &mut wc).is_none());
    assert_eq!(wc.in_port, u32::MAX);
    assert_eq!((wc.dl_type, wc.nw_proto, wc.tp_dst), (0, 0, 0));
}

#[test]
fn ports_trie_unwildcards_a_prefix_of_the_port() {
    let mut c = Classifier::new();
    c.insert(rule(
        1,
        10,
        &[
            (Field::EthType, 0x0800, FULL),
            (Field::IpProto, 6, FULL),
            (Field::TcpDst, 80, FULL),
        ],
    ));
    let mut wc = Flow::default();
    assert!(c.lookup(&tcp_flow(1, 0, 22), &mut wc).is_none());
    // 22 and 80 first differ in bit 9 of the port: 10 bits.
    assert_eq!(wc.tp_dst, 0xffc0);
    assert_eq!((wc.dl_type, wc.nw_proto), (0xffff, 0xff));
}

#[test]
fn removal_restores_the_previous_answer() {
    let mut c = Classifier::new();
    let low = rule(1, 10, &[]);
    let high = rule(2, 20, &[(Field::InPort, 1, FULL)]);
    c.insert(low);
    c.insert(high.clone());
    let snapshot = c.clone();
    assert!(c.remove(&high));
    assert!(!c.remove(&high));
    let mut wc = Flow::default();
    assert_eq!(c.lookup(&tcp_flow(1, 0, 0), &mut wc).unwrap().id, 1);
    // The snapshot taken before is unaffected.
    assert_eq!(snapshot.lookup(&tcp_flow(1, 0, 0), &mut wc).unwrap().id, 2);
    assert_eq!(c.n_subtables(), 1);
}

fn clause(
    id: u64,
    priority: u16,
    fields: &[(Field, u128, u128)],
    conj: &[(u32, u8, u8)],
) -> Arc<RuleEntry> {
    let r = rule(id, priority, fields);
    let mut e = Arc::try_unwrap(r).unwrap();
    e.rule.instructions.apply = conj
        .iter()
        .map(
            |&(id, clause, n_clauses)| messages::ofp::OfAction::Conjunction {
                id,
                clause,
                n_clauses,
            },
        )
        .collect();
    Arc::new(e)
}

/// Neutron's shape: {source addresses} × {destination ports}, conj_id 7.
fn firewall() -> Classifier {
    let mut c = Classifier::new();
    let ip = (Field::EthType, 0x0800, FULL);
    let tcp = (Field::IpProto, 6, FULL);
    c.insert(clause(
        1,
        50,
        &[ip, (Field::Ipv4Src, 0x0a00_0001, FULL)],
        &[(7, 0, 2)],
    ));
    c.insert(clause(
        2,
        50,
        &[ip, (Field::Ipv4Src, 0x0a00_0002, FULL)],
        &[(7, 0, 2)],
    ));
    c.insert(clause(
        3,
        50,
        &[ip, tcp, (Field::TcpDst, 22, FULL)],
        &[(7, 1, 2)],
    ));
    c.insert(clause(
        4,
        50,
        &[ip, tcp, (Field::TcpDst, 80, FULL)],
        &[(7, 1, 2)],
    ));
    c.insert(rule(5, 50, &[ip, (Field::ConjId, 7, FULL)]));
    c.insert(rule(6, 1, &[]));
    c
}

fn from(src: u32, tp_dst: u16) -> Flow {
    Flow {
        nw_src: src,
        ..tcp_flow(1, 0x0a00_0009, tp_dst)
    }
}

#[test]
fn a_conjunction_matches_when_every_dimension_does() {
    let c = firewall();
    let id = |f: &Flow| c.lookup(f, &mut Flow::default()).unwrap().id;
    assert_eq!(id(&from(0x0a00_0001, 22)), 5);
    assert_eq!(id(&from(0x0a00_0002, 80)), 5);
    // One dimension only: the catch-all.
    assert_eq!(id(&from(0x0a00_0003, 22)), 6);
    assert_eq!(id(&from(0x0a00_0001, 443)), 6);
    // The second lookup's conj_id is not a packet field.
    let mut wc = Flow::default();
    c.lookup(&from(0x0a00_0001, 22), &mut wc);
    assert_eq!(wc.conj_id, u32::MAX);
    assert_eq!((wc.nw_src, wc.tp_dst), (u32::MAX, u16::MAX));
}

#[test]
fn ordinary_rules_above_win_and_equal_matches_below_take_over() {
    let mut c = firewall();
    let ip = (Field::EthType, 0x0800, FULL);
    // Above the conjunction's priority: an ordinary rule wins.
    c.insert(rule(10, 60, &[ip, (Field::Ipv4Src, 0x0a00_0002, FULL)]));
    // Below it, with the same match as a clause: used when the
    // conjunction does not complete.
    c.insert(rule(11, 40, &[ip, (Field::Ipv4Src, 0x0a00_0001, FULL)]));
    let id = |f: &Flow| c.lookup(f, &mut Flow::default()).unwrap().id;
    assert_eq!(id(&from(0x0a00_0002, 22)), 10);
    assert_eq!(id(&from(0x0a00_0001, 22)), 5);
    assert_eq!(id(&from(0x0a00_0001, 443)), 11);
}

#[test]
fn a_conjunction_without_its_conj_id_rule_falls_through() {
    let mut c = Classifier::new();
    let ip = (Field::EthType, 0x0800, FULL);
    c.insert(clause(
        1,
        50,
        &[ip, (Field::Ipv4Src, 0x0a00_0001, FULL)],
        &[(9, 0, 2)],
    ));
    c.insert(clause(2, 50, &[ip, (Field::InPort, 1, FULL)], &[(9, 1, 2)]));
    c.insert(rule(3, 10, &[ip]));
    let f = from(0x0a00_0001, 22);
    assert_eq!(c.lookup(&f, &mut Flow::default()).unwrap().id, 3);
    c.insert(rule(4, 50, &[ip, (Field::ConjId, 9, FULL)]));
    assert_eq!(c.lookup(&f, &mut Flow::default()).unwrap().id, 4);
}

/// What a lookup index says: per stage, its hashes; per key, the rule ids
/// in the order lookups see them.
type IndexView = (
    Vec<Vec<u64>>,
    std::collections::BTreeMap<Vec<u64>, Vec<u64>>,
);

fn view(index: &LookupIndex) -> IndexView {
    let stages = index
        .stages
        .iter()
        .map(|s| {
            let mut hashes: Vec<u64> = s.iter().map(|(h, ())| *h).collect();
            hashes.sort_unstable();
            hashes
        })
        .collect();
    let mut keys = std::collections::BTreeMap::new();
    for (_, &head) in index.heads.iter() {
        let mut entry = head;
        while entry != NO_ENTRY {
            let record = index.keys.get(entry as usize);
            let (key, link) = record.split_at(record.len() - 1);
            let ids = std::iter::once(index.rule(entry))
                .chain(index.lower(entry))
                .map(|r| r.id)
                .collect();
            assert!(
                keys.insert(key.to_vec(), ids).is_none(),
                "a key in two entries"
            );
            entry = link[0] as u32;
        }
    }
    (stages, keys)
}

fn views(c: &Classifier) -> Vec<IndexView> {
    c.subtables
        .iter()
        .map(|st| view(st.lookup_index.get().expect("prepared")))
        .collect()
}

fn rebuilt_views(c: &Classifier) -> Vec<IndexView> {
    c.subtables
        .iter()
        .map(|st| view(&st.build_lookup_index()))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Inserts and removes edit a built lookup index (or a copy of it)
    /// into exactly what a rebuild from the persistent maps gives, and
    /// copies taken before keep what they had.
    #[test]
    fn edited_lookup_indexes_equal_rebuilt_ones(
        ops in proptest::collection::vec(
            (0u8..3, 1u16..4, proptest::option::of(0u32..3), proptest::option::of(0u32..4), 0usize..64),
            1..150,
        ),
    ) {
        let mut c = Classifier::new();
        let mut live: Vec<Arc<RuleEntry>> = Vec::new();
        let mut copies: Vec<(Classifier, Vec<IndexView>)> = Vec::new();
        for (id, (op, priority, in_port, dst, pick)) in ops.into_iter().enumerate() {
            if op == 0 && !live.is_empty() {
                let e = live.swap_remove(pick % live.len());
                proptest::prop_assert!(c.remove(&e));
            } else {
                let mut fields = vec![(Field::EthType, 0x0800, FULL)];
                if let Some(p) = in_port {
                    fields.push((Field::InPort, u128::from(p), FULL));
                }
                if let Some(d) = dst {
                    fields.push((Field::Ipv4Dst, u128::from(d << 24), 0xff00_0000));
                }
                let e = rule(id as u64, priority, &fields);
                if let Some(old) = c.find_exact(&e.rule.matches, priority).cloned() {
                    proptest::prop_assert!(c.remove(&old));
                    live.retain(|l| !Arc::ptr_eq(l, &old));
                }
                c.insert(e.clone());
                live.push(e);
            }
            c.prepare();
            let now = views(&c);
            proptest::prop_assert_eq!(&now, &rebuilt_views(&c));
            if pick % 5 == 0 {
                copies.push((c.clone(), now));
            }
        }
        for (copy, then) in &copies {
            proptest::prop_assert_eq!(&views(copy), then);
        }
    }
}

#[test]
fn pending_rules_never_match_but_are_examined() {
    let mut c = Classifier::new();
    c.insert(rule(1, 10, &[(Field::EthType, 0x0800, FULL)]));
    // Rules a translation is adding: one of a new mask above the table's
    // rules, one of the existing mask.
    let mut pending = Classifier::new();
    pending.insert(rule(2, 20, &[(Field::InPort, 1, FULL)]));
    pending.insert(rule(3, 30, &[(Field::EthType, 0x86dd, FULL)]));
    let flow = tcp_flow(1, 0, 0);
    let mut wc = Flow::default();
    assert_eq!(c.lookup(&flow, &mut wc).unwrap().id, 1);
    assert_eq!(wc.in_port, 0);
    let mut wc = Flow::default();
    assert_eq!(c.lookup_pending(&pending, &flow, &mut wc).unwrap().id, 1);
    assert_eq!((wc.in_port, wc.dl_type), (u32::MAX, 0xffff));
    // A table with no rules: the pending ones still un-wildcard.
    let mut wc = Flow::default();
    assert!(Classifier::new()
        .lookup_pending(&pending, &flow, &mut wc)
        .is_none());
    assert_eq!(wc.in_port, u32::MAX);
}
