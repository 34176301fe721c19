//! Upcall sockets: one netlink-proto connection per handler, read through
//! its unsolicited-messages channel (upcalls answer no request).
//!
//! The connection reads its socket as fast as the runtime thread can, so
//! the socket's own buffer no longer bounds the backlog; a forwarding task
//! moves each upcall into a bounded queue per handler instead, and counts
//! what does not fit as lost (what the kernel would have done with a full
//! socket). An `ENOBUFS` overrun (the runtime thread fell behind the kernel)
//! reaches the channel as netlink-proto's synthetic `Overrun` message and is
//! counted too. Upcall sockets send nothing and stay apart from request
//! sockets, so a flood of upcalls never delays or drops a reply.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use messages::netlink::{OvsAttr, PacketAttr, PacketMessage};
use netlink_packet_core::{DecodeError, Emitable, NetlinkPayload, ParseableParametrized};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_proto::new_connection;
use netlink_proto::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};
use tokio::runtime::Handle;

/// Upcalls waiting for one handler, at most. OVS's upcall socket holds a
/// few hundred with the default receive buffer; this leaves room for a
/// burst while still bounding memory.
pub const UPCALL_QUEUE_LEN: usize = 1024;

/// What an upcall socket receives: an `ovs_packet` message, or why one
/// could not be parsed. Parsing never fails at the connection, so a bad
/// message is counted here rather than dropped silently by the codec.
#[derive(Debug)]
pub enum UpcallPayload {
    Packet(PacketMessage),
    Malformed(DecodeError),
}

impl GenlFamily for UpcallPayload {
    fn family_name() -> &'static str {
        PacketAttr::FAMILY
    }
    fn command(&self) -> u8 {
        match self {
            UpcallPayload::Packet(p) => p.cmd,
            UpcallPayload::Malformed(_) => 0,
        }
    }
    fn version(&self) -> u8 {
        PacketAttr::VERSION
    }
}

/// Upcall sockets never send; a message still needs a wire form to ride a
/// netlink-proto connection. A malformed one is written as an empty
/// `ovs_header`.
impl Emitable for UpcallPayload {
    fn buffer_len(&self) -> usize {
        match self {
            UpcallPayload::Packet(p) => p.buffer_len(),
            UpcallPayload::Malformed(_) => 4,
        }
    }
    fn emit(&self, buffer: &mut [u8]) {
        match self {
            UpcallPayload::Packet(p) => p.emit(buffer),
            UpcallPayload::Malformed(_) => buffer[..4].fill(0),
        }
    }
}

impl ParseableParametrized<[u8], GenlHeader> for UpcallPayload {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(match PacketMessage::parse_with_param(buf, header) {
            Ok(p) => UpcallPayload::Packet(p),
            Err(e) => UpcallPayload::Malformed(e),
        })
    }
}

/// Losses and rejects on the upcall path, shared by all handlers.
#[derive(Debug, Default)]
pub struct UpcallCounters {
    /// `ENOBUFS` overruns of an upcall socket (each loses one or more).
    pub overruns: AtomicU64,
    /// Upcalls dropped because their handler's queue was full.
    pub queue_drops: AtomicU64,
    /// Messages that did not parse as `ovs_packet` messages.
    pub malformed: AtomicU64,
}

/// One handler's upcall socket: its netlink port id (what the kernel is
/// told to send to) and the queue its forwarding task fills.
pub struct UpcallSocket {
    port_id: u32,
    queue: Mutex<Receiver<PacketMessage>>,
}

impl UpcallSocket {
    /// Opens a socket whose connection and forwarding task run on `runtime`.
    pub fn open(runtime: &Handle, counters: Arc<UpcallCounters>) -> io::Result<UpcallSocket> {
        let _entered = runtime.enter();
        let (mut connection, _handle, mut unsolicited) =
            new_connection::<GenlMessage<UpcallPayload>>(NETLINK_GENERIC)?;
        let socket = connection.socket_mut().socket_mut();
        socket.bind_auto()?;
        let mut addr = SocketAddr::new(0, 0);
        socket.get_address(&mut addr)?;
        runtime.spawn(connection);
        let (tx, rx) = sync_channel(UPCALL_QUEUE_LEN);
        runtime.spawn(async move {
            while let Some((message, _)) = unsolicited.next().await {
                match message.payload {
                    NetlinkPayload::InnerMessage(genl) => match genl.payload {
                        UpcallPayload::Packet(p) => match tx.try_send(p) {
                            Ok(()) => {}
                            Err(TrySendError::Full(_)) => {
                                counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                            }
                            Err(TrySendError::Disconnected(_)) => break,
                        },
                        UpcallPayload::Malformed(_) => {
                            counters.malformed.fetch_add(1, Ordering::Relaxed);
                        }
                    },
                    NetlinkPayload::Overrun(_) => {
                        counters.overruns.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
        Ok(UpcallSocket {
            port_id: addr.port_number(),
            queue: Mutex::new(rx),
        })
    }

    pub fn port_id(&self) -> u32 {
        self.port_id
    }

    /// Waits up to `timeout` for a first upcall, then takes whatever else is
    /// queued, `max` in all. Returns `Ok(false)` once the socket is gone.
    pub fn recv(
        &self,
        max: usize,
        timeout: Duration,
        out: &mut Vec<PacketMessage>,
    ) -> Result<bool, io::Error> {
        let queue = self
            .queue
            .lock()
            .map_err(|_| io::Error::other("upcall queue lock poisoned"))?;
        if max == 0 {
            return Ok(true);
        }
        match queue.recv_timeout(timeout) {
            Ok(p) => out.push(p),
            Err(RecvTimeoutError::Timeout) => return Ok(true),
            Err(RecvTimeoutError::Disconnected) => return Ok(false),
        }
        for _ in 1..max {
            match queue.try_recv() {
                Ok(p) => out.push(p),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return Ok(false),
            }
        }
        Ok(true)
    }
}
