//! Continuations (`controller(pause)`): the frozen pipeline an
//! NXT_PACKET_IN2 carries in its NXPINT_CONTINUATION property, and the
//! NXT_RESUME a controller sends it back in, as OVS's `ofp-packet.c` lays
//! them out. The continuation is opaque to controllers, but laid out as
//! OVS's so that `ovs-ofctl monitor` can print it.

use super::actions::{decode_actions, encode_action};
use super::{nxm, ErrorKind as E, OfpError, Put, Reader, NX_VENDOR_ID};
use crate::ofp::{Match, OfAction};

/// NXT_RESUME's Nicira subtype.
pub const NXT_RESUME: u32 = 28;

// NXT_PACKET_IN2 (and NXT_RESUME) properties.
const NXPINT_PACKET: u16 = 0;
const NXPINT_FULL_LEN: u16 = 1;
const NXPINT_BUFFER_ID: u16 = 2;
const NXPINT_TABLE_ID: u16 = 3;
const NXPINT_COOKIE: u16 = 4;
const NXPINT_REASON: u16 = 5;
const NXPINT_METADATA: u16 = 6;
const NXPINT_USERDATA: u16 = 7;
pub(crate) const NXPINT_CONTINUATION: u16 = 8;

// The continuation's own properties.
const NXCPT_BRIDGE: u16 = 0x8000;
const NXCPT_STACK: u16 = 0x8001;
const NXCPT_MIRRORS: u16 = 0x8002;
const NXCPT_CONNTRACKED: u16 = 0x8003;
const NXCPT_TABLE_ID: u16 = 0x8004;
const NXCPT_COOKIE: u16 = 0x8005;
const NXCPT_ACTIONS: u16 = 0x8006;
const NXCPT_ACTION_SET: u16 = 0x8007;
const NXCPT_ODP_PORT: u16 = 0x8008;

/// What a paused translation needs to go on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Continuation {
    /// The bridge instance that paused (NXCPT_BRIDGE): one of another
    /// bridge, or of a daemon since restarted, is stale.
    pub bridge: [u8; 16],
    /// The NXM stack, bottom first (right-aligned values).
    pub stack: Vec<u128>,
    /// The packet had been through the connection tracker.
    pub conntracked: bool,
    /// What each level of the translation had left, innermost first.
    pub levels: Vec<ContinuationLevel>,
    /// The action set.
    pub action_set: Vec<OfAction>,
    /// The datapath port the packet came in on (0: not known).
    pub odp_port: u32,
}

/// One level's remaining actions, in the table and under the rule cookie
/// they ran in (OVS's `unroll_xlate` between them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContinuationLevel {
    pub table: u8,
    pub cookie: u64,
    pub actions: Vec<OfAction>,
}

/// An NXT_RESUME: the packet (perhaps changed by the controller), its
/// metadata, and the continuation of the packet-in it answers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    pub packet: Vec<u8>,
    /// The NXPINT_METADATA match (in_port, registers, metadata, tunnel,
    /// conntrack fields).
    pub metadata: Match,
    /// None: the message carried no continuation.
    pub continuation: Option<Continuation>,
}

/// Appends one property: type, length, body, padding to 8 bytes.
pub(crate) fn put_prop(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    let s = out.len();
    out.put_u16(kind);
    out.put_u16(4 + body.len() as u16);
    out.extend_from_slice(body);
    out.pad8_from(s);
}

/// Appends a property whose body is nested (properties or actions): OVS
/// starts the body 8-aligned, after 4 bytes of padding.
fn put_nested(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
    let mut padded = vec![0; 4];
    padded.extend_from_slice(body);
    put_prop(out, kind, &padded);
}

/// A 64-bit property: 8-aligned after 4 bytes of padding (OVS's
/// `ofpprop_put_be64`).
fn put_u64_prop(out: &mut Vec<u8>, kind: u16, v: u64) {
    let mut body = vec![0; 4];
    body.extend_from_slice(&v.to_be_bytes());
    put_prop(out, kind, &body);
}

fn encode_action_list(version: u8, actions: &[OfAction]) -> Result<Vec<u8>, OfpError> {
    let mut out = Vec::new();
    for a in actions {
        encode_action(version, a, &mut out)?;
    }
    Ok(out)
}

/// The NXPINT_CONTINUATION property of `c`, for a `version` connection
/// (OVS's `ofputil_put_packet_in_private`). Fails if an action cannot be
/// written in `version`.
pub fn encode_continuation(version: u8, c: &Continuation) -> Result<Vec<u8>, OfpError> {
    let mut body = Vec::new();
    body.put_zeros(4);
    put_prop(&mut body, NXCPT_BRIDGE, &c.bridge);
    for v in c.stack.iter().rev() {
        put_prop(&mut body, NXCPT_STACK, &v.to_be_bytes());
    }
    if c.conntracked {
        put_prop(&mut body, NXCPT_CONNTRACKED, &[]);
    }
    // Table and cookie are written when they change, from 0 (OVS's
    // grouping of the actions by `unroll_xlate`).
    let (mut table, mut cookie) = (0, 0);
    for level in c.levels.iter().filter(|l| !l.actions.is_empty()) {
        if level.table != table {
            put_prop(&mut body, NXCPT_TABLE_ID, &[level.table]);
            table = level.table;
        }
        if level.cookie != cookie {
            put_u64_prop(&mut body, NXCPT_COOKIE, level.cookie);
            cookie = level.cookie;
        }
        put_nested(
            &mut body,
            NXCPT_ACTIONS,
            &encode_action_list(version, &level.actions)?,
        );
    }
    if !c.action_set.is_empty() {
        put_nested(
            &mut body,
            NXCPT_ACTION_SET,
            &encode_action_list(version, &c.action_set)?,
        );
    }
    if c.odp_port != 0 {
        put_prop(&mut body, NXCPT_ODP_PORT, &c.odp_port.to_be_bytes());
    }
    let mut out = Vec::new();
    put_prop(&mut out, NXPINT_CONTINUATION, &body);
    Ok(out)
}

/// Splits a property list into `(type, body)`s, as OVS's `ofpprop_pull`
/// checks them (OFPBPC_BAD_LEN for a length that does not fit).
fn props(buf: &[u8]) -> Result<Vec<(u16, &[u8])>, OfpError> {
    let mut r = Reader::new(buf, E::PropBadLen);
    let mut out = Vec::new();
    while !r.is_empty() {
        let kind = r.u16("property type")?;
        let len = usize::from(r.u16("property length")?);
        if len < 4 || len - 4 > r.remaining() {
            return Err(OfpError::new(
                E::PropBadLen,
                format!("property {kind:#x} has length {len}"),
            ));
        }
        let body = r.bytes(len - 4, "property body")?;
        let pad = (8 - len % 8) % 8;
        r.skip(pad.min(r.remaining()), "property padding")?;
        out.push((kind, body));
    }
    Ok(out)
}

/// The body of a nested property, after its 4 bytes of padding.
fn nested<'a>(body: &'a [u8], what: &str) -> Result<&'a [u8], OfpError> {
    body.get(4..)
        .ok_or_else(|| OfpError::new(E::PropBadLen, format!("{what}: shorter than its padding")))
}

fn fixed<const N: usize>(body: &[u8], what: &str) -> Result<[u8; N], OfpError> {
    body.try_into().map_err(|_| {
        OfpError::new(
            E::PropBadLen,
            format!("{what}: {} bytes, not {N}", body.len()),
        )
    })
}

/// A 64-bit property's value, after its padding.
fn u64_prop(body: &[u8], what: &str) -> Result<u64, OfpError> {
    let b: [u8; 12] = fixed(body, what)?;
    Ok(u64::from_be_bytes(b[4..].try_into().expect("8 bytes")))
}

fn decode_action_list(version: u8, body: &[u8], what: &str) -> Result<Vec<OfAction>, OfpError> {
    let ins = decode_actions(version, nested(body, what)?, &Match::default())?;
    if ins.write_metadata.is_some() || ins.goto_table.is_some() {
        return Err(OfpError::new(
            E::ActionBadType,
            format!("{what}: an instruction among the actions"),
        ));
    }
    Ok(ins.apply)
}

/// Decodes a continuation (the body of NXPINT_CONTINUATION) as OVS's
/// `ofputil_decode_packet_in_private` does: unknown properties refused
/// (OFPBPC_BAD_TYPE), each action list decoded as the connection's
/// version has it.
pub fn decode_continuation(version: u8, buf: &[u8]) -> Result<Continuation, OfpError> {
    let mut c = Continuation::default();
    let (mut table, mut cookie) = (0, 0);
    for (kind, body) in props(nested(buf, "NXPINT_CONTINUATION")?)? {
        match kind {
            NXCPT_BRIDGE => c.bridge = fixed(body, "NXCPT_BRIDGE")?,
            NXCPT_STACK => {
                if body.len() > 16 {
                    return Err(OfpError::new(
                        E::PropBadLen,
                        format!("NXCPT_STACK of {} bytes (at most 16)", body.len()),
                    ));
                }
                let v = body.iter().fold(0u128, |v, b| v << 8 | u128::from(*b));
                c.stack.insert(0, v);
            }
            // upcalld has no mirrors (its continuations name none; one
            // that does is another switch's, and stale).
            NXCPT_MIRRORS => {
                fixed::<4>(body, "NXCPT_MIRRORS")?;
            }
            NXCPT_CONNTRACKED => c.conntracked = true,
            NXCPT_TABLE_ID => table = fixed::<1>(body, "NXCPT_TABLE_ID")?[0],
            NXCPT_COOKIE => cookie = u64_prop(body, "NXCPT_COOKIE")?,
            NXCPT_ACTIONS => c.levels.push(ContinuationLevel {
                table,
                cookie,
                actions: decode_action_list(version, body, "NXCPT_ACTIONS")?,
            }),
            NXCPT_ACTION_SET => {
                c.action_set = decode_action_list(version, body, "NXCPT_ACTION_SET")?
            }
            NXCPT_ODP_PORT => c.odp_port = u32::from_be_bytes(fixed(body, "NXCPT_ODP_PORT")?),
            k => {
                return Err(OfpError::new(
                    E::PropBadType,
                    format!("continuation property {k:#x}"),
                ))
            }
        }
    }
    Ok(c)
}

/// Decodes NXT_RESUME's properties (what follows the Nicira header), as
/// OVS's `decode_nx_packet_in2` with `loose` off: an unknown property is
/// OFPBPC_BAD_TYPE, a message without a packet OFPBRC_BAD_LEN.
pub fn decode_resume(version: u8, buf: &[u8]) -> Result<Resume, OfpError> {
    let mut resume = Resume::default();
    let mut full_len = None;
    for (kind, body) in props(buf)? {
        match kind {
            NXPINT_PACKET => resume.packet = body.to_vec(),
            NXPINT_FULL_LEN => full_len = Some(u32::from_be_bytes(fixed(body, "NXPINT_FULL_LEN")?)),
            // What the packet-in told the controller: checked, not needed
            // to resume (OVS's `handle_nxt_resume` does not read them).
            NXPINT_BUFFER_ID => {
                fixed::<4>(body, "NXPINT_BUFFER_ID")?;
            }
            NXPINT_TABLE_ID | NXPINT_REASON => {
                fixed::<1>(body, "NXPINT_TABLE_ID/REASON")?;
            }
            NXPINT_COOKIE => {
                u64_prop(body, "NXPINT_COOKIE")?;
            }
            NXPINT_METADATA => resume.metadata = nxm::decode(body, false)?.matches,
            NXPINT_USERDATA => {}
            NXPINT_CONTINUATION => resume.continuation = Some(decode_continuation(version, body)?),
            k => {
                return Err(OfpError::new(
                    E::PropBadType,
                    format!("NXT_RESUME property {k}"),
                ))
            }
        }
    }
    if resume.packet.is_empty() {
        return Err(OfpError::new(E::BadLen, "NXT_RESUME lacks a packet"));
    }
    if full_len.is_some_and(|n| (n as usize) < resume.packet.len()) {
        return Err(OfpError::new(
            E::BadLen,
            "NXT_RESUME claims a full length below the packet's",
        ));
    }
    Ok(resume)
}

/// An NXT_RESUME for `pin`'s packet and metadata with `continuation` (the
/// NXPINT_CONTINUATION property as the packet-in carried it), as
/// `ovs-ofctl monitor ... resume` sends it (OVS's `ofputil_encode_resume`).
pub fn encode_resume(version: u8, packet: &[u8], metadata: &Match, continuation: &[u8]) -> Vec<u8> {
    let mut out = vec![version, super::message::OFPT_VENDOR, 0, 0, 0, 0, 0, 0];
    out.put_u32(NX_VENDOR_ID);
    out.put_u32(NXT_RESUME);
    put_prop(&mut out, NXPINT_PACKET, packet);
    put_prop(&mut out, NXPINT_METADATA, &nxm::encode(metadata, true));
    out.extend_from_slice(continuation);
    let len = out.len() as u16;
    out.set_u16(2, len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openflow::{decode, DecodeState, Request, OFP10, OFP13};
    use crate::parse::rules::parse_rule;

    fn continuation() -> Continuation {
        let actions = |text: &str| parse_rule(text).unwrap().instructions.apply;
        Continuation {
            bridge: [7; 16],
            stack: vec![0x1234, 5],
            conntracked: true,
            levels: vec![
                ContinuationLevel {
                    table: 3,
                    cookie: 0x33,
                    actions: actions("actions=output:6,controller(pause)"),
                },
                ContinuationLevel {
                    table: 0,
                    cookie: 0,
                    actions: actions("actions=set_field:0x1/0x1->metadata,resubmit(,2)"),
                },
            ],
            action_set: actions("actions=output:3"),
            odp_port: 1,
        }
    }

    fn resume(version: u8, continuation: &[u8]) -> Result<Request, OfpError> {
        let mut metadata = Match::default();
        metadata.flow.in_port = 1;
        metadata.mask.in_port = u32::MAX;
        metadata.flow.regs[2] = 9;
        metadata.mask.regs[2] = u32::MAX;
        let msg = encode_resume(version, &[0xaa; 60], &metadata, continuation);
        decode(&msg, DecodeState::default()).map(|(_, r)| r)
    }

    #[test]
    fn continuations_come_back_in_nxt_resume_as_they_went() {
        for version in [OFP10, OFP13] {
            let c = continuation();
            let wire = encode_continuation(version, &c).unwrap();
            let Ok(Request::Resume(r)) = resume(version, &wire) else {
                panic!("not a resume")
            };
            assert_eq!(r.continuation.as_ref(), Some(&c));
            assert_eq!(r.packet, vec![0xaa; 60]);
            assert_eq!((r.metadata.flow.in_port, r.metadata.flow.regs[2]), (1, 9));
        }
    }

    #[test]
    fn bad_resumes_get_ovs_errors() {
        let wire = encode_continuation(OFP13, &continuation()).unwrap();
        // An unknown continuation property (after the bridge's).
        let mut unknown = wire.clone();
        let at = 8 + 24;
        unknown[at..at + 2].copy_from_slice(&0x8042u16.to_be_bytes());
        let err = resume(OFP13, &unknown).unwrap_err();
        assert_eq!(err.kind, E::PropBadType, "{err}");
        // A property longer than what is left.
        let mut long = wire.clone();
        long[2..4].copy_from_slice(&0x7000u16.to_be_bytes());
        assert_eq!(resume(OFP13, &long).unwrap_err().kind, E::PropBadLen);
        // Garbage for actions.
        let mut c = continuation();
        c.levels.truncate(1);
        c.action_set.clear();
        let mut garbage = encode_continuation(OFP13, &c).unwrap();
        let n = garbage.len();
        garbage[n - 8..].copy_from_slice(&[0xff; 8]);
        assert!(resume(OFP13, &garbage).is_err());
        // No packet.
        let msg = encode_resume(OFP13, &[], &Match::default(), &wire);
        assert_eq!(
            decode(&msg, DecodeState::default()).unwrap_err().kind,
            E::BadLen
        );
        // Every truncation is an error, never a panic.
        let full = encode_resume(OFP13, &[1; 20], &Match::default(), &wire);
        for n in 16..full.len() {
            let mut cut = full[..n].to_vec();
            cut[2..4].copy_from_slice(&(n as u16).to_be_bytes());
            let _ = decode(&cut, DecodeState::default());
        }
    }
}
