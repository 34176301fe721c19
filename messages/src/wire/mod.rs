//! Typed, zero-copy views over packet bytes, one protocol per file.
