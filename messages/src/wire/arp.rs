//! ARP and RARP over Ethernet for IPv4 (RFC 826, RFC 903): the only kind a
//! switch parses into a flow.

use super::WireError;
use super::{check_len, get_array, get_u16, get_u32, get_u8, put_bytes, put_u16, put_u32};
use crate::flow::ETH_TYPE_IP;

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
/// Hardware type of Ethernet.
pub const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// An Ethernet/IPv4 ARP (or RARP) packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    /// Views `buffer` as ARP: 28 bytes, hardware type Ethernet with 6-byte
    /// addresses, protocol type IPv4 with 4-byte addresses.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_len("arp", b, PACKET_LEN)?;
        let fields: [(&'static str, u32, u32); 4] = [
            ("hardware type", get_u16(b, 0).into(), HTYPE_ETHERNET.into()),
            ("protocol type", get_u16(b, 2).into(), ETH_TYPE_IP.into()),
            ("hardware length", get_u8(b, 4).into(), 6),
            ("protocol length", get_u8(b, 5).into(), 4),
        ];
        for (field, value, want) in fields {
            if value != want {
                return Err(WireError::BadField {
                    header: "arp",
                    field,
                    value,
                    reason: "only Ethernet/IPv4 ARP is supported",
                });
            }
        }
        Ok(Self { buffer })
    }

    pub fn operation(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }

    /// Sender hardware address.
    pub fn sha(&self) -> [u8; 6] {
        get_array(self.buffer.as_ref(), 8)
    }

    /// Sender protocol address.
    pub fn spa(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 14)
    }

    /// Target hardware address.
    pub fn tha(&self) -> [u8; 6] {
        get_array(self.buffer.as_ref(), 18)
    }

    /// Target protocol address.
    pub fn tpa(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 24)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ArpPacket<T> {
    pub fn set_operation(&mut self, op: u16) {
        put_u16(self.buffer.as_mut(), 6, op);
    }

    pub fn set_sha(&mut self, mac: [u8; 6]) {
        put_bytes(self.buffer.as_mut(), 8, &mac);
    }

    pub fn set_spa(&mut self, addr: u32) {
        put_u32(self.buffer.as_mut(), 14, addr);
    }

    pub fn set_tha(&mut self, mac: [u8; 6]) {
        put_bytes(self.buffer.as_mut(), 18, &mac);
    }

    pub fn set_tpa(&mut self, addr: u32) {
        put_u32(self.buffer.as_mut(), 24, addr);
    }
}

/// Writes an Ethernet/IPv4 ARP packet into the first 28 bytes of `buf`.
pub fn emit(buf: &mut [u8], op: u16, sha: [u8; 6], spa: u32, tha: [u8; 6], tpa: u32) {
    put_u16(buf, 0, HTYPE_ETHERNET);
    put_u16(buf, 2, ETH_TYPE_IP);
    put_bytes(buf, 4, &[6, 4]);
    put_u16(buf, 6, op);
    put_bytes(buf, 8, &sha);
    put_u32(buf, 14, spa);
    put_bytes(buf, 18, &tha);
    put_u32(buf, 24, tpa);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_then_view() {
        let mut b = [0u8; 28];
        emit(&mut b, OP_REPLY, [1; 6], 0x0a00_0001, [2; 6], 0x0a00_0002);
        let mut a = ArpPacket::new_checked(&mut b[..]).unwrap();
        assert_eq!(a.operation(), OP_REPLY);
        assert_eq!(a.sha(), [1; 6]);
        assert_eq!(a.spa(), 0x0a00_0001);
        assert_eq!(a.tha(), [2; 6]);
        assert_eq!(a.tpa(), 0x0a00_0002);
        a.set_tpa(0xc0a8_0001);
        a.set_operation(OP_REQUEST);
        a.set_sha([3; 6]);
        assert_eq!(a.tpa(), 0xc0a8_0001);
        assert_eq!(a.operation(), OP_REQUEST);
        assert_eq!(a.sha(), [3; 6]);
    }

    #[test]
    fn rejects_non_ethernet_ipv4_arp() {
        let mut b = [0u8; 28];
        emit(&mut b, OP_REQUEST, [0; 6], 0, [0; 6], 0);
        b[4] = 8;
        assert!(matches!(
            ArpPacket::new_checked(&b[..]),
            Err(WireError::BadField {
                field: "hardware length",
                value: 8,
                ..
            })
        ));
        assert!(matches!(
            ArpPacket::new_checked(&b[..27]),
            Err(WireError::Truncated { needed: 28, .. })
        ));
    }
}
