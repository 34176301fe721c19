//! Control requests over netlink-proto: family id resolution, datapath and
//! vport commands, flow dumps.
//!
//! netlink-proto matches every reply to its request (by sequence number and
//! port), which is what these one-at-a-time requests want. Its connections
//! are futures, so a [`NetlinkThread`] owned by the dpif runs them on a small
//! single-threaded tokio runtime, and the blocking `Dpif` calls wait on the
//! reply stream (a runtime-agnostic channel) with `futures::executor`.
//!
//! Messages cross the runtime thread as [`Deferred`] payloads: it only
//! frames and copies them, and the thread that asked (a revalidator
//! dumping thousands of flows, a receiver reading upcalls) parses them.

use std::fmt::Debug;
use std::io;
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use futures::channel::oneshot;
use futures::StreamExt;
use netlink_packet_core::{
    DecodeError, Emitable, NetlinkHeader, NetlinkMessage, NetlinkPayload, ParseableParametrized,
    NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_generic::constants::GENL_ID_CTRL;
use netlink_packet_generic::ctrl::nlas::GenlCtrlAttrs;
use netlink_packet_generic::ctrl::{GenlCtrl, GenlCtrlCmd};
use netlink_packet_generic::{GenlFamily, GenlHeader, GenlMessage};
use netlink_proto::sys::{protocols::NETLINK_GENERIC, AsyncSocket, SocketAddr};
use netlink_proto::{new_connection, ConnectionHandle};
use tokio::runtime::Handle;

/// A thread running a single-threaded tokio runtime that drives the
/// netlink-proto connections (control and upcall sockets) of one dpif.
/// Dropping it stops the runtime, which closes those sockets.
pub struct NetlinkThread {
    handle: Handle,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl NetlinkThread {
    /// Starts the runtime on a thread named `name`.
    pub fn start(name: &str) -> io::Result<NetlinkThread> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()?;
        let handle = runtime.handle().clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Spawned connection tasks run while this waits; a dropped
                // sender ends the wait as well as a sent stop.
                let _ = runtime.block_on(stopped);
            })?;
        Ok(NetlinkThread {
            handle,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }
}

impl Drop for NetlinkThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A generic netlink payload parsed only when asked.
#[derive(Debug)]
pub enum Deferred<F> {
    /// A message to send.
    Message(F),
    /// A message as received: its genetlink header and the bytes after it.
    Received {
        header: GenlHeader,
        payload: Vec<u8>,
    },
}

impl<F: ParseableParametrized<[u8], GenlHeader>> Deferred<F> {
    pub fn parse(self) -> Result<F, DecodeError> {
        match self {
            Deferred::Message(m) => Ok(m),
            Deferred::Received { header, payload } => F::parse_with_param(&payload, header),
        }
    }
}

impl<F: GenlFamily> GenlFamily for Deferred<F> {
    fn family_name() -> &'static str {
        F::family_name()
    }
    fn command(&self) -> u8 {
        match self {
            Deferred::Message(m) => m.command(),
            Deferred::Received { header, .. } => header.cmd,
        }
    }
    fn version(&self) -> u8 {
        match self {
            Deferred::Message(m) => m.version(),
            Deferred::Received { header, .. } => header.version,
        }
    }
}

impl<F: Emitable> Emitable for Deferred<F> {
    fn buffer_len(&self) -> usize {
        match self {
            Deferred::Message(m) => m.buffer_len(),
            Deferred::Received { payload, .. } => payload.len(),
        }
    }
    fn emit(&self, buffer: &mut [u8]) {
        match self {
            Deferred::Message(m) => m.emit(buffer),
            Deferred::Received { payload, .. } => buffer.copy_from_slice(payload),
        }
    }
}

impl<F> ParseableParametrized<[u8], GenlHeader> for Deferred<F> {
    fn parse_with_param(buf: &[u8], header: GenlHeader) -> Result<Self, DecodeError> {
        Ok(Deferred::Received {
            header,
            payload: buf.to_vec(),
        })
    }
}

/// What the kernel answered to one control request: its reply payloads in
/// order, or the errno it refused the request with.
pub type ControlAnswer<F> = Result<Vec<F>, i32>;

/// Why a control request got no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{family}: the netlink connection closed before the kernel answered")]
    Closed { family: &'static str },
    #[error("{family}: receive buffer overrun on a request socket")]
    Overrun { family: &'static str },
    #[error("{family}: undecodable reply: {reason}")]
    Malformed {
        family: &'static str,
        reason: DecodeError,
    },
}

/// A netlink-proto connection carrying the messages of one generic netlink
/// family, on a socket of its own.
pub struct GenlConnection<F: Debug> {
    handle: ConnectionHandle<GenlMessage<Deferred<F>>>,
    family_id: u16,
    family: &'static str,
    /// A netlink socket runs one dump at a time (the kernel answers a
    /// second with EBUSY): concurrent callers take turns.
    dump: Mutex<()>,
}

impl<F> GenlConnection<F>
where
    F: GenlFamily + Emitable + ParseableParametrized<[u8], GenlHeader> + Debug + Send + Unpin,
    F: 'static,
{
    /// Opens a connection for family `family_id` and runs it on `runtime`.
    pub fn open(runtime: &Handle, family_id: u16) -> io::Result<GenlConnection<F>> {
        // The tokio socket registers with the runtime's reactor on creation.
        let _entered = runtime.enter();
        let (mut connection, handle, unsolicited) =
            new_connection::<GenlMessage<Deferred<F>>>(NETLINK_GENERIC)?;
        let socket = connection.socket_mut().socket_mut();
        socket.bind_auto()?;
        // An error carries only the failed request's header, not all of it.
        socket.set_cap_ack(true)?;
        socket.set_ext_ack(true)?;
        // Every request then ends with a message (ack, error or done), so a
        // connection that dies mid-request is told apart from a success.
        connection.set_forward_ack(true);
        connection.set_forward_done(true);
        // Control sockets join no multicast group: nothing unsolicited is
        // expected, and what comes anyway is discarded by the connection.
        drop(unsolicited);
        runtime.spawn(connection);
        Ok(GenlConnection {
            handle,
            family_id,
            family: F::family_name(),
            dump: Mutex::new(()),
        })
    }

    /// Sends one request (`NLM_F_ACK` is added unless it is a dump), waits
    /// for its complete answer and parses the replies.
    pub fn request(&self, payload: F, flags: u16) -> Result<ControlAnswer<F>, ControlError> {
        let family = self.family;
        Ok(match self.request_deferred(payload, flags)? {
            Ok(replies) => Ok(replies
                .into_iter()
                .map(Deferred::parse)
                .collect::<Result<Vec<F>, _>>()
                .map_err(|reason| ControlError::Malformed { family, reason })?),
            Err(errno) => Err(errno),
        })
    }

    /// Like [`GenlConnection::request`], leaving each reply to be parsed
    /// by the caller (one bad reply in a dump need not spoil the others).
    pub fn request_deferred(
        &self,
        payload: F,
        flags: u16,
    ) -> Result<ControlAnswer<Deferred<F>>, ControlError> {
        let closed = ControlError::Closed {
            family: self.family,
        };
        let mut genl = GenlMessage::from_payload(Deferred::Message(payload));
        genl.set_resolved_family_id(self.family_id);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags;
        let is_dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        if !is_dump {
            header.flags |= NLM_F_ACK;
        }
        let _turn = if is_dump {
            Some(self.dump.lock().unwrap_or_else(PoisonError::into_inner))
        } else {
            None
        };
        let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(genl));
        message.finalize();
        let mut replies = self
            .handle
            .request(message, SocketAddr::new(0, 0))
            .map_err(|_| closed)?;
        futures::executor::block_on(async {
            let mut payloads = Vec::new();
            while let Some(reply) = replies.next().await {
                match reply.payload {
                    NetlinkPayload::InnerMessage(genl) => payloads.push(genl.payload),
                    NetlinkPayload::Error(e) => {
                        return Ok(match e.code {
                            None => Ok(payloads),
                            Some(code) => Err(-code.get()),
                        })
                    }
                    NetlinkPayload::Done(_) => return Ok(Ok(payloads)),
                    NetlinkPayload::Overrun(_) => {
                        return Err(ControlError::Overrun {
                            family: self.family,
                        })
                    }
                    _ => {}
                }
            }
            Err(ControlError::Closed {
                family: self.family,
            })
        })
    }
}

/// Generic netlink's controller: resolves family names to ids.
pub struct FamilyResolver {
    ctrl: GenlConnection<GenlCtrl>,
}

impl FamilyResolver {
    pub fn open(runtime: &Handle) -> io::Result<FamilyResolver> {
        Ok(FamilyResolver {
            ctrl: GenlConnection::open(runtime, GENL_ID_CTRL)?,
        })
    }

    /// The id of generic netlink family `name`, or None if this kernel has
    /// no such family (module not loaded).
    pub fn resolve(&self, name: &str) -> io::Result<Option<u16>> {
        let answer = self
            .ctrl
            .request(
                GenlCtrl {
                    cmd: GenlCtrlCmd::GetFamily,
                    nlas: vec![GenlCtrlAttrs::FamilyName(name.to_string())],
                },
                0,
            )
            .map_err(io::Error::other)?;
        let replies = match answer {
            Ok(replies) => replies,
            Err(libc::ENOENT) => return Ok(None),
            Err(errno) => return Err(io::Error::from_raw_os_error(errno)),
        };
        replies
            .into_iter()
            .flat_map(|reply| reply.nlas)
            .find_map(|attr| match attr {
                GenlCtrlAttrs::FamilyId(id) => Some(Some(id)),
                _ => None,
            })
            .ok_or_else(|| io::Error::other(format!("no family id in the reply for {name}")))
    }
}
