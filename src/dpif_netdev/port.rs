//! Ports of the userspace datapath: Linux interfaces through AF_PACKET, tap
//! devices, and replay files.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a blocking receive waits before checking for shutdown.
pub const RX_POLL: Duration = Duration::from_millis(100);
/// The largest frame a port reads.
const MAX_FRAME: usize = 65_536;

/// The I/O side of a port.
pub enum PortIo {
    /// A raw AF_PACKET socket bound to one interface.
    Packet(OwnedFd),
    /// A tap device's file descriptor.
    Tap(OwnedFd),
    /// A replay port: frames come from a file; what is sent to it is only
    /// counted.
    Replay,
    /// A tunnel vport (its own receive loop; sends take the packet's
    /// tunnel, see `Egress`).
    Tunnel(super::tunnel::TunnelVport),
}

/// Per-port counters.
#[derive(Default)]
pub struct PortCounters {
    pub rx_packets: AtomicU64,
    pub rx_bytes: AtomicU64,
    /// Frames the AF_PACKET socket dropped (its buffer was full), summed
    /// from `PACKET_STATISTICS`, which resets on each read.
    pub rx_dropped: AtomicU64,
    pub rx_errors: AtomicU64,
    pub tx_packets: AtomicU64,
    pub tx_bytes: AtomicU64,
    pub tx_errors: AtomicU64,
}

impl PortIo {
    /// Frames an AF_PACKET socket dropped since the last call (the kernel
    /// resets the count on each read); None for other ports.
    pub fn socket_drops(&self) -> Option<u64> {
        let PortIo::Packet(fd) = self else {
            return None;
        };
        let mut st = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `st`.
        let rc = unsafe {
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut st as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        };
        (rc == 0).then_some(u64::from(st.tp_drops))
    }

    /// Opens AF_PACKET on the existing interface `name`: ignores the frames
    /// we send ourselves, brings it up and puts it in promiscuous mode.
    pub fn open_packet(name: &str) -> io::Result<PortIo> {
        let ifindex = ifindex(name)?;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // Protocol 0: the socket receives nothing until it is bound to the
        // interface, after its options are set. Created with ETH_P_ALL it
        // would take every interface's frames, and the interface's own
        // outgoing ones, in the meantime.
        // SAFETY: plain socket(2) call; the result is checked.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        let fd = owned(fd)?;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)?;
        // The kernel takes a received frame's VLAN tag out of the frame
        // (VLAN acceleration); the auxiliary data gives it back.
        setsockopt(&fd, libc::SOL_PACKET, PACKET_AUXDATA, &1i32)?;
        // Up before the bind: a socket bound to a down interface is given
        // ENETDOWN.
        set_up(name)?;
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid value.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = proto;
        sll.sll_ifindex = ifindex;
        // SAFETY: `sll` is a valid sockaddr_ll of the size passed.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                &sll as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        // SAFETY: packet_mreq is plain data.
        let mut mreq: libc::packet_mreq = unsafe { std::mem::zeroed() };
        mreq.mr_ifindex = ifindex;
        mreq.mr_type = libc::PACKET_MR_PROMISC as u16;
        setsockopt(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        set_rcvtimeo(&fd, RX_POLL)?;
        Ok(PortIo::Packet(fd))
    }

    /// Creates (or attaches to) the tap device `name` and brings it up.
    pub fn open_tap(name: &str) -> io::Result<PortIo> {
        let path = CString::new("/dev/net/tun").expect("no NUL");
        // SAFETY: valid C string; result checked.
        let fd = owned(unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })?;
        let mut ifr = ifreq(name)?;
        ifr.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as i16;
        // SAFETY: TUNSETIFF takes a pointer to an ifreq, which `ifr` is.
        check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut ifr) })?;
        set_up(name)?;
        Ok(PortIo::Tap(fd))
    }

    /// Sends one frame out of the port.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let fd = match self {
            PortIo::Packet(fd) => fd,
            PortIo::Tap(fd) => fd,
            PortIo::Replay => return Ok(()),
            PortIo::Tunnel(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a tunnel vport sends with a tunnel",
                ))
            }
        };
        // SAFETY: `frame` is a valid buffer of the length passed.
        let n = unsafe { libc::send(fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Receives one frame into `buf` (resized to it). `Ok(false)` when
    /// nothing arrived within [`RX_POLL`], or at once if not `wait`.
    pub fn recv(&self, buf: &mut Vec<u8>, wait: bool) -> io::Result<bool> {
        let flags = if wait { 0 } else { libc::MSG_DONTWAIT };
        let fd = match self {
            PortIo::Packet(fd) => fd,
            PortIo::Tap(fd) => {
                let mut pfd = libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                };
                let timeout = if wait { RX_POLL.as_millis() as i32 } else { 0 };
                // SAFETY: one valid pollfd.
                let n = unsafe { libc::poll(&mut pfd, 1, timeout) };
                if n <= 0 {
                    return if n < 0 {
                        Err(io::Error::last_os_error())
                    } else {
                        Ok(false)
                    };
                }
                fd
            }
            PortIo::Replay | PortIo::Tunnel(_) => return Ok(false),
        };
        buf.resize(MAX_FRAME, 0);
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        // Room for one cmsg carrying a tpacket_auxdata, 8-byte aligned.
        let mut control = [0u64; 8];
        // SAFETY: msghdr is plain data; zeroed is a valid value.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if matches!(self, PortIo::Packet(_)) {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
        }
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both
        // valid and writable for the lengths given.
        let n = unsafe { libc::recvmsg(fd.as_raw_fd(), &mut msg, flags) };
        if n < 0 {
            let e = io::Error::last_os_error();
            buf.clear();
            return match e.kind() {
                io::ErrorKind::WouldBlock
                | io::ErrorKind::TimedOut
                | io::ErrorKind::Interrupted => Ok(false),
                _ => Err(e),
            };
        }
        buf.truncate(n as usize);
        if let Some(tag) = vlan_from_auxdata(&msg) {
            if buf.len() >= 12 {
                buf.splice(12..12, tag);
            }
        }
        Ok(true)
    }
}

/// `PACKET_AUXDATA` and its flags (linux/if_packet.h).
const PACKET_AUXDATA: i32 = 8;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// linux/if_packet.h's `struct tpacket_auxdata`.
#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// The VLAN header (TPID, TCI; network order) the kernel took out of a
/// received frame, from `recvmsg`'s auxiliary data, as OVS's netdev-linux
/// puts it back.
fn vlan_from_auxdata(msg: &libc::msghdr) -> Option<[u8; 4]> {
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk the
    // control buffer it describes and stay within msg_controllen.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: non-null cmsg within the control buffer.
        let c = unsafe { &*cmsg };
        let len = std::mem::size_of::<TpacketAuxdata>();
        if c.cmsg_level == libc::SOL_PACKET
            && c.cmsg_type == PACKET_AUXDATA
            // SAFETY: computing the length a cmsg of `len` bytes takes.
            && c.cmsg_len as usize >= unsafe { libc::CMSG_LEN(len as u32) } as usize
        {
            // SAFETY: the cmsg holds a tpacket_auxdata (checked length);
            // read unaligned as the buffer's alignment is the kernel's.
            let aux: TpacketAuxdata =
                unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast()) };
            if aux.tp_status & TP_STATUS_VLAN_VALID == 0 {
                return None;
            }
            let tpid = if aux.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 {
                aux.tp_vlan_tpid
            } else {
                0x8100
            };
            let mut tag = [0u8; 4];
            tag[..2].copy_from_slice(&tpid.to_be_bytes());
            tag[2..].copy_from_slice(&aux.tp_vlan_tci.to_be_bytes());
            return Some(tag);
        }
        // SAFETY: advancing within the control buffer msg describes.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    None
}

fn owned(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn check(rc: i32) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn setsockopt<T>(fd: &OwnedFd, level: i32, name: i32, value: &T) -> io::Result<()> {
    // SAFETY: `value` points to a T of the size passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as u32,
        )
    })
}

fn set_rcvtimeo(fd: &OwnedFd, d: Duration) -> io::Result<()> {
    let tv = libc::timeval {
        tv_sec: d.as_secs() as _,
        tv_usec: d.subsec_micros() as _,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVTIMEO, &tv)
}

fn ifreq(name: &str) -> io::Result<libc::ifreq> {
    if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.contains('\0') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("bad interface name {name:?} (1 to 15 bytes, no NUL)"),
        ));
    }
    // SAFETY: ifreq is plain data.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in ifr.ifr_name.iter_mut().zip(name.bytes()) {
        *d = s as libc::c_char;
    }
    Ok(ifr)
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> io::Result<i32> {
    let c = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
    // SAFETY: valid C string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no network interface named {name:?}"),
        ));
    }
    Ok(idx as i32)
}

/// Brings interface `name` up (in the caller's network namespace).
pub fn set_up(name: &str) -> io::Result<()> {
    // SAFETY: plain socket(2) call; result checked.
    let sock =
        owned(unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) })?;
    let mut ifr = ifreq(name)?;
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS take a pointer to an ifreq.
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut ifr) })?;
    // SAFETY: the flags member was just filled in by the kernel.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as i16 };
    check(unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut ifr) })
}

/// A frame from a replay file, with the port it arrives on (None: the
/// replay port itself).
#[derive(Clone, Debug)]
pub struct ReplayFrame {
    pub in_port: Option<u32>,
    pub frame: Vec<u8>,
}

/// Why a replay file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    // The I/O error is part of the message, not a `source`, so that it is
    // printed once.
    #[error("{path}: {error}")]
    Io { path: String, error: io::Error },
    #[error("{path}:{line}: {why}")]
    BadLine {
        path: String,
        line: usize,
        why: String,
    },
    #[error("{path}: bad pcap file: {why}")]
    BadPcap { path: String, why: String },
}

/// Reads a whole replay file: pcap (by its magic number) or lines of
/// `in_port<TAB>hex frame` (blank lines and `#` comments skipped).
pub fn read_replay_file(path: &Path) -> Result<Vec<ReplayFrame>, ReplayError> {
    let shown = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|error| ReplayError::Io {
        path: shown.clone(),
        error,
    })?;
    let magic = bytes
        .get(..4)
        .map(|m| u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
    if matches!(
        magic,
        Some(0xa1b2_c3d4 | 0xd4c3_b2a1 | 0xa1b2_3c4d | 0x4d3c_b2a1)
    ) {
        return read_pcap(&bytes, &shown);
    }
    let text = String::from_utf8(bytes).map_err(|e| ReplayError::BadLine {
        path: shown.clone(),
        line: 0,
        why: format!("neither pcap nor text: {e}"),
    })?;
    parse_tsv(&text, &shown)
}

/// Parses `in_port<TAB>hex frame` lines.
pub fn parse_tsv(text: &str, path: &str) -> Result<Vec<ReplayFrame>, ReplayError> {
    let mut frames = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: String| ReplayError::BadLine {
            path: path.to_string(),
            line: i + 1,
            why,
        };
        let (port, hex) = line
            .split_once('\t')
            .ok_or_else(|| bad("expected in_port<TAB>hex frame".into()))?;
        let in_port = port
            .trim()
            .parse::<u32>()
            .map_err(|e| bad(format!("in_port {port:?}: {e}")))?;
        let frame = hex::decode(hex.trim()).map_err(|e| bad(format!("bad hex frame: {e}")))?;
        frames.push(ReplayFrame {
            in_port: Some(in_port),
            frame,
        });
    }
    Ok(frames)
}

fn read_pcap(bytes: &[u8], path: &str) -> Result<Vec<ReplayFrame>, ReplayError> {
    let bad = |why: String| ReplayError::BadPcap {
        path: path.to_string(),
        why,
    };
    let mut reader = pcap_file::pcap::PcapReader::new(bytes).map_err(|e| bad(e.to_string()))?;
    if reader.header().datalink != pcap_file::DataLink::ETHERNET {
        return Err(bad(format!(
            "link type {:?}, only Ethernet is supported",
            reader.header().datalink
        )));
    }
    let mut frames = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = pkt.map_err(|e| bad(format!("packet {}: {e}", frames.len() + 1)))?;
        frames.push(ReplayFrame {
            in_port: None,
            frame: pkt.data.into_owned(),
        });
    }
    Ok(frames)
}

impl PortCounters {
    pub fn count_tx(&self, r: &io::Result<()>, len: usize) {
        match r {
            Ok(()) => {
                self.tx_packets.fetch_add(1, Ordering::Relaxed);
                self.tx_bytes.fetch_add(len as u64, Ordering::Relaxed)
            }
            Err(_) => self.tx_errors.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// Adds the drops the port's socket counted since the last call.
    pub fn collect_drops(&self, io: &PortIo) {
        if let Some(n) = io.socket_drops() {
            self.rx_dropped.fetch_add(n, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_lines_parse_and_errors_say_where() {
        let frames = parse_tsv("# c\n11\t0a0b\n\n12\tff\n", "x").unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0].in_port, Some(11));
        assert_eq!(frames[0].frame, vec![0x0a, 0x0b]);
        let e = parse_tsv("11\t0a0\n", "f.tsv").unwrap_err().to_string();
        assert_eq!(e, "f.tsv:1: bad hex frame: Odd number of digits");
        let e = parse_tsv("1\t00\nx\t00\n", "f.tsv")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("f.tsv:2: in_port \"x\""), "{e}");
        let e = parse_tsv("1\tzz\n", "f.tsv").unwrap_err().to_string();
        assert!(e.contains("Invalid character 'z' at position 0"), "{e}");
    }

    #[test]
    fn pcap_roundtrip() {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let mut buf = Vec::new();
        {
            let mut w = PcapWriter::with_header(&mut buf, PcapHeader::default()).unwrap();
            let data = [1u8, 2, 3, 4];
            w.write_packet(&PcapPacket::new(Duration::ZERO, 4, &data))
                .unwrap();
        }
        let frames = read_pcap(&buf, "p").unwrap();
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].frame, vec![1, 2, 3, 4]);
        assert!(read_pcap(&buf[..30], "p").is_err());
    }

    #[test]
    fn bad_interface_names_are_errors() {
        assert!(ifindex("no-such-if-x").is_err());
        assert!(PortIo::open_packet("a-name-that-is-far-too-long").is_err());
    }
}
