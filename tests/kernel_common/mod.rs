//! Shared by the kernel datapath tests (run inside the kernel VM): the
//! skip-or-fail check, veth pairs, raw packet sockets, frames, ovs-dpctl.

#![allow(dead_code)] // each test binary uses part of this

pub mod daemon;

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use messages::flow::*;
use upcalld::dpif_kernel::kernel_has_ovs;
use upcalld::raw_socket;

/// True if the test should run; false (after saying so) if it should skip.
pub fn ovs_present() -> bool {
    match kernel_has_ovs() {
        Ok(true) => true,
        other => {
            let required = std::env::var("OVS_KERNEL_REQUIRED").as_deref() == Ok("1");
            assert!(
                !required,
                "OVS_KERNEL_REQUIRED=1 but the ovs_datapath family is missing ({other:?})"
            );
            eprintln!("SKIPPED: no openvswitch kernel module (ovs_datapath family absent)");
            false
        }
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {cmd} {args:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The kernel's reasons for refusing a flow are only in its log.
pub fn ovs_dmesg() -> String {
    Command::new("dmesg")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter(|l| l.contains("openvswitch"))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

/// A veth pair: `name` goes into the datapath, `name_p` is where the test
/// sends and receives frames.
pub struct Veth {
    pub name: String,
}

impl Veth {
    pub fn new(name: &str) -> Veth {
        for conf in ["all", "default"] {
            let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
        }
        let peer = format!("{name}_p");
        let _ = Command::new("/sbin/ip")
            .args(["link", "del", name])
            .output();
        run(
            "/sbin/ip",
            &["link", "add", name, "type", "veth", "peer", "name", &peer],
        );
        run("/sbin/ip", &["link", "set", name, "up"]);
        run("/sbin/ip", &["link", "set", &peer, "up"]);
        Veth { name: name.into() }
    }

    pub fn peer(&self) -> String {
        format!("{}_p", self.name)
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("/sbin/ip")
            .args(["link", "del", &self.name])
            .output();
    }
}

/// An AF_PACKET socket bound to one interface, seeing every frame it
/// sends and receives.
pub struct PacketSocket {
    fd: OwnedFd,
}

impl PacketSocket {
    pub fn bind(ifname: &str) -> PacketSocket {
        let fd = raw_socket::packet_socket(ifname, libc::ETH_P_ALL as u16)
            .unwrap_or_else(|e| panic!("AF_PACKET socket on {ifname}: {e}"));
        PacketSocket { fd }
    }

    pub fn send(&self, frame: &[u8]) {
        raw_socket::send(&self.fd, frame).expect("send");
    }

    /// Frames received within `timeout` that satisfy `want`.
    pub fn recv_matching(&self, timeout: Duration, want: impl Fn(&[u8]) -> bool) -> Vec<Vec<u8>> {
        self.recv_until(timeout, want, usize::MAX)
    }

    /// Whether `frame` arrives within `timeout` (returns as soon as it does).
    pub fn sees(&self, timeout: Duration, frame: &[u8]) -> bool {
        !self.recv_until(timeout, |f| f == frame, 1).is_empty()
    }

    /// Frames that satisfy `want`, until `timeout` or `max` of them.
    fn recv_until(
        &self,
        timeout: Duration,
        want: impl Fn(&[u8]) -> bool,
        max: usize,
    ) -> Vec<Vec<u8>> {
        let deadline = Instant::now() + timeout;
        let mut got = Vec::new();
        let mut buf = [0u8; 2048];
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(n) = raw_socket::recv_within(&self.fd, &mut buf, left).expect("recv") else {
                continue;
            };
            if want(&buf[..n]) {
                got.push(buf[..n].to_vec());
                if got.len() >= max {
                    break;
                }
            }
        }
        got
    }
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp_frame(
    src: [u8; 6],
    dst: [u8; 6],
    ip_src: u32,
    ip_dst: u32,
    sport: u16,
    dport: u16,
) -> Vec<u8> {
    let payload = b"upcalld kernel test";
    let mut f = Vec::new();
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETH_TYPE_IP.to_be_bytes());
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, IPPROTO_UDP, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&ip_src.to_be_bytes());
    ip.extend_from_slice(&ip_dst.to_be_bytes());
    let c = messages::wire::checksum::internet(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

pub fn dpctl_flows(dp: &str) -> Vec<String> {
    run(
        "ovs-dpctl",
        &["--no-names", "dump-flows", &format!("system@{dp}")],
    )
    .lines()
    .map(str::to_string)
    .collect()
}
