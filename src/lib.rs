//! upcalld's datapath backends and daemon pieces, as a library for the
//! binary and the integration tests.

pub mod dpif_kernel;
