//! Printing in OVS formats.

use std::fmt::Write;

pub mod megaflow;
pub mod odp_actions;
pub mod odp_flow;
pub mod ofp_rule;

/// `aa:bb:cc:dd:ee:ff`.
pub fn mac(m: [u8; 6]) -> String {
    format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        m[0], m[1], m[2], m[3], m[4], m[5]
    )
}

/// An IPv6 address as glibc's `inet_ntop` writes it (embedded IPv4 for
/// `::a.b.c.d` and `::ffff:a.b.c.d`).
pub fn ipv6(a: &[u8; 16]) -> String {
    let w: Vec<u16> = a
        .chunks_exact(2)
        .map(|c| u16::from_be_bytes([c[0], c[1]]))
        .collect();
    // The longest run of zero words (leftmost on ties), if at least 2.
    let (mut best, mut best_len, mut cur, mut cur_len) = (0usize, 0usize, 0usize, 0usize);
    for (i, x) in w.iter().enumerate() {
        if *x == 0 {
            if cur_len == 0 {
                cur = i;
            }
            cur_len += 1;
            if cur_len > best_len {
                best = cur;
                best_len = cur_len;
            }
        } else {
            cur_len = 0;
        }
    }
    if best_len < 2 {
        best_len = 0;
    }
    let embedded_v4 = best == 0 && (best_len == 6 || (best_len == 5 && w[5] == 0xffff));
    let mut s = String::new();
    let mut i = 0;
    while i < 8 {
        if best_len > 0 && i == best {
            if i == 0 {
                s.push(':');
            }
            s.push(':');
            i += best_len;
            continue;
        }
        if embedded_v4 && i == 6 {
            let _ = write!(s, "{}.{}.{}.{}", a[12], a[13], a[14], a[15]);
            break;
        }
        let _ = write!(s, "{:x}", w[i]);
        if i < 7 {
            s.push(':');
        }
        i += 1;
    }
    if s.len() > 2 && s.ends_with(':') && !s.ends_with("::") {
        s.pop();
    }
    s
}

/// `ct_state` bits as OVS's `format_flags` with `|` prints them, lowest
/// bit first (`new|trk`); `0` for none.
pub fn ct_state_flags(state: u8) -> String {
    if state == 0 {
        return "0".into();
    }
    crate::parse::syntax::CT_STATE_NAMES
        .iter()
        .filter(|(bit, _)| u32::from(state) & bit != 0)
        .map(|(_, name)| *name)
        .collect::<Vec<_>>()
        .join("|")
}
