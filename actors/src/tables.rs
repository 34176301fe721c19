//! The OpenFlow tables as one immutable, versioned snapshot.
//!
//! The rule-table actor owns the one mutable `Tables`; after each change it
//! bumps the version and sends a clone (O(1): every map inside is
//! persistent) to handlers and revalidators, so a translation always sees
//! one version from start to end.

use std::sync::Arc;

use messages::flow::{Flow, FlowWildcards};
use messages::ofp::{Match, Rule};

use crate::classifier::Classifier;
pub use crate::classifier::RuleEntry;

/// Which rules a delete (or a dump) selects, as `ovs-ofctl del-flows` does.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RuleFilter {
    /// Only this table (None: all tables).
    pub table: Option<u8>,
    /// Non-strict: rules at least as specific as this match. Strict: rules
    /// with exactly this match (and `priority`).
    pub matches: Match,
    pub strict: bool,
    pub priority: Option<u16>,
    /// `cookie=value/mask`.
    pub cookie: Option<(u64, u64)>,
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
        if self.strict {
            return self.priority.is_none_or(|p| p == r.priority)
                && r.matches.mask == self.matches.mask
                && r.matches.flow == self.matches.flow;
        }
        let m = &r.matches;
        // Every bit the filter names is matched by the rule, to the same value.
        m.mask.masked(&self.matches.mask) == self.matches.mask
            && m.flow.masked(&self.matches.mask) == self.matches.flow
    }
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
