//! Tunnel devices made over rtnetlink in the daemon's network namespace
//! ([`messages::netlink::tunnel_link`]), as OVS's `dpif-netlink-rtnl`:
//! one request on a socket of its own, answered before the next. Port
//! additions and removals are rare; nothing here is on a hot path.

use messages::netlink::tunnel_link::{
    create_request, delete_request, get_request, parse_replies, LinkReply, TunnelLink,
};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// The first answer to `request`: an acknowledgement or a device. An
/// I/O failure is its errno.
fn exchange(request: &[u8]) -> Result<LinkReply, i32> {
    let errno = |e: std::io::Error| e.raw_os_error().unwrap_or(libc::EIO);
    let mut socket = Socket::new(NETLINK_ROUTE).map_err(errno)?;
    socket.bind_auto().map_err(errno)?;
    socket
        .send_to(request, &SocketAddr::new(0, 0), 0)
        .map_err(errno)?;
    let mut buf = Vec::with_capacity(1 << 16);
    loop {
        buf.clear();
        socket.recv(&mut buf, 0).map_err(errno)?;
        if let Some(reply) = parse_replies(&buf).into_iter().next() {
            return Ok(reply);
        }
    }
}

fn acked(reply: LinkReply) -> Result<(), i32> {
    match reply {
        LinkReply::Ack(r) => r,
        LinkReply::Link { .. } => Ok(()),
    }
}

/// Makes device `name` for `link`, up; `EEXIST` if a device has the name.
pub fn create(name: &str, link: &TunnelLink) -> Result<(), i32> {
    acked(exchange(&create_request(name, link, 1))?)
}

/// Deletes device `name`.
pub fn delete(name: &str) -> Result<(), i32> {
    acked(exchange(&delete_request(name, 1))?)
}

/// What device `name` is: `Some` for a tunnel device made as [`create`]
/// makes one, `None` for any other device; `ENODEV` if there is none.
pub fn get(name: &str) -> Result<Option<TunnelLink>, i32> {
    match exchange(&get_request(name, 1))? {
        LinkReply::Ack(Err(e)) => Err(e),
        LinkReply::Ack(Ok(())) => Ok(None),
        LinkReply::Link { tunnel, .. } => Ok(tunnel),
    }
}
