//! IPv4 headers (RFC 791).

use super::WireError;
use super::{check_len, checksum, get_u16, get_u32, get_u8, put_u16, put_u32, put_u8};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// "More fragments" flag in the flags/fragment-offset word.
pub const FLAG_MF: u16 = 0x2000;
/// "Don't fragment" flag in the flags/fragment-offset word.
pub const FLAG_DF: u16 = 0x4000;
/// Fragment offset bits (in 8-byte units) of the flags/fragment-offset word.
pub const FRAG_OFFSET_MASK: u16 = 0x1fff;

const HEADER: &str = "ipv4";

/// An IPv4 packet: header, options, and the payload up to the total length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    /// Views `buffer` as IPv4. Checks what OVS checks before trusting a
    /// header: 20 bytes present, IHL at least 5 and within the buffer, and a
    /// total length that covers the header and fits in the buffer (bytes past
    /// it are link-layer padding). The version nibble is not checked, as OVS
    /// does not check it either; see [`version`](Self::version).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_len(HEADER, b, MIN_HEADER_LEN)?;
        let ihl = get_u8(b, 0) & 0x0f;
        if ihl < 5 {
            return Err(WireError::BadField {
                header: HEADER,
                field: "ihl",
                value: ihl.into(),
                reason: "shorter than the 5 words of the fixed header",
            });
        }
        let header_len = usize::from(ihl) * 4;
        check_len(HEADER, b, header_len)?;
        let total_len = get_u16(b, 2);
        if usize::from(total_len) < header_len {
            return Err(WireError::BadField {
                header: HEADER,
                field: "total length",
                value: total_len.into(),
                reason: "shorter than the header",
            });
        }
        check_len(HEADER, b, total_len.into())?;
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        get_u8(self.b(), 0) >> 4
    }

    /// Header length in bytes, options included.
    pub fn header_len(&self) -> usize {
        usize::from(get_u8(self.b(), 0) & 0x0f) * 4
    }

    /// The whole TOS byte (DSCP and ECN).
    pub fn tos(&self) -> u8 {
        get_u8(self.b(), 1)
    }

    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    pub fn total_len(&self) -> u16 {
        get_u16(self.b(), 2)
    }

    pub fn ident(&self) -> u16 {
        get_u16(self.b(), 4)
    }

    /// The flags and fragment offset word.
    pub fn frag_word(&self) -> u16 {
        get_u16(self.b(), 6)
    }

    pub fn dont_frag(&self) -> bool {
        self.frag_word() & FLAG_DF != 0
    }

    pub fn more_frags(&self) -> bool {
        self.frag_word() & FLAG_MF != 0
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.frag_word() & FRAG_OFFSET_MASK
    }

    /// True for any fragment: more fragments follow, or the offset is not 0.
    pub fn is_fragment(&self) -> bool {
        self.frag_word() & (FLAG_MF | FRAG_OFFSET_MASK) != 0
    }

    pub fn ttl(&self) -> u8 {
        get_u8(self.b(), 8)
    }

    pub fn protocol(&self) -> u8 {
        get_u8(self.b(), 9)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), 10)
    }

    pub fn src(&self) -> u32 {
        get_u32(self.b(), 12)
    }

    pub fn dst(&self) -> u32 {
        get_u32(self.b(), 16)
    }

    pub fn options(&self) -> &[u8] {
        self.b()
            .get(MIN_HEADER_LEN..self.header_len())
            .unwrap_or(&[])
    }

    /// The payload: from the end of the header to the total length.
    pub fn payload(&self) -> &[u8] {
        self.b()
            .get(self.header_len()..usize::from(self.total_len()))
            .unwrap_or(&[])
    }

    /// True if the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        self.b()
            .get(..self.header_len())
            .is_some_and(|h| checksum::verify(0, h))
    }

    /// Sum of the pseudo-header for this packet's payload.
    pub fn pseudo_header(&self) -> u16 {
        let len = self.total_len().saturating_sub(self.header_len() as u16);
        checksum::pseudo_header_v4(self.src(), self.dst(), self.protocol(), len)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_checksum(&mut self, csum: u16) {
        put_u16(self.b_mut(), 10, csum);
    }

    /// Sets the source address, updating the header checksum. The caller
    /// updates upper-layer checksums that cover the pseudo-header.
    pub fn set_src(&mut self, addr: u32) {
        let csum = checksum::update_u32(self.checksum(), self.src(), addr);
        put_u32(self.b_mut(), 12, addr);
        self.set_checksum(csum);
    }

    /// Sets the destination address, updating the header checksum. The
    /// caller updates upper-layer checksums that cover the pseudo-header.
    pub fn set_dst(&mut self, addr: u32) {
        let csum = checksum::update_u32(self.checksum(), self.dst(), addr);
        put_u32(self.b_mut(), 16, addr);
        self.set_checksum(csum);
    }

    /// Sets the whole TOS byte, updating the header checksum.
    pub fn set_tos(&mut self, tos: u8) {
        let old = get_u16(self.b(), 0);
        let new = (old & 0xff00) | u16::from(tos);
        let csum = checksum::update_u16(self.checksum(), old, new);
        put_u8(self.b_mut(), 1, tos);
        self.set_checksum(csum);
    }

    /// Sets the TTL, updating the header checksum.
    pub fn set_ttl(&mut self, ttl: u8) {
        let old = get_u16(self.b(), 8);
        let new = (u16::from(ttl) << 8) | (old & 0x00ff);
        let csum = checksum::update_u16(self.checksum(), old, new);
        put_u8(self.b_mut(), 8, ttl);
        self.set_checksum(csum);
    }

    /// Recomputes the header checksum from scratch.
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let len = self.header_len();
        let csum = self.b().get(..len).map_or(0, checksum::internet);
        self.set_checksum(csum);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (start, end) = (self.header_len(), usize::from(self.total_len()));
        self.b_mut().get_mut(start..end).unwrap_or(&mut [])
    }
}

/// The fields [`emit`] writes into an option-less IPv4 header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv4Header {
    pub tos: u8,
    pub total_len: u16,
    pub ident: u16,
    pub frag_word: u16,
    pub ttl: u8,
    pub protocol: u8,
    pub src: u32,
    pub dst: u32,
}

/// Writes `h` as a 20-byte header with a correct checksum into the start of
/// `buf`.
pub fn emit(buf: &mut [u8], h: &Ipv4Header) {
    put_u8(buf, 0, 0x45);
    put_u8(buf, 1, h.tos);
    put_u16(buf, 2, h.total_len);
    put_u16(buf, 4, h.ident);
    put_u16(buf, 6, h.frag_word);
    put_u8(buf, 8, h.ttl);
    put_u8(buf, 9, h.protocol);
    put_u16(buf, 10, 0);
    put_u32(buf, 12, h.src);
    put_u32(buf, 16, h.dst);
    let csum = buf.get(..MIN_HEADER_LEN).map_or(0, checksum::internet);
    put_u16(buf, 10, csum);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut b = vec![0u8; 28];
        emit(
            &mut b,
            &Ipv4Header {
                tos: 0xb8,
                total_len: 28,
                ident: 7,
                frag_word: FLAG_DF,
                ttl: 64,
                protocol: 17,
                src: 0x0a00_0001,
                dst: 0x0a00_0002,
            },
        );
        b
    }

    #[test]
    fn getters() {
        let b = sample();
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.version(), 4);
        assert_eq!(p.header_len(), 20);
        assert_eq!((p.dscp(), p.ecn()), (46, 0));
        assert_eq!(p.total_len(), 28);
        assert!(p.dont_frag() && !p.more_frags() && !p.is_fragment());
        assert_eq!(p.ttl(), 64);
        assert_eq!(p.protocol(), 17);
        assert_eq!(p.src(), 0x0a00_0001);
        assert_eq!(p.dst(), 0x0a00_0002);
        assert_eq!(p.payload().len(), 8);
        assert!(p.verify_checksum());
    }

    #[test]
    fn setters_keep_the_checksum() {
        let mut b = sample();
        let mut p = Ipv4Packet::new_checked(&mut b[..]).unwrap();
        p.set_src(0xc0a8_0101);
        p.set_dst(0xffff_ffff);
        p.set_tos(0x03);
        p.set_ttl(1);
        assert!(p.verify_checksum());
        assert_eq!(
            (p.src(), p.dst(), p.tos(), p.ttl()),
            (0xc0a8_0101, !0, 3, 1)
        );
        let incremental = p.checksum();
        p.fill_checksum();
        assert!(p.verify_checksum());
        assert_eq!(p.checksum(), incremental);
    }

    #[test]
    fn length_checks() {
        let mut b = sample();
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..19]),
            Err(WireError::Truncated { needed: 20, .. })
        ));
        b[0] = 0x44;
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::BadField {
                field: "ihl",
                value: 4,
                ..
            })
        ));
        b[0] = 0x48; // 32-byte header in a 28-byte buffer
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::Truncated { needed: 32, .. })
        ));
        b[0] = 0x45;
        b[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::BadField {
                field: "total length",
                ..
            })
        ));
        b[2..4].copy_from_slice(&29u16.to_be_bytes());
        assert!(matches!(
            Ipv4Packet::new_checked(&b[..]),
            Err(WireError::Truncated { needed: 29, .. })
        ));
    }

    #[test]
    fn fragments() {
        let mut b = sample();
        b[6..8].copy_from_slice(&FLAG_MF.to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && p.frag_offset() == 0);
        b[6..8].copy_from_slice(&100u16.to_be_bytes());
        let p = Ipv4Packet::new_checked(&b[..]).unwrap();
        assert!(p.is_fragment() && !p.more_frags() && p.frag_offset() == 100);
    }
}
