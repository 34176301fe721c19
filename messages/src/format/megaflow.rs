//! The megaflow as `ofproto/trace` prints it after `Megaflow: `.
