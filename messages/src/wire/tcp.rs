//! TCP headers (RFC 9293).

use super::{check_len, checksum, get_u16, get_u32, put_u16, put_u32, WireError};

/// Length of a header without options.
pub const MIN_HEADER_LEN: usize = 20;
/// The 12 flag bits of the data-offset/flags word (NS..FIN and the three
/// reserved bits), as OVS's `tcp_flags` keeps them.
pub const FLAGS_MASK: u16 = 0x0fff;
pub const FLAG_FIN: u16 = 0x001;
pub const FLAG_SYN: u16 = 0x002;
pub const FLAG_RST: u16 = 0x004;
pub const FLAG_PSH: u16 = 0x008;
pub const FLAG_ACK: u16 = 0x010;

/// A TCP segment. The view covers the segment to the end of the buffer, so
/// give it exactly the IP payload when checksums matter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    /// Views `buffer` as TCP: the 20-byte fixed header must be present. The
    /// data offset is not checked (OVS reads ports and flags of any segment
    /// with 20 bytes); [`header_len`](Self::header_len) reports it.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("tcp", buffer.as_ref(), MIN_HEADER_LEN)?;
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

    pub fn seq(&self) -> u32 {
        get_u32(self.b(), 4)
    }

    pub fn ack(&self) -> u32 {
        get_u32(self.b(), 8)
    }

    /// Header length in bytes from the data offset (may be below 20 or past
    /// the buffer in a malformed segment).
    pub fn header_len(&self) -> usize {
        usize::from(get_u16(self.b(), 12) >> 12) * 4
    }

    /// The 12 flag bits.
    pub fn flags(&self) -> u16 {
        get_u16(self.b(), 12) & FLAGS_MASK
    }

    pub fn window(&self) -> u16 {
        get_u16(self.b(), 14)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), 16)
    }

    pub fn urgent(&self) -> u16 {
        get_u16(self.b(), 18)
    }

    /// The data after the header (empty if the data offset is bad).
    pub fn payload(&self) -> &[u8] {
        let start = self.header_len().max(MIN_HEADER_LEN);
        self.b().get(start..).unwrap_or(&[])
    }

    /// True if the checksum is right, given the pseudo-header sum.
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        checksum::verify(pseudo, self.b())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    fn set_checksum(&mut self, csum: u16) {
        put_u16(self.b_mut(), 16, csum);
    }

    /// Sets the source port, updating the checksum.
    pub fn set_src_port(&mut self, port: u16) {
        let csum = checksum::update_u16(self.checksum(), self.src_port(), port);
        put_u16(self.b_mut(), 0, port);
        self.set_checksum(csum);
    }

    /// Sets the destination port, updating the checksum.
    pub fn set_dst_port(&mut self, port: u16) {
        let csum = checksum::update_u16(self.checksum(), self.dst_port(), port);
        put_u16(self.b_mut(), 2, port);
        self.set_checksum(csum);
    }

    /// Updates the checksum for pseudo-header bytes (an address) that
    /// changed from `old` to `new`.
    pub fn adjust_checksum(&mut self, old: &[u8], new: &[u8]) {
        let csum = checksum::update(self.checksum(), old, new);
        self.set_checksum(csum);
    }

    /// Recomputes the checksum over the whole buffer and the pseudo-header.
    pub fn fill_checksum(&mut self, pseudo: u16) {
        self.set_checksum(0);
        let csum = !checksum::combine(pseudo, checksum::ones_sum(self.b()));
        self.set_checksum(csum);
    }
}

/// The fields [`emit`] writes into an option-less TCP header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpHeader {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    pub flags: u16,
    pub window: u16,
}

/// Writes `h` as a 20-byte header (checksum 0) into the start of `buf`.
pub fn emit(buf: &mut [u8], h: &TcpHeader) {
    put_u16(buf, 0, h.src_port);
    put_u16(buf, 2, h.dst_port);
    put_u32(buf, 4, h.seq);
    put_u32(buf, 8, h.ack);
    put_u16(buf, 12, (5 << 12) | (h.flags & FLAGS_MASK));
    put_u16(buf, 14, h.window);
    put_u32(buf, 16, 0);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segment(pseudo: u16) -> Vec<u8> {
        let mut b = vec![0u8; 24];
        emit(
            &mut b,
            &TcpHeader {
                src_port: 1234,
                dst_port: 80,
                seq: 1,
                ack: 2,
                flags: FLAG_SYN | FLAG_ACK,
                window: 1000,
            },
        );
        b[20..].copy_from_slice(b"data");
        TcpPacket::new_checked(&mut b[..])
            .unwrap()
            .fill_checksum(pseudo);
        b
    }

    #[test]
    fn fields() {
        let b = segment(0);
        let t = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((t.src_port(), t.dst_port()), (1234, 80));
        assert_eq!((t.seq(), t.ack(), t.window(), t.urgent()), (1, 2, 1000, 0));
        assert_eq!(t.header_len(), 20);
        assert_eq!(t.flags(), FLAG_SYN | FLAG_ACK);
        assert_eq!(t.payload(), b"data");
        assert!(t.verify_checksum(0));
        assert!(TcpPacket::new_checked(&b[..19]).is_err());
    }

    #[test]
    fn port_and_pseudo_header_updates_keep_the_checksum() {
        let old = crate::wire::checksum::pseudo_header_v4(0x0a00_0001, 0x0a00_0002, 6, 24);
        let mut b = segment(old);
        let mut t = TcpPacket::new_checked(&mut b[..]).unwrap();
        t.set_src_port(4321);
        t.set_dst_port(8080);
        assert!(t.verify_checksum(old));
        t.adjust_checksum(&0x0a00_0001u32.to_be_bytes(), &0xc0a8_0001u32.to_be_bytes());
        let new = crate::wire::checksum::pseudo_header_v4(0xc0a8_0001, 0x0a00_0002, 6, 24);
        assert!(t.verify_checksum(new));
        assert!(!t.verify_checksum(old));
    }
}
