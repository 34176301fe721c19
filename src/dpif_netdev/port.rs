//! Ports of the userspace datapath: Linux interfaces through AF_PACKET, tap
//! devices, and replay files.

use std::io;
use std::mem::size_of;
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rustix::net::{AddressFamily, SocketType};

use crate::raw_socket;

/// How long a blocking receive waits before checking for shutdown.
pub const RX_POLL: Duration = Duration::from_millis(100);
/// An AF_PACKET port's socket receive buffer, in bytes.
const RX_BUFFER: i32 = 4 * 1024 * 1024;
/// The largest frame a port reads: the length of a receive loop's scratch
/// buffer.
pub const MAX_FRAME: usize = 65_536;

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
        let st: TpacketStats =
            raw_socket::get_option(fd, libc::SOL_PACKET, libc::PACKET_STATISTICS).ok()?;
        Some(u64::from(st.tp_drops))
    }

    /// Opens AF_PACKET on the existing interface `name`: ignores the frames
    /// we send ourselves, brings it up and puts it in promiscuous mode.
    pub fn open_packet(name: &str) -> io::Result<PortIo> {
        let ifindex = raw_socket::ifindex(name)?;
        // Protocol 0: the socket receives nothing until it is bound to the
        // interface, after its options are set. Created with ETH_P_ALL it
        // would take every interface's frames, and the interface's own
        // outgoing ones, in the meantime.
        let fd = raw_socket::socket(AddressFamily::PACKET, SocketType::RAW)?;
        raw_socket::set_option(&fd, libc::SOL_PACKET, libc::PACKET_IGNORE_OUTGOING, &1i32)?;
        // The kernel takes a received frame's VLAN tag out of the frame
        // (VLAN acceleration); the auxiliary data gives it back.
        raw_socket::set_option(&fd, libc::SOL_PACKET, PACKET_AUXDATA, &1i32)?;
        // Up before the bind: a socket bound to a down interface is given
        // ENETDOWN.
        raw_socket::set_up(name)?;
        raw_socket::bind_packet(&fd, ifindex, libc::ETH_P_ALL as u16)?;
        let mreq = PacketMreq {
            ifindex: ifindex as i32,
            kind: libc::PACKET_MR_PROMISC as u16,
            ..bytemuck::Zeroable::zeroed()
        };
        raw_socket::set_option(&fd, libc::SOL_PACKET, libc::PACKET_ADD_MEMBERSHIP, &mreq)?;
        raw_socket::set_receive_timeout(&fd, RX_POLL)?;
        // The default buffer (~100 full-sized frames) overflows whenever the
        // receive thread is not scheduled for a moment, and each frame lost
        // there halves a TCP sender's window.
        raw_socket::set_receive_buffer(&fd, RX_BUFFER)?;
        Ok(PortIo::Packet(fd))
    }

    /// Creates (or attaches to) the tap device `name` and brings it up.
    pub fn open_tap(name: &str) -> io::Result<PortIo> {
        let fd = raw_socket::open_tap(name)?;
        raw_socket::set_up(name)?;
        Ok(PortIo::Tap(fd))
    }

    /// Sends one frame out of the port.
    pub fn send(&self, frame: &[u8]) -> io::Result<()> {
        let fd = match self {
            PortIo::Packet(fd) => fd,
            // A tap descriptor is not a socket: `send` would fail ENOTSOCK.
            PortIo::Tap(fd) => {
                rustix::io::write(fd, frame)?;
                return Ok(());
            }
            PortIo::Replay => return Ok(()),
            PortIo::Tunnel(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a tunnel vport sends with a tunnel",
                ))
            }
        };
        raw_socket::send(fd, frame)
    }

    /// Receives one frame into `frame` (cleared first). The frame is read
    /// into `scratch` (reused, at least [`MAX_FRAME`] long) and copied out
    /// at its own length: a frame buffer sized and zeroed for the largest
    /// frame each time would cost a 64 KiB allocation and fill per packet.
    /// `Ok(false)` when nothing arrived within [`RX_POLL`], or at once if
    /// not `wait`.
    pub fn recv(&self, frame: &mut Vec<u8>, scratch: &mut [u8], wait: bool) -> io::Result<bool> {
        frame.clear();
        let fd = match self {
            PortIo::Packet(fd) => fd,
            PortIo::Tap(fd) => {
                let timeout = if wait { RX_POLL } else { Duration::ZERO };
                if !raw_socket::wait_readable(fd, timeout)? {
                    return Ok(false);
                }
                // Not a socket: a plain read gives one frame.
                return match rustix::io::read(fd, &mut *scratch) {
                    Ok(n) => {
                        frame.extend_from_slice(&scratch[..n]);
                        Ok(true)
                    }
                    Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => Ok(false),
                    Err(e) => Err(e.into()),
                };
            }
            PortIo::Replay | PortIo::Tunnel(_) => return Ok(false),
        };
        // Room for one cmsg carrying a tpacket_auxdata.
        let mut control = [0u64; 8];
        let Some(got) = raw_socket::recv_with_control(fd, scratch, &mut control, wait)? else {
            return Ok(false);
        };
        let received = &scratch[..got.len];
        match vlan_from_auxdata(&control, got.control_len) {
            Some(tag) if received.len() >= 12 => {
                frame.reserve_exact(received.len() + tag.len());
                frame.extend_from_slice(&received[..12]);
                frame.extend_from_slice(&tag);
                frame.extend_from_slice(&received[12..]);
            }
            _ => frame.extend_from_slice(received),
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
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// linux/if_packet.h's `struct tpacket_stats`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::Pod)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// linux/if_packet.h's `struct packet_mreq`.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Zeroable, bytemuck::NoUninit)]
struct PacketMreq {
    ifindex: i32,
    kind: u16,
    alen: u16,
    address: [u8; 8],
}

/// The VLAN header (TPID, TCI; network order) the kernel took out of a
/// received frame, from `recvmsg`'s auxiliary data, as OVS's netdev-linux
/// puts it back.
fn vlan_from_auxdata(control: &[u64], len: usize) -> Option<[u8; 4]> {
    let (_, _, data) = raw_socket::control_messages(control, len)
        .find(|(level, kind, _)| *level == libc::SOL_PACKET && *kind == PACKET_AUXDATA)?;
    let aux: TpacketAuxdata =
        bytemuck::try_pod_read_unaligned(data.get(..size_of::<TpacketAuxdata>())?).ok()?;
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
    Some(tag)
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

    /// An internal port's tap descriptor is not a socket: frames go both
    /// ways through it (they failed ENOTSOCK when sent and read as one).
    #[test]
    fn a_tap_port_sends_and_receives_frames() {
        let name = format!("uptap{}", std::process::id() % 100_000);
        let tap = match PortIo::open_tap(&name) {
            Ok(tap) => tap,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
                eprintln!("skipped: creating a tap device needs CAP_NET_ADMIN");
                return;
            }
            Err(e) => panic!("tap {name}: {e}"),
        };
        let wire = PortIo::open_packet(&name).unwrap();
        // A broadcast frame of an ethertype nothing in the kernel answers.
        let mut frame = vec![0xff; 6];
        frame.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x88, 0xb5]);
        frame.extend_from_slice(&[0x5a; 50]);
        let mut buf = Vec::new();
        let mut scratch = vec![0; MAX_FRAME];
        let mut received = |port: &PortIo, buf: &mut Vec<u8>| {
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while std::time::Instant::now() < deadline {
                if port.recv(buf, &mut scratch, true).unwrap() && *buf == frame {
                    return true;
                }
            }
            false
        };
        wire.send(&frame).unwrap();
        assert!(
            received(&tap, &mut buf),
            "the tap did not read the frame sent on its interface"
        );
        tap.send(&frame).unwrap();
        assert!(
            received(&wire, &mut buf),
            "the interface did not see the frame written to the tap"
        );
    }

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
        assert!(raw_socket::ifindex("no-such-if-x").is_err());
        assert!(PortIo::open_packet("a-name-that-is-far-too-long").is_err());
    }
}
