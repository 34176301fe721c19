//! Raw sockets and the few kernel calls around them that `rustix` lacks:
//! the one place the datapath and the test hosts open AF_PACKET sockets,
//! tap devices and UDP tunnel sockets, set socket options, and exchange
//! control messages.
//!
//! `rustix` makes the calls it has (socket, bind of IP addresses, send,
//! poll, timeouts, interface indexes). What it lacks is wrapped here once,
//! each `unsafe` with why it is sound: options of `SOL_PACKET` and
//! `IP_PKTINFO` (`set_option`, `get_option`), `sockaddr_ll` binds, the
//! interface ioctls (flags, `TUNSETIFF`, ethtool), and `recvmsg`/`sendmsg`
//! with control messages of types rustix does not parse. Control messages
//! are read and written as bytes ([`control_messages`],
//! [`ControlBuilder`]), without pointer walks.

use std::fs::OpenOptions;
use std::io;
use std::mem::size_of;
use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketFlags, SocketType};

/// Interface names are at most 15 bytes (`IFNAMSIZ` with its NUL).
const IFNAMSIZ: usize = 16;

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// A socket of `family` and `kind`, close-on-exec, protocol 0.
pub fn socket(family: AddressFamily, kind: SocketType) -> io::Result<OwnedFd> {
    Ok(rustix::net::socket_with(
        family,
        kind,
        SocketFlags::CLOEXEC,
        None,
    )?)
}

/// Sets socket option `level`/`name` to `value` (options rustix has no
/// call for).
pub fn set_option<T: bytemuck::NoUninit>(
    fd: impl AsFd,
    level: i32,
    name: i32,
    value: &T,
) -> io::Result<()> {
    let bytes = bytemuck::bytes_of(value);
    // SAFETY: `bytes` is a live, initialized buffer of the length passed;
    // the kernel only reads it.
    check(unsafe {
        libc::setsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            bytes.as_ptr().cast(),
            bytes.len() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// Reads socket option `level`/`name` (options rustix has no call for).
pub fn get_option<T: bytemuck::Pod>(fd: impl AsFd, level: i32, name: i32) -> io::Result<T> {
    let mut value = T::zeroed();
    let bytes = bytemuck::bytes_of_mut(&mut value);
    let mut len = bytes.len() as libc::socklen_t;
    // SAFETY: `bytes` is writable for `len` bytes; the kernel writes at
    // most that many, and any bytes make a valid `T` (Pod).
    check(unsafe {
        libc::getsockopt(
            fd.as_fd().as_raw_fd(),
            level,
            name,
            bytes.as_mut_ptr().cast(),
            &mut len,
        )
    })?;
    Ok(value)
}

/// Sets `fd`'s receive buffer to `bytes`: beyond `rmem_max` where allowed
/// (`SO_RCVBUFFORCE`, root only), else as far as `rmem_max` lets.
pub fn set_receive_buffer(fd: impl AsFd, bytes: i32) -> io::Result<()> {
    let fd = fd.as_fd();
    set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &bytes)
        .or_else(|_| set_option(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &bytes))
}

/// Sets `SO_RCVTIMEO`: a blocking receive returns after `d`.
pub fn set_receive_timeout(fd: impl AsFd, d: Duration) -> io::Result<()> {
    Ok(rustix::net::sockopt::set_socket_timeout(
        fd,
        rustix::net::sockopt::Timeout::Recv,
        Some(d),
    )?)
}

/// linux/if_packet.h's `struct sockaddr_ll`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::NoUninit)]
struct SockaddrLl {
    family: u16,
    protocol: u16,
    ifindex: i32,
    hatype: u16,
    pkttype: u8,
    halen: u8,
    addr: [u8; 8],
}

/// Binds AF_PACKET socket `fd` to interface `ifindex`, receiving frames of
/// `protocol` (an ethertype, host order; `ETH_P_ALL` for all).
pub fn bind_packet(fd: impl AsFd, ifindex: u32, protocol: u16) -> io::Result<()> {
    let sll = SockaddrLl {
        family: libc::AF_PACKET as u16,
        protocol: protocol.to_be(),
        ifindex: ifindex as i32,
        ..bytemuck::Zeroable::zeroed()
    };
    // SAFETY: `sll` is a sockaddr_ll (same layout) of the size passed.
    check(unsafe {
        libc::bind(
            fd.as_fd().as_raw_fd(),
            (&sll as *const SockaddrLl).cast(),
            size_of::<SockaddrLl>() as libc::socklen_t,
        )
    })
    .map(drop)
}

/// An AF_PACKET socket on interface `name` (in the caller's network
/// namespace) for frames of `protocol` (`ETH_P_ALL`: every frame the
/// interface sends or receives; 0: none, a socket that only sends): how
/// test hosts and benchmarks put frames on a wire and watch it.
pub fn packet_socket(name: &str, protocol: u16) -> io::Result<OwnedFd> {
    let ifindex = ifindex(name)?;
    // Protocol 0 until the bind: created with ETH_P_ALL it would queue
    // every interface's frames in the meantime.
    let fd = socket(AddressFamily::PACKET, SocketType::RAW)?;
    bind_packet(&fd, ifindex, protocol)?;
    Ok(fd)
}

/// Binds `fd` to an IPv4 address and port.
pub fn bind_v4(fd: impl AsFd, addr: SocketAddrV4) -> io::Result<()> {
    Ok(rustix::net::bind(fd, &addr)?)
}

/// Binds `fd` to an IPv6 address and port.
pub fn bind_v6(fd: impl AsFd, addr: SocketAddrV6) -> io::Result<()> {
    Ok(rustix::net::bind(fd, &addr)?)
}

/// Sends `frame` on a connected or bound socket (AF_PACKET, tap).
pub fn send(fd: impl AsFd, frame: &[u8]) -> io::Result<()> {
    rustix::net::send(fd, frame, rustix::net::SendFlags::empty())?;
    Ok(())
}

/// Waits up to `timeout` for `fd` to be readable; false on timeout or
/// when a signal interrupted the wait.
pub fn wait_readable(fd: impl AsFd, timeout: Duration) -> io::Result<bool> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    let mut fds = [PollFd::new(&fd, PollFlags::IN)];
    let timeout = Timespec::try_from(timeout).map_err(|_| io::ErrorKind::InvalidInput)?;
    match poll(&mut fds, Some(&timeout)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Receives one frame or datagram into `buf` if one arrives within
/// `timeout`: its length (cut to `buf`), or None.
pub fn recv_within(fd: impl AsFd, buf: &mut [u8], timeout: Duration) -> io::Result<Option<usize>> {
    if !wait_readable(&fd, timeout)? {
        return Ok(None);
    }
    match rustix::net::recv(&fd, buf, rustix::net::RecvFlags::DONTWAIT) {
        Ok((n, _)) => Ok(Some(n)),
        Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// The index of interface `name` (in the caller's network namespace).
pub fn ifindex(name: &str) -> io::Result<u32> {
    check_ifname(name)?;
    let sock = socket(AddressFamily::INET, SocketType::DGRAM)?;
    rustix::net::netdevice::name_to_index(&sock, name).map_err(|e| {
        if e == rustix::io::Errno::NODEV {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface named {name:?}"),
            )
        } else {
            io::Error::from(e)
        }
    })
}

fn check_ifname(name: &str) -> io::Result<()> {
    if name.is_empty() || name.len() >= IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1 to 15 bytes, no NUL)"),
        ));
    }
    Ok(())
}

/// An `ifreq` (linux/if.h, 40 bytes) whose union holds what `T` is: the
/// flags (`i16`) or a pointer (ethtool).
#[repr(C)]
struct Ifreq<T> {
    name: [u8; IFNAMSIZ],
    value: T,
    _pad: [u8; 24 - 8],
}

impl<T> Ifreq<T> {
    fn new(name: &str, value: T) -> io::Result<Self> {
        check_ifname(name)?;
        let mut ifr = Ifreq {
            name: [0; IFNAMSIZ],
            value,
            _pad: [0; 16],
        };
        ifr.name[..name.len()].copy_from_slice(name.as_bytes());
        Ok(ifr)
    }
}

/// An ioctl that takes a pointer to an `ifreq`.
///
/// # Safety
/// `request` must be an ioctl that reads and writes an `ifreq` within its
/// 40 bytes, and that reads through a pointer in the union only if `T` is
/// that pointer, valid for what the request does with it.
unsafe fn ifreq_ioctl<T>(
    fd: impl AsFd,
    request: libc::Ioctl,
    ifr: &mut Ifreq<T>,
) -> io::Result<()> {
    const { assert!(size_of::<Ifreq<u64>>() == 40) };
    // SAFETY: `ifr` is a live, writable ifreq-sized buffer; the rest is
    // the caller's promise.
    check(unsafe { libc::ioctl(fd.as_fd().as_raw_fd(), request, ifr as *mut Ifreq<T>) }).map(drop)
}

/// Brings interface `name` up (in the caller's network namespace).
pub fn set_up(name: &str) -> io::Result<()> {
    let sock = socket(AddressFamily::INET, SocketType::DGRAM)?;
    let mut ifr = Ifreq::new(name, 0i16)?;
    // SAFETY: SIOCGIFFLAGS and SIOCSIFFLAGS read and write an ifreq's name
    // and its flags, the i16 at the union's start.
    unsafe {
        ifreq_ioctl(&sock, libc::SIOCGIFFLAGS as _, &mut ifr)?;
        ifr.value |= libc::IFF_UP as i16;
        ifreq_ioctl(&sock, libc::SIOCSIFFLAGS as _, &mut ifr)
    }
}

/// Creates (or attaches to) tap device `name`, frames without a packet
/// information header.
pub fn open_tap(name: &str) -> io::Result<OwnedFd> {
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")?;
    let mut ifr = Ifreq::new(name, (libc::IFF_TAP | libc::IFF_NO_PI) as i16)?;
    // SAFETY: TUNSETIFF reads an ifreq's name and flags (the i16 at the
    // union's start) and writes back the name.
    unsafe { ifreq_ioctl(&tun, libc::TUNSETIFF as _, &mut ifr)? };
    Ok(tun.into())
}

/// Turns off transmit checksum offload (and with it TSO) on `name`, with
/// the ethtool ioctl.
pub fn disable_tx_offload(name: &str) -> io::Result<()> {
    const ETHTOOL_STXCSUM: u32 = 0x17;
    /// linux/ethtool.h's `struct ethtool_value`.
    #[repr(C)]
    struct EthtoolValue {
        cmd: u32,
        data: u32,
    }
    let mut value = EthtoolValue {
        cmd: ETHTOOL_STXCSUM,
        data: 0,
    };
    let sock = socket(AddressFamily::INET, SocketType::DGRAM)?;
    let mut ifr = Ifreq::new(name, &mut value as *mut EthtoolValue)?;
    // SAFETY: SIOCETHTOOL reads an ifreq's name and the pointer in its
    // union, which points at `value`, an ethtool_value that lives across
    // the call; ETHTOOL_STXCSUM reads and writes only that struct.
    unsafe { ifreq_ioctl(&sock, libc::SIOCETHTOOL as _, &mut ifr) }
}

/// What [`recv_with_control`] received.
pub struct Received {
    /// Bytes of the datagram or frame.
    pub len: usize,
    /// Bytes of control messages (see [`control_messages`]).
    pub control_len: usize,
    /// The sender's address, for IP sockets (an IPv4-mapped IPv6 sender
    /// as IPv4).
    pub from: Option<SocketAddr>,
}

/// Datagrams taken by one `recvmmsg`: up to [`RecvBatch::MAX_SLOTS`]
/// slots of `slot_len` bytes each in one buffer kept between calls, so
/// that a reader draining a queue makes one call per batch, not one per
/// datagram.
pub struct RecvBatch {
    buf: Vec<u8>,
    slot_len: usize,
    /// Each datagram of the last call: its length, and whether it was
    /// longer than its slot (cut short by the kernel).
    received: Vec<(usize, bool)>,
}

impl RecvBatch {
    /// Most datagrams one call takes (the slots' headers live on the
    /// stack).
    pub const MAX_SLOTS: usize = 64;

    /// `slots` (at most `MAX_SLOTS`) slots of `slot_len` bytes. The
    /// buffer is zeroed when allocated, so the kernel's memory backs it
    /// page by page as datagrams first reach each slot.
    pub fn new(slots: usize, slot_len: usize) -> RecvBatch {
        let slots = slots.clamp(1, Self::MAX_SLOTS);
        RecvBatch {
            buf: vec![0; slots * slot_len],
            slot_len,
            received: Vec::with_capacity(slots),
        }
    }

    /// Receives up to `max` datagrams that are ready, without waiting:
    /// how many (0 when none was ready). A datagram longer than a slot
    /// is cut short and shows as `None` in [`RecvBatch::get`].
    pub fn recv(&mut self, fd: impl AsFd, max: usize) -> io::Result<usize> {
        self.received.clear();
        let slots = (self.buf.len() / self.slot_len).min(max);
        if slots == 0 {
            return Ok(0);
        }
        // SAFETY: iovec and mmsghdr are plain data (pointers and
        // lengths); all zeros is a valid, empty value of each.
        let mut iovs: [libc::iovec; Self::MAX_SLOTS] = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let mut hdrs: [libc::mmsghdr; Self::MAX_SLOTS] = unsafe { std::mem::zeroed() };
        for ((iov, hdr), slot) in iovs
            .iter_mut()
            .zip(hdrs.iter_mut())
            .zip(self.buf.chunks_exact_mut(self.slot_len))
            .take(slots)
        {
            iov.iov_base = slot.as_mut_ptr().cast();
            iov.iov_len = slot.len();
            hdr.msg_hdr.msg_iov = iov;
            hdr.msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: the first `slots` headers each point at one iovec over a
        // distinct slot of `self.buf`, all live and writable for the
        // lengths given for the whole call; no timeout is passed.
        let n = unsafe {
            libc::recvmmsg(
                fd.as_fd().as_raw_fd(),
                hdrs.as_mut_ptr(),
                slots as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        self.received.extend(hdrs[..n].iter().map(|h| {
            let cut = h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0;
            ((h.msg_len as usize).min(self.slot_len), cut)
        }));
        Ok(n)
    }

    /// Datagram `i` of the last call, or `None` if it was cut short (or
    /// there is no such datagram).
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let &(len, cut) = self.received.get(i)?;
        let at = i * self.slot_len;
        (!cut).then(|| &self.buf[at..at + len])
    }
}

/// `recvmsg` into `buf`, with control messages into `control`. `None`
/// when nothing arrived (a timeout, or nothing ready with `wait` false, or
/// a signal).
pub fn recv_with_control(
    fd: impl AsFd,
    buf: &mut [u8],
    control: &mut [u64],
    wait: bool,
) -> io::Result<Option<Received>> {
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // Room for any socket address (`sockaddr_storage`'s 128 bytes).
    let mut from = [0u64; 16];
    // SAFETY: msghdr is plain data (pointers and lengths); all zeros is
    // a valid, empty message header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = from.as_mut_ptr().cast();
    msg.msg_namelen = size_of::<[u64; 16]>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(control) as _;
    let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
    // SAFETY: `msg` points at `from`, `iov` (over `buf`) and `control`,
    // all live and writable for the lengths given, for the whole call.
    let n = unsafe { libc::recvmsg(fd.as_fd().as_raw_fd(), &mut msg, flags) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted => {
                Ok(None)
            }
            _ => Err(e),
        };
    }
    let from = socket_address(bytemuck::cast_slice(&from));
    Ok(Some(Received {
        len: n as usize,
        control_len: msg.msg_controllen as usize,
        from,
    }))
}

/// `sendmsg` of `parts` (gathered) to `to`, with control messages
/// `control` (built with [`ControlBuilder`]).
pub fn send_with_control(
    fd: impl AsFd,
    to: SocketAddr,
    parts: &[&[u8]],
    control: &[u64],
    control_len: usize,
) -> io::Result<()> {
    let iov: Vec<libc::iovec> = parts
        .iter()
        .map(|p| libc::iovec {
            iov_base: p.as_ptr() as *mut _,
            iov_len: p.len(),
        })
        .collect();
    let mut to = sockaddr_of(to);
    // SAFETY: msghdr is plain data; all zeros is a valid, empty header.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_name = to.bytes.as_mut_ptr().cast();
    msg.msg_namelen = to.len;
    msg.msg_iov = iov.as_ptr() as *mut _;
    msg.msg_iovlen = iov.len() as _;
    if control_len > 0 {
        msg.msg_control = control.as_ptr() as *mut _;
        msg.msg_controllen = control_len.min(std::mem::size_of_val(control)) as _;
    }
    // SAFETY: `msg` points at `to`, the iovecs (over `parts`) and
    // `control`, all live for the call; sendmsg only reads them.
    check(unsafe { libc::sendmsg(fd.as_fd().as_raw_fd(), &msg, 0) as libc::c_int }).map(drop)
}

/// A socket address as the kernel reads it: `sockaddr_in` or
/// `sockaddr_in6` bytes (in a buffer aligned for either) and its length.
struct SockaddrBytes {
    bytes: [u64; 16],
    len: libc::socklen_t,
}

/// `sockaddr_in` (family, port, address) or `sockaddr_in6` (family, port,
/// flow info, address, scope) laid out as bytes.
fn sockaddr_of(a: SocketAddr) -> SockaddrBytes {
    let mut bytes = [0u64; 16];
    let b: &mut [u8] = bytemuck::cast_slice_mut(&mut bytes);
    b[2..4].copy_from_slice(&a.port().to_be_bytes());
    let len = match a {
        SocketAddr::V4(v4) => {
            b[..2].copy_from_slice(&(libc::AF_INET as libc::sa_family_t).to_ne_bytes());
            b[4..8].copy_from_slice(&v4.ip().octets());
            size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(v6) => {
            b[..2].copy_from_slice(&(libc::AF_INET6 as libc::sa_family_t).to_ne_bytes());
            b[4..8].copy_from_slice(&v6.flowinfo().to_be_bytes());
            b[8..24].copy_from_slice(&v6.ip().octets());
            b[24..28].copy_from_slice(&v6.scope_id().to_ne_bytes());
            size_of::<libc::sockaddr_in6>()
        }
    };
    SockaddrBytes {
        bytes,
        len: len as libc::socklen_t,
    }
}

/// The IP socket address in `b` (a `sockaddr_in` or `sockaddr_in6`), an
/// IPv4-mapped IPv6 one as IPv4; `None` for any other family.
fn socket_address(b: &[u8]) -> Option<SocketAddr> {
    let family = i32::from(libc::sa_family_t::from_ne_bytes(
        b.get(..2)?.try_into().ok()?,
    ));
    let port = u16::from_be_bytes(b.get(2..4)?.try_into().ok()?);
    match family {
        libc::AF_INET => {
            let ip: [u8; 4] = b.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(ip.into(), port)))
        }
        libc::AF_INET6 => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(b.get(8..24)?).ok()?);
            Some(match ip.to_ipv4_mapped() {
                Some(v4) => SocketAddr::V4(SocketAddrV4::new(v4, port)),
                None => SocketAddr::V6(SocketAddrV6::new(ip, port, 0, 0)),
            })
        }
        _ => None,
    }
}

/// A control message header's size and alignment (`struct cmsghdr`:
/// length as a `size_t`, level and type as `int`s).
const CMSG_ALIGN: usize = size_of::<usize>();
const CMSG_HDR: usize = (size_of::<usize>() + 8).next_multiple_of(CMSG_ALIGN);

/// The control messages in the first `len` bytes of `control`: (level,
/// type, data). A truncated message ends the walk.
pub fn control_messages(control: &[u64], len: usize) -> impl Iterator<Item = (i32, i32, &[u8])> {
    let bytes: &[u8] = bytemuck::cast_slice(control);
    let bytes = &bytes[..len.min(bytes.len())];
    let mut at = 0;
    std::iter::from_fn(move || {
        let hdr = bytes.get(at..at + CMSG_HDR)?;
        let (len_bytes, rest) = hdr.split_at(size_of::<usize>());
        let cmsg_len = usize::from_ne_bytes(len_bytes.try_into().ok()?);
        let level = i32::from_ne_bytes(rest[..4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[4..8].try_into().ok()?);
        let data = bytes.get(at + CMSG_HDR..at + cmsg_len.max(CMSG_HDR))?;
        at += cmsg_len.next_multiple_of(CMSG_ALIGN).max(CMSG_HDR);
        Some((level, kind, data))
    })
}

/// Control messages to send, written as the kernel lays them out.
#[derive(Default)]
pub struct ControlBuilder {
    buf: [u64; 16],
    len: usize,
}

impl ControlBuilder {
    /// Appends one message; panics if the 128-byte buffer is full (the
    /// callers send a fixed few).
    pub fn push(&mut self, level: i32, kind: i32, data: &[u8]) {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buf);
        let cmsg_len = CMSG_HDR + data.len();
        let hdr = &mut bytes[self.len..self.len + CMSG_HDR];
        hdr[..size_of::<usize>()].copy_from_slice(&cmsg_len.to_ne_bytes());
        hdr[size_of::<usize>()..size_of::<usize>() + 4].copy_from_slice(&level.to_ne_bytes());
        hdr[size_of::<usize>() + 4..size_of::<usize>() + 8].copy_from_slice(&kind.to_ne_bytes());
        bytes[self.len + CMSG_HDR..self.len + cmsg_len].copy_from_slice(data);
        self.len += cmsg_len.next_multiple_of(CMSG_ALIGN);
    }

    /// The buffer and the bytes of it used.
    pub fn as_parts(&self) -> (&[u64], usize) {
        (&self.buf, self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn control_messages_read_back_what_the_builder_wrote() {
        let mut b = ControlBuilder::default();
        b.push(libc::IPPROTO_IP, libc::IP_TOS, &7i32.to_ne_bytes());
        b.push(libc::IPPROTO_IP, libc::IP_PKTINFO, &[1u8; 12]);
        let (buf, len) = b.as_parts();
        // The layout of the kernel's CMSG_SPACE: a 16-byte header, data
        // padded to 8 bytes (64-bit).
        let space = |n: usize| 16 + n.next_multiple_of(8);
        assert_eq!(len, space(4) + space(12));
        let got: Vec<_> = control_messages(buf, len).collect();
        assert_eq!(
            got,
            [
                (libc::IPPROTO_IP, libc::IP_TOS, &7i32.to_ne_bytes()[..]),
                (libc::IPPROTO_IP, libc::IP_PKTINFO, &[1u8; 12][..]),
            ]
        );
        // A length cut inside the second message ends the walk after the
        // first.
        assert_eq!(control_messages(buf, space(4) + 20).count(), 1);
    }

    #[test]
    fn a_batch_takes_every_ready_datagram_in_one_call_and_flags_those_cut_short() {
        let (a, b) = rustix::net::socketpair(
            AddressFamily::UNIX,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            None,
        )
        .unwrap();
        let mut batch = RecvBatch::new(4, 8);
        assert_eq!(batch.recv(&b, 4).unwrap(), 0, "nothing ready: no wait");
        for d in [
            &b"one"[..],
            b"second",
            b"longer than eight",
            b"four",
            b"five",
        ] {
            send(&a, d).unwrap();
        }
        // At most the slots, and at most `max`.
        assert_eq!(batch.recv(&b, 3).unwrap(), 3);
        assert_eq!(batch.get(0), Some(&b"one"[..]));
        assert_eq!(batch.get(1), Some(&b"second"[..]));
        assert_eq!(batch.get(2), None, "cut short");
        assert_eq!(batch.get(3), None);
        assert_eq!(batch.recv(&b, 64).unwrap(), 2);
        assert_eq!(batch.get(0), Some(&b"four"[..]));
        assert_eq!(batch.get(1), Some(&b"five"[..]));
        assert_eq!(batch.recv(&b, 64).unwrap(), 0);
    }

    #[test]
    fn bad_interface_names_are_refused_before_any_call() {
        for name in ["", "0123456789abcdef", "a\0b"] {
            let e = ifindex(name).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
        }
        assert_eq!(
            ifindex("nosuchif9").unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}
