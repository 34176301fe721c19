//! Tunnel vports of the userspace datapath: one UDP socket per tunnel type
//! and port (`vxlan_sys_4789`, as OVS names them), in the daemon's network
//! namespace. Received datagrams are decapsulated into the inner frame and
//! its tunnel metadata (outer addresses, TOS, TTL and ports from the
//! socket's control messages); a frame output to the vport is
//! encapsulated with the packet's tunnel (from `set(tunnel(...))`) and
//! sent to its remote. The host's routing and neighbour tables (the
//! kernel's, through the socket) choose the underlay interface and next
//! hop; a remote they cannot reach is a counted send error, and the next
//! packet tries again.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};

use messages::flow::{Flow, FLOW_TNL_F_DONT_FRAGMENT};
use messages::tunnel::{decap, encap_header, DecapError, TunnelKind};

use rustix::net::sockopt::Ipv4PathMtuDiscovery;
use rustix::net::{AddressFamily, SocketType};

use super::port::RX_POLL;
use crate::raw_socket;

/// What a tunnel vport counts besides packets.
#[derive(Default)]
pub struct TunnelCounters {
    /// Datagrams whose tunnel header did not parse (dropped).
    pub rx_malformed: AtomicU64,
    /// Geneve packets with an unknown critical option (dropped, as OVS).
    pub rx_unknown_critical: AtomicU64,
    /// Outputs with no IPv4 remote in the packet's tunnel (dropped).
    pub tx_no_remote: AtomicU64,
    /// Sends the host refused: no route or neighbour for the remote,
    /// and the like (dropped; the next packet tries again).
    pub tx_unreachable: AtomicU64,
}

/// One tunnel vport's socket.
pub struct TunnelVport {
    pub kind: TunnelKind,
    pub udp_port: u16,
    sock: OwnedFd,
    pub counters: TunnelCounters,
}

impl TunnelVport {
    /// Binds the UDP port on every IPv4 address of the namespace.
    pub fn open(kind: TunnelKind, udp_port: u16) -> io::Result<TunnelVport> {
        use rustix::net::sockopt;
        let sock = raw_socket::socket(AddressFamily::INET, SocketType::DGRAM)?;
        sockopt::set_socket_reuseaddr(&sock, true)?;
        // The outer header's destination, TOS and TTL come with each
        // datagram as control messages.
        raw_socket::set_option(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, &1i32)?;
        sockopt::set_ip_recvtos(&sock, true)?;
        raw_socket::set_option(&sock, libc::IPPROTO_IP, libc::IP_RECVTTL, &1i32)?;
        raw_socket::set_receive_timeout(&sock, RX_POLL)?;
        raw_socket::bind_v4(&sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, udp_port))?;
        Ok(TunnelVport {
            kind,
            udp_port,
            sock,
            counters: TunnelCounters::default(),
        })
    }

    /// Receives one tunnel packet: `buf` becomes the inner frame and `md`
    /// (in_port already set) gets its tunnel. `Ok(false)` when nothing
    /// arrived within the poll interval (or at once if not `wait`);
    /// malformed packets are counted and skipped.
    pub fn recv(&self, buf: &mut Vec<u8>, md: &mut Flow, wait: bool) -> io::Result<bool> {
        let map = messages::tlv::current();
        loop {
            buf.resize(65_536, 0);
            let mut control = [0u64; 16];
            let Some(got) = raw_socket::recv_with_control(&self.sock, buf, &mut control, wait)?
            else {
                return Ok(false);
            };
            buf.truncate(got.len);
            let in_port = md.in_port;
            md.clear_tunnel();
            md.in_port = in_port;
            if let Some(from) = got.from {
                md.tun_src = u32::from(*from.ip());
                md.tun_tp_src = from.port();
            }
            md.tun_tp_dst = self.udp_port;
            for (level, kind, data) in raw_socket::control_messages(&control, got.control_len) {
                match (level, kind) {
                    // in_pktinfo: ifindex, then the local address (spec_dst), then the header's destination.
                    (libc::IPPROTO_IP, libc::IP_PKTINFO) if data.len() >= 12 => {
                        md.tun_dst = u32::from_be_bytes(data[8..12].try_into().expect("4 bytes"));
                    }
                    (libc::IPPROTO_IP, libc::IP_TOS) if !data.is_empty() => md.tun_tos = data[0],
                    (libc::IPPROTO_IP, libc::IP_TTL) if data.len() >= 4 => {
                        md.tun_ttl =
                            i32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as u8
                    }
                    _ => {}
                }
            }
            match decap(self.kind, buf, &map, md) {
                Ok(off) => {
                    buf.drain(..off);
                    return Ok(true);
                }
                Err(e) => {
                    let c = match e {
                        DecapError::Malformed(_) => &self.counters.rx_malformed,
                        DecapError::Geneve(_) => &self.counters.rx_unknown_critical,
                    };
                    c.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "tunnel packet dropped");
                    if !wait {
                        return Ok(false);
                    }
                }
            }
        }
    }

    /// Encapsulates `frame` with `tunnel` (a flow's tunnel fields) and
    /// sends it to the tunnel's remote, from its source address if it has
    /// one, with its TOS, TTL and DF.
    pub fn send(&self, frame: &[u8], tunnel: &Flow) -> io::Result<()> {
        if tunnel.tun_dst == 0 {
            self.counters.tx_no_remote.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let header = encap_header(self.kind, tunnel, &messages::tlv::current());
        let to = SocketAddrV4::new(
            Ipv4Addr::from(tunnel.tun_dst),
            if tunnel.tun_tp_dst != 0 {
                tunnel.tun_tp_dst
            } else {
                self.udp_port
            },
        );
        let df = if tunnel.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
            Ipv4PathMtuDiscovery::DO
        } else {
            Ipv4PathMtuDiscovery::DONT
        };
        rustix::net::sockopt::set_ip_mtu_discover(&self.sock, df)?;
        let mut control = raw_socket::ControlBuilder::default();
        control.push(
            libc::IPPROTO_IP,
            libc::IP_TOS,
            &i32::from(tunnel.tun_tos).to_ne_bytes(),
        );
        control.push(
            libc::IPPROTO_IP,
            libc::IP_TTL,
            &i32::from(tunnel.tun_ttl.max(1)).to_ne_bytes(),
        );
        if tunnel.tun_src != 0 {
            // in_pktinfo: ifindex 0 (the route's), the source address
            // (spec_dst), the header's destination (unused on send).
            let mut info = [0u8; 12];
            info[4..8].copy_from_slice(&tunnel.tun_src.to_be_bytes());
            control.push(libc::IPPROTO_IP, libc::IP_PKTINFO, &info);
        }
        let (control, control_len) = control.as_parts();
        if let Err(e) =
            raw_socket::send_with_control(&self.sock, to, &[&header, frame], control, control_len)
        {
            self.counters.tx_unreachable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(remote = %Ipv4Addr::from(tunnel.tun_dst), error = %e, "tunnel send failed");
            return Err(e);
        }
        Ok(())
    }
}
