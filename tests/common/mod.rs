//! Shared by the integration tests: hosts in network namespaces joined
//! through a real `upcalld` daemon, and the daemon's control and metrics.

#![allow(dead_code)] // each test binary uses part of this

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use upcalld::control::{self, Command as Ctl};
use upcalld::netns::Host;

pub mod ftp;

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests create network namespaces and veth pairs: run them as root"
    );
}

/// `config` with the OpenFlow listener `socket` when it names none: the
/// daemon's default, `/run/upcalld/br0.mgmt`, would be one socket for
/// every test daemon running at once.
pub fn own_openflow_listener(config: &str, socket: &Path) -> String {
    if config.contains("listen =") {
        return config.to_string();
    }
    let listen = format!("listen = [\"punix:{}\"]\n", socket.display());
    match config.find("[openflow]\n") {
        Some(at) => {
            let (head, tail) = config.split_at(at + "[openflow]\n".len());
            format!("{head}{listen}{tail}")
        }
        None => format!("{config}\n[openflow]\n{listen}"),
    }
}

/// Sends SIGTERM to `child`, a daemon this test spawned and has not
/// reaped (so the pid is still its).
pub fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_child(child);
    let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
}

/// Runs `ip ARGS`; a failure fails the test with `ip`'s message.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace (with `lo` up) for a daemon, deleted when dropped;
/// a leftover of the same name is deleted first.
pub struct Netns(pub String);

impl Netns {
    pub fn new(name: &str) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        ip(&["-n", name, "link", "set", "lo", "up"]);
        Netns(name.into())
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// Two hosts, A (10.77.0.1) on port 1 and B (10.77.0.2) on port 2, named
/// after `tag` so that tests running at once do not collide.
pub fn two_hosts(tag: &str) -> (Host, Host) {
    let a = Host::create(
        &format!("uct-{tag}-a"),
        &format!("uc{tag}a"),
        Ipv4Addr::new(10, 77, 0, 1),
        [2, 0, 0, 0x77, 0, 1],
    )
    .expect("creating host A");
    let b = Host::create(
        &format!("uct-{tag}-b"),
        &format!("uc{tag}b"),
        Ipv4Addr::new(10, 77, 0, 2),
        [2, 0, 0, 0x77, 0, 2],
    )
    .expect("creating host B");
    (a, b)
}

/// A running daemon, stopped with SIGTERM when dropped.
pub struct Daemon {
    child: Child,
    /// Set once the child has been reaped: its pid is no longer ours.
    exited: bool,
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub metrics_port: u16,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Starts `upcalld run` with `ports` (name, number), `rules`, and extra
    /// top-level config lines.
    pub fn start(tag: &str, ports: &[(&str, u32)], rules: &str, extra: &str) -> Daemon {
        Daemon::start_with(tag, ports, rules, extra, |_| {})
    }

    /// [`Daemon::start`], with `prepare` given the command before it runs.
    pub fn start_with(
        tag: &str,
        ports: &[(&str, u32)],
        rules: &str,
        extra: &str,
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        let ports: String = ports
            .iter()
            .map(|(name, number)| {
                format!("[[port]]\nname = \"{name}\"\ntype = \"system\"\nnumber = {number}\n")
            })
            .collect();
        Daemon::launch(None, tag, &ports, rules, extra, prepare)
    }

    /// [`Daemon::start`] with the `[[port]]` tables written out (for
    /// settings beyond a name and a number).
    pub fn start_with_ports(tag: &str, ports: &str, rules: &str, extra: &str) -> Daemon {
        Daemon::start_in(None, tag, ports, rules, extra)
    }

    /// [`Daemon::start_with_ports`], run inside network namespace `netns`
    /// when given (its ports, addresses and routes are that namespace's).
    pub fn start_in(
        netns: Option<&str>,
        tag: &str,
        ports: &str,
        rules: &str,
        extra: &str,
    ) -> Daemon {
        Daemon::launch(netns, tag, ports, rules, extra, |_| {})
    }

    fn launch(
        netns: Option<&str>,
        tag: &str,
        ports: &str,
        rules: &str,
        extra: &str,
        prepare: impl FnOnce(&mut Command),
    ) -> Daemon {
        let dir = std::env::temp_dir().join(format!("upcalld-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let rules_path = dir.join("rules.of13");
        std::fs::write(&rules_path, rules).unwrap();
        let socket = dir.join("ctl.sock");
        let metrics_port = free_port();
        let mut config = format!(
            "rules = {:?}\ncontrol_socket = {:?}\nmetrics_addr = \"127.0.0.1:{metrics_port}\"\n",
            rules_path, socket
        );
        if !extra.contains("revalidate_interval_ms") {
            config.push_str("revalidate_interval_ms = 200\n");
        }
        config.push_str(extra);
        config.push('\n');
        config.push_str(ports);
        let config = own_openflow_listener(&config, &dir.join("br0.mgmt"));
        let config_path = dir.join("upcalld.toml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.join("upcalld.log")).unwrap();
        let mut cmd = match netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_upcalld")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_upcalld")),
        };
        cmd.args(["run", "--config"])
            .arg(&config_path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log);
        prepare(&mut cmd);
        let child = cmd.spawn().expect("starting upcalld");
        let mut d = Daemon {
            exited: false,
            child,
            dir,
            socket,
            metrics_port,
        };
        let start = Instant::now();
        while !control::call(&d.socket, Ctl::UpcallShow, "").is_ok_and(|r| r.is_ok()) {
            if let Ok(Some(status)) = d.child.try_wait() {
                d.exited = true;
                panic!("upcalld exited ({status}); log:\n{}", d.log());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "upcalld did not come up; log:\n{}",
                d.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("upcalld.log")).unwrap_or_default()
    }

    /// Waits for `cond`, failing the test (with the daemon's log) on timeout.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(
                start.elapsed() < timeout,
                "timed out waiting until {what}; daemon log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Runs a ctl command; panics on error.
    pub fn ctl(&self, cmd: Ctl, body: &str) -> String {
        match control::call(&self.socket, cmd, body).expect("control socket") {
            Ok(out) => out,
            Err(e) => panic!("ctl {} failed: {e}", cmd.name()),
        }
    }

    /// Runs a ctl command expecting an error; returns it.
    pub fn ctl_err(&self, cmd: Ctl, body: &str) -> String {
        match control::call(&self.socket, cmd, body).expect("control socket") {
            Ok(out) => panic!("ctl {} unexpectedly succeeded: {out}", cmd.name()),
            Err(e) => e,
        }
    }

    /// Scrapes `/metrics` over HTTP.
    pub fn scrape(&self) -> String {
        let mut s = TcpStream::connect(("127.0.0.1", self.metrics_port)).expect("metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 200"), "metrics answered: {out}");
        out
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The rules file the daemon was started with.
    pub fn rules_path(&self) -> PathBuf {
        self.dir.join("rules.of13")
    }

    /// Sends `signal` to the daemon.
    pub fn signal(&self, signal: i32) {
        assert!(!self.exited, "the daemon has exited");
        let signal = rustix::process::Signal::from_named_raw(signal).expect("a signal's number");
        // Our own child, not yet reaped: the pid is still its.
        let _ =
            rustix::process::kill_process(rustix::process::Pid::from_child(&self.child), signal);
    }

    /// Waits for the daemon to exit; returns whether it exited successfully.
    pub fn wait_exit(&mut self, timeout: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exited = true;
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("upcalld did not exit; log:\n{}", self.log());
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.exited {
            let _ = std::fs::remove_dir_all(&self.dir);
            return;
        }
        terminate(&self.child);
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(_)) = self.child.try_wait() {
                let _ = std::fs::remove_dir_all(&self.dir);
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of a metric line `name{labels} value` (exact name and labels).
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        l.strip_prefix(series)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// A field `name:value` or `name=value` in a line of ctl output.
pub fn field(line: &str, name: &str) -> Option<u64> {
    line.split([',', ' ']).find_map(|t| {
        t.trim()
            .strip_prefix(name)?
            .strip_prefix([':', '='])?
            .parse()
            .ok()
    })
}

/// Pings `dst` from `from` until a reply or `tries` requests.
pub fn ping_ok(from: &Host, dst: Ipv4Addr, tries: u16) -> bool {
    (1..=tries).any(|seq| {
        from.run(move || upcalld::netns::ping(dst, 0x7e57, seq, Duration::from_millis(500)))
            .unwrap()
            .unwrap()
            .is_some()
    })
}

/// Sends `len` bytes over TCP from `from` to `to:port`; returns what the
/// receiver got, or the error that stopped it.
pub fn tcp_transfer(
    from: &Host,
    to: &Host,
    port: u16,
    len: usize,
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let dst = to.addr;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let server = to
        .spawn(move || -> Result<Vec<u8>, String> {
            let l = TcpListener::bind((dst, port)).map_err(|e| e.to_string())?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            ready_tx.send(()).unwrap();
            let start = Instant::now();
            let (mut s, _) = loop {
                match l.accept() {
                    Ok(c) => break c,
                    Err(_) if start.elapsed() < timeout => {
                        std::thread::sleep(Duration::from_millis(20))
                    }
                    Err(e) => return Err(format!("accept: {e}")),
                }
            };
            s.set_nonblocking(false).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            let mut got = Vec::new();
            s.read_to_end(&mut got).map_err(|e| format!("read: {e}"))?;
            Ok(got)
        })
        .unwrap();
    ready_rx.recv().unwrap();
    let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
    let client = from
        .run(move || -> Result<(), String> {
            let mut s = TcpStream::connect_timeout(&(dst, port).into(), timeout)
                .map_err(|e| format!("connect: {e}"))?;
            s.set_write_timeout(Some(timeout))
                .map_err(|e| e.to_string())?;
            s.write_all(&data).map_err(|e| format!("write: {e}"))?;
            Ok(())
        })
        .unwrap();
    let got = server.join().unwrap().unwrap();
    client?;
    got
}

/// The byte pattern `tcp_transfer` sends.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// An IPv4/TCP frame from MAC 02:00:00:00:xx:xx (`mac`).
pub fn tcp_frame(mac: u16, src: u32, dst: u32, sport: u16, dport: u16) -> Vec<u8> {
    let [m4, m5] = mac.to_be_bytes();
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, m4, m5, 0x08, 0x00];
    f.extend_from_slice(&[0x45, 0, 0, 40, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.to_be_bytes());
    f.extend_from_slice(&dst.to_be_bytes());
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

/// `n` TCP frames on ports 1..3 from up to 1000 source MACs.
pub fn workload(n: u32) -> std::sync::Arc<Vec<upcalld::dpif_netdev::ReplayFrame>> {
    std::sync::Arc::new(
        (0..n)
            .map(|i| upcalld::dpif_netdev::ReplayFrame {
                in_port: Some(1 + i % 3),
                frame: tcp_frame(
                    (i % 1000) as u16,
                    0xc0a8_0000 + i,
                    if i % 2 == 0 {
                        0x0a01_0000 + i
                    } else {
                        0x0a02_0000 + i
                    },
                    1024 + (i % 7) as u16,
                    if i % 5 == 0 { 80 } else { 443 },
                ),
            })
            .collect(),
    )
}

/// One side of a two-daemon tunnel test: the daemon's namespace and a
/// host (`10.SUBNET.0.N`) whose port is moved into it, its MTU lowered
/// to leave room for the outer headers on a 1500-byte underlay (as OVN
/// lowers its ports').
pub struct TunnelSide {
    pub ns: Netns,
    pub host: Host,
}

/// Side `n` of the tunnel test tagged `tag`; the host's MAC is `mac`.
pub fn tunnel_side(tag: &str, subnet: u8, n: u8, mac: [u8; 6]) -> TunnelSide {
    let ns = Netns::new(&format!("uct-{tag}-d{n}"));
    let host = Host::create(
        &format!("uct-{tag}-h{n}"),
        &format!("uc{tag}h{n}"),
        Ipv4Addr::new(10, subnet, 0, n),
        mac,
    )
    .expect("creating a host");
    ip(&["-n", &host.netns, "link", "set", "eth0", "mtu", "1400"]);
    ip(&["link", "set", &host.port, "netns", &ns.0]);
    TunnelSide { ns, host }
}

/// A ping and a 1 MiB TCP transfer (to `tcp_port`) from `a`'s host to
/// `b`'s across the tunnel.
pub fn ping_and_transfer_across(a: &TunnelSide, b: &TunnelSide, tcp_port: u16, what: &str) {
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "{what}: no ping reply across the tunnel"
    );
    let got = tcp_transfer(&a.host, &b.host, tcp_port, 1 << 20, Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{what}: TCP transfer failed: {e}"));
    assert_eq!(got.len(), 1 << 20, "{what}");
    assert!(got == pattern(1 << 20), "{what}: data differs");
}

/// Runs `f` on a thread inside namespace `ns` and waits for it.
pub fn in_ns<R: Send + 'static>(ns: &Netns, f: impl FnOnce() -> R + Send + 'static) -> R {
    use std::os::fd::AsFd;
    let file = std::fs::File::open(format!("/run/netns/{}", ns.0)).unwrap();
    std::thread::spawn(move || {
        // setns(2) moves this thread only.
        rustix::thread::move_into_link_name_space(
            file.as_fd(),
            Some(rustix::thread::LinkNameSpaceType::Network),
        )
        .expect("entering the namespace");
        f()
    })
    .join()
    .unwrap()
}

/// The daemon's `/metrics`, read inside namespace `ns`.
pub fn scrape_in(ns: &Netns, d: &Daemon) -> String {
    let port = d.metrics_port;
    in_ns(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics endpoint");
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
}

/// A TCP backend: answers every connection to `addr`:`port` (5 bytes
/// read) with the byte `name`, until `stop`.
pub fn answer_until(
    name: u8,
    addr: Ipv4Addr,
    port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    let l = TcpListener::bind((addr, port)).unwrap();
    l.set_nonblocking(true).unwrap();
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = [0u8; 5];
                if s.read_exact(&mut req).is_ok() {
                    let _ = s.write_all(&[name]);
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Which [`answer_until`] backend answers a connection from `from` to
/// `addr`:`port`, if one does.
pub fn who_answers(from: &Host, addr: Ipv4Addr, port: u16) -> Option<u8> {
    from.run(move || {
        let mut s =
            TcpStream::connect_timeout(&(addr, port).into(), Duration::from_secs(1)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s.write_all(b"hello").ok()?;
        let mut who = [0u8; 1];
        s.read_exact(&mut who).ok()?;
        Some(who[0])
    })
    .unwrap()
}
