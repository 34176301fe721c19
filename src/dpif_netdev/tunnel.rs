//! Tunnel vports of the userspace datapath: one UDP socket per tunnel type
//! and port (`vxlan_sys_4789`, as OVS names them), in the daemon's network
//! namespace. Received datagrams are decapsulated into the inner frame and
//! its tunnel metadata (outer addresses, TOS, TTL and ports from the
//! socket's control messages); a frame output to the vport is
//! encapsulated with the packet's tunnel (from `set(tunnel(...))`) and
//! sent to its remote. The socket is IPv6 and takes IPv4 too (IPv4-mapped
//! addresses), so one vport serves IPv4 and IPv6 underlays, as OVS's one
//! `vxlan_sys_4789` does; where the host has no IPv6 at all it is IPv4
//! only. The host's routing and neighbour tables (the kernel's, through
//! the socket; Neighbour Discovery for IPv6) choose the underlay interface
//! and next hop; a remote they cannot reach is a counted send error, and
//! the next packet tries again.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
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
    /// Outputs with no remote in the packet's tunnel (dropped).
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
    /// Whether `sock` is IPv6 (dual stack) rather than IPv4 only.
    v6: bool,
    /// VXLAN's Group Policy extension (`exts=gbp`) in sent and received
    /// headers.
    vxlan_gbp: bool,
    pub counters: TunnelCounters,
}

impl TunnelVport {
    /// Binds the UDP port on every address of the namespace, IPv6 and
    /// IPv4 (IPv4 only where the host has no IPv6).
    pub fn open(kind: TunnelKind, udp_port: u16, vxlan_gbp: bool) -> io::Result<TunnelVport> {
        use rustix::net::sockopt;
        let (sock, v6) = match raw_socket::socket(AddressFamily::INET6, SocketType::DGRAM) {
            Ok(sock) => (sock, true),
            Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => (
                raw_socket::socket(AddressFamily::INET, SocketType::DGRAM)?,
                false,
            ),
            Err(e) => return Err(e),
        };
        sockopt::set_socket_reuseaddr(&sock, true)?;
        // The outer header's destination, TOS and TTL come with each
        // datagram as control messages: IPv4's for IPv4 packets, IPv6's
        // (traffic class, hop limit) for IPv6 ones.
        raw_socket::set_option(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, &1i32)?;
        sockopt::set_ip_recvtos(&sock, true)?;
        raw_socket::set_option(&sock, libc::IPPROTO_IP, libc::IP_RECVTTL, &1i32)?;
        raw_socket::set_receive_timeout(&sock, RX_POLL)?;
        if v6 {
            sockopt::set_ipv6_v6only(&sock, false)?;
            for option in [
                libc::IPV6_RECVPKTINFO,
                libc::IPV6_RECVTCLASS,
                libc::IPV6_RECVHOPLIMIT,
            ] {
                raw_socket::set_option(&sock, libc::IPPROTO_IPV6, option, &1i32)?;
            }
            raw_socket::bind_v6(
                &sock,
                SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, udp_port, 0, 0),
            )?;
        } else {
            raw_socket::bind_v4(&sock, SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, udp_port))?;
        }
        Ok(TunnelVport {
            kind,
            udp_port,
            sock,
            v6,
            vxlan_gbp,
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
            match got.from {
                Some(SocketAddr::V4(from)) => {
                    md.tun_src = u32::from(*from.ip());
                    md.tun_tp_src = from.port();
                }
                Some(SocketAddr::V6(from)) => {
                    md.tun_ipv6_src = from.ip().octets();
                    md.tun_tp_src = from.port();
                }
                None => {}
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
                    // in6_pktinfo: the header's destination, then the
                    // ifindex; an IPv4 packet's comes IPv4-mapped, beside
                    // its IP_PKTINFO.
                    (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) if data.len() >= 16 => {
                        let dst: [u8; 16] = data[..16].try_into().expect("16 bytes");
                        if Ipv6Addr::from(dst).to_ipv4_mapped().is_none() {
                            md.tun_ipv6_dst = dst;
                        }
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_TCLASS) if data.len() >= 4 => {
                        md.tun_tos =
                            i32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as u8
                    }
                    (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT) if data.len() >= 4 => {
                        md.tun_ttl =
                            i32::from_ne_bytes(data[..4].try_into().expect("4 bytes")) as u8
                    }
                    _ => {}
                }
            }
            match decap(self.kind, self.vxlan_gbp, buf, &map, md) {
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
    /// sends it to the tunnel's remote (IPv4, or IPv6 when it has no IPv4
    /// one), from its source address if it has one, with its TOS, TTL and
    /// (IPv4) DF.
    pub fn send(&self, frame: &[u8], tunnel: &Flow) -> io::Result<()> {
        let remote = if tunnel.tun_dst != 0 {
            IpAddr::V4(tunnel.tun_dst.into())
        } else if tunnel.tun_ipv6_dst != [0; 16] && self.v6 {
            IpAddr::V6(tunnel.tun_ipv6_dst.into())
        } else {
            self.counters.tx_no_remote.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        let header = encap_header(self.kind, self.vxlan_gbp, tunnel, &messages::tlv::current());
        let port = if tunnel.tun_tp_dst != 0 {
            tunnel.tun_tp_dst
        } else {
            self.udp_port
        };
        let mut control = raw_socket::ControlBuilder::default();
        let to = match remote {
            IpAddr::V4(ip) => {
                let df = if tunnel.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
                    Ipv4PathMtuDiscovery::DO
                } else {
                    Ipv4PathMtuDiscovery::DONT
                };
                rustix::net::sockopt::set_ip_mtu_discover(&self.sock, df)?;
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
                    // in_pktinfo: ifindex 0 (the route's), the source
                    // address (spec_dst), the header's destination (unused
                    // on send).
                    let mut info = [0u8; 12];
                    info[4..8].copy_from_slice(&tunnel.tun_src.to_be_bytes());
                    control.push(libc::IPPROTO_IP, libc::IP_PKTINFO, &info);
                }
                // A dual-stack socket sends IPv4 to the IPv4-mapped address.
                match self.v6 {
                    true => SocketAddr::V6(SocketAddrV6::new(ip.to_ipv6_mapped(), port, 0, 0)),
                    false => SocketAddr::V4(SocketAddrV4::new(ip, port)),
                }
            }
            IpAddr::V6(ip) => {
                control.push(
                    libc::IPPROTO_IPV6,
                    libc::IPV6_TCLASS,
                    &i32::from(tunnel.tun_tos).to_ne_bytes(),
                );
                control.push(
                    libc::IPPROTO_IPV6,
                    libc::IPV6_HOPLIMIT,
                    &i32::from(tunnel.tun_ttl.max(1)).to_ne_bytes(),
                );
                if tunnel.tun_ipv6_src != [0; 16] {
                    // in6_pktinfo: the source address, ifindex 0 (the
                    // route's).
                    let mut info = [0u8; 20];
                    info[..16].copy_from_slice(&tunnel.tun_ipv6_src);
                    control.push(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &info);
                }
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0))
            }
        };
        let (control, control_len) = control.as_parts();
        if let Err(e) =
            raw_socket::send_with_control(&self.sock, to, &[&header, frame], control, control_len)
        {
            self.counters.tx_unreachable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%remote, error = %e, "tunnel send failed");
            return Err(e);
        }
        Ok(())
    }
}
