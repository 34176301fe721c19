//! upcalld's vocabulary: everything the actors say to each other, with no
//! I/O. Flows and wildcards ([`flow`]), match fields ([`field`]), OpenFlow
//! rules and actions ([`ofp`]), datapath actions ([`odp`]).

pub mod dpif;
pub mod field;
pub mod flow;
pub mod odp;
pub mod ofp;

pub use field::Field;
pub use flow::{Flow, FlowWildcards};
