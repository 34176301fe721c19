//! The OpenFlow tables as one immutable, versioned snapshot.
