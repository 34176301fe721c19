//! The arguments of `learn(...)`, `conjunction(...)` and
//! `fin_timeout(...)`, as OVS's `learn_parse`, `parse_CONJUNCTION` and
//! `parse_FIN_TIMEOUT` read them, and `learn`'s prerequisite checks
//! (`learn_check`).

use super::rules::match_grammar::{parse_subfield, Subfield as ParsedSubfield};
use super::syntax::{exact_mask, key_values, parse_field_value, parse_uint, scan_uint};
use crate::field::prereqs_hold;
use crate::field::Field;
use crate::flow::Flow;
use crate::learn::{Learn, LearnDst, LearnSpec, LearnSrc, Subfield};
use crate::ofp::{Match, OfAction};

/// Why an argument list does not parse: where (a byte offset into the
/// line), what, the text at fault and what was expected.
#[derive(Debug)]
pub(super) struct Bad {
    pub at: usize,
    pub what: String,
    pub text: String,
    pub expected: String,
}

fn bad(at: usize, what: impl Into<String>, text: &str, expected: impl Into<String>) -> Bad {
    Bad {
        at,
        what: what.into(),
        text: text.to_string(),
        expected: expected.into(),
    }
}

/// `conjunction(ID,K/N)`: clause K (1-based) of N, 2 ≤ N ≤ 64.
pub(super) fn parse_conjunction(arg: &str, at: usize) -> Result<OfAction, Bad> {
    const SYNTAX: &str = "conjunction(id,k/n)";
    let syntax_error = || {
        bad(
            at,
            "\"conjunction\" syntax is \"conjunction(id,i/n)\"",
            arg,
            SYNTAX,
        )
    };
    let (id, rest) = arg.split_once(',').ok_or_else(syntax_error)?;
    let (k, n) = rest.split_once('/').ok_or_else(syntax_error)?;
    let id = parse_uint(id.trim(), 32).ok_or_else(syntax_error)? as u32;
    let k = parse_uint(k.trim(), 8).ok_or_else(syntax_error)? as u8;
    let n = parse_uint(n.trim(), 8).ok_or_else(syntax_error)? as u8;
    let range = "2 to 64 clauses, and a clause index from 1 to their number";
    if n < 2 {
        return Err(bad(
            at,
            "conjunction must have at least 2 clauses",
            arg,
            range,
        ));
    }
    if n > 64 {
        return Err(bad(
            at,
            "conjunction must have at most 64 clauses",
            arg,
            range,
        ));
    }
    if k < 1 {
        return Err(bad(at, "clause index must be positive", arg, range));
    }
    if k > n {
        return Err(bad(
            at,
            "clause index must be less than or equal to number of clauses",
            arg,
            range,
        ));
    }
    Ok(OfAction::Conjunction {
        id,
        clause: k - 1,
        n_clauses: n,
    })
}

/// `fin_timeout(idle_timeout=I,hard_timeout=H)`.
pub(super) fn parse_fin_timeout(arg: &str, at: usize) -> Result<OfAction, Bad> {
    let (mut idle_timeout, mut hard_timeout) = (0, 0);
    for kv in key_values(arg, at) {
        let slot = match kv.key {
            "idle_timeout" => &mut idle_timeout,
            "hard_timeout" => &mut hard_timeout,
            other => {
                return Err(bad(
                    kv.key_at,
                    format!("invalid key '{other}' in 'fin_timeout' argument"),
                    other,
                    "idle_timeout=N and/or hard_timeout=N",
                ))
            }
        };
        *slot = parse_uint(kv.value, 16).ok_or_else(|| {
            bad(
                kv.value_at,
                format!("invalid {}", kv.key),
                kv.value,
                "an integer from 0 to 65535",
            )
        })? as u16;
    }
    Ok(OfAction::FinTimeout {
        idle_timeout,
        hard_timeout,
    })
}

fn subfield(sf: &ParsedSubfield) -> Subfield {
    Subfield {
        field: sf.info.field,
        ofs: sf.ofs as u8,
        n_bits: sf.n_bits as u8,
    }
}

/// C's `atoi` on a timeout or priority: the leading digits, 0 if none;
/// OVS keeps the low 16 bits.
fn atoi16(s: &str) -> u16 {
    let digits: String = s
        .trim()
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse::<u64>().map_or(0, |v| v as u16)
}

/// `learn(...)`; see [`learn_missing_source`] for the check against the
/// rule that holds it.
pub(super) fn parse_learn(arg: &str, at: usize) -> Result<Learn, Bad> {
    let mut learn = Learn::default();
    // The learned rule's match so far, for the prerequisites of later
    // specs (`eth_type=0x800,NXM_OF_IP_DST[]`).
    let mut learned = Match::catchall();
    for kv in key_values(arg, at) {
        let (key, value) = (kv.key, kv.value);
        let bad_value = |what: &str, expected: &str| {
            bad(kv.value_at, format!("invalid {what}"), value, expected)
        };
        match key {
            "table" => {
                let t = parse_uint(value, 8).ok_or_else(|| bad_value("table", "a table number"))?;
                if t == 255 {
                    return Err(bad(
                        kv.value_at,
                        "table id 255 not valid for `learn' action",
                        value,
                        "a table from 0 to 254",
                    ));
                }
                learn.table = t as u8;
            }
            "priority" => learn.priority = atoi16(value),
            "idle_timeout" => learn.idle_timeout = atoi16(value),
            "hard_timeout" => learn.hard_timeout = atoi16(value),
            "fin_idle_timeout" => learn.fin_idle_timeout = atoi16(value),
            "fin_hard_timeout" => learn.fin_hard_timeout = atoi16(value),
            "cookie" => {
                learn.cookie = scan_uint(value, 64)
                    .map_err(|_| bad_value("cookie", "a 64-bit integer"))?
                    .0 as u64
            }
            "send_flow_rem" => learn.send_flow_rem = true,
            "delete_learned" => learn.delete_learned = true,
            "limit" => {
                learn.limit =
                    parse_uint(value, 32).ok_or_else(|| bad_value("limit", "an integer"))? as u32
            }
            "result_dst" => {
                let sf = parse_subfield(value)
                    .map_err(|e| bad(kv.value_at, "bad result_dst", value, e))?;
                if !sf.info.writable {
                    return Err(bad(
                        kv.value_at,
                        format!("{value} is read-only"),
                        value,
                        "a writable field",
                    ));
                }
                if sf.n_bits != 1 {
                    return Err(bad(
                        kv.value_at,
                        "result_dst in 'learn' action must be a single bit",
                        value,
                        "one bit, e.g. NXM_NX_REG0[0]",
                    ));
                }
                learn.result_dst = Some(subfield(&sf));
            }
            "load" => learn.specs.push(parse_load_spec(value, kv.value_at)?),
            "output" => {
                let sf = parse_subfield(value)
                    .map_err(|e| bad(kv.value_at, "bad output source", value, e))?;
                learn.specs.push(LearnSpec {
                    src: LearnSrc::Field(subfield(&sf)),
                    dst: LearnDst::Output,
                    n_bits: sf.n_bits as u8,
                });
            }
            _ => {
                let spec = parse_match_spec(key, value, kv.key_at, kv.value_at)?;
                if let (LearnSrc::Immediate(v), LearnDst::Match(d)) = (spec.src, spec.dst) {
                    d.field.set_masked(&mut learned.mask, d.mask(), d.mask());
                    d.write(&mut learned.flow, v);
                }
                if let LearnDst::Match(d) = spec.dst {
                    if !prereqs_hold(d.field.prereq(), &learned.flow) {
                        return Err(bad(
                            kv.key_at,
                            "learn: prerequisites of the learned match not met",
                            key,
                            "the field's prerequisites earlier in the learn (e.g. eth_type=0x800 before NXM_OF_IP_DST[])",
                        ));
                    }
                }
                learn.specs.push(spec);
            }
        }
    }
    Ok(learn)
}

/// OVS's `learn_check` on the sources: the first field a spec reads that
/// does not exist in packets of `rule` (the match of the rule holding the
/// learn, as its earlier actions left it).
pub(super) fn learn_missing_source(learn: &Learn, rule: &Flow) -> Option<Field> {
    learn.specs.iter().find_map(|spec| match spec.src {
        LearnSrc::Field(sf) if !prereqs_hold(sf.field.prereq(), rule) => Some(sf.field),
        _ => None,
    })
}

/// `DST[..]`, `DST[..]=SRC[..]` or `DST=VALUE`: the learned rule matches.
fn parse_match_spec(
    name: &str,
    value: &str,
    name_at: usize,
    value_at: usize,
) -> Result<LearnSpec, Bad> {
    let dst = parse_subfield(name).map_err(|e| {
        bad(
            name_at,
            format!("unknown keyword {name}"),
            name,
            format!("a learn argument or a field to match ({e})"),
        )
    })?;
    let d = subfield(&dst);
    if value.is_empty() {
        return Ok(LearnSpec {
            src: LearnSrc::Field(d),
            dst: LearnDst::Match(d),
            n_bits: d.n_bits,
        });
    }
    let sub_error = match parse_subfield(value) {
        Ok(src) => {
            if src.n_bits != dst.n_bits {
                return Err(bad(
                    value_at,
                    format!(
                        "bit widths of {name} ({}) and {value} ({}) differ",
                        dst.n_bits, src.n_bits
                    ),
                    value,
                    "subfields of the same width",
                ));
            }
            return Ok(LearnSpec {
                src: LearnSrc::Field(subfield(&src)),
                dst: LearnDst::Match(d),
                n_bits: d.n_bits,
            });
        }
        Err(e) => e,
    };
    let whole = dst.ofs == 0 && dst.n_bits == u32::from(dst.info.n_bits);
    let imm = if whole {
        match parse_field_value(dst.info, value) {
            Ok((v, m)) if m == exact_mask(dst.info) => Ok(v),
            Ok(_) => Err("a value without a mask".to_string()),
            Err(e) => Err(e.ovs),
        }
    } else {
        match scan_uint(value, u32::from(dst.info.n_bytes) * 8) {
            Ok((v, n)) if n == value.len() && v >> dst.n_bits == 0 => Ok(v),
            Ok((_, n)) if n == value.len() => Err(format!(
                "value {value} does not fit into {} bits",
                dst.n_bits
            )),
            _ => Err("cannot parse integer value".to_string()),
        }
    };
    let v = imm.map_err(|imm_error| {
        bad(
            value_at,
            format!(
                "{name} value {value} cannot be parsed as a subfield ({sub_error}) or an immediate value ({imm_error})"
            ),
            value,
            "a subfield of the same width, or a value of the field",
        )
    })?;
    // An exact in_port value holds a 32-bit port; the field is matched
    // through its low 16 bits only when written as NXM_OF_IN_PORT.
    let v = if dst.info.field == Field::InPort && v > 0xffff {
        v & 0xffff
    } else {
        v
    };
    Ok(LearnSpec {
        src: LearnSrc::Immediate(v),
        dst: LearnDst::Match(d),
        n_bits: d.n_bits,
    })
}

/// `load:VALUE->DST[..]` or `load:SRC[..]->DST[..]`: the learned rule loads.
fn parse_load_spec(value: &str, at: usize) -> Result<LearnSpec, Bad> {
    let Some(arrow) = value.find("->") else {
        return Err(bad(
            at,
            format!("load: missing `->' in `{value}'"),
            value,
            "load:SRC->DST",
        ));
    };
    if arrow == 0 {
        return Err(bad(
            at,
            format!("load: missing source before `->' in `{value}'"),
            value,
            "load:SRC->DST",
        ));
    }
    let (src_s, dst_s) = (&value[..arrow], &value[arrow + 2..]);
    let dst_at = at + arrow + 2;
    let dst = parse_subfield(dst_s).map_err(|e| bad(dst_at, "bad load destination", dst_s, e))?;
    if !dst.info.writable {
        return Err(bad(
            dst_at,
            format!("destination field {} is not writable", dst.info.name),
            dst_s,
            "a writable field",
        ));
    }
    let d = subfield(&dst);
    if let Ok((v, n)) = scan_uint(src_s, 128) {
        if n != src_s.len() {
            return Err(bad(
                at,
                format!("load: garbage before `->' in `{value}'"),
                value,
                "load:VALUE->DST",
            ));
        }
        if dst.n_bits < 128 && v >> dst.n_bits != 0 {
            return Err(bad(
                at,
                format!("{value}: value does not fit into {} bits", dst.n_bits),
                src_s,
                format!("a value of at most {} bits", dst.n_bits),
            ));
        }
        return Ok(LearnSpec {
            src: LearnSrc::Immediate(v),
            dst: LearnDst::Load(d),
            n_bits: d.n_bits,
        });
    }
    let src = parse_subfield(src_s).map_err(|e| bad(at, "bad load source", src_s, e))?;
    if src.n_bits != dst.n_bits {
        return Err(bad(
            at,
            format!(
                "source field is {} bits wide but destination is {} bits wide",
                src.n_bits, dst.n_bits
            ),
            value,
            "subfields of the same width",
        ));
    }
    Ok(LearnSpec {
        src: LearnSrc::Field(subfield(&src)),
        dst: LearnDst::Load(d),
        n_bits: d.n_bits,
    })
}
