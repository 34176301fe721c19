//! The control socket's protocol, without I/O: requests (a header line,
//! then the body in chunks, ending with an empty chunk) and replies. The
//! daemon's socket and `upcalld ctl` (the `upcalld` crate's `control`)
//! speak it; [`Decoder`] is what reads a request, whatever its bytes.
//!
//! A request is `COMMAND [--strict] [origin=NAME]` on its first line,
//! then chunks, each a decimal length on a line of its own and that many
//! bytes, then `0` on a line: the end. The body is split into lines as it
//! arrives; a `#` starts a comment to the end of its line, which is not
//! kept. A reply is `ok`, `warnings=N`, N warning lines and the output; or
//! `error` and the error text.

use std::time::Duration;

/// The commands `upcalld ctl` knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    AddFlow,
    AddFlows,
    DelFlows,
    ModFlows,
    ReplaceFlows,
    DumpFlows,
    DumpDpFlows,
    DumpPorts,
    UpcallShow,
    Trace,
    /// Run a revalidation round now and wait for it.
    Revalidate,
    /// The connection tracker's entries, as `dpctl/dump-conntrack`.
    DumpConntrack,
    /// Forget tracked connections (of one zone).
    FlushConntrack,
    /// The fragment reassembler's settings and counters, as
    /// `dpctl/ipf-get-status`.
    IpfGetStatus,
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
    /// Unmap Geneve options, as `ovs-ofctl del-tlv-map` (no mappings:
    /// all of them); refused while a rule or group uses a field.
    DelTlvMap,
    /// Add groups, one a line, as `ovs-ofctl add-group(s)`.
    AddGroups,
    /// Replace a group, as `ovs-ofctl mod-group`.
    ModGroup,
    /// Delete one group or all, as `ovs-ofctl del-groups`.
    DelGroups,
    /// The groups, as `ovs-ofctl dump-groups`.
    DumpGroups,
    /// The groups' and their buckets' counters, as `ovs-ofctl
    /// dump-group-stats` (all, or `group_id=N`).
    DumpGroupStats,
    /// Add meters, one a line, as `ovs-ofctl add-meter`.
    AddMeters,
    /// Replace a meter, as `ovs-ofctl mod-meter`.
    ModMeter,
    /// Delete one meter or all, as `ovs-ofctl del-meters`.
    DelMeters,
    /// The meters, as `ovs-ofctl dump-meters`.
    DumpMeters,
    /// The meters' counters, as `ovs-ofctl meter-stats`.
    MeterStats,
    /// Add a port while running, as `ovs-vsctl add-port`:
    /// `NAME [ofport=N] [type=internal]`.
    AddPort,
    /// Remove a port while running, as `ovs-vsctl del-port`: `NAME`.
    DelPort,
}

impl Command {
    pub const ALL: [(&'static str, Command); 32] = [
        ("add-flow", Command::AddFlow),
        ("add-flows", Command::AddFlows),
        ("del-flows", Command::DelFlows),
        ("mod-flows", Command::ModFlows),
        ("replace-flows", Command::ReplaceFlows),
        ("dump-flows", Command::DumpFlows),
        ("dump-dp-flows", Command::DumpDpFlows),
        ("dump-ports", Command::DumpPorts),
        ("upcall-show", Command::UpcallShow),
        ("trace", Command::Trace),
        ("revalidate", Command::Revalidate),
        ("dump-conntrack", Command::DumpConntrack),
        ("flush-conntrack", Command::FlushConntrack),
        ("ipf-get-status", Command::IpfGetStatus),
        ("fdb-show", Command::FdbShow),
        ("fdb-flush", Command::FdbFlush),
        ("fdb-stats", Command::FdbStats),
        ("add-tlv-map", Command::AddTlvMap),
        ("dump-tlv-map", Command::DumpTlvMap),
        ("del-tlv-map", Command::DelTlvMap),
        ("add-groups", Command::AddGroups),
        ("mod-group", Command::ModGroup),
        ("del-groups", Command::DelGroups),
        ("dump-groups", Command::DumpGroups),
        ("dump-group-stats", Command::DumpGroupStats),
        ("add-meters", Command::AddMeters),
        ("mod-meter", Command::ModMeter),
        ("del-meters", Command::DelMeters),
        ("dump-meters", Command::DumpMeters),
        ("meter-stats", Command::MeterStats),
        ("add-port", Command::AddPort),
        ("del-port", Command::DelPort),
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

    /// Commands whose body is rules, one per line, parsed as they arrive.
    pub fn takes_rules(self) -> bool {
        matches!(
            self,
            Command::AddFlow | Command::AddFlows | Command::ReplaceFlows
        )
    }

    /// Commands that take `--strict`.
    pub fn takes_strict(self) -> bool {
        matches!(self, Command::DelFlows | Command::ModFlows)
    }
}

/// A request's first line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub command: Command,
    /// `--strict`: `del-flows` and `mod-flows` select by exact match and
    /// priority.
    pub strict: bool,
    /// Where the body came from (a file name), for error messages.
    pub origin: Option<String>,
}

impl Header {
    pub fn new(command: Command) -> Header {
        Header {
            command,
            strict: false,
            origin: None,
        }
    }

    /// The header line, without its line break.
    pub fn encode(&self) -> String {
        let mut s = self.command.name().to_string();
        if self.strict {
            s.push_str(" --strict");
        }
        if let Some(o) = &self.origin {
            s.push_str(" origin=");
            s.push_str(&escape(o));
        }
        s
    }
}

/// `%`, spaces and control characters as `%XX`: a header is one line of
/// space-separated words.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || c == ' ' || c.is_control() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad escape in {:?}", excerpt(s)))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{:?} is not UTF-8 once unescaped", excerpt(s)))
}

/// Parses a header line.
pub fn parse_header(line: &str) -> Result<Header, String> {
    let mut words = line.split(' ').filter(|w| !w.is_empty());
    let name = words.next().unwrap_or("");
    let command = Command::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Command::ALL.iter().map(|(n, _)| *n).collect();
        format!(
            "unknown command {:?} (known: {})",
            excerpt(name),
            known.join(", ")
        )
    })?;
    let mut h = Header::new(command);
    for w in words {
        if w == "--strict" && command.takes_strict() {
            h.strict = true;
        } else if let Some(o) = w.strip_prefix("origin=") {
            h.origin = Some(unescape(o)?);
        } else {
            return Err(format!(
                "{}: unknown option {:?}",
                command.name(),
                excerpt(w)
            ));
        }
    }
    Ok(h)
}

/// At most this much of a request is quoted back in an error.
const EXCERPT: usize = 60;

/// The start of `s`, cut at a character boundary, with `...` if cut.
pub fn excerpt(s: &str) -> String {
    if s.len() <= EXCERPT {
        return s.to_string();
    }
    let mut end = EXCERPT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// `add-port`'s body, `NAME [ofport=N] [type=system|internal]` (as
/// `ovs-vsctl add-port BRIDGE NAME -- set Interface NAME ofport_request=N
/// type=internal`): the port to add.
pub fn parse_add_port(text: &str) -> Result<crate::dpif::PortSpec, String> {
    use crate::dpif::{PortKind, PortSpec};
    let mut words = text.split_whitespace();
    let name = words
        .next()
        .ok_or("add-port: usage: add-port NAME [ofport=N] [type=system|internal]")?;
    // Linux's limits for an interface name (IFNAMSIZ, no '/', no blanks).
    if name.len() > 15 || name.contains('/') || name.starts_with(['-', '.']) {
        return Err(format!(
            "add-port: {:?} is not an interface name (at most 15 bytes, no '/')",
            excerpt(name)
        ));
    }
    let mut spec = PortSpec {
        name: name.to_string(),
        kind: PortKind::System,
        number: None,
    };
    for w in words {
        match w.split_once('=') {
            Some(("ofport", n)) => {
                let n: u32 = n
                    .parse()
                    .ok()
                    .filter(|n| (1..0xff00).contains(n))
                    .ok_or_else(|| format!("add-port: ofport={} is not 1..65279", excerpt(n)))?;
                spec.number = Some(n);
            }
            Some(("type", "system")) => spec.kind = PortKind::System,
            Some(("type", "internal")) => spec.kind = PortKind::Internal,
            _ => {
                return Err(format!(
                    "add-port: {:?}: expected ofport=N or type=system|internal",
                    excerpt(w)
                ))
            }
        }
    }
    Ok(spec)
}

/// What the control socket accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest header line.
    pub max_header: usize,
    /// Longest body line, comment excluded.
    pub max_line: usize,
    /// Largest body, comments included.
    pub max_body: u64,
    /// Most rules in one request.
    pub max_rules: usize,
    /// Largest body of a command that does not take rules.
    pub max_text: usize,
    /// Connections served at once; more are refused.
    pub max_connections: usize,
    /// Longest wait for each read or write.
    pub io_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header: 4096,
            max_line: 1 << 20,
            max_body: 4 << 30,
            max_rules: 4_000_000,
            max_text: 1 << 20,
            max_connections: 64,
            io_timeout: Duration::from_secs(10),
        }
    }
}

/// One piece of a request, as [`Decoder`] finds it.
#[derive(Debug, PartialEq, Eq)]
pub enum Item<'a> {
    Header(Header),
    /// A body line (1-based number), without its line break and without
    /// any comment.
    Line(usize, &'a str),
    /// The empty chunk: the request is whole.
    End,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Header,
    ChunkLen,
    Chunk(u64),
    Done,
}

/// Splits a request's bytes, however they arrive, into its header, its
/// body lines and its end; no I/O. Memory is bounded by the limits.
pub struct Decoder {
    limits: Limits,
    state: State,
    /// The header or chunk-length line being read.
    head: Vec<u8>,
    /// The body line being read (it may span chunks).
    line: Vec<u8>,
    /// The rest of the current body line is a comment.
    in_comment: bool,
    line_no: usize,
    body: u64,
}

impl Decoder {
    pub fn new(limits: Limits) -> Decoder {
        Decoder {
            limits,
            state: State::Header,
            head: Vec::new(),
            line: Vec::new(),
            in_comment: false,
            line_no: 0,
            body: 0,
        }
    }

    /// True once the request's end has been seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Feeds the next bytes; `item` is called for each piece found. Bytes
    /// after the end are an error. An error from `item` stops decoding.
    pub fn feed(
        &mut self,
        mut data: &[u8],
        item: &mut dyn FnMut(Item<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        while !data.is_empty() {
            match self.state {
                State::Done => {
                    return Err("bytes after the end of the request".into());
                }
                State::Header | State::ChunkLen => {
                    let (limit, what) = if self.state == State::Header {
                        (self.limits.max_header, "header line")
                    } else {
                        (20, "chunk length")
                    };
                    let nl = data.iter().position(|&b| b == b'\n');
                    let take = nl.unwrap_or(data.len());
                    if self.head.len() + take > limit {
                        return Err(format!("the request's {what} is longer than {limit} bytes"));
                    }
                    self.head.extend_from_slice(&data[..take]);
                    let Some(nl) = nl else {
                        return Ok(());
                    };
                    data = &data[nl + 1..];
                    let line = std::mem::take(&mut self.head);
                    let text = std::str::from_utf8(&line)
                        .map_err(|_| format!("the request's {what} is not UTF-8"))?;
                    if self.state == State::Header {
                        item(Item::Header(parse_header(text)?))?;
                        self.state = State::ChunkLen;
                    } else {
                        let n: u64 = text.parse().map_err(|_| {
                            format!(
                                "bad chunk length {:?}: expected a decimal number",
                                excerpt(text)
                            )
                        })?;
                        if n == 0 {
                            self.finish_line(item)?;
                            self.state = State::Done;
                            item(Item::End)?;
                        } else {
                            self.body = self.body.saturating_add(n);
                            if self.body > self.limits.max_body {
                                return Err(format!(
                                    "the request's body is larger than the limit of {} bytes",
                                    self.limits.max_body
                                ));
                            }
                            self.state = State::Chunk(n);
                        }
                    }
                }
                State::Chunk(left) => {
                    let n = data.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    self.body_bytes(&data[..n], item)?;
                    data = &data[n..];
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::ChunkLen
                    } else {
                        State::Chunk(left)
                    };
                }
            }
        }
        Ok(())
    }

    fn body_bytes(
        &mut self,
        mut data: &[u8],
        item: &mut dyn FnMut(Item<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        while !data.is_empty() {
            let nl = data.iter().position(|&b| b == b'\n');
            let part = &data[..nl.unwrap_or(data.len())];
            if !self.in_comment {
                let kept = match part.iter().position(|&b| b == b'#') {
                    Some(h) => {
                        self.in_comment = true;
                        &part[..h]
                    }
                    None => part,
                };
                if self.line.len() + kept.len() > self.limits.max_line {
                    return Err(format!(
                        "line {} is longer than the limit of {} bytes (comments excluded)",
                        self.line_no + 1,
                        self.limits.max_line
                    ));
                }
                self.line.extend_from_slice(kept);
            }
            match nl {
                Some(nl) => {
                    self.emit_line(item)?;
                    data = &data[nl + 1..];
                }
                None => return Ok(()),
            }
        }
        Ok(())
    }

    /// A last line without a line break.
    fn finish_line(
        &mut self,
        item: &mut dyn FnMut(Item<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        if !self.line.is_empty() || self.in_comment {
            self.emit_line(item)?;
        }
        Ok(())
    }

    fn emit_line(
        &mut self,
        item: &mut dyn FnMut(Item<'_>) -> Result<(), String>,
    ) -> Result<(), String> {
        self.line_no += 1;
        self.in_comment = false;
        let line = std::mem::take(&mut self.line);
        let text = std::str::from_utf8(&line)
            .map_err(|_| format!("line {} is not UTF-8 text", self.line_no))?;
        let r = item(Item::Line(self.line_no, text));
        self.line = line;
        self.line.clear();
        r
    }
}

/// What a command answered: its output and any warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reply {
    pub output: String,
    pub warnings: Vec<String>,
}

impl From<String> for Reply {
    fn from(output: String) -> Reply {
        Reply {
            output,
            warnings: Vec::new(),
        }
    }
}

pub fn encode_reply(reply: &Result<Reply, String>) -> Vec<u8> {
    match reply {
        Ok(r) => {
            let mut s = format!("ok\nwarnings={}\n", r.warnings.len());
            for w in &r.warnings {
                s.push_str(&w.replace('\n', " "));
                s.push('\n');
            }
            s.push_str(&r.output);
            s.into_bytes()
        }
        Err(e) => format!("error\n{e}\n").into_bytes(),
    }
}

pub fn parse_reply(reply: &str) -> Result<Result<Reply, String>, String> {
    let (status, rest) = reply.split_once('\n').unwrap_or((reply, ""));
    match status {
        "ok" => {
            let (count, mut rest) = rest.split_once('\n').unwrap_or((rest, ""));
            let n: usize = count
                .strip_prefix("warnings=")
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("malformed reply from upcalld: {:?}", excerpt(count)))?;
            let mut warnings = Vec::with_capacity(n.min(1024));
            for _ in 0..n {
                let (w, r) = rest.split_once('\n').unwrap_or((rest, ""));
                warnings.push(w.to_string());
                rest = r;
            }
            Ok(Ok(Reply {
                output: rest.to_string(),
                warnings,
            }))
        }
        "error" => Ok(Err(rest.trim_end().to_string())),
        other => Err(format!(
            "malformed reply from upcalld: {:?}",
            excerpt(other)
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_port_takes_a_name_a_number_and_a_type() {
        use crate::dpif::PortKind;
        let s = parse_add_port("veth3 ofport=7 type=internal").unwrap();
        assert_eq!(
            (s.name.as_str(), s.number, s.kind),
            ("veth3", Some(7), PortKind::Internal)
        );
        let s = parse_add_port(" eth1 ").unwrap();
        assert_eq!((s.number, s.kind), (None, PortKind::System));
        for (bad, says) in [
            ("", "usage"),
            ("a-name-of-sixteen", "interface name"),
            ("eth1 ofport=0", "1..65279"),
            ("eth1 ofport=x", "1..65279"),
            ("eth1 type=vxlan", "expected"),
            ("eth1 mtu=9000", "expected"),
        ] {
            let e = parse_add_port(bad).unwrap_err();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
    }

    fn encode(header: &str, body: &[u8], chunk: usize) -> Vec<u8> {
        let mut v = format!("{header}\n").into_bytes();
        for c in body.chunks(chunk.max(1)) {
            v.extend_from_slice(format!("{}\n", c.len()).as_bytes());
            v.extend_from_slice(c);
        }
        v.extend_from_slice(b"0\n");
        v
    }

    fn decode(raw: &[u8], split: usize, limits: Limits) -> Result<(Header, Vec<String>), String> {
        let mut d = Decoder::new(limits);
        let mut header = None;
        let mut lines = Vec::new();
        let mut ended = false;
        for part in raw.chunks(split.max(1)) {
            d.feed(part, &mut |i| {
                match i {
                    Item::Header(h) => header = Some(h),
                    Item::Line(n, t) => lines.push(format!("{n}:{t}")),
                    Item::End => ended = true,
                }
                Ok(())
            })?;
        }
        if !ended {
            return Err("cut short".into());
        }
        Ok((header.unwrap(), lines))
    }

    #[test]
    fn headers_parse_and_unknown_commands_are_named() {
        let h = parse_header("del-flows --strict origin=my%20rules.of13").unwrap();
        assert_eq!(h.command, Command::DelFlows);
        assert!(h.strict);
        assert_eq!(h.origin.as_deref(), Some("my rules.of13"));
        assert_eq!(parse_header(&h.encode()).unwrap(), h);
        let e = parse_header("frobnicate").unwrap_err();
        assert!(e.starts_with("unknown command \"frobnicate\""), "{e}");
        assert!(parse_header("dump-flows --strict").is_err());
        for (name, c) in Command::ALL {
            assert_eq!(c.name(), name);
        }
    }

    #[test]
    fn bodies_split_into_lines_without_comments_however_they_arrive() {
        let body = b"in_port=1,actions=2 # a comment\n\n# only a comment\nlast,actions=drop";
        for split in [1, 2, 3, 7, 1000] {
            for chunk in [1, 5, 1000] {
                let (h, lines) =
                    decode(&encode("add-flows", body, chunk), split, Limits::default()).unwrap();
                assert_eq!(h.command, Command::AddFlows);
                assert_eq!(
                    lines,
                    ["1:in_port=1,actions=2 ", "2:", "3:", "4:last,actions=drop"]
                );
            }
        }
    }

    #[test]
    fn limits_refuse_at_once_and_a_cut_request_is_incomplete() {
        let limits = Limits {
            max_line: 10,
            max_body: 100,
            ..Limits::default()
        };
        let e = decode(&encode("add-flows", &[b'x'; 11], 4), 3, limits).unwrap_err();
        assert!(e.contains("longer than the limit of 10 bytes"), "{e}");
        // A long comment is not a long line.
        let mut long_comment = b"a=1#".to_vec();
        long_comment.extend_from_slice(&[b'y'; 50]);
        assert!(decode(&encode("add-flows", &long_comment, 7), 5, limits).is_ok());
        let e = decode(&encode("add-flows", &[b'\n'; 101], 50), 64, limits).unwrap_err();
        assert!(e.contains("limit of 100 bytes"), "{e}");
        let raw = encode("add-flows", b"a\nb\n", 1);
        assert_eq!(
            decode(&raw[..raw.len() - 2], 4, limits).unwrap_err(),
            "cut short"
        );
        let mut extra = raw.clone();
        extra.push(b'x');
        assert!(decode(&extra, 4, limits).is_err());
        let e = decode(b"add-flows\nzz\n", 4, limits).unwrap_err();
        assert!(e.contains("bad chunk length"), "{e}");
    }

    #[test]
    fn excerpts_are_short_and_cut_at_characters() {
        let long = "é".repeat(100);
        let e = excerpt(&long);
        assert!(e.len() <= EXCERPT + 3 && e.ends_with("..."), "{e}");
        assert_eq!(excerpt("short"), "short");
    }

    #[test]
    fn replies_round_trip() {
        let r = Reply {
            output: "a\nb\n".into(),
            warnings: vec!["w1".into(), "w2".into()],
        };
        let text = String::from_utf8(encode_reply(&Ok(r.clone()))).unwrap();
        assert_eq!(parse_reply(&text).unwrap(), Ok(r));
        let text = String::from_utf8(encode_reply(&Err("bad".into()))).unwrap();
        assert_eq!(parse_reply(&text).unwrap(), Err("bad".into()));
    }
}
