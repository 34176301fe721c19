//! OpenFlow vocabulary: matches, actions, instructions and rules, with
//! OpenFlow 1.3 semantics.

use crate::field::Field;
use crate::flow::Flow;

/// A match: the values of `flow` under the bits set in `mask`.
/// Bits of `flow` outside `mask` are always zero.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Match {
    pub flow: Flow,
    pub mask: Flow,
}

impl Match {
    /// The catch-all match.
    pub fn catchall() -> Self {
        Match::default()
    }

    /// Adds `field == value` under `mask` (both truncated to the field).
    pub fn set_field_masked(&mut self, field: Field, value: u128, mask: u128) {
        let mask = mask & field.full_mask();
        field.set_masked(&mut self.mask, mask, field.full_mask());
        if field == Field::Ipv6Label && mask == field.full_mask() {
            // OVS matches an exact label with the whole 32-bit word (and
            // prints it without a mask; a 20-bit mask prints as one).
            self.mask.ipv6_label = u32::MAX;
        }
        field.set_masked(&mut self.flow, value & mask, field.full_mask());
    }

    /// Adds `field == value` exactly.
    pub fn set_field(&mut self, field: Field, value: u128) {
        self.set_field_masked(field, value, field.full_mask());
    }

    /// True if `flow` is inside this match.
    pub fn matches(&self, flow: &Flow) -> bool {
        flow.equal_under(&self.flow, &self.mask)
    }

    /// True if some packet could match both (OVS's check for
    /// `check_overlap`): they agree on every bit both of them match.
    pub fn overlaps(&self, other: &Match) -> bool {
        self.flow
            .words()
            .iter()
            .zip(other.flow.words())
            .zip(self.mask.words().iter().zip(other.mask.words()))
            .all(|((a, b), (ma, mb))| (a ^ b) & ma & mb == 0)
    }
}

/// OpenFlow reserved port numbers (32-bit, OpenFlow 1.1+).
pub mod port {
    /// Port numbers stop below this one (OVS's 16-bit `OFPP_MAX`): from it
    /// up to [`MAX`], no port may be named on the wire.
    pub const FIRST_RESERVED: u32 = 0xff00;
    pub const MAX: u32 = 0xffff_ff00;
    /// No port (OVS's `OFPP_UNSET`): `actset_output` of an action set
    /// without an output.
    pub const UNSET: u32 = 0xffff_fff7;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const TABLE: u32 = 0xffff_fff9;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
}

/// One OpenFlow action.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum OfAction {
    /// Output to a port (a number, or `port::IN_PORT`, `port::LOCAL`, ...).
    Output {
        port: u32,
        max_len: u16,
    },
    /// `output:NXM_NX_REG0[0..15]` (Nicira's OUTPUT_REG): output to the
    /// OpenFlow 1.0 port number held in bits `ofs..ofs+n_bits` of `field`.
    OutputReg {
        field: Field,
        ofs: u8,
        n_bits: u8,
    },
    /// Send to the controller (`controller(...)`, `CONTROLLER:N`,
    /// `output:CONTROLLER`): becomes a datapath `userspace` action.
    Controller(ControllerAction),
    /// `set_field`, `load` and the `mod_*` actions: write `value` into the
    /// bits of `field` selected by `mask`.
    SetField {
        field: Field,
        value: u128,
        mask: u128,
    },
    /// `load` (Nicira's REG_LOAD): the same effect as `SetField`. It is a
    /// separate variant only because OVS keeps this form in OpenFlow 1.3
    /// (for `load:` and for masked `set_field`) and prints it back as
    /// `load:`.
    Load {
        field: Field,
        value: u128,
        mask: u128,
    },
    /// `move:SRC[a..b]->DST[c..d]` (Nicira's REG_MOVE): copy `n_bits` bits
    /// of `src` starting at bit `src_ofs` into `dst` at bit `dst_ofs`.
    Move {
        src: Field,
        src_ofs: u8,
        dst: Field,
        dst_ofs: u8,
        n_bits: u8,
    },
    PushVlan {
        tpid: u16,
    },
    PopVlan,
    /// `push_mpls:ETHERTYPE`: push a label stack entry (OVS's
    /// `flow_push_mpls` decides its contents); the packet becomes MPLS of
    /// that EtherType and its L3 headers opaque.
    PushMpls {
        ethertype: u16,
    },
    /// `pop_mpls:ETHERTYPE`: pop the outermost entry; `ethertype` is the
    /// packet's EtherType afterwards.
    PopMpls {
        ethertype: u16,
    },
    /// `set_mpls_label(L)`, `set_mpls_tc(T)`, `set_mpls_ttl(T)`: write the
    /// outermost entry's field, on MPLS packets only. Variants of their
    /// own, not `SetField`s, because OVS prints them back as written and
    /// recirculates after `pop_mpls` for them but not for `set_field`.
    SetMplsLabel(u32),
    SetMplsTc(u8),
    SetMplsTtl(u8),
    /// `dec_mpls_ttl`: decrement the outermost entry's TTL; one that
    /// would expire goes to the controller and ends the action list.
    DecMplsTtl,
    DecTtl,
    /// `dec_ttl(ID,...)` (Nicira's DEC_TTL_CNT_IDS): `dec_ttl` that tells
    /// the controllers with these ids when the TTL expires (plain
    /// `dec_ttl` tells controller 0). A variant of its own because OVS
    /// prints this form back with its ids.
    DecTtlIds(Vec<u16>),
    /// `resubmit(port,table)`: look the packet up again, optionally as if
    /// it came in on `in_port`, in `table` (default: the current table).
    Resubmit {
        in_port: Option<u32>,
        table: Option<u8>,
    },
    /// `ct(...)`: send the packet through the connection tracker.
    Ct(Box<CtSpec>),
    /// `ct_clear`: forget the packet's conntrack state.
    CtClear,
    /// `nat(...)`: only inside `ct`'s actions, where it says how the
    /// tracker translates addresses.
    Nat(NatAction),
    /// `conjunction(id,k/n)`: the rule is clause `clause` (0-based: k − 1)
    /// of the `n_clauses`-dimensional conjunctive match `id`. A rule with
    /// it has no other actions; the classifier treats it as a partial
    /// match (see `actors::classifier`).
    Conjunction {
        id: u32,
        clause: u8,
        n_clauses: u8,
    },
    /// `learn(...)`: add or refresh a rule built from the packet.
    Learn(Box<crate::learn::Learn>),
    /// `fin_timeout(idle_timeout=I,hard_timeout=H)`: a TCP packet with FIN
    /// or RST lowers the rule's timeouts to these (0: leave alone).
    FinTimeout {
        idle_timeout: u16,
        hard_timeout: u16,
    },
    /// `clone(...)`: run the nested actions on a copy of the packet; the
    /// packet itself goes on as it was before them.
    Clone(Vec<OfAction>),
    /// `push:FIELD[a..b]` (Nicira's STACK_PUSH): push the subfield's value
    /// onto the translation's stack.
    StackPush(Subfield),
    /// `pop:FIELD[a..b]`: pop the stack's top into the subfield (nothing
    /// happens on an empty stack).
    StackPop(Subfield),
    /// `exit`: stop translating, in every table and resubmit level; the
    /// action set is not run either.
    Exit,
    /// `output(port=P,max_len=N)`: output the packet truncated to N bytes.
    OutputTrunc {
        port: u32,
        max_len: u32,
    },
    /// `check_pkt_larger(N)->DST`: set the 1-bit subfield DST to whether
    /// the packet is longer than N bytes (the datapath decides, per packet).
    CheckPktLarger {
        pkt_len: u16,
        dst: Subfield,
    },
    /// `enqueue(port,queue)`: output to `port` through queue `queue`.
    Enqueue {
        port: u32,
        queue: u32,
    },
    /// `set_queue:Q`: later outputs go through queue Q (the packet's
    /// `skb_priority`).
    SetQueue(u32),
    /// `pop_queue`: back to the queue the packet came with.
    PopQueue,
    /// `group:N`: run group N's buckets (see `crate::group`).
    Group(u32),
    /// `set_tunnel:ID` / `set_tunnel64:ID` (Nicira's SET_TUNNEL and
    /// SET_TUNNEL64): set `tun_id`. Unlike `set_field` it leaves `tun_id`
    /// wildcarded, as OVS's translation does. `wide` remembers the 64-bit
    /// form, which OpenFlow 1.0 sends and both print back as written.
    SetTunnel {
        tun_id: u64,
        wide: bool,
    },
    /// `note:HEX`: bytes a controller keeps with a rule; no effect on the
    /// packet. Kept as the wire carries it (padded), as OVS prints it back.
    Note(Vec<u8>),
    /// `multipath(...)`: writes a link number chosen by a hash of the flow
    /// into a subfield (see `crate::multipath`).
    Multipath(crate::multipath::Multipath),
    /// `bundle(...)` (outputs to a live member chosen by a hash) and
    /// `bundle_load(...)` (writes its port number into a subfield).
    Bundle(Box<crate::multipath::Bundle>),
    /// `sample(...)`: packet sampling to an IPFIX collector set. With no
    /// collector configured (upcalld exports none) it does nothing, as in
    /// OVS.
    Sample(SampleAction),
    /// `debug_recirc`: OVS's testing action; the rest of the actions run
    /// after a recirculation.
    DebugRecirc,
    /// `debug_slow`: OVS's testing action; the flow is handled in the slow
    /// path (translated per packet, never installed as it is).
    DebugSlow,
}

/// A `sample` action's arguments (OVS's `ofpact_sample`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SampleAction {
    /// Packets sampled out of 65535 (never 0).
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// The port whose tunnel the sample describes (`port::ANY`: none).
    pub sampling_port: u32,
    pub direction: SampleDirection,
}

/// Where a `sample` samples (NXAST_SAMPLE3's `direction`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SampleDirection {
    Default = 0,
    Ingress = 1,
    Egress = 2,
}

pub use crate::learn::Subfield;

/// Why a packet goes to the controller (OVS's `ofp_packet_in_reason`,
/// with its two internal reasons after OpenFlow's).
pub mod packet_in_reason {
    pub const NO_MATCH: u8 = 0;
    pub const ACTION: u8 = 1;
    pub const INVALID_TTL: u8 = 2;
    pub const ACTION_SET: u8 = 3;
    pub const GROUP: u8 = 4;
    pub const PACKET_OUT: u8 = 5;
    /// A `controller` action of a table-miss rule (NO_MATCH from OpenFlow
    /// 1.3 on, ACTION before).
    pub const EXPLICIT_MISS: u8 = 6;
    /// No rule matched and the table sends misses to the controller.
    pub const IMPLICIT_MISS: u8 = 7;

    /// The names `controller(reason=...)` takes and prints (OVS's
    /// `ofputil_packet_in_reason_to_string`).
    pub const NAMES: [&str; 6] = [
        "no_match",
        "action",
        "invalid_ttl",
        "action_set",
        "group",
        "packet_out",
    ];

    /// The reason a connection of OpenFlow `version` sees (OVS's
    /// `encode_packet_in_reason`): reasons newer than the version become
    /// ACTION, the internal ones NO_MATCH.
    pub fn for_version(reason: u8, version: u8) -> u8 {
        const OFP13: u8 = 4;
        const OFP14: u8 = 5;
        match reason {
            ACTION_SET | GROUP | PACKET_OUT if version < OFP14 => ACTION,
            EXPLICIT_MISS if version < OFP13 => ACTION,
            EXPLICIT_MISS | IMPLICIT_MISS => NO_MATCH,
            r => r,
        }
    }
}

/// "No meter" in a `controller` action (OVS's `NX_CTLR_NO_METER`).
pub const NO_METER: u32 = u32::MAX;

/// A `controller` action (OVS's `ofpact_controller`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControllerAction {
    /// Bytes of the packet to send (65535: all of it).
    pub max_len: u16,
    /// The connections that get it: those with this controller id
    /// (NXT_SET_CONTROLLER_ID; 0 by default).
    pub controller_id: u16,
    /// A [`packet_in_reason`].
    pub reason: u8,
    /// Bytes the packet-in carries for the controller (NXT_PACKET_IN2's
    /// userdata).
    pub userdata: Vec<u8>,
    /// Freeze the pipeline here, to resume when the controller says.
    pub pause: bool,
    /// The meter that limits these packet-ins ([`NO_METER`]: none).
    pub meter_id: u32,
}

impl ControllerAction {
    /// `output:CONTROLLER` / `CONTROLLER:N`: the whole reason depends on
    /// where it runs.
    pub fn output(max_len: u16) -> Self {
        ControllerAction {
            max_len,
            controller_id: 0,
            reason: packet_in_reason::ACTION,
            userdata: Vec::new(),
            pause: false,
            meter_id: NO_METER,
        }
    }

    /// True for the form OVS keeps as an output to the CONTROLLER port
    /// (and prints `CONTROLLER:N`): nothing but `max_len` set.
    pub fn is_output(&self) -> bool {
        self.reason == packet_in_reason::ACTION
            && self.controller_id == 0
            && self.userdata.is_empty()
            && !self.pause
            && self.meter_id == NO_METER
    }
}

impl OfAction {
    /// Whether OpenFlow's action set (`write_actions`) may hold the action
    /// (OVS's `ofpact_is_allowed_in_actions_set`): outputs, `group`,
    /// `resubmit`, `ct`/`ct_clear`, field writes, VLAN and MPLS pushes and
    /// pops, TTL decrements and `set_queue`. The rest (the `controller`
    /// action beyond a plain output to CONTROLLER, `learn`, `clone`,
    /// `exit`, stack actions, ...) has no slot in the set; OVS refuses a
    /// flow mod with one (`OFPBAC_BAD_TYPE`).
    pub fn allowed_in_action_set(&self) -> bool {
        match self {
            OfAction::Controller(c) => c.is_output(),
            OfAction::Output { .. }
            | OfAction::SetField { .. }
            | OfAction::Load { .. }
            | OfAction::Move { .. }
            | OfAction::PushVlan { .. }
            | OfAction::PopVlan
            | OfAction::PushMpls { .. }
            | OfAction::PopMpls { .. }
            | OfAction::SetMplsLabel(_)
            | OfAction::SetMplsTc(_)
            | OfAction::SetMplsTtl(_)
            | OfAction::DecMplsTtl
            | OfAction::DecTtl
            | OfAction::DecTtlIds(_)
            | OfAction::Resubmit { .. }
            | OfAction::Ct(_)
            | OfAction::CtClear
            | OfAction::SetQueue(_)
            | OfAction::Group(_)
            | OfAction::SetTunnel { .. } => true,
            OfAction::OutputReg { .. }
            | OfAction::Nat(_)
            | OfAction::Conjunction { .. }
            | OfAction::Learn(_)
            | OfAction::FinTimeout { .. }
            | OfAction::Clone(_)
            | OfAction::StackPush(_)
            | OfAction::StackPop(_)
            | OfAction::Exit
            | OfAction::OutputTrunc { .. }
            | OfAction::CheckPktLarger { .. }
            | OfAction::Enqueue { .. }
            | OfAction::PopQueue
            | OfAction::Note(_)
            | OfAction::Multipath(_)
            | OfAction::Bundle(_)
            | OfAction::Sample(_)
            | OfAction::DebugRecirc
            | OfAction::DebugSlow => false,
        }
    }
}

impl Rule {
    /// A table-miss rule (priority 0, matching everything): its
    /// `controller` actions tell a miss (OVS's `rule_is_table_miss`).
    pub fn is_table_miss(&self) -> bool {
        self.priority == 0 && self.matches.mask.is_zero()
    }

    /// The groups the rule's actions send to (`group:N`, also in `clone`
    /// and `write_actions`).
    pub fn groups_used(&self) -> Vec<u32> {
        self.instructions.groups_used()
    }

    /// The rule's conjunctions, if it is a clause of conjunctive matches
    /// (its actions are all `conjunction`).
    pub fn conjunctions(&self) -> impl Iterator<Item = (u32, u8, u8)> + '_ {
        self.instructions.apply.iter().map_while(|a| match a {
            OfAction::Conjunction {
                id,
                clause,
                n_clauses,
            } => Some((*id, *clause, *n_clauses)),
            _ => None,
        })
    }

    /// True if the rule is a clause of a conjunctive match.
    #[inline]
    pub fn is_conjunctive(&self) -> bool {
        matches!(
            self.instructions.apply.first(),
            Some(OfAction::Conjunction { .. })
        )
    }
}

/// Where a `ct` action's zone comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CtZone {
    Imm(u16),
    /// `zone=NXM_NX_REG0[0..15]`: bits `ofs..ofs+n_bits` of `field`.
    Field {
        field: Field,
        ofs: u8,
        n_bits: u8,
    },
}

/// The arguments of `ct(...)` (OVS's `ofpact_conntrack`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CtSpec {
    pub commit: bool,
    pub force: bool,
    pub zone: CtZone,
    /// `table=T`: the packet, tracked, continues in table T under a new
    /// recirculation id (and the current pass goes on untracked).
    pub table: Option<u8>,
    /// Application-layer gateway: the L4 port of its protocol (21 ftp,
    /// 69 tftp), 0 for none.
    pub alg: u16,
    /// The nested actions, in order: a `Nat` and the `exec(...)` actions
    /// (writes to `ct_mark` and `ct_label`).
    pub actions: Vec<OfAction>,
}

impl CtSpec {
    /// The `nat` among the nested actions, if any.
    pub fn nat(&self) -> Option<&NatAction> {
        self.actions.iter().find_map(|a| match a {
            OfAction::Nat(n) => Some(n),
            _ => None,
        })
    }
}

pub use crate::odp::{NatAction, NatAddrs, NatKind};

/// A rule's instructions, OpenFlow 1.3 style.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Instructions {
    /// `meter:N`: the packet goes through meter N first (OpenFlow 1.3's
    /// meter instruction, 1.5's first action).
    pub meter: Option<u32>,
    /// Apply-actions (what `actions=` lists before any instruction).
    pub apply: Vec<OfAction>,
    pub clear_actions: bool,
    pub write_actions: Option<Vec<OfAction>>,
    /// `write_metadata:value/mask`.
    pub write_metadata: Option<(u64, u64)>,
    pub goto_table: Option<u8>,
}

impl Instructions {
    /// The groups these instructions send to (`group:N`, also in `clone`
    /// and `write_actions`).
    pub fn groups_used(&self) -> Vec<u32> {
        fn walk(actions: &[OfAction], out: &mut Vec<u32>) {
            for a in actions {
                match a {
                    OfAction::Group(g) => out.push(*g),
                    OfAction::Clone(inner) => walk(inner, out),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.apply, &mut out);
        walk(self.write_actions.as_deref().unwrap_or(&[]), &mut out);
        out
    }
}

/// What a flow mod asks for, whether it came as `ovs-ofctl` text or over
/// OpenFlow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowModCommand {
    Add,
    Modify,
    ModifyStrict,
    Delete,
    DeleteStrict,
}

/// Flow-mod flags (OpenFlow 1.3 numbering; 1.0's EMERG is refused).
pub mod flow_flags {
    pub const SEND_FLOW_REM: u16 = 1 << 0;
    pub const CHECK_OVERLAP: u16 = 1 << 1;
    pub const RESET_COUNTS: u16 = 1 << 2;
    pub const NO_PKT_COUNTS: u16 = 1 << 3;
    pub const NO_BYT_COUNTS: u16 = 1 << 4;
    /// The flags a rule keeps (OVS's `OFPUTIL_FF_STATE`); `reset_counts`
    /// acts on the change only.
    pub const KEPT: u16 = SEND_FLOW_REM | CHECK_OVERLAP | NO_PKT_COUNTS | NO_BYT_COUNTS;
}

/// One OpenFlow rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub table: u8,
    pub priority: u16,
    pub cookie: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// The flow-mod flags it keeps ([`flow_flags::KEPT`]): a controller
    /// reads them back in flow stats; `send_flow_rem` asks for a
    /// FLOW_REMOVED when the rule goes.
    pub flags: u16,
    pub matches: Match,
    pub instructions: Instructions,
}

impl Rule {
    /// True if the rule needs the datapath's connection tracker: it
    /// matches a `ct_*` field or its actions include `ct` or `ct_clear`.
    pub fn uses_conntrack(&self) -> bool {
        let m = &self.matches.mask;
        let matches_ct = m.ct_state != 0
            || m.ct_zone != 0
            || m.ct_mark != 0
            || m.ct_label != [0; 16]
            || m.ct_nw_proto != 0
            || m.ct_nw_src != 0
            || m.ct_nw_dst != 0
            || m.ct_ipv6_src != [0; 16]
            || m.ct_ipv6_dst != [0; 16];
        let ins = &self.instructions;
        matches_ct
            || ins
                .apply
                .iter()
                .chain(ins.write_actions.iter().flatten())
                .any(|a| matches!(a, OfAction::Ct(_) | OfAction::CtClear))
    }
}

/// Default priority of a rule that gives none (OFP_DEFAULT_PRIORITY).
pub const DEFAULT_PRIORITY: u16 = 32768;

/// How many tables a switch has.
pub const N_TABLES: usize = 255;
