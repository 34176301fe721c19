//! Translation depth does not depend on the thread's stack: the longest
//! chain of lookups OVS allows (`MAX_RESUBMITS`, 4096) translates on a
//! thread with a quarter of a megabyte of stack, and one more lookup is
//! refused as OVS refuses it.

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig, XlateError, XlateOutput, MAX_RESUBMITS};
use messages::odp::OdpAction;
use messages::parse::rules::parse_rules;
use messages::Flow;

/// Rules whose translation runs `lookups` rules: tables 0..=254 each
/// resubmit to the next; table 254 counts the passes in reg0 and starts
/// over at table 0 (each pass one level deeper); in the last pass the
/// rule that makes the count outputs to port 2.
fn chain(lookups: u32) -> Tables {
    const PASS: u32 = 255;
    let (passes, last) = (lookups / PASS, lookups % PASS);
    assert!(last > 0, "the chain ends inside a pass");
    let mut text = String::new();
    for t in 0..254 {
        text += &format!("table={t},priority=1,actions=resubmit(,{})\n", t + 1);
    }
    for i in 0..passes {
        text += &format!(
            "table=254,priority=1,reg0={i},actions=load:{}->NXM_NX_REG0[],resubmit(,0)\n",
            i + 1
        );
    }
    text += &format!(
        "table={},priority=10,reg0={passes},actions=output:2\n",
        last - 1
    );
    Tables::from_rules(parse_rules(&text).expect("chain rules parse"))
}

fn translate_on_small_stack(tables: Tables) -> XlateOutput {
    std::thread::Builder::new()
        .name("small-stack".into())
        .stack_size(256 << 10)
        .spawn(move || {
            let flow = Flow {
                in_port: 1,
                dl_type: 0x0800,
                ..Flow::default()
            };
            xlate(&tables, &flow, &XlateConfig::default())
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn the_longest_chain_ovs_allows_translates_on_a_small_stack() {
    let out = translate_on_small_stack(chain(MAX_RESUBMITS));
    assert_eq!(out.error, None);
    assert_eq!(out.rules.len(), MAX_RESUBMITS as usize);
    assert_eq!(out.actions, vec![OdpAction::Output(2)]);
}

#[test]
fn one_lookup_more_is_refused() {
    let out = translate_on_small_stack(chain(MAX_RESUBMITS + 1));
    assert_eq!(out.error, Some(XlateError::TooManyResubmits));
    assert_eq!(out.rules.len(), MAX_RESUBMITS as usize);
    assert!(out.actions.is_empty(), "a translation that gave up drops");
}
