//! The rules snapshot in force: the rule-table publishes each new version
//! here, and handlers and revalidators take the latest when they start a
//! batch or a round (OVS's `tables_version`, which its threads read the
//! same way). A version used to be sent to each of them as a message,
//! which woke every handler and revalidator thread for every flow mod of
//! a burst; now publishing costs a store, and a thread that is not
//! translating is not disturbed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::tables::Tables;

/// The latest snapshot and its version, readable without the lock.
pub struct Published {
    version: AtomicU64,
    tables: RwLock<Arc<Tables>>,
}

impl Published {
    pub fn new(tables: Arc<Tables>) -> Self {
        Published {
            version: AtomicU64::new(tables.version()),
            tables: RwLock::new(tables),
        }
    }

    /// Makes `tables` the snapshot in force; returns the one it replaces,
    /// for the caller to free outside the lock (and, the rule-table,
    /// after it has answered).
    #[must_use = "the replaced snapshot is freed where it is dropped"]
    pub fn publish(&self, tables: Arc<Tables>) -> Arc<Tables> {
        let version = tables.version();
        let old = std::mem::replace(&mut *self.tables.write(), tables);
        self.version.store(version, Ordering::Release);
        old
    }

    /// The version of the snapshot in force.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The snapshot in force.
    pub fn latest(&self) -> Arc<Tables> {
        self.tables.read().clone()
    }

    /// Replaces `current` with the snapshot in force if that is another
    /// version (one load when it is not).
    pub fn refresh(&self, current: &mut Arc<Tables>) {
        if self.version.load(Ordering::Acquire) != current.version() {
            *current = self.latest();
        }
    }
}
