//! `NORMAL` against Open vSwitch 3.1: the corpus in tests/normal_cases/
//! (recorded by tools/difftest/normal_corpus.py on ovs-peer: NORMAL
//! bridges with access, trunk and native ports, their MACs learned from
//! packets sent first) traced with the same MAC table and port VLANs.
//!
//! Every `Megaflow:` line must be identical. `Datapath actions:` lines
//! must be identical too, except for the order in which a flood visits
//! the ports: OVS floods in the order of a hash table of pointers, which
//! changes from one run of OVS to the next, so a flood is compared as the
//! set of (port, headers the packet leaves with).

use std::path::Path;

use actors::tables::Tables;
use upcalld::config::Config;
use upcalld::trace::{bridge, trace};

/// Splits a datapath action list at its top-level commas.
fn split_actions(s: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The VLAN header a trace flow starts with, as a `push_vlan` would
/// write it (`dl_vlan=`, `dl_vlan_pcp=` or `vlan_tci=`).
fn input_vlan(flow: &str) -> Option<String> {
    let field = |name: &str| {
        flow.split(',')
            .find_map(|f| f.strip_prefix(name))
            .map(|v| v.to_string())
    };
    let (vid, pcp) = match (field("dl_vlan="), field("vlan_tci=")) {
        (Some(v), _) => (
            v.parse::<u16>().unwrap(),
            field("dl_vlan_pcp=").map_or(0, |p| p.parse::<u16>().unwrap()),
        ),
        (None, Some(t)) => {
            let tci = u16::from_str_radix(t.trim_start_matches("0x"), 16).unwrap();
            (tci & 0xfff, tci >> 13)
        }
        (None, None) => return None,
    };
    Some(format!("push_vlan(vid={vid},pcp={pcp})"))
}

/// What each output sends: the port, the VLAN headers the packet leaves
/// with, and the fields set; sorted.
fn outputs(flow: &str, actions: &str) -> Vec<String> {
    let mut vlans: Vec<String> = input_vlan(flow).into_iter().collect();
    let mut sets = Vec::<String>::new();
    let mut out = Vec::new();
    for a in split_actions(actions) {
        if a == "pop_vlan" {
            vlans.pop();
        } else if a.starts_with("push_vlan(") {
            vlans.push(a);
        } else if a.starts_with("set(") {
            sets.push(a);
        } else {
            out.push(format!("{a} vlans={vlans:?} sets={sets:?}"));
        }
    }
    out.sort();
    out
}

#[test]
fn normal_agrees_with_open_vswitch() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/normal_cases");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    assert!(cases.len() >= 3, "{cases:?}");
    let (mut total, mut exact, mut bad) = (0, 0, Vec::new());
    for case in &cases {
        let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
        let config = Config::load(&case.join("bridge.toml")).unwrap();
        let cfg = bridge(
            None,
            Some(&config),
            Some(("fdb.txt".into(), &read("fdb.txt"))),
        )
        .unwrap();
        assert!(
            !cfg.mac.entries(0).is_empty() || read("fdb.txt").lines().count() <= 1,
            "{case:?}: the MAC table did not load"
        );
        let rules = messages::parse::rules::parse_rules(&read("rules.of13")).unwrap();
        let tables = Tables::from_rules(rules);
        for line in read("expected.tsv").lines() {
            let cols: Vec<&str> = line.split('\t').collect();
            let (flow, want_actions, want_megaflow) = (cols[0], cols[1], cols[2]);
            total += 1;
            let got = trace(&tables, flow, &cfg).unwrap();
            let name = case.file_name().unwrap().to_string_lossy();
            if got.megaflow != want_megaflow {
                bad.push(format!(
                    "{name}: {flow}\n  megaflow OVS  {want_megaflow}\n  megaflow ours {}",
                    got.megaflow
                ));
            } else if got.actions == want_actions {
                exact += 1;
            } else if outputs(flow, &got.actions) != outputs(flow, want_actions) {
                bad.push(format!(
                    "{name}: {flow}\n  actions OVS  {want_actions}\n  actions ours {}",
                    got.actions
                ));
            }
        }
    }
    eprintln!(
        "NORMAL corpus: {total} flows, {} agree ({exact} byte for byte, the rest floods in another port order)",
        total - bad.len()
    );
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    assert!(total >= 60 && exact >= 30, "{total} flows, {exact} exact");
}

#[test]
fn flood_comparison_sees_headers_and_ports() {
    let f = "in_port=1,dl_type=0x0800";
    // The same outputs in another order are alike...
    assert_eq!(
        outputs(f, "push_vlan(vid=10,pcp=0),4,100,pop_vlan,3,5"),
        outputs(f, "3,5,push_vlan(vid=10,pcp=0),100,4")
    );
    // ...and so is a header popped and pushed back as it was...
    let tagged = "in_port=4,dl_vlan=20,dl_vlan_pcp=5,dl_type=0x0800";
    assert_eq!(
        outputs(tagged, "100,pop_vlan,2"),
        outputs(tagged, "pop_vlan,2,push_vlan(vid=20,pcp=5),100")
    );
    // ...but not a port sent another VLAN, or one missing.
    assert_ne!(
        outputs(f, "push_vlan(vid=10,pcp=0),4,pop_vlan,3"),
        outputs(f, "push_vlan(vid=20,pcp=0),4,pop_vlan,3")
    );
    assert_ne!(outputs(f, "3,4"), outputs(f, "3"));
    assert_ne!(outputs(tagged, "pop_vlan,2"), outputs(tagged, "2"));
    assert_eq!(
        input_vlan("in_port=1,vlan_tci=0x7000,dl_type=0x0800").as_deref(),
        Some("push_vlan(vid=0,pcp=3)")
    );
}

/// A trace learns nothing; the MAC table it is given decides between
/// forwarding and flooding.
#[test]
fn trace_uses_the_given_mac_table_and_learns_nothing() {
    let config = Config::parse(
        "[[port]]\nname = \"a\"\nnumber = 1\ntag = 10\n[[port]]\nname = \"b\"\nnumber = 2\ntag = 10\n[[port]]\nname = \"t\"\nnumber = 3\n",
        "t.toml",
    )
    .unwrap();
    let rules = messages::parse::rules::parse_rules("priority=0,actions=NORMAL").unwrap();
    let tables = Tables::from_rules(rules);
    let flow = "in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,dl_type=0x0800";
    let empty = bridge(None, Some(&config), None).unwrap();
    let flooded = trace(&tables, flow, &empty).unwrap();
    assert_eq!(flooded.actions, "2,push_vlan(vid=10,pcp=0),3,100");
    assert!(empty.mac.entries(0).is_empty(), "a trace learned");
    let fdb = " port  VLAN  MAC                Age\n    2    10  00:00:00:00:00:02    7\n";
    let known = bridge(None, Some(&config), Some(("fdb".into(), fdb))).unwrap();
    let r = trace(&tables, flow, &known).unwrap();
    assert_eq!(r.actions, "2");
    assert_eq!(
        r.megaflow,
        "recirc_id=0,eth,ip,in_port=1,dl_src=00:00:00:00:00:01,dl_dst=00:00:00:00:00:02,nw_frag=no"
    );
    // Learned in VLAN 10 only: the trunk's VLAN 20 does not know it.
    let from_trunk =
        "in_port=3,dl_vlan=20,dl_src=00:00:00:00:00:03,dl_dst=00:00:00:00:00:02,dl_type=0x0800";
    assert_eq!(trace(&tables, from_trunk, &known).unwrap().actions, "100");
    let e = bridge(None, Some(&config), Some(("fdb".into(), "2 10 zz:00"))).unwrap_err();
    assert!(e.to_string().contains("fdb line 1"), "{e}");
}

/// Through the actors on the userspace datapath: a handler learns from
/// each upcall, and once a destination is learned (or moves) the
/// revalidators turn the flows that flooded towards it into unicast ones,
/// as OVS's revalidators do after a MAC learning change.
#[test]
fn learning_and_moves_revalidate_the_flows_that_depend_on_them() {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::time::Duration;

    use actors::mac_learning::MacTable;
    use actors::pipeline::{Pipeline, PipelineConfig};
    use actors::revalidator::RevalidatorConfig;
    use actors::xlate::XlateConfig;
    use messages::flow::{Flow, ETH_TYPE_IP};
    use messages::odp::OdpAction;
    use upcalld::dpif_netdev::{Netdev, NetdevConfig, ReplayFrame};

    const A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
    let frame = |in_port: u32, src: [u8; 6], dst: [u8; 6]| {
        Arc::new(vec![ReplayFrame {
            in_port: Some(in_port),
            frame: messages::compose::flow_compose(&Flow {
                dl_src: src,
                dl_dst: dst,
                dl_type: ETH_TYPE_IP,
                nw_proto: 17,
                nw_ttl: 64,
                ..Flow::default()
            }),
        }])
    };
    let actions_from = |netdev: &Netdev, port: u32| -> Vec<Vec<OdpAction>> {
        use messages::dpif::Dpif;
        netdev
            .flow_dump()
            .unwrap()
            .into_iter()
            .filter(|f| f.key.in_port == port)
            .map(|f| f.actions.to_vec())
            .collect()
    };
    actix::System::new().block_on(async {
        let mac = Arc::new(MacTable::default());
        let config = PipelineConfig {
            n_handlers: 1,
            revalidator: RevalidatorConfig {
                interval: Duration::from_secs(3600),
                ..RevalidatorConfig::default()
            },
            xlate: XlateConfig {
                ports: Some(Arc::new(BTreeSet::from([1, 2, 3]))),
                mac: mac.clone(),
                ..XlateConfig::default()
            },
            ..PipelineConfig::default()
        };
        let rules = messages::parse::rules::parse_rules("priority=0,actions=NORMAL").unwrap();
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let pipeline = Pipeline::start(netdev.clone(), Tables::from_rules(rules), config);

        // B unknown: A's packet floods, and A is learned.
        upcalld::bench::feed(&netdev, &pipeline, &frame(1, A, B))
            .await
            .unwrap();
        assert_eq!(
            actions_from(&netdev, 1),
            [vec![OdpAction::Output(2), OdpAction::Output(3)]]
        );
        assert_eq!(mac.lookup(&A, 0), Some(1));
        // B answers from port 2: forwarded to A, B learned; the flood
        // becomes an output to port 2 at the next revalidation.
        upcalld::bench::feed(&netdev, &pipeline, &frame(2, B, A))
            .await
            .unwrap();
        assert_eq!(actions_from(&netdev, 2), [vec![OdpAction::Output(1)]]);
        pipeline.revalidate_now().await.unwrap();
        assert_eq!(actions_from(&netdev, 1), [vec![OdpAction::Output(2)]]);
        // B moves to port 3: counted, and A's flow follows it.
        upcalld::bench::feed(&netdev, &pipeline, &frame(3, B, A))
            .await
            .unwrap();
        assert_eq!(mac.lookup(&B, 0), Some(3));
        assert_eq!(mac.stats().moved, 1);
        pipeline.revalidate_now().await.unwrap();
        assert_eq!(actions_from(&netdev, 1), [vec![OdpAction::Output(3)]]);
        pipeline.stop();
        netdev.close();
    });
}
