//! The OpenFlow tables as one immutable, versioned snapshot.
//!
//! The rule-table actor owns the one mutable `Tables`; after each change it
//! bumps the version and sends a clone (O(subtables) per table: each
//! subtable's maps are persistent and shared, the subtables themselves sit
//! in a plain vector) to handlers and revalidators, so a translation always
//! sees one version from start to end.

use std::collections::BTreeSet;
use std::sync::Arc;

use messages::flow::{Flow, FlowWildcards};
use messages::group::Group;
use messages::learn::LearnedRule;
use messages::meter::{Meter, MAX_METERS};
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
    /// The rules that may time out, by id: all the expiry pass visits.
    timed: im::OrdMap<u64, Arc<RuleEntry>>,
    next_id: u64,
    /// The groups rules may send packets to (`group:N`), by number. They
    /// are versioned with the rules, as in OVS.
    groups: im::OrdMap<u32, Arc<Group>>,
    /// The meters rules may send packets through (`meter:N`), by number,
    /// versioned with the rules as OVS's.
    meters: im::OrdMap<u32, Arc<MeterEntry>>,
    /// The datapath's ports (OpenFlow port N is datapath port N), when the
    /// daemon runs: versioned with the rules, so that adding or removing
    /// a port translates every flow again. `None`: those of the
    /// translation's `XlateConfig::ports`.
    ports: Option<Arc<BTreeSet<u32>>>,
    /// The ports that are not live (administratively down, or without a
    /// carrier: OVS's `may_enable` false), which fast-failover buckets
    /// watching them skip; versioned with the rules, so that a link going
    /// down or up translates every flow again (OVS's REV_PORT_TOGGLED).
    down_ports: Arc<BTreeSet<u32>>,
    /// OVS's fail-open (`fail_mode = "standalone"` with no controller for
    /// a while): every packet is switched with `NORMAL`, as by OVS's hidden
    /// rule above every OpenFlow priority, which no flow mod can see,
    /// remove or outrank.
    fail_open: bool,
    /// The rule changes made since [`Tables::take_journal`], when kept
    /// ([`Tables::keep_journal`]): the rule-table replays them on a second
    /// copy of the tables ([`Tables::replay`]).
    journal: Option<Journal>,
}

/// What happened to the rules of one copy of the tables, in order, for
/// another copy to do the same ([`Tables::replay`]).
#[derive(Clone, Debug, Default)]
pub struct Journal {
    changes: Vec<RuleOp>,
    /// Every rule was replaced at once ([`Tables::replace_all`]): a copy
    /// catches up by copying.
    replaced_all: bool,
}

impl Journal {
    /// Rules filed and taken out.
    pub fn len(&self) -> usize {
        self.changes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// One rule filed into (`Put`) or taken out of (`Take`) the tables.
#[derive(Clone, Debug)]
enum RuleOp {
    Put(Arc<RuleEntry>),
    Take(Arc<RuleEntry>),
}

/// A meter and the datapath meter it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterEntry {
    pub meter: Meter,
    /// The datapath's meter id: as OVS's `provider_meter_id`, the lowest
    /// id no other meter has, from 0, kept by a modify.
    pub dp_id: u32,
    /// When it was added, for `meter-stats`' duration.
    pub added: std::time::Instant,
}

/// Why a meter change was refused (OpenFlow's `OFPMMFC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MeterModError {
    /// `add-meter` of a meter that exists.
    Exists(u32),
    /// `mod-meter` of one that does not.
    Unknown(u32),
    /// Every datapath meter id is taken.
    OutOfMeters,
}

impl std::fmt::Display for MeterModError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MeterModError::Exists(m) => {
                write!(f, "meter {m} already exists (OFPMMFC_METER_EXISTS)")
            }
            MeterModError::Unknown(m) => {
                write!(f, "meter {m} does not exist (OFPMMFC_UNKNOWN_METER)")
            }
            MeterModError::OutOfMeters => write!(
                f,
                "all {MAX_METERS} datapath meters are in use (OFPMMFC_OUT_OF_METERS)"
            ),
        }
    }
}

impl std::error::Error for MeterModError {}

/// Why a group change was refused (OpenFlow's `OFPGMFC_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupModError {
    /// `add-group` of a group that exists.
    Exists(u32),
    /// `mod-group` of one that does not.
    Unknown(u32),
}

impl std::fmt::Display for GroupModError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupModError::Exists(g) => {
                write!(f, "group {g} already exists (OFPGMFC_GROUP_EXISTS)")
            }
            GroupModError::Unknown(g) => {
                write!(f, "group {g} does not exist (OFPGMFC_UNKNOWN_GROUP)")
            }
        }
    }
}

impl std::error::Error for GroupModError {}

impl Tables {
    /// The first of `fields` (`tun_metadataN` indexes) that a rule or a
    /// group bucket names (a mapping in use cannot be deleted). Printing
    /// names every field a rule matches or acts on (`tun_metadataN`, or
    /// `NXM_NX_TUN_METADATAN` in subfields), so the printed rules are
    /// searched rather than each kind of action.
    pub fn tlv_field_in_use(&self, fields: &[usize]) -> Option<usize> {
        if fields.is_empty() {
            return None;
        }
        let mut printed: Vec<String> = self
            .rules()
            .iter()
            .map(|r| messages::format::ofp_rule::format_rule(&r.rule).to_ascii_lowercase())
            .collect();
        printed.extend(
            self.groups()
                .map(|g| messages::format::ofp_rule::format_group(g).to_ascii_lowercase()),
        );
        fields.iter().copied().find(|i| {
            let name = format!("tun_metadata{i}");
            printed.iter().any(|text| {
                text.match_indices(&name).any(|(at, _)| {
                    !text[at + name.len()..].starts_with(|c: char| c.is_ascii_digit())
                })
            })
        })
    }

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

    /// The datapath's ports, if the tables carry them.
    pub fn ports(&self) -> Option<&BTreeSet<u32>> {
        self.ports.as_deref()
    }

    /// Sets the datapath's ports; a new version if they changed.
    pub fn set_ports(&mut self, ports: BTreeSet<u32>) -> bool {
        if self.ports.as_deref() == Some(&ports) {
            return false;
        }
        self.ports = Some(Arc::new(ports));
        self.version += 1;
        true
    }

    /// Whether port `p` is live (not known to be down).
    pub fn port_live(&self, p: u32) -> bool {
        !self.down_ports.contains(&p)
    }

    /// Sets the ports that are down; a new version if they changed.
    pub fn set_down_ports(&mut self, down: BTreeSet<u32>) -> bool {
        if *self.down_ports == down {
            return false;
        }
        self.down_ports = Arc::new(down);
        self.version += 1;
        true
    }

    /// Whether the switch has failed open (see [`Tables::set_fail_open`]).
    pub fn fail_open(&self) -> bool {
        self.fail_open
    }

    /// Fails open or recovers; a new version if that changed.
    pub fn set_fail_open(&mut self, on: bool) -> bool {
        if self.fail_open == on {
            return false;
        }
        self.fail_open = on;
        self.version += 1;
        true
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
        self.add_replacing(rule).0
    }

    /// [`Tables::add`], returning also the rules it removed: the one it
    /// replaced, and those a `delete_learned` of that one took with it.
    pub fn add_replacing(&mut self, rule: Rule) -> (Arc<RuleEntry>, Vec<Arc<RuleEntry>>) {
        let mut removed = Vec::new();
        let old = self
            .tables
            .get(&rule.table)
            .and_then(|t| t.find_exact(&rule.matches, rule.priority))
            .cloned();
        if let Some(old) = old {
            self.take(&old);
            removed.push(old);
        }
        let entry = self.insert(rule);
        let flushed = self.flush_learned(&removed);
        removed.extend(flushed);
        self.version += 1;
        (entry, removed)
    }

    fn insert(&mut self, rule: Rule) -> Arc<RuleEntry> {
        self.next_id += 1;
        let entry = Arc::new(RuleEntry {
            id: self.next_id,
            rule,
            added: std::time::Instant::now(),
        });
        self.put(entry.clone());
        entry
    }

    /// Files `entry` in its table and by id (replacing the entry with its
    /// id, if any). With [`Tables::take`], the only way rules come and go.
    fn put(&mut self, entry: Arc<RuleEntry>) {
        self.tables
            .entry(entry.rule.table)
            .or_default()
            .insert(entry.clone());
        self.by_id.insert(entry.id, entry.clone());
        if may_time_out(&entry.rule) {
            self.timed.insert(entry.id, entry.clone());
        } else {
            self.timed.remove(&entry.id);
        }
        if let Some(j) = &mut self.journal {
            j.changes.push(RuleOp::Put(entry));
        }
    }

    /// Takes `entry` out of its table (dropped once empty) and the index
    /// by id.
    fn take(&mut self, entry: &Arc<RuleEntry>) {
        if let Some(t) = self.tables.get_mut(&entry.rule.table) {
            t.remove(entry);
            if t.is_empty() {
                self.tables.remove(&entry.rule.table);
            }
        }
        self.by_id.remove(&entry.id);
        self.timed.remove(&entry.id);
        if let Some(j) = &mut self.journal {
            j.changes.push(RuleOp::Take(entry.clone()));
        }
    }

    /// Removes `doomed` (entries of these tables).
    fn remove_entries(&mut self, doomed: &[Arc<RuleEntry>]) {
        for e in doomed {
            self.take(e);
        }
    }

    /// Keeps a journal of rule changes from now on (see
    /// [`Tables::replay`]).
    pub fn keep_journal(&mut self) {
        self.journal.get_or_insert_with(Journal::default);
    }

    /// The rule changes since the journal was kept or last taken; it is
    /// no longer kept.
    pub fn take_journal(&mut self) -> Option<Journal> {
        self.journal.take()
    }

    /// Brings this copy of the tables to `latest`, which it was before the
    /// changes `journal` recorded on another copy: the rules are filed and
    /// taken out as they were there (changing this copy's own indexes in
    /// place when it shares them with no other), the rest is copied.
    pub fn replay(&mut self, journal: Journal, latest: &Tables) {
        if journal.replaced_all {
            *self = latest.clone();
            return;
        }
        let keep = self.journal.take();
        for op in journal.changes {
            match op {
                RuleOp::Put(e) => self.put(e),
                RuleOp::Take(e) => self.take(&e),
            }
        }
        self.journal = keep;
        self.version = latest.version;
        self.next_id = latest.next_id;
        self.groups = latest.groups.clone();
        self.meters = latest.meters.clone();
        self.ports = latest.ports.clone();
        self.down_ports = latest.down_ports.clone();
        self.fail_open = latest.fail_open;
        debug_assert_eq!(self.by_id.len(), latest.by_id.len());
    }

    /// OVS's learned cookies: once no rule is left with a `learn(...,
    /// delete_learned)` for a (table, cookie) that a removed rule had, the
    /// rules of that table with that cookie go too (and so on, for learns
    /// among those). Returns what it removed.
    fn flush_learned(&mut self, removed: &[Arc<RuleEntry>]) -> Vec<Arc<RuleEntry>> {
        let mut flushed = Vec::new();
        let mut pending: Vec<(u8, u64)> = removed
            .iter()
            .flat_map(|e| deleting_learns(&e.rule))
            .collect();
        while let Some((table, cookie)) = pending.pop() {
            let still_held = self
                .by_id
                .values()
                .any(|e| deleting_learns(&e.rule).any(|k| k == (table, cookie)));
            if still_held {
                continue;
            }
            let doomed: Vec<Arc<RuleEntry>> = self
                .tables
                .get(&table)
                .map(|c| {
                    c.iter()
                        .filter(|e| e.rule.cookie == cookie)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            self.remove_entries(&doomed);
            pending.extend(doomed.iter().flat_map(|e| deleting_learns(&e.rule)));
            flushed.extend(doomed);
        }
        flushed
    }

    /// The rule identical to `rule` in every attribute (match, priority,
    /// timeouts, cookie, actions), if the tables hold one.
    pub fn find_identical(&self, rule: &Rule) -> Option<&Arc<RuleEntry>> {
        let e = self
            .tables
            .get(&rule.table)?
            .find_exact(&rule.matches, rule.priority)?;
        (e.rule == *rule).then_some(e)
    }

    /// A rule that `rule` overlaps (OVS's `check_overlap`): one in the same
    /// table at the same priority that some packet could match along with
    /// it. An identical match is no overlap: the add replaces that rule.
    pub fn overlapping(&self, rule: &Rule) -> Option<&Arc<RuleEntry>> {
        let table = self.tables.get(&rule.table)?;
        if table.find_exact(&rule.matches, rule.priority).is_some() {
            return None;
        }
        table
            .iter()
            .find(|e| e.rule.priority == rule.priority && e.rule.matches.overlaps(&rule.matches))
    }

    /// Whether a `learn` with `limit` may add `rule` (OVS's
    /// `ofproto_flow_mod_learn`): an identical rule is only refreshed, so
    /// it always may; otherwise fewer than `limit` rules of its table may
    /// have its cookie.
    pub fn learn_below_limit(&self, rule: &Rule, limit: u32) -> bool {
        if limit == 0 || self.find_identical(rule).is_some() {
            return true;
        }
        let n = self.tables.get(&rule.table).map_or(0, |c| {
            c.iter().filter(|e| e.rule.cookie == rule.cookie).count()
        });
        n < limit as usize
    }

    /// Applies what a `learn` action built: refreshes an identical rule,
    /// or adds (replacing one with the same match and priority) within the
    /// limit.
    pub fn learn(&mut self, learned: LearnedRule) -> LearnOutcome {
        if let Some(e) = self.find_identical(&learned.rule) {
            return LearnOutcome::Refreshed(e.id);
        }
        if !self.learn_below_limit(&learned.rule, learned.limit) {
            return LearnOutcome::OverLimit;
        }
        let (entry, removed) = self.add_replacing(learned.rule);
        LearnOutcome::Added(entry, removed)
    }

    /// Removes the rules `filter` selects; returns them.
    pub fn delete_where(&mut self, filter: &RuleFilter) -> Vec<Arc<RuleEntry>> {
        let doomed: Vec<Arc<RuleEntry>> = self
            .by_id
            .values()
            .filter(|e| filter.selects(&e.rule))
            .cloned()
            .collect();
        self.delete(doomed)
    }

    /// Removes these rules (and what their `delete_learned` takes with
    /// them); returns every rule removed.
    pub fn delete(&mut self, mut doomed: Vec<Arc<RuleEntry>>) -> Vec<Arc<RuleEntry>> {
        doomed.retain(|e| self.by_id.contains_key(&e.id));
        self.remove_entries(&doomed);
        let flushed = self.flush_learned(&doomed);
        doomed.extend(flushed);
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
        for old in selected.iter() {
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
            self.take(old);
            self.put(entry.clone());
            modified.push(entry);
        }
        // Learns with delete_learned that the new actions dropped.
        self.flush_learned(&selected);
        self.version += 1;
        Modified {
            modified,
            added: None,
        }
    }

    /// Group `id`, if it exists.
    pub fn group(&self, id: u32) -> Option<&Arc<Group>> {
        self.groups.get(&id)
    }

    /// Every group, by number.
    pub fn groups(&self) -> impl Iterator<Item = &Arc<Group>> {
        self.groups.values()
    }

    /// `add-group`: refused if the group exists.
    pub fn add_group(&mut self, group: Group) -> Result<(), GroupModError> {
        if self.groups.contains_key(&group.id) {
            return Err(GroupModError::Exists(group.id));
        }
        self.groups.insert(group.id, Arc::new(group));
        self.version += 1;
        Ok(())
    }

    /// `mod-group`: replaces a group that exists.
    pub fn modify_group(&mut self, group: Group) -> Result<(), GroupModError> {
        if !self.groups.contains_key(&group.id) {
            return Err(GroupModError::Unknown(group.id));
        }
        self.groups.insert(group.id, Arc::new(group));
        self.version += 1;
        Ok(())
    }

    /// `del-groups`: group `id`, or every group. As in OpenFlow (and OVS),
    /// the rules that send to a deleted group are deleted with it; they
    /// are returned.
    pub fn delete_groups(&mut self, id: Option<u32>) -> (usize, Vec<Arc<RuleEntry>>) {
        let doomed: Vec<u32> = match id {
            Some(g) => self
                .groups
                .contains_key(&g)
                .then_some(g)
                .into_iter()
                .collect(),
            None => self.groups.keys().copied().collect(),
        };
        for g in &doomed {
            self.groups.remove(g);
        }
        let users =
            self.remove_rules_where(|e| e.rule.groups_used().iter().any(|g| doomed.contains(g)));
        if !doomed.is_empty() {
            self.version += 1;
        }
        (doomed.len(), users)
    }

    /// Removes the rules `doomed` picks (those that use a deleted group or
    /// meter) from their tables and indexes; answers them. The caller
    /// moves the version.
    fn remove_rules_where(&mut self, doomed: impl Fn(&RuleEntry) -> bool) -> Vec<Arc<RuleEntry>> {
        let users: Vec<Arc<RuleEntry>> =
            self.by_id.values().filter(|e| doomed(e)).cloned().collect();
        self.remove_entries(&users);
        users
    }

    /// Meter `id`, if it exists.
    pub fn meter(&self, id: u32) -> Option<&Arc<MeterEntry>> {
        self.meters.get(&id)
    }

    /// Every meter, by number.
    pub fn meters(&self) -> impl Iterator<Item = &Arc<MeterEntry>> {
        self.meters.values()
    }

    /// How many rules send to group `id` (`ref_count`).
    pub fn group_users(&self, id: u32) -> usize {
        self.by_id
            .values()
            .filter(|e| e.rule.groups_used().contains(&id))
            .count()
    }

    /// How many rules send packets through meter `id` (`flow_count`).
    pub fn meter_users(&self, id: u32) -> usize {
        self.by_id
            .values()
            .filter(|e| e.rule.instructions.meter == Some(id))
            .count()
    }

    /// `add-meter`: refused if the meter exists; answers the datapath
    /// meter id it was given.
    pub fn add_meter(&mut self, meter: Meter) -> Result<u32, MeterModError> {
        if self.meters.contains_key(&meter.id) {
            return Err(MeterModError::Exists(meter.id));
        }
        let taken: std::collections::BTreeSet<u32> =
            self.meters.values().map(|e| e.dp_id).collect();
        let dp_id = (0..MAX_METERS)
            .find(|i| !taken.contains(i))
            .ok_or(MeterModError::OutOfMeters)?;
        self.meters.insert(
            meter.id,
            Arc::new(MeterEntry {
                meter,
                dp_id,
                added: std::time::Instant::now(),
            }),
        );
        self.version += 1;
        Ok(dp_id)
    }

    /// `mod-meter`: replaces a meter that exists, on the same datapath
    /// meter; answers its id.
    pub fn modify_meter(&mut self, meter: Meter) -> Result<u32, MeterModError> {
        let old = self
            .meters
            .get(&meter.id)
            .ok_or(MeterModError::Unknown(meter.id))?;
        let entry = MeterEntry {
            meter,
            dp_id: old.dp_id,
            added: old.added,
        };
        let dp_id = entry.dp_id;
        self.meters.insert(entry.meter.id, Arc::new(entry));
        self.version += 1;
        Ok(dp_id)
    }

    /// `del-meters`: meter `id`, or every meter. As in OVS the rules that
    /// use a deleted meter go with it. Answers the meters deleted and
    /// those rules.
    pub fn delete_meters(
        &mut self,
        id: Option<u32>,
    ) -> (Vec<Arc<MeterEntry>>, Vec<Arc<RuleEntry>>) {
        let doomed: Vec<Arc<MeterEntry>> = match id {
            Some(m) => self.meters.remove(&m).into_iter().collect(),
            None => std::mem::take(&mut self.meters).values().cloned().collect(),
        };
        let ids: Vec<u32> = doomed.iter().map(|e| e.meter.id).collect();
        let users = self
            .remove_rules_where(|e| e.rule.instructions.meter.is_some_and(|m| ids.contains(&m)));
        if !doomed.is_empty() {
            self.version += 1;
        }
        (doomed, users)
    }

    /// Replaces every rule with `rules`, as one change (the groups and
    /// meters stay).
    pub fn replace_all(&mut self, rules: Vec<Rule>) {
        let mut fresh = Tables {
            next_id: self.next_id,
            groups: self.groups.clone(),
            meters: self.meters.clone(),
            ports: self.ports.clone(),
            down_ports: self.down_ports.clone(),
            fail_open: self.fail_open,
            ..Tables::default()
        };
        for r in rules {
            fresh.add_replacing(r);
        }
        fresh.version = self.version + 1;
        if self.journal.is_some() {
            fresh.journal = Some(Journal {
                changes: Vec::new(),
                replaced_all: true,
            });
        }
        *self = fresh;
    }

    /// The rules with an idle or hard timeout, or a `fin_timeout` that
    /// may give them one (kept apart, so that the expiry pass does not
    /// walk every rule).
    pub fn rules_with_timeouts(&self) -> impl Iterator<Item = &Arc<RuleEntry>> {
        self.timed.values()
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

    /// [`Tables::lookup`] while a translation adds the rules of `pending`
    /// to `table`: see [`Classifier::lookup_pending`].
    pub fn lookup_pending<'a>(
        &'a self,
        table: u8,
        pending: &'a Classifier,
        flow: &Flow,
        wc: &mut FlowWildcards,
    ) -> Option<&'a Arc<RuleEntry>> {
        match self.tables.get(&table) {
            Some(c) => c.lookup_pending(pending, flow, wc),
            None => {
                // Nothing can match; the pending rules still un-wildcard.
                let _ = Classifier::new().lookup_pending(pending, flow, wc);
                None
            }
        }
    }

    /// The classifier of `table`, if it has rules.
    pub fn table(&self, table: u8) -> Option<&Classifier> {
        self.tables.get(&table)
    }
}

/// What [`Tables::learn`] did.
#[derive(Debug)]
pub enum LearnOutcome {
    /// An identical rule was there (its id): only its timeouts restart.
    Refreshed(u64),
    /// The rule was added; the rules it replaced (or that went with them).
    Added(Arc<RuleEntry>, Vec<Arc<RuleEntry>>),
    /// The learn's limit was reached: nothing changed.
    OverLimit,
}

/// Whether `rule` has an idle or hard timeout, or a `fin_timeout` that may
/// give it one.
fn may_time_out(r: &Rule) -> bool {
    r.idle_timeout != 0
        || r.hard_timeout != 0
        || r.instructions
            .apply
            .iter()
            .any(|a| matches!(a, OfAction::FinTimeout { .. }))
}

/// The (table, cookie) of each `learn(..., delete_learned)` of a rule.
fn deleting_learns(rule: &Rule) -> impl Iterator<Item = (u8, u64)> + '_ {
    let ins = &rule.instructions;
    ins.apply
        .iter()
        .chain(ins.write_actions.iter().flatten())
        .filter_map(|a| match a {
            OfAction::Learn(l) if l.delete_learned => Some((l.table, l.cookie)),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::field::Field;
    use messages::learn::Learn;
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

    /// What OVS 3.1 answers (checked on ovs-peer) to check_overlap adds
    /// next to `priority=10,tcp,tp_dst=80` and `priority=10,tcp`.
    #[test]
    fn check_overlap_finds_what_ovs_refuses() {
        let t = tables(&[
            "priority=10,tcp,tp_dst=80,actions=output:2",
            "priority=10,tcp,actions=output:1",
        ]);
        let overlaps = |l: &str| t.overlapping(&parse_rule(l).unwrap()).is_some();
        assert!(overlaps("priority=10,ip,actions=drop"));
        assert!(overlaps("priority=10,tcp,tp_dst=81,actions=drop"));
        assert!(
            !overlaps("priority=10,tcp,actions=drop"),
            "identical: replaced"
        );
        assert!(!overlaps("priority=10,udp,actions=drop"));
        assert!(!overlaps("priority=11,ip,actions=drop"));
        assert!(!overlaps("table=1,priority=10,ip,actions=drop"));
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

    fn learned(mac: u128, port: u32, cookie: u64) -> LearnedRule {
        let mut m = Match::catchall();
        m.set_field(Field::EthDst, mac);
        LearnedRule {
            rule: Rule {
                table: 10,
                priority: 1,
                cookie,
                idle_timeout: 0,
                hard_timeout: 300,
                flags: 0,
                matches: m,
                instructions: Instructions {
                    apply: vec![OfAction::Output { port, max_len: 0 }],
                    ..Instructions::default()
                },
            },
            limit: 2,
        }
    }

    fn learner(cookie: u64) -> Rule {
        Rule {
            table: 0,
            priority: 1,
            cookie: 0,
            idle_timeout: 0,
            hard_timeout: 0,
            flags: 0,
            matches: Match::catchall(),
            instructions: Instructions {
                apply: vec![OfAction::Learn(Box::new(Learn {
                    table: 10,
                    cookie,
                    delete_learned: true,
                    ..Learn::default()
                }))],
                ..Instructions::default()
            },
        }
    }

    #[test]
    fn learning_adds_refreshes_replaces_and_stops_at_the_limit() {
        let mut t = Tables::new();
        let LearnOutcome::Added(first, _) = t.learn(learned(1, 1, 7)) else {
            panic!("not added")
        };
        let v = t.version();
        // Identical: refreshed, no new version.
        assert!(matches!(t.learn(learned(1, 1, 7)), LearnOutcome::Refreshed(id) if id == first.id));
        assert_eq!(t.version(), v);
        // The MAC moved: the rule is replaced.
        assert!(
            matches!(t.learn(learned(1, 2, 7)), LearnOutcome::Added(_, ref old) if old.len() == 1)
        );
        assert!(matches!(t.learn(learned(2, 1, 7)), LearnOutcome::Added(..)));
        // Two rules with cookie 7 in table 10: the limit (2) is reached,
        // for new rules and for changed ones alike.
        assert!(matches!(t.learn(learned(3, 1, 7)), LearnOutcome::OverLimit));
        assert!(matches!(t.learn(learned(2, 3, 7)), LearnOutcome::OverLimit));
        assert!(!t.learn_below_limit(&learned(3, 1, 7).rule, 2));
        // Another cookie counts apart.
        assert!(matches!(t.learn(learned(3, 1, 8)), LearnOutcome::Added(..)));
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn delete_learned_goes_with_the_last_rule_that_learns_so() {
        let mut t = Tables::new();
        let a = t.add(learner(7));
        let mut other = learner(7);
        other.priority = 2;
        let b = t.add(other);
        t.learn(learned(1, 1, 7));
        t.learn(learned(2, 1, 9));
        // One learner left: the learned rules stay.
        assert_eq!(t.delete(vec![a]).len(), 1);
        assert_eq!(t.len(), 3);
        // The last one takes the rules of table 10 with cookie 7 along.
        let removed = t.delete(vec![b]);
        assert_eq!(removed.len(), 2);
        assert_eq!(t.len(), 1);
        assert_eq!(t.rules()[0].rule.cookie, 9);
    }

    /// One step of [`a_replayed_copy_equals_the_changed_one`]'s changes.
    #[derive(Clone, Debug)]
    enum Step {
        Add(u16, u8, u8),
        Delete(u8),
        Modify(u8),
        Expire,
    }

    fn step() -> impl proptest::strategy::Strategy<Value = Step> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0u16..4, 0u8..16, 0u8..2).prop_map(|(p, d, t)| Step::Add(p, d, t)),
            1 => (0u8..16).prop_map(Step::Delete),
            1 => (0u8..16).prop_map(Step::Modify),
            1 => Just(Step::Expire),
        ]
    }

    /// What each rule of `t` is, and which rule each of a few packets
    /// meets, with the bits the lookup examined.
    fn observed(t: &Tables) -> (Vec<(u64, Rule)>, Vec<String>) {
        let rules = t.rules().iter().map(|e| (e.id, e.rule.clone())).collect();
        let mut looked = Vec::new();
        for table in 0..2 {
            for d in 0u32..16 {
                for port in [80u16, 81] {
                    let mut f = Flow::default();
                    Field::EthType.set(&mut f, 0x0800);
                    Field::IpProto.set(&mut f, 6);
                    Field::Ipv4Dst.set(&mut f, u128::from(0x0a00_0000 | d));
                    Field::TcpDst.set(&mut f, u128::from(port));
                    let mut wc = FlowWildcards::default();
                    let id = t.lookup(table, &f, &mut wc).map(|e| e.id);
                    looked.push(format!("{id:?} {wc:?}"));
                }
            }
        }
        (rules, looked)
    }

    proptest::proptest! {
        /// The rule-table's spare copy: the tables as they were, given the
        /// journal of the changes made since on another copy, equal that
        /// copy (rules, lookups, wildcards), and lookups on it need no
        /// index built.
        #[test]
        fn a_replayed_copy_equals_the_changed_one(
            steps in proptest::collection::vec(proptest::collection::vec(step(), 1..12), 1..6),
        ) {
            let mut master = tables(&["priority=1,ip,actions=drop"]);
            master.prepare();
            let mut spare = master.clone();
            master.keep_journal();
            for version in steps {
                for s in version {
                    match s {
                        Step::Add(p, d, t) => {
                            let text = format!(
                                "table={t},priority={},tcp,nw_dst=10.0.0.{d}/{},tp_dst={},idle_timeout={},actions=output:{}",
                                10 + p,
                                if d % 3 == 0 { 24 } else { 32 },
                                80 + u16::from(d % 2),
                                p % 2,
                                d
                            );
                            master.add(parse_rule(&text).unwrap());
                        }
                        Step::Delete(d) => {
                            master.delete_where(&filter(&format!("tcp,nw_dst=10.0.0.{d}")));
                        }
                        Step::Modify(d) => {
                            let update = RuleUpdate {
                                instructions: parse_rule("actions=output:99").unwrap().instructions,
                                new_cookie: None,
                                reset_counts: false,
                                add_if_none: None,
                            };
                            master.modify_where(&filter(&format!("tcp,tp_dst=8{}", d % 2)), &update);
                        }
                        Step::Expire => {
                            let timed: Vec<_> = master.rules_with_timeouts().take(2).cloned().collect();
                            master.delete(timed);
                        }
                    }
                }
                master.prepare();
                let journal = master.take_journal().expect("kept");
                master.keep_journal();
                spare.replay(journal, &master);
                proptest::prop_assert_eq!(spare.version(), master.version());
                proptest::prop_assert_eq!(observed(&spare), observed(&master));
            }
        }
    }
}
