//! SCTP common headers (RFC 9260) and their CRC32c checksum.

use super::{check_len, get_array, get_u16, get_u32, put_bytes, put_u16, put_u32, WireError};

pub const HEADER_LEN: usize = 12;

/// An SCTP packet: common header, then chunks to the end of the buffer
/// (give the view exactly the IP payload when the checksum matters).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SctpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> SctpPacket<T> {
    /// Views `buffer` as SCTP: the 12-byte common header must be present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("sctp", buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn src_port(&self) -> u16 {
        get_u16(self.b(), 0)
    }

    pub fn dst_port(&self) -> u16 {
        get_u16(self.b(), 2)
    }

    pub fn verification_tag(&self) -> u32 {
        get_u32(self.b(), 4)
    }

    /// The checksum field's bytes, read as a little-endian word (the CRC is
    /// sent least significant byte first).
    pub fn checksum(&self) -> u32 {
        u32::from_le_bytes(get_array(self.b(), 8))
    }

    pub fn chunks(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// The CRC32c (Castagnoli) the checksum field should hold: of the
    /// packet with that field zero.
    pub fn compute_checksum(&self) -> u32 {
        let b = self.b();
        let head = b.get(..8).unwrap_or(&[]);
        let tail = b.get(HEADER_LEN..).unwrap_or(&[]);
        let crc = crc32c::crc32c_append(crc32c::crc32c(head), &[0; 4]);
        crc32c::crc32c_append(crc, tail)
    }

    pub fn verify_checksum(&self) -> bool {
        self.checksum() == self.compute_checksum()
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> SctpPacket<T> {
    fn set_checksum(&mut self, crc: u32) {
        put_bytes(self.buffer.as_mut(), 8, &crc.to_le_bytes());
    }

    /// Writes a header word and keeps the checksum as right (or as wrong)
    /// as it was, as OVS does: a CRC cannot be updated incrementally, so the
    /// field's error against the old content carries over to the new.
    fn rewrite(&mut self, write: impl FnOnce(&mut [u8])) {
        let error = self.checksum() ^ self.compute_checksum();
        write(self.buffer.as_mut());
        let crc = self.compute_checksum() ^ error;
        self.set_checksum(crc);
    }

    pub fn set_src_port(&mut self, port: u16) {
        self.rewrite(|b| put_u16(b, 0, port));
    }

    pub fn set_dst_port(&mut self, port: u16) {
        self.rewrite(|b| put_u16(b, 2, port));
    }

    /// Recomputes the checksum from scratch.
    pub fn fill_checksum(&mut self) {
        let crc = self.compute_checksum();
        self.set_checksum(crc);
    }
}

/// Writes a common header (checksum 0) into the start of `buf`.
pub fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, verification_tag: u32) {
    put_u16(buf, 0, src_port);
    put_u16(buf, 2, dst_port);
    put_u32(buf, 4, verification_tag);
    put_u32(buf, 8, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The checksum is CRC32c (RFC 9260 appendix A), not CRC32, of the
    /// packet with its checksum field zero.
    #[test]
    fn the_checksum_is_crc32c_of_the_packet_with_the_field_zeroed() {
        let b = b"12345678abcd9";
        let s = SctpPacket::new_checked(&b[..]).unwrap();
        assert_eq!(s.compute_checksum(), crc32c::crc32c(b"12345678\0\0\0\09"));
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn ports_and_checksum() {
        let mut b = vec![0u8; 16];
        emit(&mut b, 5000, 6000, 0x1234_5678);
        b[12..].copy_from_slice(&[1, 2, 3, 4]);
        let mut s = SctpPacket::new_checked(&mut b[..]).unwrap();
        s.fill_checksum();
        assert!(s.verify_checksum());
        assert_eq!((s.src_port(), s.dst_port()), (5000, 6000));
        assert_eq!(s.verification_tag(), 0x1234_5678);
        s.set_src_port(1);
        s.set_dst_port(2);
        assert!(s.verify_checksum());
        assert_eq!((s.src_port(), s.dst_port()), (1, 2));
    }

    #[test]
    fn a_wrong_checksum_stays_exactly_as_wrong() {
        let mut b = vec![0u8; 12];
        emit(&mut b, 5000, 6000, 1);
        let mut s = SctpPacket::new_checked(&mut b[..]).unwrap();
        s.fill_checksum();
        let good = s.checksum();
        s.set_checksum(good ^ 0xff);
        s.set_dst_port(7);
        assert_eq!(s.checksum() ^ s.compute_checksum(), 0xff);
        assert!(SctpPacket::new_checked(&b[..11]).is_err());
    }
}
