//! Rule and trace-flow text in, never a panic out; a rule that parses
//! prints as text that parses back to the same rule.

#![no_main]

use libfuzzer_sys::fuzz_target;
use messages::format::ofp_rule::format_rule;
use messages::parse::flow::parse_trace_flow;
use messages::parse::rules::{parse_rule, parse_rules};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_rules(text);
    let _ = parse_trace_flow(text);
    if let Ok(rule) = parse_rule(text) {
        let printed = format_rule(&rule);
        let again = parse_rule(&printed)
            .unwrap_or_else(|e| panic!("printed rule {printed:?} does not parse: {e}"));
        assert_eq!(format_rule(&again), printed);
    }
});
