//! Meters in `ovs-ofctl add-meter` syntax (OVS's
//! `parse_ofp_meter_mod_str`): `meter=N (kbps|pktps) [burst] [stats]
//! bands=type=drop rate=R [burst_size=B] [type=drop ...]`, items split by
//! blanks or commas. Everything after `bands=` is bands, each starting
//! with `type=`.

use super::*;
use crate::meter::{
    Band, Meter, MAX_BANDS, METER_ALL, METER_CONTROLLER, METER_MAX, METER_SLOWPATH,
};

/// Parses one meter (`add-meter`, `mod-meter`).
pub fn parse_meter(line: &str) -> Result<Meter, ParseError> {
    parse_meter_line(strip_comment(line)).map_err(|e| e.locate(line, 1))
}

/// Parses a file of meters, one per line; blank lines and `#` comments
/// are skipped. Stops at the first error.
pub fn parse_meters(text: &str) -> Result<Vec<Meter>, ParseError> {
    let mut meters = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = strip_comment(line);
        if body.trim().is_empty() {
            continue;
        }
        meters.push(parse_meter_line(body).map_err(|e| e.locate(line, i + 1))?);
    }
    Ok(meters)
}

/// Parses what `del-meters`, `dump-meters` and `meter-stats` take:
/// nothing or `meter=all` (every meter, `None`) or `meter=N`.
pub fn parse_meter_id(text: &str) -> Result<Option<u32>, ParseError> {
    let text = strip_comment(text);
    let mut id = None;
    for kv in key_values(text, 0) {
        match kv.key {
            "meter" => id = Some(meter_number(&kv).map_err(|e| e.locate(text, 1))?),
            _ => return Err(err(kv.key_at, "unknown keyword", kv.key, "meter=N").locate(text, 1)),
        }
    }
    Ok(id.filter(|&m| m != METER_ALL))
}

/// A meter number or one of OpenFlow's names for the special meters
/// (`ofputil_parse_meter_id`... as `ovs-ofctl` takes them).
fn meter_number(kv: &KeyValue<'_>) -> Res<u32> {
    match kv.value {
        "all" => return Ok(METER_ALL),
        "controller" => return Ok(METER_CONTROLLER),
        "slowpath" => return Ok(METER_SLOWPATH),
        _ => {}
    }
    match parse_uint(kv.value, 32) {
        Some(m) if m != 0 && m as u32 <= METER_MAX => Ok(m as u32),
        _ => Err(err(
            kv.value_at,
            "invalid value for meter",
            kv.value,
            "a meter number from 1 to 4294901760, controller or slowpath",
        )),
    }
}

fn parse_meter_line(line: &str) -> Res<Meter> {
    let (props, bands_at) = match line.find("bands=") {
        Some(i) => (&line[..i], Some(i + "bands=".len())),
        None => (line, None),
    };
    let mut meter = Meter {
        id: 0,
        pktps: false,
        burst: false,
        stats: false,
        bands: Vec::new(),
    };
    let (mut id, mut unit) = (None, None);
    for kv in key_values(props, 0) {
        match kv.key {
            "meter" => {
                let m = meter_number(&kv)?;
                if m == METER_ALL {
                    return Err(err(
                        kv.value_at,
                        "invalid value for meter",
                        kv.value,
                        "one meter, not all",
                    ));
                }
                id = Some(m);
            }
            "kbps" | "pktps" if unit.is_some() => {
                return Err(err(
                    kv.key_at,
                    "meter must specify either 'kbps' or 'pktps', not both",
                    kv.key,
                    "one of kbps or pktps",
                ))
            }
            "kbps" => unit = Some(false),
            "pktps" => unit = Some(true),
            "burst" => meter.burst = true,
            "stats" => meter.stats = true,
            _ => {
                return Err(err(
                    kv.key_at,
                    "unknown keyword",
                    kv.key,
                    "meter=N, kbps, pktps, burst, stats or bands=",
                ))
            }
        }
    }
    meter.id = id.ok_or_else(|| err(0, "must specify a meter", line.trim(), "meter=N"))?;
    meter.pktps = unit.ok_or_else(|| {
        err(
            0,
            "meter must specify either 'kbps' or 'pktps'",
            line.trim(),
            "kbps or pktps",
        )
    })?;
    let bands_at = bands_at.ok_or_else(|| {
        err(
            line.len(),
            "must specify bands",
            line.trim(),
            "bands=type=drop rate=N",
        )
    })?;
    for kv in key_values(&line[bands_at..], bands_at) {
        let number = |what: &str| {
            parse_uint(kv.value, 32).map(|v| v as u32).ok_or_else(|| {
                err(
                    kv.value_at,
                    format!("invalid {what}"),
                    kv.value,
                    "a 32-bit integer",
                )
            })
        };
        match kv.key {
            "type" => {
                if kv.value != "drop" {
                    return Err(err(
                        kv.value_at,
                        "band type not supported (OFPMMFC_BAD_BAND)",
                        kv.value,
                        "drop (the only band the datapaths implement)",
                    ));
                }
                meter.bands.push(Band {
                    rate: 0,
                    burst_size: 0,
                });
            }
            "rate" | "burst_size" => {
                let value = number(kv.key)?;
                let band = meter.bands.last_mut().ok_or_else(|| {
                    err(
                        kv.key_at,
                        "band must start with type=",
                        kv.key,
                        "type=drop first",
                    )
                })?;
                if kv.key == "rate" {
                    band.rate = value;
                } else {
                    band.burst_size = value;
                }
            }
            _ => {
                return Err(err(
                    kv.key_at,
                    "unknown band keyword",
                    kv.key,
                    "type, rate or burst_size",
                ))
            }
        }
    }
    if meter.bands.is_empty() {
        return Err(err(
            bands_at,
            "must specify bands",
            line.trim(),
            "bands=type=drop rate=N",
        ));
    }
    if meter.bands.len() > MAX_BANDS {
        return Err(err(
            bands_at,
            "too many bands (OFPMMFC_OUT_OF_BANDS)",
            &line[bands_at..],
            format!("at most {MAX_BANDS} bands"),
        ));
    }
    if meter.bands.iter().any(|b| b.rate == 0) {
        return Err(err(
            bands_at,
            "band must have 'rate'",
            &line[bands_at..],
            "rate=N in every band",
        ));
    }
    if meter.burst && meter.bands.iter().any(|b| b.burst_size == 0) {
        return Err(err(
            bands_at,
            "band must have 'burst_size' when 'burst' flag is set",
            &line[bands_at..],
            "burst_size=N in every band",
        ));
    }
    Ok(meter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meters_parse_as_ovs_ofctl_takes_them() {
        let m = parse_meter("meter=1 pktps burst stats bands=type=drop rate=100 burst_size=10")
            .unwrap();
        assert_eq!(m.id, 1);
        assert!(m.pktps && m.burst && m.stats);
        assert_eq!(
            m.bands,
            vec![Band {
                rate: 100,
                burst_size: 10
            }]
        );
        let m = parse_meter("meter=controller,kbps,bands=type=drop,rate=1000").unwrap();
        assert_eq!((m.id, m.pktps, m.burst), (METER_CONTROLLER, false, false));
        let two = parse_meters("# two\nmeter=2 kbps bands=type=drop rate=1\n\nmeter=3 pktps bands=type=drop rate=5 type=drop rate=9\n").unwrap();
        assert_eq!(two.len(), 2);
        assert_eq!(two[1].bands.len(), 2);
    }

    #[test]
    fn bad_meters_are_refused_as_ovs_refuses_them() {
        let e = |s: &str| parse_meter(s).unwrap_err().what;
        assert_eq!(
            e("meter=4 bands=type=drop rate=10"),
            "meter must specify either 'kbps' or 'pktps'"
        );
        assert_eq!(
            e("meter=6 kbps burst bands=type=drop rate=10"),
            "band must have 'burst_size' when 'burst' flag is set"
        );
        assert_eq!(e("meter=8 kbps"), "must specify bands");
        assert_eq!(
            e("meter=0 kbps bands=type=drop rate=10"),
            "invalid value for meter"
        );
        assert_eq!(
            e("meter=10 kbps bands=type=drop rate=0"),
            "band must have 'rate'"
        );
        assert!(e("meter=5 kbps bands=type=dscp_remark rate=2 prec_level=1")
            .contains("OFPMMFC_BAD_BAND"));
        assert_eq!(parse_meter_id("meter=all").unwrap(), None);
        assert_eq!(parse_meter_id("").unwrap(), None);
        assert_eq!(parse_meter_id("meter=7").unwrap(), Some(7));
        assert!(parse_meter_id("group=7").is_err());
    }
}
