//! Rules text as the daemon reads it (a rules file, a `ctl` request):
//! errors that name the file, line and column once, and the warnings
//! `ovs-ofctl` prints when it normalizes a match.

use actors::tables::{RuleFilter, RuleUpdate};
use messages::ofp::{port, Rule};
use messages::parse::rules::{self as parse, FlowModCommand, ParseError};

/// `origin:line:col: warning: ...` for each match field dropped because
/// its prerequisites are not met, as `ovs-ofctl` warns when it normalizes.
fn warnings(origin: Option<&str>, line: usize, dropped: &[parse::Dropped]) -> Vec<String> {
    dropped
        .iter()
        .map(|d| {
            let at = match origin {
                Some(o) => format!("{o}:{line}:{}", d.column),
                None => format!("{line}:{}", d.column),
            };
            format!(
                "{at}: warning: {} dropped from the match: its prerequisites are not met (it needs {})",
                d.text, d.needs
            )
        })
        .collect()
}

fn located(mut e: ParseError, line: usize, origin: Option<&str>) -> String {
    e.line = line;
    if let Some(o) = origin {
        e = e.with_file(o);
    }
    e.to_string()
}

/// Parses one line of rules (numbered `line`) from `origin`.
pub fn parse_line(
    text: &str,
    line: usize,
    origin: Option<&str>,
) -> Result<(Rule, Vec<String>), String> {
    let (rule, dropped) = parse::parse_rule_noting(text).map_err(|e| located(e, line, origin))?;
    Ok((rule, warnings(origin, line, &dropped)))
}

/// Parses a whole rules text; blank lines and `#` comments are skipped.
pub fn parse_text(text: &str, origin: &str) -> Result<(Vec<Rule>, Vec<String>), String> {
    let mut rules = Vec::new();
    let mut warns = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.split('#').next().unwrap_or("");
        if body.trim().is_empty() {
            continue;
        }
        let (r, w) = parse_line(body, i + 1, Some(origin))?;
        rules.push(r);
        warns.extend(w);
    }
    Ok((rules, warns))
}

/// Reads and parses a rules file.
pub fn read_file(path: &std::path::Path) -> Result<(Vec<Rule>, Vec<String>), String> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    parse_text(&text, &shown)
}

/// A `del-flows` match (`--strict`: with its priority) as the rules it
/// selects; empty selects every rule.
pub fn parse_delete(text: &str, strict: bool) -> Result<(RuleFilter, Vec<String>), String> {
    let cmd = if strict {
        FlowModCommand::DeleteStrict
    } else {
        FlowModCommand::Delete
    };
    let fm = parse::parse_flow_mod(text.trim(), cmd).map_err(|e| located(e, 1, None))?;
    Ok((filter(&fm), warnings(None, 1, &fm.dropped)))
}

/// A `mod-flows` flow: the rules it selects and what becomes of them.
pub fn parse_modify(
    text: &str,
    strict: bool,
) -> Result<(RuleFilter, RuleUpdate, Vec<String>), String> {
    let cmd = if strict {
        FlowModCommand::ModifyStrict
    } else {
        FlowModCommand::Modify
    };
    let fm = parse::parse_flow_mod(text.trim(), cmd).map_err(|e| located(e, 1, None))?;
    let instructions = fm.instructions.clone().unwrap_or_default();
    // OVS adds the flow when none matches, unless it selects by cookie.
    let add_if_none = (fm.cookie_mask == 0).then(|| Rule {
        table: fm.table.unwrap_or(0),
        priority: fm.priority,
        cookie: fm.new_cookie.unwrap_or(0),
        idle_timeout: fm.idle_timeout,
        hard_timeout: fm.hard_timeout,
        flags: 0,
        matches: fm.matches,
        instructions: instructions.clone(),
    });
    let update = RuleUpdate {
        instructions,
        new_cookie: fm.new_cookie,
        reset_counts: fm.reset_counts,
        add_if_none,
    };
    Ok((filter(&fm), update, warnings(None, 1, &fm.dropped)))
}

fn filter(fm: &parse::FlowMod) -> RuleFilter {
    RuleFilter {
        table: fm.table,
        matches: fm.matches,
        strict: matches!(
            fm.command,
            FlowModCommand::DeleteStrict | FlowModCommand::ModifyStrict
        ),
        priority: fm.priority,
        cookie: (fm.cookie_mask != 0).then_some((fm.cookie, fm.cookie_mask)),
        out_port: fm.out_port.filter(|p| *p != port::ANY),
    }
}
