//! Reading netlink attribute payloads without trusting them: every length
//! is checked and a mismatch is an error naming the attribute.

use netlink_packet_core::{
    parse_string, parse_u16, parse_u16_be, parse_u32, parse_u64, parse_u8, DecodeError,
    ErrorContext, NlaBuffer, NlasIterator, Parseable,
};

/// Parses every attribute of `buf` as `A`; `what` names the list in errors.
pub(crate) fn parse_list<A>(buf: &[u8], what: &str) -> Result<Vec<A>, DecodeError>
where
    A: for<'a> Parseable<NlaBuffer<&'a [u8]>>,
{
    let mut out = Vec::new();
    for nla in NlasIterator::new(buf) {
        let nla =
            nla.map_err(|e| DecodeError::from(format!("{what}: malformed attribute: {e}")))?;
        out.push(A::parse(&nla).map_err(|e| DecodeError::from(format!("{what}: {e}")))?);
    }
    Ok(out)
}

/// The payload as exactly `N` bytes.
pub(crate) fn fixed<const N: usize>(v: &[u8], what: &str) -> Result<[u8; N], DecodeError> {
    v.try_into().map_err(|_| {
        DecodeError::from(format!(
            "{what}: payload is {} bytes, expected {N}",
            v.len()
        ))
    })
}

// Scalars are netlink-packet-core's parsers; `what` (the attribute) is
// added as context to their errors.

pub(crate) fn u8_of(v: &[u8], what: &str) -> Result<u8, DecodeError> {
    parse_u8(v).context(what)
}

/// A native-endian u16 (netlink's own integers).
pub(crate) fn u16_ne(v: &[u8], what: &str) -> Result<u16, DecodeError> {
    parse_u16(v).context(what)
}

/// A big-endian (network order) u16.
pub(crate) fn u16_be(v: &[u8], what: &str) -> Result<u16, DecodeError> {
    parse_u16_be(v).context(what)
}

pub(crate) fn u32_ne(v: &[u8], what: &str) -> Result<u32, DecodeError> {
    parse_u32(v).context(what)
}

pub(crate) fn u64_ne(v: &[u8], what: &str) -> Result<u64, DecodeError> {
    parse_u64(v).context(what)
}

/// A list of native-endian u32s (e.g. upcall PIDs).
pub(crate) fn u32_list(v: &[u8], what: &str) -> Result<Vec<u32>, DecodeError> {
    if !v.len().is_multiple_of(4) {
        return Err(DecodeError::from(format!(
            "{what}: payload is {} bytes, not a multiple of 4",
            v.len()
        )));
    }
    Ok(v.chunks_exact(4)
        .map(|c| u32::from_ne_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// A NUL-terminated (or unterminated) UTF-8 string.
pub(crate) fn string(v: &[u8], what: &str) -> Result<String, DecodeError> {
    parse_string(v).context(what)
}

/// Writes `s` NUL-terminated into `buf` (which is `s.len() + 1` bytes).
pub(crate) fn emit_string(s: &str, buf: &mut [u8]) {
    buf[..s.len()].copy_from_slice(s.as_bytes());
    buf[s.len()] = 0;
}

/// Writes `v` as native-endian u32s.
pub(crate) fn emit_u32_list(v: &[u32], buf: &mut [u8]) {
    for (chunk, x) in buf.chunks_exact_mut(4).zip(v) {
        chunk.copy_from_slice(&x.to_ne_bytes());
    }
}
