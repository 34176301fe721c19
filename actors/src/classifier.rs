//! Tuple space search with wildcard tracking, as OVS's classifier.
