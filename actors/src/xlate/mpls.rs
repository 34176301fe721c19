//! MPLS actions: OVS's `compose_mpls_push_action`,
//! `compose_mpls_pop_action`, the `set_mpls_*` and `dec_mpls_ttl`
//! actions, `recirc_for_mpls`, and `commit_mpls_action` (with the label
//! stack helpers of its `lib/flow.c`).
//!
//! One deviation: a set of an entry matches the whole entry in the
//! megaflow, where OVS matches only the fields the actions read (see
//! `commit_mpls`).
//!
//! A pushed label hides the packet's L3 headers: the flow's L3 and L4
//! fields are cleared, and not committed while the packet is MPLS. A pop
//! to a non-MPLS EtherType leaves a packet whose L3 headers the slow path
//! has never seen, so the first action after it that needs them (anything
//! but outputs, L2 sets and groups) freezes the translation: the
//! datapath recirculates the packet, extracting it again.

use messages::field::Prereq;
use messages::flow::*;
use messages::odp::OdpAction;
use messages::ofp::OfAction;
use messages::wire::mpls::{BOS_MASK, LABEL_MASK, LABEL_SHIFT, TC_MASK, TC_SHIFT, TTL_MASK};

use super::{Ctx, Freeze, XlateError};

impl Ctx<'_> {
    /// OVS's `flow_count_mpls_labels` with wildcard tracking: each bottom
    /// of stack bit read becomes exact.
    fn count_mpls_labels(&mut self) -> usize {
        if !eth_type_mpls(self.flow.dl_type) {
            return 0;
        }
        for i in 0..FLOW_MAX_MPLS_LABELS {
            self.wc.mpls_lse[i] |= BOS_MASK;
            if self.flow.mpls_lse[i] & BOS_MASK != 0 {
                return i + 1;
            }
        }
        self.flow.mpls_depth()
    }

    /// OVS's `compose_mpls_push_action`.
    pub(super) fn push_mpls(&mut self, ethertype: u16) {
        let n = self.count_mpls_labels();
        if n == 0 {
            // What is pending applies to the packet under the label.
            self.commit();
        } else if n >= FLOW_MAX_MPLS_LABELS {
            self.error = Some(XlateError::TooManyMplsLabels);
            return;
        }
        push_mpls(&mut self.flow, n, ethertype, Some(&mut *self.wc), true);
    }

    /// OVS's `compose_mpls_pop_action`.
    pub(super) fn pop_mpls(&mut self, ethertype: u16) {
        let n = self.count_mpls_labels();
        if pop_mpls(&mut self.flow, n, ethertype, Some(&mut *self.wc)) {
            if !eth_type_mpls(ethertype) {
                self.was_mpls = true;
            }
        } else if n >= FLOW_MAX_MPLS_LABELS {
            self.error = Some(XlateError::TooManyMplsLabels);
            self.actions.clear();
        }
    }

    /// `set_mpls_label`, `set_mpls_tc`, `set_mpls_ttl`: the bits of the
    /// outermost entry under `mask`, on an MPLS packet only.
    pub(super) fn set_mpls_bits(&mut self, mask: u32, value: u32) {
        if eth_type_mpls(self.flow.dl_type) {
            self.wc.mpls_lse[0] |= mask;
            self.flow.mpls_lse[0] = (self.flow.mpls_lse[0] & !mask) | (value & mask);
        }
    }

    /// OVS's `compose_dec_mpls_ttl_action`: false when the rest of the
    /// action list is skipped (a TTL that expires goes to the controller,
    /// and a packet that is not MPLS stops there too, as in OVS).
    pub(super) fn dec_mpls_ttl(&mut self) -> bool {
        if eth_type_mpls(self.flow.dl_type) {
            let ttl = self.flow.mpls_lse[0] & TTL_MASK;
            self.wc.mpls_lse[0] |= TTL_MASK;
            if ttl > 1 {
                self.flow.mpls_lse[0] = (self.flow.mpls_lse[0] & !TTL_MASK) | (ttl - 1);
                return true;
            }
            let c = messages::ofp::ControllerAction::output(u16::MAX);
            self.controller(&c, messages::ofp::packet_in_reason::INVALID_TTL);
        }
        false
    }

    /// OVS's `recirc_for_mpls`: after a pop to an IP EtherType, freezes
    /// before an action that may need the L3 headers.
    pub(super) fn recirc_for_mpls(&mut self, a: &OfAction) {
        if self.exit || !self.was_mpls || !needs_l3(a) {
            return;
        }
        self.trigger_freeze();
    }

    /// OVS's `ctx_trigger_freeze`: translation stops here and resumes
    /// after a recirculation.
    pub(super) fn trigger_freeze(&mut self) {
        self.exit = true;
        self.freeze = Some(Freeze {
            hash: None,
            continuation: Vec::new(),
            pause: None,
        });
    }

    /// OVS's `commit_mpls_action`: pops of the base's entries that differ
    /// from the flow's (a set for the last one when the flow has one more
    /// to put there), then pushes of the flow's.
    pub(super) fn commit_mpls(&mut self) {
        let (flow, base) = (&self.flow, &mut self.base);
        let mut base_n = base.mpls_depth();
        let flow_n = flow.mpls_depth();
        let mut common_n = common_mpls_labels(flow, flow_n, base, base_n);
        while base_n > common_n {
            if base_n - 1 == common_n && flow_n > common_n {
                let lse = flow.mpls_lse[flow_n - base_n];
                self.actions.push(OdpAction::SetMpls(lse));
                // The set writes the whole entry, so all of it is matched:
                // OVS leaves the bits no action read wildcarded, and a
                // packet with another TTL or TC in its megaflow would get
                // this one's. (A packet that was not MPLS matches none of
                // it; pushes and pops match the entries they move.)
                self.wc.mpls_lse[0] = u32::MAX;
                base.mpls_lse[0] = lse;
                common_n += 1;
            } else {
                // The pop of an entry that is not the last names MPLS: the
                // datapath wants an MPLS EtherType there.
                let ethertype = if !eth_type_mpls(flow.dl_type) && base_n > 1 {
                    ETH_TYPE_MPLS
                } else {
                    flow.dl_type
                };
                self.actions.push(OdpAction::PopMpls(ethertype));
                pop_mpls(base, base_n, flow.dl_type, None);
                base_n -= 1;
            }
        }
        while base_n < flow_n {
            let lse = flow.mpls_lse[flow_n - base_n - 1];
            self.actions.push(OdpAction::PushMpls {
                lse,
                ethertype: flow.dl_type,
            });
            // The base keeps its L3 fields, for when the flow gets them
            // back (after a group bucket or a clone).
            push_mpls(base, base_n, flow.dl_type, None, false);
            base.mpls_lse[0] = lse;
            base_n += 1;
        }
    }
}

/// Whether an action after a pop to an IP EtherType needs the packet
/// extracted again first (OVS's `recirc_for_mpls` list): all but outputs,
/// groups, queue and tunnel sets, and sets of fields below L3.
fn needs_l3(a: &OfAction) -> bool {
    match a {
        OfAction::Output { .. }
        | OfAction::OutputTrunc { .. }
        | OfAction::Enqueue { .. }
        | OfAction::OutputReg { .. }
        | OfAction::SetTunnel { .. }
        | OfAction::SetQueue(_)
        | OfAction::Group(_) => false,
        OfAction::SetField { field, .. } | OfAction::Load { field, .. } => !matches!(
            field.prereq(),
            Prereq::None | Prereq::Vlan | Prereq::Mpls | Prereq::CtValid
        ),
        _ => true,
    }
}

/// OVS's `flow_push_mpls`: a new outermost entry (a copy of the one below
/// without its bottom of stack bit, or for a packet that had none, label
/// 0 (2 for IPv6) with the IP header's DSCP and TTL); `clear_l3` marks the
/// L3 and L4 fields unknown, as the datapath will not see them.
fn push_mpls(
    flow: &mut Flow,
    n: usize,
    ethertype: u16,
    wc: Option<&mut FlowWildcards>,
    clear_l3: bool,
) {
    if n > 0 {
        if let Some(wc) = wc {
            wc.mpls_lse[..n].fill(u32::MAX);
        }
        flow.mpls_lse.copy_within(0..n, 1);
        flow.mpls_lse[0] = flow.mpls_lse[1] & !BOS_MASK;
    } else {
        let label = if flow.dl_type == ETH_TYPE_IPV6 { 2 } else { 0 };
        let (mut tc, mut ttl) = (0, 64);
        if flow.is_ip_any() {
            tc = (flow.nw_tos & 0xfc) >> 2;
            if let Some(wc) = wc {
                wc.nw_tos |= 0xfc;
                wc.nw_ttl = 0xff;
            }
            if flow.nw_ttl != 0 {
                ttl = flow.nw_ttl;
            }
        }
        flow.mpls_lse[0] = mpls_lse(label, tc, true, ttl);
        if clear_l3 {
            flow.clear_l3_l4();
            flow.dp_hash = 0;
        }
    }
    flow.dl_type = ethertype;
}

/// OVS's `flow_pop_mpls`: false when there is nothing to pop, or when the
/// deepest tracked entry is not the bottom (what would come up from below
/// it is unknown).
fn pop_mpls(flow: &mut Flow, n: usize, ethertype: u16, wc: Option<&mut FlowWildcards>) -> bool {
    if n == 0 {
        return false;
    }
    let mut wc = wc;
    if n == FLOW_MAX_MPLS_LABELS {
        if let Some(wc) = wc.as_deref_mut() {
            wc.mpls_lse[n - 1] |= BOS_MASK;
        }
        if flow.mpls_lse[n - 1] & BOS_MASK == 0 {
            return false;
        }
    }
    if let Some(wc) = wc {
        wc.mpls_lse[1..n].fill(u32::MAX);
    }
    flow.mpls_lse.copy_within(1..n, 0);
    flow.mpls_lse[n - 1] = 0;
    flow.dl_type = ethertype;
    true
}

/// OVS's `flow_count_common_mpls_labels`: how many entries, counted from
/// the bottom of each stack, the two flows share.
fn common_mpls_labels(a: &Flow, an: usize, b: &Flow, bn: usize) -> usize {
    (0..an.min(bn))
        .take_while(|i| a.mpls_lse[an - 1 - i] == b.mpls_lse[bn - 1 - i])
        .count()
}

/// The value and bits of `set_mpls_label`, `set_mpls_tc`, `set_mpls_ttl`.
pub(super) fn label_bits(label: u32) -> (u32, u32) {
    (LABEL_MASK, label << LABEL_SHIFT)
}

pub(super) fn tc_bits(tc: u8) -> (u32, u32) {
    (TC_MASK, u32::from(tc) << TC_SHIFT)
}

pub(super) fn ttl_bits(ttl: u8) -> (u32, u32) {
    (TTL_MASK, u32::from(ttl))
}
