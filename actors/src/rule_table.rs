//! The rule-table actor: owns the OpenFlow tables, applies each change
//! (add, delete, replace) atomically as one new version, and broadcasts the
//! new snapshot to every subscriber (handlers, revalidators). It also keeps
//! the rules' packet and byte counters: handlers credit the packets they
//! upcalled, revalidators the traffic of the datapath flows (both with
//! `PushStats`), and their timeouts: it adds the rules `learn` actions
//! build (`SideEffects`), lowers timeouts for `fin_timeout`, and removes
//! rules whose idle or hard timeout expired (OVS's `rule_expire`).
//! Removed rules that asked for it (`send_flow_rem`) go to the OpenFlow
//! connections as [`RemovedRule`]s, for their FLOW_REMOVED messages.
//! Groups' counters are kept here too, credited by the same `PushStats`
//! (the translation lists the buckets it ran beside its rules).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::fanout::Fanout;
use crate::protocol::{
    credited_group, AddUnlessOverlapping, ChangePorts, DumpGroupStats, DumpRules, GetSnapshot,
    GroupMod, GroupModReply, MeterMod, MeterModReply, PushStats, RuleChange, RuleChangeReply,
    RuleStats, SetFailOpen, SideEffects,
};
use crate::published::Published;
use crate::stats::PipelineStats;
use crate::supervisor::guarded;
use crate::tables::{GroupModError, Journal, LearnOutcome, MeterModError, RuleEntry, Tables};
use messages::ofp::flow_flags;

/// "rules changed" lines: a controller or a script may change rules many
/// times a second.
static CHANGE_LOG: messages::log_limit::RateLimit = messages::log_limit::RateLimit::new(60, 100);

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

    /// Why the rule expired by `now`, if it did (the hard timeout first,
    /// as OVS checks it).
    fn expired(&self, now: Instant) -> Option<RemovalReason> {
        let after = |since: Instant, secs: u16| {
            secs != 0 && now.saturating_duration_since(since) >= Duration::from_secs(secs.into())
        };
        if after(self.modified, self.hard_timeout) {
            Some(RemovalReason::HardTimeout)
        } else if after(self.used, self.idle_timeout) {
            Some(RemovalReason::IdleTimeout)
        } else {
            None
        }
    }
}

/// One group's counters (OVS's `group_dpif` stats): since it was added,
/// reset when it is modified (as OVS, which builds a new group for a
/// modify and keeps only its creation time).
#[derive(Clone, Debug)]
struct GroupCounters {
    added: Instant,
    packets: u64,
    bytes: u64,
    buckets: Vec<(u64, u64)>,
}

impl GroupCounters {
    fn new(added: Instant, n_buckets: usize) -> Self {
        GroupCounters {
            added,
            packets: 0,
            bytes: 0,
            buckets: vec![(0, 0); n_buckets],
        }
    }

    /// OVS's `group_dpif_credit_stats`: the group, and the bucket that ran
    /// or (None) every bucket.
    fn credit(&mut self, bucket: Option<usize>, delta: RuleStats) {
        self.packets += delta.n_packets;
        self.bytes += delta.n_bytes;
        let buckets = match bucket {
            Some(b) => self.buckets.get_mut(b..=b).unwrap_or_default(),
            None => &mut self.buckets[..],
        };
        for (packets, bytes) in buckets {
            *packets += delta.n_packets;
            *bytes += delta.n_bytes;
        }
    }
}

/// Why a rule went away (OpenFlow's `ofp_flow_removed_reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovalReason {
    IdleTimeout = 0,
    HardTimeout = 1,
    /// A flow mod deleted it (or a `delete_learned` took it along).
    Delete = 2,
    /// The group it sent to was deleted.
    GroupDelete = 3,
    /// The meter it used was deleted.
    MeterDelete = 4,
}

/// A rule with `send_flow_rem` that went away: what its FLOW_REMOVED
/// says.
#[derive(Clone, Debug)]
pub struct RemovedRule {
    pub entry: Arc<RuleEntry>,
    pub reason: RemovalReason,
    pub stats: RuleStats,
    /// How long it lived.
    pub duration: Duration,
    /// Its timeouts when it went (`fin_timeout` may have lowered them).
    pub idle_timeout: u16,
    pub hard_timeout: u16,
}

/// Where removed rules go: the OpenFlow connections subscribe.
pub type FlowRemovals = Fanout<RemovedRule>;

/// OVS's `reduce_timeout`: `max` (when not 0) caps the timeout, and gives
/// one to a rule that had none.
fn reduce_timeout(max: u16, timeout: &mut u16) {
    if max != 0 && (*timeout == 0 || *timeout > max) {
        *timeout = max;
    }
}

pub struct RuleTable {
    tables: Tables,
    /// The last snapshot published, shared by handlers and revalidators.
    snapshot: Arc<Tables>,
    published: Arc<Published>,
    rule_stats: HashMap<u64, RuleStats>,
    /// Clocks of the rules that have touched them (timeouts, packets,
    /// refreshes); a rule without one counts from when it was added.
    clocks: HashMap<u64, RuleClock>,
    removals: Arc<FlowRemovals>,
    stats: Arc<PipelineStats>,
    /// Rules went since `rule_stats` and `clocks` were last pruned.
    prune: bool,
    /// Every group's counters, by group number.
    group_counters: HashMap<u32, GroupCounters>,
}

impl RuleTable {
    /// The rule-table of `tables`, whose snapshot `published` holds.
    pub fn new(
        mut tables: Tables,
        published: Arc<Published>,
        removals: Arc<FlowRemovals>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        tables.keep_journal();
        stats
            .rules_version
            .store(tables.version(), std::sync::atomic::Ordering::Relaxed);
        RuleTable {
            snapshot: published.latest(),
            published,
            tables,
            rule_stats: HashMap::new(),
            clocks: HashMap::new(),
            removals,
            stats,
            prune: false,
            group_counters: HashMap::new(),
        }
    }

    /// Counters for the groups a group mod added or modified (from zero),
    /// none for those it deleted.
    fn count_groups(&mut self, modified: Option<u32>) {
        let now = Instant::now();
        let kept = modified
            .and_then(|id| self.group_counters.get(&id))
            .map_or(now, |c| c.added);
        let tables = &self.tables;
        self.group_counters
            .retain(|id, _| tables.group(*id).is_some() && Some(*id) != modified);
        for g in tables.groups() {
            let added = if Some(g.id) == modified { kept } else { now };
            self.group_counters
                .entry(g.id)
                .or_insert_with(|| GroupCounters::new(added, g.buckets.len()));
        }
    }

    /// Tells the connections about the removed rules that asked for it;
    /// call before `publish` drops their counters and clocks.
    fn report_removed(&self, removed: &[(Arc<RuleEntry>, RemovalReason)]) {
        let now = Instant::now();
        for (e, reason) in removed {
            if e.rule.flags & flow_flags::SEND_FLOW_REM == 0 {
                continue;
            }
            let clock = self
                .clocks
                .get(&e.id)
                .copied()
                .unwrap_or_else(|| RuleClock::of(e));
            self.removals.deliver(RemovedRule {
                entry: e.clone(),
                reason: *reason,
                stats: self.rule_stats.get(&e.id).copied().unwrap_or_default(),
                duration: now.saturating_duration_since(e.added),
                idle_timeout: clock.idle_timeout,
                hard_timeout: clock.hard_timeout,
            });
        }
    }

    /// Takes `tables` (a group or meter change made on a copy) whose
    /// change took `deleted` rules along: reports them, forgets their
    /// counters and clocks, and publishes if the version moved past `before`.
    fn take_tables(
        &mut self,
        tables: Tables,
        deleted: &[Arc<RuleEntry>],
        reason: RemovalReason,
        before: u64,
    ) {
        self.tables = tables;
        let removed: Vec<_> = deleted.iter().map(|e| (e.clone(), reason)).collect();
        self.report_removed(&removed);
        for e in deleted {
            self.rule_stats.remove(&e.id);
            self.clocks.remove(&e.id);
        }
        if self.tables.version() != before {
            self.publish();
        }
    }

    fn publish(&mut self) {
        // The snapshot shares the indexes built here.
        self.tables.prepare();
        let journal = self.tables.take_journal();
        let version = self.tables.version();
        let n_rules = self.tables.len();
        self.snapshot = Arc::new(std::mem::take(&mut self.tables));
        let replaced = self.published.publish(self.snapshot.clone());
        self.tables = self.next_tables(replaced, journal);
        self.stats
            .rules_version
            .store(version, std::sync::atomic::Ordering::Relaxed);
        // Rules may have gone: their counters and clocks are dropped at the
        // next expiry pass, not here, so that a version costs what its
        // change did (ids are never reused, so a stale entry is only
        // memory).
        self.prune = true;
        if let Some(dropped) = CHANGE_LOG.check() {
            tracing::info!(
                version,
                rules = n_rules,
                dropped_messages = dropped,
                "rules changed"
            );
        }
    }

    /// The tables to change next, once the ones changed so far are the
    /// snapshot: the snapshot they replaced, brought up to date with the
    /// journal of what changed, when no handler or revalidator holds it
    /// any more. So the rule-table keeps two copies of the lookup indexes
    /// and changes each in place, and a version costs what its change did
    /// (twice), not the pieces of index it touched. Otherwise a copy of
    /// the snapshot, which shares every piece until it writes it.
    fn next_tables(&self, replaced: Arc<Tables>, journal: Option<Journal>) -> Tables {
        let journal = journal.filter(|j| j.len() <= MAX_REPLAY);
        let mut next = match (Arc::try_unwrap(replaced), journal) {
            (Ok(mut spare), Some(journal)) => {
                spare.replay(journal, &self.snapshot);
                spare
            }
            (Ok(spare), None) => {
                retire(Arc::new(spare));
                (*self.snapshot).clone()
            }
            (Err(held), _) => {
                retire(held);
                (*self.snapshot).clone()
            }
        };
        next.keep_journal();
        next
    }

    /// Back to the last snapshot, after a panic midway through a change.
    fn restore(&mut self) {
        self.tables = (*self.snapshot).clone();
        self.tables.keep_journal();
    }
}

/// The most rule changes [`RuleTable::next_tables`] replays on the spare
/// copy. Replaying costs a second insert or removal per change; a version
/// of thousands of changes touches most pieces of the indexes anyway,
/// and copying those as they are written costs no more (streaming 100 000
/// flow mods, whose versions hold ~600 or ~5 000: daemon CPU 7.3–8.3 µs a
/// flow mod replaying all, 5.5–6.9 µs with this bound, as without a spare).
const MAX_REPLAY: usize = 2048;

/// Frees a replaced snapshot once the tasks already woken on this thread
/// have run. Freeing it is the largest part of a one-rule version (the
/// pieces its change copied, and the rules it alone held), and the
/// connection that asked for the change has just been woken with the
/// answer: it writes its BARRIER_REPLY first, and the freeing overlaps
/// with the controller preparing its next flow mod. (Handlers may still
/// hold the snapshot; then the last of them frees it.)
fn retire(old: Arc<Tables>) {
    actix::spawn(async move {
        let mut yielded = false;
        futures::future::poll_fn(|cx| {
            if std::mem::replace(&mut yielded, true) {
                std::task::Poll::Ready(())
            } else {
                // To the back of the run queue, behind the woken connection.
                cx.waker().wake_by_ref();
                std::task::Poll::Pending
            }
        })
        .await;
        drop(old);
    });
}

/// What applying a change did besides touching rules.
#[derive(Default)]
struct Applied {
    /// Rules whose counters restart.
    reset: Vec<u64>,
    /// Rules deleted.
    deleted: Vec<Arc<RuleEntry>>,
}

/// Applies `change` to `tables`; returns how many rules it touched.
fn apply(tables: &mut Tables, change: RuleChange, done: &mut Applied) -> usize {
    match change {
        RuleChange::Add(rules) => {
            let n = rules.len();
            for r in rules {
                tables.add(r);
            }
            n
        }
        RuleChange::Delete(filter) => {
            let deleted = tables.delete_where(&filter);
            let n = deleted.len();
            done.deleted.extend(deleted);
            n
        }
        RuleChange::Modify(filter, update) => {
            let m = tables.modify_where(&filter, &update);
            if update.reset_counts {
                done.reset.extend(m.modified.iter().map(|e| e.id));
            }
            m.modified.len() + usize::from(m.added.is_some())
        }
        RuleChange::Replace(rules) => {
            let n = rules.len();
            tables.replace_all(rules);
            n
        }
        RuleChange::Bundle(changes) => changes.into_iter().map(|c| apply(tables, c, done)).sum(),
    }
}

impl RuleTable {
    fn clock(&mut self, id: u64) -> Option<&mut RuleClock> {
        let e = self.tables.get(id)?;
        Some(self.clocks.entry(id).or_insert_with(|| RuleClock::of(e)))
    }

    /// Drops the counters and clocks of rules that went.
    fn prune(&mut self) {
        if std::mem::take(&mut self.prune) {
            let tables = &self.tables;
            self.rule_stats.retain(|id, _| tables.get(*id).is_some());
            self.clocks.retain(|id, _| tables.get(*id).is_some());
        }
    }

    /// Removes the rules whose timeouts expired.
    fn expire(&mut self) {
        self.prune();
        let now = Instant::now();
        let clocks = &self.clocks;
        let doomed: Vec<(Arc<RuleEntry>, RemovalReason)> = self
            .tables
            .rules_with_timeouts()
            .filter_map(|e| {
                let clock = clocks
                    .get(&e.id)
                    .copied()
                    .unwrap_or_else(|| RuleClock::of(e));
                clock.expired(now).map(|why| (e.clone(), why))
            })
            .collect();
        if doomed.is_empty() {
            return;
        }
        let reasons: HashMap<u64, RemovalReason> =
            doomed.iter().map(|(e, why)| (e.id, *why)).collect();
        let removed = self
            .tables
            .delete(doomed.into_iter().map(|(e, _)| e).collect());
        PipelineStats::add(&self.stats.rules_expired, removed.len() as u64);
        // What a delete_learned took along went as deleted.
        let removed: Vec<_> = removed
            .into_iter()
            .map(|e| {
                let why = reasons.get(&e.id).copied().unwrap_or(RemovalReason::Delete);
                (e, why)
            })
            .collect();
        self.report_removed(&removed);
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
    /// After a panic the rules are the last ones published: changes,
    /// learning and expiry change the tables in place, and whatever a
    /// panicking one did unpublished is dropped. The counters, clocks and
    /// the published cell are the rule-table's own and kept.
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::warn!(
            version = self.snapshot.version(),
            "rule-table restarting from its last snapshot"
        );
        self.restore();
    }
}

impl Handler<RuleChange> for RuleTable {
    type Result = RuleChangeReply;

    fn handle(&mut self, change: RuleChange, ctx: &mut Context<Self>) -> RuleChangeReply {
        let stats = self.stats.clone();
        let before = self.tables.version();
        let tables = &mut self.tables;
        let outcome = guarded("rule_table", &stats, ctx, || {
            let mut done = Applied::default();
            let n = apply(tables, change, &mut done);
            (n, done)
        });
        match outcome {
            Some((n_rules, done)) => {
                let deleted: Vec<_> = done
                    .deleted
                    .into_iter()
                    .map(|e| (e, RemovalReason::Delete))
                    .collect();
                self.report_removed(&deleted);
                for id in done.reset {
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
            // Changed in place: the restart goes back to the last
            // snapshot (`restarting`).
            None => RuleChangeReply {
                version: before,
                n_rules: 0,
            },
        }
    }
}

impl Handler<AddUnlessOverlapping> for RuleTable {
    type Result = Result<RuleChangeReply, String>;

    fn handle(&mut self, msg: AddUnlessOverlapping, ctx: &mut Context<Self>) -> Self::Result {
        for r in &msg.0 {
            if let Some(e) = self.tables.overlapping(r) {
                return Err(format!(
                    "overlaps {} in table {}",
                    messages::format::ofp_rule::format_match(&e.rule.matches, e.rule.priority),
                    e.rule.table
                ));
            }
        }
        Ok(<Self as Handler<RuleChange>>::handle(
            self,
            RuleChange::Add(msg.0),
            ctx,
        ))
    }
}

impl Handler<SetFailOpen> for RuleTable {
    type Result = u64;

    fn handle(&mut self, SetFailOpen(on): SetFailOpen, ctx: &mut Context<Self>) -> u64 {
        // NORMAL takes over first, so that no packet meets the empty
        // tables in between (OVS flushes, then adds its rule).
        if self.tables.set_fail_open(on) {
            self.publish();
        }
        if on {
            <Self as Handler<RuleChange>>::handle(self, RuleChange::Replace(Vec::new()), ctx);
        }
        self.tables.version()
    }
}

impl Handler<ChangePorts> for RuleTable {
    type Result = u64;

    fn handle(&mut self, change: ChangePorts, _: &mut Context<Self>) -> u64 {
        if let ChangePorts::Down(down) = change {
            if self.tables.set_down_ports(down) {
                self.publish();
            }
            return self.tables.version();
        }
        // Without a set every port number exists: adding or removing one
        // changes nothing.
        let ports = match (change, self.tables.ports()) {
            (ChangePorts::Set(set), _) => Some(set),
            (ChangePorts::Add(n), Some(ports)) => Some(ports | &[n].into()),
            (ChangePorts::Remove(n), Some(ports)) => Some(ports - &[n].into()),
            (ChangePorts::Down(_), _) | (_, None) => None,
        };
        if ports.is_some_and(|p| self.tables.set_ports(p)) {
            self.publish();
        }
        self.tables.version()
    }
}

impl Handler<GroupMod> for RuleTable {
    type Result = Result<GroupModReply, GroupModError>;

    fn handle(&mut self, change: GroupMod, ctx: &mut Context<Self>) -> Self::Result {
        let stats = self.stats.clone();
        let before = self.tables.version();
        let modified = match &change {
            GroupMod::Modify(g) => Some(g.id),
            GroupMod::Add(_) | GroupMod::Delete(_) => None,
        };
        let outcome = guarded("rule_table", &stats, ctx, || {
            // On a copy: a refused change leaves the tables as they were.
            let mut tables = self.tables.clone();
            let done = match change {
                GroupMod::Add(g) => tables.add_group(g).map(|()| (1, Vec::new())),
                GroupMod::Modify(g) => tables.modify_group(g).map(|()| (1, Vec::new())),
                GroupMod::Delete(id) => Ok(tables.delete_groups(id)),
            };
            done.map(|d| (tables, d))
        });
        let (tables, (n_groups, deleted)) = match outcome {
            Some(r) => r?,
            None => {
                return Ok(GroupModReply {
                    version: before,
                    n_groups: 0,
                    n_rules: 0,
                })
            }
        };
        self.take_tables(tables, &deleted, RemovalReason::GroupDelete, before);
        self.count_groups(modified);
        Ok(GroupModReply {
            version: self.tables.version(),
            n_groups,
            n_rules: deleted.len(),
        })
    }
}

impl Handler<MeterMod> for RuleTable {
    type Result = Result<MeterModReply, MeterModError>;

    fn handle(&mut self, change: MeterMod, ctx: &mut Context<Self>) -> Self::Result {
        let stats = self.stats.clone();
        let before = self.tables.version();
        let outcome = guarded("rule_table", &stats, ctx, || {
            // On a copy: a refused change leaves the tables as they were.
            let mut tables = self.tables.clone();
            let done = match change {
                MeterMod::Add(m) => tables
                    .add_meter(m.clone())
                    .map(|id| (Some((m, id)), Vec::new(), Vec::new())),
                MeterMod::Modify(m) => tables
                    .modify_meter(m.clone())
                    .map(|id| (Some((m, id)), Vec::new(), Vec::new())),
                MeterMod::Delete(id) => {
                    let (meters, rules) = tables.delete_meters(id);
                    Ok((None, meters.iter().map(|e| e.dp_id).collect(), rules))
                }
            };
            done.map(|d| (tables, d))
        });
        let (tables, (set, deleted_meters, deleted)) = match outcome {
            Some(r) => r?,
            None => {
                return Ok(MeterModReply {
                    version: before,
                    set: None,
                    deleted: Vec::new(),
                    n_rules: 0,
                })
            }
        };
        self.take_tables(tables, &deleted, RemovalReason::MeterDelete, before);
        Ok(MeterModReply {
            version: self.tables.version(),
            set,
            deleted: deleted_meters,
            n_rules: deleted.len(),
        })
    }
}

impl Handler<PushStats> for RuleTable {
    type Result = ();

    fn handle(&mut self, msg: PushStats, _: &mut Context<Self>) {
        let now = Instant::now();
        for (id, delta) in msg.0 {
            if let Some((group, bucket)) = credited_group(id) {
                if let Some(c) = self.group_counters.get_mut(&group) {
                    c.credit(bucket, delta);
                }
                continue;
            }
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

impl Handler<DumpGroupStats> for RuleTable {
    type Result = MessageResult<DumpGroupStats>;

    fn handle(&mut self, msg: DumpGroupStats, _: &mut Context<Self>) -> Self::Result {
        let now = Instant::now();
        let stats = self
            .tables
            .groups()
            .filter(|g| msg.0.is_none_or(|id| id == g.id))
            .map(|g| {
                let c = self
                    .group_counters
                    .get(&g.id)
                    .cloned()
                    .unwrap_or_else(|| GroupCounters::new(now, g.buckets.len()));
                messages::group::GroupStats {
                    id: g.id,
                    ref_count: self.tables.group_users(g.id) as u32,
                    duration: now.saturating_duration_since(c.added),
                    packets: c.packets,
                    bytes: c.bytes,
                    buckets: c.buckets,
                }
            })
            .collect();
        MessageResult(stats)
    }
}

impl Handler<GetSnapshot> for RuleTable {
    type Result = MessageResult<GetSnapshot>;

    fn handle(&mut self, _: GetSnapshot, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use messages::parse::rules::parse_rule;

    /// A check_overlap add sent while another add is on its way (two
    /// connections at once) sees that add: the check is the actor's.
    #[test]
    fn check_overlap_sees_an_add_queued_before_it() {
        actix::System::new().block_on(async {
            let tables = Tables::new();
            let published = Arc::new(Published::new(Arc::new(tables.clone())));
            let stats = Arc::new(PipelineStats::default());
            let rt = RuleTable::new(tables, published, Default::default(), stats).start();
            let rule = |s: &str| parse_rule(s).unwrap();
            let first = rt.send(RuleChange::Add(vec![rule("priority=10,ip,actions=drop")]));
            let checked = rt.send(AddUnlessOverlapping(vec![rule(
                "priority=10,tcp,check_overlap,actions=drop",
            )]));
            let apart = rt.send(AddUnlessOverlapping(vec![rule(
                "priority=11,tcp,check_overlap,actions=drop",
            )]));
            first.await.unwrap();
            let refused = checked.await.unwrap().unwrap_err();
            assert!(refused.contains("priority=10,ip"), "{refused}");
            assert_eq!(apart.await.unwrap().unwrap().n_rules, 1);
            let snapshot = rt.send(GetSnapshot).await.unwrap();
            assert_eq!(snapshot.len(), 2);
        });
    }

    /// Group counters as OVS keeps them: a credit of every bucket or of
    /// one, reset (but not their age) by a modify, gone with the group.
    #[test]
    fn group_counters_follow_credits_and_group_mods() {
        use crate::protocol::group_credit;
        use messages::parse::rules::parse_group;
        actix::System::new().block_on(async {
            let tables = Tables::new();
            let published = Arc::new(Published::new(Arc::new(tables.clone())));
            let stats = Arc::new(PipelineStats::default());
            let rt = RuleTable::new(tables, published, Default::default(), stats).start();
            let group = |s: &str| parse_group(s).unwrap();
            let stats = |n_packets, n_bytes| RuleStats { n_packets, n_bytes };
            rt.send(GroupMod::Add(group(
                "group_id=1,type=select,bucket=output:1,bucket=output:2",
            )))
            .await
            .unwrap()
            .unwrap();
            rt.send(RuleChange::Add(vec![
                parse_rule("ip,actions=group:1").unwrap()
            ]))
            .await
            .unwrap();
            rt.send(PushStats(vec![
                (group_credit(1, Some(1)), stats(3, 300)),
                (group_credit(1, None), stats(1, 60)),
                // A bucket the group no longer has, a group that is gone.
                (group_credit(1, Some(5)), stats(2, 120)),
                (group_credit(9, None), stats(7, 700)),
            ]))
            .await
            .unwrap();
            let dumped = rt.send(DumpGroupStats(None)).await.unwrap();
            assert_eq!(dumped.len(), 1);
            let g = &dumped[0];
            assert_eq!(
                (g.id, g.ref_count, g.packets, g.bytes, g.buckets.clone()),
                (1, 1, 6, 480, vec![(1, 60), (4, 360)])
            );
            rt.send(GroupMod::Modify(group(
                "group_id=1,type=all,bucket=output:1,bucket=output:2,bucket=output:3",
            )))
            .await
            .unwrap()
            .unwrap();
            let after = rt.send(DumpGroupStats(Some(1))).await.unwrap();
            assert_eq!(
                (after[0].packets, after[0].buckets.clone()),
                (0, vec![(0, 0); 3])
            );
            assert!(after[0].duration >= g.duration, "a modify keeps the age");
            rt.send(GroupMod::Delete(Some(1))).await.unwrap().unwrap();
            assert!(rt.send(DumpGroupStats(None)).await.unwrap().is_empty());
        });
    }

    /// The rule-table takes back a replaced snapshot to change it in
    /// place only when no one else holds it: a snapshot a reader keeps
    /// stays as it was published, while the versions after it, made on
    /// either copy, hold every change.
    #[test]
    fn a_held_snapshot_never_changes_and_every_version_is_whole() {
        actix::System::new().block_on(async {
            let tables = Tables::new();
            let published = Arc::new(Published::new(Arc::new(tables.clone())));
            let stats = Arc::new(PipelineStats::default());
            let rt = RuleTable::new(tables, published.clone(), Default::default(), stats).start();
            let rule = |i: u32| {
                parse_rule(&format!(
                    "priority={},tcp,nw_dst=10.0.{}.{},actions=output:{}",
                    10 + i % 3,
                    i / 256,
                    i % 256,
                    1 + i % 5
                ))
                .unwrap()
            };
            let mut held = Vec::new();
            for i in 0..300u32 {
                let change = if i % 7 == 6 {
                    let mut filter = crate::tables::RuleFilter::all();
                    filter.matches = rule(i - 3).matches;
                    filter.strict = true;
                    filter.priority = rule(i - 3).priority;
                    RuleChange::Delete(Box::new(filter))
                } else {
                    RuleChange::Add(vec![rule(i)])
                };
                rt.send(change).await.unwrap();
                let snapshot = published.latest();
                let expected: Vec<u32> = (0..=i)
                    .filter(|j| j % 7 != 6 && !(j + 3 <= i && (j + 3) % 7 == 6))
                    .collect();
                assert_eq!(snapshot.len(), expected.len(), "version after change {i}");
                assert!(snapshot.is_prepared());
                for j in &expected {
                    let r = rule(*j);
                    let found = snapshot
                        .table(0)
                        .and_then(|t| t.find_exact(&r.matches, r.priority));
                    assert_eq!(
                        found.map(|e| &e.rule),
                        Some(&r),
                        "rule {j} after change {i}"
                    );
                }
                // Readers keep some snapshots across later changes.
                if i % 5 == 0 {
                    held.push((snapshot.len(), snapshot.rules(), snapshot));
                }
            }
            for (n, rules, snapshot) in &held {
                assert_eq!(snapshot.len(), *n);
                assert_eq!(&snapshot.rules(), rules);
            }
        });
    }
}
