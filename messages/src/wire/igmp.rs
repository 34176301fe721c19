//! IGMP (RFC 2236 and the v1/v3 messages that share its first 8 bytes).

use super::WireError;
use super::{check_len, checksum, get_u16, get_u32, get_u8, put_u16, put_u32, put_u8};

/// Length of the IGMPv1/v2 message, and of the part of v3 messages OVS reads.
pub const HEADER_LEN: usize = 8;

/// An IGMP message. Its checksum covers the whole buffer, so give the view
/// exactly the IP payload when the checksum matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IgmpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> IgmpPacket<T> {
    /// Views `buffer` as IGMP: 8 bytes must be present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("igmp", buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 0)
    }

    /// The max response time/code byte (OVS's `igmp_code`).
    pub fn code(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 1)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// The group address.
    pub fn group(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4)
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.buffer.as_ref())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> IgmpPacket<T> {
    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        put_u16(self.buffer.as_mut(), 2, 0);
        let csum = checksum::internet(self.buffer.as_ref());
        put_u16(self.buffer.as_mut(), 2, csum);
    }
}

/// Writes an IGMP message (checksum 0) into the start of `buf`.
pub fn emit(buf: &mut [u8], msg_type: u8, code: u8, group: u32) {
    put_u8(buf, 0, msg_type);
    put_u8(buf, 1, code);
    put_u16(buf, 2, 0);
    put_u32(buf, 4, group);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_and_checksum() {
        let mut b = [0u8; 8];
        emit(&mut b, 0x16, 0, 0xe000_00fb);
        let mut g = IgmpPacket::new_checked(&mut b[..]).unwrap();
        g.fill_checksum();
        assert!(g.verify_checksum());
        assert_eq!((g.msg_type(), g.code(), g.group()), (0x16, 0, 0xe000_00fb));
        assert!(IgmpPacket::new_checked(&b[..7]).is_err());
    }
}
