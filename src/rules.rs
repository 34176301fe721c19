//! Rules text as the daemon reads it (a rules file, a `ctl` request):
//! errors that name the file, line and column once, and the warnings
//! `ovs-ofctl` prints when it normalizes a match.

use actors::protocol::RuleChange;
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

/// A `del-flows` match (`--strict`: with its priority) as the change it
/// asks for; empty selects every rule.
pub fn parse_delete(text: &str, strict: bool) -> Result<(RuleChange, Vec<String>), String> {
    let cmd = if strict {
        FlowModCommand::DeleteStrict
    } else {
        FlowModCommand::Delete
    };
    parse_flow_mod(text, cmd)
}

/// A `mod-flows` flow as the change it asks for.
pub fn parse_modify(text: &str, strict: bool) -> Result<(RuleChange, Vec<String>), String> {
    let cmd = if strict {
        FlowModCommand::ModifyStrict
    } else {
        FlowModCommand::Modify
    };
    parse_flow_mod(text, cmd)
}

fn parse_flow_mod(text: &str, cmd: FlowModCommand) -> Result<(RuleChange, Vec<String>), String> {
    let fm = parse::parse_flow_mod(text.trim(), cmd).map_err(|e| located(e, 1, None))?;
    let warnings = warnings(None, 1, &fm.dropped);
    let request = FlowModRequest {
        command: fm.command,
        table: fm.table,
        rule: fm.rule(),
        cookie_filter: (fm.cookie_mask != 0).then_some((fm.cookie, fm.cookie_mask)),
        out_port: fm.out_port,
        new_cookie: fm.new_cookie,
        reset_counts: fm.reset_counts,
        // As `ovs-ofctl` (OpenFlow 1.0) asks: a modify adds the flow when
        // none matches, unless it selects by cookie.
        modify_may_add: fm.cookie_mask == 0,
    };
    Ok((request.into_change(), warnings))
}

/// A flow mod from either front end (`ovs-ofctl` text through `ctl`, a
/// FLOW_MOD over OpenFlow), as the rule table is asked it. The one place
/// a flow mod becomes a [`RuleChange`].
pub struct FlowModRequest {
    pub command: FlowModCommand,
    /// The table it selects (None: every table).
    pub table: Option<u8>,
    /// What an add installs, or a modify adds when nothing matches; its
    /// match (and, when strict, priority) selects the rules changed.
    pub rule: Rule,
    /// `cookie=V/MASK`: only rules whose cookie agrees with V under MASK.
    pub cookie_filter: Option<(u64, u64)>,
    /// Only rules that output to this port; deletes only (OVS's modify
    /// selects with `OFPP_ANY`).
    pub out_port: Option<u32>,
    /// The cookie a modify gives the rules it changes.
    pub new_cookie: Option<u64>,
    /// A modify zeroes the changed rules' counters.
    pub reset_counts: bool,
    /// A modify that selects nothing adds `rule` (OVS's
    /// `modify_may_add_flow`).
    pub modify_may_add: bool,
}

impl FlowModRequest {
    pub fn into_change(self) -> RuleChange {
        let delete = matches!(
            self.command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        );
        let filter = RuleFilter {
            table: self.table,
            matches: self.rule.matches,
            strict: matches!(
                self.command,
                FlowModCommand::DeleteStrict | FlowModCommand::ModifyStrict
            ),
            priority: self.rule.priority,
            cookie: self.cookie_filter,
            out_port: self.out_port.filter(|p| delete && *p != port::ANY),
        };
        match self.command {
            FlowModCommand::Add => RuleChange::Add(vec![self.rule]),
            FlowModCommand::Delete | FlowModCommand::DeleteStrict => {
                RuleChange::Delete(Box::new(filter))
            }
            FlowModCommand::Modify | FlowModCommand::ModifyStrict => {
                let update = RuleUpdate {
                    instructions: self.rule.instructions.clone(),
                    new_cookie: self.new_cookie,
                    reset_counts: self.reset_counts,
                    add_if_none: self.modify_may_add.then_some(self.rule),
                };
                RuleChange::Modify(Box::new(filter), Box::new(update))
            }
        }
    }
}
