//! SCTP common headers (RFC 9260) and their CRC32c checksum.

use super::{check_len, get_array, get_u16, get_u32, put_bytes, put_u16, put_u32, WireError};

pub const HEADER_LEN: usize = 12;

/// CRC32c (Castagnoli, reflected polynomial 0x82f63b78) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    const TABLE: [u32; 256] = {
        let mut table = [0u32; 256];
        let mut i = 0;
        while i < 256 {
            let mut crc = i as u32;
            let mut bit = 0;
            while bit < 8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0x82f6_3b78
                } else {
                    crc >> 1
                };
                bit += 1;
            }
            table[i] = crc;
            i += 1;
        }
        table
    };
    !data.iter().fold(!0u32, |crc, &byte| {
        TABLE[usize::from((crc as u8) ^ byte)] ^ (crc >> 8)
    })
}

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

    /// The CRC32c the checksum field should hold.
    pub fn compute_checksum(&self) -> u32 {
        let b = self.b();
        let head = b.get(..8).unwrap_or(&[]);
        let tail = b.get(HEADER_LEN..).unwrap_or(&[]);
        let mut zeroed = Vec::with_capacity(b.len());
        zeroed.extend_from_slice(head);
        zeroed.extend_from_slice(&[0; 4]);
        zeroed.extend_from_slice(tail);
        crc32c(&zeroed)
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

    #[test]
    fn crc32c_check_value() {
        assert_eq!(crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(crc32c(b""), 0);
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
