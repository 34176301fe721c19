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
