//! Frame → `Flow` (OVS's `flow_extract`).
