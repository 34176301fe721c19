//! OpenFlow rules in `ovs-ofctl add-flows` syntax, encoded the way
//! `ovs-ofctl -O OpenFlow13` encodes them (OVS's `parse_ofp_str`,
//! `ofpacts_parse_instructions` and `ofpacts_check`).
//!
//! A match field whose prerequisites the rule does not meet (`tp_dst=80`
//! without `tcp`, `udp` or `sctp`) is dropped, as OVS normalizes the
//! match, and reported as [`Dropped`] so that callers warn as `ovs-ofctl`
//! does. The same text parses for `mod-flows` and `del-flows`
//! ([`parse_flow_mod`]) with the keywords `ovs-ofctl` takes for each.
//!
//! Accepted and ignored, as `ovs-ofctl` ignores them or as they do not
//! change forwarding: the flags `send_flow_rem`, `check_overlap`,
//! `no_packet_counts`, `no_byte_counts`,
//! `no_readonly_table`, `allow_hidden_fields`, `importance=`, and the
//! statistics that `dump-flows` prints (`duration`, `n_packets`,
//! `n_bytes`, `idle_age`, `hard_age`). `apply_actions(...)`, which OVS
//! refuses as redundant, is accepted as a spelling of plain actions.
//!
//! The parts: [`match_grammar`] (match fields and values),
//! [`action_grammar`] (actions and instructions as written), [`ct`] (the
//! conntrack actions), [`check`] (actions checked against the rule and
//! encoded); this file parses a line into them.

use std::fmt;

mod action_grammar;
mod check;
mod ct;
mod group;
pub(crate) mod match_grammar;
mod meter;
#[cfg(test)]
mod tests;

use super::syntax::{
    exact_mask, key_values, parse_field_value, parse_ipv4, parse_mac, parse_port, parse_uint,
    scan_uint, KeyValue,
};
use crate::field::{self, ones, prereqs_hold, FieldInfo, Syntax};
use crate::field::{Field, Prereq};
use crate::flow::*;
use crate::ofp::{
    packet_in_reason, port, ControllerAction, Instructions, Match, NatAction, OfAction, Rule,
    DEFAULT_PRIORITY, N_TABLES,
};

use action_grammar::*;
use check::*;
pub use group::{parse_group, parse_group_id, parse_groups};
pub(crate) use match_grammar::set_match_field;
pub(crate) use match_grammar::PROTOCOLS;
use match_grammar::*;
pub use meter::{parse_meter, parse_meter_id, parse_meters};

/// A rule that does not parse: where, what, and what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// The file the text came from, if the caller named it.
    pub file: Option<String>,
    /// 1-based line number.
    pub line: usize,
    /// 1-based column (in characters) where the offending text starts.
    pub column: usize,
    /// What went wrong, e.g. `bad value for nw_dst`.
    pub what: String,
    /// The offending text.
    pub text: String,
    /// What would have been accepted there.
    pub expected: String,
}

impl ParseError {
    /// Names the file the text came from, for the message.
    pub fn with_file(mut self, file: impl Into<String>) -> Self {
        self.file = Some(file.into());
        self
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}:")?;
        }
        write!(
            f,
            "{}:{}: {}: {:?}: expected {}",
            self.line, self.column, self.what, self.text, self.expected
        )
    }
}

impl std::error::Error for ParseError {}

/// An error located by byte offset in the line being parsed.
struct LineError {
    at: usize,
    what: String,
    text: String,
    expected: String,
}

type Res<T> = Result<T, LineError>;

fn err(at: usize, what: impl Into<String>, text: &str, expected: impl Into<String>) -> LineError {
    LineError {
        at,
        what: what.into(),
        text: text.to_string(),
        expected: expected.into(),
    }
}

impl LineError {
    fn locate(self, line_text: &str, line: usize) -> ParseError {
        let at = self.at.min(line_text.len());
        let column = line_text
            .char_indices()
            .take_while(|(i, _)| *i < at)
            .count()
            + 1;
        ParseError {
            file: None,
            line,
            column,
            what: self.what,
            text: self.text,
            expected: self.expected,
        }
    }
}

/// Parses one rule (one line of an `add-flows` file, without the line
/// break). A `#` starts a comment.
pub fn parse_rule(line: &str) -> Result<Rule, ParseError> {
    parse_rule_noting(line).map(|(rule, _)| rule)
}

/// A match field dropped because the rule does not meet its
/// prerequisites (OVS normalizes the match so, and `ovs-ofctl` warns).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dropped {
    /// 1-based column (in characters) where the field was written.
    pub column: usize,
    /// The field as written, e.g. `tp_dst=80`.
    pub text: String,
    /// What the rule would need to match for the field to stay.
    pub needs: &'static str,
}

/// [`parse_rule`], also returning the match fields that were dropped.
pub fn parse_rule_noting(line: &str) -> Result<(Rule, Vec<Dropped>), ParseError> {
    let fm = parse_flow_mod(line, FlowModCommand::Add)?;
    Ok((fm.rule(), fm.dropped))
}

/// What a flow-mod line asks for; the line is parsed as `ovs-ofctl` parses
/// it for each command (OVS's `parse_ofp_str`).
pub use crate::ofp::FlowModCommand;

/// One parsed flow-mod: `add-flow`, `mod-flows` or `del-flows` text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMod {
    pub command: FlowModCommand,
    /// `table=` (None: every table; an add goes to table 0).
    pub table: Option<u8>,
    /// `priority=` (default 32768): an add's, a strict match's.
    pub priority: u16,
    pub matches: Match,
    /// `cookie=V/MASK`: rules whose cookie agrees with V under MASK.
    pub cookie: u64,
    pub cookie_mask: u64,
    /// `cookie=V` without a mask: the cookie to set.
    pub new_cookie: Option<u64>,
    /// `out_port=` (delete only).
    pub out_port: Option<u32>,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// `reset_counts`: a modify zeroes the counters.
    pub reset_counts: bool,
    /// The actions, for an add or a modify.
    pub instructions: Option<Instructions>,
    pub dropped: Vec<Dropped>,
}

impl FlowMod {
    /// The rule an add installs.
    pub fn rule(&self) -> Rule {
        Rule {
            table: self.table.unwrap_or(0),
            priority: self.priority,
            cookie: self.new_cookie.unwrap_or(0),
            idle_timeout: self.idle_timeout,
            hard_timeout: self.hard_timeout,
            flags: 0,
            matches: self.matches,
            instructions: self.instructions.clone().unwrap_or_default(),
        }
    }
}

/// Parses one flow-mod line for `command`: an add or a modify needs
/// actions; a delete takes a match only (empty: every rule), plus
/// `out_port=`, and `priority=` only when strict.
pub fn parse_flow_mod(line: &str, command: FlowModCommand) -> Result<FlowMod, ParseError> {
    let text = strip_comment(line);
    parse_line(text, command).map_err(|e| e.locate(line, 1))
}

/// Parses a file of rules, one per line; blank lines and `#` comments are
/// skipped. Stops at the first error.
pub fn parse_rules(text: &str) -> Result<Vec<Rule>, ParseError> {
    let mut rules = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = strip_comment(line);
        if body.trim().is_empty() {
            continue;
        }
        let fm = parse_line(body, FlowModCommand::Add).map_err(|e| e.locate(line, i + 1))?;
        rules.push(fm.rule());
    }
    Ok(rules)
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

fn parse_line(line: &str, command: FlowModCommand) -> Res<FlowMod> {
    use FlowModCommand::*;
    let takes_actions = matches!(command, Add | Modify | ModifyStrict);
    // OVS takes everything after the first "action" as the actions.
    let (match_text, actions) = match line.find("action") {
        Some(action_at) if takes_actions => {
            let after = &line[action_at..];
            let Some(eq) = after.find('=') else {
                return Err(err(
                    action_at,
                    "must specify an action",
                    after,
                    "actions=...",
                ));
            };
            (
                &line[..action_at],
                Some((action_at + eq + 1, &line[action_at + eq + 1..])),
            )
        }
        None if takes_actions => {
            return Err(err(
                line.len() - line.trim_start().len(),
                "must specify an action",
                line.trim(),
                "actions=... at the end of the rule",
            ))
        }
        _ => (line, None),
    };

    let mut fm = FlowMod {
        command,
        table: None,
        priority: DEFAULT_PRIORITY,
        matches: Match::catchall(),
        cookie: 0,
        cookie_mask: 0,
        new_cookie: None,
        out_port: None,
        idle_timeout: 0,
        hard_timeout: 0,
        reset_counts: false,
        instructions: None,
        dropped: Vec::new(),
    };
    let mut written: Vec<Written<'_>> = Vec::new();
    for kv in key_values(match_text, 0) {
        parse_match_item(&mut fm, &mut written, line, kv)?;
    }
    fm.dropped = normalize_match(&mut fm.matches, &written, line)?;
    check_vlan_pcp(&fm.matches, &written)?;
    if let Some((actions_at, actions_text)) = actions {
        let rule = fm.rule();
        fm.instructions = Some(parse_instructions(actions_text, actions_at, &rule)?);
    }
    of13_round_trip(&mut fm.matches);
    Ok(fm)
}
