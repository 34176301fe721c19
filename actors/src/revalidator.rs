//! The revalidator actor: keeps the installed megaflows right, every
//! `interval` (500 ms, as OVS; spaced out to at most an eighth of a CPU
//! when rounds are costly, see [`RevalidatorConfig::round_spacing`]):
//!
//! 1. dump the datapath and keep the flows whose ukeys are in its shards
//!    (see [`crate::ukeys`]), adopting as ukeys the flows that have none;
//! 2. credit each flow's new packets and bytes to the rules it went
//!    through (pushed to the rule-table by rule id);
//! 3. delete flows idle longer than max-idle (100 ms when over the flow
//!    limit; every flow when over twice the limit, as OVS), writing the
//!    deletes (and the modifies of 4.) itself, in batches of 50, before the
//!    round ends: a delete is never left on its way into the next round;
//! 4. when the rules' version or NORMAL's MAC table changed since a flow
//!    was last translated,
//!    translate its key again: if the new translation needs bits the
//!    flow's mask lacks, delete it; if only the actions changed, modify it;
//!    otherwise keep it;
//! 5. drop the ukeys of its shards whose flows four dumps in a row did not
//!    show (deleted behind upcalld's back), so that their next upcall
//!    installs them again;
//! 6. revalidator 0 runs OVS's dynamic flow limit from the round's duration
//!    (its CPU time: what it cost, not how long it waited for a CPU),
//!    tells the handlers, and frees the recirculation ids no ukey uses.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use messages::dpif::{DpFlow, DpifOp, FlowPut, FlowStats, PutMode, Ufid, UfidSet};
use messages::flow::datapath_mask;
use messages::native_tunnel::TnlPush;
use messages::odp::OdpAction;
use messages::{Flow, Megaflow};

use crate::dpif_writer::write_ops;
use crate::handler::UpcallHandler;
#[cfg(feature = "fault-injection")]
use crate::protocol::InjectPanics;
use crate::protocol::{FlowLimit, PushStats, RevalidateNow, RuleStats, SideEffects, Tick};
use crate::published::Published;
use crate::rule_table::RuleTable;
use crate::stats::PipelineStats;
use crate::supervisor::guarded;
use crate::tables::Tables;
use crate::ukeys::{
    shard_of, RuleIds, Ukey, UkeyExtra, UkeyMegaflow, Ukeys, MAX_MISSED_DUMPS,
    NEVER_DUMPED_GRACE_MS, NOT_TRANSLATED, N_SHARDS,
};
use crate::xlate::{xlate, XlateConfig, TCP_FIN, TCP_RST};
use messages::dpif::{monotonic_ms, Dpif};

/// Revalidation settings.
#[derive(Clone, Copy, Debug)]
pub struct RevalidatorConfig {
    pub interval: Duration,
    pub max_idle: Duration,
    /// The most flows the dynamic limit may allow (OVS's `flow-limit`).
    pub flow_limit: u64,
    /// Where the dynamic limit starts (OVS: 10000).
    pub flow_limit_start: u64,
    /// Timed rounds start at least this many times their CPU time apart:
    /// a round costing more than `interval / round_spacing` spaces the
    /// next out, so that revalidation takes at most that share of a CPU
    /// (8: an eighth). In the emulated kernel VM a round over 20 000 flows
    /// costs 200-800 ms; every 500 ms it took most of a CPU from a burst's
    /// handlers, and at a quarter of a CPU still a fifth of the daemon's
    /// CPU in a burst. A rule change brings the next round back to
    /// `interval`.
    pub round_spacing: u32,
}

impl Default for RevalidatorConfig {
    fn default() -> Self {
        RevalidatorConfig {
            interval: Duration::from_millis(500),
            max_idle: Duration::from_millis(10_000),
            flow_limit: 200_000,
            flow_limit_start: 10_000,
            round_spacing: 8,
        }
    }
}

/// OVS's dynamic flow limit: given the last dump's duration and the flow
/// count, the next limit.
pub fn next_flow_limit(limit: u64, duration_ms: u64, n_flows: u64, max: u64) -> u64 {
    let duration_ms = duration_ms.max(1);
    let next = if duration_ms > 2000 {
        limit / (duration_ms / 1000)
    } else if duration_ms > 1300 {
        limit * 3 / 4
    } else if duration_ms < 1000 && limit < n_flows * 1000 / duration_ms {
        limit + 1000
    } else {
        limit
    };
    next.max(1000).min(max)
}

/// Flows revalidated per lock of their shard, and ops per datapath
/// transaction (OVS's `REVALIDATE_MAX_BATCH`).
const REVALIDATE_BATCH: usize = 50;

pub struct Revalidator {
    pub id: usize,
    n_revalidators: usize,
    dpif: Arc<dyn Dpif>,
    /// The snapshot of the current round, refreshed from `published` at
    /// its start.
    tables: Arc<Tables>,
    published: Arc<Published>,
    xlate_cfg: XlateConfig,
    rule_table: Addr<RuleTable>,
    /// Told of flow limit changes (revalidator 0 only).
    handlers: Vec<Addr<UpcallHandler>>,
    config: RevalidatorConfig,
    flow_limit: u64,
    ukeys: Arc<Ukeys>,
    /// This revalidator's rounds so far: the ukeys of the flows a round
    /// dumps are marked with it.
    dump_seq: u32,
    /// The last terse dump's buffer, kept for the next.
    dump_buf: Vec<(Ufid, FlowStats)>,
    /// The dump's indexes by shard (buffers kept for the next round).
    by_shard: Vec<Vec<usize>>,
    /// The next round re-sends every flow's actions (see `restarting`).
    resync: bool,
    #[cfg(feature = "fault-injection")]
    panics_to_inject: u32,
    /// When the last timed round started, and how long after it the next
    /// starts (`interval`, or longer after a costly round).
    last_start: Instant,
    spacing: Duration,
    next_round: Option<SpawnHandle>,
    stats: Arc<PipelineStats>,
}

/// The operations and statistics one round produced.
#[derive(Default)]
struct RoundOutcome {
    ops: Vec<DpifOp>,
    rule_stats: HashMap<u64, RuleStats>,
    effects: SideEffects,
}

impl Revalidator {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: usize,
        n_revalidators: usize,
        dpif: Arc<dyn Dpif>,
        published: Arc<Published>,
        xlate_cfg: XlateConfig,
        rule_table: Addr<RuleTable>,
        handlers: Vec<Addr<UpcallHandler>>,
        config: RevalidatorConfig,
        ukeys: Arc<Ukeys>,
        stats: Arc<PipelineStats>,
    ) -> Self {
        let flow_limit = config.flow_limit_start.min(config.flow_limit);
        stats.flow_limit.store(flow_limit, Ordering::Relaxed);
        Revalidator {
            id,
            n_revalidators: n_revalidators.max(1),
            dpif,
            tables: published.latest(),
            published,
            xlate_cfg,
            rule_table,
            handlers,
            config,
            flow_limit,
            ukeys,
            dump_seq: 0,
            dump_buf: Vec::new(),
            by_shard: Vec::new(),
            resync: false,
            #[cfg(feature = "fault-injection")]
            panics_to_inject: 0,
            last_start: Instant::now(),
            spacing: config.interval,
            next_round: None,
            stats,
        }
    }

    /// Runs the next timed round `after` from now (replacing the one
    /// scheduled).
    fn schedule(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if let Some(pending) = self.next_round.take() {
            ctx.cancel_future(pending);
        }
        self.next_round = Some(ctx.run_later(after, |r, ctx| {
            r.next_round = None;
            ctx.notify(Tick);
        }));
    }

    /// Runs the next round at `due`, a round spaced out by its cost; but
    /// new rules are not to wait for it: every `interval` a changed rules
    /// version (one load) starts the round at once.
    fn schedule_spaced(&mut self, due: Instant, ctx: &mut Context<Self>) {
        if let Some(pending) = self.next_round.take() {
            ctx.cancel_future(pending);
        }
        let check = self
            .config
            .interval
            .min(due.saturating_duration_since(Instant::now()));
        self.next_round = Some(ctx.run_later(check, move |r, ctx| {
            r.next_round = None;
            if Instant::now() >= due || r.published.version() != r.tables.version() {
                ctx.notify(Tick);
            } else {
                r.schedule_spaced(due, ctx);
            }
        }));
    }

    fn round(&mut self) {
        let start = Instant::now();
        let cpu_start = thread_cpu_time();
        if self.id == 0 {
            // Ages NORMAL's MAC table out (OVS's main thread does it in
            // `mac_learning_run`); a change makes every flow re-translate.
            self.xlate_cfg.mac.run(monotonic_ms() / 1000);
        }
        let mut dump = std::mem::take(&mut self.dump_buf);
        dump.clear();
        if let Err(e) = self.dpif.flow_dump_terse(&mut dump) {
            tracing::warn!(error = %e, "flow dump failed");
            self.dump_buf = dump;
            return;
        }
        let n_flows = dump.len() as u64;
        let read_cpu = thread_cpu_time().saturating_sub(cpu_start);
        let (id, n) = (self.id, self.n_revalidators);
        let now = monotonic_ms();
        self.published.refresh(&mut self.tables);
        let round = Round {
            now,
            max_idle_ms: if n_flows > self.flow_limit {
                100
            } else {
                self.config.max_idle.as_millis() as u64
            },
            kill_all: n_flows > 2 * self.flow_limit,
            // Read before translating: a change while translating is
            // caught by the next round.
            // (A learned tunnel neighbour changes translations as a learned
            // MAC does; both generations only grow, so their sum does.)
            version: (
                self.tables.version(),
                self.xlate_cfg.mac.generation()
                    + self
                        .xlate_cfg
                        .native_tunnel
                        .as_ref()
                        .map_or(0, |n| n.generation()),
            ),
            dump_seq: self.dump_seq + 1,
            resync: self.resync,
        };
        self.dump_seq = round.dump_seq;
        // An injected fault strikes halfway through the round's own flows,
        // with a modify made and not written.
        #[cfg(feature = "fault-injection")]
        let panic_after = (self.panics_to_inject > 0).then(|| {
            self.panics_to_inject -= 1;
            (dump.len() / self.n_revalidators / 2).max(1)
        });
        #[cfg(feature = "fault-injection")]
        let mut revalidated = 0;
        // The dumped flows of this revalidator's shards, by shard, so that a
        // shard is locked once per batch of flows rather than once a flow.
        let mut by_shard = std::mem::take(&mut self.by_shard);
        by_shard.resize_with(N_SHARDS, Vec::new);
        for (i, &(ufid, _)) in dump.iter().enumerate() {
            let s = shard_of(ufid);
            if s % n == id {
                by_shard[s].push(i);
            }
        }
        let mut out = RoundOutcome::default();
        let mut unknown = Vec::new();
        let ukeys = self.ukeys.clone();
        for s in (id..N_SHARDS).step_by(n) {
            let mut seen = 0;
            for batch in by_shard[s].chunks(REVALIDATE_BATCH) {
                let mut shard = ukeys.shard(s);
                for &i in batch {
                    let (ufid, stats) = dump[i];
                    match shard.get_mut(ufid) {
                        Some(ukey) => {
                            seen += 1;
                            self.revalidate_ukey(ufid, ukey, stats, &round, &mut out);
                            #[cfg(feature = "fault-injection")]
                            {
                                revalidated += 1;
                                if panic_after.is_some_and(|n| revalidated >= n)
                                    && !out.ops.is_empty()
                                {
                                    panic!("injected fault in revalidator {}", self.id);
                                }
                            }
                        }
                        None => unknown.push(ufid),
                    }
                }
            }
            by_shard[s].clear();
            self.sweep(s, seen, now);
            if out.ops.len() >= REVALIDATE_BATCH {
                self.write(&mut out.ops);
            }
        }
        self.by_shard = by_shard;
        self.adopt(&unknown, &round, &mut out);
        self.write(&mut out.ops);
        self.resync = false;
        self.dump_buf = dump;
        if self.id == 0 {
            self.free_recirc_ids();
            self.tend_neighbours(now);
        }
        if !out.rule_stats.is_empty() {
            self.rule_table
                .do_send(PushStats(out.rule_stats.into_iter().collect()));
        }
        if !out.effects.is_empty() {
            self.rule_table.do_send(out.effects);
        }
        metrics::histogram!("upcalld_revalidation_seconds").record(start.elapsed().as_secs_f64());
        PipelineStats::add(&self.stats.revalidation_rounds, 1);
        if self.id == 0 {
            // What the round cost, its deletes and modifies included (they
            // are written on this thread, within the round, as OVS's
            // revalidators write theirs): the dump's kernel work is done in
            // this thread's receive calls, so its CPU time covers it. Wall
            // time would also count the waits for a CPU that the handlers
            // hold during a burst of upcalls, when the limit must not
            // shrink.
            let ms = (thread_cpu_time().saturating_sub(cpu_start)).as_millis() as u64;
            self.flow_limit = next_flow_limit(self.flow_limit, ms, n_flows, self.config.flow_limit);
            self.stats
                .flow_limit
                .store(self.flow_limit, Ordering::Relaxed);
            self.stats.dp_flows.store(n_flows, Ordering::Relaxed);
            self.stats.dump_duration_ms.store(ms, Ordering::Relaxed);
            self.stats
                .dump_read_ms
                .store(read_cpu.as_millis() as u64, Ordering::Relaxed);
            self.stats
                .dump_wall_ms
                .store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            for h in &self.handlers {
                h.do_send(FlowLimit {
                    limit: self.flow_limit,
                });
            }
        }
    }

    /// Removes the tunnel neighbours that aged out (OVS's
    /// `tnl_neigh_cache_run`), and sends the ARP requests due for next
    /// hops still unresolved (a request lost, or not answered yet, is
    /// asked again).
    fn tend_neighbours(&self, now: u64) {
        let Some(nt) = self.xlate_cfg.native_tunnel.as_deref() else {
            return;
        };
        nt.expire(now);
        let mut ops: Vec<DpifOp> = nt
            .solicitations(&self.tables, &self.xlate_cfg, now)
            .into_iter()
            .map(|e| DpifOp::Execute(Box::new(e)))
            .collect();
        for r in self.dpif.operate(&mut ops) {
            if let Err(e) = r {
                tracing::debug!(error = %e, "ARP request not sent");
            }
        }
    }

    /// Writes `ops` (the round's deletes and modifies) to the datapath in
    /// batches, on this thread, and empties it. Each delete is carried out
    /// (or found done: ENOENT) before the round ends, and its ukey goes with
    /// it, so no later round sees a delete still on its way: none is sent
    /// twice, and a flow a round deleted is never adopted again from an
    /// older dump.
    fn write(&self, ops: &mut Vec<DpifOp>) {
        for batch in ops.chunks_mut(REVALIDATE_BATCH) {
            write_ops(&*self.dpif, batch, &self.ukeys, &self.stats);
        }
        ops.clear();
    }

    /// Makes ukeys for dumped flows that had none (after a restart, or put
    /// by someone else), from the flows in full, and revalidates them: one
    /// get per flow when they are few, one full dump when many.
    fn adopt(&mut self, unknown: &[Ufid], round: &Round, out: &mut RoundOutcome) {
        if unknown.is_empty() {
            return;
        }
        let flows: Vec<DpFlow> = if unknown.len() > ADOPT_BY_GETS {
            let wanted: UfidSet = unknown.iter().copied().collect();
            match self.dpif.flow_dump() {
                Ok(all) => all
                    .into_iter()
                    .filter(|f| wanted.contains(&f.ufid))
                    .collect(),
                Err(e) => {
                    tracing::warn!(error = %e, "full flow dump failed");
                    return;
                }
            }
        } else {
            unknown
                .iter()
                .filter_map(|&u| match self.dpif.flow_get(u) {
                    Ok(flow) => flow,
                    Err(e) => {
                        tracing::debug!(error = %e, "flow get failed");
                        None
                    }
                })
                .collect()
        };
        let ukeys = self.ukeys.clone();
        for flow in flows {
            let mut shard = ukeys.shard(shard_of(flow.ufid));
            let ukey = shard.get_or_insert(flow.ufid, || {
                let actions = Arc::new(flow.actions.clone());
                let mut ukey = Ukey::adopted(
                    round.now,
                    UkeyMegaflow::unshared(&Megaflow::new(&flow.key, &flow.mask)),
                    actions.clone(),
                );
                ukey.set_extra(UkeyExtra {
                    recirc: self.xlate_cfg.recirc.hold(flow.key.recirc_id, &actions),
                    ..UkeyExtra::default()
                });
                ukey
            });
            self.revalidate_ukey(flow.ufid, ukey, flow.stats, round, out);
        }
    }

    fn revalidate_ukey(
        &self,
        ufid: Ufid,
        ukey: &mut Ukey,
        s: FlowStats,
        round: &Round,
        out: &mut RoundOutcome,
    ) {
        let now = round.now;
        ukey.dump_seq = round.dump_seq;
        ukey.missed_dumps = 0;
        let mut delete = round.kill_all;
        if !delete && (round.resync || ukey.version != round.version) {
            PipelineStats::add(&self.stats.flows_retranslated, 1);
            let key = ukey.megaflow.key();
            let x = xlate(&self.tables, &key, &self.xlate_cfg);
            if has_extra_bits(&datapath_mask(&key, &x.wc), &ukey.megaflow.mask()) {
                delete = true;
            } else {
                if round.resync || *ukey.actions != x.actions {
                    ukey.actions = Arc::new(x.actions);
                    out.ops.push(DpifOp::put(FlowPut {
                        ufid,
                        megaflow: ukey.megaflow.megaflow(),
                        actions: ukey.actions.clone(),
                        mode: PutMode::Modify,
                        reset_stats: false,
                    }));
                }
                ukey.set_extra(UkeyExtra {
                    mac_learned: x.mac_learned,
                    neighbours_seen: x.neighbours_seen,
                    effects: SideEffects {
                        learned: x.learned,
                        fin_timeouts: x.fin_timeouts,
                    },
                    // Taken before the old refs go: an id the flow keeps
                    // is never without a holder.
                    recirc: self.xlate_cfg.recirc.hold(key.recirc_id, &ukey.actions),
                });
                ukey.rules = RuleIds::from_vec(x.rules);
                // A flow still waiting for a tunnel neighbour translates
                // again next round (and asks for the neighbour again).
                ukey.version = if x.unresolved {
                    NOT_TRANSLATED
                } else {
                    round.version
                };
            }
        }
        let (dp, db) = (
            s.n_packets.saturating_sub(ukey.packets),
            s.n_bytes.saturating_sub(ukey.bytes),
        );
        if dp > 0 {
            if let Some(nt) = self.xlate_cfg.native_tunnel.as_deref() {
                // The neighbours a flow with traffic pushes headers to stay
                // alive, as OVS's translation cache keeps them; those its
                // packets show (ARP replies, tunnel sources) are learned
                // again, as a translation of those packets would.
                for_each_tnl_push(&ukey.actions, &mut |p| nt.used(p.dst_mac(), now));
                for &(ip, mac) in ukey.neighbours_seen() {
                    nt.learn(ip, mac);
                }
            }
            let now_s = round.now / 1000;
            for l in ukey.mac_learned() {
                self.xlate_cfg
                    .mac
                    .learn(l.mac, l.vlan, l.port, l.grat_arp, now_s);
            }
        }
        if dp > 0 || db > 0 {
            for id in &ukey.rules {
                let r = out.rule_stats.entry(*id).or_default();
                r.n_packets += dp;
                r.n_bytes += db;
            }
        }
        if let Some(effects) = ukey.effects().filter(|_| dp > 0 && !delete) {
            out.effects.learned.extend(effects.learned.iter().cloned());
            if s.tcp_flags & (TCP_FIN | TCP_RST) != 0 {
                out.effects
                    .fin_timeouts
                    .extend(effects.fin_timeouts.iter().copied());
            }
        }
        ukey.packets = s.n_packets;
        ukey.bytes = s.n_bytes;
        let last_used = s.used_ms.unwrap_or(ukey.created_ms);
        if now.saturating_sub(last_used) > round.max_idle_ms {
            delete = true;
        }
        if delete {
            out.ops.push(DpifOp::FlowDel { ufid });
        }
    }
}

/// Calls `f` with each `tnl_push` of `actions`, inside clones too.
fn for_each_tnl_push(actions: &[OdpAction], f: &mut impl FnMut(&TnlPush)) {
    for a in actions {
        match a {
            OdpAction::TnlPush(p) => f(p),
            OdpAction::Clone(inner) => for_each_tnl_push(inner, f),
            _ => {}
        }
    }
}

/// What every flow of one round is checked against.
struct Round {
    now: u64,
    max_idle_ms: u64,
    kill_all: bool,
    /// The rules version and NORMAL's MAC table generation.
    version: (u64, u64),
    dump_seq: u32,
    /// Translate every flow again and write its actions even if its ukey
    /// has them: the ukey may hold actions a lost modify never wrote.
    resync: bool,
}

/// Unknown flows fetched one by one at most; more are taken from a full
/// dump.
const ADOPT_BY_GETS: usize = 64;

impl Revalidator {
    /// Ages the ukeys of shard `s` whose flows the round's dump did not
    /// show (once a dump has shown them, or after
    /// [`NEVER_DUMPED_GRACE_MS`]), and drops those missed by
    /// [`MAX_MISSED_DUMPS`] dumps in a row: their flows are gone, and the
    /// next upcall for them is to install them again. When the dump showed
    /// `seen` flows of the shard and it holds no more ukeys than that,
    /// none was missed and the shard is not walked: a round over unchanged
    /// flows visits each ukey once.
    fn sweep(&self, s: usize, seen: usize, now: u64) {
        let seq = self.dump_seq;
        let mut shard = self.ukeys.shard(s);
        if shard.len() <= seen {
            return;
        }
        let mut dropped = 0;
        shard.retain(|_, ukey| {
            let waiting =
                ukey.dump_seq == 0 && now.saturating_sub(ukey.created_ms) < NEVER_DUMPED_GRACE_MS;
            if ukey.dump_seq == seq || waiting {
                return true;
            }
            ukey.missed_dumps += 1;
            let keep = ukey.missed_dumps < MAX_MISSED_DUMPS;
            dropped += u64::from(!keep);
            keep
        });
        PipelineStats::add(&self.stats.ukeys_missing, dropped);
    }
}

impl Revalidator {
    /// Frees the recirculation ids that no ukey holds (a flow installed,
    /// or on its way: handlers make the ukey before the put) and no
    /// translation used lately. Costs a visit per id, not per flow.
    fn free_recirc_ids(&mut self) {
        let recirc = &self.xlate_cfg.recirc;
        if recirc.is_empty() {
            return;
        }
        let freed = recirc.sweep();
        metrics::counter!("upcalld_recirc_ids_freed_total").increment(freed as u64);
        metrics::gauge!("upcalld_recirc_ids").set(recirc.len() as f64);
    }
}

/// CPU time the calling thread has used, user and kernel.
fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// True if `wc` needs a bit that `mask` does not match: the installed
/// megaflow is wider than the new translation allows.
fn has_extra_bits(wc: &Flow, mask: &Flow) -> bool {
    wc.words()
        .iter()
        .zip(mask.words())
        .any(|(w, m)| w & !m != 0)
}

impl Actor for Revalidator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.last_start = Instant::now();
        self.spacing = self.config.interval;
        self.schedule(self.config.interval, ctx);
    }
}

impl Supervised for Revalidator {
    /// Rebuilt as new after a panic, keeping what is its own and not
    /// scratch: the dump sequence (ukeys carry it) and the flow limit
    /// (published). The rules are read again from where the rule-table
    /// publishes them. A round that panicked may have given ukeys
    /// of its shards new actions whose modifies it never wrote, so the
    /// next round translates each of its flows again and writes its
    /// actions (the datapath's are not in a terse dump to compare with).
    fn restarting(&mut self, _: &mut Context<Self>) {
        tracing::info!(revalidator = self.id, "revalidator restarted");
        let (dump_seq, flow_limit) = (self.dump_seq, self.flow_limit);
        #[cfg(feature = "fault-injection")]
        let panics_to_inject = self.panics_to_inject;
        *self = Revalidator::new(
            self.id,
            self.n_revalidators,
            self.dpif.clone(),
            self.published.clone(),
            self.xlate_cfg.clone(),
            self.rule_table.clone(),
            std::mem::take(&mut self.handlers),
            self.config,
            self.ukeys.clone(),
            self.stats.clone(),
        );
        self.dump_seq = dump_seq;
        self.flow_limit = flow_limit;
        self.stats.flow_limit.store(flow_limit, Ordering::Relaxed);
        self.resync = true;
        #[cfg(feature = "fault-injection")]
        {
            self.panics_to_inject = panics_to_inject;
        }
    }
}

impl Handler<Tick> for Revalidator {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        let stats = self.stats.clone();
        let start = Instant::now();
        let cpu_start = thread_cpu_time();
        if guarded("revalidator", &stats, ctx, || self.round()).is_some() {
            // The next round `interval` after this one started (or
            // `round_spacing` times its CPU time, if longer), or at once if
            // it took longer, as OVS's revalidators: never the burst of
            // rounds a fixed-rate timer fires after a long round (at 200 000
            // flows in the kernel VM that kept the revalidator busy).
            let cpu = thread_cpu_time().saturating_sub(cpu_start);
            self.last_start = start;
            self.spacing = self.config.interval.max(cpu * self.config.round_spacing);
            if self.spacing > self.config.interval {
                self.schedule_spaced(start + self.spacing, ctx);
            } else {
                self.schedule(self.spacing.saturating_sub(start.elapsed()), ctx);
            }
        }
    }
}

impl Handler<RevalidateNow> for Revalidator {
    type Result = ();

    fn handle(&mut self, _: RevalidateNow, ctx: &mut Context<Self>) {
        let stats = self.stats.clone();
        guarded("revalidator", &stats, ctx, || self.round());
    }
}

#[cfg(feature = "fault-injection")]
impl Handler<InjectPanics> for Revalidator {
    type Result = ();

    fn handle(&mut self, msg: InjectPanics, _: &mut Context<Self>) {
        self.panics_to_inject = msg.batches;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_flow_limit_follows_ovs() {
        // Fast dump with many flows: grows by 1000.
        assert_eq!(next_flow_limit(10_000, 100, 10_000, 200_000), 11_000);
        // Fast dump with few flows: unchanged.
        assert_eq!(next_flow_limit(10_000, 100, 500, 200_000), 10_000);
        // Slow dump: shrinks by a quarter.
        assert_eq!(next_flow_limit(10_000, 1500, 10_000, 200_000), 7_500);
        // Very slow dump: divided by the seconds it took.
        assert_eq!(next_flow_limit(12_000, 3000, 10_000, 200_000), 4_000);
        // Never below 1000 nor above the configured maximum.
        assert_eq!(next_flow_limit(1_000, 5000, 10, 200_000), 1_000);
        assert_eq!(next_flow_limit(199_500, 10, 300_000, 200_000), 200_000);
    }

    #[test]
    fn extra_bits_are_bits_outside_the_mask() {
        let mask = Flow {
            nw_dst: 0xffff_0000,
            ..Flow::default()
        };
        let narrower = Flow {
            nw_dst: 0xff00_0000,
            ..Flow::default()
        };
        let wider = Flow {
            nw_dst: 0xffff_ff00,
            ..Flow::default()
        };
        assert!(!has_extra_bits(&narrower, &mask));
        assert!(has_extra_bits(&wider, &mask));
    }
}
