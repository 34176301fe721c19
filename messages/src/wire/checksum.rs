//! The Internet checksum (RFC 1071), its pseudo-headers, and its
//! incremental update (RFC 1624).
//!
//! Sums here are folded 16-bit ones' complement sums; a checksum field holds
//! the complement of the sum of the data it covers (with the field zero), so
//! data with a correct checksum field sums to `0xffff`.

/// Ones' complement sum of `data` read as big-endian 16-bit words; an odd
/// last byte is padded with a zero byte.
pub fn ones_sum(data: &[u8]) -> u16 {
    let mut acc: u64 = 0;
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        acc += u64::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        acc += u64::from(*last) << 8;
    }
    fold(acc)
}

/// Ones' complement addition of two folded sums.
pub fn combine(a: u16, b: u16) -> u16 {
    fold(u64::from(a) + u64::from(b))
}

fn fold(mut acc: u64) -> u16 {
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// The checksum to store for `data` (computed with its checksum field zero).
pub fn internet(data: &[u8]) -> u16 {
    !ones_sum(data)
}

/// Sum of the IPv4 pseudo-header for an upper-layer segment of `len` bytes.
pub fn pseudo_header_v4(src: u32, dst: u32, proto: u8, len: u16) -> u16 {
    let mut acc = u64::from(src >> 16) + u64::from(src & 0xffff);
    acc += u64::from(dst >> 16) + u64::from(dst & 0xffff);
    acc += u64::from(proto) + u64::from(len);
    fold(acc)
}

/// Sum of the IPv6 pseudo-header (RFC 8200 §8.1) for an upper-layer packet
/// of `len` bytes.
pub fn pseudo_header_v6(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: u32) -> u16 {
    let addrs = combine(ones_sum(src), ones_sum(dst));
    let rest = fold(u64::from(len >> 16) + u64::from(len & 0xffff) + u64::from(proto));
    combine(addrs, rest)
}

/// Updates checksum `csum` for covered bytes that changed from `old` to
/// `new` (RFC 1624, eqn. 3). Both must have the same, even length and start
/// on a 16-bit boundary of the checksummed data.
pub fn update(csum: u16, old: &[u8], new: &[u8]) -> u16 {
    !combine(combine(!csum, !ones_sum(old)), ones_sum(new))
}

/// [`update`] for one 16-bit word.
pub fn update_u16(csum: u16, old: u16, new: u16) -> u16 {
    update(csum, &old.to_be_bytes(), &new.to_be_bytes())
}

/// [`update`] for one 32-bit word.
pub fn update_u32(csum: u16, old: u32, new: u32) -> u16 {
    update(csum, &old.to_be_bytes(), &new.to_be_bytes())
}

/// True if `data`, checksum field included, plus the pseudo-header sum
/// `pseudo` (0 for none) sums to all ones.
pub fn verify(pseudo: u16, data: &[u8]) -> bool {
    combine(pseudo, ones_sum(data)) == 0xffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc1071_example_sum() {
        // RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(ones_sum(&data), 0xddf2);
        assert_eq!(internet(&data), !0xddf2);
    }

    #[test]
    fn odd_length_is_padded_with_zero() {
        assert_eq!(ones_sum(&[0x12, 0x34, 0x56]), 0x1234 + 0x5600);
    }

    #[test]
    fn incremental_update_equals_recomputation() {
        let mut data = [
            0x45u8, 0x00, 0x00, 0x54, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0, 0, 0xac, 0x10, 0x0a,
            0x63, 0xac, 0x10, 0x0a, 0x0c,
        ];
        let c = internet(&data);
        data[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify(0, &data));
        let old: [u8; 4] = data[12..16].try_into().unwrap();
        let new = [10, 0, 0, 1];
        data[12..16].copy_from_slice(&new);
        let updated = update(c, &old, &new);
        data[10..12].copy_from_slice(&updated.to_be_bytes());
        assert!(verify(0, &data));
        data[10..12].copy_from_slice(&[0, 0]);
        let fresh = internet(&data);
        // Both are valid encodings of the same sum (0 and 0xffff are the
        // same in ones' complement, but only the sum is compared here).
        assert_eq!(fresh, updated);
    }

    #[test]
    fn pseudo_headers_match_manual_sums() {
        let p = pseudo_header_v4(0x0a00_0001, 0x0a00_0002, 6, 20);
        assert_eq!(p, fold(0x0a00 + 1 + 0x0a00 + 2 + 6 + 20));
        let mut src = [0u8; 16];
        src[0] = 0xfe;
        src[1] = 0x80;
        src[15] = 1;
        let dst = [0xffu8; 16];
        let p6 = pseudo_header_v6(&src, &dst, 58, 32);
        let mut manual = Vec::new();
        manual.extend_from_slice(&src);
        manual.extend_from_slice(&dst);
        manual.extend_from_slice(&32u32.to_be_bytes());
        manual.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(p6, ones_sum(&manual));
    }
}
