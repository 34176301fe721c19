//! The kernel's `ovs_meter` generic netlink family (`linux/openvswitch.h`,
//! `net/openvswitch/meter.c`): a datapath's meters, which the
//! `OVS_ACTION_ATTR_METER` action runs packets through. Requests carry
//! `ovs_header` and these attributes, as the other OVS families.

use netlink_packet_core::{DecodeError, Emitable, Nla, NlaBuffer, Parseable};

use super::families::{OvsAttr, OvsMessage};
use super::nla::*;
use crate::meter::{Meter, MeterStats};

pub const OVS_METER_FAMILY: &str = "ovs_meter";
pub const OVS_METER_VERSION: u8 = 1;

// enum ovs_meter_cmd
pub const OVS_METER_CMD_FEATURES: u8 = 1;
pub const OVS_METER_CMD_SET: u8 = 2;
pub const OVS_METER_CMD_DEL: u8 = 3;
pub const OVS_METER_CMD_GET: u8 = 4;

// enum ovs_meter_attr
const OVS_METER_ATTR_ID: u16 = 1;
const OVS_METER_ATTR_KBPS: u16 = 2;
const OVS_METER_ATTR_STATS: u16 = 3;
const OVS_METER_ATTR_BANDS: u16 = 4;
const OVS_METER_ATTR_USED: u16 = 5;
const OVS_METER_ATTR_MAX_METERS: u16 = 7;
const OVS_METER_ATTR_MAX_BANDS: u16 = 8;

// enum ovs_band_attr
const OVS_BAND_ATTR_TYPE: u16 = 1;
const OVS_BAND_ATTR_RATE: u16 = 2;
const OVS_BAND_ATTR_BURST: u16 = 3;
const OVS_BAND_ATTR_STATS: u16 = 4;

/// `OVS_METER_BAND_TYPE_DROP`, the one band type the kernel has.
pub const OVS_METER_BAND_TYPE_DROP: u32 = 1;

/// `struct ovs_flow_stats`: packets, bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

fn emit_counts(c: &Counts, b: &mut [u8]) {
    b[0..8].copy_from_slice(&c.packets.to_ne_bytes());
    b[8..16].copy_from_slice(&c.bytes.to_ne_bytes());
}

fn parse_counts(v: &[u8], what: &str) -> Result<Counts, DecodeError> {
    let b: [u8; 16] = fixed(v, what)?;
    Ok(Counts {
        packets: u64_ne(&b[0..8], what)?,
        bytes: u64_ne(&b[8..16], what)?,
    })
}

/// `OVS_METER_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum MeterAttr {
    /// The datapath meter's id.
    Id(u32),
    /// Rates in kbit/s (else packets/s).
    Kbps,
    Stats(Counts),
    /// One nest per band (each of type `OVS_BAND_ATTR_UNSPEC`).
    Bands(Vec<Vec<BandAttr>>),
    /// Last use, ms of the kernel's monotonic clock.
    Used(u64),
    MaxMeters(u32),
    MaxBands(u32),
    Other(u16, Vec<u8>),
}

/// `OVS_BAND_ATTR_*`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BandAttr {
    /// `OVS_METER_BAND_TYPE_*`.
    Type(u32),
    Rate(u32),
    Burst(u32),
    Stats(Counts),
    Other(u16, Vec<u8>),
}

impl OvsAttr for MeterAttr {
    const FAMILY: &'static str = OVS_METER_FAMILY;
    const VERSION: u8 = OVS_METER_VERSION;
}

pub type MeterMessage = OvsMessage<MeterAttr>;

/// One band's attributes inside its nest.
struct BandNest<'a>(&'a [BandAttr]);

impl Nla for BandNest<'_> {
    fn value_len(&self) -> usize {
        self.0.buffer_len()
    }
    fn kind(&self) -> u16 {
        0
    }
    fn emit_value(&self, b: &mut [u8]) {
        self.0.emit(b)
    }
}

impl Nla for MeterAttr {
    fn value_len(&self) -> usize {
        match self {
            MeterAttr::Id(_) | MeterAttr::MaxMeters(_) | MeterAttr::MaxBands(_) => 4,
            MeterAttr::Kbps => 0,
            MeterAttr::Stats(_) => 16,
            MeterAttr::Bands(bands) => bands
                .iter()
                .map(|b| BandNest(b).buffer_len())
                .sum::<usize>(),
            MeterAttr::Used(_) => 8,
            MeterAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            MeterAttr::Id(_) => OVS_METER_ATTR_ID,
            MeterAttr::Kbps => OVS_METER_ATTR_KBPS,
            MeterAttr::Stats(_) => OVS_METER_ATTR_STATS,
            MeterAttr::Bands(_) => OVS_METER_ATTR_BANDS,
            MeterAttr::Used(_) => OVS_METER_ATTR_USED,
            MeterAttr::MaxMeters(_) => OVS_METER_ATTR_MAX_METERS,
            MeterAttr::MaxBands(_) => OVS_METER_ATTR_MAX_BANDS,
            MeterAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            MeterAttr::Id(x) | MeterAttr::MaxMeters(x) | MeterAttr::MaxBands(x) => {
                b.copy_from_slice(&x.to_ne_bytes())
            }
            MeterAttr::Kbps => {}
            MeterAttr::Stats(c) => emit_counts(c, b),
            MeterAttr::Bands(bands) => {
                let nests: Vec<BandNest> = bands.iter().map(|b| BandNest(b)).collect();
                nests.as_slice().emit(b)
            }
            MeterAttr::Used(x) => b.copy_from_slice(&x.to_ne_bytes()),
            MeterAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

impl Nla for BandAttr {
    fn value_len(&self) -> usize {
        match self {
            BandAttr::Type(_) | BandAttr::Rate(_) | BandAttr::Burst(_) => 4,
            BandAttr::Stats(_) => 16,
            BandAttr::Other(_, v) => v.len(),
        }
    }
    fn kind(&self) -> u16 {
        match self {
            BandAttr::Type(_) => OVS_BAND_ATTR_TYPE,
            BandAttr::Rate(_) => OVS_BAND_ATTR_RATE,
            BandAttr::Burst(_) => OVS_BAND_ATTR_BURST,
            BandAttr::Stats(_) => OVS_BAND_ATTR_STATS,
            BandAttr::Other(k, _) => *k,
        }
    }
    fn emit_value(&self, b: &mut [u8]) {
        match self {
            BandAttr::Type(x) | BandAttr::Rate(x) | BandAttr::Burst(x) => {
                b.copy_from_slice(&x.to_ne_bytes())
            }
            BandAttr::Stats(c) => emit_counts(c, b),
            BandAttr::Other(_, v) => b.copy_from_slice(v),
        }
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for BandAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_BAND_ATTR_TYPE => BandAttr::Type(u32_ne(v, "OVS_BAND_ATTR_TYPE")?),
            OVS_BAND_ATTR_RATE => BandAttr::Rate(u32_ne(v, "OVS_BAND_ATTR_RATE")?),
            OVS_BAND_ATTR_BURST => BandAttr::Burst(u32_ne(v, "OVS_BAND_ATTR_BURST")?),
            OVS_BAND_ATTR_STATS => BandAttr::Stats(parse_counts(v, "OVS_BAND_ATTR_STATS")?),
            other => BandAttr::Other(other, v.to_vec()),
        })
    }
}

/// A band's nest, whatever its type: its attributes.
struct ParsedNest(Vec<BandAttr>);

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for ParsedNest {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        parse_list(buf.value(), "OVS_METER_ATTR_BANDS band").map(ParsedNest)
    }
}

impl<'a> Parseable<NlaBuffer<&'a [u8]>> for MeterAttr {
    fn parse(buf: &NlaBuffer<&'a [u8]>) -> Result<Self, DecodeError> {
        let v = buf.value();
        Ok(match buf.kind() {
            OVS_METER_ATTR_ID => MeterAttr::Id(u32_ne(v, "OVS_METER_ATTR_ID")?),
            OVS_METER_ATTR_KBPS => MeterAttr::Kbps,
            OVS_METER_ATTR_STATS => MeterAttr::Stats(parse_counts(v, "OVS_METER_ATTR_STATS")?),
            OVS_METER_ATTR_BANDS => MeterAttr::Bands(
                parse_list::<ParsedNest>(v, "OVS_METER_ATTR_BANDS")?
                    .into_iter()
                    .map(|n| n.0)
                    .collect(),
            ),
            OVS_METER_ATTR_USED => MeterAttr::Used(u64_ne(v, "OVS_METER_ATTR_USED")?),
            OVS_METER_ATTR_MAX_METERS => {
                MeterAttr::MaxMeters(u32_ne(v, "OVS_METER_ATTR_MAX_METERS")?)
            }
            OVS_METER_ATTR_MAX_BANDS => MeterAttr::MaxBands(u32_ne(v, "OVS_METER_ATTR_MAX_BANDS")?),
            other => MeterAttr::Other(other, v.to_vec()),
        })
    }
}

/// The attributes of an `OVS_METER_CMD_SET` for datapath meter `id`, as
/// OVS's `dpif_netlink_meter_set` writes them: a drop band per band, its
/// burst the band's `burst_size` if the meter has `burst`, else its rate.
pub fn set_attrs(id: u32, meter: &Meter) -> Vec<MeterAttr> {
    let mut attrs = vec![MeterAttr::Id(id)];
    if !meter.pktps {
        attrs.push(MeterAttr::Kbps);
    }
    attrs.push(MeterAttr::Bands(
        meter
            .bands
            .iter()
            .map(|b| {
                vec![
                    BandAttr::Type(OVS_METER_BAND_TYPE_DROP),
                    BandAttr::Rate(b.rate),
                    BandAttr::Burst(if meter.burst { b.burst_size } else { b.rate }),
                ]
            })
            .collect(),
    ));
    attrs
}

/// What an `OVS_METER_CMD_FEATURES` reply says: the most meters and bands
/// per meter, and whether drop bands are among its band types.
pub fn features_of(attrs: &[MeterAttr]) -> Result<(u32, u32, bool), DecodeError> {
    let mut max_meters = None;
    let mut max_bands = None;
    let mut drop = false;
    for a in attrs {
        match a {
            MeterAttr::MaxMeters(n) => max_meters = Some(*n),
            MeterAttr::MaxBands(n) => max_bands = Some(*n),
            MeterAttr::Bands(bands) => {
                drop |= bands
                    .iter()
                    .flatten()
                    .any(|b| *b == BandAttr::Type(OVS_METER_BAND_TYPE_DROP))
            }
            _ => {}
        }
    }
    match (max_meters, max_bands) {
        (Some(m), Some(b)) => Ok((m, b, drop)),
        _ => Err(DecodeError::from(
            "ovs_meter features reply without OVS_METER_ATTR_MAX_METERS/MAX_BANDS",
        )),
    }
}

/// A meter's statistics from a GET or DEL reply: packets and bytes in,
/// and per band what it dropped (a band without statistics counts 0).
pub fn stats_of(attrs: &[MeterAttr]) -> MeterStats {
    let mut stats = MeterStats::default();
    for a in attrs {
        match a {
            MeterAttr::Stats(c) => {
                stats.packets_in = c.packets;
                stats.bytes_in = c.bytes;
            }
            MeterAttr::Bands(bands) => {
                stats.bands = bands
                    .iter()
                    .map(|band| {
                        band.iter()
                            .find_map(|b| match b {
                                BandAttr::Stats(c) => Some((c.packets, c.bytes)),
                                _ => None,
                            })
                            .unwrap_or((0, 0))
                    })
                    .collect()
            }
            _ => {}
        }
    }
    stats
}

/// The meter id a reply names, if it names one.
pub fn id_of(attrs: &[MeterAttr]) -> Option<u32> {
    attrs.iter().find_map(|a| match a {
        MeterAttr::Id(id) => Some(*id),
        _ => None,
    })
}
