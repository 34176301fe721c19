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
//! sockets, so a flood of upcalls never delays or drops a reply. Messages
//! stay unparsed ([`Deferred`]) until the receiver thread takes them.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, TryRecvError, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use messages::netlink::PacketMessage;
use netlink_packet_core::NetlinkPayload;
use netlink_packet_generic::GenlMessage;
use netlink_proto::new_connection;
use netlink_proto::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};
use tokio::runtime::Handle;

use super::control::Deferred;

/// Upcalls waiting for one handler, at most. OVS's upcall socket holds a
/// few hundred with the default receive buffer; this leaves room for a
/// burst while still bounding memory.
pub const UPCALL_QUEUE_LEN: usize = 1024;

/// Losses and rejects on the upcall path, shared by all handlers.
#[derive(Debug, Default)]
pub struct UpcallCounters {
    /// `ENOBUFS` overruns of an upcall socket (each loses one or more).
    pub overruns: AtomicU64,
    /// Upcalls dropped because their handler's queue was full.
    pub queue_drops: AtomicU64,
}

/// An upcall as it waits in a handler's queue: not yet parsed.
pub type RawUpcall = Deferred<PacketMessage>;

/// One handler's upcall socket: its netlink port id (what the kernel is
/// told to send to) and the queue its forwarding task fills.
pub struct UpcallSocket {
    port_id: u32,
    queue: Mutex<Receiver<RawUpcall>>,
}

impl UpcallSocket {
    /// Opens a socket whose connection and forwarding task run on `runtime`.
    pub fn open(runtime: &Handle, counters: Arc<UpcallCounters>) -> io::Result<UpcallSocket> {
        let _entered = runtime.enter();
        let (mut connection, _handle, mut unsolicited) =
            new_connection::<GenlMessage<RawUpcall>>(NETLINK_GENERIC)?;
        let socket = connection.socket_mut().socket_mut();
        socket.bind_auto()?;
        let mut addr = SocketAddr::new(0, 0);
        socket.get_address(&mut addr)?;
        runtime.spawn(connection);
        let (tx, rx) = sync_channel(UPCALL_QUEUE_LEN);
        runtime.spawn(async move {
            while let Some((message, _)) = unsolicited.next().await {
                match message.payload {
                    NetlinkPayload::InnerMessage(genl) => match tx.try_send(genl.payload) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            counters.queue_drops.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(TrySendError::Disconnected(_)) => break,
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
        out: &mut Vec<RawUpcall>,
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
