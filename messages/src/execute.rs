//! Datapath actions on frames.
