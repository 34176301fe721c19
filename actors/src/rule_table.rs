//! The rule-table actor: owns the OpenFlow tables, applies each change
//! (add, delete, replace) atomically as one new version, and broadcasts the
//! new snapshot to every subscriber (handlers, revalidators). It also keeps
//! the rules' packet and byte counters: handlers credit the packets they
//! upcalled, revalidators the traffic of the datapath flows (both with
//! `PushStats`), and their timeouts: it adds the rules `learn` actions
//! build (`SideEffects`), lowers timeouts for `fin_timeout`, and removes
//! rules whose idle or hard timeout expired (OVS's `rule_expire`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::protocol::{
    DumpRules, GetSnapshot, PushStats, RuleChange, RuleChangeReply, RuleStats, SideEffects,
    Snapshot, Subscribe,
};
use crate::stats::PipelineStats;
use crate::supervisor::guarded;
use crate::tables::{LearnOutcome, RuleEntry, Tables};

/// How often rules are checked for expiry (OVS checks about once a
/// second; timeouts are in seconds).
pub const EXPIRY_INTERVAL: Duration = Duration::from_millis(250);

/// A rule's clock: when it was last modified (a hard timeout counts from
/// here; learning an identical rule again resets it), last matched a packet
/// (an idle timeout counts from here), and its timeouts, which
/// `fin_timeout` may have lowered.
#[derive(Clone, Copy, Debug)]
struct RuleClock {
    modified: Instant,
    used: Instant,
    idle_timeout: u16,
    hard_timeout: u16,
}

impl RuleClock {
    fn of(e: &RuleEntry) -> Self {
        RuleClock {
            modified: e.added,
            used: e.added,
            idle_timeout: e.rule.idle_timeout,
            hard_timeout: e.rule.hard_timeout,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        let after = |since: Instant, secs: u16| {
            secs != 0 && now.saturating_duration_since(since) >= Duration::from_secs(secs.into())
        };
        after(self.modified, self.hard_timeout) || after(self.used, self.idle_timeout)
    }
}

/// OVS's `reduce_timeout`: `max` (when not 0) caps the timeout, and gives
/// one to a rule that had none.
fn reduce_timeout(max: u16, timeout: &mut u16) {
    if max != 0 && (*timeout == 0 || *timeout > max) {
        *timeout = max;
    }
}

pub struct RuleTable {
    tables: Tables,
    /// The last snapshot sent, shared by every subscriber.
    snapshot: Arc<Tables>,
    subscribers: Vec<Recipient<Snapshot>>,
    rule_stats: HashMap<u64, RuleStats>,
    /// Clocks of the rules that have touched them (timeouts, packets,
    /// refreshes); a rule without one counts from when it was added.
    clocks: HashMap<u64, RuleClock>,
    stats: Arc<PipelineStats>,
}

impl RuleTable {
    pub fn new(tables: Tables, stats: Arc<PipelineStats>) -> Self {
        stats
            .rules_version
            .store(tables.version(), std::sync::atomic::Ordering::Relaxed);
        RuleTable {
            snapshot: Arc::new(tables.clone()),
            tables,
            subscribers: Vec::new(),
            rule_stats: HashMap::new(),
            clocks: HashMap::new(),
            stats,
        }
    }

    fn publish(&mut self) {
        // The snapshot shares the indexes built here.
        self.tables.prepare();
        self.snapshot = Arc::new(self.tables.clone());
        let version = self.tables.version();
        self.stats
            .rules_version
            .store(version, std::sync::atomic::Ordering::Relaxed);
        // Counters of rules that no longer exist are dropped.
        let tables = &self.tables;
        self.rule_stats.retain(|id, _| tables.get(*id).is_some());
        self.clocks.retain(|id, _| tables.get(*id).is_some());
        for s in &self.subscribers {
            s.do_send(Snapshot(self.snapshot.clone()));
        }
        tracing::info!(version, rules = self.tables.len(), "rules changed");
    }
}

/// Applies `change` to `tables`; returns how many rules it touched and
/// collects the ids whose counters restart in `reset`.
fn apply(tables: &mut Tables, change: RuleChange, reset: &mut Vec<u64>) -> usize {
    match change {
        RuleChange::Add(rules) => {
            let n = rules.len();
            for r in rules {
                tables.add(r);
            }
            n
        }
        RuleChange::Delete(filter) => tables.delete_where(&filter).len(),
        RuleChange::Modify(filter, update) => {
            let m = tables.modify_where(&filter, &update);
            if update.reset_counts {
                reset.extend(m.modified.iter().map(|e| e.id));
            }
            m.modified.len() + usize::from(m.added.is_some())
        }
        RuleChange::Replace(rules) => {
            let n = rules.len();
            tables.replace_all(rules);
            n
        }
        RuleChange::Bundle(changes) => changes.into_iter().map(|c| apply(tables, c, reset)).sum(),
    }
}

impl RuleTable {
    fn clock(&mut self, id: u64) -> Option<&mut RuleClock> {
        let e = self.tables.get(id)?;
        Some(self.clocks.entry(id).or_insert_with(|| RuleClock::of(e)))
    }

    /// Removes the rules whose timeouts expired.
    fn expire(&mut self) {
        let now = Instant::now();
        let clocks = &self.clocks;
        let doomed: Vec<Arc<RuleEntry>> = self
            .tables
            .rules_with_timeouts()
            .filter(|e| {
                clocks
                    .get(&e.id)
                    .copied()
                    .unwrap_or_else(|| RuleClock::of(e))
                    .expired(now)
            })
            .cloned()
            .collect();
        if doomed.is_empty() {
            return;
        }
        let removed = self.tables.delete(doomed);
        PipelineStats::add(&self.stats.rules_expired, removed.len() as u64);
        self.publish();
    }

    fn apply_side_effects(&mut self, effects: SideEffects) {
        let now = Instant::now();
        let mut changed = false;
        for learned in effects.learned {
            match self.tables.learn(learned) {
                LearnOutcome::Refreshed(id) => {
                    if let Some(c) = self.clock(id) {
                        c.modified = now;
                    }
                }
                LearnOutcome::Added(..) => {
                    changed = true;
                    PipelineStats::add(&self.stats.rules_learned, 1);
                }
                LearnOutcome::OverLimit => PipelineStats::add(&self.stats.learn_over_limit, 1),
            }
        }
        for fin in effects.fin_timeouts {
            if let Some(c) = self.clock(fin.rule) {
                reduce_timeout(fin.idle_timeout, &mut c.idle_timeout);
                reduce_timeout(fin.hard_timeout, &mut c.hard_timeout);
            }
        }
        if changed {
            self.publish();
        }
    }
}

impl Actor for RuleTable {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(EXPIRY_INTERVAL, |t, ctx| {
            let stats = t.stats.clone();
            guarded("rule_table", &stats, ctx, || t.expire());
        });
    }
}

impl Handler<SideEffects> for RuleTable {
    type Result = ();

    fn handle(&mut self, effects: SideEffects, ctx: &mut Context<Self>) {
        let stats = self.stats.clone();
        guarded("rule_table", &stats, ctx, || {
            self.apply_side_effects(effects)
        });
    }
}

impl Supervised for RuleTable {
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!("rule-table restarting");
    }
}

impl Handler<RuleChange> for RuleTable {
    type Result = RuleChangeReply;

    fn handle(&mut self, change: RuleChange, ctx: &mut Context<Self>) -> RuleChangeReply {
        let stats = self.stats.clone();
        let before = self.tables.version();
        let outcome = guarded("rule_table", &stats, ctx, || {
            // Work on a copy so that a panic midway leaves the tables as they were.
            let mut tables = self.tables.clone();
            let mut reset = Vec::new();
            let n = apply(&mut tables, change, &mut reset);
            (tables, n, reset)
        });
        match outcome {
            Some((tables, n_rules, reset)) => {
                self.tables = tables;
                for id in reset {
                    self.rule_stats.remove(&id);
                }
                if self.tables.version() != before {
                    self.publish();
                }
                RuleChangeReply {
                    version: self.tables.version(),
                    n_rules,
                }
            }
            None => RuleChangeReply {
                version: before,
                n_rules: 0,
            },
        }
    }
}

impl Handler<PushStats> for RuleTable {
    type Result = ();

    fn handle(&mut self, msg: PushStats, _: &mut Context<Self>) {
        let now = Instant::now();
        for (id, delta) in msg.0 {
            let Some(e) = self.tables.get(id) else {
                continue;
            };
            let idle = e.rule.idle_timeout != 0;
            let s = self.rule_stats.entry(id).or_default();
            s.n_packets += delta.n_packets;
            s.n_bytes += delta.n_bytes;
            // Only a rule that can idle out needs to know when it was used.
            if delta.n_packets > 0 && (idle || self.clocks.contains_key(&id)) {
                if let Some(c) = self.clock(id) {
                    c.used = now;
                }
            }
        }
    }
}

impl Handler<DumpRules> for RuleTable {
    type Result = MessageResult<DumpRules>;

    fn handle(&mut self, _: DumpRules, _: &mut Context<Self>) -> Self::Result {
        MessageResult(
            self.tables
                .rules()
                .into_iter()
                .map(|r| {
                    let s = self.rule_stats.get(&r.id).copied().unwrap_or_default();
                    (r, s)
                })
                .collect(),
        )
    }
}

impl Handler<GetSnapshot> for RuleTable {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot.clone())
    }
}

impl Handler<Subscribe> for RuleTable {
    type Result = ();

    fn handle(&mut self, msg: Subscribe, _: &mut Context<Self>) {
        msg.0.do_send(Snapshot(self.snapshot.clone()));
        self.subscribers.push(msg.0);
    }
}
