//! IPv6 headers (RFC 8200) and the extension headers a switch walks through:
//! hop-by-hop options, routing, fragment, destination options (and AH, whose
//! length counts differently).

use super::{check_len, checksum, get_array, get_u16, get_u32, get_u8, put_bytes, put_u16};
use super::{put_u32, put_u8, WireError};

/// Length of the fixed header.
pub const HEADER_LEN: usize = 40;
/// The 20 flow label bits of the first word.
pub const FLOW_LABEL_MASK: u32 = 0x000f_ffff;

pub const NEXT_HOP_BY_HOP: u8 = 0;
pub const NEXT_ROUTING: u8 = 43;
pub const NEXT_FRAGMENT: u8 = 44;
pub const NEXT_AH: u8 = 51;
pub const NEXT_NONE: u8 = 59;
pub const NEXT_DST_OPTS: u8 = 60;

/// True for the next-header values of the extension headers OVS skips over
/// to find the upper-layer protocol.
pub fn is_ext_header(next_header: u8) -> bool {
    matches!(
        next_header,
        NEXT_HOP_BY_HOP | NEXT_ROUTING | NEXT_FRAGMENT | NEXT_AH | NEXT_DST_OPTS
    )
}

const HEADER: &str = "ipv6";

/// An IPv6 packet: fixed header, then the payload up to the payload length.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    /// Views `buffer` as IPv6: the 40-byte header and the payload length it
    /// announces must be present (bytes past it are link-layer padding). The
    /// version nibble is not checked, as OVS does not check it either.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let b = buffer.as_ref();
        check_len(HEADER, b, HEADER_LEN)?;
        check_len(HEADER, b, HEADER_LEN + usize::from(get_u16(b, 4)))?;
        Ok(Self { buffer })
    }

    fn b(&self) -> &[u8] {
        self.buffer.as_ref()
    }

    pub fn version(&self) -> u8 {
        get_u8(self.b(), 0) >> 4
    }

    pub fn traffic_class(&self) -> u8 {
        (get_u32(self.b(), 0) >> 20) as u8
    }

    pub fn flow_label(&self) -> u32 {
        get_u32(self.b(), 0) & FLOW_LABEL_MASK
    }

    pub fn payload_len(&self) -> u16 {
        get_u16(self.b(), 4)
    }

    pub fn next_header(&self) -> u8 {
        get_u8(self.b(), 6)
    }

    pub fn hop_limit(&self) -> u8 {
        get_u8(self.b(), 7)
    }

    pub fn src(&self) -> [u8; 16] {
        get_array(self.b(), 8)
    }

    pub fn dst(&self) -> [u8; 16] {
        get_array(self.b(), 24)
    }

    /// The payload (extension headers included), up to the payload length.
    pub fn payload(&self) -> &[u8] {
        self.b()
            .get(HEADER_LEN..HEADER_LEN + usize::from(self.payload_len()))
            .unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv6Packet<T> {
    fn b_mut(&mut self) -> &mut [u8] {
        self.buffer.as_mut()
    }

    /// Sets the source address. IPv6 has no header checksum; the caller
    /// updates upper-layer checksums that cover the pseudo-header.
    pub fn set_src(&mut self, addr: [u8; 16]) {
        put_bytes(self.b_mut(), 8, &addr);
    }

    /// Sets the destination address; see [`set_src`](Self::set_src).
    pub fn set_dst(&mut self, addr: [u8; 16]) {
        put_bytes(self.b_mut(), 24, &addr);
    }

    pub fn set_traffic_class(&mut self, tclass: u8) {
        let word = get_u32(self.b(), 0);
        let word = (word & !0x0ff0_0000) | (u32::from(tclass) << 20);
        put_u32(self.b_mut(), 0, word);
    }

    /// Sets the flow label; bits above the low 20 are ignored.
    pub fn set_flow_label(&mut self, label: u32) {
        let word = get_u32(self.b(), 0);
        let word = (word & !FLOW_LABEL_MASK) | (label & FLOW_LABEL_MASK);
        put_u32(self.b_mut(), 0, word);
    }

    pub fn set_hop_limit(&mut self, hlimit: u8) {
        put_u8(self.b_mut(), 7, hlimit);
    }

    pub fn payload_mut(&mut self) -> &mut [u8] {
        let end = HEADER_LEN + usize::from(self.payload_len());
        self.b_mut().get_mut(HEADER_LEN..end).unwrap_or(&mut [])
    }
}

/// The fields [`emit`] writes into a fixed IPv6 header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ipv6Header {
    pub traffic_class: u8,
    pub flow_label: u32,
    pub payload_len: u16,
    pub next_header: u8,
    pub hop_limit: u8,
    pub src: [u8; 16],
    pub dst: [u8; 16],
}

/// Writes `h` as a 40-byte header into the start of `buf`.
pub fn emit(buf: &mut [u8], h: &Ipv6Header) {
    let word = (6 << 28) | (u32::from(h.traffic_class) << 20) | (h.flow_label & FLOW_LABEL_MASK);
    put_u32(buf, 0, word);
    put_u16(buf, 4, h.payload_len);
    put_u8(buf, 6, h.next_header);
    put_u8(buf, 7, h.hop_limit);
    put_bytes(buf, 8, &h.src);
    put_bytes(buf, 24, &h.dst);
}

/// Sum of the pseudo-header for an upper-layer packet of `len` bytes
/// carried with next-header `proto` between `src` and `dst`.
pub fn pseudo_header(src: &[u8; 16], dst: &[u8; 16], proto: u8, len: usize) -> u16 {
    checksum::pseudo_header_v6(src, dst, proto, len as u32)
}

/// A hop-by-hop options, routing, destination options or authentication
/// header: next header, then a length field, then its body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6ExtHeader<T: AsRef<[u8]>> {
    buffer: T,
    kind: u8,
}

/// Smallest size of any extension header.
pub const EXT_MIN_LEN: usize = 8;

impl<T: AsRef<[u8]>> Ipv6ExtHeader<T> {
    /// Views `buffer` as the extension header announced by next-header value
    /// `kind` (0, 43, 60 or 51; the fragment header has its own view). The
    /// whole header, as long as its length field says, must be present.
    pub fn new_checked(buffer: T, kind: u8) -> Result<Self, WireError> {
        let header = match kind {
            NEXT_HOP_BY_HOP => "ipv6 hop-by-hop",
            NEXT_ROUTING => "ipv6 routing",
            NEXT_DST_OPTS => "ipv6 destination options",
            NEXT_AH => "ipv6 authentication",
            _ => {
                return Err(WireError::BadField {
                    header: "ipv6 extension",
                    field: "kind",
                    value: kind.into(),
                    reason: "not an options, routing or authentication header",
                })
            }
        };
        check_len(header, buffer.as_ref(), EXT_MIN_LEN)?;
        let view = Self { buffer, kind };
        check_len(header, view.buffer.as_ref(), view.header_len())?;
        Ok(view)
    }

    /// The next-header value that announced this header.
    pub fn kind(&self) -> u8 {
        self.kind
    }

    pub fn next_header(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 0)
    }

    /// Header length in bytes: (len + 1) × 8, or (len + 2) × 4 for AH.
    pub fn header_len(&self) -> usize {
        let len = usize::from(get_u8(self.buffer.as_ref(), 1));
        if self.kind == NEXT_AH {
            (len + 2) * 4
        } else {
            (len + 1) * 8
        }
    }

    /// Routing headers only: the routing type.
    pub fn routing_type(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 2)
    }

    /// Routing headers only: how many more nodes to visit.
    pub fn segments_left(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 3)
    }

    /// What follows the header.
    pub fn rest(&self) -> &[u8] {
        self.buffer.as_ref().get(self.header_len()..).unwrap_or(&[])
    }
}

/// Length of the fragment header.
pub const FRAG_HEADER_LEN: usize = 8;
/// Fragment offset bits (in 8-byte units, shifted left by 3) of the
/// offset/flags word.
pub const FRAG_OFFSET_MASK: u16 = 0xfff8;
/// "More fragments" bit of the offset/flags word.
pub const FRAG_MORE: u16 = 0x0001;

/// The fragment extension header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv6FragmentHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6FragmentHeader<T> {
    /// Views the first 8 bytes of `buffer` as a fragment header.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("ipv6 fragment", buffer.as_ref(), FRAG_HEADER_LEN)?;
        Ok(Self { buffer })
    }

    pub fn next_header(&self) -> u8 {
        get_u8(self.buffer.as_ref(), 0)
    }

    /// The offset/flags word: offset << 3, two reserved bits, M.
    pub fn offset_flags(&self) -> u16 {
        get_u16(self.buffer.as_ref(), 2)
    }

    /// Fragment offset in 8-byte units.
    pub fn frag_offset(&self) -> u16 {
        self.offset_flags() >> 3
    }

    pub fn more_frags(&self) -> bool {
        self.offset_flags() & FRAG_MORE != 0
    }

    pub fn ident(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 4)
    }

    pub fn rest(&self) -> &[u8] {
        self.buffer.as_ref().get(FRAG_HEADER_LEN..).unwrap_or(&[])
    }
}

/// Writes a fragment header into the start of `buf`.
pub fn emit_fragment(buf: &mut [u8], next_header: u8, offset: u16, more: bool, ident: u32) {
    put_u8(buf, 0, next_header);
    put_u8(buf, 1, 0);
    put_u16(buf, 2, (offset << 3) | u16::from(more));
    put_u32(buf, 4, ident);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> [u8; 16] {
        let mut a = [0u8; 16];
        a[0] = 0x20;
        a[1] = 0x01;
        a[15] = last;
        a
    }

    #[test]
    fn header_fields_round_trip() {
        let mut b = vec![0u8; 48];
        emit(
            &mut b,
            &Ipv6Header {
                traffic_class: 0xab,
                flow_label: 0x12345,
                payload_len: 8,
                next_header: 17,
                hop_limit: 64,
                src: addr(1),
                dst: addr(2),
            },
        );
        let mut p = Ipv6Packet::new_checked(&mut b[..]).unwrap();
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0xab);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.payload_len(), 8);
        assert_eq!(p.next_header(), 17);
        assert_eq!(p.hop_limit(), 64);
        assert_eq!(p.src(), addr(1));
        assert_eq!(p.dst(), addr(2));
        p.set_traffic_class(0x01);
        p.set_flow_label(0xfffff);
        p.set_hop_limit(3);
        p.set_src(addr(9));
        p.set_dst(addr(10));
        assert_eq!(p.version(), 6);
        assert_eq!(p.traffic_class(), 0x01);
        assert_eq!(p.flow_label(), 0xfffff);
        assert_eq!(p.hop_limit(), 3);
        assert_eq!((p.src(), p.dst()), (addr(9), addr(10)));
        assert_eq!(p.payload().len(), 8);
    }

    #[test]
    fn payload_length_must_fit() {
        let mut b = [0u8; 48];
        b[4..6].copy_from_slice(&9u16.to_be_bytes());
        assert!(matches!(
            Ipv6Packet::new_checked(&b[..]),
            Err(WireError::Truncated { needed: 49, .. })
        ));
        assert!(Ipv6Packet::new_checked(&b[..39]).is_err());
    }

    #[test]
    fn extension_header_lengths() {
        let b = [17u8, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xee];
        let h = Ipv6ExtHeader::new_checked(&b[..], NEXT_HOP_BY_HOP).unwrap();
        assert_eq!(h.header_len(), 16);
        assert_eq!(h.next_header(), 17);
        assert_eq!(h.rest(), &[0xee]);
        let ah = Ipv6ExtHeader::new_checked(&b[..], NEXT_AH).unwrap();
        assert_eq!(ah.header_len(), 12);
        assert!(matches!(
            Ipv6ExtHeader::new_checked(&b[..15], NEXT_ROUTING),
            Err(WireError::Truncated { needed: 16, .. })
        ));
        assert!(Ipv6ExtHeader::new_checked(&b[..], NEXT_FRAGMENT).is_err());
    }

    #[test]
    fn fragment_header() {
        let mut b = [0u8; 8];
        emit_fragment(&mut b, 6, 185, true, 0xdead_beef);
        let f = Ipv6FragmentHeader::new_checked(&b[..]).unwrap();
        assert_eq!(f.next_header(), 6);
        assert_eq!(f.frag_offset(), 185);
        assert!(f.more_frags());
        assert_eq!(f.ident(), 0xdead_beef);
        assert!(Ipv6FragmentHeader::new_checked(&b[..7]).is_err());
    }
}
