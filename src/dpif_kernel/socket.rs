//! A blocking generic netlink socket that sends many requests in one
//! `sendmsg` and matches every reply, acknowledgement and error to its
//! request by sequence number.
//!
//! netlink-proto writes one message per send and hands kernel replies to
//! an unbounded channel; a batch of flow operations wants the opposite (one
//! write, the answers read back in order, no hidden queue), so this talks
//! to netlink-sys directly and uses the netlink-packet-* types only for
//! (de)serialization.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP,
    NLM_F_REQUEST,
};
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::GenlMessage;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use messages::netlink::{OvsAttr, OvsMessage};

/// Largest batch written with one `sendmsg`; the kernel refuses a write
/// larger than the socket's send buffer.
const MAX_BATCH_BYTES: usize = 128 * 1024;
/// Receive buffer for one datagram (a dump reply packs many messages).
const RECV_BUF: usize = 1 << 20;

/// One request of a transaction: the serialized message (sequence number
/// filled in at send time) and whether it is a dump.
pub struct Request {
    bytes: Vec<u8>,
    dump: bool,
}

/// What the kernel answered to one request: its replies (raw netlink
/// messages, header included), then success or an errno.
pub type Answer = Result<Vec<Vec<u8>>, i32>;

/// Counters of the batch path.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub sendmsg_calls: AtomicU64,
    pub ops: AtomicU64,
}

pub struct NlSocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

/// Serializes an OVS family message addressed to `family_id`.
pub fn request<A: OvsAttr>(family_id: u16, msg: OvsMessage<A>, flags: u16) -> Request {
    let mut genl = GenlMessage::from_payload(msg);
    genl.set_resolved_family_id(family_id);
    let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
    let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
    nl.finalize();
    let mut bytes = vec![0u8; nl.buffer_len()];
    nl.serialize(&mut bytes);
    Request { bytes, dump }
}

impl Request {
    fn size(&self) -> usize {
        self.bytes.len()
    }
}

impl NlSocket {
    pub fn new() -> io::Result<NlSocket> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        // Errors carry only the header of the failed request, not all of it.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        Ok(NlSocket {
            socket,
            seq: 1,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    /// This socket's netlink port id (what the kernel sends upcalls to).
    pub fn port_id(&self) -> io::Result<u32> {
        let mut addr = SocketAddr::new(0, 0);
        self.socket.get_address(&mut addr)?;
        Ok(addr.port_number())
    }

    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// Sends `reqs`, as few `sendmsg` calls as the size limit allows, and
    /// returns one answer per request, in order.
    pub fn transact(
        &mut self,
        reqs: Vec<Request>,
        counters: &TxCounters,
    ) -> io::Result<Vec<Answer>> {
        let mut answers = Vec::with_capacity(reqs.len());
        let mut batch: Vec<Request> = Vec::new();
        let mut bytes = 0;
        for r in reqs {
            if !batch.is_empty() && (bytes + r.size() > MAX_BATCH_BYTES || r.dump || batch[0].dump)
            {
                answers.extend(self.send_batch(std::mem::take(&mut batch), counters)?);
                bytes = 0;
            }
            bytes += r.size();
            batch.push(r);
        }
        if !batch.is_empty() {
            answers.extend(self.send_batch(batch, counters)?);
        }
        Ok(answers)
    }

    fn send_batch(
        &mut self,
        batch: Vec<Request>,
        counters: &TxCounters,
    ) -> io::Result<Vec<Answer>> {
        let first_seq = self.seq;
        let mut out = Vec::with_capacity(batch.iter().map(Request::size).sum());
        for (i, r) in batch.iter().enumerate() {
            let mut b = r.bytes.clone();
            b[8..12].copy_from_slice(&(first_seq.wrapping_add(i as u32)).to_ne_bytes());
            out.extend_from_slice(&b);
        }
        self.seq = first_seq.wrapping_add(batch.len() as u32);
        self.socket.send(&out, 0)?;
        counters.sendmsg_calls.fetch_add(1, Ordering::Relaxed);
        counters
            .ops
            .fetch_add(batch.len() as u64, Ordering::Relaxed);

        let mut answers: Vec<Option<Answer>> = vec![None; batch.len()];
        let mut replies: Vec<Vec<Vec<u8>>> = vec![Vec::new(); batch.len()];
        let mut pending = batch.len();
        while pending > 0 {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let data = &self.buf[..n.min(self.buf.len())];
            let mut off = 0;
            while off + 16 <= data.len() {
                let len =
                    u32::from_ne_bytes([data[off], data[off + 1], data[off + 2], data[off + 3]])
                        as usize;
                if len < 16 || off + len > data.len() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!(
                            "netlink reply with bad length {len} at offset {off} of {}",
                            data.len()
                        ),
                    ));
                }
                let msg = &data[off..off + len];
                off += (len + 3) & !3;
                let kind = u16::from_ne_bytes([msg[4], msg[5]]);
                let seq = u32::from_ne_bytes([msg[8], msg[9], msg[10], msg[11]]);
                let idx = seq.wrapping_sub(first_seq) as usize;
                if idx >= batch.len() || answers[idx].is_some() {
                    // A late answer to an earlier transaction that failed midway.
                    continue;
                }
                match kind {
                    NLMSG_ERROR => {
                        if msg.len() < 20 {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "short NLMSG_ERROR",
                            ));
                        }
                        let code = i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]]);
                        answers[idx] = Some(if code == 0 {
                            Ok(std::mem::take(&mut replies[idx]))
                        } else {
                            Err(-code)
                        });
                        // A dump is finished by DONE; its ACK comes after.
                        if !batch[idx].dump || code != 0 {
                            pending -= 1;
                        } else {
                            answers[idx] = None;
                        }
                    }
                    NLMSG_DONE => {
                        let code = if msg.len() >= 20 {
                            i32::from_ne_bytes([msg[16], msg[17], msg[18], msg[19]])
                        } else {
                            0
                        };
                        answers[idx] = Some(if code == 0 {
                            Ok(std::mem::take(&mut replies[idx]))
                        } else {
                            Err(-code)
                        });
                        pending -= 1;
                    }
                    _ => replies[idx].push(msg.to_vec()),
                }
            }
        }
        Ok(answers
            .into_iter()
            .map(|a| a.unwrap_or(Err(libc::EPROTO)))
            .collect())
    }

    /// The id of generic netlink family `name`, or None if the kernel has
    /// no such family (module not loaded).
    pub fn resolve_family(&mut self, name: &str) -> io::Result<Option<u16>> {
        let mut genl = GenlMessage::from_payload(GenlCtrl {
            cmd: GenlCtrlCmd::GetFamily,
            nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
        });
        genl.finalize();
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK;
        let mut nl = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        nl.finalize();
        let mut bytes = vec![0u8; nl.buffer_len()];
        nl.serialize(&mut bytes);
        let answers =
            self.transact(vec![Request { bytes, dump: false }], &TxCounters::default())?;
        let replies = match answers.into_iter().next() {
            Some(Ok(r)) => r,
            Some(Err(libc::ENOENT)) => return Ok(None),
            Some(Err(e)) => return Err(io::Error::from_raw_os_error(e)),
            None => return Err(io::Error::other("no answer to CTRL_CMD_GETFAMILY")),
        };
        for r in replies {
            let msg = NetlinkMessage::<GenlMessage<GenlCtrl>>::deserialize(&r)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
            if let NetlinkPayload::InnerMessage(g) = msg.payload {
                for a in g.payload.nlas {
                    if let GenlCtrlAttrs::FamilyId(id) = a {
                        return Ok(Some(id));
                    }
                }
            }
        }
        Err(io::Error::other(format!(
            "no family id in the reply for {name}"
        )))
    }
}

/// Parses a raw reply as a message of an OVS family.
pub fn parse_reply<A: OvsAttr>(raw: &[u8]) -> io::Result<OvsMessage<A>> {
    let msg = NetlinkMessage::<GenlMessage<OvsMessage<A>>>::deserialize(raw)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", A::FAMILY)))?;
    match msg.payload {
        NetlinkPayload::InnerMessage(g) => Ok(g.payload),
        other => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: unexpected reply {other:?}", A::FAMILY),
        )),
    }
}
