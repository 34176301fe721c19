//! The actions and instructions of a rule, parsed as written (OVS's
//! `ofpacts_parse`); [`super::check`] checks and encodes them.

use super::*;
use crate::learn::Learn;
use crate::parse::learn::{parse_conjunction, parse_fin_timeout, parse_learn, Bad};

/// An action or instruction as written, before it is checked against the
/// rule and encoded.
#[derive(Clone, Debug)]
pub(super) enum Act {
    Output(u32),
    Controller(ControllerAction),
    SetField {
        info: &'static FieldInfo,
        value: u128,
        mask: u128,
    },
    Load {
        info: &'static FieldInfo,
        value: u128,
        mask: u128,
    },
    Move {
        src: Subfield,
        dst: Subfield,
    },
    OutputReg(Subfield),
    SetEth(Field, [u8; 6]),
    SetIpv4(Field, u32),
    SetNwTos(u8),
    SetNwEcn(u8),
    SetNwTtl(u8),
    SetTpSrc(u16),
    SetTpDst(u16),
    SetVlanVid {
        vid: u16,
        push_if_needed: bool,
    },
    SetVlanPcp {
        pcp: u8,
        push_if_needed: bool,
    },
    StripVlan,
    PushVlan(u16),
    DecTtl,
    DecTtlIds(Vec<u16>),
    Resubmit {
        in_port: Option<u32>,
        table: Option<u8>,
    },
    /// `conjunction`, `fin_timeout`: encoded as parsed.
    Plain(OfAction),
    Learn(Box<Learn>),
    ClearActions,
    WriteActions(Vec<Located>),
    WriteMetadata(u64, u64),
    GotoTable(u8),
    /// `meter:N`, the first instruction of a rule.
    Meter(u32),
    Ct(Box<ct::CtArgs>),
    CtClear,
    /// Only valid among `ct`'s nested actions.
    Nat(NatAction),
    Clone(Vec<Located>),
    /// `push:SUBFIELD` (true) or `pop:SUBFIELD`.
    Stack(bool, Subfield),
    CheckPktLarger {
        pkt_len: u16,
        dst: Subfield,
    },
    OutputTrunc {
        port: u32,
        max_len: u32,
    },
    Enqueue {
        port: u32,
        queue: u32,
    },
}

/// An action with the text it came from.
#[derive(Clone, Debug)]
pub(super) struct Located {
    pub(super) act: Act,
    pub(super) at: usize,
    pub(super) text: String,
}

/// OpenFlow 1.1+ instruction kinds, in the order a rule must give them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Inst {
    Meter,
    Apply,
    Clear,
    Write,
    WriteMetadata,
    Goto,
}

impl Inst {
    fn of(act: &Act) -> Inst {
        match act {
            Act::ClearActions => Inst::Clear,
            Act::WriteActions(_) => Inst::Write,
            Act::WriteMetadata(..) => Inst::WriteMetadata,
            Act::GotoTable(_) => Inst::Goto,
            Act::Meter(_) => Inst::Meter,
            _ => Inst::Apply,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Inst::Meter => "meter",
            Inst::Apply => "apply_actions",
            Inst::Clear => "clear_actions",
            Inst::Write => "write_actions",
            Inst::WriteMetadata => "write_metadata",
            Inst::Goto => "goto_table",
        }
    }
}

/// Actions OVS knows that have no representation here.
pub(super) const UNSUPPORTED_ACTIONS: &[&str] = &["delete_field", "encap", "decap", "dec_nsh_ttl"];

pub(super) const SUPPORTED: &str =
    "an action (output, drop, set_field, load, mod_*, push_vlan, pop_vlan, \
     dec_ttl, push_mpls, pop_mpls, set_mpls_label, set_mpls_tc, set_mpls_ttl, dec_mpls_ttl, resubmit, controller, ct, ct_clear, conjunction, learn, fin_timeout, clone, \
     push, pop, exit, check_pkt_larger, enqueue, set_queue, pop_queue, group, set_tunnel, set_tunnel64, \
     note, multipath, bundle, bundle_load, sample, debug_recirc, debug_slow, a port) or \
     instruction (meter, goto_table, write_metadata, write_actions, clear_actions)";

pub(super) fn parse_instructions(text: &str, base: usize, rule: &Rule) -> Res<Instructions> {
    let acts = parse_action_list(text, base, true)?;
    check_and_encode(acts, rule)
}

/// Parses a list of actions (and, at the top level, instructions) without
/// checking them against the rule yet, as OVS's `ofpacts_parse` does.
pub(super) fn parse_action_list(
    text: &str,
    base: usize,
    allow_instructions: bool,
) -> Res<Vec<Located>> {
    let mut acts: Vec<Located> = Vec::new();
    let mut drop_at = None;
    for kv in key_values(text, base) {
        let end = (kv.value_at + kv.value.len() - base).min(text.len());
        let src = &text[kv.key_at - base..end.max(kv.key_at - base + kv.key.len())];
        let name = kv.key.to_ascii_lowercase();
        if name == "drop" {
            drop_at = Some((kv.key_at, src.to_string()));
            continue;
        }
        if name == "apply_actions" {
            acts.extend(parse_action_list(kv.value, kv.value_at, false)?);
            continue;
        }
        let act = parse_action(&name, &kv, src)?;
        acts.push(Located {
            act,
            at: kv.key_at,
            text: src.to_string(),
        });
    }
    if let (Some((at, src)), Some(_)) = (&drop_at, acts.first()) {
        return Err(err(
            *at,
            "\"drop\" must not be accompanied by any other action or instruction",
            src,
            "drop alone, or actions without drop",
        ));
    }
    verify_order(&acts, allow_instructions)?;
    verify_conjunctions(&acts)?;
    Ok(acts)
}

/// OVS's `ofpacts_verify`: `conjunction` goes with no other action.
pub(super) fn verify_conjunctions(acts: &[Located]) -> Res<()> {
    let is_conj = |a: &Located| matches!(a.act, Act::Plain(OfAction::Conjunction { .. }));
    if !acts.iter().any(is_conj) {
        return Ok(());
    }
    let is_note = |a: &Located| matches!(a.act, Act::Plain(OfAction::Note(_)));
    match acts.iter().find(|a| !is_conj(a) && !is_note(a)) {
        None => Ok(()),
        Some(other) => {
            let name = other
                .text
                .split([':', '(', '='])
                .next()
                .unwrap_or(&other.text);
            Err(err(
                other.at,
                format!(
                    "\"conjunction\" actions may be used along with \"note\" but not any other kind of action (such as the \"{name}\" action used here)"
                ),
                &other.text,
                "conjunction actions only",
            ))
        }
    }
}

pub(super) fn verify_order(acts: &[Located], allow_instructions: bool) -> Res<()> {
    let mut prev: Option<Inst> = None;
    for a in acts {
        let next = Inst::of(&a.act);
        if !allow_instructions && next != Inst::Apply {
            return Err(err(
                a.at,
                format!("{} instruction not allowed here", next.name()),
                &a.text,
                "actions only, inside write_actions(...) or apply_actions(...)",
            ));
        }
        if let Some(inst) = prev {
            let bad = if inst == Inst::Apply {
                next < inst
            } else {
                next <= inst
            };
            if bad {
                let (what, expected) = if next == inst {
                    (
                        format!(
                            "duplicate {} instruction not allowed, for OpenFlow 1.1+ compatibility",
                            inst.name()
                        ),
                        format!("at most one {}", inst.name()),
                    )
                } else {
                    (
                        format!(
                            "invalid instruction ordering: {} must appear before {}, for OpenFlow 1.1+ compatibility",
                            next.name(),
                            inst.name()
                        ),
                        "meter first, then actions, clear_actions, write_actions, write_metadata, goto_table"
                            .to_string(),
                    )
                };
                return Err(err(a.at, what, &a.text, expected));
            }
        }
        prev = Some(next);
    }
    Ok(())
}

pub(super) fn parse_action(name: &str, kv: &KeyValue<'_>, src: &str) -> Res<Act> {
    let arg = kv.value;
    let at = kv.value_at;
    let invalid = |what: &str, expected: &str| err(at, format!("invalid {what}"), arg, expected);
    let u8_arg = |what: &str| {
        parse_uint(arg, 8)
            .map(|v| v as u8)
            .ok_or_else(|| invalid(what, "an integer from 0 to 255"))
    };
    let u16_arg = |what: &str| {
        parse_uint(arg, 16)
            .map(|v| v as u16)
            .ok_or_else(|| invalid(what, "an integer from 0 to 65535"))
    };
    let act = match name {
        "output" | "output_reg" => {
            if arg.contains("port") && arg.contains("max_len") {
                return parse_output_trunc(arg, at);
            }
            match parse_port(arg) {
                Some(p) => output_to(p),
                // A subfield holding the port: output:NXM_NX_REG0[0..15].
                None if arg.contains('[') => {
                    let src =
                        parse_subfield(arg).map_err(|e| err(at, "bad output source", arg, e))?;
                    if src.n_bits > 32 {
                        return Err(err(
                            at,
                            "output source wider than a port",
                            arg,
                            "a subfield of at most 32 bits",
                        ));
                    }
                    Act::OutputReg(src)
                }
                None => {
                    return Err(err(
                        at,
                        "output to unknown port",
                        arg,
                        "a port number or name (LOCAL, IN_PORT, ...), or a subfield",
                    ))
                }
            }
        }
        "controller" => parse_controller(arg, at)?,
        "set_field" => parse_set_field(arg, at)?,
        "load" => parse_load(arg, at)?,
        "move" => parse_move(arg, at)?,
        "mod_dl_src" | "mod_dl_dst" => {
            let mac = parse_mac(arg).ok_or_else(|| invalid("mac address", "a MAC address"))?;
            Act::SetEth(
                if name == "mod_dl_src" {
                    Field::EthSrc
                } else {
                    Field::EthDst
                },
                mac,
            )
        }
        "mod_nw_src" | "mod_nw_dst" => {
            let ip = parse_ipv4(arg).ok_or_else(|| invalid("IP address", "an IPv4 address"))?;
            Act::SetIpv4(
                if name == "mod_nw_src" {
                    Field::Ipv4Src
                } else {
                    Field::Ipv4Dst
                },
                ip,
            )
        }
        "mod_nw_tos" => {
            let tos = u8_arg("TOS")?;
            if tos & 0x03 != 0 {
                return Err(err(
                    at,
                    "not a valid TOS",
                    arg,
                    "a multiple of 4 (the DSCP bits of the TOS byte)",
                ));
            }
            Act::SetNwTos(tos)
        }
        "mod_nw_ecn" => {
            let ecn = u8_arg("ECN")?;
            if ecn > 3 {
                return Err(err(at, "not a valid ECN", arg, "0, 1, 2 or 3"));
            }
            Act::SetNwEcn(ecn)
        }
        "mod_nw_ttl" | "set_nw_ttl" => Act::SetNwTtl(u8_arg("TTL")?),
        "mod_tp_src" => Act::SetTpSrc(u16_arg("source port")?),
        "mod_tp_dst" => Act::SetTpDst(u16_arg("destination port")?),
        "mod_vlan_vid" | "set_vlan_vid" => {
            let vid = u16_arg("VLAN VID")?;
            if vid > VLAN_VID_MASK {
                return Err(err(
                    at,
                    "not a valid VLAN VID",
                    arg,
                    "a VLAN ID from 0 to 4095",
                ));
            }
            Act::SetVlanVid {
                vid,
                push_if_needed: name == "mod_vlan_vid",
            }
        }
        "mod_vlan_pcp" | "set_vlan_pcp" => {
            let pcp = u8_arg("VLAN PCP")?;
            if pcp > 7 {
                return Err(err(
                    at,
                    "not a valid VLAN PCP",
                    arg,
                    "a priority from 0 to 7",
                ));
            }
            Act::SetVlanPcp {
                pcp,
                push_if_needed: name == "mod_vlan_pcp",
            }
        }
        "strip_vlan" | "pop_vlan" => Act::StripVlan,
        "push_vlan" => {
            let tpid = u16_arg("ethertype")?;
            if !eth_type_vlan(tpid) {
                return Err(err(
                    at,
                    "not a valid VLAN ethertype",
                    arg,
                    "0x8100 or 0x88a8",
                ));
            }
            Act::PushVlan(tpid)
        }
        "push_mpls" => {
            let ethertype = u16_arg("ethertype")?;
            if !eth_type_mpls(ethertype) {
                return Err(err(at, "not an MPLS ethertype", arg, "0x8847 or 0x8848"));
            }
            Act::Plain(OfAction::PushMpls { ethertype })
        }
        "pop_mpls" => Act::Plain(OfAction::PopMpls {
            ethertype: u16_arg("ethertype")?,
        }),
        "set_mpls_label" => {
            let label = parse_uint(arg, 32)
                .filter(|l| *l <= 0xf_ffff)
                .ok_or_else(|| invalid("MPLS label", "a label from 0 to 1048575"))?;
            Act::Plain(OfAction::SetMplsLabel(label as u32))
        }
        "set_mpls_tc" => {
            let tc = u8_arg("MPLS TC")?;
            if tc > 7 {
                return Err(err(at, "not a valid MPLS TC", arg, "a class from 0 to 7"));
            }
            Act::Plain(OfAction::SetMplsTc(tc))
        }
        "set_mpls_ttl" => Act::Plain(OfAction::SetMplsTtl(u8_arg("MPLS TTL")?)),
        "dec_mpls_ttl" => Act::Plain(OfAction::DecMplsTtl),
        // With ids: the controllers to tell when the TTL expires.
        "dec_ttl" if arg.is_empty() => Act::DecTtl,
        "dec_ttl" => {
            let ids: Option<Vec<u16>> = arg.split(',').map(|id| id.trim().parse().ok()).collect();
            Act::DecTtlIds(
                ids.ok_or_else(|| {
                    err(at, "bad dec_ttl controller ids", arg, "dec_ttl(ID,ID,...)")
                })?,
            )
        }
        "resubmit" => parse_resubmit(arg, at)?,
        "goto_table" => {
            let t = parse_decimal(arg)
                .filter(|t| *t <= 255)
                .ok_or_else(|| err(at, "unknown table", arg, "a table number"))?;
            Act::GotoTable(t as u8)
        }
        "write_metadata" => {
            let (v, m) = match arg.split_once('/') {
                Some((v, m)) => (v, Some(m)),
                None => (arg, None),
            };
            let num = |s: &str| {
                parse_uint(s, 64).map(|v| v as u64).ok_or_else(|| {
                    invalid("numeric format", "VALUE or VALUE/MASK, 64-bit integers")
                })
            };
            Act::WriteMetadata(num(v)?, m.map(num).transpose()?.unwrap_or(u64::MAX))
        }
        "conjunction" => Act::Plain(parse_conjunction(arg, at).map_err(located)?),
        "fin_timeout" => Act::Plain(parse_fin_timeout(arg, at).map_err(located)?),
        "learn" => Act::Learn(Box::new(parse_learn(arg, at).map_err(located)?)),
        "clear_actions" => Act::ClearActions,
        "ct" => ct::parse_ct(arg, at)?,
        "ct_clear" => Act::CtClear,
        "nat" => Act::Nat(ct::parse_nat(arg, at)?),
        "write_actions" => Act::WriteActions(parse_action_list(arg, at, false)?),
        "clone" => Act::Clone(parse_action_list(arg, at, false)?),
        "push" | "pop" => {
            let sf =
                parse_subfield(arg).map_err(|e| err(at, format!("bad {name} field"), arg, e))?;
            Act::Stack(name == "push", sf)
        }
        "exit" => Act::Plain(OfAction::Exit),
        "pop_queue" => Act::Plain(OfAction::PopQueue),
        "set_tunnel" | "set_tunnel64" => Act::Plain(OfAction::SetTunnel {
            tun_id: parse_uint(arg, 64).ok_or_else(|| invalid("tunnel id", "a 64-bit tunnel id"))?
                as u64,
            wide: name == "set_tunnel64",
        }),
        "set_queue" => Act::Plain(OfAction::SetQueue(
            parse_uint(arg, 32).ok_or_else(|| invalid("queue", "a 32-bit queue number"))? as u32,
        )),
        "enqueue" => parse_enqueue(arg, at)?,
        "group" => match parse_uint(arg, 32) {
            Some(g) if g as u32 <= crate::group::GROUP_MAX => Act::Plain(OfAction::Group(g as u32)),
            _ => return Err(invalid("group", "a group number up to 4294967040")),
        },
        "check_pkt_larger" => parse_check_pkt_larger(arg, at)?,
        "meter" => match parse_uint(arg, 32) {
            Some(m) if m != 0 && m as u32 <= crate::meter::METER_MAX => Act::Meter(m as u32),
            _ => return Err(invalid("meter", "a meter number from 1 to 4294901760")),
        },
        "note" => Act::Plain(OfAction::Note(parse_note(arg, at)?)),
        "multipath" => Act::Plain(OfAction::Multipath(parse_multipath(arg, at)?)),
        "bundle" | "bundle_load" => Act::Plain(OfAction::Bundle(Box::new(parse_bundle(
            arg,
            at,
            name == "bundle_load",
        )?))),
        "sample" => Act::Plain(OfAction::Sample(parse_sample(arg, at)?)),
        "debug_recirc" => Act::Plain(OfAction::DebugRecirc),
        "debug_slow" => Act::Plain(OfAction::DebugSlow),
        _ if UNSUPPORTED_ACTIONS.contains(&name) => {
            return Err(err(
                kv.key_at,
                format!("unsupported action {name}"),
                src,
                SUPPORTED,
            ))
        }
        _ => match parse_port(kv.key) {
            Some(p) if arg.is_empty() => output_to(p),
            _ => return Err(err(kv.key_at, "unknown action", kv.key, SUPPORTED)),
        },
    };
    Ok(act)
}

/// `output(port=P,max_len=N)` (OVS's `parse_truncate_subfield`).
fn parse_output_trunc(arg: &str, at: usize) -> Res<Act> {
    let (mut port, mut max_len) = (None, None);
    for kv in key_values(arg, at) {
        match kv.key {
            "port" => {
                let p = parse_port(kv.value).ok_or_else(|| {
                    err(
                        kv.value_at,
                        "output to unknown truncate port",
                        kv.value,
                        "a port number or name",
                    )
                })?;
                if p >= port::MAX && p != port::LOCAL && p != port::IN_PORT {
                    return Err(err(
                        kv.value_at,
                        "output to unsupported truncate port",
                        kv.value,
                        "a port number, LOCAL or IN_PORT",
                    ));
                }
                port = Some(p);
            }
            "max_len" => {
                let n = parse_uint(kv.value, 32).ok_or_else(|| {
                    err(kv.value_at, "invalid max_len", kv.value, "a 32-bit integer")
                })? as u32;
                // What the switch refuses (OFPBAC_BAD_ARGUMENT): shorter
                // than an Ethernet header.
                if n < 14 {
                    return Err(err(
                        kv.value_at,
                        "max_len shorter than an Ethernet header",
                        kv.value,
                        "at least 14",
                    ));
                }
                max_len = Some(n);
            }
            other => {
                return Err(err(
                    kv.key_at,
                    format!("invalid key '{other}' in output_trunc argument"),
                    other,
                    "port=P,max_len=N",
                ))
            }
        }
    }
    match (port, max_len) {
        (Some(port), Some(max_len)) => Ok(Act::OutputTrunc { port, max_len }),
        _ => Err(err(
            at,
            "output_trunc needs a port and a max_len",
            arg,
            "port=P,max_len=N",
        )),
    }
}

/// `note:HEX` (bytes, optionally dot-separated), padded with zeros as a
/// switch keeps it: to the length that fills NXAST_NOTE's 8-byte units
/// (OVS prints a dumped `note:ab` back as `note:ab.00.00.00.00.00`).
fn parse_note(arg: &str, at: usize) -> Res<Vec<u8>> {
    let mut note = parse_hex_bytes(arg, at, "bad hex digit in `note' argument")?;
    note.resize((10 + note.len()).next_multiple_of(8).max(16) - 10, 0);
    Ok(note)
}

/// A decimal argument of `multipath` or `bundle`.
fn decimal_arg(s: &str, at: usize, what: &str, max: u64) -> Res<u64> {
    parse_decimal(s).filter(|v| *v <= max).ok_or_else(|| {
        err(
            at,
            format!("invalid {what}"),
            s,
            format!("an integer from 0 to {max}"),
        )
    })
}

/// A subfield an action writes its result into.
fn result_dst(s: &str, at: usize, action: &str) -> Res<crate::learn::Subfield> {
    let sf = parse_subfield(s).map_err(|e| err(at, format!("bad {action} destination"), s, e))?;
    if !sf.info.writable {
        return Err(err(
            at,
            format!("destination field {} is not writable", sf.info.name),
            s,
            "a writable field",
        ));
    }
    Ok(sf.bits())
}

/// `multipath(fields, basis, algorithm, n_links, arg, dst)` (OVS's
/// `multipath_parse`).
fn parse_multipath(arg: &str, at: usize) -> Res<crate::multipath::Multipath> {
    use crate::multipath::{HashFields, Multipath, MultipathAlgorithm};
    let t: Vec<&str> = arg.split([',', ' ']).filter(|t| !t.is_empty()).collect();
    let [fields, basis, algorithm, n_links, link_arg, dst] = t[..] else {
        return Err(err(
            at,
            format!("{arg}: not enough arguments to multipath action"),
            arg,
            "multipath(FIELDS, BASIS, ALGORITHM, N_LINKS, ARG, DST)",
        ));
    };
    let fields = HashFields::by_name(fields).ok_or_else(|| {
        err(
            at,
            format!("{arg}: unknown fields `{fields}'"),
            fields,
            "eth_src, symmetric_l4, symmetric_l3l4, symmetric_l3l4+udp, nw_src, nw_dst or symmetric_l3",
        )
    })?;
    let basis = decimal_arg(basis, at, "multipath basis", 0xffff)? as u16;
    let algorithm = MultipathAlgorithm::by_name(algorithm).ok_or_else(|| {
        err(
            at,
            format!("{arg}: unknown algorithm `{algorithm}'"),
            algorithm,
            "modulo_n, hash_threshold, hrw or iter_hash",
        )
    })?;
    let n = parse_decimal(n_links)
        .filter(|n| (1..=65536).contains(n))
        .ok_or_else(|| {
            err(
                at,
                format!("{arg}: n_links {n_links} is not in valid range 1 to 65536"),
                n_links,
                "from 1 to 65536 links",
            )
        })?;
    let link_arg = decimal_arg(link_arg, at, "multipath argument", u64::from(u32::MAX))? as u32;
    let dst = result_dst(dst, at, "multipath")?;
    if dst.n_bits < 16 && n > 1u64 << dst.n_bits {
        return Err(err(
            at,
            format!(
                "{arg}: {}-bit destination field has {} possible values, less than specified n_links {n}",
                dst.n_bits,
                1u32 << dst.n_bits
            ),
            arg,
            "a destination wide enough for every link",
        ));
    }
    Ok(Multipath {
        fields,
        basis,
        algorithm,
        max_link: (n - 1) as u16,
        arg: link_arg,
        dst,
    })
}

/// `bundle(fields, basis, algorithm, ofport, members:P,...)` or
/// `bundle_load(fields, basis, algorithm, ofport, dst, members:P,...)`
/// (OVS's `bundle_parse`; `slaves:` is the old name of `members:`).
fn parse_bundle(arg: &str, at: usize, load: bool) -> Res<crate::multipath::Bundle> {
    use crate::multipath::{Bundle, BundleAlgorithm, HashFields, BUNDLE_MAX_MEMBERS};
    let usage = if load {
        "bundle_load(FIELDS, BASIS, ALGORITHM, ofport, DST, members:PORT,...)"
    } else {
        "bundle(FIELDS, BASIS, ALGORITHM, ofport, members:PORT,...)"
    };
    let lower = arg.to_ascii_lowercase();
    let Some(colon) = lower.find("members:").or_else(|| lower.find("slaves:")) else {
        return Err(err(
            at,
            format!("{arg}: not enough arguments to bundle action"),
            arg,
            usage,
        ));
    };
    let head: Vec<&str> = arg[..colon]
        .split([',', ' '])
        .filter(|t| !t.is_empty())
        .collect();
    let n_head = if load { 5 } else { 4 };
    if head.len() != n_head {
        return Err(err(
            at,
            format!("{arg}: not enough arguments to bundle action"),
            arg,
            usage,
        ));
    }
    let fields = HashFields::by_name(head[0]).ok_or_else(|| {
        err(
            at,
            format!("{arg}: unknown fields `{}'", head[0]),
            head[0],
            "eth_src, symmetric_l4, symmetric_l3l4, symmetric_l3l4+udp, nw_src, nw_dst or symmetric_l3",
        )
    })?;
    let basis = decimal_arg(head[1], at, "bundle basis", 0xffff)? as u16;
    let algorithm = BundleAlgorithm::by_name(head[2]).ok_or_else(|| {
        err(
            at,
            format!("{arg}: unknown algorithm `{}'", head[2]),
            head[2],
            "active_backup or hrw",
        )
    })?;
    if !head[3].eq_ignore_ascii_case("ofport") {
        return Err(err(
            at,
            format!("{arg}: unknown member_type `{}'", head[3]),
            head[3],
            "ofport",
        ));
    }
    let dst = if load {
        let dst = result_dst(head[4], at, "bundle_load")?;
        if dst.n_bits < 16 {
            return Err(err(
                at,
                "bundle_load action requires at least 16 bit destination",
                head[4],
                "a destination of 16 bits or more",
            ));
        }
        Some(dst)
    } else {
        None
    };
    let list = &arg[colon + arg[colon..].find(':').map_or(0, |i| i + 1)..];
    let mut members = Vec::new();
    for m in list
        .split([',', ' ', '[', ']'])
        .filter(|m| !m.is_empty())
        .take(BUNDLE_MAX_MEMBERS)
    {
        let p =
            parse_port(m).ok_or_else(|| err(at, format!("{m}: bad port number"), m, "a port"))?;
        if p == port::CONTROLLER {
            return Err(err(
                at,
                "unsupported controller member",
                m,
                "ports other than CONTROLLER",
            ));
        }
        members.push(p);
    }
    Ok(Bundle {
        fields,
        basis,
        algorithm,
        dst,
        members,
    })
}

/// `sample(probability=P,collector_set_id=C,obs_domain_id=D,obs_point_id=O,
/// sampling_port=PORT,ingress|egress)` (OVS's `parse_SAMPLE`).
fn parse_sample(arg: &str, at: usize) -> Res<crate::ofp::SampleAction> {
    use crate::ofp::{SampleAction, SampleDirection};
    let mut s = SampleAction {
        probability: 0,
        collector_set_id: 0,
        obs_domain_id: 0,
        obs_point_id: 0,
        sampling_port: port::ANY,
        direction: SampleDirection::Default,
    };
    for kv in key_values(arg, at) {
        let u32_value = || {
            parse_uint(kv.value, 32).map(|v| v as u32).ok_or_else(|| {
                err(
                    kv.value_at,
                    format!("invalid {}", kv.key),
                    kv.value,
                    "an integer from 0 to 4294967295",
                )
            })
        };
        match kv.key {
            "probability" => {
                s.probability = parse_uint(kv.value, 16)
                    .filter(|p| *p != 0)
                    .ok_or_else(|| {
                        err(
                            kv.value_at,
                            format!("invalid probability value \"{}\"", kv.value),
                            kv.value,
                            "packets out of 65535, from 1 to 65535",
                        )
                    })? as u16
            }
            "collector_set_id" => s.collector_set_id = u32_value()?,
            "obs_domain_id" => s.obs_domain_id = u32_value()?,
            "obs_point_id" => s.obs_point_id = u32_value()?,
            "sampling_port" => {
                s.sampling_port = parse_port(kv.value).ok_or_else(|| {
                    err(
                        kv.value_at,
                        format!("{}: unknown port", kv.value),
                        kv.value,
                        "a port number or name",
                    )
                })?
            }
            "ingress" => s.direction = SampleDirection::Ingress,
            "egress" => s.direction = SampleDirection::Egress,
            other => {
                return Err(err(
                    kv.key_at,
                    format!("invalid key \"{other}\" in \"sample\" argument"),
                    other,
                    "probability, collector_set_id, obs_domain_id, obs_point_id, sampling_port, ingress or egress",
                ))
            }
        }
    }
    if s.probability == 0 {
        return Err(err(
            at,
            "non-zero \"probability\" must be specified on sample",
            arg,
            "sample(probability=P,...)",
        ));
    }
    Ok(s)
}

/// `enqueue:PORT:QUEUE` or `enqueue(PORT,QUEUE)`.
fn parse_enqueue(arg: &str, at: usize) -> Res<Act> {
    let mut parts = arg.split([':', 'q', ',']).filter(|p| !p.is_empty());
    let (Some(port_s), Some(queue_s), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(err(
            at,
            "\"enqueue\" syntax is \"enqueue:PORT:QUEUE\" or \"enqueue(PORT,QUEUE)\"",
            arg,
            "enqueue:PORT:QUEUE",
        ));
    };
    let port = parse_port(port_s).ok_or_else(|| {
        err(
            at,
            format!("{port_s}: enqueue to unknown port"),
            port_s,
            "a port",
        )
    })?;
    if port >= port::MAX && port != port::IN_PORT && port != port::LOCAL {
        return Err(err(
            at,
            "bad enqueue port",
            port_s,
            "a port number, LOCAL or IN_PORT",
        ));
    }
    let queue = parse_uint(queue_s, 32)
        .ok_or_else(|| err(at, "invalid queue", queue_s, "a 32-bit queue number"))?
        as u32;
    Ok(Act::Enqueue { port, queue })
}

/// `check_pkt_larger(N)->DST` (the tokenizer leaves `N)->DST`).
fn parse_check_pkt_larger(arg: &str, at: usize) -> Res<Act> {
    let (len_s, dst_s, dst_at) = split_arrow(arg, at)?;
    let len_s = len_s.strip_suffix(')').unwrap_or(len_s);
    let pkt_len = parse_uint(len_s, 16).ok_or_else(|| {
        err(
            at,
            "invalid packet length",
            len_s,
            "an integer from 0 to 65535",
        )
    })? as u16;
    let dst = parse_subfield(dst_s)
        .map_err(|e| err(dst_at, "bad check_pkt_larger destination", dst_s, e))?;
    if dst.n_bits != 1 {
        return Err(err(
            dst_at,
            "Only 1-bit destination field is allowed",
            dst_s,
            "one bit, e.g. NXM_NX_REG0[0]",
        ));
    }
    Ok(Act::CheckPktLarger { pkt_len, dst })
}

fn located(b: Bad) -> LineError {
    err(b.at, b.what, &b.text, b.expected)
}

/// `output:CONTROLLER` is the `controller` action with all the packet.
pub(super) fn output_to(p: u32) -> Act {
    if p == port::CONTROLLER {
        Act::Controller(ControllerAction::output(u16::MAX))
    } else {
        Act::Output(p)
    }
}

/// OVS's `parse_CONTROLLER`: `controller`, `controller:MAX_LEN`, or
/// `controller(reason=R,max_len=N,id=N,userdata=XX.XX,pause,meter_id=N)`.
pub(super) fn parse_controller(arg: &str, at: usize) -> Res<Act> {
    let u16_value = |value: &str, value_at: usize, what: &'static str| {
        parse_uint(value, 16)
            .map(|n| n as u16)
            .ok_or_else(|| err(value_at, what, value, "an integer from 0 to 65535"))
    };
    if !arg.is_empty() && arg.bytes().all(|c| c.is_ascii_digit()) {
        let max_len = u16_value(arg, at, "invalid max_len")?;
        return Ok(Act::Controller(ControllerAction::output(max_len)));
    }
    let mut c = ControllerAction::output(u16::MAX);
    for kv in key_values(arg, at) {
        match kv.key {
            "max_len" => c.max_len = u16_value(kv.value, kv.value_at, "invalid max_len")?,
            "id" => c.controller_id = u16_value(kv.value, kv.value_at, "invalid controller id")?,
            "reason" => {
                c.reason = packet_in_reason::NAMES
                    .iter()
                    .position(|n| *n == kv.value)
                    .ok_or_else(|| {
                        err(
                            kv.value_at,
                            "unknown reason",
                            kv.value,
                            "no_match, action, invalid_ttl, action_set, group or packet_out",
                        )
                    })? as u8;
            }
            "userdata" => c.userdata = parse_dotted_hex(kv.value, kv.value_at)?,
            "pause" => c.pause = true,
            "meter_id" => {
                c.meter_id = parse_uint(kv.value, 32).ok_or_else(|| {
                    err(
                        kv.value_at,
                        "invalid meter_id",
                        kv.value,
                        "an integer from 0 to 4294967295",
                    )
                })? as u32;
            }
            other => {
                return Err(err(
                    kv.key_at,
                    "unknown key parsing controller action",
                    other,
                    "reason, max_len, id, userdata, pause or meter_id",
                ))
            }
        }
    }
    Ok(Act::Controller(c))
}

/// Hex bytes, optionally separated by dots or blanks (OVS's
/// `ofpbuf_put_hex`), as `controller(userdata=...)` takes them.
fn parse_dotted_hex(text: &str, at: usize) -> Res<Vec<u8>> {
    parse_hex_bytes(text, at, "bad hex digit in `controller' action `userdata'")
}

/// Hex bytes, optionally separated by dots or blanks; `what` names the
/// argument when a digit is bad.
fn parse_hex_bytes(text: &str, at: usize, what: &str) -> Res<Vec<u8>> {
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'.' | b' ' | b'\t' | b'\r' | b'\n'))
        .collect();
    hex::decode(digits).map_err(|_| err(at, what, text, "hex bytes such as 01.02.ab"))
}

/// Splits `VALUE->FIELD`.
pub(super) fn split_arrow(arg: &str, at: usize) -> Res<(&str, &str, usize)> {
    let Some(i) = arg.find("->") else {
        return Err(err(at, "missing `->'", arg, "VALUE->FIELD"));
    };
    let dst = &arg[i + 2..];
    if dst.is_empty() {
        return Err(err(
            at,
            "missing field name following `->'",
            arg,
            "VALUE->FIELD",
        ));
    }
    Ok((&arg[..i], dst, at + i + 2))
}

pub(super) fn parse_set_field(arg: &str, at: usize) -> Res<Act> {
    let (value_s, name, name_at) = split_arrow(arg, at)?;
    if let Some(why) = field::unmapped_tun_metadata(name) {
        return Err(err(name_at, why, name, "a mapped tun_metadataN"));
    }
    let info = field::by_name(name).ok_or_else(|| {
        err(
            name_at,
            "not a valid OXM field name",
            name,
            "a field name such as eth_src, ip_dst, reg0",
        )
    })?;
    if !info.writable {
        return Err(err(
            name_at,
            format!("{name} is read-only"),
            name,
            "a writable field",
        ));
    }
    let (value, mask) = parse_field_value(info, value_s)
        .map_err(|e| err(at, format!("bad value for {name}"), value_s, e.expected))?;
    let valid = match info.field {
        Field::NwTos => value & 0x03 == 0,
        Field::VlanVid => value & u128::from(VLAN_CFI) != 0 && value <= 0x1fff,
        _ => info.syntax == Syntax::Port || value <= info.bit_mask(),
    };
    if !valid {
        let expected = match info.field {
            Field::VlanVid => {
                "a VLAN ID plus 4096 (the \"present\" bit), e.g. 4196 for VLAN 100".to_string()
            }
            Field::NwTos => "a multiple of 4 (the DSCP bits of the TOS byte)".to_string(),
            _ => format!(
                "a value that fits the {}-bit field {}",
                info.n_bits, info.name
            ),
        };
        return Err(err(
            at,
            format!("not a valid value for field {name}"),
            value_s,
            expected,
        ));
    }
    if mask == exact_mask(info) {
        Ok(Act::SetField {
            info,
            value,
            mask: info.field.full_mask(),
        })
    } else {
        // OpenFlow 1.3 has no masked set_field; OVS sends it as `load`.
        Ok(Act::Load {
            info,
            value: value & mask,
            mask,
        })
    }
}

/// `move:SRC->DST`: both subfields, of the same width, DST writable.
pub(super) fn parse_move(arg: &str, at: usize) -> Res<Act> {
    let (src_s, dst, dst_at) = split_arrow(arg, at)?;
    let src = parse_subfield(src_s).map_err(|e| err(at, "bad move source", src_s, e))?;
    let dst_sf = parse_subfield(dst).map_err(|e| err(dst_at, "bad move destination", dst, e))?;
    if !dst_sf.info.writable {
        return Err(err(
            dst_at,
            format!("destination field {} is not writable", dst_sf.info.name),
            dst,
            "a writable field",
        ));
    }
    if src.n_bits != dst_sf.n_bits {
        return Err(err(
            at,
            format!(
                "source field is {} bits wide but destination is {} bits wide",
                src.n_bits, dst_sf.n_bits
            ),
            arg,
            "subfields of the same width",
        ));
    }
    Ok(Act::Move { src, dst: dst_sf })
}

pub(super) fn parse_load(arg: &str, at: usize) -> Res<Act> {
    let (value_s, dst, dst_at) = split_arrow(arg, at)?;
    let sf = parse_subfield(dst).map_err(|e| err(dst_at, "bad load destination", dst, e))?;
    let info = sf.info;
    if !info.writable {
        return Err(err(
            dst_at,
            format!("destination field {} is not writable", info.name),
            dst,
            "a writable field",
        ));
    }
    let (value, used) = scan_uint(value_s, u32::from(info.n_bytes) * 8)
        .map_err(|_| err(at, "cannot parse integer value", value_s, "an integer"))?;
    if used != value_s.len() {
        return Err(err(at, "cannot parse integer value", value_s, "an integer"));
    }
    if value > ones(sf.n_bits) {
        return Err(err(
            at,
            format!("value does not fit into {} bits", sf.n_bits),
            value_s,
            format!("a value of at most {} bits", sf.n_bits),
        ));
    }
    if info.syntax == Syntax::Port {
        // NXM_OF_IN_PORT holds a 16-bit port; only whole-port loads map
        // onto upcalld's 32-bit port numbers.
        if sf.n_bits != u32::from(info.n_bits) {
            return Err(err(
                dst_at,
                "unsupported partial load of in_port",
                dst,
                "the whole field",
            ));
        }
        let p = if info.n_bits == 16 && value >= 0xff00 {
            value | 0xffff_0000
        } else {
            value
        };
        return Ok(Act::Load {
            info,
            value: p,
            mask: u128::from(u32::MAX),
        });
    }
    Ok(Act::Load {
        info,
        value: value << sf.ofs,
        mask: ones(sf.n_bits) << sf.ofs,
    })
}

pub(super) fn parse_resubmit(arg: &str, at: usize) -> Res<Act> {
    let mut parts = arg.splitn(3, ',');
    let port_s = parts.next().unwrap_or("");
    let table_s = parts.next().unwrap_or("");
    let ct_s = parts.next().unwrap_or("");
    let in_port = if port_s.is_empty() {
        None
    } else {
        let p = parse_port(port_s).ok_or_else(|| {
            err(
                at,
                "resubmit to unknown port",
                port_s,
                "a port number or name",
            )
        })?;
        (p != port::IN_PORT).then_some(p)
    };
    let table = if table_s.is_empty() {
        None
    } else {
        let t = parse_decimal(table_s)
            .filter(|t| *t <= 255)
            .ok_or_else(|| err(at, "resubmit to unknown table", table_s, "a table number"))?;
        (t != 255).then_some(t as u8)
    };
    if !ct_s.is_empty() {
        let what = if ct_s == "ct" {
            "unsupported resubmit option"
        } else {
            "unknown parameter"
        };
        return Err(err(at, what, ct_s, "resubmit(PORT,TABLE)"));
    }
    if in_port.is_none() && table.is_none() {
        return Err(err(
            at,
            "at least one \"in_port\" or \"table\" must be specified on resubmit",
            arg,
            "resubmit:PORT, resubmit(PORT,TABLE) or resubmit(,TABLE)",
        ));
    }
    Ok(Act::Resubmit { in_port, table })
}
