//! ICMPv6 (RFC 4443) and the neighbor discovery messages a switch parses,
//! neighbor solicitation and advertisement (RFC 4861), with their
//! source/target link-layer address options.

use super::{check_len, checksum, get_array, get_u16, get_u32, get_u8, put_bytes, put_u16};
use super::{put_u32, put_u8, WireError};

/// Length of the header: type, code, checksum, and 4 type-specific bytes.
pub const HEADER_LEN: usize = 8;
pub const ECHO_REQUEST: u8 = 128;
pub const ECHO_REPLY: u8 = 129;
pub const ND_NEIGHBOR_SOLICIT: u8 = 135;
pub const ND_NEIGHBOR_ADVERT: u8 = 136;
/// Option type of a source link-layer address.
pub const ND_OPT_SOURCE_LLA: u8 = 1;
/// Option type of a target link-layer address.
pub const ND_OPT_TARGET_LLA: u8 = 2;
/// Options are sized in units of 8 bytes.
pub const ND_OPT_UNIT: usize = 8;
/// Length of an NS/NA message without options.
pub const ND_MSG_LEN: usize = HEADER_LEN + 16;

/// True for the type and code of the messages whose ND fields OVS parses:
/// neighbor solicitation and advertisement with code 0.
pub fn is_nd_message(msg_type: u8, code: u8) -> bool {
    code == 0 && matches!(msg_type, ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT)
}

/// An ICMPv6 message. Its checksum covers the whole buffer and the IPv6
/// pseudo-header, so give the view exactly the upper-layer packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    /// Views `buffer` as ICMPv6: the 8-byte header must be present.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("icmpv6", buffer.as_ref(), HEADER_LEN)?;
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

    /// The 4 type-specific bytes after the checksum, as a word (for NA, the
    /// R/S/O flags and reserved bits; OVS's `nd_reserved`).
    pub fn data_word(&self) -> u32 {
        get_u32(self.b(), 4)
    }

    pub fn payload(&self) -> &[u8] {
        self.b().get(HEADER_LEN..).unwrap_or(&[])
    }

    /// True if the checksum is right, given the pseudo-header sum.
    pub fn verify_checksum(&self, pseudo: u16) -> bool {
        checksum::verify(pseudo, self.b())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Icmpv6Packet<T> {
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

    /// Updates the checksum for pseudo-header bytes (an address) that
    /// changed from `old` to `new`.
    pub fn adjust_checksum(&mut self, old: &[u8], new: &[u8]) {
        let csum = checksum::update(self.checksum(), old, new);
        put_u16(self.buffer.as_mut(), 2, csum);
    }

    /// Recomputes the checksum over the whole buffer and the pseudo-header.
    pub fn fill_checksum(&mut self, pseudo: u16) {
        put_u16(self.buffer.as_mut(), 2, 0);
        let csum = !checksum::combine(pseudo, checksum::ones_sum(self.b()));
        put_u16(self.buffer.as_mut(), 2, csum);
    }
}

/// Writes an ICMPv6 header (checksum 0) into the start of `buf`.
pub fn emit(buf: &mut [u8], msg_type: u8, code: u8, data_word: u32) {
    put_u8(buf, 0, msg_type);
    put_u8(buf, 1, code);
    put_u16(buf, 2, 0);
    put_u32(buf, 4, data_word);
}

/// A neighbor solicitation or advertisement: the ICMPv6 header, the target
/// address, then options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdMessage<T: AsRef<[u8]>> {
    buffer: T,
}

/// One ND option: its type and all of its bytes (type and length included).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NdOption<'a> {
    pub kind: u8,
    /// Offset of the option from the start of the ICMPv6 message.
    pub offset: usize,
    pub bytes: &'a [u8],
}

impl NdOption<'_> {
    /// The link-layer address of a source/target link-layer address option
    /// for Ethernet (exactly 8 bytes long).
    pub fn lla(&self) -> Option<[u8; 6]> {
        let is_lla = matches!(self.kind, ND_OPT_SOURCE_LLA | ND_OPT_TARGET_LLA);
        (is_lla && self.bytes.len() == ND_OPT_UNIT).then(|| get_array(self.bytes, 2))
    }
}

/// Iterator over the options of an [`NdMessage`]; see
/// [`NdMessage::options`].
#[derive(Clone, Debug)]
pub struct NdOptions<'a> {
    message: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for NdOptions<'a> {
    type Item = NdOption<'a>;

    fn next(&mut self) -> Option<NdOption<'a>> {
        let rest = self.message.get(self.offset..)?;
        if rest.len() < ND_OPT_UNIT {
            return None;
        }
        let len = usize::from(get_u8(rest, 1)) * ND_OPT_UNIT;
        let bytes = rest.get(..len).filter(|b| !b.is_empty())?;
        let option = NdOption {
            kind: get_u8(rest, 0),
            offset: self.offset,
            bytes,
        };
        self.offset += len;
        Some(option)
    }
}

impl<T: AsRef<[u8]>> NdMessage<T> {
    /// Views `buffer` (starting at the ICMPv6 header) as NS or NA: type 135
    /// or 136 and 24 bytes present. The code is not checked (OVS treats only
    /// code 0 as ND; see [`code`](Self::code)).
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_len("icmpv6 nd", b, HEADER_LEN)?;
        let msg_type = get_u8(b, 0);
        if !matches!(msg_type, ND_NEIGHBOR_SOLICIT | ND_NEIGHBOR_ADVERT) {
            return Err(WireError::BadField {
                header: "icmpv6 nd",
                field: "type",
                value: msg_type.into(),
                reason: "not a neighbor solicitation or advertisement",
            });
        }
        check_len("icmpv6 nd", b, ND_MSG_LEN)?;
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

    /// The reserved word; for NA its top bits are the R, S and O flags.
    pub fn flags_word(&self) -> u32 {
        get_u32(self.b(), 4)
    }

    pub fn target(&self) -> [u8; 16] {
        get_array(self.b(), HEADER_LEN)
    }

    /// The options, in order. Iteration stops at the first option whose
    /// length is 0 or runs past the message, and ignores a tail shorter
    /// than 8 bytes, as OVS's parser does.
    pub fn options(&self) -> NdOptions<'_> {
        NdOptions {
            message: self.b(),
            offset: ND_MSG_LEN,
        }
    }

    /// The first 8-byte option of type `kind` (source or target LLA).
    pub fn lla(&self, kind: u8) -> Option<[u8; 6]> {
        self.options()
            .filter(|o| o.kind == kind)
            .find_map(|o| o.lla())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> NdMessage<T> {
    fn update_checksum(&mut self, old: &[u8], new: &[u8]) {
        let csum = checksum::update(get_u16(self.b(), 2), old, new);
        put_u16(self.buffer.as_mut(), 2, csum);
    }

    /// Sets the target address, updating the checksum.
    pub fn set_target(&mut self, target: [u8; 16]) {
        let old = self.target();
        self.update_checksum(&old, &target);
        put_bytes(self.buffer.as_mut(), HEADER_LEN, &target);
    }

    /// Rewrites the address of the first 8-byte option of type `kind`,
    /// updating the checksum. Returns false (and changes nothing) if the
    /// message has no such option.
    pub fn set_lla(&mut self, kind: u8, mac: [u8; 6]) -> bool {
        let found = self
            .options()
            .find(|o| o.kind == kind && o.lla().is_some())
            .map(|o| (o.offset, get_array::<6>(o.bytes, 2)));
        let Some((offset, old)) = found else {
            return false;
        };
        // Options start on 8-byte boundaries, so the address is 16-bit
        // aligned within the checksummed data.
        self.update_checksum(&old, &mac);
        put_bytes(self.buffer.as_mut(), offset + 2, &mac);
        true
    }
}

/// Writes an 8-byte link-layer address option into the start of `buf`.
pub fn emit_lla_option(buf: &mut [u8], kind: u8, mac: [u8; 6]) {
    put_u8(buf, 0, kind);
    put_u8(buf, 1, 1);
    put_bytes(buf, 2, &mac);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum::pseudo_header_v6;

    fn target() -> [u8; 16] {
        let mut t = [0u8; 16];
        t[0] = 0xfe;
        t[1] = 0x80;
        t[15] = 7;
        t
    }

    fn neighbor_advert(pseudo: u16) -> Vec<u8> {
        let mut b = vec![0u8; ND_MSG_LEN + 16];
        emit(&mut b, ND_NEIGHBOR_ADVERT, 0, 0x6000_0000);
        b[HEADER_LEN..ND_MSG_LEN].copy_from_slice(&target());
        // An unknown 8-byte option, then a target link-layer address.
        b[ND_MSG_LEN] = 14;
        b[ND_MSG_LEN + 1] = 1;
        emit_lla_option(&mut b[ND_MSG_LEN + 8..], ND_OPT_TARGET_LLA, [0xaa; 6]);
        Icmpv6Packet::new_checked(&mut b[..])
            .unwrap()
            .fill_checksum(pseudo);
        b
    }

    #[test]
    fn header_fields_and_type_code_updates() {
        let pseudo = pseudo_header_v6(&[1; 16], &[2; 16], 58, 40);
        let mut b = neighbor_advert(pseudo);
        let mut i = Icmpv6Packet::new_checked(&mut b[..]).unwrap();
        assert!(i.verify_checksum(pseudo));
        assert_eq!((i.msg_type(), i.code()), (ND_NEIGHBOR_ADVERT, 0));
        assert_eq!(i.data_word(), 0x6000_0000);
        i.set_msg_type(ECHO_REQUEST);
        i.set_code(1);
        assert!(i.verify_checksum(pseudo));
        i.adjust_checksum(&[1; 16], &[3; 16]);
        assert!(i.verify_checksum(pseudo_header_v6(&[3; 16], &[2; 16], 58, 40)));
        assert!(Icmpv6Packet::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn nd_target_and_options() {
        let pseudo = pseudo_header_v6(&[1; 16], &[2; 16], 58, 40);
        let mut b = neighbor_advert(pseudo);
        let mut nd = NdMessage::new_checked(&mut b[..]).unwrap();
        assert_eq!(nd.target(), target());
        assert_eq!(nd.flags_word(), 0x6000_0000);
        let kinds: Vec<u8> = nd.options().map(|o| o.kind).collect();
        assert_eq!(kinds, [14, ND_OPT_TARGET_LLA]);
        assert_eq!(nd.lla(ND_OPT_TARGET_LLA), Some([0xaa; 6]));
        assert_eq!(nd.lla(ND_OPT_SOURCE_LLA), None);
        nd.set_target([9; 16]);
        assert!(nd.set_lla(ND_OPT_TARGET_LLA, [0x11; 6]));
        assert!(!nd.set_lla(ND_OPT_SOURCE_LLA, [0x22; 6]));
        assert_eq!(nd.target(), [9; 16]);
        assert_eq!(nd.lla(ND_OPT_TARGET_LLA), Some([0x11; 6]));
        assert!(Icmpv6Packet::new_checked(&b[..])
            .unwrap()
            .verify_checksum(pseudo));
    }

    #[test]
    fn option_walk_stops_at_bad_lengths() {
        let mut b = neighbor_advert(0);
        b[ND_MSG_LEN + 1] = 0;
        assert_eq!(NdMessage::new_checked(&b[..]).unwrap().options().count(), 0);
        b[ND_MSG_LEN + 1] = 3;
        assert_eq!(NdMessage::new_checked(&b[..]).unwrap().options().count(), 0);
        b[ND_MSG_LEN + 1] = 1;
        assert_eq!(
            NdMessage::new_checked(&b[..ND_MSG_LEN + 15])
                .unwrap()
                .options()
                .count(),
            1
        );
    }

    #[test]
    fn nd_view_rejects_other_messages() {
        let mut b = neighbor_advert(0);
        assert!(NdMessage::new_checked(&b[..ND_MSG_LEN - 1]).is_err());
        b[0] = ECHO_REQUEST;
        assert!(matches!(
            NdMessage::new_checked(&b[..]),
            Err(WireError::BadField {
                field: "type",
                value: 128,
                ..
            })
        ));
    }
}
