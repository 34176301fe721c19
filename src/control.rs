//! The control socket: a Unix stream socket (mode 0600) that `upcalld ctl`
//! talks to, one request per connection.
//!
//! Request: the command on the first line, then its body (a rules file, a
//! match, a flow); the client then shuts down its writing half. Reply:
//! `ok` or `error` on the first line, then the output.
//!
//! The same socket speaks OVS's unixctl JSON-RPC (`ovs-appctl -t SOCKET`):
//! a connection whose first byte is `{` is a unixctl session, any number
//! of requests on one connection.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::Path;

use messages::unixctl;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;

/// Largest request accepted (a big rules file).
const MAX_REQUEST: u64 = 64 << 20;

/// The commands `upcalld ctl` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    AddFlow,
    AddFlows,
    DelFlows,
    ReplaceFlows,
    DumpFlows,
    DumpDpFlows,
    UpcallShow,
    Trace,
    /// Run a revalidation round now and wait for it.
    Revalidate,
    /// The connection tracker's entries, as `dpctl/dump-conntrack`.
    DumpConntrack,
    /// Forget tracked connections (of one zone).
    FlushConntrack,
    /// The MAC learning table, as `ovs-appctl fdb/show`.
    FdbShow,
    /// Empty the MAC learning table, as `ovs-appctl fdb/flush`.
    FdbFlush,
    /// The MAC learning table's counters, as `ovs-appctl fdb/stats-show`.
    FdbStats,
    /// Map Geneve options to `tun_metadataN`, as `ovs-ofctl add-tlv-map`.
    AddTlvMap,
    /// The Geneve TLV map, as `ovs-ofctl dump-tlv-map`.
    DumpTlvMap,
}

impl Command {
    pub const ALL: [(&'static str, Command); 16] = [
        ("add-flow", Command::AddFlow),
        ("add-flows", Command::AddFlows),
        ("del-flows", Command::DelFlows),
        ("replace-flows", Command::ReplaceFlows),
        ("dump-flows", Command::DumpFlows),
        ("dump-dp-flows", Command::DumpDpFlows),
        ("upcall-show", Command::UpcallShow),
        ("trace", Command::Trace),
        ("revalidate", Command::Revalidate),
        ("dump-conntrack", Command::DumpConntrack),
        ("flush-conntrack", Command::FlushConntrack),
        ("fdb-show", Command::FdbShow),
        ("fdb-flush", Command::FdbFlush),
        ("fdb-stats", Command::FdbStats),
        ("add-tlv-map", Command::AddTlvMap),
        ("dump-tlv-map", Command::DumpTlvMap),
    ];

    pub fn name(self) -> &'static str {
        Command::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(n, _)| *n)
            .expect("every command is listed")
    }

    pub fn parse(name: &str) -> Option<Command> {
        Command::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, c)| *c)
    }
}

/// A request as the server receives it.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub body: String,
}

/// Splits a raw request into command and body.
pub fn parse_request(raw: &str) -> Result<Request, String> {
    let (first, body) = raw.split_once('\n').unwrap_or((raw, ""));
    let name = first.trim();
    let command = Command::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Command::ALL.iter().map(|(n, _)| *n).collect();
        format!("unknown command {name:?} (known: {})", known.join(", "))
    })?;
    Ok(Request {
        command,
        body: body.to_string(),
    })
}

/// Binds the control socket at `path` (replacing a stale one), mode 0600.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if path.exists() {
        if StdUnixStream::connect(path).is_ok() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::AddrInUse,
                format!("{}: another upcalld is listening there", path.display()),
            ));
        }
        std::fs::remove_file(path)?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves requests forever; `handle` runs each `upcalld ctl` request,
/// `appctl` each unixctl one.
pub async fn serve<F, Fut, A, AFut>(listener: UnixListener, handle: F, appctl: A)
where
    F: Fn(Request) -> Fut + Clone + 'static,
    Fut: std::future::Future<Output = Result<String, String>> + 'static,
    A: Fn(unixctl::Request) -> AFut + Clone + 'static,
    AFut: std::future::Future<Output = Result<String, String>> + 'static,
{
    loop {
        let (mut stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "control socket accept failed");
                continue;
            }
        };
        let handle = handle.clone();
        let appctl = appctl.clone();
        actix::spawn(async move {
            let mut raw = Vec::new();
            let mut first = [0u8; 1];
            match stream.read(&mut first).await {
                Ok(1) if first[0] == b'{' => {
                    raw.push(b'{');
                    unixctl_session(stream, raw, appctl).await;
                    return;
                }
                Ok(1) => raw.push(first[0]),
                _ => {}
            }
            let read = (&mut stream).take(MAX_REQUEST).read_to_end(&mut raw).await;
            let reply = match read {
                Err(e) => Err(format!("reading the request: {e}")),
                Ok(_) => match String::from_utf8(raw) {
                    Err(_) => Err("the request is not UTF-8 text".to_string()),
                    Ok(text) => match parse_request(&text) {
                        Ok(req) => handle(req).await,
                        Err(e) => Err(e),
                    },
                },
            };
            let text = match reply {
                Ok(out) => format!("ok\n{out}"),
                Err(e) => format!("error\n{e}\n"),
            };
            if let Err(e) = stream.write_all(text.as_bytes()).await {
                tracing::debug!(error = %e, "control client went away");
            }
        });
    }
}

/// Answers unixctl requests on one connection until the client closes it.
async fn unixctl_session<A, AFut>(mut stream: tokio::net::UnixStream, mut buf: Vec<u8>, appctl: A)
where
    A: Fn(unixctl::Request) -> AFut,
    AFut: std::future::Future<Output = Result<String, String>>,
{
    let mut chunk = vec![0u8; 4096];
    loop {
        loop {
            match unixctl::next_request(&buf) {
                Ok(Some((req, used))) => {
                    buf.drain(..used);
                    let id = req.id.clone();
                    let reply = appctl(req).await;
                    let text = unixctl::encode_reply(&id, &reply);
                    if stream.write_all(text.as_bytes()).await.is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::info!(error = %e, "bad unixctl request: closing");
                    return;
                }
            }
        }
        if buf.len() as u64 > MAX_REQUEST {
            tracing::info!("unixctl request too long: closing");
            return;
        }
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Sends one request and returns the reply's output, or its error text.
pub fn call(socket: &Path, command: Command, body: &str) -> anyhow::Result<Result<String, String>> {
    let mut s = StdUnixStream::connect(socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach upcalld at {}: {e} (is it running?)",
            socket.display()
        )
    })?;
    s.write_all(format!("{}\n{body}", command.name()).as_bytes())?;
    s.shutdown(std::net::Shutdown::Write)?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)?;
    let (status, out) = reply.split_once('\n').unwrap_or((reply.as_str(), ""));
    match status {
        "ok" => Ok(Ok(out.to_string())),
        "error" => Ok(Err(out.trim_end().to_string())),
        other => anyhow::bail!("malformed reply from upcalld: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_unknown_commands_are_named() {
        let r = parse_request("add-flows\nin_port=1,actions=2\n").unwrap();
        assert_eq!(r.command, Command::AddFlows);
        assert_eq!(r.body, "in_port=1,actions=2\n");
        assert_eq!(parse_request("dump-flows").unwrap().body, "");
        let e = parse_request("frobnicate\n").unwrap_err();
        assert!(e.starts_with("unknown command \"frobnicate\""), "{e}");
        for (name, c) in Command::ALL {
            assert_eq!(c.name(), name);
        }
    }
}
