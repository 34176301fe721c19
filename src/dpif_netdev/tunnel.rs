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
use std::mem::{size_of, zeroed};
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use messages::flow::{Flow, FLOW_TNL_F_DONT_FRAGMENT};
use messages::tunnel::{decap, encap_header, DecapError, TunnelKind};

use super::port::RX_POLL;

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

fn check(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn set_int(fd: &OwnedFd, level: libc::c_int, name: libc::c_int, v: libc::c_int) -> io::Result<()> {
    // SAFETY: `v` is a valid c_int of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        )
    })
    .map(drop)
}

impl TunnelVport {
    /// Binds the UDP port on every IPv4 address of the namespace.
    pub fn open(kind: TunnelKind, udp_port: u16) -> io::Result<TunnelVport> {
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = check(unsafe {
            libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        // SAFETY: `fd` is a new descriptor nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(fd) };
        set_int(&sock, libc::SOL_SOCKET, libc::SO_REUSEADDR, 1)?;
        set_int(&sock, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)?;
        set_int(&sock, libc::IPPROTO_IP, libc::IP_RECVTOS, 1)?;
        set_int(&sock, libc::IPPROTO_IP, libc::IP_RECVTTL, 1)?;
        let tv = libc::timeval {
            tv_sec: 0,
            tv_usec: RX_POLL.as_micros() as libc::suseconds_t,
        };
        // SAFETY: `tv` is a valid timeval of the size passed.
        check(unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                size_of::<libc::timeval>() as u32,
            )
        })?;
        // SAFETY: sockaddr_in is plain data; zeroed is valid.
        let mut sa: libc::sockaddr_in = unsafe { zeroed() };
        sa.sin_family = libc::AF_INET as u16;
        sa.sin_port = udp_port.to_be();
        // SAFETY: `sa` is a valid sockaddr_in of the size passed.
        check(unsafe {
            libc::bind(
                sock.as_raw_fd(),
                (&sa as *const libc::sockaddr_in).cast(),
                size_of::<libc::sockaddr_in>() as u32,
            )
        })?;
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
            // SAFETY: plain data; zeroed is valid.
            let mut from: libc::sockaddr_in = unsafe { zeroed() };
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut cbuf = [0u64; 16];
            // SAFETY: msghdr is plain data.
            let mut msg: libc::msghdr = unsafe { zeroed() };
            msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = size_of::<[u64; 16]>();
            let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
            // SAFETY: `msg` points at live buffers of the lengths given.
            let n = unsafe { libc::recvmsg(self.sock.as_raw_fd(), &mut msg, flags) };
            if n < 0 {
                let e = io::Error::last_os_error();
                return match e.kind() {
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Ok(false),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(e),
                };
            }
            buf.truncate(n as usize);
            let in_port = md.in_port;
            md.clear_tunnel();
            md.in_port = in_port;
            md.tun_src = u32::from_be(from.sin_addr.s_addr);
            md.tun_tp_src = u16::from_be(from.sin_port);
            md.tun_tp_dst = self.udp_port;
            // SAFETY: the cmsg macros walk the control buffer recvmsg filled.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    let data = libc::CMSG_DATA(c);
                    match ((*c).cmsg_level, (*c).cmsg_type) {
                        (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                            let info = std::ptr::read_unaligned(data as *const libc::in_pktinfo);
                            md.tun_dst = u32::from_be(info.ipi_addr.s_addr);
                        }
                        (libc::IPPROTO_IP, libc::IP_TOS) => md.tun_tos = *data,
                        (libc::IPPROTO_IP, libc::IP_TTL) => {
                            md.tun_ttl = std::ptr::read_unaligned(data as *const libc::c_int) as u8
                        }
                        _ => {}
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
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
        let mut iov = [
            libc::iovec {
                iov_base: header.as_ptr() as *mut _,
                iov_len: header.len(),
            },
            libc::iovec {
                iov_base: frame.as_ptr() as *mut _,
                iov_len: frame.len(),
            },
        ];
        // SAFETY: plain data; zeroed is valid.
        let mut to: libc::sockaddr_in = unsafe { zeroed() };
        to.sin_family = libc::AF_INET as u16;
        to.sin_addr.s_addr = tunnel.tun_dst.to_be();
        to.sin_port = if tunnel.tun_tp_dst != 0 {
            tunnel.tun_tp_dst
        } else {
            self.udp_port
        }
        .to_be();
        let df = if tunnel.tun_flags & FLOW_TNL_F_DONT_FRAGMENT != 0 {
            libc::IP_PMTUDISC_DO
        } else {
            libc::IP_PMTUDISC_DONT
        };
        set_int(&self.sock, libc::IPPROTO_IP, libc::IP_MTU_DISCOVER, df)?;
        let mut cbuf = [0u64; 16];
        // SAFETY: msghdr is plain data.
        let mut msg: libc::msghdr = unsafe { zeroed() };
        msg.msg_name = (&mut to as *mut libc::sockaddr_in).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = 2;
        msg.msg_control = cbuf.as_mut_ptr().cast();
        // SAFETY: CMSG_SPACE is pure arithmetic.
        let space = |len: usize| unsafe { libc::CMSG_SPACE(len as u32) } as usize;
        let mut used = space(size_of::<libc::c_int>()) * 2;
        if tunnel.tun_src != 0 {
            used += space(size_of::<libc::in_pktinfo>());
        }
        msg.msg_controllen = used;
        // SAFETY: the control buffer is 128 bytes, more than the three
        // messages need; each is written within its CMSG_SPACE.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            let put_int = |c: *mut libc::cmsghdr, ty: libc::c_int, v: libc::c_int| {
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = ty;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::c_int>() as u32) as usize;
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::c_int, v);
            };
            put_int(c, libc::IP_TOS, libc::c_int::from(tunnel.tun_tos));
            c = libc::CMSG_NXTHDR(&msg, c);
            put_int(c, libc::IP_TTL, libc::c_int::from(tunnel.tun_ttl.max(1)));
            if tunnel.tun_src != 0 {
                c = libc::CMSG_NXTHDR(&msg, c);
                (*c).cmsg_level = libc::IPPROTO_IP;
                (*c).cmsg_type = libc::IP_PKTINFO;
                (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as usize;
                let mut info: libc::in_pktinfo = zeroed();
                info.ipi_spec_dst.s_addr = tunnel.tun_src.to_be();
                std::ptr::write_unaligned(libc::CMSG_DATA(c) as *mut libc::in_pktinfo, info);
            }
        }
        // SAFETY: `msg` points at live buffers of the lengths given.
        let n = unsafe { libc::sendmsg(self.sock.as_raw_fd(), &msg, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            self.counters.tx_unreachable.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(remote = %Ipv4Addr::from(tunnel.tun_dst), error = %e, "tunnel send failed");
            return Err(e);
        }
        Ok(())
    }
}
