//! The OpenFlow tables as one immutable, versioned snapshot.
//!
//! The rule-table actor owns the one mutable `Tables`; after each change it
//! bumps the version and sends a clone (O(subtables) per table: each
//! subtable's maps are persistent and shared, the subtables themselves sit
//! in a plain vector) to handlers and revalidators, so a translation always
//! sees one version from start to end.

use std::sync::Arc;

use messages::flow::{Flow, FlowWildcards};
use messages::ofp::{port, Instructions, Match, OfAction, Rule};

use crate::classifier::Classifier;
pub use crate::classifier::RuleEntry;

/// Which rules a flow-mod's delete or modify selects, with OVS's semantics
/// (`ofproto`'s `rule_criteria`): the table, the match (loose or strict),
/// the cookie under a mask and an output port. OpenFlow's
/// OFPFC_DELETE(_STRICT) and OFPFC_MODIFY(_STRICT) and `ctl del-flows` /
/// `mod-flows` all select through this.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFilter {
    /// Only this table (None: all tables, OpenFlow's table 0xff).
    pub table: Option<u8>,
    /// Loose: rules at least as specific as this match (every bit it
    /// names, matched to the same value). Strict: rules with exactly this
    /// match and `priority`.
    pub matches: Match,
    pub strict: bool,
    /// Compared only when `strict`.
    pub priority: u16,
    /// `(value, mask)`: rules whose cookie agrees with `value` under
    /// `mask`. None (or a zero mask): any cookie.
    pub cookie: Option<(u64, u64)>,
    /// Rules with an action that outputs to this port (an `output`, in any
    /// instruction; `port::CONTROLLER` also selects `controller`). None:
    /// any (OFPP_ANY). OpenFlow's modify ignores it; delete honours it.
    pub out_port: Option<u32>,
}

impl RuleFilter {
    /// Selects every rule.
    pub fn all() -> Self {
        Self::default()
    }

    pub fn selects(&self, r: &Rule) -> bool {
        if self.table.is_some_and(|t| t != r.table) {
            return false;
        }
        if let Some((value, mask)) = self.cookie {
            if r.cookie & mask != value & mask {
                return false;
            }
        }
        if let Some(p) = self.out_port {
            if !outputs_to(&r.instructions, p) {
                return false;
            }
        }
        if self.strict {
            return self.priority == r.priority
                && r.matches.mask == self.matches.mask
                && r.matches.flow == self.matches.flow;
        }
        let m = &r.matches;
        // Every bit the filter names is matched by the rule, to the same value.
        m.mask.masked(&self.matches.mask) == self.matches.mask
            && m.flow.masked(&self.matches.mask) == self.matches.flow
    }
}

/// OVS's `ofpacts_output_to_port` over every instruction's actions.
fn outputs_to(ins: &Instructions, p: u32) -> bool {
    ins.apply
        .iter()
        .chain(ins.write_actions.iter().flatten())
        .any(|a| match a {
            OfAction::Output { port, .. } => *port == p,
            OfAction::Controller { .. } => p == port::CONTROLLER,
            _ => false,
        })
}

/// What a modify (OFPFC_MODIFY(_STRICT), `ctl mod-flows`) does to each
/// rule its filter selects: new instructions; the cookie, timeouts and
/// counters stay unless told otherwise (as OVS's `replace_rule_start`
/// keeps them for a modify).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleUpdate {
    pub instructions: Instructions,
    /// A new cookie for the rules (`cookie=V` without a mask).
    pub new_cookie: Option<u64>,
    /// Zero the rules' packet and byte counters (`reset_counts`).
    pub reset_counts: bool,
    /// Added when the filter selects no rule. OVS adds one unless the
    /// modify selects by a cookie mask (`modify_may_add_flow`), and never
    /// for an OpenFlow 1.1+ modify: the caller decides.
    pub add_if_none: Option<Rule>,
}

/// What a modify did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Modified {
    /// The rules modified (their ids do not change).
    pub modified: Vec<Arc<RuleEntry>>,
    /// The rule added because none was selected.
    pub added: Option<Arc<RuleEntry>>,
}

/// Every OpenFlow table, versioned.
#[derive(Clone, Debug, Default)]
pub struct Tables {
    version: u64,
    tables: im::OrdMap<u8, Classifier>,
    by_id: im::OrdMap<u64, Arc<RuleEntry>>,
    next_id: u64,
}

impl Tables {
    pub fn new() -> Self {
        Self::default()
    }

    /// Tables holding `rules` (added in order, later ones replacing earlier
    /// ones with the same table, priority and match).
    pub fn from_rules(rules: impl IntoIterator<Item = Rule>) -> Self {
        let mut t = Tables::new();
        for r in rules {
            t.add(r);
        }
        t
    }

    /// Builds the lookup indexes that changes dropped, in every table: the
    /// rule-table does it before publishing a snapshot, so that a
    /// handler's lookup never builds an index (about 140 ms for a table
    /// of 100 000 rules) or waits for another thread building it.
    pub fn prepare(&self) {
        for (_, c) in self.tables.iter() {
            c.prepare();
        }
    }

    /// Whether every table's lookup indexes are built.
    pub fn is_prepared(&self) -> bool {
        self.tables.iter().all(|(_, c)| c.is_prepared())
    }

    /// The version, bumped by every change.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Adds a rule (OpenFlow "add": one with the same table, priority and
    /// match is replaced). Returns the new entry.
    pub fn add(&mut self, rule: Rule) -> Arc<RuleEntry> {
        let table = self.tables.entry(rule.table).or_default();
        if let Some(old) = table.find_exact(&rule.matches, rule.priority).cloned() {
            table.remove(&old);
            self.by_id.remove(&old.id);
        }
        self.next_id += 1;
        let entry = Arc::new(RuleEntry {
            id: self.next_id,
            rule,
            added: std::time::Instant::now(),
        });
        table.insert(entry.clone());
        self.by_id.insert(entry.id, entry.clone());
        self.version += 1;
        entry
    }

    /// Removes the rules `filter` selects; returns them.
    pub fn delete_where(&mut self, filter: &RuleFilter) -> Vec<Arc<RuleEntry>> {
        let doomed: Vec<Arc<RuleEntry>> = self
            .by_id
            .values()
            .filter(|e| filter.selects(&e.rule))
            .cloned()
            .collect();
        for e in &doomed {
            if let Some(t) = self.tables.get_mut(&e.rule.table) {
                t.remove(e);
                if t.is_empty() {
                    self.tables.remove(&e.rule.table);
                }
            }
            self.by_id.remove(&e.id);
        }
        if !doomed.is_empty() {
            self.version += 1;
        }
        doomed
    }

    /// Modifies the rules `filter` selects, as one change (one version);
    /// adds `update.add_if_none` when it selects none.
    pub fn modify_where(&mut self, filter: &RuleFilter, update: &RuleUpdate) -> Modified {
        let selected: Vec<Arc<RuleEntry>> = self
            .by_id
            .values()
            .filter(|e| filter.selects(&e.rule))
            .cloned()
            .collect();
        if selected.is_empty() {
            let added = update.add_if_none.clone().map(|r| self.add(r));
            return Modified {
                modified: Vec::new(),
                added,
            };
        }
        let mut modified = Vec::with_capacity(selected.len());
        for old in selected {
            let mut rule = old.rule.clone();
            rule.instructions = update.instructions.clone();
            if let Some(c) = update.new_cookie {
                rule.cookie = c;
            }
            let entry = Arc::new(RuleEntry {
                id: old.id,
                rule,
                added: old.added,
            });
            let table = self.tables.entry(old.rule.table).or_default();
            table.remove(&old);
            table.insert(entry.clone());
            self.by_id.insert(entry.id, entry.clone());
            modified.push(entry);
        }
        self.version += 1;
        Modified {
            modified,
            added: None,
        }
    }

    /// Replaces every rule with `rules`, as one change.
    pub fn replace_all(&mut self, rules: Vec<Rule>) {
        let mut fresh = Tables {
            next_id: self.next_id,
            ..Tables::default()
        };
        for r in rules {
            fresh.add(r);
        }
        fresh.version = self.version + 1;
        *self = fresh;
    }

    /// The rule with this id.
    pub fn get(&self, id: u64) -> Option<&Arc<RuleEntry>> {
        self.by_id.get(&id)
    }

    /// Every rule, by table, then by descending priority.
    pub fn rules(&self) -> Vec<Arc<RuleEntry>> {
        let mut all: Vec<Arc<RuleEntry>> = self.by_id.values().cloned().collect();
        all.sort_by(|a, b| {
            (a.rule.table, std::cmp::Reverse(a.rule.priority), a.id).cmp(&(
                b.rule.table,
                std::cmp::Reverse(b.rule.priority),
                b.id,
            ))
        });
        all
    }

    /// Looks `flow` up in `table`, tracking wildcards.
    pub fn lookup(
        &self,
        table: u8,
        flow: &Flow,
        wc: &mut FlowWildcards,
    ) -> Option<&Arc<RuleEntry>> {
        self.tables.get(&table)?.lookup(flow, wc)
    }

    /// The classifier of `table`, if it has rules.
    pub fn table(&self, table: u8) -> Option<&Classifier> {
        self.tables.get(&table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::parse::rules::parse_rule;

    fn tables(lines: &[&str]) -> Tables {
        Tables::from_rules(lines.iter().map(|l| parse_rule(l).unwrap()))
    }

    fn filter(text: &str) -> RuleFilter {
        let r = parse_rule(&format!("{text},actions=drop")).unwrap();
        RuleFilter {
            matches: r.matches,
            priority: r.priority,
            ..RuleFilter::all()
        }
    }

    fn priorities(t: &Tables) -> Vec<u16> {
        t.rules().iter().map(|e| e.rule.priority).collect()
    }

    const RULES: &[&str] = &[
        "table=0,priority=300,cookie=0x12,udp,tp_dst=7777,actions=drop",
        "table=0,priority=200,cookie=0x22,udp,actions=output:2",
        "table=1,priority=100,cookie=0x13,udp,tp_dst=7777,actions=output:3,controller",
        "table=0,priority=50,ip,actions=write_actions(output:4)",
    ];

    #[test]
    fn loose_delete_selects_rules_at_least_as_specific() {
        let mut t = tables(RULES);
        // `udp` selects every UDP rule, not the plain `ip` one.
        assert_eq!(t.delete_where(&filter("udp")).len(), 3);
        assert_eq!(priorities(&t), vec![50]);
        let mut t = tables(RULES);
        let f = RuleFilter {
            table: Some(0),
            ..filter("udp,tp_dst=7777")
        };
        assert_eq!(t.delete_where(&f).len(), 1);
        assert_eq!(priorities(&t), vec![200, 50, 100]);
    }

    #[test]
    fn strict_delete_needs_the_same_match_and_priority() {
        let mut t = tables(RULES);
        let f = RuleFilter {
            strict: true,
            ..filter("priority=200,udp,tp_dst=7777")
        };
        assert!(t.delete_where(&f).is_empty(), "priority differs");
        let f = RuleFilter {
            strict: true,
            ..filter("priority=200,udp")
        };
        assert_eq!(t.delete_where(&f).len(), 1);
        let f = RuleFilter {
            strict: true,
            ..filter("priority=300,ip")
        };
        assert!(t.delete_where(&f).is_empty(), "strict is not loose");
    }

    #[test]
    fn cookie_mask_and_out_port_narrow_the_selection() {
        let mut t = tables(RULES);
        let f = RuleFilter {
            cookie: Some((0x20, 0xf0)),
            ..RuleFilter::all()
        };
        assert_eq!(t.delete_where(&f).len(), 1);
        assert_eq!(priorities(&t), vec![300, 50, 100]);
        for (p, n) in [(3, 1), (4, 1), (port::CONTROLLER, 1), (9, 0), (2, 1)] {
            let mut t = tables(RULES);
            let f = RuleFilter {
                out_port: Some(p),
                ..RuleFilter::all()
            };
            assert_eq!(t.delete_where(&f).len(), n, "out_port {p:#x}");
        }
    }

    #[test]
    fn modify_keeps_ids_and_cookies_and_adds_only_when_asked() {
        let mut t = tables(RULES);
        let new = parse_rule("actions=output:9").unwrap().instructions;
        let before = t.version();
        let ids: Vec<u64> = t.rules().iter().map(|e| e.id).collect();
        let update = RuleUpdate {
            instructions: new.clone(),
            new_cookie: None,
            reset_counts: false,
            add_if_none: None,
        };
        let m = t.modify_where(&filter("udp"), &update);
        assert_eq!(m.modified.len(), 3);
        assert_eq!(t.version(), before + 1, "one change, one version");
        assert_eq!(t.rules().iter().map(|e| e.id).collect::<Vec<_>>(), ids);
        for e in t.rules() {
            if e.rule.priority != 50 {
                assert_eq!(e.rule.instructions, new);
                assert_ne!(e.rule.cookie, 0);
            }
        }
        // Nothing selected: added only with `add_if_none`.
        let added = parse_rule("priority=7,tcp,actions=output:9").unwrap();
        assert_eq!(t.modify_where(&filter("tcp"), &update), Modified::default());
        let m = t.modify_where(
            &filter("tcp"),
            &RuleUpdate {
                add_if_none: Some(added.clone()),
                new_cookie: Some(5),
                ..update
            },
        );
        assert_eq!(m.added.map(|e| e.rule.clone()), Some(added));
        assert_eq!(t.len(), 5);
    }
}
