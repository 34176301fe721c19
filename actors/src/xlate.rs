//! Translation of OpenFlow actions into datapath actions and a megaflow
//! mask: OVS's `xlate_actions`, as a function of one tables snapshot and
//! one flow — and, for `NORMAL` only ([`normal`]), of the bridge's MAC
//! table, which a handler's translation also learns into.
//!
//! Two flows are carried along: `flow`, what the packet is according to the
//! OpenFlow actions so far, and `base`, what it is according to the
//! datapath actions emitted so far. Before every output the difference is
//! *committed* as set / push / pop actions. Every field an action reads or
//! writes is un-wildcarded in `wc`, so that the megaflow covers exactly the
//! packets that would get the same actions.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use messages::field::{Field, Prereq};
use messages::flow::*;
use messages::learn::{Learn, LearnedRule};
use messages::odp::*;
use messages::ofp::{
    packet_in_reason, port, ControllerAction, CtSpec, CtZone, Instructions, NatAction, OfAction,
    Rule, Subfield,
};
use messages::tunnel::{self, TunnelConfig};

use crate::classifier::Classifier;
use crate::mac_learning::MacTable;
use crate::protocol::SideEffects;
use crate::recirc::{FrozenActions, FrozenState, RecircIds};
use crate::tables::{RuleEntry, Tables};

mod group;
mod mpls;
pub mod native_tunnel;
pub mod normal;
use normal::{NormalLearn, PortVlan};

/// TCP flags that make `fin_timeout` lower timeouts.
pub const TCP_FIN: u16 = 0x001;
pub const TCP_RST: u16 = 0x004;

/// Resubmit nesting limit (OVS's `MAX_DEPTH`).
pub const MAX_DEPTH: u32 = 64;
/// Limit on table lookups in one translation (OVS's `MAX_RESUBMITS`).
pub const MAX_RESUBMITS: u32 = 4096;
/// Stack a lookup level needs at least (a few levels' worth, with margin
/// for unoptimized builds).
const STACK_RED_ZONE: usize = 64 << 10;
/// Stack a fresh segment gets: a few hundred levels.
const STACK_SEGMENT: usize = 1 << 20;

/// What a translation needs to know of the switch.
#[derive(Clone, Debug, Default)]
pub struct XlateConfig {
    /// Ports that exist (OpenFlow port N is datapath port N) when the
    /// tables carry none (`Tables::ports`, the daemon's, which can
    /// change): a trace's bridge. `None`: every port number exists.
    pub ports: Option<Arc<BTreeSet<u32>>>,
    /// Netlink PID (or handler id) for `userspace` actions.
    pub upcall_pid: u32,
    /// Datapath port of the bridge's own port (OpenFlow `LOCAL`): 0 on the
    /// kernel datapath, 100 on OVS's dummy datapath.
    pub local_port: u32,
    /// The recirculation ids, shared by every translation of the switch.
    pub recirc: Arc<RecircIds>,
    /// Each port's VLAN mode for `NORMAL`, by OpenFlow port; a port not
    /// listed trunks every VLAN.
    pub vlans: Arc<BTreeMap<u32, PortVlan>>,
    /// The bridge's MAC learning table, which `NORMAL` reads (shared by
    /// every clone of this configuration).
    pub mac: Arc<MacTable>,
    /// The tunnel ports, by OpenFlow port number. (The Geneve TLV map
    /// is the one in force, `messages::tlv::current`, as for parsing.)
    pub tunnels: Arc<BTreeMap<u32, TunnelConfig>>,
    /// Whether a flow that came from a tunnel names its datapath vport as
    /// `in_port` (upcalls, revalidation), to be mapped to the tunnel's
    /// OpenFlow port as OVS's `tnl_port_receive` does; a trace names the
    /// OpenFlow port itself.
    pub tunnel_receive: bool,
    /// The underlay when tunnels are native (OVS's userspace tunnelling:
    /// `tnl_push`/`tnl_pop`); `None`: the datapath's tunnel vports
    /// encapsulate (`set(tunnel(...))`).
    pub native_tunnel: Option<Arc<native_tunnel::NativeTunnel>>,
    /// Whether `NORMAL` learns source MACs: for upcalls, not for traces
    /// or revalidation (OVS's `allow_side_effects`).
    pub may_learn: bool,
    /// Whether native tunnelling learns at once the neighbours what it
    /// translates shows (ARP replies, a tunnel packet's outer source):
    /// for upcalls, a packet each; revalidation learns them again only
    /// from flows that had packets since the last round, never from a
    /// flow key alone.
    pub snoop_neighbours: bool,
    /// Whether actions with effects beyond the packet run (OVS's
    /// `allow_side_effects`): `learn` yields rules to add and `fin_timeout`
    /// timeouts to lower. True for upcalls and revalidation; false for a
    /// trace, where they only un-wildcard what they read.
    pub side_effects: bool,
    /// How `set_queue` and `enqueue` turn a queue into the packet's
    /// priority: Linux's traffic-control handle `1:(Q+1)` on the kernel
    /// datapath (OVS's dpif-netlink), the queue number itself on the
    /// userspace one (OVS's dpif-netdev).
    pub linux_queues: bool,
    /// The datapath hashes only with `OVS_HASH_ALG_L4` (the kernel's), so
    /// select groups ask for it instead of symmetric L4, as OVS does when
    /// its probe finds no more (`max_hash_alg`).
    pub l4_hash_only: bool,
    /// The timeout policy id of each conntrack zone that has one (OVS's
    /// `CT_Zone` `timeout_policy`), named by the `ct` actions that commit
    /// in that zone as the userspace datapath names policies (`timeout=1`).
    pub zone_timeout_policies: Arc<BTreeMap<u16, u32>>,
    /// The datapath has a timeout policy object per family and protocol
    /// (the kernel's cttimeout objects, `ovs_tp_1_udp4`): a committing
    /// `ct` names the packet's and matches its `nw_proto`, as OVS's
    /// `put_ct_timeout` does for dpif-netlink.
    pub timeout_per_protocol: bool,
    /// Linux's `netdev_max_backlog`: a translation with more outputs
    /// than that is `slow_action` (OVS's `too_many_output_actions`, for
    /// the kernel cannot send them all from one packet's actions). 0: no
    /// limit known.
    pub netdev_max_backlog: usize,
}

impl XlateConfig {
    /// The `skb_priority` of queue `q` (OVS's `dpif_queue_to_priority`);
    /// `None` where the datapath has no such queue.
    pub fn queue_priority(&self, q: u32) -> Option<u32> {
        if !self.linux_queues {
            Some(q)
        } else if q < 0xf000 {
            Some(0x1_0000 | (q + 1))
        } else {
            None
        }
    }
}

/// Why a translation gave up (its actions are then empty: drop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XlateError {
    RecursionTooDeep,
    TooManyResubmits,
    /// The flow's `recirc_id` names no frozen state (OVS's
    /// `XLATE_NO_RECIRCULATION_CONTEXT`).
    NoRecirculationContext,
    /// A push or pop of an MPLS label that the flow's label stack cannot
    /// take (OVS's `XLATE_TOO_MANY_MPLS_LABELS`).
    TooManyMplsLabels,
    /// A Geneve option the TLV map does not know has the critical bit
    /// (OVS's `XLATE_INVALID_TUNNEL_METADATA`).
    InvalidTunnelMetadata,
}

/// A pass that a `ct(table=T)` forked: what `ofproto/trace` follows next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recirculation {
    pub id: u32,
    /// The flow when the packet was forked, with `recirc_id` and
    /// `ct_zone` set (its `ct_state` is the tracker's to decide).
    pub flow: Flow,
    /// The `ct` action's NAT, if any.
    pub nat: Option<NatAction>,
}

/// The result of a translation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct XlateOutput {
    pub actions: OdpActions,
    /// The megaflow mask; the megaflow key is the flow under it.
    pub wc: FlowWildcards,
    /// Ids of the rules that matched, in lookup order, and the groups'
    /// buckets that ran (`protocol::group_credit`): what the flow's
    /// traffic is credited to.
    pub rules: Vec<u64>,
    /// What `NORMAL` learned from (or would have, without `may_learn`).
    pub mac_learned: Vec<NormalLearn>,
    pub error: Option<XlateError>,
    /// The passes `ct(table=T)` forked, in order.
    pub recircs: Vec<Recirculation>,
    /// Rules the `learn` actions built (side effects only): the rule-table
    /// adds them, or refreshes identical ones.
    pub learned: Vec<LearnedRule>,
    /// `fin_timeout` actions run, to apply when the flow's packets carry FIN
    /// or RST (side effects only).
    pub fin_timeouts: Vec<FinTimeout>,
    /// A native tunnel output found no neighbour for its next hop (and
    /// dropped): the flow is to be translated again until one is learned.
    pub unresolved: bool,
    /// Tunnel neighbours the packet shows (an ARP reply to the underlay
    /// address, a tunnel packet's outer source): learned at once where
    /// `snoop_neighbours`, and again while the flow has packets.
    pub neighbours_seen: Vec<(std::net::Ipv4Addr, [u8; 6])>,
    /// The actions need the slow path (OVS's `SLOW_ACTION`: an ARP header
    /// set, which no datapath does, `debug_slow`, or more outputs than
    /// `netdev_max_backlog`); a trace says so as OVS's does.
    pub slow_action: bool,
}

impl XlateOutput {
    /// What the translation asked of the rules (a copy).
    pub fn side_effects(&self) -> SideEffects {
        SideEffects {
            learned: self.learned.clone(),
            fin_timeouts: self.fin_timeouts.clone(),
        }
    }
}

/// A `fin_timeout` to apply: lower rule `rule`'s timeouts to these (0:
/// leave that one alone).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FinTimeout {
    pub rule: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
}

struct Ctx<'a> {
    tables: &'a Tables,
    cfg: &'a XlateConfig,
    flow: Flow,
    base: Flow,
    /// The caller's: accumulated in place, not copied out.
    wc: &'a mut FlowWildcards,
    actions: OdpActions,
    rules: Vec<u64>,
    mac_learned: Vec<NormalLearn>,
    table_id: u8,
    depth: u32,
    resubmits: u32,
    action_set: Vec<OfAction>,
    /// The action set holds a group (OVS's `action_set_has_group`): until
    /// `clear_actions`, `actset_output` stays unset.
    action_set_has_group: bool,
    error: Option<XlateError>,
    /// The packet has been through the connection tracker in this pass
    /// (OVS's `ctx->conntracked`): `ct_clear` then has something to clear.
    conntracked: bool,
    /// `conntracked` still comes from the packet's own `ct_state` (no
    /// `ct` in this pass, not resumed), so acting on it reads that bit.
    conntracked_by_packet: bool,
    /// This translation resumes a frozen state (zone subfields in frozen
    /// metadata then need no un-wildcarding).
    resumed: bool,
    /// The NAT of the `ct` action being composed.
    ct_nat: Option<NatAction>,
    recircs: Vec<Recirculation>,
    /// The rule whose actions run (for `fin_timeout`).
    rule: Option<u64>,
    /// What a `controller` action tells of the rule whose actions run:
    /// its cookie, and whether it is a table-miss rule.
    rule_cookie: u64,
    rule_is_miss: bool,
    /// Where an output to CONTROLLER runs, which decides its packet-in
    /// reason (OVS's `in_packet_out`, `in_group`, `in_action_set`).
    in_packet_out: bool,
    in_group: bool,
    in_action_set: bool,
    learned: Vec<LearnedRule>,
    /// The rules `learned` adds that are new to their tables, per table:
    /// later lookups in those tables examine them without matching them
    /// (see `Classifier::lookup_pending`).
    pending: Vec<(u8, Classifier)>,
    fin_timeouts: Vec<FinTimeout>,
    /// Where the packet's own tunnel ends (`::` when it came from none):
    /// OVS never tunnels a packet back there.
    orig_tnl_dst: std::net::Ipv6Addr,
    /// An `exit` ran: nothing more is translated.
    exit: bool,
    /// The NXM stack of `push`/`pop`, right-aligned values.
    stack: Vec<u128>,
    /// The packet's own priority, which `pop_queue` goes back to.
    orig_skb_priority: u32,
    /// A native tunnel output missed its neighbour.
    unresolved: bool,
    neighbours_seen: Vec<(std::net::Ipv4Addr, [u8; 6])>,
    /// Translation is freezing (OVS's `ctx->freezing`, with `exit` set):
    /// each level adds what it has left, then the pass ends in a
    /// recirculation that resumes there.
    freeze: Option<Freeze>,
    /// An MPLS label was popped to a non-MPLS EtherType (OVS's
    /// `was_mpls`): the L3 headers under it are unknown until the packet
    /// is extracted again, after a recirculation.
    was_mpls: bool,
    /// OVS's `SLOW_ACTION`: see [`XlateOutput::slow_action`].
    slow_action: bool,
}

/// A freeze under way.
struct Freeze {
    /// The datapath `hash(alg, basis)` to run before recirculating (a
    /// select group's dp_hash).
    hash: Option<(u32, u32)>,
    /// What each level had left, innermost first.
    continuation: Vec<FrozenActions>,
    /// A `controller(pause)` froze (OVS's `ctx->pause`): the frozen state
    /// goes to the controllers as a continuation instead of back to the
    /// datapath.
    pause: Option<ControllerAction>,
}

/// Translates `flow` through `tables`, starting at table 0.
pub fn xlate(tables: &Tables, flow: &Flow, cfg: &XlateConfig) -> XlateOutput {
    let mut out = XlateOutput::default();
    xlate_into(tables, flow, cfg, &mut out);
    out
}

/// [`xlate`] into `out`, reusing its buffers (a handler translates one
/// upcall after another).
pub fn xlate_into(tables: &Tables, flow: &Flow, cfg: &XlateConfig, out: &mut XlateOutput) {
    xlate_from(tables, flow, cfg, out, None, None)
}

/// Translates `flow` from `state` (an NXT_RESUME's continuation), as if
/// the packet came back from the datapath with it (OVS's `xlate_resume`).
pub fn xlate_resume(
    tables: &Tables,
    flow: &Flow,
    cfg: &XlateConfig,
    state: Arc<FrozenState>,
) -> XlateOutput {
    let mut out = XlateOutput::default();
    xlate_from(tables, flow, cfg, &mut out, None, Some(state));
    out
}

/// Translates `actions` for `flow` (a packet-out's): they run as a rule's
/// would, so that `resubmit` and `goto`-free tables work as in OVS.
pub fn xlate_actions(
    tables: &Tables,
    flow: &Flow,
    cfg: &XlateConfig,
    actions: &[OfAction],
) -> XlateOutput {
    let mut out = XlateOutput::default();
    xlate_from(tables, flow, cfg, &mut out, Some(actions), None);
    out
}

/// Translation from table 0 (or the frozen state of the flow's
/// `recirc_id`, or `resume`), or of `actions` given.
fn xlate_from(
    tables: &Tables,
    flow: &Flow,
    cfg: &XlateConfig,
    out: &mut XlateOutput,
    actions_given: Option<&[OfAction]>,
    resume: Option<Arc<FrozenState>>,
) {
    // Fields every megaflow matches exactly.
    out.wc = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        recirc_id: u32::MAX,
        nw_frag: if flow.is_ip_any() {
            FLOW_NW_FRAG_MASK
        } else {
            0
        },
        ..Flow::default()
    };
    tunnel::wc_init(flow, &mut out.wc);
    let mut actions = std::mem::take(&mut out.actions);
    actions.clear();
    let mut rules = std::mem::take(&mut out.rules);
    rules.clear();
    let mut mac_learned = std::mem::take(&mut out.mac_learned);
    mac_learned.clear();
    out.recircs.clear();
    out.learned.clear();
    out.fin_timeouts.clear();
    out.unresolved = false;
    out.neighbours_seen.clear();
    out.slow_action = false;
    let frozen = if resume.is_some() {
        resume
    } else if flow.recirc_id != 0 {
        match cfg.recirc.get(flow.recirc_id) {
            Some(state) => Some(state),
            None => {
                out.actions = actions;
                out.rules = rules;
                out.mac_learned = mac_learned;
                out.error = Some(XlateError::NoRecirculationContext);
                return;
            }
        }
    } else {
        None
    };
    // A packet from the kernel whose Geneve options include an unknown
    // critical one: dropped, by a megaflow matching its options' layout.
    if frozen.is_none()
        && flow.tun_md_layout != 0
        && tunnel::unknown_critical_option(flow, &messages::tlv::current()).is_some()
    {
        out.actions = actions;
        out.rules = rules;
        out.mac_learned = mac_learned;
        out.error = Some(XlateError::InvalidTunnelMetadata);
        return;
    }
    let mut ctx = Ctx {
        tables,
        cfg,
        flow: *flow,
        base: *flow,
        wc: &mut out.wc,
        actions,
        rules,
        mac_learned,
        table_id: 0,
        depth: 0,
        resubmits: 0,
        action_set: Vec::new(),
        action_set_has_group: false,
        error: None,
        conntracked: false,
        conntracked_by_packet: frozen.is_none(),
        resumed: frozen.is_some(),
        ct_nat: None,
        recircs: std::mem::take(&mut out.recircs),
        rule: None,
        rule_cookie: 0,
        rule_is_miss: false,
        in_packet_out: actions_given.is_some(),
        in_group: false,
        in_action_set: false,
        learned: std::mem::take(&mut out.learned),
        pending: Vec::new(),
        fin_timeouts: std::mem::take(&mut out.fin_timeouts),
        orig_tnl_dst: flow.tnl_dst(),
        exit: false,
        stack: Vec::new(),
        orig_skb_priority: flow.skb_priority,
        unresolved: false,
        neighbours_seen: std::mem::take(&mut out.neighbours_seen),
        freeze: None,
        was_mpls: false,
        slow_action: false,
    };
    // The action set starts empty (OVS's `xlate_in_init`).
    ctx.flow.actset_output = port::UNSET;
    let mut table = 0;
    match &frozen {
        Some(state) => {
            // OVS's thaw: the frozen metadata and action set come back,
            // and the lookup starts in the frozen table.
            table = state.table;
            ctx.conntracked = state.conntracked;
            if !state.conntracked {
                ctx.flow.clear_conntrack();
            }
            state.restore_metadata(&mut ctx.flow);
            ctx.stack.clone_from(&state.stack);
            for a in &state.action_set {
                ctx.write_action(a.clone());
            }
        }
        None => ctx.conntracked = flow.ct_state & CS_TRACKED != 0,
    }
    if frozen.is_none() && cfg.tunnel_receive && flow.tnl_dst_is_set() {
        match tunnel::tnl_find(cfg.tunnels.iter().map(|(p, t)| (*p, t)), flow) {
            Some(p) => {
                ctx.flow.in_port = p;
                ctx.base.in_port = p;
            }
            // OVS: "no OpenFlow tunnel port for this packet": dropped.
            None => {
                let (actions, rules, mac_learned) = (ctx.actions, ctx.rules, ctx.mac_learned);
                out.actions = actions;
                out.rules = rules;
                out.mac_learned = mac_learned;
                out.error = None;
                out.recircs = ctx.recircs;
                out.learned = ctx.learned;
                out.fin_timeouts = ctx.fin_timeouts;
                out.neighbours_seen = ctx.neighbours_seen;
                return;
            }
        }
    }
    let in_port = ctx.flow.in_port;
    let continuation = frozen.as_ref().map_or(&[][..], |s| &s.continuation[..]);
    if let Some(given) = actions_given {
        ctx.run_actions(given, None, true);
    } else if !continuation.is_empty() {
        ctx.thaw_actions(continuation);
    } else if table == 0 && tables.fail_open() {
        // OVS's hidden fail-open rule: a catch-all above every OpenFlow
        // priority, so no other rule is looked at (nor un-wildcarded).
        let normal = OfAction::Output {
            port: port::NORMAL,
            max_len: 0,
        };
        ctx.run_actions(&[normal], None, true);
    } else {
        let rule = ctx.lookup(table, in_port);
        // A packet marked congested outside must be ECN capable inside (OVS
        // drops it otherwise), and carries the mark in.
        let ecn_ok = frozen.is_some() || tunnel::process_ecn(&mut ctx.flow);
        if let Some(rule) = rule.filter(|_| ecn_ok) {
            ctx.run_rule(&rule, false, true);
            // The action set runs as the first rule's (OVS keeps its
            // cookie for it).
            ctx.rule_cookie = rule.rule.cookie;
            ctx.rule_is_miss = rule.rule.is_table_miss();
        }
    }
    ctx.end_pass();
    if ctx.error.is_some() {
        // OVS drops the packet and keeps the wildcards as they were when
        // translation gave up.
        ctx.actions.clear();
    } else {
        ctx.finish_wc(flow);
    }
    let (actions, rules, mac_learned, error, recircs) = (
        ctx.actions,
        ctx.rules,
        ctx.mac_learned,
        ctx.error,
        ctx.recircs,
    );
    out.actions = actions;
    out.rules = rules;
    out.mac_learned = mac_learned;
    out.error = error;
    out.recircs = recircs;
    out.learned = ctx.learned;
    out.fin_timeouts = ctx.fin_timeouts;
    out.unresolved = ctx.unresolved;
    out.neighbours_seen = ctx.neighbours_seen;
    out.slow_action = ctx.slow_action || too_many_outputs(&out.actions, cfg.netdev_max_backlog);
}

/// OVS's `too_many_output_actions` (its size term follows from the count:
/// each output takes 8 bytes of attribute).
fn too_many_outputs(actions: &OdpActions, max_backlog: usize) -> bool {
    max_backlog != 0
        && actions
            .iter()
            .filter(|a| matches!(a, OdpAction::Output(_)))
            .count()
            > max_backlog
}

/// Adds `a` to an action set, replacing one of the same kind, keeping
/// OpenFlow's action-set order (OVS's `ACTION_SET_ORDER`): pops, pushes
/// (MPLS under VLAN), TTL decrements, sets, then output or group.
fn add_to_action_set(set: &mut Vec<OfAction>, a: OfAction) {
    let same_kind = |b: &OfAction| match (&a, b) {
        (OfAction::SetField { field: x, .. }, OfAction::SetField { field: y, .. }) => x == y,
        (OfAction::Output { .. } | OfAction::Controller { .. }, OfAction::Output { .. })
        | (OfAction::Output { .. } | OfAction::Controller { .. }, OfAction::Controller { .. }) => {
            true
        }
        _ => std::mem::discriminant(&a) == std::mem::discriminant(b),
    };
    set.retain(|b| !same_kind(b));
    set.push(a);
    set.sort_by_key(|a| match a {
        OfAction::PopVlan => 0,
        OfAction::PopMpls { .. } => 1,
        OfAction::PushMpls { .. } => 2,
        OfAction::PushVlan { .. } => 3,
        OfAction::DecTtl | OfAction::DecTtlIds(_) => 4,
        OfAction::DecMplsTtl => 5,
        OfAction::SetField { .. }
        | OfAction::Load { .. }
        | OfAction::Move { .. }
        | OfAction::SetMplsLabel(_)
        | OfAction::SetMplsTc(_)
        | OfAction::SetMplsTtl(_)
        | OfAction::SetTunnel { .. } => 6,
        OfAction::Resubmit { .. }
        | OfAction::Clone(_)
        | OfAction::StackPush(_)
        | OfAction::StackPop(_)
        | OfAction::Exit
        | OfAction::CheckPktLarger { .. }
        | OfAction::SetQueue(_)
        | OfAction::PopQueue
        | OfAction::Ct(_)
        | OfAction::CtClear
        | OfAction::Nat(_)
        | OfAction::Conjunction { .. }
        | OfAction::Learn(_)
        | OfAction::FinTimeout { .. }
        | OfAction::Note(_)
        | OfAction::Multipath(_)
        | OfAction::Bundle(_)
        | OfAction::Sample(_)
        | OfAction::DebugRecirc
        | OfAction::DebugSlow => 7,
        OfAction::Output { .. }
        | OfAction::OutputReg { .. }
        | OfAction::OutputTrunc { .. }
        | OfAction::Enqueue { .. }
        | OfAction::Controller { .. }
        | OfAction::Group(_) => 8,
    });
    // A group and an output: OpenFlow runs only the group.
    if set.iter().any(|a| matches!(a, OfAction::Group(_))) {
        set.retain(|a| !matches!(a, OfAction::Output { .. } | OfAction::Controller { .. }));
    }
}

impl Ctx<'_> {
    /// The bridge's ports: the daemon's, versioned with the rules, else
    /// the configuration's (`None`: every port number exists).
    fn ports(&self) -> Option<&BTreeSet<u32>> {
        self.tables.ports().or(self.cfg.ports.as_deref())
    }

    fn port_exists(&self, p: u32) -> bool {
        self.ports().is_none_or(|s| s.contains(&p))
    }

    /// OVS's `rule_dpif_lookup_from_table` for one table: fragments are
    /// looked up with L4 fields read as zero, and with `in_port` as given.
    fn lookup(&mut self, table: u8, in_port: u32) -> Option<Arc<RuleEntry>> {
        self.table_id = table;
        let fragment = self.flow.nw_frag & FLOW_NW_FRAG_ANY != 0;
        let mut f = self.flow;
        if in_port != f.in_port || fragment {
            f.in_port = in_port;
            if fragment {
                f.tp_src = 0;
                f.tp_dst = 0;
            }
        }
        let pending = self.pending.iter().find(|(t, _)| *t == table);
        let r = match pending {
            None => self.tables.lookup(table, &f, &mut *self.wc),
            Some((_, p)) => self.tables.lookup_pending(table, p, &f, &mut *self.wc),
        }
        .cloned();
        if let Some(r) = &r {
            self.rules.push(r.id);
        }
        r
    }

    fn resource_check(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            self.error = Some(XlateError::RecursionTooDeep);
        } else if self.resubmits >= MAX_RESUBMITS {
            self.error = Some(XlateError::TooManyResubmits);
        }
        self.error.is_none()
    }

    /// Looks up `table` and runs the rule found (resubmit and goto_table).
    ///
    /// Each lookup nests a level of recursion, up to [`MAX_RESUBMITS`]; a
    /// level that finds less than [`STACK_RED_ZONE`] of stack left goes on
    /// on a fresh segment, so that the depth OVS allows translates on any
    /// thread, whatever stack it was given.
    fn table_action(&mut self, in_port: u32, table: u8, last: bool) {
        // OVS's `xlate_table_action`: a packet whose L3 headers are unknown
        // is looked up again after a recirculation.
        if self.was_mpls {
            self.trigger_freeze();
            return;
        }
        if !self.resource_check() {
            return;
        }
        let old_table = self.table_id;
        if let Some(rule) = self.lookup(table, in_port) {
            stacker::maybe_grow(STACK_RED_ZONE, STACK_SEGMENT, || {
                self.run_rule(&rule, table <= old_table, last)
            });
        }
        self.table_id = old_table;
    }

    /// Runs a rule. `last`: nothing runs after it (OVS's `is_last_action`),
    /// so a `clone` in it needs no datapath clone.
    fn run_rule(&mut self, rule: &RuleEntry, deepens: bool, last: bool) {
        self.resubmits += 1;
        let deepens = deepens as u32;
        self.depth += deepens;
        let outer = self.rule.replace(rule.id);
        let r = &rule.rule;
        let outer_cookie = std::mem::replace(&mut self.rule_cookie, r.cookie);
        let outer_miss = std::mem::replace(&mut self.rule_is_miss, rule.rule.is_table_miss());
        // OVS's `xlate_meter_action`: the datapath meter, nothing
        // un-wildcarded; a meter deleted since the rule was added is no
        // action (the rule goes with it in the next version).
        if let Some(m) = r.instructions.meter.and_then(|m| self.tables.meter(m)) {
            self.actions.push(OdpAction::Meter(m.dp_id));
        }
        self.run_actions(&r.instructions.apply, Some(&r.instructions), last);
        self.rule = outer;
        self.rule_cookie = outer_cookie;
        self.rule_is_miss = outer_miss;
        self.depth -= deepens;
    }

    /// The instructions after a rule's apply-actions (OVS has them at the
    /// end of the same action list).
    fn run_rest(&mut self, ins: &Instructions, last: bool) {
        if ins.clear_actions {
            self.action_set.clear();
            self.action_set_has_group = false;
            self.flow.actset_output = port::UNSET;
        }
        if let Some(w) = &ins.write_actions {
            for a in w {
                self.write_action(a.clone());
            }
        }
        if let Some((value, mask)) = ins.write_metadata {
            self.flow.metadata = (self.flow.metadata & !mask) | (value & mask);
        }
        if let Some(t) = ins.goto_table {
            let in_port = self.flow.in_port;
            let last = last && self.action_set.is_empty();
            self.table_action(in_port, t, last);
        }
    }

    /// OVS's `xlate_action_set`: runs the action set and empties it.
    fn run_action_set(&mut self) {
        if self.error.is_none() && !self.exit && !self.action_set.is_empty() {
            let set = std::mem::take(&mut self.action_set);
            let outer = std::mem::replace(&mut self.in_action_set, true);
            self.run_actions(&set, None, true);
            self.in_action_set = outer;
        }
    }

    /// Adds an action to the action set, replacing one of the same kind.
    /// `actset_output` follows the set's output, or is unset once the set
    /// has a group, even if an output follows (OVS's
    /// `xlate_write_actions__`).
    fn write_action(&mut self, a: OfAction) {
        if !self.action_set_has_group {
            match a {
                OfAction::Output { port, .. } => self.flow.actset_output = port,
                OfAction::Group(_) => {
                    self.flow.actset_output = port::UNSET;
                    self.action_set_has_group = true;
                }
                _ => {}
            }
        }
        add_to_action_set(&mut self.action_set, a);
    }

    /// Runs a list of actions, then, if given, the rest of the rule they
    /// are the apply-actions of. Returns false when translation of the
    /// current rule must stop (an error, or a TTL exception). `last`: no
    /// action follows the list (OVS's `is_last_action`).
    fn run_actions(
        &mut self,
        actions: &[OfAction],
        rest: Option<&Instructions>,
        last: bool,
    ) -> bool {
        let has_rest = rest.is_some_and(|ins| {
            ins.clear_actions
                || ins.write_actions.is_some()
                || ins.write_metadata.is_some()
                || ins.goto_table.is_some()
        });
        for (i, a) in actions.iter().enumerate() {
            if self.error.is_some() {
                return false;
            }
            self.recirc_for_mpls(a);
            if self.exit {
                self.unroll(&actions[i..], rest);
                return true;
            }
            let last = last && !has_rest && i + 1 == actions.len() && self.action_set.is_empty();
            match a {
                OfAction::Output { port, .. } => self.output(*port, last),
                OfAction::Clone(inner) => self.clone_actions(inner, last),
                OfAction::StackPush(sf) => {
                    sf.field.set_masked(&mut *self.wc, sf.mask(), sf.mask());
                    self.stack.push(sf.read(&self.flow));
                }
                // Popping an empty stack does nothing (OVS reports it).
                OfAction::StackPop(sf) => {
                    if let Some(v) = self.stack.pop() {
                        sf.field.set_masked(&mut *self.wc, sf.mask(), sf.mask());
                        sf.write(&mut self.flow, v);
                    }
                }
                OfAction::Exit => self.exit = true,
                OfAction::Group(g) => {
                    if !self.group_action(*g, last) {
                        return true;
                    }
                    // The group froze: it runs again, then the rest, when
                    // the packet comes back with its dp_hash.
                    if self
                        .freeze
                        .as_ref()
                        .is_some_and(|f| f.continuation.is_empty())
                    {
                        self.unroll(&actions[i..], rest);
                        return true;
                    }
                }
                OfAction::OutputTrunc { port, max_len } => self.output_trunc(*port, *max_len),
                OfAction::CheckPktLarger { pkt_len, dst } => {
                    self.check_pkt_larger(*pkt_len, *dst, &actions[i + 1..], rest);
                    return self.error.is_none();
                }
                OfAction::SetQueue(q) => {
                    self.wc.skb_priority = u32::MAX;
                    if let Some(p) = self.cfg.queue_priority(*q) {
                        self.flow.skb_priority = p;
                    }
                }
                OfAction::PopQueue => {
                    self.wc.skb_priority = u32::MAX;
                    self.flow.skb_priority = self.orig_skb_priority;
                }
                // OVS's OFPACT_SET_TUNNEL writes tun_id and un-wildcards
                // nothing (set_field:->tun_id makes it exact).
                OfAction::SetTunnel { tun_id, .. } => self.flow.tun_id = *tun_id,
                OfAction::Enqueue { port, queue } => self.enqueue(*port, *queue),
                OfAction::OutputReg { field, ofs, n_bits } => {
                    self.output_reg(*field, *ofs, *n_bits)
                }
                OfAction::Controller(c) if c.pause => {
                    self.trigger_freeze();
                    if let Some(f) = &mut self.freeze {
                        f.pause = Some(c.clone());
                    }
                }
                OfAction::Controller(c) if c.is_output() => self.output_to_controller(c.max_len),
                OfAction::Controller(c) => self.controller(c, c.reason),
                OfAction::SetField { field, value, mask }
                | OfAction::Load { field, value, mask } => {
                    self.set_field(*field, *value, *mask);
                }
                OfAction::Move {
                    src,
                    src_ofs,
                    dst,
                    dst_ofs,
                    n_bits,
                } => self.move_bits(*src, *src_ofs, *dst, *dst_ofs, *n_bits),
                OfAction::PushVlan { tpid } => self.push_vlan(*tpid),
                OfAction::PopVlan => self.pop_vlan(),
                OfAction::PushMpls { ethertype } => self.push_mpls(*ethertype),
                OfAction::PopMpls { ethertype } => self.pop_mpls(*ethertype),
                OfAction::SetMplsLabel(label) => {
                    let (mask, value) = mpls::label_bits(*label);
                    self.set_mpls_bits(mask, value);
                }
                OfAction::SetMplsTc(tc) => {
                    let (mask, value) = mpls::tc_bits(*tc);
                    self.set_mpls_bits(mask, value);
                }
                OfAction::SetMplsTtl(ttl) => {
                    let (mask, value) = mpls::ttl_bits(*ttl);
                    self.set_mpls_bits(mask, value);
                }
                OfAction::DecMplsTtl => {
                    if !self.dec_mpls_ttl() {
                        return false;
                    }
                }
                OfAction::DecTtl => {
                    if !self.dec_ttl(&[0]) {
                        return false;
                    }
                }
                OfAction::DecTtlIds(ids) => {
                    if !self.dec_ttl(ids) {
                        return false;
                    }
                }
                OfAction::Resubmit { in_port, table } => {
                    let in_port = match in_port {
                        None | Some(port::IN_PORT) => self.flow.in_port,
                        Some(p) => *p,
                    };
                    let table = table.unwrap_or(self.table_id);
                    self.table_action(in_port, table, last);
                }
                OfAction::Ct(ct) => self.conntrack(ct),
                OfAction::CtClear => {
                    if self.conntracked_by_packet {
                        // OVS reads the bit without un-wildcarding it,
                        // which lets an untracked packet inherit a tracked
                        // one's ct_clear; we match it.
                        self.wc.ct_state |= CS_TRACKED;
                    }
                    if self.conntracked {
                        self.conntracked = false;
                        self.flow.clear_conntrack();
                        self.actions.push(OdpAction::CtClear);
                    }
                }
                // Read by `conntrack` from the nested actions.
                OfAction::Nat(nat) => self.ct_nat = Some(nat.clone()),
                // A clause of a conjunctive match: the classifier never
                // returns such a rule, so it has nothing to do.
                OfAction::Conjunction { .. } => {}
                OfAction::Learn(l) => self.learn(l),
                // Without an IPFIX collector set (upcalld exports none),
                // OVS's `xlate_sample_action` emits nothing.
                OfAction::Note(_) | OfAction::Sample(_) => {}
                OfAction::Multipath(mp) => {
                    let link = mp.link(&self.flow, &mut *self.wc);
                    self.load_result(&mp.dst, link.into());
                }
                OfAction::Bundle(b) => self.bundle(b, last),
                // The actions after it run once the packet comes back.
                OfAction::DebugRecirc => self.trigger_freeze(),
                OfAction::DebugSlow => self.slow_action = true,
                OfAction::FinTimeout {
                    idle_timeout,
                    hard_timeout,
                } => self.fin_timeout(*idle_timeout, *hard_timeout),
            }
        }
        if self.error.is_some() {
            return false;
        }
        // The instructions after the apply-actions need the L3 headers as
        // much as OVS's `recirc_for_mpls` says each of them does.
        if has_rest && self.was_mpls && !self.exit {
            self.trigger_freeze();
        }
        match rest {
            Some(ins) if !self.exit => self.run_rest(ins, last),
            Some(_) => self.unroll(&[], rest),
            None => {}
        }
        self.error.is_none()
    }

    /// OVS's `freeze_unroll_actions`: while freezing, keeps what this
    /// level has left for the resumed translation.
    fn unroll(&mut self, actions: &[OfAction], rest: Option<&Instructions>) {
        let Some(freeze) = &mut self.freeze else {
            return;
        };
        let rest = rest.filter(|ins| {
            ins.clear_actions
                || ins.write_actions.is_some()
                || ins.write_metadata.is_some()
                || ins.goto_table.is_some()
        });
        if actions.is_empty() && rest.is_none() {
            return;
        }
        freeze.continuation.push(FrozenActions {
            table: self.table_id,
            cookie: self.rule_cookie,
            actions: actions.to_vec(),
            rest: rest.cloned(),
        });
    }

    /// Runs a frozen translation's remaining actions, level by level.
    fn thaw_actions(&mut self, continuation: &[FrozenActions]) {
        for (i, level) in continuation.iter().enumerate() {
            if self.error.is_some() {
                break;
            }
            if self.exit {
                // Frozen again in an earlier level: the later levels are
                // still to run, after it (OVS's frozen actions are one
                // list, unrolled whole).
                if let Some(freeze) = &mut self.freeze {
                    freeze
                        .continuation
                        .extend(continuation[i..].iter().cloned());
                }
                break;
            }
            self.table_id = level.table;
            self.rule_cookie = level.cookie;
            let last = i + 1 == continuation.len();
            self.run_actions(&level.actions, level.rest.as_ref(), last);
        }
    }

    /// The end of a pass, of a clone or of a group bucket: the action set
    /// runs, or, if translation is freezing, the freeze is finished
    /// (OVS's `finish_freezing`). Returns whether it finished a freeze.
    fn end_pass(&mut self) -> bool {
        if self.freeze.is_none() {
            self.run_action_set();
        }
        // (The action set itself may have frozen.)
        let Some(freeze) = self.freeze.take() else {
            return false;
        };
        self.commit();
        // OVS freezes `conntracked` also when it only reflects the packet's
        // own ct_state, which its megaflow does not match: a packet tracked
        // before it reached the switch would share a megaflow with one that
        // was not, and resume as that one. Only a `ct` of this pass counts
        // here, so that the megaflow stays OVS's and sound.
        let conntracked = self.conntracked && !self.conntracked_by_packet;
        let mut state = FrozenState::new(
            0,
            &self.flow,
            std::mem::take(&mut self.action_set),
            conntracked,
        )
        .with_stack(self.stack.clone());
        state.was_mpls = self.was_mpls;
        if let Some(c) = &freeze.pause {
            state.userdata.clone_from(&c.userdata);
        }
        // OVS's `finish_freezing__`: a translation without side effects (a
        // trace without a packet) sends nothing to resume, and stays
        // frozen, so that an enclosing pass (after a clone, a bucket)
        // freezes again with what it adds.
        if freeze.pause.is_some() && !self.cfg.side_effects {
            state.continuation.clone_from(&freeze.continuation);
            self.cfg.recirc.id_for(state);
            self.freeze = Some(freeze);
            return true;
        }
        state.continuation = freeze.continuation;
        let id = self.cfg.recirc.id_for(state);
        match freeze.pause {
            Some(c) => self.put_controller_action(&c, c.reason, id, false, true),
            None => {
                if let Some((alg, basis)) = freeze.hash {
                    self.actions.push(OdpAction::Hash { alg, basis });
                }
                self.actions.push(OdpAction::Recirc(id));
            }
        }
        true
    }

    /// OVS's `clone_xlate_actions`: actions the datapath can undo run in
    /// place (and the flow is put back after them); others, unless nothing
    /// follows, go into a datapath `clone` after committing what is pending.
    /// The stack and the action set come back as they were either way.
    fn clone_actions(&mut self, inner: &[OfAction], last: bool) {
        let old_stack = self.stack.clone();
        let old_action_set = self.action_set.clone();
        let old_flow = self.flow;
        let old_was_mpls = self.was_mpls;
        let reversible = !inner.iter().any(|a| {
            matches!(
                a,
                OfAction::Ct(_) | OfAction::Nat(_) | OfAction::OutputTrunc { .. }
            )
        });
        if reversible || last {
            self.run_actions(inner, None, last);
            self.end_pass();
        } else {
            self.commit();
            let old_base = self.base;
            let old_conntracked = self.conntracked;
            let outer = std::mem::take(&mut self.actions);
            self.run_actions(inner, None, true);
            self.end_pass();
            let cloned = std::mem::replace(&mut self.actions, outer);
            if !cloned.is_empty() {
                self.actions.push(OdpAction::Clone(cloned));
            }
            self.conntracked = old_conntracked;
            self.base = old_base;
        }
        self.action_set = old_action_set;
        self.stack = old_stack;
        self.flow = old_flow;
        self.was_mpls = old_was_mpls;
        // A freeze inside (`debug_recirc`, `controller(pause)`, a pop of
        // MPLS) ended with the clone and leaves `exit` set: as in OVS 3.1,
        // the actions after the clone are neither run nor frozen.
    }

    /// OVS's `nxm_reg_load` of an action's result: written into the
    /// subfield, which the megaflow then matches.
    fn load_result(&mut self, dst: &Subfield, value: u128) {
        dst.write(&mut self.flow, value);
        dst.field.set_masked(&mut *self.wc, dst.mask(), dst.mask());
    }

    /// OVS's `xlate_bundle_action`: the member `bundle` outputs to (none
    /// when no member is live), or whose number `bundle_load` writes
    /// (0xffff, OpenFlow 1.0's `OFPP_NONE`, when none is).
    fn bundle(&mut self, b: &messages::multipath::Bundle, last: bool) {
        let live: Vec<u32> = b
            .members
            .iter()
            .copied()
            .filter(|p| self.member_live(*p))
            .collect();
        let flow = self.flow;
        let chosen = b.choose(&flow, &mut *self.wc, |p| live.contains(&p));
        match &b.dst {
            Some(dst) => self.load_result(dst, u128::from(chosen.map_or(0xffff, |p| p as u16))),
            None => {
                if let Some(p) = chosen {
                    self.output(p, last);
                }
            }
        }
    }

    /// OVS's `member_enabled_cb`: reserved ports are always live but
    /// CONTROLLER (never a member); others while the bridge has them up.
    fn member_live(&self, p: u32) -> bool {
        match p {
            port::IN_PORT | port::TABLE | port::NORMAL | port::FLOOD | port::ALL | port::ANY => {
                true
            }
            port::CONTROLLER => false,
            p => self.port_alive(p),
        }
    }

    /// OVS's `xlate_check_pkt_larger`: the rest of the rule is translated
    /// twice, with the result bit 1 and 0, into a datapath `check_pkt_len`
    /// that picks one per packet. As in OVS, the action set runs in the
    /// first branch and the second starts from what that left of it.
    fn check_pkt_larger(
        &mut self,
        pkt_len: u16,
        dst: Subfield,
        remaining: &[OfAction],
        rest: Option<&Instructions>,
    ) {
        let old_stack = self.stack.clone();
        let old_action_set = self.action_set.clone();
        let old_flow = self.flow;
        let old_was_mpls = self.was_mpls;
        self.commit();
        let old_base = self.base;
        let old_conntracked = self.conntracked;
        let outer = std::mem::take(&mut self.actions);

        // A freeze in a branch ends with it (it is no `exit`).
        dst.write(&mut self.flow, 1);
        self.run_actions(remaining, rest, true);
        let froze = self.end_pass();
        let gt = std::mem::take(&mut self.actions);
        self.base = old_base;
        self.conntracked = old_conntracked;
        self.flow = old_flow;
        self.was_mpls = old_was_mpls;
        let old_exit = std::mem::replace(&mut self.exit, false) && !froze;

        dst.write(&mut self.flow, 0);
        self.run_actions(remaining, rest, true);
        self.end_pass();
        let le = std::mem::replace(&mut self.actions, outer);
        self.actions
            .push(OdpAction::CheckPktLen { pkt_len, gt, le });

        self.action_set = old_action_set;
        self.stack = old_stack;
        self.base = old_base;
        self.conntracked = old_conntracked;
        self.flow = old_flow;
        self.was_mpls = old_was_mpls;
        self.exit = old_exit;
    }

    /// OVS's `xlate_output_trunc_action`: truncation at the next output,
    /// to a real port other than the input port only.
    fn output_trunc(&mut self, p: u32, max_len: u32) {
        if p == self.flow.in_port {
            return;
        }
        let dp_port = match p {
            port::LOCAL => self.cfg.local_port,
            p if p != 0 && p < port::MAX => p,
            _ => return,
        };
        if self.port_exists(dp_port) {
            self.actions.push(OdpAction::Trunc(max_len));
            self.output(p, false);
        }
    }

    /// OVS's `xlate_enqueue_action`: output with the queue's priority for
    /// that output only; a queue the datapath does not have is a plain
    /// output.
    fn enqueue(&mut self, p: u32, queue: u32) {
        let Some(priority) = self.cfg.queue_priority(queue) else {
            self.output(p, false);
            return;
        };
        let p = match p {
            port::IN_PORT => self.flow.in_port,
            p if p == self.flow.in_port => return,
            port::LOCAL => self.cfg.local_port,
            p => p,
        };
        let saved = std::mem::replace(&mut self.flow.skb_priority, priority);
        self.compose_output(p);
        self.flow.skb_priority = saved;
    }

    /// OVS's `compose_conntrack_action`: commit what is pending, run the
    /// nested actions (they set `ct_mark`/`ct_label` bits and the NAT),
    /// emit `ct(...)`, fork the tracked packet to `table` under a
    /// recirculation id, and go on with the packet untracked.
    fn conntrack(&mut self, ct: &CtSpec) {
        let zone = match ct.zone {
            CtZone::Imm(z) => z,
            CtZone::Field { field, ofs, n_bits } => {
                let bits = ((1u128 << n_bits) - 1) << ofs;
                // A resumed translation's frozen metadata (registers,
                // metadata, tunnel, in_port) is pinned by its recirc_id.
                let frozen = matches!(
                    field,
                    Field::Reg(_)
                        | Field::Metadata
                        | Field::InPort
                        | Field::TunId
                        | Field::TunSrc
                        | Field::TunDst
                );
                if !(self.resumed && frozen) {
                    field.set_masked(&mut *self.wc, bits, bits);
                }
                ((field.get(&self.flow) & bits) >> ofs) as u16
            }
        };
        self.commit();
        let (old_mark, old_label) = (self.wc.ct_mark, self.wc.ct_label);
        self.ct_nat = None;
        self.wc.ct_mark = 0;
        self.wc.ct_label = [0; 16];
        self.run_actions(&ct.actions, None, false);
        let mark = (self.wc.ct_mark != 0)
            .then_some((self.flow.ct_mark & self.wc.ct_mark, self.wc.ct_mark));
        let label_mask = u128::from_be_bytes(self.wc.ct_label);
        let labels = (label_mask != 0).then(|| {
            (
                u128::from_be_bytes(self.flow.ct_label) & label_mask,
                label_mask,
            )
        });
        let helper = match ct.alg {
            21 => Some(CtHelper::Ftp),
            69 => Some(CtHelper::Tftp),
            _ => None,
        };
        let nat = self.ct_nat.take();
        // OVS's `put_ct_timeout`: a commit names its zone's policy.
        let policy = (ct.commit || ct.force)
            .then(|| self.cfg.zone_timeout_policies.get(&zone).copied())
            .flatten();
        let timeout = match policy {
            Some(id) if self.cfg.timeout_per_protocol => {
                let name = messages::netlink::cttimeout::policy_name(
                    id,
                    self.flow.dl_type,
                    self.flow.nw_proto,
                );
                if name.is_some() {
                    self.wc.nw_proto = u8::MAX;
                }
                name
            }
            Some(id) => Some(id.to_string()),
            None => None,
        };
        self.actions.push(OdpAction::Ct(CtAction {
            commit: ct.commit,
            force: ct.force,
            zone,
            mark,
            labels,
            helper,
            timeout,
            nat: nat.clone(),
        }));
        self.wc.ct_mark = old_mark;
        self.wc.ct_label = old_label;
        if let Some(table) = ct.table {
            self.conntracked = true;
            let state = FrozenState::new(table, &self.flow, self.action_set.clone(), true)
                .with_stack(self.stack.clone());
            let id = self.cfg.recirc.id_for(state);
            self.actions.push(OdpAction::Recirc(id));
            let mut flow = self.flow;
            flow.recirc_id = id;
            flow.ct_zone = zone;
            self.recircs.push(Recirculation { id, flow, nat });
        }
        // The ct fields exist only in the pass the tracker's answer
        // resumes.
        self.flow.clear_conntrack();
        self.conntracked = false;
        self.conntracked_by_packet = false;
    }

    /// OVS's `xlate_learn_action`: the bits the rule is built from become
    /// exact; with side effects, the rule is handed to the rule-table, unless
    /// the learn's limit is reached (the result bit says which).
    fn learn(&mut self, l: &Learn) {
        l.mask(&mut *self.wc);
        if !self.cfg.side_effects {
            return;
        }
        let rule = l.execute(&self.flow);
        let below_limit = l.limit == 0 || self.tables.learn_below_limit(&rule, l.limit);
        if below_limit {
            self.add_pending(&rule);
            self.learned.push(LearnedRule {
                rule,
                limit: l.limit,
            });
        }
        if let Some(dst) = l.result_dst {
            dst.write(&mut self.flow, u128::from(below_limit));
            dst.field.set_masked(&mut *self.wc, dst.mask(), dst.mask());
        }
    }

    /// Keeps a rule this translation learned for its later lookups, unless
    /// its table has a rule of the same match and priority (which it
    /// replaces: the lookups examine nothing new).
    fn add_pending(&mut self, rule: &Rule) {
        let present = |c: &Classifier| c.find_exact(&rule.matches, rule.priority).is_some();
        if self.tables.table(rule.table).is_some_and(present) {
            return;
        }
        let at = match self.pending.iter().position(|(t, _)| *t == rule.table) {
            Some(at) => at,
            None => {
                self.pending.push((rule.table, Classifier::new()));
                self.pending.len() - 1
            }
        };
        let table = &mut self.pending[at].1;
        if !present(table) {
            table.insert(Arc::new(RuleEntry {
                id: 0,
                rule: rule.clone(),
                added: std::time::Instant::now(),
            }));
        }
    }

    /// OVS's `xlate_fin_timeout`: matches `nw_proto`; the running rule's
    /// timeouts are to be lowered when a packet of the flow has FIN or RST
    /// (the handler checks the upcalled packet; the revalidator the flags
    /// the datapath saw, as OVS's translation cache does).
    fn fin_timeout(&mut self, idle_timeout: u16, hard_timeout: u16) {
        self.wc.nw_proto = 0xff;
        if !self.cfg.side_effects {
            return;
        }
        if let Some(rule) = self.rule {
            self.fin_timeouts.push(FinTimeout {
                rule,
                idle_timeout,
                hard_timeout,
            });
        }
    }

    /// `last`: as for [`Self::run_rule`] (only `output:TABLE` runs more).
    fn output(&mut self, p: u32, last: bool) {
        match p {
            port::IN_PORT => self.compose_output(self.flow.in_port),
            port::CONTROLLER => self.output_to_controller(u16::MAX),
            port::NORMAL => self.normal(),
            // OVS's OFPP_TABLE in a rule: the packet goes through the
            // tables again from table 0.
            port::TABLE => self.table_action(self.flow.in_port, 0, last),
            // No port of ours is configured `no-flood`, so FLOOD is ALL.
            port::FLOOD | port::ALL => self.flood(last),
            // Output to the input port is dropped unless asked for by
            // `in_port`.
            p if p == self.flow.in_port => {}
            port::LOCAL => self.compose_output_last(self.cfg.local_port, last),
            // OpenFlow port 0 never exists.
            p if p != 0 && p < port::MAX => self.compose_output_last(p, last),
            // The rule parser refuses any other port.
            _ => {}
        }
    }

    /// OVS's `flood_packets`: an output to every port of the bridge but
    /// the input port, in the order `NORMAL` floods in; the last of them
    /// is the flood's own `last` (a native tunnel's push there needs no
    /// `clone`).
    fn flood(&mut self, last: bool) {
        let ports: Vec<u32> = self
            .bridge_ports()
            .into_iter()
            .map(|p| {
                if p == port::LOCAL {
                    self.cfg.local_port
                } else {
                    p
                }
            })
            .filter(|&dp| dp != self.flow.in_port)
            .collect();
        let n = ports.len();
        for (i, dp) in ports.into_iter().enumerate() {
            self.compose_output_last(dp, last && i + 1 == n);
        }
    }

    /// OVS's `xlate_output_reg_action`: the port is an OpenFlow 1.0
    /// number read from the subfield, which becomes exact.
    /// A value above 65535 outputs nothing (OVS reports it out of range).
    fn output_reg(&mut self, field: Field, ofs: u8, n_bits: u8) {
        let bits = ((1u128 << n_bits) - 1) << ofs;
        field.set_masked(&mut *self.wc, bits, bits);
        let p = (field.get(&self.flow) & bits) >> ofs;
        if p > 0xffff {
            return;
        }
        let p = p as u32;
        // OpenFlow 1.0's reserved ports sit at 0xff00 and above.
        let p = if p >= 0xff00 { p | 0xffff_0000 } else { p };
        self.output(p, false);
    }

    fn compose_output(&mut self, p: u32) {
        self.compose_output_last(p, false)
    }

    /// An output; `last`: no action follows it (a native tunnel's push
    /// then needs no `clone`).
    fn compose_output_last(&mut self, p: u32, last: bool) {
        if !self.port_exists(p) {
            return;
        }
        let cfg = self.cfg;
        if let Some(t) = cfg.tunnels.get(&p) {
            self.tunnel_output(t, last);
            return;
        }
        self.commit();
        if let Some(nt) = cfg
            .native_tunnel
            .as_deref()
            .filter(|nt| p == self.underlay_port(nt).1)
        {
            if let Some(vport) = self.terminate_native_tunnel(nt) {
                self.actions.push(OdpAction::TnlPop(vport));
                return;
            }
        }
        self.actions.push(OdpAction::Output(p));
    }

    /// OVS's `compose_output_action__` for a tunnel port (the kernel's
    /// kind of tunnel): the port decides the tunnel header, which is set
    /// before the output when it differs from the one set last; the
    /// flow's own tunnel and TOS are back as they were afterwards.
    fn tunnel_output(&mut self, t: &TunnelConfig, last: bool) {
        let saved = self.flow;
        t.send(&mut self.flow, self.wc);
        let cfg = self.cfg;
        if let Some(nt) = cfg.native_tunnel.as_deref() {
            if self.flow.tnl_dst() != self.orig_tnl_dst {
                self.commit();
                self.native_tunnel_output(nt, t, last);
            }
        } else if self.flow.tnl_dst() != self.orig_tnl_dst {
            if self.flow.tnl_dst_is_set() && self.flow.tunnel_bytes() != self.base.tunnel_bytes() {
                self.base.copy_tunnel_from(&self.flow);
                self.actions.push(OdpAction::SetTunnel(tunnel::tunnel_attrs(
                    &self.flow,
                    Some(t.kind),
                    &messages::tlv::current(),
                )));
            }
            self.flow.copy_tunnel_from(&saved);
            self.commit();
            self.actions.push(OdpAction::Output(t.odp_port));
        }
        // "Not tunneling to our own address": nothing is sent.
        self.flow.copy_tunnel_from(&saved);
        self.flow.nw_tos = saved.nw_tos;
    }

    /// An output to CONTROLLER: its reason is where it runs.
    fn output_to_controller(&mut self, max_len: u16) {
        let reason = if self.in_packet_out {
            packet_in_reason::PACKET_OUT
        } else if self.in_group {
            packet_in_reason::GROUP
        } else if self.in_action_set {
            packet_in_reason::ACTION_SET
        } else {
            packet_in_reason::ACTION
        };
        self.controller(&ControllerAction::output(max_len), reason);
    }

    /// OVS's `xlate_controller_action`: the translation's metadata is
    /// frozen under a recirculation id (the packet-in reads registers and
    /// table from it), and the packet goes up with a controller cookie;
    /// not to be sent when translating without side effects (a trace).
    fn controller(&mut self, c: &ControllerAction, reason: u8) {
        self.commit();
        // An action of a table-miss rule is a miss the rule made.
        let reason = if reason == packet_in_reason::ACTION && self.rule_is_miss {
            packet_in_reason::EXPLICIT_MISS
        } else {
            reason
        };
        let conntracked = self.conntracked && !self.conntracked_by_packet;
        let mut state = FrozenState::new(self.table_id, &self.flow, Vec::new(), conntracked)
            .with_stack(self.stack.clone());
        state.userdata.clone_from(&c.userdata);
        let recirc_id = self.cfg.recirc.id_for(state);
        self.put_controller_action(c, reason, recirc_id, !self.cfg.side_effects, false);
    }

    /// OVS's `put_controller_user_action`: the `userspace` action with
    /// OVS's controller cookie.
    fn put_controller_action(
        &mut self,
        c: &ControllerAction,
        reason: u8,
        recirc_id: u32,
        dont_send: bool,
        continuation: bool,
    ) {
        // A meter on packet-ins is not kept: with no meters, OVS too sends
        // them unmetered (the meter id names no meter).
        self.actions.push(OdpAction::Userspace {
            pid: self.cfg.upcall_pid,
            userdata: ControllerCookie {
                dont_send,
                continuation,
                reason: reason.into(),
                recirc_id,
                rule_cookie: self.rule_cookie,
                controller_id: c.controller_id,
                max_len: c.max_len,
            }
            .encode(),
        });
    }

    /// OVS's `mf_are_prereqs_ok` with wildcard tracking: un-wildcards what
    /// it reads.
    fn prereqs_ok(&mut self, p: Prereq) -> bool {
        let f = &self.flow;
        let wc = &mut *self.wc;
        let l4 = |wc: &mut Flow, proto: u8| {
            if f.is_ip_any() {
                wc.nw_proto = 0xff;
                f.nw_proto == proto
            } else {
                false
            }
        };
        match p {
            Prereq::None => true,
            Prereq::Vlan => {
                wc.vlans[0].tci |= VLAN_CFI;
                f.vlans[0].tci & VLAN_CFI != 0
            }
            Prereq::Tcp => l4(wc, IPPROTO_TCP),
            Prereq::Udp => l4(wc, IPPROTO_UDP),
            Prereq::Sctp => l4(wc, IPPROTO_SCTP),
            Prereq::Icmpv4 => {
                f.is_ip() && {
                    wc.nw_proto = 0xff;
                    f.nw_proto == IPPROTO_ICMP
                }
            }
            Prereq::Icmpv6 | Prereq::Nd | Prereq::NdSolicit | Prereq::NdAdvert => {
                if !f.is_ipv6() {
                    return false;
                }
                wc.nw_proto = 0xff;
                if f.nw_proto != IPPROTO_ICMPV6 {
                    return false;
                }
                if p == Prereq::Icmpv6 {
                    return true;
                }
                wc.tp_dst = u16::MAX;
                if f.tp_dst != 0 {
                    return false;
                }
                wc.tp_src = u16::MAX;
                match p {
                    Prereq::NdSolicit => f.tp_src == ND_NEIGHBOR_SOLICIT,
                    Prereq::NdAdvert => f.tp_src == ND_NEIGHBOR_ADVERT,
                    _ => f.tp_src == ND_NEIGHBOR_SOLICIT || f.tp_src == ND_NEIGHBOR_ADVERT,
                }
            }
            Prereq::CtValid => {
                wc.ct_state |= CS_NEW | CS_ESTABLISHED | CS_REPLY_DIR;
                f.ct_state & (CS_NEW | CS_ESTABLISHED | CS_REPLY_DIR) != 0
            }
            other => messages::field::prereq_ok(other, f),
        }
    }

    fn set_field(&mut self, field: Field, value: u128, mask: u128) {
        if !self.prereqs_ok(field.prereq()) {
            return;
        }
        self.mask_l3_prereqs(field);
        field.set_masked(&mut *self.wc, mask, mask);
        field.set_masked(&mut self.flow, value, mask);
    }

    /// OVS's `mf_subfield_copy`: both fields must exist in the packet; the
    /// bits read and the bits written both become exact.
    fn move_bits(&mut self, src: Field, src_ofs: u8, dst: Field, dst_ofs: u8, n_bits: u8) {
        if !(self.prereqs_ok(dst.prereq()) && self.prereqs_ok(src.prereq())) {
            return;
        }
        let ones = if n_bits >= 128 {
            u128::MAX
        } else {
            (1u128 << n_bits) - 1
        };
        let (src_bits, dst_bits) = (ones << src_ofs, ones << dst_ofs);
        src.set_masked(&mut *self.wc, src_bits, src_bits);
        dst.set_masked(&mut *self.wc, dst_bits, dst_bits);
        let value = (src.get(&self.flow) >> src_ofs) & ones;
        dst.set_masked(&mut self.flow, value << dst_ofs, dst_bits);
    }

    /// OVS's `mf_set_mask_l3_prereqs`: rewriting these L3 fields makes the
    /// megaflow match the IP protocol (the datapath fixes L4 checksums by
    /// it) or, for ARP, the opcode.
    fn mask_l3_prereqs(&mut self, field: Field) {
        use Field::*;
        let ip_field = matches!(
            field,
            Ipv4Src | Ipv4Dst | Ipv6Src | Ipv6Dst | Ipv6Label | NwTos | IpEcn | IpTtl
        );
        let arp_field = matches!(field, ArpOp | ArpSha | ArpTha | ArpSpa | ArpTpa);
        if (ip_field && self.flow.is_ip_any()) || (arp_field && self.flow.dl_type == ETH_TYPE_ARP) {
            self.wc.nw_proto = 0xff;
        }
    }

    fn push_vlan(&mut self, tpid: u16) {
        let n = vlan_count(&self.flow);
        for v in self.wc.vlans.iter_mut().take(n) {
            *v = FlowVlan {
                tpid: u16::MAX,
                tci: u16::MAX,
            };
        }
        self.flow.vlans.copy_within(0..FLOW_MAX_VLAN_HEADERS - 1, 1);
        self.flow.vlans[0] = FlowVlan {
            tpid,
            tci: VLAN_CFI,
        };
    }

    fn pop_vlan(&mut self) {
        let n = vlan_count(&self.flow);
        if n > 1 {
            for v in self.wc.vlans[1..n].iter_mut() {
                *v = FlowVlan {
                    tpid: u16::MAX,
                    tci: u16::MAX,
                };
            }
            self.flow.vlans.copy_within(1..n, 0);
        }
        if n > 0 {
            self.flow.vlans[n - 1] = FlowVlan::default();
        }
    }

    /// Decrements the IP TTL. False when it would expire: the rest of the
    /// current rule's actions are skipped (there is no controller to tell).
    /// OVS's `compose_dec_ttl`: false when the TTL expires, after the
    /// packet went to each controller in `ids` (reason `invalid_ttl`); the
    /// rest of the action list is then skipped.
    fn dec_ttl(&mut self, ids: &[u16]) -> bool {
        self.wc.nw_ttl = 0xff;
        if !self.flow.is_ip_any() {
            return true;
        }
        self.wc.nw_proto = 0xff;
        if self.flow.nw_ttl > 1 {
            self.flow.nw_ttl -= 1;
            return true;
        }
        for id in ids {
            let c = ControllerAction {
                controller_id: *id,
                ..ControllerAction::output(u16::MAX)
            };
            self.controller(&c, packet_in_reason::INVALID_TTL);
        }
        false
    }

    /// Emits the datapath actions that turn `base` into `flow` (OVS's
    /// `commit_odp_actions`), in OVS's order: Ethernet, MPLS pops that
    /// uncover a non-MPLS packet, L3, L4, other MPLS changes, VLAN,
    /// priority, mark. L3 and L4 are left alone while the flow cannot see
    /// them (under a label, or popped from one and not extracted yet), as
    /// OVS skips them for a flow with no `nw_proto` then.
    fn commit(&mut self) {
        self.commit_ethernet();
        let mpls_first = eth_type_mpls(self.base.dl_type) && !eth_type_mpls(self.flow.dl_type);
        if mpls_first {
            self.commit_mpls();
        }
        if !eth_type_mpls(self.flow.dl_type) && !self.was_mpls {
            self.commit_l3();
            if self.base.is_ipv6() && self.base.nw_proto == IPPROTO_ICMPV6 {
                self.commit_nd();
            }
            self.commit_ports();
        }
        if !mpls_first {
            self.commit_mpls();
        }
        self.commit_vlans();
        self.commit_metadata();
    }

    fn commit_ethernet(&mut self) {
        let (f, b) = (&self.flow, &mut self.base);
        if f.dl_src == b.dl_src && f.dl_dst == b.dl_dst {
            return;
        }
        let key = EthKey {
            src: f.dl_src,
            dst: f.dl_dst,
        };
        let mask = EthKey {
            src: if f.dl_src != b.dl_src {
                self.wc.dl_src
            } else {
                [0; 6]
            },
            dst: if f.dl_dst != b.dl_dst {
                self.wc.dl_dst
            } else {
                [0; 6]
            },
        };
        b.dl_src = f.dl_src;
        b.dl_dst = f.dl_dst;
        self.actions.push(OdpAction::SetMasked(
            SetHeader::Ethernet { key, mask }.canonical(),
        ));
    }

    /// The flow, the wildcards, the base and the actions, borrowed apart
    /// for a commit step (copying the flows instead would move a kilobyte).
    fn commit_parts(&mut self) -> (&Flow, &FlowWildcards, &mut Flow, &mut OdpActions) {
        (&self.flow, &*self.wc, &mut self.base, &mut self.actions)
    }

    fn commit_l3(&mut self) {
        // OVS skips this when nw_proto is 0, without un-wildcarding
        // nw_proto: an IP packet of protocol 0 inside such a megaflow would
        // then get different actions from the megaflow's. We commit on the
        // EtherType alone, which keeps megaflows sound.
        let (f, w, b, actions) = self.commit_parts();
        let header = match b.dl_type {
            ETH_TYPE_IP => {
                if (f.nw_src, f.nw_dst, f.nw_tos, f.nw_ttl)
                    == (b.nw_src, b.nw_dst, b.nw_tos, b.nw_ttl)
                {
                    return;
                }
                let key = Ipv4Key {
                    src: f.nw_src,
                    dst: f.nw_dst,
                    tos: f.nw_tos,
                    ttl: f.nw_ttl,
                    ..Default::default()
                };
                let mask = Ipv4Key {
                    src: pick(f.nw_src != b.nw_src, w.nw_src),
                    dst: pick(f.nw_dst != b.nw_dst, w.nw_dst),
                    tos: pick(f.nw_tos != b.nw_tos, w.nw_tos),
                    ttl: pick(f.nw_ttl != b.nw_ttl, w.nw_ttl),
                    ..Default::default()
                };
                SetHeader::Ipv4 { key, mask }
            }
            ETH_TYPE_IPV6 => {
                if (f.ipv6_src, f.ipv6_dst, f.ipv6_label, f.nw_tos, f.nw_ttl)
                    == (b.ipv6_src, b.ipv6_dst, b.ipv6_label, b.nw_tos, b.nw_ttl)
                {
                    return;
                }
                let key = Ipv6Key {
                    src: f.ipv6_src,
                    dst: f.ipv6_dst,
                    label: f.ipv6_label,
                    tclass: f.nw_tos,
                    hlimit: f.nw_ttl,
                    ..Default::default()
                };
                let mask = Ipv6Key {
                    src: pick(f.ipv6_src != b.ipv6_src, w.ipv6_src),
                    dst: pick(f.ipv6_dst != b.ipv6_dst, w.ipv6_dst),
                    label: pick(f.ipv6_label != b.ipv6_label, w.ipv6_label & 0xfffff),
                    tclass: pick(f.nw_tos != b.nw_tos, w.nw_tos),
                    hlimit: pick(f.nw_ttl != b.nw_ttl, w.nw_ttl),
                    ..Default::default()
                };
                SetHeader::Ipv6 { key, mask }
            }
            ETH_TYPE_ARP | ETH_TYPE_RARP => {
                if (f.nw_src, f.nw_dst, f.nw_proto, f.arp_sha, f.arp_tha)
                    == (b.nw_src, b.nw_dst, b.nw_proto, b.arp_sha, b.arp_tha)
                {
                    return;
                }
                // The flow keeps 8 bits of the 16-bit opcode; OVS widens
                // all-ones to all-ones, so a whole opcode is set (and
                // printed `op=2`, not `op=2/255`).
                let op = |x: u8| if x == u8::MAX { u16::MAX } else { u16::from(x) };
                let key = ArpKey {
                    sip: f.nw_src,
                    tip: f.nw_dst,
                    op: op(f.nw_proto),
                    sha: f.arp_sha,
                    tha: f.arp_tha,
                };
                let mask = ArpKey {
                    sip: pick(f.nw_src != b.nw_src, w.nw_src),
                    tip: pick(f.nw_dst != b.nw_dst, w.nw_dst),
                    op: pick(f.nw_proto != b.nw_proto, op(w.nw_proto)),
                    sha: pick(f.arp_sha != b.arp_sha, w.arp_sha),
                    tha: pick(f.arp_tha != b.arp_tha, w.arp_tha),
                };
                SetHeader::Arp { key, mask }
            }
            _ => return,
        };
        match &header {
            SetHeader::Ipv4 { .. } => {
                (b.nw_src, b.nw_dst, b.nw_tos, b.nw_ttl) = (f.nw_src, f.nw_dst, f.nw_tos, f.nw_ttl)
            }
            SetHeader::Ipv6 { .. } => {
                (b.ipv6_src, b.ipv6_dst, b.ipv6_label, b.nw_tos, b.nw_ttl) =
                    (f.ipv6_src, f.ipv6_dst, f.ipv6_label, f.nw_tos, f.nw_ttl)
            }
            _ => {
                (b.nw_src, b.nw_dst, b.nw_proto, b.arp_sha, b.arp_tha) =
                    (f.nw_src, f.nw_dst, f.nw_proto, f.arp_sha, f.arp_tha)
            }
        }
        let arp = matches!(header, SetHeader::Arp { .. });
        actions.push(OdpAction::SetMasked(header.canonical()));
        // OVS's `commit_set_arp_action`: no datapath sets ARP headers (the
        // kernel refuses them), so such a flow is handled in the slow path.
        self.slow_action |= arp;
    }

    fn commit_nd(&mut self) {
        let (f, w, b, actions) = self.commit_parts();
        if (f.nd_target, f.arp_sha, f.arp_tha) == (b.nd_target, b.arp_sha, b.arp_tha) {
            return;
        }
        let key = NdKey {
            target: f.nd_target,
            sll: f.arp_sha,
            tll: f.arp_tha,
        };
        let mask = NdKey {
            target: pick(f.nd_target != b.nd_target, w.nd_target),
            sll: pick(f.arp_sha != b.arp_sha, w.arp_sha),
            tll: pick(f.arp_tha != b.arp_tha, w.arp_tha),
        };
        (b.nd_target, b.arp_sha, b.arp_tha) = (f.nd_target, f.arp_sha, f.arp_tha);
        actions.push(OdpAction::SetMasked(
            SetHeader::Nd { key, mask }.canonical(),
        ));
    }

    fn commit_ports(&mut self) {
        let (f, w, b, actions) = self.commit_parts();
        // A later fragment has no L4 header to rewrite.
        if !b.is_ip_any() || b.nw_frag & FLOW_NW_FRAG_LATER != 0 {
            return;
        }
        if (f.tp_src, f.tp_dst) == (b.tp_src, b.tp_dst) {
            return;
        }
        let key = PortsKey {
            src: f.tp_src,
            dst: f.tp_dst,
        };
        let mask = PortsKey {
            src: if f.tp_src != b.tp_src { w.tp_src } else { 0 },
            dst: if f.tp_dst != b.tp_dst { w.tp_dst } else { 0 },
        };
        let header = match f.nw_proto {
            IPPROTO_TCP => SetHeader::Tcp { key, mask },
            IPPROTO_UDP => SetHeader::Udp { key, mask },
            IPPROTO_SCTP => SetHeader::Sctp { key, mask },
            _ => return,
        };
        (b.tp_src, b.tp_dst) = (f.tp_src, f.tp_dst);
        actions.push(OdpAction::SetMasked(header.canonical()));
    }

    /// OVS's `commit_vlan_action`: pop the base's headers that differ from
    /// the flow's, from the outside in, then push the flow's.
    fn commit_vlans(&mut self) {
        let mut base_n = vlan_count(&self.base) as isize - 1;
        let mut flow_n = vlan_count(&self.flow) as isize - 1;
        while base_n >= 0
            && flow_n >= 0
            && self.base.vlans[base_n as usize] == self.flow.vlans[flow_n as usize]
        {
            base_n -= 1;
            flow_n -= 1;
        }
        while base_n >= 0 {
            self.actions.push(OdpAction::PopVlan);
            self.wc.vlans[base_n as usize] = FlowVlan {
                tpid: u16::MAX,
                tci: u16::MAX,
            };
            base_n -= 1;
        }
        while flow_n >= 0 {
            let v = self.flow.vlans[flow_n as usize];
            self.actions.push(OdpAction::PushVlan {
                tpid: v.tpid,
                tci: v.tci,
            });
            flow_n -= 1;
        }
        self.base.vlans = self.flow.vlans;
    }

    fn commit_metadata(&mut self) {
        if self.flow.skb_priority != self.base.skb_priority {
            // OVS sets the whole priority and matches it exactly.
            self.base.skb_priority = self.flow.skb_priority;
            self.wc.skb_priority = u32::MAX;
            self.actions.push(OdpAction::SetMasked(
                SetHeader::SkbPriority {
                    key: self.flow.skb_priority,
                    mask: u32::MAX,
                }
                .canonical(),
            ));
        }
        if self.flow.pkt_mark != self.base.pkt_mark {
            self.base.pkt_mark = self.flow.pkt_mark;
            self.actions.push(OdpAction::SetMasked(
                SetHeader::SkbMark {
                    key: self.flow.pkt_mark,
                    mask: self.wc.pkt_mark,
                }
                .canonical(),
            ));
        }
    }

    /// OVS's `xlate_wc_finish`: drop what a datapath flow cannot match on.
    fn finish_wc(&mut self, orig: &Flow) {
        let wc = &mut *self.wc;
        wc.metadata = 0;
        wc.regs = [0; FLOW_N_REGS];
        wc.actset_output = 0;
        wc.conj_id = 0;
        // Tunnel metadata means nothing for a packet that did not come
        // from a tunnel (a `learn` from tun_id reads it all the same).
        if !orig.tnl_dst_is_set() {
            wc.clear_tunnel();
        }
        if orig.is_icmpv4() || orig.is_icmpv6() {
            wc.tp_src &= 0xff;
            wc.tp_dst &= 0xff;
        }
        for v in wc.vlans.iter_mut() {
            if v.tci != 0 {
                v.tci |= VLAN_CFI;
            }
        }
        if orig.nw_frag & FLOW_NW_FRAG_LATER != 0 {
            wc.tp_src = 0;
            wc.tp_dst = 0;
        }
        if !eth_type_mpls(orig.dl_type) {
            wc.mpls_lse = [0; FLOW_MPLS_LSE_SLOTS];
        }
        for (i, v) in wc.vlans.iter_mut().enumerate() {
            if !eth_type_vlan(orig.vlans[i].tpid) {
                *v = FlowVlan::default();
            }
        }
    }
}

/// The mask of a set action for one field: the field's wildcard bits if
/// the value changed, nothing otherwise.
fn pick<T: Default>(changed: bool, mask: T) -> T {
    if changed {
        mask
    } else {
        T::default()
    }
}

/// Number of VLAN headers present, outermost first.
fn vlan_count(f: &Flow) -> usize {
    f.vlans.iter().take_while(|v| v.tci & VLAN_CFI != 0).count()
}
