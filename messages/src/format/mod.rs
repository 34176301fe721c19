//! Printing in OVS formats.

pub mod megaflow;
pub mod odp_actions;
pub mod odp_flow;
pub mod ofp_rule;

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// A MAC, with `/mask` unless the mask is exact.
pub fn mac_masked(out: &mut String, value: [u8; 6], mask: [u8; 6]) {
    out.push_str(&mac(value));
    if mask != [0xff; 6] {
        out.push('/');
        out.push_str(&mac(mask));
    }
}

/// An IPv4 address, with `/len` for a CIDR mask, `/a.b.c.d` for another,
/// nothing for an exact one.
pub fn ipv4_masked(out: &mut String, value: u32, mask: u32) {
    let _ = write!(out, "{}", Ipv4Addr::from(value));
    if mask != u32::MAX {
        let n = mask.leading_ones();
        if n == 32 || mask == !(u32::MAX >> n) {
            let _ = write!(out, "/{n}");
        } else {
            let _ = write!(out, "/{}", Ipv4Addr::from(mask));
        }
    }
}

/// An IPv6 address as `inet_ntop` prints it.
pub fn ipv6(value: [u8; 16]) -> String {
    Ipv6Addr::from(value).to_string()
}

/// An IPv6 address, with `/len` for a CIDR mask, `/addr` for another.
pub fn ipv6_masked(out: &mut String, value: [u8; 16], mask: [u8; 16]) {
    out.push_str(&ipv6(value));
    let m = u128::from_be_bytes(mask);
    if m != u128::MAX {
        let n = m.leading_ones();
        if n < 128 && m == !(u128::MAX >> n) {
            let _ = write!(out, "/{n}");
        } else {
            out.push('/');
            out.push_str(&ipv6(mask));
        }
    }
}

/// TCP flag names by bit, as OVS prints them.
pub fn tcp_flag_name(bit: u16) -> Option<&'static str> {
    Some(match bit {
        0x001 => "fin",
        0x002 => "syn",
        0x004 => "rst",
        0x008 => "psh",
        0x010 => "ack",
        0x020 => "urg",
        0x040 => "ece",
        0x080 => "cwr",
        0x100 => "ns",
        _ => return None,
    })
}

/// TCP flags under a mask: `syn|ack` when the mask covers all 12 bits,
/// otherwise `+syn-ack` (each masked bit, lowest first).
pub fn tcp_flags_masked(out: &mut String, flags: u16, mask: u16) {
    const ALL: u16 = 0x0fff;
    let name = |bit: u16| match tcp_flag_name(bit) {
        Some(n) => n.to_string(),
        None => format!("[{bit:x}]"),
    };
    if mask & ALL == ALL {
        if flags == 0 {
            out.push('0');
            return;
        }
        let names: Vec<String> = (0..12)
            .map(|i| 1u16 << i)
            .filter(|b| flags & b != 0)
            .map(name)
            .collect();
        out.push_str(&names.join("|"));
        return;
    }
    if mask == 0 {
        out.push_str("0/0");
        return;
    }
    for bit in (0..12).map(|i| 1u16 << i).filter(|b| mask & b != 0) {
        out.push(if flags & bit != 0 { '+' } else { '-' });
        out.push_str(&name(bit));
    }
}
