//! The `upcalld` daemon as a library: the datapath backends, and everything
//! the binary is made of (configuration, control socket, metrics, the
//! daemon and its supervision tree, the benchmark).

pub mod bench;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dpif_netdev;
pub mod metrics;
pub mod netns;
pub mod show;
