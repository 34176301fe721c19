//! The rule-table actor: owns the OpenFlow tables, applies each change
//! (add, delete, replace) atomically as one new version, and broadcasts the
//! new snapshot to every subscriber (handlers, revalidators). It also keeps
//! the rules' packet and byte counters: handlers credit the packets they
//! upcalled, revalidators the traffic of the datapath flows (both with
//! `PushStats`).

use std::collections::HashMap;
use std::sync::Arc;

use actix::prelude::*;

use crate::protocol::{
    DumpRules, GetSnapshot, PushStats, RuleChange, RuleChangeReply, RuleStats, Snapshot, Subscribe,
};
use crate::stats::PipelineStats;
use crate::supervisor::guarded;
use crate::tables::Tables;

pub struct RuleTable {
    tables: Tables,
    /// The last snapshot sent, shared by every subscriber.
    snapshot: Arc<Tables>,
    subscribers: Vec<Recipient<Snapshot>>,
    rule_stats: HashMap<u64, RuleStats>,
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

impl Actor for RuleTable {
    type Context = Context<Self>;
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
        for (id, delta) in msg.0 {
            if self.tables.get(id).is_some() {
                let s = self.rule_stats.entry(id).or_default();
                s.n_packets += delta.n_packets;
                s.n_bytes += delta.n_bytes;
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
