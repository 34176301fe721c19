//! Datapath actions as `ofproto/trace` prints them after `Datapath actions: `.
