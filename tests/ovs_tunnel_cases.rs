//! Tunnel pipelines against Open vSwitch 3.1: `tests/ovs_tunnel_cases/`
//! holds bridges with VXLAN and Geneve ports (`bridge.toml`, upcalld's
//! config: the ports' options and the Geneve TLV map), rules and flows,
//! with what `ofproto/trace` printed for each flow (recorded by
//! `tools/difftest/tunnel_trace.py record`). Every `Datapath actions:`
//! and `Megaflow:` line must be identical.

use std::path::Path;

use actors::tables::Tables;
use messages::parse::rules::parse_rules;
use upcalld::config::Config;
use upcalld::trace::{apply_setup, bridge, trace_lines};

#[test]
fn every_flow_agrees_with_open_vswitch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ovs_tunnel_cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 4);
    let (mut total, mut bad) = (0, Vec::new());
    for case in cases {
        let read = |f: &str| std::fs::read_to_string(case.join(f)).unwrap();
        let config = Config::parse(&read("bridge.toml"), "bridge.toml")
            .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let cfg = bridge(None, Some(&config), None).unwrap();
        let tlv = std::sync::Arc::new(config.tlv_map().unwrap());
        let ours = messages::tlv::with_map(&tlv, || {
            // rules.of10: recorded over OpenFlow 1.0 (see the README).
            let file = if case.join("rules.of10").exists() {
                "rules.of10"
            } else {
                "rules.of13"
            };
            let rules =
                parse_rules(&read(file)).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
            let mut tables = Tables::from_rules(rules);
            // setup.txt: groups added before the rules (see the README).
            if case.join("setup.txt").exists() {
                let mut tlv = messages::tlv::current().as_ref().clone();
                apply_setup(&mut tlv, "setup.txt", &read("setup.txt"))
                    .and_then(|s| s.apply_to(&mut tables))
                    .unwrap_or_else(|e| panic!("{}: {e}", case.display()));
            }
            trace_lines(&tables, &read("flows.txt"), &cfg)
        });
        let expected = read("expected.tsv");
        assert_eq!(
            ours.lines().count(),
            expected.lines().count(),
            "{}",
            case.display()
        );
        for (o, e) in ours.lines().zip(expected.lines()) {
            total += 1;
            if o != e {
                bad.push(format!(
                    "{}:\n  ovs:     {e}\n  upcalld: {o}",
                    case.display()
                ));
            }
        }
    }
    assert!(total >= 50, "only {total} flows");
    assert!(
        bad.is_empty(),
        "{} of {total} differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn tunnel_fields_without_a_mapping_or_without_nxm_are_refused() {
    let none = std::sync::Arc::new(messages::tlv::TlvMap::default());
    messages::tlv::with_map(&none, || {
        let e = parse_rules("tun_metadata3=0x1,actions=drop")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("tun_metadata3 has no Geneve option mapped"),
            "{e}"
        );
        let e = parse_rules("actions=set_field:1->tun_metadata0")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no Geneve option mapped"), "{e}");
        let e = parse_rules("tun_tos=4,actions=drop")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tun_tos cannot be matched"), "{e}");
    });
}
