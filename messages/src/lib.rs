//! upcalld's vocabulary: everything the actors say to each other, with no
//! I/O.
//!
//! - [`flow`]: `Flow` and its wildcards; [`field`]: match fields;
//!   [`megaflow`]: a key under a mask, as the words the mask pins.
//! - [`wire`]: typed views over packet bytes, one protocol per file;
//!   [`extract`]: frame → `Flow`; [`compose`]: `Flow` → frame;
//!   [`execute`]: datapath actions applied to a frame.
//! - [`ofp`]: OpenFlow rules and actions; [`parse`]: their text syntax.
//! - [`odp`]: datapath actions; [`dpif`]: the datapath interface and what
//!   crosses it; [`hash`]: ufids and flow hashes.
//! - [`format`](mod@format): printing in OVS's formats.
//! - [`netlink`]: the kernel's OVS generic netlink families, as types.
//! - Two primitives both the datapaths and the actors use, kept here so
//!   that the datapaths need not import the slow path: [`threads`] (a
//!   thread's name and CPUs) and [`log_limit`] (rate-limited log lines).

pub mod compose;
pub mod control;
pub mod dpif;
pub mod execute;
pub mod extract;
pub mod field;
pub mod flow;
pub mod format;
pub mod group;
pub mod hash;
pub mod learn;
pub mod log_limit;
pub mod megaflow;
pub mod meter;
pub mod multipath;
pub mod native_tunnel;
pub mod netlink;
pub mod odp;
pub mod ofp;
pub mod openflow;
pub mod parse;
pub mod threads;
pub mod tlv;
pub mod tunnel;
pub mod unixctl;
pub mod wire;

pub use field::Field;
pub use flow::{Flow, FlowWildcards};
pub use megaflow::Megaflow;
