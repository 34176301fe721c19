//! Flow → frame.
