//! The `upcalld` daemon as a library: the datapath backends, and everything
//! the binary is made of (configuration, control socket, metrics, the
//! supervision tree, the benchmark).

pub mod dpif_netdev;
