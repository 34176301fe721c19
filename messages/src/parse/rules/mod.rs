//! OpenFlow rules in `ovs-ofctl add-flows` syntax, encoded the way
//! `ovs-ofctl -O OpenFlow13` encodes them (OVS's `parse_ofp_str`,
//! `ofpacts_parse_instructions` and `ofpacts_check`).
//!
//! Where OVS would silently drop part of a rule, this parser refuses it
//! instead: a match field whose prerequisites the rule does not meet
//! (`tp_dst=80` without `tcp`, `udp` or `sctp`) is an error rather than
//! being normalized away.
//!
//! Accepted and ignored, as `ovs-ofctl` ignores them or as they do not
//! change forwarding: the flags `send_flow_rem`, `check_overlap`,
//! `reset_counts`, `no_packet_counts`, `no_byte_counts`,
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
pub(crate) mod match_grammar;
#[cfg(test)]
mod tests;

use super::fields::{self, ones, prereqs_hold, FieldInfo, Syntax};
use super::syntax::{
    exact_mask, key_values, parse_field_value, parse_ipv4, parse_mac, parse_port, parse_uint,
    scan_uint, KeyValue,
};
use crate::field::{Field, Prereq};
use crate::flow::*;
use crate::ofp::{
    port, Instructions, Match, NatAction, OfAction, Rule, DEFAULT_PRIORITY, N_TABLES,
};

use action_grammar::*;
use check::*;
pub(crate) use match_grammar::set_match_field;
pub(crate) use match_grammar::PROTOCOLS;
use match_grammar::*;

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
    let text = strip_comment(line);
    parse_line(text).map_err(|e| e.locate(line, 1))
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
        rules.push(parse_line(body).map_err(|e| e.locate(line, i + 1))?);
    }
    Ok(rules)
}

fn strip_comment(line: &str) -> &str {
    line.split('#').next().unwrap_or("")
}

fn parse_line(line: &str) -> Res<Rule> {
    // OVS takes everything after the first "action" as the actions.
    let Some(action_at) = line.find("action") else {
        return Err(err(
            line.len() - line.trim_start().len(),
            "must specify an action",
            line.trim(),
            "actions=... at the end of the rule",
        ));
    };
    let after = &line[action_at..];
    let Some(eq) = after.find('=') else {
        return Err(err(
            action_at,
            "must specify an action",
            after,
            "actions=...",
        ));
    };
    let actions_at = action_at + eq + 1;
    let actions_text = &line[actions_at..];

    let mut rule = Rule {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        matches: Match::catchall(),
        instructions: Instructions::default(),
    };
    let mut written: Vec<Written<'_>> = Vec::new();
    for kv in key_values(&line[..action_at], 0) {
        parse_match_item(&mut rule, &mut written, line, kv)?;
    }
    normalize_match(&mut rule.matches, &written)?;
    check_vlan_pcp(&rule.matches, &written)?;
    rule.instructions = parse_instructions(actions_text, actions_at, &rule)?;
    of13_round_trip(&mut rule.matches);
    Ok(rule)
}
