//! Groups in `ovs-ofctl add-group(s)` syntax (OVS's
//! `parse_ofp_group_mod_str`): `group_id=N,type=T[,selection_method=M]
//! [,selection_method_param=P][,fields(F,...)],bucket=...,bucket=...`,
//! where a bucket is `[bucket_id:N,][weight:N,][watch_port:P,]
//! [watch_group:G,][actions=]ACTIONS`.

use super::*;
use crate::group::{Bucket, Group, GroupType, Selection, GROUP_ANY, GROUP_MAX};

/// Parses one group (one line of an `add-groups` file).
pub fn parse_group(line: &str) -> Result<Group, ParseError> {
    parse_group_line(strip_comment(line)).map_err(|e| e.locate(line, 1))
}

/// Parses a file of groups, one per line; blank lines and `#` comments
/// are skipped. Stops at the first error.
pub fn parse_groups(text: &str) -> Result<Vec<Group>, ParseError> {
    let mut groups = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = strip_comment(line);
        if body.trim().is_empty() {
            continue;
        }
        groups.push(parse_group_line(body).map_err(|e| e.locate(line, i + 1))?);
    }
    Ok(groups)
}

/// Parses what `del-groups` takes: nothing (every group) or `group_id=N`.
pub fn parse_group_id(text: &str) -> Result<Option<u32>, ParseError> {
    let mut id = None;
    for kv in key_values(text, 0) {
        match kv.key {
            "group_id" => id = Some(group_number(&kv)?),
            _ => {
                return Err(err(kv.key_at, "unknown keyword", kv.key, "group_id=N").locate(text, 1))
            }
        }
    }
    Ok(id)
}

fn group_number(kv: &KeyValue<'_>) -> Result<u32, ParseError> {
    match parse_uint(kv.value, 32) {
        Some(g) if g as u32 <= GROUP_MAX => Ok(g as u32),
        _ => Err(err(
            kv.value_at,
            "invalid group_id",
            kv.value,
            "a group number up to 4294967040",
        )
        .locate(kv.value, 1)),
    }
}

fn parse_group_line(line: &str) -> Res<Group> {
    // Everything from the first "bucket=" on is buckets, as in OVS.
    let props_end = line.find("bucket=").unwrap_or(line.len());
    let (mut id, mut kind, mut method, mut param) = (None, None, None, 0u64);
    let mut fields = Vec::new();
    for kv in key_values(&line[..props_end], 0) {
        match kv.key {
            "group_id" => {
                id = Some(match parse_uint(kv.value, 32) {
                    Some(g) if g as u32 <= GROUP_MAX => g as u32,
                    _ => {
                        return Err(err(
                            kv.value_at,
                            "invalid group_id",
                            kv.value,
                            "a group number up to 4294967040",
                        ))
                    }
                })
            }
            "type" => {
                kind = Some(match kv.value {
                    "all" => GroupType::All,
                    "select" => GroupType::Select,
                    "indirect" => GroupType::Indirect,
                    "ff" | "fast_failover" => GroupType::FastFailover,
                    _ => {
                        return Err(err(
                            kv.value_at,
                            "invalid group type",
                            kv.value,
                            "all, select, indirect or ff",
                        ))
                    }
                })
            }
            "selection_method" => {
                if !matches!(kv.value, "hash" | "dp_hash") {
                    return Err(err(
                        kv.value_at,
                        "invalid selection method",
                        kv.value,
                        "hash or dp_hash",
                    ));
                }
                method = Some(kv.value.to_string());
            }
            "selection_method_param" => {
                param = parse_uint(kv.value, 64).ok_or_else(|| {
                    err(
                        kv.value_at,
                        "invalid selection_method_param",
                        kv.value,
                        "a 64-bit integer",
                    )
                })? as u64
            }
            "fields" => {
                for f in key_values(kv.value, kv.value_at) {
                    let info = field::by_name(f.key).ok_or_else(|| {
                        err(
                            f.key_at,
                            "unknown field",
                            f.key,
                            "a field name (ip_src, ...)",
                        )
                    })?;
                    let mask = if f.value.is_empty() {
                        info.field.full_mask()
                    } else {
                        parse_uint(f.value, u32::from(info.n_bits)).ok_or_else(|| {
                            err(f.value_at, "invalid field mask", f.value, "an integer mask")
                        })?
                    };
                    fields.push((info.field, mask));
                }
            }
            _ => {
                return Err(err(
                    kv.key_at,
                    "unknown keyword",
                    kv.key,
                    "group_id, type, selection_method, selection_method_param, fields or bucket",
                ))
            }
        }
    }
    let id = id.ok_or_else(|| err(0, "must specify a group_id", line.trim(), "group_id=N"))?;
    let kind = kind.ok_or_else(|| {
        err(
            0,
            "must specify a type",
            line.trim(),
            "type=all|select|indirect|ff",
        )
    })?;
    if method.is_some() && kind != GroupType::Select {
        return Err(err(
            0,
            "selection_method is only for select groups",
            line.trim(),
            "type=select",
        ));
    }
    let mut buckets = Vec::new();
    let mut rest = props_end;
    while rest < line.len() {
        let Some(body) = line[rest..].strip_prefix("bucket=") else {
            return Err(err(rest, "invalid bucket", &line[rest..], "bucket=..."));
        };
        let start = rest + "bucket=".len();
        let end = line[start..]
            .find("bucket=")
            .map_or(line.len(), |i| start + i);
        let text = body[..end - start].trim_end_matches([',', ' ']);
        buckets.push(parse_bucket(text, start, buckets.len() as u32)?);
        rest = end;
    }
    if kind == GroupType::FastFailover && buckets.iter().any(|b| !b.has_liveness()) {
        return Err(err(
            0,
            "fast failover bucket requires watch_port or watch_group",
            line.trim(),
            "watch_port:P or watch_group:G in every bucket",
        ));
    }
    if kind == GroupType::Indirect && buckets.len() != 1 {
        return Err(err(
            0,
            "indirect group must have exactly one bucket",
            line.trim(),
            "one bucket=...",
        ));
    }
    let mut group = Group {
        id,
        kind,
        selection: Selection::Default,
        selection_method: method.clone(),
        buckets,
    };
    group.choose_selection(method.as_deref(), param, fields);
    Ok(group)
}

fn parse_bucket(text: &str, base: usize, index: u32) -> Res<Bucket> {
    let mut bucket = Bucket {
        id: index,
        weight: 1,
        watch_port: port::ANY,
        watch_group: GROUP_ANY,
        actions: Vec::new(),
    };
    // As OVS's `parse_bucket_str`: the bucket's properties may stand
    // anywhere among its actions (`bucket=output:10,weight=2000`); every
    // other item, and the value of `actions=`, is an action.
    let items: Vec<_> = key_values(text, base).collect();
    let mut pieces: Vec<(usize, usize, usize)> = Vec::new();
    for (i, kv) in items.iter().enumerate() {
        let number = |bits: u32, what: &str| {
            parse_uint(kv.value, bits).ok_or_else(|| {
                err(
                    kv.value_at,
                    format!("invalid {what}"),
                    kv.value,
                    "an integer",
                )
            })
        };
        match kv.key {
            "bucket_id" => bucket.id = number(32, "bucket_id")? as u32,
            "weight" => bucket.weight = number(16, "weight")? as u16,
            "watch_port" => {
                bucket.watch_port = parse_port(kv.value)
                    .ok_or_else(|| err(kv.value_at, "invalid watch_port", kv.value, "a port"))?
            }
            "watch_group" => bucket.watch_group = number(32, "watch_group")? as u32,
            key => {
                let start = if key == "actions" || key == "action" {
                    kv.value_at
                } else {
                    kv.key_at
                } - base;
                let end = items.get(i + 1).map_or(text.len(), |n| n.key_at - base);
                let end = start + text[start..end].trim_end_matches([',', ' ', '\t']).len();
                pieces.push((i, start, end));
            }
        }
    }
    let (actions, at) = match (pieces.first(), pieces.last()) {
        (Some(&(first, start, _)), Some(&(last, _, end))) if last - first + 1 == pieces.len() => {
            (text[start..end].to_string(), base + start)
        }
        (Some(&(_, start, _)), _) => {
            let joined: Vec<&str> = pieces.iter().map(|&(_, s, e)| &text[s..e]).collect();
            (joined.join(","), base + start)
        }
        _ => return Err(err(base, "bucket must specify actions", text, "actions")),
    };
    let acts = parse_action_list(&actions, at, false)?;
    let mut state = CheckState {
        flow: Flow::default(),
        table: 0,
        in_action_set: true,
        in_conntrack: false,
        in_group: true,
    };
    for a in &acts {
        encode_action(a, &mut state, &mut bucket.actions)?;
    }
    Ok(bucket)
}
