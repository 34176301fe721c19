//! The distinct action lists of the installed megaflows, each kept once.

use super::*;

/// The distinct action lists of the installed megaflows, each stored once
/// (a rule set sends most megaflows to a handful of lists, and a list takes
/// hundreds of bytes), with how many megaflows use it; a list leaves with
/// its last megaflow.
///
/// The pool keeps its own copy of each list rather than the `Arc` a put
/// brings: handlers keep cloning and dropping theirs on another core, and
/// megaflows sharing it would bounce its reference count between the cores
/// with every put.
#[derive(Default)]
pub(super) struct ActionPool {
    /// The pool's copy of each list, by content.
    pub(super) lists: FxHashSet<Arc<OdpActions>>,
    /// How many megaflows use each list, by the address of the pool's copy.
    users: FxHashMap<usize, usize>,
    /// The lists handlers have sent, by address, with the pool's copy:
    /// handlers share their lists, so a put usually brings one seen
    /// before, recognized without hashing it. Each entry holds the
    /// sender's `Arc`, so that its address cannot be freed and reused for
    /// another list.
    pub(super) senders: FxHashMap<usize, (Arc<OdpActions>, Arc<OdpActions>)>,
}

pub(super) fn address(list: &Arc<OdpActions>) -> usize {
    Arc::as_ptr(list) as usize
}

impl ActionPool {
    /// The pool's copy of `actions`, counted as used by one more megaflow.
    pub(super) fn intern(&mut self, actions: &Arc<OdpActions>) -> Arc<OdpActions> {
        let own = match self.senders.get(&address(actions)) {
            Some((_, own)) => own.clone(),
            None => {
                let own = match self.lists.get(&**actions) {
                    Some(own) => own.clone(),
                    None => {
                        let own = Arc::new((**actions).clone());
                        self.lists.insert(own.clone());
                        own
                    }
                };
                self.senders
                    .insert(address(actions), (actions.clone(), own.clone()));
                own
            }
        };
        *self.users.entry(address(&own)).or_default() += 1;
        own
    }

    /// Called as a megaflow using `own` (from [`ActionPool::intern`]) goes.
    pub(super) fn release(&mut self, own: &Arc<OdpActions>) {
        let Some(users) = self.users.get_mut(&address(own)) else {
            return;
        };
        *users -= 1;
        if *users == 0 {
            self.users.remove(&address(own));
            self.lists.remove(&**own);
            self.senders.retain(|_, (_, o)| !Arc::ptr_eq(o, own));
        }
    }
}
