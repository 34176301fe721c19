//! Network namespaces joined to the datapath by veth pairs: the demo's
//! topology and the integration tests' hosts. Needs root and `ip` from
//! iproute2. Everything created is removed when the [`Host`] is dropped.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::AsFd;
use std::process::Command;
use std::time::{Duration, Instant};

/// A host: a network namespace with one interface `eth0`, whose veth peer
/// (`port`) lives in the caller's namespace and becomes a datapath port.
#[derive(Debug)]
pub struct Host {
    pub netns: String,
    /// The veth end outside the namespace.
    pub port: String,
    pub addr: Ipv4Addr,
    pub mac: [u8; 6],
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| io::Error::new(e.kind(), format!("running `ip {}`: {e}", args.join(" "))))?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Host {
    /// Creates namespace `netns` with `eth0` at `addr`/24 and MAC `mac`,
    /// joined by a veth pair to `port` (left down: the datapath brings it
    /// up). Leftovers of an earlier run with the same names are removed
    /// first.
    pub fn create(netns: &str, port: &str, addr: Ipv4Addr, mac: [u8; 6]) -> io::Result<Host> {
        let _ = ip(&["netns", "del", netns]);
        let _ = ip(&["link", "del", port]);
        ip(&["netns", "add", netns])?;
        let host = Host {
            netns: netns.into(),
            port: port.into(),
            addr,
            mac,
        };
        let mac_s = mac_string(mac);
        ip(&[
            "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", netns,
        ])?;
        ip(&["-n", netns, "link", "set", "eth0", "address", &mac_s])?;
        ip(&[
            "-n",
            netns,
            "addr",
            "add",
            &format!("{addr}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", netns, "link", "set", "eth0", "up"])?;
        ip(&["-n", netns, "link", "set", "lo", "up"])?;
        // Checksums and segmentation done in software inside the namespace,
        // so that frames read from the veth are complete on the wire.
        host.run(|| crate::raw_socket::disable_tx_offload("eth0"))??;
        Ok(host)
    }

    /// Runs `f` on a thread that has entered this host's namespace (the
    /// sockets it opens live there) and waits for it.
    pub fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> io::Result<R> {
        self.spawn(f)?
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?
    }

    /// Starts `f` on a thread that has entered this host's namespace.
    pub fn spawn<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> io::Result<std::thread::JoinHandle<io::Result<R>>> {
        let path = format!("/run/netns/{}", self.netns);
        let ns = std::fs::File::open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("opening {path}: {e}")))?;
        Ok(std::thread::spawn(move || {
            // setns(2) moves this thread only.
            rustix::thread::move_into_link_name_space(
                ns.as_fd(),
                Some(rustix::thread::LinkNameSpaceType::Network),
            )?;
            Ok(f())
        }))
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and so the pair.
        let _ = ip(&["netns", "del", &self.netns]);
        let _ = ip(&["link", "del", &self.port]);
    }
}

fn mac_string(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Sends one ICMP echo request to `dst` and waits up to `timeout` for the
/// reply (call inside a namespace with [`Host::run`]). Returns the round
/// trip time.
pub fn ping(dst: Ipv4Addr, id: u16, seq: u16, timeout: Duration) -> io::Result<Option<Duration>> {
    use rustix::event::{poll, PollFd, PollFlags, Timespec};
    use rustix::net::{ipproto, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType};
    let sock = rustix::net::socket_with(
        AddressFamily::INET,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(ipproto::ICMP),
    )?;
    let mut req = vec![8u8, 0, 0, 0];
    req.extend_from_slice(&id.to_be_bytes());
    req.extend_from_slice(&seq.to_be_bytes());
    req.extend_from_slice(b"upcalld ping payload....");
    let csum = messages::wire::checksum::internet(&req);
    req[2..4].copy_from_slice(&csum.to_be_bytes());
    let start = Instant::now();
    rustix::net::sendto(
        &sock,
        &req,
        SendFlags::empty(),
        &std::net::SocketAddrV4::new(dst, 0),
    )?;
    let mut buf = [0u8; 1500];
    while let Some(left) = timeout.checked_sub(start.elapsed()) {
        let wait = Timespec {
            tv_sec: left.as_secs() as _,
            tv_nsec: left.subsec_nanos() as _,
        };
        let mut pfd = [PollFd::new(&sock, PollFlags::IN)];
        if poll(&mut pfd, Some(&wait)).unwrap_or(0) == 0 {
            continue;
        }
        let Ok((n, _)) = rustix::net::recv(&sock, &mut buf[..], RecvFlags::empty()) else {
            continue;
        };
        let pkt = &buf[..n];
        let Some(ihl) = pkt.first().map(|b| usize::from(b & 0x0f) * 4) else {
            continue;
        };
        let Some(icmp) = pkt.get(ihl..ihl + 8) else {
            continue;
        };
        if icmp[0] == 0 && icmp[4..6] == id.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            return Ok(Some(start.elapsed()));
        }
    }
    Ok(None)
}
