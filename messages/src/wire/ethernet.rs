//! Ethernet II / 802.3 frames, and the 802.2 LLC/SNAP header that carries
//! an EtherType inside an 802.3 frame.

use super::{check_len, get_array, get_u16, get_u8, put_bytes, WireError};

/// Length of the Ethernet header: two MACs and the EtherType/length field.
pub const HEADER_LEN: usize = 14;
/// Length of a MAC address.
pub const ADDR_LEN: usize = 6;

/// An Ethernet frame: destination, source, EtherType (or 802.3 length).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthernetFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EthernetFrame<T> {
    /// Views `buffer` as an Ethernet frame; it must hold the 14-byte header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("ethernet", buffer.as_ref(), HEADER_LEN)?;
        Ok(Self { buffer })
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn dst(&self) -> [u8; 6] {
        get_array(self.buffer.as_ref(), 0)
    }

    pub fn src(&self) -> [u8; 6] {
        get_array(self.buffer.as_ref(), 6)
    }

    /// The EtherType field: an EtherType when at least 0x0600, otherwise the
    /// 802.3 payload length. A VLAN TPID when the frame is tagged.
    pub fn ethertype(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 12)
    }

    /// Everything after the 14-byte header (VLAN tags included).
    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(HEADER_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> EthernetFrame<T> {
    pub fn set_dst(&mut self, mac: [u8; 6]) {
        put_bytes(self.buffer.as_mut(), 0, &mac);
    }

    pub fn set_src(&mut self, mac: [u8; 6]) {
        put_bytes(self.buffer.as_mut(), 6, &mac);
    }

    pub fn set_ethertype(&mut self, ethertype: u16) {
        put_bytes(self.buffer.as_mut(), 12, &ethertype.to_be_bytes());
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        self.buffer
            .as_mut()
            .get_mut(HEADER_LEN..)
            .unwrap_or(&mut [])
    }
}

/// Length of an 802.2 LLC header followed by a SNAP header.
pub const LLC_SNAP_LEN: usize = 8;
/// LLC DSAP and SSAP that announce a SNAP header.
pub const LLC_SAP_SNAP: u8 = 0xaa;
/// LLC control field of unnumbered information frames.
pub const LLC_CNTL_SNAP: u8 = 0x03;

/// An 802.2 LLC header with a SNAP extension, as it follows the length
/// field of an 802.3 frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LlcSnapHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> LlcSnapHeader<T> {
    /// Views `buffer` as LLC+SNAP: 8 bytes, DSAP = SSAP = 0xaa, control 3.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_len("llc-snap", b, LLC_SNAP_LEN)?;
        for (field, at, want) in [
            ("dsap", 0, LLC_SAP_SNAP),
            ("ssap", 1, LLC_SAP_SNAP),
            ("control", 2, LLC_CNTL_SNAP),
        ] {
            let value = get_u8(b, at);
            if value != want {
                return Err(WireError::BadField {
                    header: "llc-snap",
                    field,
                    value: value.into(),
                    reason: "not an LLC header announcing SNAP",
                });
            }
        }
        Ok(Self { buffer })
    }

    /// The SNAP organization code (0 for an encapsulated EtherType).
    pub fn oui(&self) -> [u8; 3] {
        get_array(self.buffer.as_ref(), 3)
    }

    /// The SNAP protocol id: an EtherType when the OUI is 0.
    pub fn snap_type(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 6)
    }

    pub fn payload(&self) -> &[u8] {
        self.buffer.as_ref().get(LLC_SNAP_LEN..).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_addresses() {
        let mut bytes = [0u8; 20];
        bytes[12] = 0x08;
        let mut eth = EthernetFrame::new_checked(&mut bytes[..]).unwrap();
        eth.set_dst([1, 2, 3, 4, 5, 6]);
        eth.set_src([7, 8, 9, 10, 11, 12]);
        assert_eq!(eth.dst(), [1, 2, 3, 4, 5, 6]);
        assert_eq!(eth.src(), [7, 8, 9, 10, 11, 12]);
        assert_eq!(eth.ethertype(), 0x0800);
        assert_eq!(eth.payload().len(), 6);
        assert_eq!(bytes[0..12], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]);
    }

    #[test]
    fn short_frame_is_an_error() {
        assert_eq!(
            EthernetFrame::new_checked(&[0u8; 13][..]),
            Err(WireError::Truncated {
                header: "ethernet",
                needed: 14,
                available: 13
            })
        );
    }

    #[test]
    fn llc_snap() {
        let snap = [0xaa, 0xaa, 0x03, 0, 0, 0, 0x08, 0x06, 9];
        let h = LlcSnapHeader::new_checked(&snap[..]).unwrap();
        assert_eq!(h.oui(), [0, 0, 0]);
        assert_eq!(h.snap_type(), 0x0806);
        assert_eq!(h.payload(), &[9]);
        let stp = [0x42, 0x42, 0x03, 0, 0, 0, 0, 0];
        assert!(matches!(
            LlcSnapHeader::new_checked(&stp[..]),
            Err(WireError::BadField { field: "dsap", .. })
        ));
    }
}
