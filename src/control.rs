//! The control socket: a Unix stream socket (mode 0600, created so) that
//! `upcalld ctl` talks to, one request per connection, in the protocol of
//! [`messages::control`].
//!
//! A request is a header line, `COMMAND [--strict] [origin=NAME]`, then its
//! body (a rules file, a match, a flow) in chunks, each a decimal length on
//! a line of its own and that many bytes, ending with an empty chunk
//! (`0\n`). A request that stops before its empty chunk is cut short and
//! changes nothing, so every request is applied whole or not at all. The
//! body is read as it arrives, a line at a time (a `#` starts a comment to
//! the end of the line, which is not kept), so a large rules file streams
//! through a bounded buffer; limits on the line, the body and the number
//! of rules refuse a request at once, naming the limit.
//!
//! Reply: `ok` (then `warnings=N` and N warning lines) or `error` on the
//! first line, then the output or the error text. An error text quotes at
//! most a short excerpt of the request.
//!
//! Connections are served each on a thread of its own (reading, and
//! parsing rules, off the actors' threads), at most
//! [`Limits::max_connections`] at once, and each read or write waits at
//! most [`Limits::io_timeout`].
//!
//! The same socket speaks OVS's unixctl JSON-RPC (`ovs-appctl -t SOCKET`):
//! a connection whose first byte is `{` is a unixctl session, any number
//! of requests on one connection.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::channel::oneshot;
use messages::log_limit::RateLimit;
use messages::ofp::Rule;
use messages::unixctl;

pub use messages::control::{
    encode_reply, excerpt, parse_header, parse_reply, Command, Decoder, Header, Item, Limits, Reply,
};

/// A request's body, as the connection's thread prepared it.
#[derive(Debug, PartialEq, Eq)]
pub enum Body {
    /// Rules, parsed as they arrived, with the warnings parsing gave.
    Rules {
        rules: Vec<Rule>,
        warnings: Vec<String>,
    },
    /// The text of any other command.
    Text(String),
}

/// A whole request.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub command: Command,
    pub strict: bool,
    pub origin: Option<String>,
    pub body: Body,
}

impl Request {
    /// The body's text (empty for rules).
    pub fn text(&self) -> &str {
        match &self.body {
            Body::Text(t) => t,
            Body::Rules { .. } => "",
        }
    }
}

/// Builds a [`Request`] from a [`Decoder`]'s items.
pub struct Assembler {
    limits: Limits,
    header: Option<Header>,
    body: Option<Body>,
    done: bool,
}

impl Assembler {
    pub fn new(limits: Limits) -> Assembler {
        Assembler {
            limits,
            header: None,
            body: None,
            done: false,
        }
    }

    pub fn item(&mut self, item: Item<'_>) -> Result<(), String> {
        match item {
            Item::Header(h) => {
                self.body = Some(if h.command.takes_rules() {
                    Body::Rules {
                        rules: Vec::new(),
                        warnings: Vec::new(),
                    }
                } else {
                    Body::Text(String::new())
                });
                self.header = Some(h);
            }
            Item::Line(n, text) => {
                let origin = self.header.as_ref().and_then(|h| h.origin.clone());
                match self.body.as_mut() {
                    Some(Body::Rules { rules, warnings }) => {
                        if text.trim().is_empty() {
                            return Ok(());
                        }
                        if rules.len() >= self.limits.max_rules {
                            return Err(format!(
                                "more than the limit of {} rules in one request",
                                self.limits.max_rules
                            ));
                        }
                        let (rule, warns) = crate::rules::parse_line(text, n, origin.as_deref())?;
                        warnings.extend(warns);
                        rules.push(rule);
                    }
                    Some(Body::Text(t)) => {
                        if t.len() + text.len() + 1 > self.limits.max_text {
                            return Err(format!(
                                "the request is longer than the limit of {} bytes for {}",
                                self.limits.max_text,
                                self.header.as_ref().map_or("it", |h| h.command.name())
                            ));
                        }
                        t.push_str(text);
                        t.push('\n');
                    }
                    None => return Err("a body line before the header".into()),
                }
            }
            Item::End => self.done = true,
        }
        Ok(())
    }

    /// The request, once its end has been seen.
    pub fn finish(self) -> Option<Request> {
        let h = self.header?;
        self.done.then(|| Request {
            command: h.command,
            strict: h.strict,
            origin: h.origin,
            body: self.body.unwrap_or(Body::Text(String::new())),
        })
    }
}

/// Binds the control socket at `path`, created with mode 0600 (the umask
/// is narrowed around `bind`, so that it never exists with a wider mode).
/// A stale socket there (one that refuses connections) is replaced; a
/// live one, or any other kind of file, is an error and is left alone.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    let shown = path.display();
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
            Ok(_) => {
                return Err(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    format!("{shown}: another upcalld is listening there"),
                ))
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                std::fs::remove_file(path).map_err(|e| {
                    std::io::Error::new(
                        e.kind(),
                        format!("{shown}: removing the stale socket: {e}"),
                    )
                })?;
                tracing::info!(socket = %shown, "removed a stale control socket");
            }
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("{shown}: a socket is there and connecting to it failed: {e}"),
                ))
            }
        },
        Ok(meta) => {
            let what = if meta.is_dir() {
                "a directory"
            } else if meta.file_type().is_symlink() {
                "a symbolic link"
            } else {
                "a file that is not a socket"
            };
            return Err(std::io::Error::new(
                ErrorKind::AlreadyExists,
                format!("{shown} is {what}; not replacing it (remove it, or choose another control_socket)"),
            ));
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(std::io::Error::new(e.kind(), format!("{shown}: {e}"))),
    }
    let old = rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o177));
    let bound = UnixListener::bind(path);
    rustix::process::umask(old);
    bound.map_err(|e| std::io::Error::new(e.kind(), format!("{shown}: {e}")))
}

/// A socket this daemon created, removed when dropped: on exit, and when
/// the start fails after binding it.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A request ready to run, with where its reply goes.
pub enum Job {
    /// An `upcalld ctl` request.
    Ctl {
        request: Request,
        reply: oneshot::Sender<Result<Reply, String>>,
    },
    /// An `ovs-appctl` request.
    Appctl {
        request: unixctl::Request,
        reply: oneshot::Sender<Result<String, String>>,
    },
}

static ACCEPT_LOG: RateLimit = RateLimit::new(5, 20);
static REFUSED_LOG: RateLimit = RateLimit::new(5, 20);
static BAD_UNIXCTL_LOG: RateLimit = RateLimit::new(5, 20);

/// Serves the listener on its own thread: each connection gets a thread,
/// which reads its request and sends it to `jobs` to be run, then writes
/// the reply.
pub fn serve(
    listener: UnixListener,
    limits: Limits,
    jobs: futures::channel::mpsc::UnboundedSender<Job>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("control".into())
        .spawn(move || accept_loop(listener, limits, jobs))
}

fn accept_loop(
    listener: UnixListener,
    limits: Limits,
    jobs: futures::channel::mpsc::UnboundedSender<Job>,
) {
    let open = Arc::new(AtomicUsize::new(0));
    let mut backoff = Duration::ZERO;
    for conn in listener.incoming() {
        let stream = match conn {
            Ok(s) => {
                backoff = Duration::ZERO;
                s
            }
            Err(e) => {
                // Out of descriptors or memory: the error repeats until
                // something is freed, so wait rather than spin.
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                ) {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(10), Duration::from_secs(1));
                    if let Some(dropped) = ACCEPT_LOG.check() {
                        tracing::warn!(error = %e, retry_in = ?backoff, dropped_messages = dropped, "control socket accept failed");
                    }
                    std::thread::sleep(backoff);
                }
                continue;
            }
        };
        if jobs.is_closed() {
            return;
        }
        if open.load(Ordering::Relaxed) >= limits.max_connections {
            if let Some(dropped) = REFUSED_LOG.check() {
                tracing::warn!(
                    limit = limits.max_connections,
                    dropped_messages = dropped,
                    "control connection refused: too many open"
                );
            }
            let _ = stream.set_write_timeout(Some(Duration::from_millis(100)));
            let msg = format!(
                "error\ntoo many control connections at once (the limit is {})\n",
                limits.max_connections
            );
            let _ = (&stream).write_all(msg.as_bytes());
            continue;
        }
        open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(open.clone());
        let jobs = jobs.clone();
        let spawned = std::thread::Builder::new()
            .name("control-conn".into())
            .spawn(move || {
                let _guard = guard;
                connection(stream, limits, &jobs);
            });
        if let Err(e) = spawned {
            if let Some(dropped) = ACCEPT_LOG.check() {
                tracing::warn!(error = %e, dropped_messages = dropped, "no thread for a control connection");
            }
        }
    }
}

/// Counts an open connection until dropped.
struct OpenGuard(Arc<AtomicUsize>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Sends a job and waits for its reply.
fn run<T>(
    jobs: &futures::channel::mpsc::UnboundedSender<Job>,
    job: impl FnOnce(oneshot::Sender<Result<T, String>>) -> Job,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    if jobs.unbounded_send(job(tx)).is_err() {
        return Err("upcalld is shutting down".to_string());
    }
    futures::executor::block_on(rx)
        .unwrap_or_else(|_| Err("the request was dropped: upcalld is shutting down".into()))
}

fn connection(
    mut stream: UnixStream,
    limits: Limits,
    jobs: &futures::channel::mpsc::UnboundedSender<Job>,
) {
    let _ = stream.set_read_timeout(Some(limits.io_timeout));
    let _ = stream.set_write_timeout(Some(limits.io_timeout));
    let mut first = [0u8; 1];
    let reply = match read_some(&mut stream, &mut first, limits) {
        // Connected and closed without a word (a liveness probe).
        Ok(0) => return,
        Ok(_) if first[0] == b'{' => return unixctl_session(stream, limits, jobs),
        Ok(_) => match read_request(&mut stream, first[0], limits) {
            Ok(request) => run(jobs, |reply| Job::Ctl { request, reply }),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    if let Err(e) = stream.write_all(&encode_reply(&reply)) {
        tracing::debug!(error = %e, "control client went away");
    }
}

/// Answers unixctl requests on one connection until the client closes
/// it, goes quiet for longer than the timeout, or sends more than
/// [`Limits::max_text`] bytes without completing a request.
fn unixctl_session(
    mut stream: UnixStream,
    limits: Limits,
    jobs: &futures::channel::mpsc::UnboundedSender<Job>,
) {
    let mut buf = vec![b'{'];
    let mut chunk = vec![0u8; 4096];
    loop {
        loop {
            match unixctl::next_request(&buf) {
                Ok(Some((request, used))) => {
                    buf.drain(..used);
                    let id = request.id.clone();
                    let reply = run(jobs, |reply| Job::Appctl { request, reply });
                    let text = unixctl::encode_reply(&id, &reply);
                    if stream.write_all(text.as_bytes()).is_err() {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if let Some(dropped) = BAD_UNIXCTL_LOG.check() {
                        tracing::info!(error = %e, dropped_messages = dropped, "bad unixctl request: closing");
                    }
                    return;
                }
            }
        }
        if buf.len() > limits.max_text {
            if let Some(dropped) = BAD_UNIXCTL_LOG.check() {
                tracing::info!(
                    limit = limits.max_text,
                    dropped_messages = dropped,
                    "unixctl request too long: closing"
                );
            }
            return;
        }
        match read_some(&mut stream, &mut chunk, limits) {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// One read, retried if interrupted; an error is the reply's text.
fn read_some(stream: &mut UnixStream, buf: &mut [u8], limits: Limits) -> Result<usize, String> {
    loop {
        return match stream.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                Err(format!(
                    "no request data for {:?}: closing the connection",
                    limits.io_timeout
                ))
            }
            Err(e) => Err(format!("reading the request: {e}")),
        };
    }
}

/// Reads one whole request, whose first byte was `first`; an error is the
/// reply's text.
fn read_request(stream: &mut UnixStream, first: u8, limits: Limits) -> Result<Request, String> {
    let mut decoder = Decoder::new(limits);
    let mut asm = Assembler::new(limits);
    decoder.feed(&[first], &mut |item| asm.item(item))?;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = read_some(stream, &mut buf, limits)?;
        if n == 0 {
            return Err("the request was cut short (no end marker): nothing was applied".into());
        }
        decoder.feed(&buf[..n], &mut |item| asm.item(item))?;
        if decoder.is_done() {
            return asm
                .finish()
                .ok_or_else(|| "the request has no header".into());
        }
    }
}

/// Writes a request: the header, then `body` in chunks as it is read.
fn write_request(s: &mut UnixStream, header: &Header, body: &mut dyn Read) -> std::io::Result<()> {
    let mut w = std::io::BufWriter::with_capacity(64 << 10, s);
    w.write_all(header.encode().as_bytes())?;
    w.write_all(b"\n")?;
    let mut buf = vec![0u8; 60 << 10];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(std::io::Error::other(BodyReadError(e))),
        };
        w.write_all(format!("{n}\n").as_bytes())?;
        w.write_all(&buf[..n])?;
    }
    w.write_all(b"0\n")?;
    w.flush()
}

/// Reading the request's body (the user's file) failed.
#[derive(Debug)]
struct BodyReadError(std::io::Error);

impl std::fmt::Display for BodyReadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for BodyReadError {}

/// Sends one request and returns the reply's output, or its error text.
pub fn call(socket: &Path, command: Command, body: &str) -> anyhow::Result<Result<String, String>> {
    Ok(call_with(socket, &Header::new(command), &mut body.as_bytes())?.map(|r| r.output))
}

/// Sends one request whose body is read from `body` as it is sent.
pub fn call_with(
    socket: &Path,
    header: &Header,
    body: &mut dyn Read,
) -> anyhow::Result<Result<Reply, String>> {
    let mut s = UnixStream::connect(socket).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach upcalld at {}: {e} (is it running?)",
            socket.display()
        )
    })?;
    let sent = write_request(&mut s, header, body);
    if let Err(e) = &sent {
        if let Some(b) = e.get_ref().and_then(|i| i.downcast_ref::<BodyReadError>()) {
            let origin = header.origin.as_deref().unwrap_or("the request body");
            anyhow::bail!("{origin}: {}", b.0);
        }
    }
    // Whether or not it all went out (the daemon stops reading a request
    // it refuses), the daemon's reply says what became of it.
    let mut reply = Vec::new();
    let mut buf = [0u8; 64 << 10];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            // A daemon that refused a request early closes with the rest
            // unread, and the reset can follow its whole reply.
            Err(_) if !reply.is_empty() => break,
            Err(e) => {
                return Err(match sent {
                    Err(se) => anyhow::anyhow!("sending the request to upcalld: {se}"),
                    Ok(()) => anyhow::anyhow!("reading upcalld's reply: {e}"),
                })
            }
        }
    }
    let reply = String::from_utf8_lossy(&reply).into_owned();
    if reply.is_empty() {
        match sent {
            Err(e) => anyhow::bail!("sending the request to upcalld: {e}"),
            Ok(()) => anyhow::bail!("upcalld closed the connection without a reply"),
        }
    }
    parse_reply(&reply).map_err(anyhow::Error::msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_are_parsed_as_they_arrive_and_errors_name_the_origin() {
        let mut asm = Assembler::new(Limits::default());
        let h = parse_header("add-flows origin=r.of13").unwrap();
        asm.item(Item::Header(h)).unwrap();
        asm.item(Item::Line(1, "in_port=1,actions=output:2"))
            .unwrap();
        asm.item(Item::Line(2, "  ")).unwrap();
        let e = asm
            .item(Item::Line(3, "in_port=frob,actions=drop"))
            .unwrap_err();
        assert!(e.starts_with("r.of13:3:9: "), "{e}");
        asm.item(Item::End).unwrap();
        let r = asm.finish().unwrap();
        assert_eq!(r.command, Command::AddFlows);
        assert!(matches!(r.body, Body::Rules { ref rules, .. } if rules.len() == 1));
    }
}
