//! Pieces the rule and flow parsers share: OVS's way of splitting
//! `key=value` lists (`ofputil_parse_key_value`) and the value syntaxes of
//! match fields (`mf_parse` in `lib/meta-flow.c`), with OVS's messages.

use std::net::Ipv6Addr;

use crate::field::{ones, FieldInfo, Syntax};
use crate::flow::{FLOW_NW_FRAG_ANY, FLOW_NW_FRAG_LATER, FLOW_NW_FRAG_MASK};
use crate::ofp::port;

/// One `key`, `key=value`, `key:value` or `key(value)` item, with byte
/// offsets into the text it came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct KeyValue<'a> {
    pub key: &'a str,
    pub key_at: usize,
    pub value: &'a str,
    pub value_at: usize,
}

/// Iterator over the items of a comma- or space-separated list, splitting
/// them as OVS does: a value given with `:` or `=` runs to the next comma
/// or blank (parentheses nest); one given with `(` runs to the matching `)`.
pub(crate) struct KeyValues<'a> {
    text: &'a str,
    pos: usize,
    base: usize,
}

/// Splits `text`; offsets are reported as `base + index into text`.
pub(crate) fn key_values(text: &str, base: usize) -> KeyValues<'_> {
    KeyValues { text, pos: 0, base }
}

fn is_blank_or_comma(b: u8) -> bool {
    matches!(b, b',' | b' ' | b'\t' | b'\r' | b'\n')
}

/// Length of the value at the start of `s`, up to a byte in `delims`,
/// skipping over balanced parentheses.
fn value_len(s: &[u8], delims: &[u8]) -> usize {
    let mut n = 0;
    while n < s.len() && !delims.contains(&s[n]) {
        if s[n] == b'(' {
            let mut level = 0;
            loop {
                match s.get(n) {
                    None => return n,
                    Some(b'(') => level += 1,
                    Some(b')') => level -= 1,
                    Some(_) => {}
                }
                n += 1;
                if level == 0 {
                    break;
                }
            }
        } else {
            n += 1;
        }
    }
    n
}

impl<'a> Iterator for KeyValues<'a> {
    type Item = KeyValue<'a>;

    fn next(&mut self) -> Option<KeyValue<'a>> {
        let b = self.text.as_bytes();
        while self.pos < b.len() && is_blank_or_comma(b[self.pos]) {
            self.pos += 1;
        }
        if self.pos >= b.len() {
            return None;
        }
        let key_start = self.pos;
        while self.pos < b.len()
            && !matches!(b[self.pos], b':' | b'=' | b'(')
            && !is_blank_or_comma(b[self.pos])
        {
            self.pos += 1;
        }
        let key = &self.text[key_start..self.pos];
        let delim = b.get(self.pos).copied();
        if delim.is_some() {
            self.pos += 1;
        }
        let value_delims: &[u8] = match delim {
            Some(b':') | Some(b'=') => b", \t\r\n",
            Some(b'(') => b")",
            _ => {
                return Some(KeyValue {
                    key,
                    key_at: self.base + key_start,
                    value: "",
                    value_at: self.base + key_start + key.len(),
                })
            }
        };
        let value_start = self.pos;
        let rest = &b[value_start..];
        let mut n = value_len(rest, value_delims);
        // `key(x)->y` keeps `x)->y` as the value, as OVS does for
        // actions written like `set_field(...)->field`.
        if delim == Some(b'(')
            && rest.get(n) == Some(&b')')
            && rest.get(n + 1..n + 3) == Some(b"->")
        {
            n += value_len(&rest[n..], b", \t\r\n");
        }
        let value = &self.text[value_start..value_start + n];
        self.pos = value_start + n + usize::from(n < rest.len());
        Some(KeyValue {
            key,
            key_at: self.base + key_start,
            value,
            value_at: self.base + value_start,
        })
    }
}

/// A value that does not parse: OVS's message for it (what `ovs-ofctl`
/// and `ofproto/trace` print) and, for our own messages, what was expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadValue {
    pub ovs: String,
    pub expected: &'static str,
}

impl BadValue {
    pub fn new(ovs: String, expected: &'static str) -> Self {
        BadValue { ovs, expected }
    }
}

/// Why an integer did not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum IntError {
    Syntax,
    TooLarge,
}

/// Parses an unsigned integer at the start of `s` as C's `strtoull` with
/// base 0 does (`0x` hex, leading `0` octal, else decimal), bounded to
/// `n_bits`. Returns the value and the number of bytes used.
pub(crate) fn scan_uint(s: &str, n_bits: u32) -> Result<(u128, usize), IntError> {
    let b = s.as_bytes();
    let (radix, start) = if b.len() > 2 && b[0] == b'0' && (b[1] == b'x' || b[1] == b'X') {
        (16, 2)
    } else if b.len() > 1 && b[0] == b'0' {
        (8, 1)
    } else {
        (10, 0)
    };
    let digits = b[start..]
        .iter()
        .take_while(|c| (**c as char).is_digit(radix))
        .count();
    if digits == 0 && radix != 8 {
        return Err(IntError::Syntax);
    }
    let mut value: u128 = 0;
    for &c in &b[start..start + digits] {
        let d = u128::from((c as char).to_digit(radix).unwrap_or(0));
        value = value
            .checked_mul(u128::from(radix))
            .and_then(|v| v.checked_add(d))
            .ok_or(IntError::TooLarge)?;
    }
    if value > ones(n_bits) {
        return Err(IntError::TooLarge);
    }
    Ok((value, start + digits))
}

/// Parses all of `s` as a C integer (`0x` hex, `0` octal, decimal) of at
/// most `n_bits` bits.
pub(crate) fn parse_uint(s: &str, n_bits: u32) -> Option<u128> {
    match scan_uint(s, n_bits) {
        Ok((v, n)) if n == s.len() => Some(v),
        _ => None,
    }
}

fn scan_hex_byte(b: &[u8]) -> Option<(u8, usize)> {
    let n = b
        .iter()
        .take(2)
        .take_while(|c| c.is_ascii_hexdigit())
        .count();
    if n == 0 {
        return None;
    }
    let text = std::str::from_utf8(&b[..n]).ok()?;
    Some((u8::from_str_radix(text, 16).ok()?, n))
}

/// Parses a MAC address (`xx:xx:xx:xx:xx:xx`) at the start of `s`.
pub(crate) fn scan_mac(s: &str) -> Option<([u8; 6], usize)> {
    let b = s.as_bytes();
    let mut mac = [0u8; 6];
    let mut pos = 0;
    for (i, byte) in mac.iter_mut().enumerate() {
        if i > 0 {
            if b.get(pos) != Some(&b':') {
                return None;
            }
            pos += 1;
        }
        let (v, n) = scan_hex_byte(&b[pos..])?;
        *byte = v;
        pos += n;
    }
    Some((mac, pos))
}

/// Parses all of `s` as a MAC address.
pub(crate) fn parse_mac(s: &str) -> Option<[u8; 6]> {
    match scan_mac(s) {
        Some((mac, n)) if n == s.len() => Some(mac),
        _ => None,
    }
}

/// Parses a dotted IPv4 address at the start of `s`.
pub(crate) fn scan_ipv4(s: &str) -> Option<(u32, usize)> {
    let b = s.as_bytes();
    let mut addr = 0u32;
    let mut pos = 0;
    for i in 0..4 {
        if i > 0 {
            if b.get(pos) != Some(&b'.') {
                return None;
            }
            pos += 1;
        }
        let n = b[pos..]
            .iter()
            .take(3)
            .take_while(|c| c.is_ascii_digit())
            .count();
        if n == 0 || b.get(pos + n).is_some_and(|c| c.is_ascii_digit()) {
            return None;
        }
        let octet: u32 = s[pos..pos + n].parse().ok()?;
        if octet > 255 {
            return None;
        }
        addr = (addr << 8) | octet;
        pos += n;
    }
    Some((addr, pos))
}

/// Parses all of `s` as a dotted IPv4 address.
pub(crate) fn parse_ipv4(s: &str) -> Option<u32> {
    match scan_ipv4(s) {
        Some((a, n)) if n == s.len() => Some(a),
        _ => None,
    }
}

/// An IPv4 netmask of `prefix` leading ones.
pub(crate) fn ipv4_prefix_mask(prefix: u32) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

/// An IPv6 netmask of `prefix` leading ones.
pub(crate) fn ipv6_prefix_mask(prefix: u32) -> u128 {
    if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    }
}

/// Parses `/N` (a decimal prefix length) at the start of `s`.
fn scan_prefix(s: &str) -> Option<(i64, usize)> {
    let b = s.as_bytes();
    if b.first() != Some(&b'/') {
        return None;
    }
    let neg = b.get(1) == Some(&b'-');
    let start = 1 + usize::from(neg);
    let n = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if n == 0 {
        return None;
    }
    let v: i64 = s[start..start + n].parse().unwrap_or(i64::MAX);
    Some((if neg { -v } else { v }, start + n))
}

/// Parses `A.B.C.D`, `A.B.C.D/N` or `A.B.C.D/M.M.M.M` (OVS's
/// `ip_parse_masked`).
pub(crate) fn parse_ipv4_masked(s: &str) -> Result<(u32, u32), String> {
    let invalid = || format!("{s}: invalid IP address");
    let (addr, n) = scan_ipv4(s).ok_or_else(invalid)?;
    let rest = &s[n..];
    if rest.is_empty() {
        return Ok((addr, u32::MAX));
    }
    if let Some(mask) = rest.strip_prefix('/').and_then(parse_ipv4) {
        return Ok((addr, mask));
    }
    match scan_prefix(rest) {
        Some((prefix, used)) if used == rest.len() => {
            if !(0..=32).contains(&prefix) {
                return Err(format!(
                    "{s}: IPv4 network prefix bits not between 0 and 32, inclusive"
                ));
            }
            Ok((addr, ipv4_prefix_mask(prefix as u32)))
        }
        _ => Err(invalid()),
    }
}

fn scan_ipv6(s: &str) -> Option<(u128, usize)> {
    let n = s
        .bytes()
        .take(46)
        .take_while(|c| c.is_ascii_hexdigit() || *c == b':' || *c == b'.')
        .count();
    let addr: Ipv6Addr = s[..n].parse().ok()?;
    Some((u128::from(addr), n))
}

/// Parses an IPv6 address, optionally with `/N` or `/MASK` (OVS's
/// `ipv6_parse_masked`).
pub(crate) fn parse_ipv6_masked(s: &str) -> Result<(u128, u128), String> {
    let invalid = || format!("{s}: invalid IPv6 address");
    let (addr, n) = scan_ipv6(s).ok_or_else(invalid)?;
    let rest = &s[n..];
    if rest.is_empty() {
        return Ok((addr, u128::MAX));
    }
    // `/N`, unless the digits begin a mask (`/2dff::`).
    if let Some((prefix, _)) = scan_prefix(rest).filter(|(_, used)| *used == rest.len()) {
        if !(0..=128).contains(&prefix) {
            return Err(format!(
                "{s}: IPv6 network prefix bits not between 0 and 128, inclusive"
            ));
        }
        return Ok((addr, ipv6_prefix_mask(prefix as u32)));
    }
    match rest.strip_prefix('/') {
        Some(m) => match scan_ipv6(m) {
            Some((mask, used)) if used == m.len() => Ok((addr, mask)),
            _ => Err(format!("{s}: Invalid IPv6 mask")),
        },
        None => Err(invalid()),
    }
}

/// OpenFlow's named ports, as OVS spells them.
const NAMED_PORTS: &[(&str, u32)] = &[
    ("IN_PORT", port::IN_PORT),
    ("TABLE", port::TABLE),
    ("NORMAL", port::NORMAL),
    ("FLOOD", port::FLOOD),
    ("ALL", port::ALL),
    ("CONTROLLER", port::CONTROLLER),
    ("LOCAL", port::LOCAL),
    ("ANY", port::ANY),
    ("NONE", port::ANY),
    ("UNSET", port::UNSET),
];

/// Parses an OpenFlow port: a decimal number or a name such as `LOCAL`
/// (any case). Numbers of OpenFlow 1.0's 16-bit reserved range map onto
/// OpenFlow 1.1's 32-bit one, as OVS maps them.
pub(crate) fn parse_port(s: &str) -> Option<u32> {
    if !s.is_empty() && s.bytes().all(|c| c.is_ascii_digit()) {
        let p: u64 = s.parse().ok()?;
        return match p {
            p if p < 0xff00 => Some(p as u32),
            p if p <= 0xffff => Some(p as u32 | 0xffff_0000),
            p if (u64::from(port::MAX)..=u64::from(u32::MAX)).contains(&p) => Some(p as u32),
            _ => None,
        };
    }
    NAMED_PORTS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(s))
        .map(|(_, p)| *p)
}

/// Prints a port as OVS does: a name for reserved ports, else the number.
pub(crate) fn format_port(p: u32) -> String {
    match NAMED_PORTS.iter().find(|(_, v)| *v == p) {
        Some((name, _)) => (*name).to_string(),
        None if p >= port::MAX => (p - 0xffff_0000).to_string(),
        None => p.to_string(),
    }
}

/// Names of the TCP flag bits, lowest bit first (OVS's
/// `packet_tcp_flag_to_string`).
pub(crate) const TCP_FLAG_NAMES: &[(u32, &str)] = &[
    (0x001, "fin"),
    (0x002, "syn"),
    (0x004, "rst"),
    (0x008, "psh"),
    (0x010, "ack"),
    (0x020, "urg"),
    (0x040, "ece"),
    (0x080, "cwr"),
    (0x100, "ns"),
    (0x200, "[200]"),
    (0x400, "[400]"),
    (0x800, "[800]"),
];

/// Names of the conntrack state bits (OVS's `ct_state_to_string`).
/// OpenFlow's `tun_flags` names (OVS's `flow_tun_flag_to_string`).
pub(crate) const TUN_FLAG_NAMES: &[(u32, &str)] = &[(0x1, "oam")];

pub(crate) const CT_STATE_NAMES: &[(u32, &str)] = &[
    (0x01, "new"),
    (0x02, "est"),
    (0x04, "rel"),
    (0x08, "rpl"),
    (0x10, "inv"),
    (0x20, "trk"),
    (0x40, "snat"),
    (0x80, "dnat"),
];

/// Parses a C `%i` integer (optional sign, `0x` hex, `0` octal, decimal)
/// at the start of `s`.
fn scan_c_int(s: &str) -> Option<(i64, usize)> {
    let neg = s.starts_with('-');
    let sign = usize::from(neg || s.starts_with('+'));
    let (v, n) = scan_uint(&s[sign..], 63).ok()?;
    let v = v as i64;
    Some((if neg { -v } else { v }, sign + n))
}

/// Parses flags as OVS's `parse_flags` does: `0xVAL/0xMASK`, `+a-b` (a
/// mask of the named bits), or `a|b|0x4` (exact). Returns the value and
/// mask; an exact value has an all-ones mask.
pub(crate) fn parse_flags(
    s: &str,
    names: &[(u32, &str)],
    allowed: u32,
    what: &str,
) -> Result<(u32, u32), String> {
    let unknown = || format!("{s}: unknown {what} flag(s)");
    if let Some((v, n)) = scan_c_int(s) {
        if let Some(rest) = s[n..].strip_prefix('/') {
            if let Some((m, used)) = scan_c_int(rest) {
                if used != rest.len() {
                    return Err(unknown());
                }
                let (v, m) = (v as u32, m as u32);
                if v & !allowed != 0 || m & !allowed != 0 {
                    return Err(unknown());
                }
                return Ok((v, m));
            }
        }
    }
    if s.starts_with('+') || s.starts_with('-') {
        let (mut flags, mut mask) = (0u32, 0u32);
        let mut rest = s;
        while !rest.is_empty() {
            let set = match rest.as_bytes()[0] {
                b'+' => true,
                b'-' => false,
                _ => {
                    return Err(format!(
                        "{rest}: {what} must be preceded by '+' (for SET) or '-' (NOT SET)"
                    ))
                }
            };
            rest = &rest[1..];
            let hit = names.iter().find(|(_, name)| {
                rest.starts_with(name)
                    && matches!(
                        rest.as_bytes().get(name.len()),
                        None | Some(b'+') | Some(b'-')
                    )
            });
            let Some(&(bit, name)) = hit else {
                return Err(unknown());
            };
            if mask & bit != 0 {
                return Err(format!(
                    "{rest}: Each {what} flag can be specified only once"
                ));
            }
            if bit & !allowed != 0 {
                return Err(unknown());
            }
            if set {
                flags |= bit;
            }
            mask |= bit;
            rest = &rest[name.len()..];
        }
        return Ok((flags, mask));
    }
    let mut result = 0u32;
    let mut rest = s;
    while !rest.is_empty() {
        if let Some((v, n)) = scan_c_int(rest) {
            let v = v as u32;
            if v & !allowed != 0 {
                return Err(unknown());
            }
            result |= v;
            rest = &rest[n..];
        } else {
            let hit = names.iter().find(|(_, name)| {
                rest.starts_with(name)
                    && matches!(rest.as_bytes().get(name.len()), None | Some(b'|'))
            });
            let Some(&(bit, name)) = hit else {
                return Err(unknown());
            };
            if bit & !allowed != 0 {
                return Err(unknown());
            }
            result |= bit;
            rest = &rest[name.len()..];
        }
        match rest.as_bytes().first() {
            Some(b'|') => rest = &rest[1..],
            None => {}
            Some(_) => return Err(unknown()),
        }
    }
    Ok((result, u32::MAX))
}

/// `nw_frag` spellings: (name, mask, value), in OVS's order.
const FRAGS: &[(&str, u8, u8)] = &[
    ("no", FLOW_NW_FRAG_MASK, 0),
    ("first", FLOW_NW_FRAG_MASK, FLOW_NW_FRAG_ANY),
    ("later", FLOW_NW_FRAG_MASK, FLOW_NW_FRAG_MASK),
    ("no", FLOW_NW_FRAG_ANY, 0),
    ("yes", FLOW_NW_FRAG_ANY, FLOW_NW_FRAG_ANY),
    ("not_later", FLOW_NW_FRAG_LATER, 0),
    ("later", FLOW_NW_FRAG_LATER, FLOW_NW_FRAG_LATER),
];

/// The `nw_frag` name for a value under a mask, if there is one.
pub(crate) fn frag_name(value: u8, mask: u8) -> Option<&'static str> {
    let mask = mask & FLOW_NW_FRAG_MASK;
    FRAGS
        .iter()
        .find(|(_, m, v)| *m == mask && *v == value & mask)
        .map(|(name, _, _)| *name)
}

/// What a rule's error says was expected for a field of this syntax.
pub(crate) fn expected_for(f: &FieldInfo) -> &'static str {
    match f.syntax {
        Syntax::Decimal | Syntax::Hex if f.maskable => {
            "an integer (decimal or 0x hex), optionally /mask"
        }
        Syntax::Decimal | Syntax::Hex => "an integer (decimal or 0x hex)",
        Syntax::Ethernet => "a MAC address, optionally /mask",
        Syntax::Ipv4 => "an IPv4 address or prefix",
        Syntax::Ipv6 => "an IPv6 address or prefix",
        Syntax::Port => "a port number or name (LOCAL, IN_PORT, CONTROLLER, ...)",
        Syntax::Frag => "no, yes, first, later or not_later",
        Syntax::TcpFlags => "TCP flags (syn|ack, +syn-ack or 0xVAL/0xMASK)",
        Syntax::CtState => "conntrack state flags (+trk-new or 0xVAL/0xMASK)",
        Syntax::TunFlags => "tunnel flags (oam, +oam, -oam or 0xVAL/0xMASK)",
    }
}

/// The all-ones mask of a field's parsed values: ports are parsed as
/// 32-bit OpenFlow 1.1 numbers, everything else at OVS's byte width.
pub(crate) fn exact_mask(f: &FieldInfo) -> u128 {
    match f.syntax {
        Syntax::Port => u128::from(u32::MAX),
        // Only the eight named states exist (OVS keeps 8 bits of the mask).
        Syntax::CtState => 0xff,
        Syntax::TunFlags => 0x1,
        _ => f.byte_mask(),
    }
}

fn parse_int_masked(f: &FieldInfo, s: &str) -> Result<(u128, u128), String> {
    let width = u32::from(f.n_bytes) * 8;
    let fail = |e: IntError, part: &str| match e {
        IntError::TooLarge => format!(
            "{s}: {part} too large for {}-byte field {}",
            f.n_bytes, f.name
        ),
        IntError::Syntax => format!("{s}: bad syntax for {} {part}", f.name),
    };
    let (value, n) = scan_uint(s, width).map_err(|e| fail(e, "value"))?;
    match &s[n..] {
        "" => Ok((value, f.byte_mask())),
        rest if rest.starts_with('/') => {
            let m = &rest[1..];
            match scan_uint(m, width) {
                Ok((mask, used)) if used == m.len() => Ok((value, mask)),
                Ok(_) => Err(fail(IntError::Syntax, "mask")),
                Err(e) => Err(fail(e, "mask")),
            }
        }
        _ => Err(fail(IntError::Syntax, "value")),
    }
}

/// Parses `s` as a value of field `f`, optionally masked, as OVS's
/// `mf_parse` does; `*` is the all-wildcard. The result is right-aligned;
/// an exact value's mask is [`exact_mask`].
pub(crate) fn parse_field_value(f: &FieldInfo, s: &str) -> Result<(u128, u128), BadValue> {
    let expected = expected_for(f);
    if s == "*" {
        return Ok((0, 0));
    }
    let parsed = match f.syntax {
        Syntax::Decimal | Syntax::Hex => parse_int_masked(f, s),
        Syntax::Ethernet => parse_mac_masked(s),
        Syntax::Ipv4 => parse_ipv4_masked(s).map(|(a, m)| (u128::from(a), u128::from(m))),
        Syntax::Ipv6 => parse_ipv6_masked(s),
        Syntax::Port => match parse_port(s) {
            Some(p) => Ok((u128::from(p), u128::from(u32::MAX))),
            None if f.n_bytes == 2 => Err(format!("{s}: invalid or unknown port for {}", f.name)),
            None => Err(format!("{s}: port value out of range for {}", f.name)),
        },
        Syntax::Frag => FRAGS
            .iter()
            .find(|(name, _, _)| name.eq_ignore_ascii_case(s))
            .map(|&(_, m, v)| (u128::from(v), u128::from(m | !FLOW_NW_FRAG_MASK)))
            .ok_or_else(|| {
                format!(
                    "{s}: unknown fragment type (valid types are \"no\", \"yes\", \"first\", \"later\", \"not_first\""
                )
            }),
        Syntax::TcpFlags => parse_flags(s, TCP_FLAG_NAMES, 0x0fff, "TCP")
            .map(|(v, m)| (u128::from(v), u128::from(m & 0xffff))),
        // Only the eight named states exist: an exact match covers them.
        Syntax::CtState => parse_flags(s, CT_STATE_NAMES, 0xff, "ct_state")
            .map(|(v, m)| (u128::from(v), u128::from(m & 0xff))),
        Syntax::TunFlags => parse_flags(s, TUN_FLAG_NAMES, 0x1, "tun_flags")
            .map(|(v, m)| (u128::from(v), u128::from(m & 0x1))),
    };
    let (value, mask) = parsed.map_err(|e| BadValue::new(e, expected))?;
    let full = exact_mask(f);
    if !f.maskable && mask != 0 && mask != full {
        return Err(BadValue::new(
            format!("{s}: invalid mask for field {}", f.name),
            "no mask: the field cannot be masked",
        ));
    }
    Ok((value, mask))
}

fn parse_mac_masked(s: &str) -> Result<(u128, u128), String> {
    let invalid = || format!("{s}: invalid Ethernet address");
    let (mac, n) = scan_mac(s).ok_or_else(invalid)?;
    let mask = match &s[n..] {
        "" => [0xff; 6],
        rest => rest
            .strip_prefix('/')
            .and_then(parse_mac)
            .ok_or_else(invalid)?,
    };
    Ok((mac_u128(mac), mac_u128(mask)))
}

/// A MAC as a right-aligned integer.
pub(crate) fn mac_u128(mac: [u8; 6]) -> u128 {
    mac.iter().fold(0, |acc, b| (acc << 8) | u128::from(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::field::by_name;

    fn items(s: &str) -> Vec<(&str, &str)> {
        key_values(s, 0).map(|kv| (kv.key, kv.value)).collect()
    }

    #[test]
    fn splits_like_ovs() {
        assert_eq!(
            items("table=0, priority=5,tcp actions=output:2,resubmit(,3),drop"),
            vec![
                ("table", "0"),
                ("priority", "5"),
                ("tcp", ""),
                ("actions", "output:2"),
                ("resubmit", ",3"),
                ("drop", "")
            ]
        );
        assert_eq!(
            items("output:2,resubmit(,3),write_actions(output(port=1,max_len=5)),drop"),
            vec![
                ("output", "2"),
                ("resubmit", ",3"),
                ("write_actions", "output(port=1,max_len=5)"),
                ("drop", "")
            ]
        );
        let kv: Vec<_> = key_values("a=1, bb=22", 10).collect();
        assert_eq!((kv[1].key_at, kv[1].value_at), (15, 18));
    }

    #[test]
    fn integers_follow_strtoull() {
        assert_eq!(parse_uint("0x1f", 16), Some(0x1f));
        assert_eq!(parse_uint("017", 16), Some(15));
        assert_eq!(parse_uint("0", 16), Some(0));
        assert_eq!(parse_uint("08", 16), None);
        assert_eq!(parse_uint("65536", 16), None);
        assert_eq!(
            scan_uint("99999999999999999999999999999999999999999", 64),
            Err(IntError::TooLarge)
        );
    }

    #[test]
    fn addresses() {
        assert_eq!(
            parse_ipv4_masked("10.0.0.0/8"),
            Ok((0x0a00_0000, 0xff00_0000))
        );
        assert_eq!(
            parse_ipv4_masked("10.1.2.3/255.255.0.255"),
            Ok((0x0a01_0203, 0xffff_00ff))
        );
        assert!(parse_ipv4_masked("10.0.0.300").is_err());
        assert_eq!(
            parse_ipv4_masked("1.2.3.4/33").unwrap_err(),
            "1.2.3.4/33: IPv4 network prefix bits not between 0 and 32, inclusive"
        );
        assert_eq!(
            parse_ipv6_masked("2001:db8::/2dff:ffff::"),
            Ok((0x2001_0db8 << 96, 0x2dff_ffff << 96))
        );
        let (a, m) = parse_ipv6_masked("2001:db8::/32").unwrap();
        assert_eq!(a, 0x2001_0db8 << 96);
        assert_eq!(m, u128::MAX << 96);
        assert_eq!(parse_mac("0a:0:ff:1:2:3"), Some([0x0a, 0, 0xff, 1, 2, 3]));
        assert_eq!(parse_mac("0a:0:ff:1:2"), None);
    }

    #[test]
    fn ports_map_to_openflow_1_1_numbers() {
        assert_eq!(parse_port("7"), Some(7));
        assert_eq!(parse_port("in_port"), Some(port::IN_PORT));
        assert_eq!(parse_port("65534"), Some(port::LOCAL));
        assert_eq!(parse_port("70000"), None);
        assert_eq!(format_port(port::CONTROLLER), "CONTROLLER");
        assert_eq!(format_port(12), "12");
    }

    #[test]
    fn flags_in_all_three_forms() {
        let tcp = |s| parse_flags(s, TCP_FLAG_NAMES, 0xfff, "TCP");
        assert_eq!(tcp("+syn-ack"), Ok((0x002, 0x012)));
        assert_eq!(tcp("0x010/0x010"), Ok((0x010, 0x010)));
        assert_eq!(tcp("syn|ack"), Ok((0x012, u32::MAX)));
        assert_eq!(tcp("0x012"), Ok((0x012, u32::MAX)));
        assert_eq!(
            tcp("+syn+syn").unwrap_err(),
            "syn: Each TCP flag can be specified only once"
        );
        assert_eq!(tcp("+bogus").unwrap_err(), "+bogus: unknown TCP flag(s)");
    }

    #[test]
    fn field_values_with_ovs_messages() {
        let f = |n| by_name(n).unwrap();
        assert_eq!(
            parse_field_value(f("tp_dst"), "0x8400/0xff00"),
            Ok((0x8400, 0xff00))
        );
        assert_eq!(
            parse_field_value(f("nw_proto"), "6/0xf").unwrap_err().ovs,
            "6/0xf: invalid mask for field nw_proto"
        );
        assert_eq!(
            parse_field_value(f("tp_dst"), "70000").unwrap_err().ovs,
            "70000: value too large for 2-byte field tcp_dst"
        );
        assert_eq!(
            parse_field_value(f("tp_dst"), "8x").unwrap_err().ovs,
            "8x: bad syntax for tcp_dst value"
        );
        assert_eq!(parse_field_value(f("nw_frag"), "first"), Ok((1, 0xff)));
        assert_eq!(parse_field_value(f("nw_frag"), "yes"), Ok((1, 0xfd)));
        assert_eq!(
            parse_field_value(f("in_port"), "LOCAL"),
            Ok((u128::from(port::LOCAL), u128::from(u32::MAX)))
        );
        assert_eq!(
            parse_field_value(f("dl_dst"), "01:00:00:00:00:00/01:00:00:00:00:00"),
            Ok((1 << 40, 1 << 40))
        );
    }
}
