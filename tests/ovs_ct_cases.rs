//! Stateful pipelines against Open vSwitch 3.1: `tests/ovs_ct_cases/`
//! holds rule sets in the style of OVS's conntrack tutorial, Neutron's OVS
//! firewall and OVN's ACL, load-balancer and NAT stages (and Antrea's
//! published pipeline), groups in a case's `setup`, with what
//! `ofproto/trace` (with `--ct-next`) printed for every pass of every
//! flow (recorded by `tools/difftest/ct_trace.py record`). Every pass must
//! be identical: banner, datapath actions and megaflow, recirculation ids
//! numbered in order of appearance on both sides (in the passes, not in
//! the traced flow).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use actors::tables::Tables;
use messages::parse::flow::parse_ct_next;
use messages::parse::rules::parse_rules;
use upcalld::trace::{apply_setup, dummy_bridge, trace_ct};

/// Renumbers `recirc(0xN)` and `recirc_id=0xN` by first appearance.
fn normalize(cols: &mut [String], ids: &mut HashMap<u32, u32>) {
    for col in cols.iter_mut() {
        let mut out = String::new();
        let mut rest = col.as_str();
        while let Some(i) = rest.find("recirc") {
            let (head, tail) = rest.split_at(i);
            out.push_str(head);
            let prefix = if tail.starts_with("recirc(0x") {
                "recirc(0x"
            } else if tail.starts_with("recirc_id=0x") {
                "recirc_id=0x"
            } else {
                out.push_str("recirc");
                rest = &tail[6..];
                continue;
            };
            let digits = &tail[prefix.len()..];
            let n = digits.bytes().take_while(u8::is_ascii_hexdigit).count();
            let old = u32::from_str_radix(&digits[..n], 16).unwrap();
            let next = ids.len() as u32 + 1;
            let new = *ids.entry(old).or_insert(next);
            out.push_str(&format!("{prefix}{new:x}"));
            rest = &digits[n..];
        }
        out.push_str(rest);
        *col = out;
    }
}

#[test]
fn every_pass_agrees_with_open_vswitch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ovs_ct_cases");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 6);
    let (mut total, mut bad) = (0, Vec::new());
    for case in cases {
        let rules = std::fs::read_to_string(case.join("rules.of13")).unwrap();
        let rules = parse_rules(&rules).unwrap_or_else(|e| panic!("{}: {e}", case.display()));
        let mut tables = Tables::from_rules(rules);
        // Groups the peer was given before the rules (`ovs-ofctl add-group`).
        let setup = case.join("setup");
        if setup.exists() {
            let text = std::fs::read_to_string(&setup).unwrap();
            let mut tlv = Default::default();
            apply_setup(&mut tlv, &setup.display().to_string(), &text)
                .unwrap()
                .apply_to(&mut tables)
                .unwrap();
        }
        let mut cfg = dummy_bridge(None);
        // What the peer was configured with besides its rules.
        let bridge = case.join("bridge.toml");
        if bridge.exists() {
            let config = upcalld::config::Config::load(&bridge).unwrap();
            cfg.zone_timeout_policies = Arc::new(config.zone_timeout_policies().unwrap());
        }
        let mut ours = Vec::new();
        for line in std::fs::read_to_string(case.join("flows.txt"))
            .unwrap()
            .lines()
        {
            if line.trim().is_empty() || line.starts_with('#') {
                continue;
            }
            let mut parts = line.split('\t').map(str::trim);
            let flow = parts.next().unwrap();
            let states: Vec<&str> = parts.filter(|s| !s.is_empty()).collect();
            let next: Vec<u8> = states.iter().map(|s| parse_ct_next(s).unwrap()).collect();
            let r = trace_ct(&tables, flow, &cfg, &next).unwrap();
            let mut ids = HashMap::new();
            for (n, p) in r.passes.iter().enumerate() {
                let banner: Vec<&str> = p
                    .banner
                    .iter()
                    .map(|l| l.trim())
                    .filter(|l| !l.is_empty())
                    .collect();
                let mut cols = [
                    flow.to_string(),
                    states.join(" "),
                    n.to_string(),
                    banner.join(" | "),
                    p.actions.clone(),
                    p.megaflow.clone(),
                ];
                normalize(&mut cols[3..], &mut ids);
                ours.push(cols.join("\t"));
            }
        }
        let expected = std::fs::read_to_string(case.join("expected.tsv")).unwrap();
        let expected: Vec<&str> = expected.lines().collect();
        assert_eq!(expected.len(), ours.len(), "{}: passes", case.display());
        for (e, g) in expected.iter().zip(&ours) {
            total += 1;
            if e != g {
                bad.push(format!(
                    "{}\n  expected {e}\n  got      {g}",
                    case.display()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {total} passes differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
    eprintln!("{total} passes identical");
}
