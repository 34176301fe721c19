//! Recirculation ids (OVS's `ofproto-dpif-rid`): when a translation sends
//! the packet through the connection tracker with `ct(table=T)`, the rest
//! of the pipeline is *frozen* under an id; the datapath runs `ct` then
//! `recirc(id)`, and the upcall that comes back with that `recirc_id`
//! resumes from the frozen state.
//!
//! One table is shared by every handler and revalidator (through
//! `XlateConfig`). Equal frozen states share one id, as OVS's
//! `recirc_alloc_id_ctx` reuses them. An id lives while some flow uses it:
//! a ukey holds the ids its flow matches or recirculates to
//! ([`RecircRefs`], counted per id, as OVS's ukeys hold recirc
//! references), and after each round revalidator 0 frees the ids that no
//! ukey holds and that no translation touched since the sweep before the
//! last (a translation makes its ukey right after it, so a whole
//! revalidation interval covers that gap). A sweep visits the ids, not
//! the flows.

use std::collections::HashMap;
use std::sync::Arc;

use messages::field::Field;
use messages::flow::{Flow, FLOW_N_REGS};
use messages::odp::{ControllerCookie, OdpAction};
use messages::ofp::{port, Instructions, OfAction};
use messages::openflow::continuation::{Continuation, ContinuationLevel};
use parking_lot::Mutex;
use smallvec::SmallVec;

/// What a translation needs to resume: the table to look up, the pipeline
/// metadata the datapath does not carry (OVS's `frozen_metadata`), the
/// action set, and whether the packet is tracked.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrozenState {
    pub table: u8,
    pub in_port: u32,
    pub metadata: u64,
    pub regs: [u32; FLOW_N_REGS],
    /// The tunnel fields, as `Flow::tunnel_bytes` has them.
    pub tunnel: Vec<u8>,
    pub action_set: Vec<OfAction>,
    pub conntracked: bool,
    /// The NXM stack (`push`/`pop`).
    pub stack: Vec<u128>,
    /// What is left to run, innermost level first, when translation froze
    /// in the middle of actions (OVS's frozen `ofpacts`); empty: look up
    /// `table`.
    pub continuation: Vec<FrozenActions>,
    /// A `controller` action's userdata, for its packet-in.
    pub userdata: Vec<u8>,
    /// Translation froze after a pop of MPLS (OVS keeps it in the frozen
    /// state too, so that such a state has an id of its own).
    pub was_mpls: bool,
}

/// The actions one level of a frozen translation had left (OVS's unrolled
/// actions): the rest of an action list, then the rule's instructions
/// after it, in the table and under the cookie they ran in.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FrozenActions {
    pub table: u8,
    pub cookie: u64,
    pub actions: Vec<OfAction>,
    pub rest: Option<Instructions>,
}

impl FrozenState {
    /// The metadata part, as OVS's `frozen_metadata_from_flow` takes it.
    pub fn new(table: u8, flow: &Flow, action_set: Vec<OfAction>, conntracked: bool) -> Self {
        FrozenState {
            table,
            in_port: flow.in_port,
            metadata: flow.metadata,
            regs: flow.regs,
            tunnel: flow.tunnel_bytes().to_vec(),
            action_set,
            conntracked,
            stack: Vec::new(),
            continuation: Vec::new(),
            userdata: Vec::new(),
            was_mpls: false,
        }
    }

    /// The same state with the translation's stack.
    pub fn with_stack(mut self, stack: Vec<u128>) -> Self {
        self.stack = stack;
        self
    }

    /// The continuation a controller gets for this state (a
    /// `controller(pause)`'s): each level's remaining instructions become
    /// actions as in OVS's `freeze_unroll_actions` (`write_metadata` a
    /// masked set of `metadata`, `goto_table` a resubmit); a
    /// `clear_actions` or `write_actions` after the pause is lost, as OVS
    /// cannot send those in a continuation either.
    pub fn continuation(&self, bridge: [u8; 16], odp_port: u32) -> Continuation {
        let levels = self
            .continuation
            .iter()
            .map(|level| {
                let mut actions = level.actions.clone();
                if let Some(rest) = &level.rest {
                    if let Some((value, mask)) = rest.write_metadata {
                        actions.push(OfAction::SetField {
                            field: Field::Metadata,
                            value: u128::from(value & mask),
                            mask: u128::from(mask),
                        });
                    }
                    if let Some(table) = rest.goto_table {
                        actions.push(OfAction::Resubmit {
                            in_port: Some(port::IN_PORT),
                            table: Some(table),
                        });
                    }
                }
                ContinuationLevel {
                    table: level.table,
                    cookie: level.cookie,
                    actions,
                }
            })
            .collect();
        Continuation {
            bridge,
            stack: self.stack.clone(),
            conntracked: self.conntracked,
            levels,
            action_set: self.action_set.clone(),
            odp_port,
        }
    }

    /// The state an NXT_RESUME goes on from (OVS's `xlate_resume`): its
    /// continuation, with the metadata of `flow` (the packet-in's, as the
    /// controller sent it back). At least one level, perhaps empty, so
    /// that the translation resumes rather than looking table 0 up.
    pub fn resumed(c: &Continuation, flow: &Flow) -> FrozenState {
        let mut state = FrozenState::new(0, flow, c.action_set.clone(), c.conntracked)
            .with_stack(c.stack.clone());
        state.continuation = c
            .levels
            .iter()
            .map(|l| FrozenActions {
                table: l.table,
                cookie: l.cookie,
                actions: l.actions.clone(),
                rest: None,
            })
            .collect();
        if state.continuation.is_empty() {
            state.continuation.push(FrozenActions {
                table: 0,
                cookie: 0,
                actions: Vec::new(),
                rest: None,
            });
        }
        state
    }

    /// Writes the frozen metadata back into `flow` (OVS's
    /// `frozen_metadata_to_flow`).
    pub fn restore_metadata(&self, flow: &mut Flow) {
        flow.in_port = self.in_port;
        flow.metadata = self.metadata;
        flow.regs = self.regs;
        flow.set_tunnel_bytes(&self.tunnel);
    }
}

struct Entry {
    state: Arc<FrozenState>,
    /// The sweep epoch in which a translation last used the id.
    touched: u64,
    /// Ukeys holding the id.
    refs: u32,
}

#[derive(Default)]
struct Inner {
    by_state: HashMap<Arc<FrozenState>, u32>,
    by_id: HashMap<u32, Entry>,
    /// The last id handed out; ids count up from 1 (0 is "not
    /// recirculated") and skip ids still in use when they wrap.
    last_id: u32,
    epoch: u64,
}

/// The table of recirculation ids.
#[derive(Default)]
pub struct RecircIds {
    inner: Mutex<Inner>,
}

impl Inner {
    /// Frees every id whose entry `dead` picks; returns how many.
    fn free_where(&mut self, dead: impl Fn(&Entry) -> bool) -> usize {
        let ids: Vec<u32> = self
            .by_id
            .iter()
            .filter(|(_, e)| dead(e))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            if let Some(e) = self.by_id.remove(id) {
                self.by_state.remove(&e.state);
            }
        }
        ids.len()
    }
}

impl std::fmt::Debug for RecircIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecircIds({} ids)", self.len())
    }
}

impl RecircIds {
    /// The id of `state`: the one it already has, or a new one.
    pub fn id_for(&self, state: FrozenState) -> u32 {
        let mut g = self.inner.lock();
        let epoch = g.epoch;
        if let Some(&id) = g.by_state.get(&state) {
            if let Some(e) = g.by_id.get_mut(&id) {
                e.touched = epoch;
            }
            return id;
        }
        let mut id = g.last_id;
        loop {
            id = id.wrapping_add(1);
            if id != 0 && !g.by_id.contains_key(&id) {
                break;
            }
        }
        g.last_id = id;
        let state = Arc::new(state);
        g.by_state.insert(state.clone(), id);
        g.by_id.insert(
            id,
            Entry {
                state,
                touched: epoch,
                refs: 0,
            },
        );
        id
    }

    /// The frozen state of `id`, if it is allocated.
    pub fn get(&self, id: u32) -> Option<Arc<FrozenState>> {
        let mut g = self.inner.lock();
        let epoch = g.epoch;
        let e = g.by_id.get_mut(&id)?;
        e.touched = epoch;
        Some(e.state.clone())
    }

    /// Number of ids allocated.
    pub fn len(&self) -> usize {
        self.inner.lock().by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frees every id no ukey holds, as OVS's trace does with the ids it
    /// allocated once it is done (the next trace gets fresh ones). Returns
    /// how many were freed.
    pub fn free_unheld(&self) -> usize {
        self.inner.lock().free_where(|e| e.refs == 0)
    }

    /// Frees the ids that no ukey holds and that no translation used since
    /// the sweep before the last. Returns how many were freed.
    pub fn sweep(&self) -> usize {
        let mut g = self.inner.lock();
        g.epoch += 1;
        let epoch = g.epoch;
        g.free_where(|e| e.refs == 0 && e.touched + 1 < epoch)
    }

    /// Holds the ids a datapath flow uses, the one its key matches
    /// (`recirc_id`), the ones its actions recirculate to and the ones its
    /// `controller` actions' packet-ins read, until the returned refs are
    /// dropped; None when it uses none (most flows). Ids not allocated (a
    /// flow adopted after a restart) are not held.
    pub fn hold(self: &Arc<Self>, recirc_id: u32, actions: &[OdpAction]) -> Option<RecircRefs> {
        let mut in_actions = SmallVec::<[u32; 2]>::new();
        actions_ids(actions, &mut in_actions);
        let used = std::iter::once(recirc_id)
            .filter(|&id| id != 0)
            .chain(in_actions);
        let mut ids = SmallVec::new();
        let mut g = None;
        for id in used {
            let g = g.get_or_insert_with(|| self.inner.lock());
            if let Some(e) = g.by_id.get_mut(&id) {
                e.refs += 1;
                ids.push(id);
            }
        }
        (!ids.is_empty()).then(|| RecircRefs {
            table: self.clone(),
            ids,
        })
    }
}

/// The ids datapath actions use: recirculations, and controller cookies
/// (also inside `clone` and `check_pkt_len`).
fn actions_ids(actions: &[OdpAction], out: &mut SmallVec<[u32; 2]>) {
    for a in actions {
        match a {
            OdpAction::Recirc(id) => out.push(*id),
            OdpAction::Userspace { userdata, .. } => {
                if let Some(c) = ControllerCookie::decode(userdata) {
                    out.push(c.recirc_id);
                }
            }
            OdpAction::Clone(inner) => actions_ids(inner, out),
            OdpAction::CheckPktLen { gt, le, .. } => {
                actions_ids(gt, out);
                actions_ids(le, out);
            }
            _ => {}
        }
    }
}

/// Recirculation ids held by a ukey: not freed while it lives.
pub struct RecircRefs {
    table: Arc<RecircIds>,
    ids: SmallVec<[u32; 2]>,
}

impl std::fmt::Debug for RecircRefs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RecircRefs({:?})", self.ids)
    }
}

impl Drop for RecircRefs {
    fn drop(&mut self) {
        let mut g = self.table.inner.lock();
        for id in &self.ids {
            if let Some(e) = g.by_id.get_mut(id) {
                e.refs = e.refs.saturating_sub(1);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(table: u8, reg0: u32) -> FrozenState {
        let mut f = Flow::default();
        f.regs[0] = reg0;
        FrozenState::new(table, &f, vec![], true)
    }

    #[test]
    fn equal_states_share_an_id_and_ids_no_ukey_holds_are_freed() {
        let ids = Arc::new(RecircIds::default());
        let a = ids.id_for(state(1, 0));
        assert_eq!(a, 1);
        assert_eq!(ids.id_for(state(1, 0)), a);
        let b = ids.id_for(state(1, 7));
        assert_eq!(b, 2);
        assert_eq!(ids.get(b).unwrap().regs[0], 7);

        // Touched before the first sweep: kept by it.
        assert_eq!(ids.sweep(), 0);
        // Touched during the sweep before: kept; b was not: freed.
        ids.id_for(state(1, 0));
        assert_eq!(ids.sweep(), 1);
        assert!(ids.get(b).is_none());
        assert!(ids.get(a).is_some());

        // Held by a flow (its key matches it, or its actions go there):
        // kept until every holder is dropped.
        let by_key = ids.hold(a, &[OdpAction::Output(1)]).expect("held");
        let by_action = ids.hold(0, &[OdpAction::CtClear, OdpAction::Recirc(a)]);
        assert!(ids.hold(0, &[OdpAction::Output(1)]).is_none(), "uses none");
        assert!(ids.hold(99, &[]).is_none(), "not allocated: not held");
        for _ in 0..3 {
            assert_eq!(ids.sweep(), 0);
        }
        drop(by_key);
        assert_eq!(ids.sweep(), 0);
        drop(by_action);
        assert_eq!(ids.sweep(), 1);
        assert!(ids.is_empty());
        // A freed state gets a fresh id.
        assert_eq!(ids.id_for(state(1, 7)), 3);
    }
}
