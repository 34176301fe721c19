//! The `upcalld` daemon and tools as a library: the datapath backends
//! (the embedded userspace datapath, the kernel's), configuration, control
//! socket, metrics, the daemon and its supervision tree, tracing and the
//! benchmark, over the [`messages`] vocabulary and the [`actors`].

pub mod bench;
pub mod bench_conntrack;
pub mod config;
pub mod control;
pub mod daemon;
pub mod dpif_kernel;
pub mod dpif_netdev;
pub mod host_tables;
pub mod lock;
pub mod memory;
pub mod meters;
pub mod metrics;
pub mod netns;
pub mod openflow;
pub mod raw_socket;
pub mod rules;
pub mod show;
pub mod trace;
