//! 802.1Q / 802.1ad VLAN tags.
//!
//! A tag is the TPID (0x8100 for 802.1Q, 0x88a8 for 802.1ad) in the place of
//! the EtherType, then the TCI, then the next EtherType. This view starts at
//! the TCI: its TPID is the field before it.

use super::{check_len, get_u16, put_u16, WireError};
use crate::flow::{VLAN_PCP_MASK, VLAN_PCP_SHIFT, VLAN_VID_MASK};

/// Length of the part of a tag a view covers: TCI and inner EtherType.
pub const HEADER_LEN: usize = 4;
/// Length a tag adds to a frame: TPID and TCI.
pub const TAG_LEN: usize = 4;
/// The DEI bit of a TCI (OVS calls it CFI and uses it as "tag present" in
/// flows, never on the wire).
pub const TCI_DEI: u16 = 0x1000;

/// A VLAN tag's TCI followed by the encapsulated EtherType.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanHeader<T> {
    /// Views `buffer` (starting at the TCI) as a tag: 4 bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("vlan", buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    /// The whole 16-bit TCI as on the wire.
    pub fn tci(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 0)
    }

    pub fn pcp(&self) -> u8 {
        ((self.tci() & VLAN_PCP_MASK) >> VLAN_PCP_SHIFT) as u8
    }

    pub fn dei(&self) -> bool {
        self.tci() & TCI_DEI != 0
    }

    pub fn vid(&self) -> u16 {
        self.tci() & VLAN_VID_MASK
    }

    /// The EtherType of what the tag encapsulates (another TPID when
    /// stacked).
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanHeader<T> {
    pub fn set_tci(&mut self, tci: u16) {
        put_u16(self.buffer.as_mut(), 0, tci);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        put_u16(self.buffer.as_mut(), 2, ethertype);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_the_tci() {
        let mut b = [0xa0, 0x64, 0x08, 0x00, 0xff];
        let mut v = VlanHeader::new_checked(&mut b[..]).unwrap();
        assert_eq!(v.pcp(), 5);
        assert!(!v.dei());
        assert_eq!(v.vid(), 100);
        assert_eq!(v.ethertype(), 0x0800);
        assert_eq!(v.payload(), &[0xff]);
        v.set_tci(0x1fff);
        assert!(v.dei());
        assert_eq!(v.vid(), 0xfff);
        assert_eq!(b[..2], [0x1f, 0xff]);
        assert!(VlanHeader::new_checked(&[0u8; 3][..]).is_err());
    }
}
