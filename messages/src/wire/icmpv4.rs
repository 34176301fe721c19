//! ICMP for IPv4 (RFC 792).

use super::{check_len, checksum, get_u16, get_u8, put_bytes, put_u16, put_u8, WireError};

/// Length of the header: type, code, checksum, and 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
pub const ECHO_REPLY: u8 = 0;
pub const ECHO_REQUEST: u8 = 8;

/// An ICMP message. Its checksum covers the whole buffer, so give the view
/// exactly the IP payload when the checksum matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    /// Views `buffer` as ICMP: the 8-byte header must be present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("icmp", buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn msg_type(&self) -> u8 {
        get_u8(self.b(), 0)
    }

    pub fn code(&self) -> u8 {
        get_u8(self.b(), 1)
    }

    pub fn checksum(&self) -> u16 {
        get_u16(self.b(), 2)
    }

    /// The 4 bytes after the checksum (identifier and sequence of echoes).
    pub fn rest_of_header(&self) -> [u8; 4] {
        super::get_array(self.b(), 4)
    }

    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or(&[])
    }

    pub fn verify_checksum(&self) -> bool {
        checksum::verify(0, self.b())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv4Packet<T> {
    fn set_type_code(&mut self, msg_type: u8, code: u8) {
        let old = get_u16(self.b(), 0);
        let new = u16::from_be_bytes([msg_type, code]);
        let csum = checksum::update_u16(self.checksum(), old, new);
        let b = self.buffer.as_mut();
        put_bytes(b, 0, &[msg_type, code]);
        put_u16(b, 2, csum);
    }

    /// Sets the type, updating the checksum.
    pub fn set_msg_type(&mut self, msg_type: u8) {
        self.set_type_code(msg_type, self.code());
    }

    /// Sets the code, updating the checksum.
    pub fn set_code(&mut self, code: u8) {
        self.set_type_code(self.msg_type(), code);
    }

    /// Recomputes the checksum over the whole buffer.
    pub fn fill_checksum(&mut self) {
        put_u16(self.buffer.as_mut(), 2, 0);
        let csum = checksum::internet(self.b());
        put_u16(self.buffer.as_mut(), 2, csum);
    }
}

/// Writes an ICMP header (checksum 0, rest of header `rest`) into the start
/// of `buf`.
pub fn emit(buf: &mut [u8], msg_type: u8, code: u8, rest: [u8; 4]) {
    put_u8(buf, 0, msg_type);
    put_u8(buf, 1, code);
    put_u16(buf, 2, 0);
    put_bytes(buf, 4, &rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_code_and_checksum() {
        let mut b = vec![0u8; 12];
        emit(&mut b, ECHO_REQUEST, 0, [0, 1, 0, 2]);
        b[8..].copy_from_slice(b"ping");
        let mut i = Icmpv4Packet::new_checked(&mut b[..]).unwrap();
        i.fill_checksum();
        assert!(i.verify_checksum());
        assert_eq!((i.msg_type(), i.code()), (ECHO_REQUEST, 0));
        assert_eq!(i.rest_of_header(), [0, 1, 0, 2]);
        assert_eq!(i.payload(), b"ping");
        i.set_msg_type(ECHO_REPLY);
        i.set_code(3);
        assert!(i.verify_checksum());
        assert_eq!((i.msg_type(), i.code()), (ECHO_REPLY, 3));
        assert!(Icmpv4Packet::new_checked(&b[..7]).is_err());
    }
}
