//! Typed, zero-copy views over packet bytes, one protocol per file, in the
//! spirit of smoltcp's `wire` module.
//!
//! Every view wraps a buffer `T: AsRef<[u8]>` (a `&[u8]`, a `&mut [u8]`, a
//! `Vec<u8>`...). [`new_checked`](ethernet::EthernetFrame::new_checked)
//! verifies that the buffer holds the header's fixed part (and whatever
//! length fields the view relies on), so getters never panic; a failed check
//! is a [`WireError`] saying which header, which field and why. Views over
//! mutable buffers also have setters for the fields the userspace datapath
//! rewrites; setters that touch checksummed bytes keep the checksum right
//! incrementally (RFC 1624).
//!
//! Multi-byte fields are returned in host order; MAC and IPv6 addresses as
//! byte arrays in wire order, as in [`Flow`](crate::flow::Flow).

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod icmpv6;
pub mod igmp;
pub mod ipv4;
pub mod ipv6;
pub mod mpls;
pub mod sctp;
pub mod tcp;
pub mod udp;
pub mod vlan;

pub use arp::ArpPacket;
pub use ethernet::{EthernetFrame, LlcSnapHeader};
pub use icmpv4::Icmpv4Packet;
pub use icmpv6::{Icmpv6Packet, NdMessage, NdOption};
pub use igmp::IgmpPacket;
pub use ipv4::Ipv4Packet;
pub use ipv6::{Ipv6ExtHeader, Ipv6FragmentHeader, Ipv6Packet};
pub use mpls::MplsLse;
pub use sctp::SctpPacket;
pub use tcp::TcpPacket;
pub use udp::UdpPacket;
pub use vlan::VlanHeader;

/// Why bytes could not be viewed as a header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The buffer ends before the header does.
    #[error("{header}: truncated: needs {needed} bytes, only {available} present")]
    Truncated {
        header: &'static str,
        needed: usize,
        available: usize,
    },
    /// A field holds a value the header cannot have.
    #[error("{header}: bad {field} {value:#x}: {reason}")]
    BadField {
        header: &'static str,
        field: &'static str,
        value: u32,
        reason: &'static str,
    },
}

/// Fails with [`WireError::Truncated`] unless `buf` has `needed` bytes.
pub(crate) fn check_len(header: &'static str, buf: &[u8], needed: usize) -> Result<(), WireError> {
    if buf.len() < needed {
        Err(WireError::Truncated {
            header,
            needed,
            available: buf.len(),
        })
    } else {
        Ok(())
    }
}

// Field accessors. Views call them only at offsets their `new_checked`
// verified, so the fixed-size conversions cannot fail; the fallback value
// keeps them panic-free regardless.

pub(crate) fn get_u8(buf: &[u8], at: usize) -> u8 {
    buf.get(at).copied().unwrap_or(0)
}

pub(crate) fn get_u16(buf: &[u8], at: usize) -> u16 {
    buf.get(at..at + 2)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]))
}

pub(crate) fn get_u32(buf: &[u8], at: usize) -> u32 {
    buf.get(at..at + 4)
        .map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

pub(crate) fn get_array<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut out = [0u8; N];
    if let Some(b) = buf.get(at..at + N) {
        out.copy_from_slice(b);
    }
    out
}

pub(crate) fn put_bytes(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(b) = buf.get_mut(at..at + bytes.len()) {
        b.copy_from_slice(bytes);
    }
}

pub(crate) fn put_u8(buf: &mut [u8], at: usize, value: u8) {
    put_bytes(buf, at, &[value]);
}

pub(crate) fn put_u16(buf: &mut [u8], at: usize, value: u16) {
    put_bytes(buf, at, &value.to_be_bytes());
}

pub(crate) fn put_u32(buf: &mut [u8], at: usize, value: u32) {
    put_bytes(buf, at, &value.to_be_bytes());
}
