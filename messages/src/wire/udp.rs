//! UDP headers (RFC 768).
//!
//! A checksum of 0 means "no checksum" (allowed over IPv4): updates leave
//! it 0, and a computed checksum of 0 is sent as 0xffff.

use super::{check_len, checksum, get_u16, put_u16, WireError};

pub const HEADER_LEN: usize = 8;

/// A UDP datagram. The view covers the datagram to the end of the buffer,
/// so give it exactly the IP payload when checksums matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    /// Views `buffer` as UDP: the 8-byte header must be present. The length
    /// field is not checked; [`len`](Self::len) reports it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("udp", buffer.as_ref(), HEADER_LEN)?;
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

    /// The length field: header plus data.
    pub fn len(&self) -> u16 {
        get_u16(self.b(), 4)
    }

    /// True if the length field is 0 (it is never valid).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// True if the checksum is absent (0) or right, given the pseudo-header
    /// sum.
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        self.checksum() == 0 || checksum::verify(pseudo, self.b())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Applies an incremental update unless the checksum is absent.
    fn update_checksum(&mut self, old: &[u8], new: &[u8]) {
        let csum = self.checksum();
        if csum != 0 {
            let csum = match checksum::update(csum, old, new) {
                0 => 0xffff,
                c => c,
            };
            put_u16(self.b_mut(), 6, csum);
        }
    }

    /// Sets the source port, updating a present checksum.
    pub fn set_src_port(&mut self, port: u16) {
        let old = self.src_port();
        self.update_checksum(&old.to_be_bytes(), &port.to_be_bytes());
        put_u16(self.b_mut(), 0, port);
    }

    /// Sets the destination port, updating a present checksum.
    pub fn set_dst_port(&mut self, port: u16) {
        let old = self.dst_port();
        self.update_checksum(&old.to_be_bytes(), &port.to_be_bytes());
        put_u16(self.b_mut(), 2, port);
    }

    /// Updates a present checksum for pseudo-header bytes (an address) that
    /// changed from `old` to `new`.
    pub fn adjust_checksum(&mut self, old: &[u8], new: &[u8]) {
        self.update_checksum(old, new);
    }

    /// Recomputes the checksum over the whole buffer and the pseudo-header.
    pub fn fill_checksum(&mut self, pseudo: u16) {
        put_u16(self.b_mut(), 6, 0);
        let csum = match !checksum::combine(pseudo, checksum::ones_sum(self.b())) {
            0 => 0xffff,
            c => c,
        };
        put_u16(self.b_mut(), 6, csum);
    }
}

/// Writes a UDP header (checksum 0) into the start of `buf`.
pub fn emit(buf: &mut [u8], src_port: u16, dst_port: u16, len: u16) {
    put_u16(buf, 0, src_port);
    put_u16(buf, 2, dst_port);
    put_u16(buf, 4, len);
    put_u16(buf, 6, 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::pseudo_header_v4;

    fn datagram() -> Vec<u8> {
        let mut b = vec![0u8; 11];
        emit(&mut b, 53, 5353, 11);
        b[8..].copy_from_slice(b"abc");
        b
    }

    #[test]
    fn fields_and_checksum() {
        let pseudo = pseudo_header_v4(1, 2, 17, 11);
        let mut b = datagram();
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!((u.src_port(), u.dst_port(), u.len()), (53, 5353, 11));
        assert_eq!(u.payload(), b"abc");
        u.fill_checksum(pseudo);
        assert_ne!(u.checksum(), 0);
        assert!(u.verify_checksum(pseudo));
        u.set_src_port(1);
        u.set_dst_port(65535);
        assert!(u.verify_checksum(pseudo));
        u.adjust_checksum(&1u32.to_be_bytes(), &7u32.to_be_bytes());
        assert!(u.verify_checksum(pseudo_header_v4(7, 2, 17, 11)));
        assert!(UdpPacket::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn absent_checksum_stays_absent() {
        let mut b = datagram();
        let mut u = UdpPacket::new_checked(&mut b[..]).unwrap();
        u.set_src_port(9999);
        u.adjust_checksum(&[0, 0, 0, 1], &[1, 2, 3, 4]);
        assert_eq!(u.checksum(), 0);
        assert_eq!(u.src_port(), 9999);
    }

    #[test]
    fn a_zero_result_is_sent_as_all_ones() {
        // Choose a pseudo-header sum that makes the data sum to 0xffff, so
        // the computed checksum is 0.
        let b = datagram();
        let data_sum = checksum::ones_sum(&b);
        let pseudo = !data_sum;
        let mut b2 = b.clone();
        let mut u = UdpPacket::new_checked(&mut b2[..]).unwrap();
        u.fill_checksum(pseudo);
        assert_eq!(u.checksum(), 0xffff);
        assert!(u.verify_checksum(pseudo));
    }
}
