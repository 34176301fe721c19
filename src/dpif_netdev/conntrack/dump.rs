//! Connections printed as OVS's `ovs-appctl dpctl/dump-conntrack` prints
//! them (without `-s`): `tcp,orig=(src=…,dst=…,sport=…,dport=…),reply=(…),
//! zone=N,mark=N,labels=0x…,protoinfo=(state=…)`, zone, mark and labels
//! only when nonzero.

use std::fmt::Write;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::packet::{ConnKey, IPPROTO_TCP};
use super::tcp::TcpState;

/// One connection, as a dump sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub orig: ConnKey,
    pub reply: ConnKey,
    pub mark: u32,
    pub label: u128,
    pub tcp_state: Option<TcpState>,
    /// Seconds left before the connection expires (printed with `-s`).
    pub timeout_s: u32,
    /// The helper (`alg=`) its control messages are read by.
    pub helper: Option<&'static str>,
}

/// A stable order for dumps: zone, then the original tuple.
pub(super) fn order(e: &Entry) -> impl Ord {
    let k = &e.orig;
    (
        k.zone,
        k.ipv6,
        k.proto,
        k.src.addr,
        k.dst.addr,
        k.src.port,
        k.dst.port,
        k.src.icmp_type,
    )
}

fn proto_name(proto: u8) -> Option<&'static str> {
    Some(match proto {
        1 => "icmp",
        58 => "icmpv6",
        6 => "tcp",
        17 => "udp",
        132 => "sctp",
        136 => "udplite",
        33 => "dccp",
        2 => "igmp",
        _ => return None,
    })
}

fn tuple(s: &mut String, k: &ConnKey) {
    if k.ipv6 {
        let _ = write!(
            s,
            "src={},dst={}",
            Ipv6Addr::from(k.src.addr),
            Ipv6Addr::from(k.dst.addr)
        );
    } else {
        let v4 = |a: &[u8; 16]| Ipv4Addr::new(a[0], a[1], a[2], a[3]);
        let _ = write!(s, "src={},dst={}", v4(&k.src.addr), v4(&k.dst.addr));
    }
    if k.is_icmp() {
        let _ = write!(
            s,
            ",id={},type={},code={}",
            k.src.port, k.src.icmp_type, k.src.icmp_code
        );
    } else {
        let _ = write!(s, ",sport={},dport={}", k.src.port, k.dst.port);
    }
}

/// One line of the dump (no newline); `stats` adds the timeout, as `-s`.
pub fn format_entry(e: &Entry, stats: bool) -> String {
    let mut s = String::new();
    match proto_name(e.orig.proto) {
        Some(n) => s.push_str(n),
        None => {
            let _ = write!(s, "{}", e.orig.proto);
        }
    }
    s.push_str(",orig=(");
    tuple(&mut s, &e.orig);
    s.push_str("),reply=(");
    tuple(&mut s, &e.reply);
    s.push(')');
    if e.orig.zone != 0 {
        let _ = write!(s, ",zone={}", e.orig.zone);
    }
    if stats {
        let _ = write!(s, ",timeout={}", e.timeout_s);
    }
    if e.mark != 0 {
        let _ = write!(s, ",mark={}", e.mark);
    }
    if e.label != 0 {
        let _ = write!(s, ",labels={:#x}", e.label);
    }
    if let (IPPROTO_TCP, Some(st)) = (e.orig.proto, e.tcp_state) {
        let _ = write!(s, ",protoinfo=(state={})", st.dump_name());
    }
    if let Some(h) = e.helper {
        let _ = write!(s, ",helper={h}");
    }
    s
}

/// The arguments of `dump-conntrack` and `flush-conntrack`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DumpArgs {
    pub zone: Option<u16>,
    /// `-s`: print each entry's timeout.
    pub stats: bool,
}

/// Parses `[-s] [zone=N]`.
pub fn parse_args(text: &str) -> Result<DumpArgs, String> {
    let mut args = DumpArgs::default();
    for word in text.split_whitespace() {
        if word == "-s" || word == "--statistics" {
            args.stats = true;
        } else if let Some(z) = word.strip_prefix("zone=") {
            let zone = z
                .parse::<u16>()
                .map_err(|_| format!("zone={z}: a zone is a number from 0 to 65535"))?;
            args.zone = Some(zone);
        } else {
            return Err(format!(
                "{word:?}: expected -s or zone=N (as ovs-appctl dpctl/dump-conntrack)"
            ));
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_as_dpctl_takes_them() {
        assert_eq!(parse_args("").unwrap(), DumpArgs::default());
        assert_eq!(
            parse_args("-s zone=5").unwrap(),
            DumpArgs {
                zone: Some(5),
                stats: true
            }
        );
        assert!(parse_args("zone=70000").unwrap_err().contains("0 to 65535"));
        assert!(parse_args("mark=1")
            .unwrap_err()
            .contains("expected -s or zone=N"));
    }
}
