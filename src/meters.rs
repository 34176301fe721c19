//! Meters across the rule-table and the datapath: a meter mod (from `ctl`
//! or OpenFlow) changes the tables through the rule-table actor, which
//! gives each meter its datapath id, and then programs the datapath's
//! meter, as OVS's `handle_meter_mod` calls `dpif_meter_set`/`_del`.

use actix::Addr;
use actors::protocol::{MeterMod, MeterModReply};
use actors::rule_table::RuleTable;
use actors::tables::{MeterModError, Tables};
use messages::dpif::Dpif;
use messages::format::ofp_rule::{format_meter, format_meter_stats};
use messages::meter::MeterStats;

/// Why a meter mod failed.
#[derive(Debug, thiserror::Error)]
pub enum MeterModFailure {
    /// The tables refused it (exists, unknown, out of ids).
    #[error("{0}")]
    Refused(#[from] MeterModError),
    /// The datapath has no meters, or refused this one.
    #[error("{0}")]
    Datapath(String),
    /// More bands than the datapath's meters take (OFPMMFC_OUT_OF_BANDS).
    #[error("meter {id}: {bands} bands, the {datapath} datapath's meters take at most {max} (OFPMMFC_OUT_OF_BANDS)")]
    OutOfBands {
        id: u32,
        bands: usize,
        max: u8,
        datapath: &'static str,
    },
    #[error("rule-table unavailable: {0}")]
    Unavailable(String),
}

/// Applies a meter mod: the tables first, then the datapath. An add the
/// datapath refuses is taken back out of the tables.
pub async fn meter_mod(
    rule_table: &Addr<RuleTable>,
    dpif: &dyn Dpif,
    change: MeterMod,
) -> Result<MeterModReply, MeterModFailure> {
    if let MeterMod::Add(m) | MeterMod::Modify(m) = &change {
        let Some(features) = dpif.meter_features() else {
            return Err(MeterModFailure::Datapath(format!(
                "the {} datapath has no meters (OFPMMFC_OUT_OF_METERS)",
                dpif.kind()
            )));
        };
        // As OVS's handle_meter_mod, before the tables change.
        if m.bands.len() > usize::from(features.max_bands) {
            return Err(MeterModFailure::OutOfBands {
                id: m.id,
                bands: m.bands.len(),
                max: features.max_bands,
                datapath: dpif.kind(),
            });
        }
    }
    let is_add = matches!(change, MeterMod::Add(_));
    let reply = rule_table
        .send(change)
        .await
        .map_err(|e| MeterModFailure::Unavailable(e.to_string()))??;
    if let Some((meter, dp_id)) = &reply.set {
        if let Err(e) = dpif.meter_set(*dp_id, meter) {
            if is_add {
                let _ = rule_table.send(MeterMod::Delete(Some(meter.id))).await;
            }
            return Err(MeterModFailure::Datapath(format!(
                "meter {}: datapath meter {dp_id}: {e}",
                meter.id
            )));
        }
    }
    for dp_id in &reply.deleted {
        dpif.meter_del(*dp_id)
            .map_err(|e| MeterModFailure::Datapath(format!("datapath meter {dp_id}: {e}")))?;
    }
    Ok(reply)
}

/// `dump-meters` (all, or meter `id`), as `ovs-ofctl dump-meters` prints
/// the meters: one block each, a blank line between.
pub fn dump_meters(tables: &Tables, id: Option<u32>) -> String {
    tables
        .meters()
        .filter(|e| id.is_none_or(|m| m == e.meter.id))
        .map(|e| format_meter(&e.meter))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `meter-stats` (all, or meter `id`), as `ovs-ofctl meter-stats`: the
/// datapath's counts, the rules that use each meter, its age.
pub fn meter_stats(tables: &Tables, dpif: &dyn Dpif, id: Option<u32>) -> String {
    tables
        .meters()
        .filter(|e| id.is_none_or(|m| m == e.meter.id))
        .map(|e| {
            let stats = dpif.meter_stats(e.dp_id).unwrap_or_else(|_| MeterStats {
                bands: vec![(0, 0); e.meter.bands.len()],
                ..MeterStats::default()
            });
            format_meter_stats(
                e.meter.id,
                tables.meter_users(e.meter.id),
                e.added.elapsed(),
                &stats,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
