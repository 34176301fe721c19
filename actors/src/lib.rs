//! upcalld's actors, and the classifier and xlate they use.
//!
//! The upcall path, one step per module: `receiver` (read upcall batches)
//! → `handler` (extract, look up, xlate) → `dpif_writer` (install);
//! `revalidator` keeps installed flows right; `rule_table` owns the rules.
//! The pure parts: [`classifier`] (lookup with wildcard tracking),
//! [`tables`] (versioned snapshots of all OpenFlow tables) and [`xlate`].

pub mod classifier;
pub mod dpif;
pub mod tables;
pub mod xlate;
