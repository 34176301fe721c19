//! The `upcalld` daemon and tools: the datapath backends, configuration,
//! control socket, metrics and the supervision tree, over the
//! [`messages`] vocabulary and the [`actors`].

pub mod dpif_kernel;
pub mod trace;
