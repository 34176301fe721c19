//! OpenFlow on the wire: 1.3 (OXM matches, instructions) and 1.0 with the
//! Nicira extensions `ovs-ofctl` uses (NXM matches, NXAST actions, NXT and
//! NXST messages), plus the bundle messages of 1.4 and ONF's 1.3 extension.
//!
//! Pure: bytes in, values out, and back. The connection that carries them
//! lives in the daemon (`src/openflow.rs`). Every decode error is an
//! [`OfpError`] carrying the type and code OVS would answer with.

pub mod actions;
pub mod continuation;
pub mod message;
pub mod nxm;

pub use message::*;

/// OpenFlow version numbers as the header carries them.
pub const OFP10: u8 = 0x01;
pub const OFP13: u8 = 0x04;
pub const OFP14: u8 = 0x05;

/// Nicira's vendor (experimenter) id.
pub const NX_VENDOR_ID: u32 = 0x0000_2320;
/// The Open Networking Foundation's experimenter id.
pub const ONF_VENDOR_ID: u32 = 0x4f4e_4600;

/// Length of the OpenFlow header.
pub const HEADER_LEN: usize = 8;

/// The fixed header of every OpenFlow message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Reads a header from the first 8 bytes of `buf`.
    pub fn parse(buf: &[u8]) -> Option<Header> {
        (buf.len() >= HEADER_LEN).then(|| Header {
            version: buf[0],
            kind: buf[1],
            length: u16::from_be_bytes([buf[2], buf[3]]),
            xid: u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
        })
    }
}

/// How long the next message in `buf` is: `Ok(None)` when more bytes are
/// needed, an error when the framing is broken (a length below the header
/// size), after which the stream cannot be resynchronised.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, String> {
    let Some(h) = Header::parse(buf) else {
        return Ok(None);
    };
    let len = usize::from(h.length);
    if len < HEADER_LEN {
        return Err(format!(
            "message length {len} is shorter than the OpenFlow header (type {}, xid {:#x})",
            h.kind, h.xid
        ));
    }
    Ok((buf.len() >= len).then_some(len))
}

/// An error with the type and code OVS sends for it, as one of OVS's
/// `ofperr` values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfpError {
    pub kind: ErrorKind,
    /// What was wrong, for logs.
    pub reason: String,
}

impl OfpError {
    pub fn new(kind: ErrorKind, reason: impl Into<String>) -> Self {
        OfpError {
            kind,
            reason: reason.into(),
        }
    }
}

impl std::fmt::Display for OfpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.reason)
    }
}

impl std::error::Error for OfpError {}

/// The errors upcalld sends, named as OVS names them (`OFPERR_*`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    HelloIncompatible,
    BadVersion,
    BadType,
    BadStat,
    BadVendor,
    BadSubtype,
    BadLen,
    BufferUnknown,
    BadTableId,
    BadPort,
    BadPacket,
    NxmInvalid,
    NxmBadType,
    ActionBadType,
    ActionBadLen,
    ActionBadVendor,
    ActionBadVendorType,
    ActionBadOutPort,
    ActionBadArgument,
    ActionBadOutGroup,
    ActionMatchInconsistent,
    ActionBadSetType,
    ActionBadSetLen,
    ActionBadSetArgument,
    InstUnknown,
    InstUnsupported,
    InstBadTableId,
    InstBadLen,
    InstDup,
    MatchBadType,
    MatchBadLen,
    MatchBadWildcards,
    MatchBadField,
    MatchBadValue,
    MatchBadMask,
    MatchBadPrereq,
    MatchDupField,
    FlowModUnknown,
    FlowModTableFull,
    FlowModBadTableId,
    FlowModOverlap,
    FlowModBadTimeout,
    FlowModBadCommand,
    FlowModBadFlags,
    GroupExists,
    GroupInvalid,
    GroupBadType,
    GroupUnknown,
    MeterExists,
    MeterInvalid,
    MeterUnknown,
    MeterBadCommand,
    MeterBadFlags,
    MeterBadBand,
    MeterOutOfMeters,
    MeterOutOfBands,
    RoleBadRole,
    BundleBadId,
    BundleExists,
    BundleClosed,
    BundleBadType,
    BundleBadFlags,
    BundleMsgUnsupported,
    BundleMsgFailed,
    BundleBadVersion,
    TlvBadCommand,
    TlvBadOptLen,
    TlvBadFieldIdx,
    TlvTableFull,
    TlvAlreadyMapped,
    TlvDupEntry,
    TlvInvalidDel,
    /// OFPBPC_BAD_TYPE: an unknown property.
    PropBadType,
    /// OFPBPC_BAD_LEN: a property's length.
    PropBadLen,
    /// NXR_STALE: a continuation from another bridge, or from before the
    /// daemon restarted.
    ResumeStale,
}

/// Where an error's numbers live.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// A standard `(type, code)`.
    Std(u16, u16),
    /// A Nicira extension `(type, code)` (OpenFlow 1.0/1.1 vendor error,
    /// or the experimenter code `type` in 1.2+ when `code` is absent).
    Nx(u16, u16),
    /// An experimenter error in 1.2+: vendor and code.
    Exp(u32, u16),
}

impl ErrorKind {
    /// The numbers OVS sends for this error in `version`.
    pub fn code(self, version: u8) -> ErrorCode {
        use ErrorCode::*;
        use ErrorKind::*;
        let of10 = version == OFP10;
        match self {
            HelloIncompatible => Std(0, 0),
            BadVersion => Std(1, 0),
            BadType => Std(1, 1),
            BadStat => Std(1, 2),
            BadVendor => Std(1, 3),
            BadSubtype => Std(1, 4),
            BadLen => Std(1, 6),
            BufferUnknown => Std(1, 8),
            BadTableId if of10 => Nx(1, 512),
            BadTableId => Std(1, 9),
            BadPort if of10 => Nx(1, 514),
            BadPort => Std(1, 11),
            BadPacket if of10 => Std(1, 6),
            BadPacket => Std(1, 12),
            NxmInvalid if of10 => Nx(1, 256),
            NxmInvalid => Exp(NX_VENDOR_ID, 2),
            NxmBadType if of10 => Nx(1, 257),
            NxmBadType => Exp(NX_VENDOR_ID, 3),
            ActionBadType => Std(2, 0),
            ActionBadLen => Std(2, 1),
            ActionBadVendor => Std(2, 2),
            ActionBadVendorType => Std(2, 3),
            ActionBadOutPort => Std(2, 4),
            ActionBadArgument => Std(2, 5),
            ActionBadOutGroup => Std(2, 9),
            ActionMatchInconsistent if of10 => Nx(1, 522),
            ActionMatchInconsistent => Std(2, 10),
            ActionBadSetType if of10 => Nx(1, 523),
            ActionBadSetType => Std(2, 13),
            ActionBadSetLen if of10 => Nx(1, 524),
            ActionBadSetLen => Std(2, 14),
            ActionBadSetArgument if of10 => Nx(1, 525),
            ActionBadSetArgument => Std(2, 15),
            InstUnknown | InstBadLen | InstDup if of10 => Std(2, 0),
            InstUnknown => Std(3, 0),
            InstUnsupported if of10 => Nx(2, 257),
            InstUnsupported => Std(3, 1),
            InstBadTableId if of10 => Nx(1, 512),
            InstBadTableId => Std(3, 2),
            InstBadLen => Std(3, 7),
            InstDup => Exp(ONF_VENDOR_ID, 2600),
            MatchBadType | MatchBadLen if of10 => Nx(1, 256),
            MatchBadType => Std(4, 0),
            MatchBadLen => Std(4, 1),
            MatchBadWildcards if of10 => Nx(1, 262),
            MatchBadWildcards => Std(4, 5),
            MatchBadField if of10 => Nx(0, 263),
            MatchBadField => Std(4, 6),
            MatchBadValue if of10 => Nx(1, 258),
            MatchBadValue => Std(4, 7),
            MatchBadMask if of10 => Nx(1, 259),
            MatchBadMask => Std(4, 8),
            MatchBadPrereq if of10 => Nx(1, 260),
            MatchBadPrereq => Std(4, 9),
            MatchDupField if of10 => Nx(1, 261),
            MatchDupField => Std(4, 10),
            FlowModUnknown | FlowModBadTableId | FlowModBadTimeout if of10 => Std(3, 4),
            FlowModUnknown => Std(5, 0),
            FlowModTableFull if of10 => Std(3, 0),
            FlowModTableFull => Std(5, 1),
            FlowModBadTableId => Std(5, 2),
            FlowModOverlap if of10 => Std(3, 1),
            FlowModOverlap => Std(5, 3),
            FlowModBadTimeout => Std(5, 5),
            FlowModBadCommand if of10 => Std(3, 4),
            FlowModBadCommand => Std(5, 6),
            FlowModBadFlags if of10 => Nx(3, 258),
            FlowModBadFlags => Std(5, 7),
            GroupExists => Std(6, 0),
            GroupInvalid => Std(6, 1),
            GroupBadType => Std(6, 7),
            GroupUnknown => Std(6, 8),
            // OFPET_METER_MOD_FAILED.
            MeterExists => Std(12, 1),
            MeterInvalid => Std(12, 2),
            MeterUnknown => Std(12, 3),
            MeterBadCommand => Std(12, 4),
            MeterBadFlags => Std(12, 5),
            MeterBadBand => Std(12, 8),
            MeterOutOfMeters => Std(12, 10),
            MeterOutOfBands => Std(12, 11),
            RoleBadRole if of10 => Nx(1, 513),
            RoleBadRole => Std(11, 2),
            BundleBadId => bundle(version, 2),
            BundleExists => bundle(version, 3),
            BundleClosed => bundle(version, 4),
            BundleBadType => bundle(version, 6),
            BundleBadFlags => bundle(version, 7),
            BundleMsgUnsupported => bundle(version, 10),
            BundleMsgFailed => bundle(version, 13),
            BundleBadVersion => Exp(NX_VENDOR_ID, 22),
            // OVS's NXTTMFC_*: NX1.0-1.1(1,527..), NX1.2+(16..).
            TlvBadCommand if of10 => Nx(1, 527),
            TlvBadCommand => Exp(NX_VENDOR_ID, 16),
            TlvBadOptLen if of10 => Nx(1, 528),
            TlvBadOptLen => Exp(NX_VENDOR_ID, 17),
            TlvBadFieldIdx if of10 => Nx(1, 529),
            TlvBadFieldIdx => Exp(NX_VENDOR_ID, 18),
            TlvTableFull if of10 => Nx(1, 530),
            TlvTableFull => Exp(NX_VENDOR_ID, 19),
            TlvAlreadyMapped if of10 => Nx(1, 531),
            TlvAlreadyMapped => Exp(NX_VENDOR_ID, 20),
            TlvDupEntry if of10 => Nx(1, 532),
            TlvDupEntry => Exp(NX_VENDOR_ID, 21),
            TlvInvalidDel if of10 => Nx(1, 537),
            TlvInvalidDel => Exp(NX_VENDOR_ID, 38),
            // NX1.0-1.1(13,2), OF1.3(13,2), OF1.4+(14,0).
            PropBadType if of10 => Nx(13, 2),
            PropBadType if version >= OFP14 => Std(14, 0),
            PropBadType => Std(13, 2),
            PropBadLen if of10 => Nx(13, 3),
            PropBadLen if version >= OFP14 => Std(14, 1),
            PropBadLen => Std(13, 3),
            // NX1.0-1.1(1,534), NX1.2+(35).
            ResumeStale if of10 => Nx(1, 534),
            ResumeStale => Exp(NX_VENDOR_ID, 35),
        }
    }
}

/// Bundle errors: type 17 from OpenFlow 1.4, ONF's codes 2300+ in 1.3.
fn bundle(version: u8, code: u16) -> ErrorCode {
    if version >= OFP14 {
        ErrorCode::Std(17, code)
    } else {
        ErrorCode::Exp(ONF_VENDOR_ID, 2300 + code)
    }
}

/// Reads big-endian integers from a byte slice, failing with `err` when
/// the slice runs out.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    pub buf: &'a [u8],
    err: ErrorKind,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], err: ErrorKind) -> Self {
        Reader { buf, err }
    }

    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn bytes(&mut self, n: usize, what: &str) -> Result<&'a [u8], OfpError> {
        if self.buf.len() < n {
            return Err(OfpError::new(
                self.err,
                format!("{what}: needs {n} bytes, only {} left", self.buf.len()),
            ));
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    pub fn skip(&mut self, n: usize, what: &str) -> Result<(), OfpError> {
        self.bytes(n, what).map(|_| ())
    }

    pub fn u8(&mut self, what: &str) -> Result<u8, OfpError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn u16(&mut self, what: &str) -> Result<u16, OfpError> {
        let b = self.bytes(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub fn u32(&mut self, what: &str) -> Result<u32, OfpError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn u64(&mut self, what: &str) -> Result<u64, OfpError> {
        let b = self.bytes(8, what)?;
        let mut a = [0; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }
}

/// Big-endian writers on a byte vector.
pub(crate) trait Put {
    fn put_u8(&mut self, v: u8);
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
    /// Zeros up to the next multiple of 8 bytes from `start`.
    fn pad8_from(&mut self, start: usize);
    /// Writes `v` as a big-endian u16 at `at`.
    fn set_u16(&mut self, at: usize, v: u16);
}

impl Put for Vec<u8> {
    fn put_u8(&mut self, v: u8) {
        self.push(v);
    }
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_be_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
    fn pad8_from(&mut self, start: usize) {
        let len = self.len() - start;
        self.put_zeros((8 - len % 8) % 8);
    }
    fn set_u16(&mut self, at: usize, v: u16) {
        self[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
}

/// OpenFlow 1.0's 16-bit port numbers as the 32-bit numbers of 1.1+
/// (the reserved ports 0xff00.. move to 0xffffff00..).
pub fn port_from_of10(p: u16) -> u32 {
    if p >= 0xff00 {
        u32::from(p) + 0xffff_0000
    } else {
        u32::from(p)
    }
}

/// The reverse of [`port_from_of10`]; a number that does not fit becomes
/// OFPP_NONE's 16-bit form.
pub fn port_to_of10(p: u32) -> u16 {
    if p >= 0xffff_ff00 {
        (p - 0xffff_0000) as u16
    } else if p < 0xff00 {
        p as u16
    } else {
        0xffff
    }
}

#[cfg(test)]
mod tests;
