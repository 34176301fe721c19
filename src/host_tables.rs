//! Native tunnelling's underlay from the host's tables: the IPv4 routes
//! of the main table and the neighbours through the underlay port's
//! device, dumped at start and followed by rtnetlink notifications (OVS's
//! `route-table.c` reads routes so; neighbours the host resolved are
//! taken too, so that a host's static or learned entry spares an ARP
//! exchange). `[native_tunnel] host_tables = true` turns it on.

use std::sync::Arc;

use actors::xlate::native_tunnel::NativeTunnel;
use messages::netlink::rtnl::{self, DumpKind, RtnlEvent};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

/// Starts a thread that dumps the host's routes and neighbours into `nt`
/// and then follows their changes, for the device `dev` only. Failing to
/// open the socket is an error; a failure later is logged and stops the
/// following (what was read stays).
pub fn follow(nt: Arc<NativeTunnel>, dev: String) -> std::io::Result<()> {
    let mut socket = Socket::new(NETLINK_ROUTE)?;
    socket.bind(&SocketAddr::new(
        0,
        rtnl::RTMGRP_IPV4_ROUTE | rtnl::RTMGRP_NEIGH,
    ))?;
    std::thread::Builder::new()
        .name("host-tables".into())
        .spawn(move || {
            let kernel = SocketAddr::new(0, 0);
            let mut buf = Vec::with_capacity(1 << 16);
            for (seq, kind) in [(1, DumpKind::Routes), (2, DumpKind::Neighbours)] {
                if let Err(e) = socket.send_to(&rtnl::dump_request(kind, seq), &kernel, 0) {
                    tracing::warn!(error = %e, ?kind, "host table dump not sent");
                    continue;
                }
                // Notifications that come meanwhile are taken as well.
                loop {
                    buf.clear();
                    match socket.recv(&mut buf, 0) {
                        Ok(_) => {
                            if apply(&nt, &dev, &rtnl::parse(&buf)) {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, ?kind, "host table dump failed");
                            break;
                        }
                    }
                }
            }
            loop {
                buf.clear();
                match socket.recv(&mut buf, 0) {
                    Ok(_) => {
                        apply(&nt, &dev, &rtnl::parse(&buf));
                    }
                    // Lost notifications: logged; the next ones still apply.
                    Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                        tracing::warn!("host table notifications lost (ENOBUFS)");
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "host table notifications stopped");
                        return;
                    }
                }
            }
        })?;
    Ok(())
}

/// Applies `events` about `dev` to `nt`; true at the end of a dump.
fn apply(nt: &NativeTunnel, dev: &str, events: &[RtnlEvent]) -> bool {
    let ifindex = crate::raw_socket::ifindex(dev).ok();
    let mut done = false;
    for e in events {
        match *e {
            RtnlEvent::Route {
                add,
                prefix,
                plen,
                gateway,
                oif,
            } if Some(oif) == ifindex => nt.host_route(add, prefix, plen, gateway),
            RtnlEvent::Neighbour {
                ip,
                mac: Some(mac),
                ifindex: i,
            } if Some(i) == ifindex => nt.learn(ip, mac),
            RtnlEvent::Done => done = true,
            _ => {}
        }
    }
    done
}
