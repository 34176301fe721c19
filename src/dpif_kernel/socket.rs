//! The batch path: a blocking generic netlink socket that sends many
//! requests in one `sendmsg` and matches every error to its request by
//! sequence number.
//!
//! No request asks for an acknowledgement (`NLM_F_ACK`). The kernel
//! handles a generic netlink datagram's requests in order within the
//! sender's own `sendmsg` (the `ovs_*` families answer synchronously) and
//! answers a request without the flag only when it fails, so when `sendmsg`
//! returns, every error message of the batch is queued on the socket:
//! reading until the socket is empty (without waiting) collects them, and
//! a request without one succeeded. An empty socket answers that read at
//! once, where an acknowledgement was a kernel message to build, queue and
//! copy out per batch (and one per request before that: a kernel message
//! and a `recvmsg` per op, two per flow setup). A lost error message (the
//! socket's buffer full) shows as `ENOBUFS` on the read, and the batch
//! then fails whole.
//!
//! Flow puts, deletes and executes go out in batches of up to a send
//! buffer's worth, from whichever thread calls `operate`, and the caller
//! waits for exactly that batch's answers. netlink-proto would add a
//! runtime hop and a channel per request and pick the datagram size
//! itself, so this path talks to netlink-sys directly, and the requests
//! are written straight into one reused send buffer
//! (`messages::netlink::writer`).

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLM_F_ACK, NLM_F_DUMP};
use netlink_packet_generic::GenlHeader;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket};

use messages::netlink::{OvsAttr, OvsMessage};

/// Largest batch written with one `sendmsg`; the kernel refuses a write
/// larger than the socket's send buffer.
const MAX_BATCH_BYTES: usize = 128 * 1024;
/// Receive buffer for one datagram of answers.
const RECV_BUF: usize = 64 * 1024;
/// Length of `struct nlmsghdr`.
const NLMSG_HDRLEN: usize = 16;

/// One serialized request; its sequence number is filled in at send time.
pub struct Request {
    bytes: Vec<u8>,
}

/// The kernel's answer to one request: success, or the errno it refused it
/// with.
pub type Answer = Result<(), i32>;

/// Counters of the batch path.
#[derive(Debug, Default)]
pub struct TxCounters {
    pub sendmsg_calls: AtomicU64,
    pub ops: AtomicU64,
    /// `recvmsg` calls reading answers.
    pub recvmsg_calls: AtomicU64,
}

pub struct BatchSocket {
    socket: Socket,
    seq: u32,
    /// The answers' receive buffer.
    buf: Vec<u8>,
    /// The requests' send buffer, reused.
    out: Vec<u8>,
}

/// Serializes an OVS family message addressed to `family_id`, asking for
/// an acknowledgement so that every request gets exactly one answer.
pub fn request<A: OvsAttr>(family_id: u16, msg: OvsMessage<A>, flags: u16) -> Request {
    Request {
        bytes: msg.into_request(family_id, flags),
    }
}

fn invalid(what: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn ne_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

impl BatchSocket {
    pub fn new() -> io::Result<BatchSocket> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        // Errors carry only the header of the failed request, not all of it.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        Ok(BatchSocket {
            socket,
            seq: 1,
            buf: Vec::with_capacity(RECV_BUF),
            out: Vec::new(),
        })
    }

    /// Sends `n` requests, each appended to the send buffer by
    /// `write(i, buffer)`, in as few `sendmsg` calls as the size limit
    /// allows, and returns one answer per request, in order.
    pub fn transact(
        &mut self,
        n: usize,
        mut write: impl FnMut(usize, &mut Vec<u8>),
        counters: &TxCounters,
    ) -> io::Result<Vec<Answer>> {
        let mut answers = Vec::with_capacity(n);
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        // The first request of the batch being written.
        let mut first = 0;
        for i in 0..n {
            let at = out.len();
            write(i, &mut out);
            if out.len() > MAX_BATCH_BYTES && i > first {
                // Request i goes in the next batch.
                let next = out.split_off(at);
                answers.extend(self.send_batch(&mut out, i - first, counters)?);
                out.clear();
                out.extend_from_slice(&next);
                first = i;
            }
        }
        if n > first {
            answers.extend(self.send_batch(&mut out, n - first, counters)?);
        }
        self.out = out;
        Ok(answers)
    }

    /// Numbers the `count` requests in `out` and sends them in one
    /// `sendmsg`; their answers, in order.
    fn send_batch(
        &mut self,
        out: &mut [u8],
        count: usize,
        counters: &TxCounters,
    ) -> io::Result<Vec<Answer>> {
        let first_seq = self.seq;
        let mut off = 0;
        for i in 0..count {
            let len = ne_u32(out, off).unwrap_or(0) as usize;
            out[off + 8..off + 12].copy_from_slice(&first_seq.wrapping_add(i as u32).to_ne_bytes());
            // No acknowledgement: only errors are answered (see the
            // module's doc).
            let flags = u16::from_ne_bytes([out[off + 6], out[off + 7]]) & !NLM_F_ACK;
            out[off + 6..off + 8].copy_from_slice(&flags.to_ne_bytes());
            off += (len + 3) & !3;
        }
        self.seq = first_seq.wrapping_add(count as u32);
        self.socket.send(out, 0)?;
        counters.sendmsg_calls.fetch_add(1, Ordering::Relaxed);
        counters.ops.fetch_add(count as u64, Ordering::Relaxed);

        // Every error message of the batch is queued by now: read them
        // until the socket is empty.
        let mut answers: Vec<Answer> = vec![Ok(()); count];
        loop {
            self.buf.clear();
            let read = self.socket.recv(&mut self.buf, libc::MSG_DONTWAIT);
            counters.recvmsg_calls.fetch_add(1, Ordering::Relaxed);
            let n = match read {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let data = &self.buf[..n.min(self.buf.len())];
            let mut off = 0;
            while off + NLMSG_HDRLEN <= data.len() {
                let len = ne_u32(data, off).unwrap_or(0) as usize;
                if len < NLMSG_HDRLEN || off + len > data.len() {
                    return Err(invalid(format!(
                        "netlink answer with bad length {len} at offset {off} of {}",
                        data.len()
                    )));
                }
                let msg = &data[off..off + len];
                off += (len + 3) & !3;
                let kind = u16::from_ne_bytes([msg[4], msg[5]]);
                let seq = ne_u32(msg, 8).unwrap_or(0);
                let idx = seq.wrapping_sub(first_seq) as usize;
                if idx >= count || kind != NLMSG_ERROR {
                    // An answer to an earlier batch that failed midway.
                    continue;
                }
                let code = ne_u32(msg, NLMSG_HDRLEN)
                    .ok_or_else(|| invalid(format!("short netlink answer of {len} bytes")))?
                    as i32;
                if code != 0 {
                    answers[idx] = Err(-code);
                }
            }
        }
        Ok(answers)
    }
}

/// Length of `struct genlmsghdr`.
const GENL_HDRLEN: usize = 4;
/// Receive buffer of a reply socket: dumps fill datagrams of up to 32 KiB.
const REPLY_BUF: usize = 64 * 1024;

/// A blocking generic netlink socket for requests answered with messages:
/// flow dumps (many messages over many datagrams) and gets by ufid. Read
/// on the caller's thread, straight from a reused buffer: a revalidator's
/// dump costs no runtime hop and no copy per flow.
pub struct ReplySocket {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl ReplySocket {
    pub fn new() -> io::Result<ReplySocket> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        socket.set_cap_ack(true)?;
        Ok(ReplySocket {
            socket,
            seq: 1,
            buf: Vec::with_capacity(REPLY_BUF),
        })
    }

    /// Sends `req` and hands each message of the answer to `visit`, as its
    /// genetlink header and the bytes after it, until
    /// the answer ends (`NLMSG_DONE` of a dump, the acknowledgement of a
    /// request). `Ok(Err(errno))`: the kernel refused the request.
    pub fn exchange(
        &mut self,
        mut req: Request,
        mut visit: impl FnMut(GenlHeader, &[u8]),
    ) -> io::Result<Answer> {
        let seq = self.seq;
        self.seq = seq.wrapping_add(1);
        req.bytes[8..12].copy_from_slice(&seq.to_ne_bytes());
        self.socket.send(&req.bytes, 0)?;
        loop {
            self.buf.clear();
            let n = self.socket.recv(&mut self.buf, 0)?;
            let data = &self.buf[..n.min(self.buf.len())];
            let mut off = 0;
            while off + NLMSG_HDRLEN <= data.len() {
                let len = ne_u32(data, off).unwrap_or(0) as usize;
                if len < NLMSG_HDRLEN || off + len > data.len() {
                    return Err(invalid(format!(
                        "netlink answer with bad length {len} at offset {off} of {}",
                        data.len()
                    )));
                }
                let msg = &data[off..off + len];
                off += (len + 3) & !3;
                if ne_u32(msg, 8) != Some(seq) {
                    // The rest of an earlier answer that failed midway.
                    continue;
                }
                let kind = u16::from_ne_bytes([msg[4], msg[5]]);
                if kind == NLMSG_ERROR || kind == NLMSG_DONE {
                    let code = ne_u32(msg, NLMSG_HDRLEN)
                        .ok_or_else(|| invalid(format!("short netlink answer of {len} bytes")))?
                        as i32;
                    return Ok(if code == 0 { Ok(()) } else { Err(-code) });
                }
                if msg.len() < NLMSG_HDRLEN + GENL_HDRLEN {
                    return Err(invalid(format!(
                        "short generic netlink message of {len} bytes"
                    )));
                }
                let header = GenlHeader {
                    cmd: msg[NLMSG_HDRLEN],
                    version: msg[NLMSG_HDRLEN + 1],
                };
                visit(header, &msg[NLMSG_HDRLEN + GENL_HDRLEN..]);
            }
        }
    }
}

impl Request {
    /// This request as a dump: every object, answered up to `NLMSG_DONE`
    /// (no acknowledgement after it).
    pub fn into_dump(mut self) -> Request {
        let flags = u16::from_ne_bytes([self.bytes[6], self.bytes[7]]);
        let flags = (flags & !NLM_F_ACK) | NLM_F_DUMP;
        self.bytes[6..8].copy_from_slice(&flags.to_ne_bytes());
        self
    }
}
