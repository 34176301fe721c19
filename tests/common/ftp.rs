//! A minimal FTP server and client for the connection-tracker helper
//! tests (embedded datapath: tests/conntrack_traffic.rs; kernel:
//! tests/kernel_traffic.rs). The server speaks enough of RFC 959 and
//! RFC 2428 (`PORT`, `PASV`, `EPRT`, `EPSV`) for one session; the client
//! retrieves a file in active, then passive mode, as Python's ftplib does
//! (which the embedded tests use where Python is installed; the kernel VM
//! has none).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use upcalld::netns::Host;

use super::pattern;

/// A digest of a transfer, to compare without holding both copies.
pub fn digest(data: &[u8]) -> u64 {
    data.iter()
        .enumerate()
        .map(|(i, &b)| (i as u64 + 1) * u64::from(b))
        .sum::<u64>()
        % 1_000_003
}

/// Accepts one connection within `timeout`.
pub fn accept_within(l: &TcpListener, timeout: Duration) -> std::io::Result<TcpStream> {
    l.set_nonblocking(true)?;
    let start = std::time::Instant::now();
    loop {
        match l.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && start.elapsed() < timeout => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Err(e) => return Err(e),
        }
    }
}

/// The command lines an FTP server read, and its client's address.
pub type FtpSession = (Vec<String>, SocketAddr);

/// `PORT h1,h2,h3,h4,p1,p2`'s address.
fn port_arg(arg: &str) -> Option<SocketAddr> {
    let n: Vec<u8> = arg.split(',').filter_map(|x| x.parse().ok()).collect();
    (n.len() == 6).then(|| {
        let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
        (ip, u16::from(n[4]) << 8 | u16::from(n[5])).into()
    })
}

/// `EPRT |af|address|port|`'s address (RFC 2428).
fn eprt_arg(arg: &str) -> Option<SocketAddr> {
    let d = arg.chars().next()?;
    let parts: Vec<&str> = arg.split(d).collect();
    let [_, _, addr, port, _] = parts[..] else {
        return None;
    };
    Some((addr.parse::<IpAddr>().ok()?, port.parse().ok()?).into())
}

/// A minimal FTP server in `host` at `addr` port 21 for one session:
/// `USER`, `PASS`, `TYPE`, `PORT`, `EPRT`, `PASV`, `EPSV`, `RETR` (sends
/// `size` bytes of `pattern`), `QUIT`. Returns the command lines it read
/// and the control connection's peer.
pub fn ftp_server(
    host: &Host,
    addr: IpAddr,
    size: usize,
) -> std::thread::JoinHandle<std::io::Result<std::io::Result<FtpSession>>> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let h = host
        .spawn(move || {
            let l = TcpListener::bind((addr, 21)).expect("bind 21");
            ready_tx.send(()).unwrap();
            let (ctl, peer) = l.accept().expect("accept");
            ctl.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
            let mut r = BufReader::new(ctl.try_clone().unwrap());
            let mut w = ctl;
            w.write_all(b"220 upcalld test server\r\n").unwrap();
            let mut seen = Vec::new();
            let mut active: Option<SocketAddr> = None;
            let mut passive: Option<TcpListener> = None;
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end().to_string();
                seen.push(line.clone());
                let (cmd, arg) = line.split_once(' ').unwrap_or((&line, ""));
                let cmd = cmd.to_ascii_uppercase();
                let reply = match cmd.as_str() {
                    "USER" => "331 password please".to_string(),
                    "PASS" => "230 logged in".into(),
                    "TYPE" => "200 type set".into(),
                    "PORT" | "EPRT" => {
                        let to = if cmd == "PORT" {
                            port_arg(arg)
                        } else {
                            eprt_arg(arg)
                        };
                        match to {
                            Some(to) => {
                                active = Some(to);
                                passive = None;
                                format!("200 {cmd} ok")
                            }
                            None => format!("501 bad {cmd}"),
                        }
                    }
                    "PASV" | "EPSV" => {
                        let pl = TcpListener::bind((addr, 0)).unwrap();
                        let p = pl.local_addr().unwrap().port();
                        passive = Some(pl);
                        active = None;
                        match (cmd.as_str(), addr) {
                            ("PASV", IpAddr::V4(a)) => {
                                let o = a.octets();
                                format!(
                                    "227 Entering Passive Mode ({},{},{},{},{},{}).",
                                    o[0],
                                    o[1],
                                    o[2],
                                    o[3],
                                    p >> 8,
                                    p & 0xff
                                )
                            }
                            ("PASV", IpAddr::V6(_)) => "425 use EPSV".into(),
                            _ => format!("229 Entering Extended Passive Mode (|||{p}|)"),
                        }
                    }
                    "RETR" => {
                        w.write_all(b"150 here it comes\r\n")?;
                        let data = match (active.take(), passive.take()) {
                            (Some(to), _) => {
                                TcpStream::connect_timeout(&to, Duration::from_secs(3))
                            }
                            (None, Some(pl)) => accept_within(&pl, Duration::from_secs(3)),
                            (None, None) => Err(std::io::ErrorKind::NotConnected.into()),
                        };
                        match data {
                            Ok(mut d) => {
                                d.write_all(&pattern(size))?;
                                d.shutdown(std::net::Shutdown::Write)?;
                                "226 transfer complete".into()
                            }
                            Err(_) => "425 no data connection".into(),
                        }
                    }
                    "QUIT" => {
                        w.write_all(b"221 bye\r\n")?;
                        break;
                    }
                    _ => "502 not here".into(),
                };
                w.write_all(format!("{reply}\r\n").as_bytes())?;
            }
            Ok((seen, peer))
        })
        .unwrap();
    ready_rx.recv().unwrap();
    h
}

/// An FTP client's control connection.
struct Control {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Control {
    /// The next reply line, which must start with `code`.
    fn expect(&mut self, code: &str) -> Result<String, String> {
        let mut line = String::new();
        self.r
            .read_line(&mut line)
            .map_err(|e| format!("reading a reply: {e}"))?;
        if line.starts_with(code) {
            Ok(line.trim_end().to_string())
        } else {
            Err(format!("wanted {code}, got {line:?}"))
        }
    }

    fn send(&mut self, cmd: &str, code: &str) -> Result<String, String> {
        self.w
            .write_all(format!("{cmd}\r\n").as_bytes())
            .map_err(|e| format!("sending {cmd}: {e}"))?;
        self.expect(code)
    }
}

/// Reads a data connection to its end: its length and digest.
fn read_data(mut d: TcpStream, timeout: Duration) -> Result<(usize, u64), String> {
    d.set_read_timeout(Some(timeout)).unwrap();
    let mut got = Vec::new();
    d.read_to_end(&mut got)
        .map_err(|e| format!("reading data: {e}"))?;
    Ok((got.len(), digest(&got)))
}

/// One FTP session from `client` (in the calling thread's namespace) to
/// `server` port 21: `RETR data` in active mode (`PORT`, or `EPRT` over
/// IPv6), then in passive mode (`PASV`, or `EPSV`); each transfer's
/// length and digest.
pub fn ftp_client(
    client: IpAddr,
    server: IpAddr,
    timeout: Duration,
) -> Result<Vec<(usize, u64)>, String> {
    let s = TcpStream::connect_timeout(&(server, 21).into(), timeout)
        .map_err(|e| format!("connecting to {server} port 21: {e}"))?;
    s.set_read_timeout(Some(timeout)).unwrap();
    let mut c = Control {
        r: BufReader::new(s.try_clone().unwrap()),
        w: s,
    };
    c.expect("220")?;
    c.send("USER anonymous", "331")?;
    c.send("PASS anonymous@", "230")?;
    c.send("TYPE I", "200")?;
    let mut out = Vec::new();

    let l = TcpListener::bind((client, 0)).map_err(|e| format!("data listener: {e}"))?;
    let p = l.local_addr().unwrap().port();
    match client {
        IpAddr::V4(a) => {
            let o = a.octets();
            let arg = format!(
                "{},{},{},{},{},{}",
                o[0],
                o[1],
                o[2],
                o[3],
                p >> 8,
                p & 0xff
            );
            c.send(&format!("PORT {arg}"), "200")?
        }
        IpAddr::V6(a) => c.send(&format!("EPRT |2|{a}|{p}|"), "200")?,
    };
    c.send("RETR data", "150")?;
    let d = accept_within(&l, timeout).map_err(|e| format!("active data connection: {e}"))?;
    out.push(read_data(d, timeout)?);
    c.expect("226")?;

    let to: SocketAddr = match server {
        IpAddr::V4(_) => {
            let reply = c.send("PASV", "227")?;
            let inner = reply
                .split_once('(')
                .and_then(|(_, r)| r.split_once(')'))
                .map(|(a, _)| a)
                .ok_or_else(|| format!("no address in {reply:?}"))?;
            port_arg(inner).ok_or_else(|| format!("bad address in {reply:?}"))?
        }
        IpAddr::V6(_) => {
            let reply = c.send("EPSV", "229")?;
            let port = reply
                .split("|||")
                .nth(1)
                .and_then(|r| r.split('|').next())
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("no port in {reply:?}"))?;
            (server, port).into()
        }
    };
    c.send("RETR data", "150")?;
    let d = TcpStream::connect_timeout(&to, timeout)
        .map_err(|e| format!("passive data connection to {to}: {e}"))?;
    out.push(read_data(d, timeout)?);
    c.expect("226")?;
    c.send("QUIT", "221")?;
    Ok(out)
}
