//! The actor protocol: every message the actors send each other, in one
//! place. Each says who sends it to whom, what it carries and what it
//! answers (`()`: nothing but "handled").
//!
//! | message | sender → receiver | answers |
//! | --- | --- | --- |
//! | [`UpcallBatch`] | receiver → handler | — |
//! | [`SpareUpcalls`] | handler → receiver | — |
//! | [`FlowOps`] | handler → dpif-writer | — |
//! | [`SpareOps`] | dpif-writer → handler | — |
//! | [`Flush`] | pipeline (control, tests) → dpif-writer | once written |
//! | [`RuleChange`] | control → rule-table | [`RuleChangeReply`] |
//! | [`GroupMod`] | control → rule-table | [`GroupModReply`] or why refused |
//! | [`MeterMod`] | control → rule-table | [`MeterModReply`] or why refused |
//! | [`PushStats`] | handlers, revalidators, OpenFlow (NXT_RESUME) → rule-table | — |
//! | [`SideEffects`] | handlers, revalidators → rule-table | — |
//! | [`DumpRules`] | pipeline (control) → rule-table | rules with [`RuleStats`] |
//! | [`DumpGroupStats`] | pipeline (control, OpenFlow) → rule-table | groups' counters |
//! | [`GetSnapshot`] | control → rule-table | the current tables |
//! | [`SendCredits`] | pipeline → handlers | once sent |
//! | [`FlowLimit`] | lead revalidator → handlers | — |
//! | [`RevalidateNow`] | pipeline (control, tests) → revalidator | once done |
//! | `InjectPanics` (feature `fault-injection`) | tests → handlers, dpif-writer, revalidators | — |
//! | `Poll` | receiver → itself | — |
//! | `Tick` | revalidator → itself | — |
//!
//! These live in the `actors` crate, not in `messages/`, because they
//! carry the actors' own things: actix addresses to answer to, snapshots of
//! the classifier's tables ([`Tables`]), and permits of the backpressure
//! windows ([`Permit`]). What they carry of the vocabulary (upcalls, flow
//! operations, rules) is in `messages`.
//!
//! What actors share besides messages (the published rules snapshot, the
//! datapath handle, the ukeys, the backpressure windows, the counters, …)
//! is listed where the graph is wired, in [`crate::pipeline`].

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use messages::dpif::{DpifOp, Upcall};
use messages::learn::LearnedRule;

use crate::xlate::FinTimeout;
use messages::ofp::Rule;

use crate::backpressure::Permit;
use crate::tables::{GroupModError, MeterModError, RuleEntry, RuleFilter, RuleUpdate, Tables};
use messages::group::Group;
use messages::meter::Meter;

// The upcall path: receiver → handler → dpif-writer.

/// receiver → handler: upcalls to translate, with the time the receiver
/// read them. The emptied buffer goes back to `return_to` (as
/// [`SpareUpcalls`]); `permit` holds the batch's room in the handler's
/// window until it is handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UpcallBatch {
    pub upcalls: Vec<Upcall>,
    pub received: Instant,
    pub return_to: Option<Recipient<SpareUpcalls>>,
    pub permit: Permit,
}

/// handler → receiver: an emptied upcall buffer, to fill again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SpareUpcalls(pub Vec<Upcall>);

/// handler → dpif-writer: operations to carry out, in order (revalidators
/// write their own, within their rounds).
/// When `return_to` is set, the writer sends the emptied buffer back (as
/// [`SpareOps`]), so that a sender that batches all the time (a handler)
/// refills the same memory instead of asking the allocator for fresh pages
/// on one thread while freeing them on another. A handler's ops hold a
/// `permit` of the writer's window until they are queued.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FlowOps {
    pub ops: Vec<DpifOp>,
    pub return_to: Option<Recipient<SpareOps>>,
    pub permit: Option<Permit>,
}

/// dpif-writer → handler: an op buffer back to the actor that filled it,
/// holding ops the writer is done with, whose boxes that actor may fill
/// again.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SpareOps(pub Vec<DpifOp>);

/// pipeline → dpif-writer: write everything pending now; answers once
/// done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Flush;

// The rules: the rule-table owns them and publishes snapshots (not by
// message: see `published.rs`).

/// control (the daemon's start, `ctl add-port`, `del-port`) → rule-table:
/// the datapath's ports, which translation outputs to. A change is a new
/// version, so revalidators translate every flow again (a flow out of a
/// removed port loses that output; a flood reaches a new one). Without a
/// `Set` every port number exists and `Add`/`Remove` change nothing.
/// The port watcher (`src/openflow.rs`) sends `Down` when a port's link
/// goes down or comes back. Answers with the version in force.
#[derive(Clone, Debug, Message)]
#[rtype(result = "u64")]
pub enum ChangePorts {
    /// These are the ports.
    Set(std::collections::BTreeSet<u32>),
    /// This port was added.
    Add(u32),
    /// This port was removed.
    Remove(u32),
    /// These ports are down (no carrier, or administratively down): not
    /// live for fast-failover groups, as OVS's `may_enable`.
    Down(std::collections::BTreeSet<u32>),
}

/// OpenFlow channel → rule-table: fail open (every rule flushed, then
/// every packet switched with `NORMAL` by a rule no flow mod sees, OVS's
/// hidden fail-open rule), or recover (that rule gone; the rules a
/// controller added since stay). Answers with the version in force.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "u64")]
pub struct SetFailOpen(pub bool);

/// control → rule-table: add, replace or delete groups (OpenFlow's group
/// mods, `ctl add-group`, `mod-group`, `del-groups`), as one new version.
/// Answers with the new version and the rules deleted with their group,
/// or why the change was refused.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<GroupModReply, GroupModError>")]
pub enum GroupMod {
    Add(Group),
    Modify(Group),
    /// Group N, or every group.
    Delete(Option<u32>),
}

/// What a [`GroupMod`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupModReply {
    pub version: u64,
    /// Groups deleted, and rules deleted because they sent to one.
    pub n_groups: usize,
    pub n_rules: usize,
}

/// control → rule-table: add, replace or delete meters (OpenFlow's meter
/// mods, `ctl add-meter`, `mod-meter`, `del-meters`), as one new version.
/// Answers with the new version, the datapath meter ids to set or
/// delete, and the rules deleted with their meter; or why it was refused.
/// The sender programs the datapath's meters: on an add before any rule
/// can name the meter, on a delete after the rules are gone.
#[derive(Clone, Debug, Message)]
#[rtype(result = "Result<MeterModReply, MeterModError>")]
pub enum MeterMod {
    Add(Meter),
    Modify(Meter),
    /// Meter N, or every meter.
    Delete(Option<u32>),
}

/// What a [`MeterMod`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterModReply {
    pub version: u64,
    /// The meter added or modified and its datapath id.
    pub set: Option<(Meter, u32)>,
    /// The datapath ids of the meters deleted.
    pub deleted: Vec<u32>,
    /// Rules deleted because they used a deleted meter.
    pub n_rules: usize,
}

/// control → rule-table: a change to the rules, applied as one new
/// version. Answers with the new version.
#[derive(Clone, Debug, Message)]
#[rtype(result = "RuleChangeReply")]
pub enum RuleChange {
    /// Add rules (a rule with the same table, priority and match replaces).
    Add(Vec<Rule>),
    /// Delete the rules a filter selects (OFPFC_DELETE(_STRICT)).
    Delete(Box<RuleFilter>),
    /// Modify the rules a filter selects (OFPFC_MODIFY(_STRICT)).
    Modify(Box<RuleFilter>, Box<RuleUpdate>),
    /// Replace every rule.
    Replace(Vec<Rule>),
    /// Several changes applied in order as one version: an OpenFlow
    /// bundle's commit, a batch of flow mods.
    Bundle(Vec<RuleChange>),
}

/// OpenFlow connection → rule-table: add rules flagged `check_overlap`,
/// refused if one overlaps a rule at its table and priority (OVS's
/// `check_overlap`). Checked and applied in one step by the actor, so no
/// other connection's change comes between the check and the add. Answers
/// with what the add did, or the rule overlapped (printed) and its table.
#[derive(Debug, Message)]
#[rtype(result = "Result<RuleChangeReply, String>")]
pub struct AddUnlessOverlapping(pub Vec<Rule>);

/// What a [`RuleChange`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, MessageResponse)]
pub struct RuleChangeReply {
    /// The version after the change.
    pub version: u64,
    /// Rules added (or replaced), modified or deleted.
    pub n_rules: usize,
}

/// Packets and bytes that matched one rule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RuleStats {
    pub n_packets: u64,
    pub n_bytes: u64,
}

/// handlers (upcalled packets), revalidators (datapath flows' new
/// traffic), OpenFlow (resumed packets) → rule-table: credits traffic to
/// rules, by rule id, and to groups' buckets, by [`group_credit`]
/// (unknown ids are ignored: the rule or group was deleted meanwhile).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct PushStats(pub Vec<(u64, RuleStats)>);

/// Marks a credit id that names a group's bucket, not a rule: rule ids
/// count up from 1 and never reach it.
const GROUP_CREDIT: u64 = 1 << 63;
/// The bucket part of a group credit that stands for every bucket.
const ALL_BUCKETS: u64 = (1 << 31) - 1;

/// The credit id of group `group` having run `bucket` (None: every
/// bucket, as `all` and `indirect` groups run them), kept with the rule
/// ids a translation went through, so that a flow's traffic is credited
/// to the groups and buckets it used as to its rules (OVS's
/// `xlate_group_stats` and its translation cache's `XC_GROUP`).
pub fn group_credit(group: u32, bucket: Option<usize>) -> u64 {
    let bucket = bucket.map_or(ALL_BUCKETS, |b| (b as u64).min(ALL_BUCKETS - 1));
    GROUP_CREDIT | u64::from(group) << 31 | bucket
}

/// The group and bucket a [`group_credit`] id names; None for a rule id.
pub fn credited_group(id: u64) -> Option<(u32, Option<usize>)> {
    (id & GROUP_CREDIT != 0).then(|| {
        let bucket = id & ALL_BUCKETS;
        (
            (id >> 31) as u32,
            (bucket != ALL_BUCKETS).then_some(bucket as usize),
        )
    })
}

/// pipeline (control, OpenFlow connections) → rule-table: every group's counters
/// (or group N's), by group number.
#[derive(Debug, Message)]
#[rtype(result = "Vec<messages::group::GroupStats>")]
pub struct DumpGroupStats(pub Option<u32>);

/// pipeline → rule-table: every rule with its statistics, by table then
/// descending priority.
#[derive(Debug, Message)]
#[rtype(result = "Vec<(Arc<RuleEntry>, RuleStats)>")]
pub struct DumpRules;

/// control → rule-table: the current snapshot.
#[derive(Debug, Message)]
#[rtype(result = "Arc<Tables>")]
pub struct GetSnapshot;

// To the handlers.

/// pipeline → handlers: send the rule credits gathered so far to the
/// rule-table now (before a dump of the rules, so that it counts every
/// upcall handled).
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct SendCredits;

/// lead revalidator → handlers: the dynamic flow limit.
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct FlowLimit {
    pub limit: u64,
}

/// tests → handlers, dpif-writer, revalidators: fault injection, panic
/// halfway through each of the next `batches` batches (of upcalls, of
/// ops) or rounds.
#[cfg(feature = "fault-injection")]
#[derive(Clone, Copy, Debug, Message)]
#[rtype(result = "()")]
pub struct InjectPanics {
    pub batches: u32,
}

// To the revalidators.

/// pipeline → revalidator: run one revalidation round now; answers when
/// it is done.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct RevalidateNow;

// Sent by an actor to itself.

/// receiver → itself: read the next batch.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Poll;

/// revalidator → itself: the periodic tick.
#[derive(Message)]
#[rtype(result = "()")]
pub(crate) struct Tick;

/// Handlers, revalidators → rule-table: what translations of real
/// packets asked of the rules: rules `learn`
/// actions built (added, or refreshed when identical) and `fin_timeout`s
/// that a FIN or RST triggered.
#[derive(Clone, Debug, Default, Message)]
#[rtype(result = "()")]
pub struct SideEffects {
    pub learned: Vec<LearnedRule>,
    pub fin_timeouts: Vec<FinTimeout>,
}

impl SideEffects {
    pub fn is_empty(&self) -> bool {
        self.learned.is_empty() && self.fin_timeouts.is_empty()
    }
}
