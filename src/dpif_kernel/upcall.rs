//! Upcall sockets: one generic netlink socket per upcall queue, read
//! directly by the handler that takes its upcalls (OVS's `dpif_netlink_recv`).
//!
//! Nothing reads a socket ahead of its reader, so the kernel's socket
//! buffer is the bound of the upcall backlog, as in OVS: a full buffer
//! makes the kernel drop the upcall and count it in the datapath's
//! `n_lost`, and a sender pacing itself on the socket's queue sees the
//! backlog. The overrun reaches the reader as an `ENOBUFS` error, counted
//! here. Each upcall is a datagram of its own; a reader takes every one
//! that is ready, up to its `max`, with one `recvmmsg` into reused slots
//! (one receive call per batch instead of one per upcall, and none to
//! find the socket empty when it took fewer than it asked for), and they
//! are handed over in place, with no runtime thread or channel between
//! the socket and the translation.
//! Upcall sockets send nothing and stay apart from request sockets, so a
//! flood of upcalls never delays or drops a reply.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use netlink_packet_core::{NLMSG_DONE, NLMSG_ERROR, NLMSG_NOOP};
use netlink_packet_generic::GenlHeader;
use netlink_sys::{protocols::NETLINK_GENERIC, Socket, SocketAddr};

use crate::raw_socket::{self, RecvBatch};

/// Room for one upcall: a 64 KiB packet with its key and headers (as
/// OVS's receive buffer). A batch's slots take 4.25 MiB of address space,
/// of which a slot's first pages are touched by small frames.
const RECV_BUF: usize = 68 * 1024;
/// The socket's receive buffer, the upcall backlog's bound: 16 MiB (the
/// kernel doubles it), room for about 25 000 upcalls of small frames. OVS
/// asks for 4 MiB (`nl_sock_create`), which in the kernel VM lost up to a
/// third of an unpaced 20 000-flow burst; the kernel's default (about
/// 200 KiB) holds a few hundred upcalls. The memory is the kernel's, used
/// only while a backlog lasts.
const SOCKET_RCVBUF: libc::c_int = 16 * 1024 * 1024;
/// Length of `struct nlmsghdr` and of `struct genlmsghdr`.
const NLMSG_HDRLEN: usize = 16;
const GENL_HDRLEN: usize = 4;

/// Losses on the upcall path, shared by all handlers.
#[derive(Debug, Default)]
pub struct UpcallCounters {
    /// `ENOBUFS` overruns of an upcall socket (each loses one or more
    /// upcalls, which the kernel counts in `n_lost`).
    pub overruns: AtomicU64,
    /// Receive calls on the upcall sockets, empty ones included.
    pub recv_calls: AtomicU64,
    /// Waits for an empty upcall socket to become readable (`poll`).
    pub waits: AtomicU64,
    /// Upcalls longer than a receive slot, cut short and dropped.
    pub truncated: AtomicU64,
}

struct Reader {
    socket: Socket,
    slots: RecvBatch,
}

/// One upcall queue's socket: its netlink port id (what the kernel is
/// told to send to) and the socket with its receive buffer.
pub struct UpcallSocket {
    port_id: u32,
    reader: Mutex<Reader>,
    counters: Arc<UpcallCounters>,
}

impl UpcallSocket {
    pub fn open(counters: Arc<UpcallCounters>) -> io::Result<UpcallSocket> {
        let mut socket = Socket::new(NETLINK_GENERIC)?;
        socket.bind_auto()?;
        let mut addr = SocketAddr::new(0, 0);
        socket.get_address(&mut addr)?;
        socket.set_non_blocking(true)?;
        raw_socket::set_receive_buffer(&socket, SOCKET_RCVBUF)?;
        Ok(UpcallSocket {
            port_id: addr.port_number(),
            reader: Mutex::new(Reader {
                socket,
                slots: RecvBatch::new(RecvBatch::MAX_SLOTS, RECV_BUF),
            }),
            counters,
        })
    }

    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// Waits up to `timeout` for a first upcall, then reads whatever else
    /// is queued, `max` messages in all, handing each to `visit` as its
    /// genetlink header and the bytes after it.
    pub fn recv(
        &self,
        max: usize,
        timeout: Duration,
        mut visit: impl FnMut(GenlHeader, &[u8]),
    ) -> io::Result<()> {
        let mut reader = self
            .reader
            .lock()
            .map_err(|_| io::Error::other("upcall socket lock poisoned"))?;
        let Reader { socket, slots } = &mut *reader;
        let mut n = 0;
        let mut waited = false;
        let mut calls = 0;
        let mut truncated = 0;
        while n < max {
            calls += 1;
            let asked = max - n;
            match slots.recv(&*socket, asked) {
                Ok(0) => {
                    if n > 0 || waited {
                        break;
                    }
                    self.counters.waits.fetch_add(1, Ordering::Relaxed);
                    if !raw_socket::wait_readable(&*socket, timeout)? {
                        break;
                    }
                    waited = true;
                }
                Ok(got) => {
                    for i in 0..got {
                        match slots.get(i) {
                            Some(datagram) => n += each_message(datagram, &mut visit),
                            None => truncated += 1,
                        }
                    }
                    // Fewer than asked for: the socket was empty.
                    if got < asked.min(RecvBatch::MAX_SLOTS) {
                        break;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    self.counters.overruns.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.counters.recv_calls.fetch_add(calls, Ordering::Relaxed);
        if truncated > 0 {
            self.counters
                .truncated
                .fetch_add(truncated, Ordering::Relaxed);
        }
        Ok(())
    }
}

/// Hands each generic netlink message of a datagram to `visit`; returns
/// how many. Control messages (no-ops, errors, dump ends) are skipped:
/// nothing is asked on this socket.
fn each_message(data: &[u8], visit: &mut impl FnMut(GenlHeader, &[u8])) -> usize {
    let mut off = 0;
    let mut n = 0;
    while off + NLMSG_HDRLEN + GENL_HDRLEN <= data.len() {
        let len = u32::from_ne_bytes(data[off..off + 4].try_into().unwrap_or_default()) as usize;
        if len < NLMSG_HDRLEN || off + len > data.len() {
            break;
        }
        let msg = &data[off..off + len];
        off += (len + 3) & !3;
        let kind = u16::from_ne_bytes([msg[4], msg[5]]);
        if matches!(kind, NLMSG_NOOP | NLMSG_ERROR | NLMSG_DONE) || len < NLMSG_HDRLEN + GENL_HDRLEN
        {
            continue;
        }
        let header = GenlHeader {
            cmd: msg[NLMSG_HDRLEN],
            version: msg[NLMSG_HDRLEN + 1],
        };
        visit(header, &msg[NLMSG_HDRLEN + GENL_HDRLEN..]);
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(kind: u16, cmd: u8, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + GENL_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&[cmd, 1, 0, 0]);
        m.extend_from_slice(payload);
        while m.len() % 4 != 0 {
            m.push(0);
        }
        m
    }

    #[test]
    fn datagrams_split_into_messages_and_malformed_ends_are_dropped() {
        let mut data = message(0x20, 1, b"abc");
        data.extend(message(NLMSG_ERROR, 0, &[0; 4]));
        data.extend(message(0x20, 2, b"defgh"));
        let mut seen = Vec::new();
        let n = each_message(&data, &mut |h, p| seen.push((h.cmd, p.to_vec())));
        assert_eq!(n, 2);
        assert_eq!(seen[0], (1, b"abc".to_vec()));
        assert_eq!(&seen[1].1[..5], b"defgh");
        // A length running past the end stops the walk; no panic.
        let mut bad = message(0x20, 1, b"abc");
        bad[0..4].copy_from_slice(&0xffffu32.to_ne_bytes());
        assert_eq!(each_message(&bad, &mut |_, _| {}), 0);
        for cut in 0..data.len() {
            let _ = each_message(&data[..cut], &mut |_, _| {});
        }
    }
}
