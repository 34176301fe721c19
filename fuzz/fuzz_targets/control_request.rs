//! Control-socket requests, whatever their bytes and however they are cut
//! into reads: the decoder never panics and never holds more than its
//! limits, the rules and flow-mod parsers never panic on its lines, and a
//! body sent as the client sends it comes out as the lines it holds.

#![no_main]

use libfuzzer_sys::fuzz_target;
use messages::control::{parse_header, parse_reply, Decoder, Item, Limits};
use messages::parse::rules::{parse_flow_mod, parse_rule_noting, FlowModCommand};

/// Small limits, so that the fuzzer reaches them.
const LIMITS: Limits = Limits {
    max_header: 64,
    max_line: 256,
    max_body: 4096,
    max_rules: 16,
    max_text: 1024,
    max_connections: 1,
    io_timeout: std::time::Duration::from_secs(1),
};

fn parse_line(command: Option<&str>, line: &str) {
    match command {
        Some("del-flows") => {
            let _ = parse_flow_mod(line, FlowModCommand::Delete);
            let _ = parse_flow_mod(line, FlowModCommand::DeleteStrict);
        }
        Some("mod-flows") => {
            let _ = parse_flow_mod(line, FlowModCommand::Modify);
            let _ = parse_flow_mod(line, FlowModCommand::ModifyStrict);
        }
        _ => {
            let _ = parse_rule_noting(line);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let split = usize::from(split).max(1);

    // 1. Raw bytes as a request, fed in pieces of `split` bytes.
    let mut d = Decoder::new(LIMITS);
    let mut command: Option<String> = None;
    let mut n_lines = 0usize;
    for piece in rest.chunks(split) {
        let r = d.feed(piece, &mut |item| {
            match item {
                Item::Header(h) => {
                    assert_eq!(parse_header(&h.encode()).as_ref(), Ok(&h));
                    command = Some(h.command.name().to_string());
                }
                Item::Line(n, text) => {
                    n_lines += 1;
                    assert_eq!(n, n_lines);
                    assert!(text.len() <= LIMITS.max_line);
                    assert!(!text.contains('\n') && !text.contains('#'));
                    parse_line(command.as_deref(), text);
                }
                Item::End => {}
            }
            Ok(())
        });
        if r.is_err() {
            break;
        }
    }
    let _ = parse_reply(&String::from_utf8_lossy(rest));

    // 2. The same bytes as a body, chunked as the client sends it: the
    // lines come out as written, without comments.
    let Ok(body) = std::str::from_utf8(rest) else {
        return;
    };
    let mut raw = b"add-flows\n".to_vec();
    for c in rest.chunks(split) {
        raw.extend_from_slice(format!("{}\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
    }
    raw.extend_from_slice(b"0\n");
    let limits = Limits {
        max_line: usize::MAX,
        max_body: u64::MAX,
        ..LIMITS
    };
    let mut d = Decoder::new(limits);
    let mut lines = Vec::new();
    let mut ended = false;
    d.feed(&raw, &mut |item| {
        match item {
            Item::Line(_, t) => lines.push(t.to_string()),
            Item::End => ended = true,
            Item::Header(_) => {}
        }
        Ok(())
    })
    .expect("a well-formed request decodes");
    assert!(ended && d.is_done());
    let mut expected: Vec<String> = body
        .split('\n')
        .map(|l| l.split('#').next().unwrap_or("").to_string())
        .collect();
    if body.is_empty() || body.ends_with('\n') {
        expected.pop();
    }
    assert_eq!(lines, expected);
});
