//! upcalld's actors, and the classifier and xlate they use.
//!
//! The upcall path, one step per module: `receiver` (read upcall batches)
//! → `handler` (extract, look up, xlate) → `dpif_writer` (install);
//! `revalidator` keeps installed flows right; `rule_table` owns the rules.
//! [`pipeline`] wires them together (start reading there); [`protocol`]
//! holds every message they send each other;
//! [`supervisor`] is how they survive panics; [`backpressure`] how a busy
//! stage slows the one before it; [`stats`] what they count;
//! [`ukeys`] is what they know of each installed megaflow; [`published`]
//! holds the rules snapshot in force. Thread naming
//! and placement (`messages::threads`) and rate-limited logging
//! (`messages::log_limit`) live below, shared with the datapaths.
//! The pure parts: [`classifier`] (lookup with wildcard tracking),
//! [`tables`] (versioned snapshots of all OpenFlow tables), [`xlate`] and
//! the frozen states `ct(table=T)` leaves behind, [`recirc`].

pub mod backpressure;
pub mod classifier;
pub mod dpif_writer;
pub mod fanout;
pub mod handler;
pub mod mac_learning;
pub mod packet_in;
pub mod pinsched;
pub mod pipeline;
pub mod protocol;
pub mod published;
pub mod receiver;
pub mod recirc;
pub mod revalidator;
pub mod rule_table;
pub mod stats;
pub mod supervisor;
pub mod tables;
pub mod ukeys;
pub mod xlate;
