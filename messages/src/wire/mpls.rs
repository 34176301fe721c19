//! MPLS label stack entries (RFC 3032).

use super::{check_len, get_u32, put_u32, WireError};

/// Length of one label stack entry.
pub const LSE_LEN: usize = 4;
pub const LABEL_SHIFT: u32 = 12;
pub const LABEL_MASK: u32 = 0xffff_f000;
pub const TC_SHIFT: u32 = 9;
pub const TC_MASK: u32 = 0x0000_0e00;
pub const BOS_MASK: u32 = 0x0000_0100;
pub const TTL_MASK: u32 = 0x0000_00ff;

/// One label stack entry: label (20 bits), traffic class (3), bottom of
/// stack (1), TTL (8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MplsLse<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> MplsLse<T> {
    /// Views the first 4 bytes of `buffer` as a label stack entry.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        check_len("mpls", buffer.as_ref(), LSE_LEN)?;
        Ok(Self { buffer })
    }

    /// The whole entry as a host-order word.
    pub fn lse(&self) -> u32 {
        get_u32(self.buffer.as_ref(), 0)
    }

    pub fn label(&self) -> u32 {
        (self.lse() & LABEL_MASK) >> LABEL_SHIFT
    }

    pub fn tc(&self) -> u8 {
        ((self.lse() & TC_MASK) >> TC_SHIFT) as u8
    }

    pub fn bottom_of_stack(&self) -> bool {
        self.lse() & BOS_MASK != 0
    }

    pub fn ttl(&self) -> u8 {
        (self.lse() & TTL_MASK) as u8
    }

    /// What follows this entry: the next entry, or the payload after the
    /// bottom of the stack.
    pub fn rest(&self) -> &[u8] {
        self.buffer.as_ref().get(LSE_LEN..).unwrap_or(&[])
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> MplsLse<T> {
    pub fn set_lse(&mut self, lse: u32) {
        put_u32(self.buffer.as_mut(), 0, lse);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_an_entry() {
        // label 16, tc 5, bos, ttl 64.
        let lse: u32 = (16 << LABEL_SHIFT) | (5 << TC_SHIFT) | BOS_MASK | 64;
        let mut b = lse.to_be_bytes().to_vec();
        b.push(0x45);
        let mut m = MplsLse::new_checked(&mut b[..]).unwrap();
        assert_eq!(m.label(), 16);
        assert_eq!(m.tc(), 5);
        assert!(m.bottom_of_stack());
        assert_eq!(m.ttl(), 64);
        assert_eq!(m.rest(), &[0x45]);
        m.set_lse(0x0001_1040);
        assert_eq!(m.label(), 17);
        assert!(!m.bottom_of_stack());
        assert!(MplsLse::new_checked(&[0u8; 3][..]).is_err());
    }
}
