//! Whole messages: what a controller sends, decoded ([`decode`]), and what
//! the switch answers, encoded (the `encode_*` functions).

use crate::dpif::PortStats;
use crate::flow::*;
use crate::ofp::{port, Instructions, Match};

use super::actions;
use super::nxm;
use super::{ErrorCode, ErrorKind as E, Header, OfpError, Put, Reader, HEADER_LEN};
use super::{NX_VENDOR_ID, OFP10, OFP13, OFP14, ONF_VENDOR_ID};

/// The versions upcalld speaks, as a HELLO version bitmap.
pub const SUPPORTED_VERSIONS: u32 = (1 << OFP10) | (1 << OFP13) | (1 << OFP14);

// Message types shared by every version.
const OFPT_HELLO: u8 = 0;
const OFPT_ERROR: u8 = 1;
const OFPT_ECHO_REQUEST: u8 = 2;
const OFPT_ECHO_REPLY: u8 = 3;
pub(crate) const OFPT_VENDOR: u8 = 4;
const OFPT_FEATURES_REQUEST: u8 = 5;
const OFPT_FEATURES_REPLY: u8 = 6;
const OFPT_GET_CONFIG_REQUEST: u8 = 7;
const OFPT_GET_CONFIG_REPLY: u8 = 8;
const OFPT_SET_CONFIG: u8 = 9;
const OFPT_PACKET_IN: u8 = 10;
const OFPT_FLOW_REMOVED: u8 = 11;
const OFPT_PORT_STATUS: u8 = 12;
const OFPT_PACKET_OUT: u8 = 13;
const OFPT_FLOW_MOD: u8 = 14;
// OpenFlow 1.0.
const OFPT10_PORT_MOD: u8 = 15;
const OFPT10_STATS_REQUEST: u8 = 16;
const OFPT10_STATS_REPLY: u8 = 17;
const OFPT10_BARRIER_REQUEST: u8 = 18;
const OFPT10_BARRIER_REPLY: u8 = 19;
// OpenFlow 1.3 and 1.4.
const OFPT13_GROUP_MOD: u8 = 15;
const OFPT13_PORT_MOD: u8 = 16;
const OFPT13_TABLE_MOD: u8 = 17;
const OFPT13_MULTIPART_REQUEST: u8 = 18;
const OFPT13_MULTIPART_REPLY: u8 = 19;
const OFPT13_BARRIER_REQUEST: u8 = 20;
const OFPT13_BARRIER_REPLY: u8 = 21;
const OFPT13_ROLE_REQUEST: u8 = 24;
const OFPT13_ROLE_REPLY: u8 = 25;
const OFPT13_GET_ASYNC_REQUEST: u8 = 26;
const OFPT13_GET_ASYNC_REPLY: u8 = 27;
const OFPT13_SET_ASYNC: u8 = 28;
const OFPT13_METER_MOD: u8 = 29;
const OFPT14_BUNDLE_CONTROL: u8 = 33;
const OFPT14_BUNDLE_ADD_MESSAGE: u8 = 34;

// Nicira message subtypes.
const NXT_ROLE_REQUEST: u32 = 10;
const NXT_ROLE_REPLY: u32 = 11;
const NXT_SET_FLOW_FORMAT: u32 = 12;
const NXT_FLOW_MOD: u32 = 13;
const NXT_FLOW_REMOVED: u32 = 14;
const NXT_FLOW_MOD_TABLE_ID: u32 = 15;
const NXT_SET_PACKET_IN_FORMAT: u32 = 16;
const NXT_SET_ASYNC_CONFIG: u32 = 19;
const NXT_SET_CONTROLLER_ID: u32 = 20;
const NXT_PACKET_IN: u32 = 17;
const NXT_PACKET_IN2: u32 = 30;
const NXT_TLV_TABLE_MOD: u32 = 24;
const NXT_TLV_TABLE_REQUEST: u32 = 25;
const NXT_TLV_TABLE_REPLY: u32 = 26;
// ONF's bundle extension to OpenFlow 1.3.
const ONFT_BUNDLE_CONTROL: u32 = 2300;
const ONFT_BUNDLE_ADD_MESSAGE: u32 = 2301;

// Statistics (multipart) types.
const OFPST_DESC: u16 = 0;
const OFPST_FLOW: u16 = 1;
const OFPST_AGGREGATE: u16 = 2;
const OFPST_TABLE: u16 = 3;
const OFPST_PORT: u16 = 4;
const OFPST_QUEUE: u16 = 5;
const OFPMP_TABLE_FEATURES: u16 = 12;
const OFPMP_PORT_DESC: u16 = 13;
const OFPMP_GROUP: u16 = 6;
const OFPMP_GROUP_DESC: u16 = 7;
const OFPMP_GROUP_FEATURES: u16 = 8;
const OFPMP_METER: u16 = 9;
const OFPMP_METER_CONFIG: u16 = 10;
const OFPMP_METER_FEATURES: u16 = 11;
const OFPST_VENDOR: u16 = 0xffff;
const NXST_FLOW: u32 = 0;
const NXST_AGGREGATE: u32 = 1;

/// `OFPMPF_REPLY_MORE`: more replies follow.
const REPLY_MORE: u16 = 1;

/// The largest message: replies longer than this are split.
const MAX_MSG: usize = 65535;

pub use crate::ofp::{flow_flags, FlowModCommand};

/// A decoded flow mod, whatever version it came in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowMod {
    pub command: FlowModCommand,
    /// 0xff: every table (deletes), otherwise one table.
    pub table: u8,
    pub cookie: u64,
    /// Which cookie bits select rules (modify and delete).
    pub cookie_mask: u64,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub buffer_id: u32,
    /// Deletes only: rules that output to this port (`port::ANY`: all).
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    pub matches: Match,
    pub instructions: Instructions,
}

/// The tables a switch offers over OpenFlow (as OVS: 254, the last table
/// being its own).
pub const N_TABLES: u8 = 254;

impl FlowMod {
    /// Whether a modify names every table (0xff: OpenFlow 1.0 without
    /// NXT_FLOW_MOD_TABLE_ID).
    fn all_tables(&self) -> bool {
        self.table == 0xff && self.command != FlowModCommand::Add
    }

    /// The table of the rule an add (or a modify that adds) installs:
    /// table 0 for a modify of every table.
    pub fn rule_table(&self) -> u8 {
        if self.all_tables() {
            0
        } else {
            self.table
        }
    }

    /// What OVS refuses before applying a flow mod that adds or modifies:
    /// a table the switch lacks, a `goto_table` that does not go forward,
    /// a buffered packet (upcalld buffers none).
    pub fn check(&self) -> Result<(), OfpError> {
        if matches!(
            self.command,
            FlowModCommand::Delete | FlowModCommand::DeleteStrict
        ) {
            return Ok(());
        }
        if self.table >= N_TABLES && !self.all_tables() {
            return Err(OfpError::new(
                E::FlowModBadTableId,
                format!("table {} (the switch has {N_TABLES})", self.table),
            ));
        }
        if let Some(t) = self.instructions.goto_table {
            if t <= self.rule_table() || t >= N_TABLES {
                return Err(OfpError::new(
                    E::InstBadTableId,
                    format!("goto_table:{t} from table {}", self.table),
                ));
            }
        }
        if self.buffer_id != u32::MAX && self.buffer_id != 0 {
            return Err(OfpError::new(
                E::BufferUnknown,
                "upcalld buffers no packets",
            ));
        }
        Ok(())
    }
}

/// Which rules a flow stats or aggregate request asks about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStatsRequest {
    pub table: u8,
    pub out_port: u32,
    pub out_group: u32,
    pub cookie: u64,
    pub cookie_mask: u64,
    pub matches: Match,
    /// How the reply must carry each flow.
    pub format: FlowFormat,
}

/// How flows travel in flow stats replies and flow removed messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowFormat {
    /// OpenFlow 1.0's fixed `ofp_match`.
    Of10,
    /// Nicira's NXST/NXT messages with NXM matches.
    Nxm,
    /// OpenFlow 1.3+ OXM.
    Oxm,
}

/// A multipart (statistics) request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MultipartRequest {
    Desc,
    Flow(FlowStatsRequest),
    Aggregate(FlowStatsRequest),
    Table,
    PortStats {
        port: u32,
    },
    PortDesc,
    TableFeatures,
    /// OFPMP_GROUP: group N's counters, or every group's (None,
    /// `OFPG_ALL`) (`ovs-ofctl dump-group-stats`).
    GroupStats(Option<u32>),
    /// OFPMP_GROUP_DESC: the groups (`ovs-ofctl dump-groups`).
    GroupDesc,
    /// OFPMP_GROUP_FEATURES (`ovs-ofctl dump-group-features`).
    GroupFeatures,
    /// OFPMP_METER: meter N's statistics, or every meter's (None,
    /// `OFPM_ALL`) (`ovs-ofctl meter-stats`).
    MeterStats(Option<u32>),
    /// OFPMP_METER_CONFIG: the meters (`ovs-ofctl dump-meters`).
    MeterConfig(Option<u32>),
    /// OFPMP_METER_FEATURES (`ovs-ofctl meter-features`).
    MeterFeatures,
    /// Requests answered with an empty reply (queues): upcalld has none.
    Empty(u16),
}

/// Bundle control operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BundleOp {
    Open,
    Close,
    Commit,
    Discard,
}

/// A packet-out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketOut {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: Instructions,
    pub data: Vec<u8>,
}

/// A message from a controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    Hello {
        /// Bitmap of the versions the peer offers.
        versions: u32,
    },
    Error {
        kind: u16,
        code: u16,
    },
    EchoRequest(Vec<u8>),
    EchoReply,
    FeaturesRequest,
    GetConfigRequest,
    SetConfig {
        flags: u16,
        miss_send_len: u16,
    },
    PacketOut(Box<PacketOut>),
    FlowMod(Box<FlowMod>),
    Multipart(Box<MultipartRequest>),
    BarrierRequest,
    RoleRequest {
        role: u32,
        generation_id: u64,
        nicira: bool,
    },
    GetAsyncRequest,
    /// A configuration upcalld accepts and does not need (SET_ASYNC,
    /// TABLE_MOD, PORT_MOD, NXT_SET_ASYNC_CONFIG).
    Accepted(&'static str),
    SetFlowFormat(FlowFormat),
    FlowModTableId(bool),
    SetPacketInFormat(u32),
    SetControllerId(u16),
    BundleControl {
        id: u32,
        op: BundleOp,
        flags: u16,
    },
    BundleAdd {
        id: u32,
        flags: u16,
        /// The whole inner message, header included.
        message: Vec<u8>,
    },
    GroupMod(Box<GroupModRequest>),
    /// An OpenFlow 1.3 METER_MOD.
    MeterMod(Box<MeterModRequest>),
    /// NXT_TLV_TABLE_MOD (`ovs-ofctl add-tlv-map`, `del-tlv-map`).
    TlvTableMod(TlvTableMod),
    /// NXT_TLV_TABLE_REQUEST (`ovs-ofctl dump-tlv-map`).
    TlvTableRequest,
    /// NXT_RESUME: go on with a paused pipeline.
    Resume(Box<super::continuation::Resume>),
}

/// An NXT_TLV_TABLE_MOD: what to do with the Geneve TLV map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TlvTableMod {
    /// NXTTMC_ADD: all of these mappings, or none.
    Add(Vec<crate::tlv::TlvRequest>),
    /// NXTTMC_DELETE: unmap these fields.
    Delete(Vec<usize>),
    /// NXTTMC_CLEAR: unmap every field.
    Clear,
}

/// An OpenFlow 1.3 METER_MOD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MeterModRequest {
    Add(crate::meter::Meter),
    Modify(crate::meter::Meter),
    /// Meter N, or every meter (`OFPM_ALL`).
    Delete(Option<u32>),
}

/// An OpenFlow 1.3 GROUP_MOD.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupModRequest {
    Add(crate::group::Group),
    Modify(crate::group::Group),
    /// Group N, or every group (`OFPG_ALL`).
    Delete(Option<u32>),
}

/// OpenFlow's "every group" in a group mod's delete.
const OFPG_ALL: u32 = 0xffff_fffc;

/// What decoding needs to know about the connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DecodeState {
    /// NXT_FLOW_MOD_TABLE_ID is on: an OpenFlow 1.0 flow mod's command
    /// carries the table in its high byte.
    pub flow_mod_table_id: bool,
}

/// Decodes one whole message (header included).
pub fn decode(msg: &[u8], st: DecodeState) -> Result<(Header, Request), OfpError> {
    let h = Header::parse(msg)
        .ok_or_else(|| OfpError::new(E::BadLen, "shorter than the OpenFlow header"))?;
    if usize::from(h.length) != msg.len() {
        return Err(OfpError::new(
            E::BadLen,
            "length field disagrees with the message",
        ));
    }
    let mut r = Reader::new(&msg[HEADER_LEN..], E::BadLen);
    if h.kind == OFPT_HELLO {
        return Ok((h, decode_hello(h.version, r)));
    }
    if h.version != OFP10 && h.version != OFP13 && h.version != OFP14 {
        return Err(OfpError::new(
            E::BadVersion,
            format!("version {:#x}", h.version),
        ));
    }
    let v = h.version;
    let req = match h.kind {
        OFPT_ERROR => Request::Error {
            kind: r.u16("error type")?,
            code: r.u16("error code")?,
        },
        OFPT_ECHO_REQUEST => Request::EchoRequest(r.buf.to_vec()),
        OFPT_ECHO_REPLY => Request::EchoReply,
        OFPT_VENDOR => decode_vendor(v, r, st)?,
        OFPT_FEATURES_REQUEST => Request::FeaturesRequest,
        OFPT_GET_CONFIG_REQUEST => Request::GetConfigRequest,
        OFPT_SET_CONFIG => Request::SetConfig {
            flags: r.u16("flags")?,
            miss_send_len: r.u16("miss_send_len")?,
        },
        OFPT_PACKET_OUT => Request::PacketOut(Box::new(decode_packet_out(v, r)?)),
        OFPT_FLOW_MOD if v == OFP10 => decode_flow_mod_of10(r, st)?,
        OFPT_FLOW_MOD => decode_flow_mod_of13(r)?,
        OFPT10_PORT_MOD if v == OFP10 => Request::Accepted("port mod"),
        OFPT10_STATS_REQUEST if v == OFP10 => Request::Multipart(Box::new(decode_stats_of10(r)?)),
        OFPT10_BARRIER_REQUEST if v == OFP10 => Request::BarrierRequest,
        OFPT13_PORT_MOD | OFPT13_TABLE_MOD if v != OFP10 => Request::Accepted("table or port mod"),
        OFPT13_MULTIPART_REQUEST if v != OFP10 => {
            Request::Multipart(Box::new(decode_multipart(r)?))
        }
        OFPT13_BARRIER_REQUEST if v != OFP10 => Request::BarrierRequest,
        OFPT13_ROLE_REQUEST if v != OFP10 => {
            let role = r.u32("role")?;
            r.skip(4, "pad")?;
            Request::RoleRequest {
                role,
                generation_id: r.u64("generation_id")?,
                nicira: false,
            }
        }
        OFPT13_GET_ASYNC_REQUEST if v != OFP10 => Request::GetAsyncRequest,
        OFPT13_SET_ASYNC if v != OFP10 => Request::Accepted("set async"),
        OFPT14_BUNDLE_CONTROL if v >= OFP14 => decode_bundle_control(r)?,
        OFPT14_BUNDLE_ADD_MESSAGE if v >= OFP14 => decode_bundle_add(r)?,
        OFPT13_GROUP_MOD if v != OFP10 => Request::GroupMod(Box::new(decode_group_mod(r)?)),
        OFPT13_METER_MOD if v != OFP10 => Request::MeterMod(Box::new(decode_meter_mod(r)?)),
        k => return Err(OfpError::new(E::BadType, format!("message type {k}"))),
    };
    Ok((h, req))
}

/// OVS's `ofputil_decode_group_mod` for OpenFlow 1.3: command, type,
/// group id, then buckets (`len`, `weight`, `watch_port`, `watch_group`,
/// actions).
fn decode_group_mod(mut r: Reader<'_>) -> Result<GroupModRequest, OfpError> {
    use crate::group::{Bucket, Group, GroupType, Selection, GROUP_MAX};
    let command = r.u16("command")?;
    let kind = r.u8("type")?;
    r.skip(1, "pad")?;
    let id = r.u32("group_id")?;
    if command == 2 {
        return Ok(GroupModRequest::Delete((id != OFPG_ALL).then_some(id)));
    }
    if id > GROUP_MAX {
        return Err(OfpError::new(E::GroupInvalid, format!("group_id {id:#x}")));
    }
    let kind = match kind {
        0 => GroupType::All,
        1 => GroupType::Select,
        2 => GroupType::Indirect,
        3 => GroupType::FastFailover,
        k => return Err(OfpError::new(E::GroupBadType, format!("group type {k}"))),
    };
    let mut buckets = Vec::new();
    while !r.is_empty() {
        let len = usize::from(r.u16("bucket length")?);
        if len < 16 {
            return Err(OfpError::new(
                E::GroupInvalid,
                format!("bucket length {len}"),
            ));
        }
        let weight = r.u16("weight")?;
        let watch_port = r.u32("watch_port")?;
        let watch_group = r.u32("watch_group")?;
        r.skip(4, "pad")?;
        let acts = r.bytes(len - 16, "bucket actions")?;
        let actions = actions::decode_actions(OFP13, acts, &Match::default())?.apply;
        buckets.push(Bucket {
            id: buckets.len() as u32,
            weight,
            watch_port,
            watch_group,
            actions,
        });
    }
    let mut group = Group {
        id,
        kind,
        selection: Selection::Default,
        selection_method: None,
        buckets,
    };
    group.choose_selection(None, 0, Vec::new());
    Ok(match command {
        0 => GroupModRequest::Add(group),
        1 => GroupModRequest::Modify(group),
        c => {
            return Err(OfpError::new(
                E::GroupInvalid,
                format!("group mod command {c}"),
            ))
        }
    })
}

/// OVS's `ofputil_decode_meter_mod`: command, flags, meter id, then bands
/// (`ofp_meter_band_header`: type, length 16, rate, burst size). Only
/// `drop` bands are taken (OVS's userspace datapath refuses the others
/// with OFPMMFC_BAD_BAND).
fn decode_meter_mod(mut r: Reader<'_>) -> Result<MeterModRequest, OfpError> {
    use crate::meter::{flags, Band, Meter, MAX_BANDS, METER_ALL, METER_MAX, METER_SLOWPATH};
    let command = r.u16("command")?;
    let fl = r.u16("flags")?;
    let id = r.u32("meter_id")?;
    if command == 2 {
        return Ok(MeterModRequest::Delete((id != METER_ALL).then_some(id)));
    }
    if id == 0 || (id > METER_MAX && id < METER_SLOWPATH) || id == METER_ALL {
        return Err(OfpError::new(E::MeterInvalid, format!("meter_id {id:#x}")));
    }
    let units = fl & (flags::KBPS | flags::PKTPS);
    if units == 0 || units == flags::KBPS | flags::PKTPS || fl & !0xf != 0 {
        return Err(OfpError::new(E::MeterBadFlags, format!("flags {fl:#x}")));
    }
    let mut bands = Vec::new();
    while !r.is_empty() {
        let kind = r.u16("band type")?;
        let len = r.u16("band length")?;
        let rate = r.u32("rate")?;
        let burst_size = r.u32("burst_size")?;
        r.skip(4, "band body")?;
        if len != 16 || kind != 1 {
            return Err(OfpError::new(
                E::MeterBadBand,
                format!("band type {kind} (length {len}): only drop (1) bands"),
            ));
        }
        if rate == 0 {
            return Err(OfpError::new(E::MeterBadBand, "band rate 0"));
        }
        bands.push(Band { rate, burst_size });
    }
    if bands.is_empty() || bands.len() > MAX_BANDS {
        return Err(OfpError::new(
            E::MeterOutOfBands,
            format!("{} bands (1 to {MAX_BANDS})", bands.len()),
        ));
    }
    let meter = Meter {
        id,
        pktps: fl & flags::PKTPS != 0,
        burst: fl & flags::BURST != 0,
        stats: fl & flags::STATS != 0,
        bands,
    };
    match command {
        0 => Ok(MeterModRequest::Add(meter)),
        1 => Ok(MeterModRequest::Modify(meter)),
        c => Err(OfpError::new(
            E::MeterBadCommand,
            format!("meter mod command {c}"),
        )),
    }
}

fn decode_hello(version: u8, mut r: Reader<'_>) -> Request {
    // Without a version bitmap, the peer speaks its header's version and
    // everything below it.
    let mut versions = (1u32 << version.min(31)) | ((1u32 << version.min(31)) - 1);
    while r.remaining() >= 4 {
        let (Ok(kind), Ok(len)) = (r.u16(""), r.u16("")) else {
            break;
        };
        let len = usize::from(len);
        if len < 4 {
            break;
        }
        let Ok(body) = r.bytes(len - 4, "") else {
            break;
        };
        if kind == 1 && body.len() >= 4 {
            versions = u32::from_be_bytes([body[0], body[1], body[2], body[3]]);
        }
        let _ = r.skip((8 - len % 8) % 8, "");
    }
    Request::Hello { versions }
}

fn decode_vendor(v: u8, mut r: Reader<'_>, st: DecodeState) -> Result<Request, OfpError> {
    let vendor = r.u32("vendor")?;
    let subtype = r.u32("subtype")?;
    if vendor == ONF_VENDOR_ID && v == OFP13 {
        return match subtype {
            ONFT_BUNDLE_CONTROL => decode_bundle_control(r),
            ONFT_BUNDLE_ADD_MESSAGE => decode_bundle_add(r),
            _ => Err(OfpError::new(
                E::BadSubtype,
                format!("ONF message {subtype}"),
            )),
        };
    }
    if vendor != NX_VENDOR_ID {
        return Err(OfpError::new(E::BadVendor, format!("vendor {vendor:#x}")));
    }
    Ok(match subtype {
        NXT_ROLE_REQUEST => Request::RoleRequest {
            role: r.u32("role")?,
            generation_id: u64::MAX,
            nicira: true,
        },
        NXT_SET_FLOW_FORMAT => match r.u32("format")? {
            0 => Request::SetFlowFormat(FlowFormat::Of10),
            2 => Request::SetFlowFormat(FlowFormat::Nxm),
            f => return Err(OfpError::new(E::BadVendor, format!("flow format {f}"))),
        },
        NXT_FLOW_MOD => decode_nx_flow_mod(r, st)?,
        NXT_FLOW_MOD_TABLE_ID => Request::FlowModTableId(r.u8("set")? != 0),
        NXT_SET_PACKET_IN_FORMAT => Request::SetPacketInFormat(r.u32("format")?),
        NXT_SET_ASYNC_CONFIG => Request::Accepted("async config"),
        NXT_SET_CONTROLLER_ID => {
            r.skip(6, "pad")?;
            Request::SetControllerId(r.u16("controller_id")?)
        }
        NXT_TLV_TABLE_MOD => Request::TlvTableMod(decode_tlv_table_mod(r)?),
        NXT_TLV_TABLE_REQUEST => Request::TlvTableRequest,
        super::continuation::NXT_RESUME => {
            Request::Resume(Box::new(super::continuation::decode_resume(v, r.buf)?))
        }
        s => return Err(OfpError::new(E::BadSubtype, format!("Nicira message {s}"))),
    })
}

/// NXT_TLV_TABLE_MOD's body: a command, then `nx_tlv_map`s of 8 bytes
/// (class, type, length, field index), checked as OVS checks them.
fn decode_tlv_table_mod(mut r: Reader<'_>) -> Result<TlvTableMod, OfpError> {
    let command = r.u16("command")?;
    r.skip(6, "pad")?;
    if !r.remaining().is_multiple_of(8) {
        return Err(OfpError::new(
            E::BadLen,
            format!("TLV mappings: {} bytes, not a multiple of 8", r.remaining()),
        ));
    }
    let mut maps = Vec::with_capacity(r.remaining() / 8);
    while !r.is_empty() {
        let class = r.u16("option_class")?;
        let opt_type = r.u8("option_type")?;
        let len = r.u8("option_len")?;
        let index = usize::from(r.u16("index")?);
        r.skip(2, "pad")?;
        if len % 4 != 0 || usize::from(len) > crate::tlv::TLV_MAX_LEN {
            return Err(OfpError::new(
                E::TlvBadOptLen,
                crate::tlv::TlvError::BadOptLen(len).to_string(),
            ));
        }
        if index >= TUN_METADATA_NUM {
            return Err(OfpError::new(
                E::TlvBadFieldIdx,
                crate::tlv::TlvError::BadFieldIdx(index).to_string(),
            ));
        }
        maps.push(crate::tlv::TlvRequest {
            class,
            opt_type,
            len,
            index,
        });
    }
    Ok(match command {
        0 => TlvTableMod::Add(maps),
        1 => TlvTableMod::Delete(maps.iter().map(|m| m.index).collect()),
        2 => TlvTableMod::Clear,
        c => {
            return Err(OfpError::new(
                E::TlvBadCommand,
                format!("TLV table command {c}"),
            ))
        }
    })
}

/// NXT_TLV_TABLE_REPLY: the option space and fields upcalld has, and the
/// map's mappings.
pub fn encode_tlv_table_reply(version: u8, xid: u32, map: &crate::tlv::TlvMap) -> Vec<u8> {
    let mut out = start(version, OFPT_VENDOR, xid);
    out.put_u32(NX_VENDOR_ID);
    out.put_u32(NXT_TLV_TABLE_REPLY);
    out.put_u32(TUN_MD_BYTES as u32);
    out.put_u16(TUN_METADATA_NUM as u16);
    out.put_zeros(10);
    for (index, m) in map.iter() {
        out.put_u16(m.class);
        out.put_u8(m.opt_type);
        out.put_u8(m.len);
        out.put_u16(index as u16);
        out.put_zeros(2);
    }
    finish(out)
}

/// Whether a flow mod's actions are kept (OVS checks only those).
fn adds(cmd: FlowModCommand) -> bool {
    matches!(
        cmd,
        FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict
    )
}

fn command(c: u8) -> Result<FlowModCommand, OfpError> {
    Ok(match c {
        0 => FlowModCommand::Add,
        1 => FlowModCommand::Modify,
        2 => FlowModCommand::ModifyStrict,
        3 => FlowModCommand::Delete,
        4 => FlowModCommand::DeleteStrict,
        c => return Err(OfpError::new(E::FlowModBadCommand, format!("command {c}"))),
    })
}

/// A 1.0 flow mod's table: the command's high byte with
/// NXT_FLOW_MOD_TABLE_ID, else table 0 for adds and every table otherwise.
fn of10_table(raw_command: u16, st: DecodeState, cmd: FlowModCommand) -> u8 {
    if st.flow_mod_table_id {
        (raw_command >> 8) as u8
    } else if cmd == FlowModCommand::Add {
        0
    } else {
        0xff
    }
}

/// Reads an OpenFlow 1.0 `ofp_match` (40 bytes) into a match.
fn decode_of10_match(r: &mut Reader<'_>) -> Result<Match, OfpError> {
    let wc = r.u32("wildcards")?;
    let in_port = r.u16("in_port")?;
    let dl_src = r.bytes(6, "dl_src")?;
    let dl_dst = r.bytes(6, "dl_dst")?;
    let dl_vlan = r.u16("dl_vlan")?;
    let dl_vlan_pcp = r.u8("dl_vlan_pcp")?;
    r.skip(1, "pad")?;
    let dl_type = r.u16("dl_type")?;
    let nw_tos = r.u8("nw_tos")?;
    let nw_proto = r.u8("nw_proto")?;
    r.skip(2, "pad")?;
    let nw_src = r.u32("nw_src")?;
    let nw_dst = r.u32("nw_dst")?;
    let tp_src = r.u16("tp_src")?;
    let tp_dst = r.u16("tp_dst")?;
    let mut m = Match::default();
    let (f, w) = (&mut m.flow, &mut m.mask);
    if wc & (1 << 0) == 0 {
        f.in_port = super::port_from_of10(in_port);
        w.in_port = u32::MAX;
    }
    if wc & (1 << 2) == 0 {
        f.dl_src.copy_from_slice(dl_src);
        w.dl_src = [0xff; 6];
    }
    if wc & (1 << 3) == 0 {
        f.dl_dst.copy_from_slice(dl_dst);
        w.dl_dst = [0xff; 6];
    }
    let vlan_wild = wc & (1 << 1) != 0;
    let pcp_wild = wc & (1 << 20) != 0;
    if !vlan_wild && dl_vlan == 0xffff {
        w.vlans[0].tci = 0xffff;
    } else {
        if !vlan_wild {
            w.vlans[0].tci |= VLAN_VID_MASK | VLAN_CFI;
        }
        if !pcp_wild {
            w.vlans[0].tci |= VLAN_PCP_MASK | VLAN_CFI;
        }
        let tci =
            (dl_vlan & VLAN_VID_MASK) | (u16::from(dl_vlan_pcp & 7) << VLAN_PCP_SHIFT) | VLAN_CFI;
        f.vlans[0].tci = tci & w.vlans[0].tci;
        if f.vlans[0].tci & VLAN_CFI != 0 {
            f.vlans[0].tpid = ETH_TYPE_VLAN_8021Q;
        }
    }
    if wc & (1 << 4) == 0 {
        f.dl_type = dl_type;
        w.dl_type = u16::MAX;
    }
    let ip = f.dl_type == ETH_TYPE_IP && w.dl_type != 0;
    let arp = (f.dl_type == ETH_TYPE_ARP || f.dl_type == ETH_TYPE_RARP) && w.dl_type != 0;
    if ip || arp {
        let prefix = |shift: u32| {
            let n = (wc >> shift) & 0x3f;
            if n >= 32 {
                0
            } else {
                u32::MAX << n
            }
        };
        w.nw_src = prefix(8);
        w.nw_dst = prefix(14);
        f.nw_src = nw_src & w.nw_src;
        f.nw_dst = nw_dst & w.nw_dst;
        if wc & (1 << 5) == 0 {
            f.nw_proto = nw_proto;
            w.nw_proto = u8::MAX;
        }
    }
    if ip {
        if wc & (1 << 21) == 0 {
            f.nw_tos = nw_tos & 0xfc;
            w.nw_tos = 0xfc;
        }
        let l4 = w.nw_proto != 0
            && matches!(
                f.nw_proto,
                IPPROTO_TCP | IPPROTO_UDP | IPPROTO_SCTP | IPPROTO_ICMP
            );
        if l4 {
            if wc & (1 << 6) == 0 {
                f.tp_src = tp_src;
                w.tp_src = u16::MAX;
            }
            if wc & (1 << 7) == 0 {
                f.tp_dst = tp_dst;
                w.tp_dst = u16::MAX;
            }
        }
        // ICMP's type and code travel in tp_src and tp_dst but have 8
        // bits: a larger value could never match (OVS keeps such a rule,
        // and then prints an icmp_type it cannot parse back).
        if f.nw_proto == IPPROTO_ICMP && w.nw_proto != 0 && (f.tp_src > 0xff || f.tp_dst > 0xff) {
            return Err(OfpError::new(
                E::MatchBadValue,
                format!("ICMP type {} or code {} above 255", f.tp_src, f.tp_dst),
            ));
        }
    }
    Ok(m)
}

/// Writes `m` as OpenFlow 1.0's `ofp_match`, dropping what it cannot say.
fn encode_of10_match(m: &Match, out: &mut Vec<u8>) {
    let (f, w) = (&m.flow, &m.mask);
    let mut wc: u32 = 0;
    let mut bit = |cond: bool, b: u32| {
        if !cond {
            wc |= b;
        }
    };
    bit(w.in_port != 0, 1 << 0);
    bit(
        w.vlans[0].tci & VLAN_VID_MASK != 0 || w.vlans[0].tci == 0xffff,
        1 << 1,
    );
    bit(w.dl_src != [0; 6], 1 << 2);
    bit(w.dl_dst != [0; 6], 1 << 3);
    bit(w.dl_type != 0, 1 << 4);
    bit(w.nw_proto != 0, 1 << 5);
    bit(w.tp_src != 0, 1 << 6);
    bit(w.tp_dst != 0, 1 << 7);
    bit(w.vlans[0].tci & VLAN_PCP_MASK != 0, 1 << 20);
    bit(w.nw_tos & 0xfc != 0, 1 << 21);
    wc |= (32 - w.nw_src.count_ones().min(32)) << 8;
    wc |= (32 - w.nw_dst.count_ones().min(32)) << 14;
    out.put_u32(wc);
    out.put_u16(super::port_to_of10(f.in_port));
    out.extend_from_slice(&f.dl_src);
    out.extend_from_slice(&f.dl_dst);
    let tci = f.vlans[0].tci;
    out.put_u16(if w.vlans[0].tci == 0xffff && tci == 0 {
        0xffff
    } else {
        tci & VLAN_VID_MASK
    });
    out.put_u8((tci >> VLAN_PCP_SHIFT) as u8);
    out.put_zeros(1);
    out.put_u16(f.dl_type);
    out.put_u8(f.nw_tos & 0xfc);
    out.put_u8(f.nw_proto);
    out.put_zeros(2);
    out.put_u32(f.nw_src);
    out.put_u32(f.nw_dst);
    out.put_u16(f.tp_src);
    out.put_u16(f.tp_dst);
}

fn check_flags(flags: u16, of10: bool) -> Result<(), OfpError> {
    let known = if of10 { 0x3 } else { 0x1f };
    if flags & !known != 0 {
        return Err(OfpError::new(
            E::FlowModBadFlags,
            format!("flags {flags:#x}"),
        ));
    }
    Ok(())
}

fn decode_flow_mod_of10(mut r: Reader<'_>, st: DecodeState) -> Result<Request, OfpError> {
    let matches = decode_of10_match(&mut r)?;
    let cookie = r.u64("cookie")?;
    let raw_command = r.u16("command")?;
    let cmd = command(raw_command as u8)?;
    let idle_timeout = r.u16("idle_timeout")?;
    let hard_timeout = r.u16("hard_timeout")?;
    let priority = r.u16("priority")?;
    let buffer_id = r.u32("buffer_id")?;
    let out_port = super::port_from_of10(r.u16("out_port")?);
    let flags = r.u16("flags")?;
    check_flags(flags, true)?;
    let instructions = actions::decode_actions(OFP10, r.buf, &matches)?;
    if adds(cmd) {
        actions::check_prerequisites(OFP10, &matches, &instructions)?;
    }
    Ok(Request::FlowMod(Box::new(FlowMod {
        command: cmd,
        table: of10_table(raw_command, st, cmd),
        cookie,
        cookie_mask: 0,
        priority,
        idle_timeout,
        hard_timeout,
        buffer_id,
        out_port,
        out_group: port::ANY,
        flags,
        matches,
        instructions,
    })))
}

fn decode_nx_flow_mod(mut r: Reader<'_>, st: DecodeState) -> Result<Request, OfpError> {
    let cookie = r.u64("cookie")?;
    let raw_command = r.u16("command")?;
    let cmd = command(raw_command as u8)?;
    let idle_timeout = r.u16("idle_timeout")?;
    let hard_timeout = r.u16("hard_timeout")?;
    let priority = r.u16("priority")?;
    let buffer_id = r.u32("buffer_id")?;
    let out_port = super::port_from_of10(r.u16("out_port")?);
    let flags = r.u16("flags")?;
    check_flags(flags, true)?;
    let match_len = usize::from(r.u16("match_len")?);
    r.skip(6, "pad")?;
    let entries = r.bytes(match_len, "match")?;
    r.skip((8 - match_len % 8) % 8, "match padding")?;
    let decoded = nxm::decode(entries, true)?;
    let instructions = actions::decode_actions(OFP10, r.buf, &decoded.matches)?;
    if adds(cmd) {
        actions::check_prerequisites(OFP10, &decoded.matches, &instructions)?;
    }
    let (cookie_sel, cookie_mask) = decoded.cookie.unwrap_or((0, 0));
    let adding = cmd == FlowModCommand::Add;
    Ok(Request::FlowMod(Box::new(FlowMod {
        command: cmd,
        table: of10_table(raw_command, st, cmd),
        // An add's cookie is the new rule's; other commands select by the
        // NXM cookie match and, in 1.0, set the given cookie.
        cookie: if adding || cookie_mask == 0 {
            cookie
        } else {
            cookie_sel
        },
        cookie_mask: if adding { 0 } else { cookie_mask },
        priority,
        idle_timeout,
        hard_timeout,
        buffer_id,
        out_port,
        out_group: port::ANY,
        flags,
        matches: decoded.matches,
        instructions,
    })))
}

/// Reads an OXM `ofp_match` (type, length, entries, padding).
fn decode_oxm_match(r: &mut Reader<'_>, strict: bool) -> Result<Match, OfpError> {
    let kind = r.u16("match type")?;
    let len = usize::from(r.u16("match length")?);
    if kind != 1 {
        return Err(OfpError::new(E::MatchBadType, format!("match type {kind}")));
    }
    if len < 4 {
        return Err(OfpError::new(E::MatchBadLen, format!("match length {len}")));
    }
    let entries = Reader::new(r.buf, E::MatchBadLen).bytes(len - 4, "match entries")?;
    r.skip(len - 4, "match")?;
    r.skip((8 - len % 8) % 8, "match padding")?;
    Ok(nxm::decode(entries, strict)?.matches)
}

fn decode_flow_mod_of13(mut r: Reader<'_>) -> Result<Request, OfpError> {
    let cookie = r.u64("cookie")?;
    let cookie_mask = r.u64("cookie_mask")?;
    let table = r.u8("table_id")?;
    let cmd = command(r.u8("command")?)?;
    let idle_timeout = r.u16("idle_timeout")?;
    let hard_timeout = r.u16("hard_timeout")?;
    let priority = r.u16("priority")?;
    let buffer_id = r.u32("buffer_id")?;
    let out_port = r.u32("out_port")?;
    let out_group = r.u32("out_group")?;
    let flags = r.u16("flags")?;
    check_flags(flags, false)?;
    r.skip(2, "pad")?;
    let matches = decode_oxm_match(&mut r, true)?;
    let instructions = actions::decode_instructions(r.buf)?;
    if adds(cmd) {
        actions::check_prerequisites(OFP13, &matches, &instructions)?;
    }
    if table == 0xff
        && matches!(
            cmd,
            FlowModCommand::Add | FlowModCommand::Modify | FlowModCommand::ModifyStrict
        )
    {
        return Err(OfpError::new(
            E::FlowModBadTableId,
            "table 255 in an add or modify",
        ));
    }
    Ok(Request::FlowMod(Box::new(FlowMod {
        command: cmd,
        table,
        cookie,
        cookie_mask,
        priority,
        idle_timeout,
        hard_timeout,
        buffer_id,
        out_port,
        out_group,
        flags,
        matches,
        instructions,
    })))
}

fn decode_packet_out(v: u8, mut r: Reader<'_>) -> Result<PacketOut, OfpError> {
    let buffer_id = r.u32("buffer_id")?;
    let (in_port, actions_len) = if v == OFP10 {
        (
            super::port_from_of10(r.u16("in_port")?),
            r.u16("actions_len")?,
        )
    } else {
        let p = r.u32("in_port")?;
        let n = r.u16("actions_len")?;
        r.skip(6, "pad")?;
        (p, n)
    };
    let acts = r.bytes(usize::from(actions_len), "actions")?;
    let mut m = Match::default();
    m.flow.in_port = in_port;
    let actions = actions::decode_actions(v, acts, &m)?;
    if buffer_id != u32::MAX {
        return Err(OfpError::new(
            E::BufferUnknown,
            "upcalld buffers no packets",
        ));
    }
    Ok(PacketOut {
        buffer_id,
        in_port,
        actions,
        data: r.buf.to_vec(),
    })
}

fn decode_flow_stats_body(r: &mut Reader<'_>) -> Result<FlowStatsRequest, OfpError> {
    let table = r.u8("table_id")?;
    r.skip(3, "pad")?;
    let out_port = r.u32("out_port")?;
    let out_group = r.u32("out_group")?;
    r.skip(4, "pad")?;
    let cookie = r.u64("cookie")?;
    let cookie_mask = r.u64("cookie_mask")?;
    let matches = decode_oxm_match(r, false)?;
    Ok(FlowStatsRequest {
        table,
        out_port,
        out_group,
        cookie,
        cookie_mask,
        matches,
        format: FlowFormat::Oxm,
    })
}

fn decode_multipart(mut r: Reader<'_>) -> Result<MultipartRequest, OfpError> {
    let kind = r.u16("multipart type")?;
    r.skip(2, "flags")?;
    r.skip(4, "pad")?;
    Ok(match kind {
        OFPST_DESC => MultipartRequest::Desc,
        OFPST_FLOW => MultipartRequest::Flow(decode_flow_stats_body(&mut r)?),
        OFPST_AGGREGATE => MultipartRequest::Aggregate(decode_flow_stats_body(&mut r)?),
        OFPST_TABLE => MultipartRequest::Table,
        OFPST_PORT => MultipartRequest::PortStats {
            port: r.u32("port_no")?,
        },
        OFPMP_PORT_DESC => MultipartRequest::PortDesc,
        OFPMP_TABLE_FEATURES => MultipartRequest::TableFeatures,
        OFPMP_GROUP => {
            let id = r.u32("group_id")?;
            MultipartRequest::GroupStats((id != GROUP_ALL).then_some(id))
        }
        OFPMP_GROUP_DESC => MultipartRequest::GroupDesc,
        OFPMP_GROUP_FEATURES => MultipartRequest::GroupFeatures,
        OFPMP_METER | OFPMP_METER_CONFIG => {
            let id = r.u32("meter_id")?;
            let id = (id != crate::meter::METER_ALL).then_some(id);
            if kind == OFPMP_METER {
                MultipartRequest::MeterStats(id)
            } else {
                MultipartRequest::MeterConfig(id)
            }
        }
        OFPMP_METER_FEATURES => MultipartRequest::MeterFeatures,
        OFPST_QUEUE => MultipartRequest::Empty(kind),
        k => return Err(OfpError::new(E::BadStat, format!("multipart type {k}"))),
    })
}

fn decode_stats_of10(mut r: Reader<'_>) -> Result<MultipartRequest, OfpError> {
    let kind = r.u16("stats type")?;
    r.skip(2, "flags")?;
    Ok(match kind {
        OFPST_DESC => MultipartRequest::Desc,
        OFPST_FLOW | OFPST_AGGREGATE => {
            let matches = decode_of10_match(&mut r)?;
            let table = r.u8("table_id")?;
            r.skip(1, "pad")?;
            let out_port = super::port_from_of10(r.u16("out_port")?);
            let req = FlowStatsRequest {
                table,
                out_port,
                out_group: port::ANY,
                cookie: 0,
                cookie_mask: 0,
                matches,
                format: FlowFormat::Of10,
            };
            if kind == OFPST_FLOW {
                MultipartRequest::Flow(req)
            } else {
                MultipartRequest::Aggregate(req)
            }
        }
        OFPST_TABLE => MultipartRequest::Table,
        OFPST_PORT => {
            let p = r.u16("port_no")?;
            MultipartRequest::PortStats {
                port: super::port_from_of10(p),
            }
        }
        OFPST_QUEUE => MultipartRequest::Empty(kind),
        OFPST_VENDOR => {
            let vendor = r.u32("vendor")?;
            if vendor != NX_VENDOR_ID {
                return Err(OfpError::new(E::BadVendor, format!("vendor {vendor:#x}")));
            }
            let subtype = r.u32("subtype")?;
            r.skip(4, "pad")?;
            if subtype != NXST_FLOW && subtype != NXST_AGGREGATE {
                return Err(OfpError::new(
                    E::BadSubtype,
                    format!("Nicira stats {subtype}"),
                ));
            }
            let out_port = super::port_from_of10(r.u16("out_port")?);
            let match_len = usize::from(r.u16("match_len")?);
            let table = r.u8("table_id")?;
            r.skip(3, "pad")?;
            let decoded = nxm::decode(r.bytes(match_len, "match")?, false)?;
            let (cookie, cookie_mask) = decoded.cookie.unwrap_or((0, 0));
            let req = FlowStatsRequest {
                table,
                out_port,
                out_group: port::ANY,
                cookie,
                cookie_mask,
                matches: decoded.matches,
                format: FlowFormat::Nxm,
            };
            if subtype == NXST_FLOW {
                MultipartRequest::Flow(req)
            } else {
                MultipartRequest::Aggregate(req)
            }
        }
        k => return Err(OfpError::new(E::BadStat, format!("stats type {k}"))),
    })
}

fn decode_bundle_control(mut r: Reader<'_>) -> Result<Request, OfpError> {
    let id = r.u32("bundle_id")?;
    let op = match r.u16("type")? {
        0 => BundleOp::Open,
        2 => BundleOp::Close,
        4 => BundleOp::Commit,
        6 => BundleOp::Discard,
        t => {
            return Err(OfpError::new(
                E::BundleBadType,
                format!("bundle control type {t}"),
            ))
        }
    };
    let flags = r.u16("flags")?;
    Ok(Request::BundleControl { id, op, flags })
}

fn decode_bundle_add(mut r: Reader<'_>) -> Result<Request, OfpError> {
    let id = r.u32("bundle_id")?;
    r.skip(2, "pad")?;
    let flags = r.u16("flags")?;
    let inner = Header::parse(r.buf)
        .ok_or_else(|| OfpError::new(E::BadLen, "bundled message shorter than a header"))?;
    let message = r
        .bytes(usize::from(inner.length), "bundled message")?
        .to_vec();
    Ok(Request::BundleAdd { id, flags, message })
}

// ---------------------------------------------------------------------
// Replies and asynchronous messages.

/// Starts a message: header with a length to be filled by [`finish`].
fn start(version: u8, kind: u8, xid: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.put_u8(version);
    out.put_u8(kind);
    out.put_u16(0);
    out.put_u32(xid);
    out
}

fn finish(mut out: Vec<u8>) -> Vec<u8> {
    let len = out.len().min(usize::from(u16::MAX)) as u16;
    out.set_u16(2, len);
    out
}

/// HELLO with a version bitmap.
pub fn encode_hello(version: u8, versions: u32) -> Vec<u8> {
    let mut out = start(version, OFPT_HELLO, 0);
    if version > OFP10 {
        out.put_u16(1);
        out.put_u16(8);
        out.put_u32(versions);
    }
    finish(out)
}

/// The version two peers agree on: the highest both offer, if any.
pub fn negotiate(peer_versions: u32) -> Option<u8> {
    let common = peer_versions & SUPPORTED_VERSIONS;
    (common != 0).then(|| (31 - common.leading_zeros()) as u8)
}

/// OFPT_ERROR for `err`, quoting (up to 64 bytes of) the offending message.
pub fn encode_error(version: u8, xid: u32, err: &OfpError, request: &[u8]) -> Vec<u8> {
    let mut out = start(version, OFPT_ERROR, xid);
    match err.kind.code(version) {
        ErrorCode::Std(t, c) => {
            out.put_u16(t);
            out.put_u16(c);
        }
        ErrorCode::Nx(t, c) if version <= OFP10 => {
            out.put_u16(0xb0c2);
            out.put_u16(0);
            out.put_u32(NX_VENDOR_ID);
            out.put_u16(t);
            out.put_u16(c);
        }
        ErrorCode::Nx(_, c) => {
            out.put_u16(0xffff);
            out.put_u16(c);
            out.put_u32(NX_VENDOR_ID);
        }
        ErrorCode::Exp(vendor, c) => {
            out.put_u16(0xffff);
            out.put_u16(c);
            out.put_u32(vendor);
        }
    }
    out.extend_from_slice(&request[..request.len().min(64)]);
    finish(out)
}

pub fn encode_echo_reply(version: u8, xid: u32, data: &[u8]) -> Vec<u8> {
    let mut out = start(version, OFPT_ECHO_REPLY, xid);
    out.extend_from_slice(data);
    finish(out)
}

pub fn encode_echo_request(version: u8, xid: u32) -> Vec<u8> {
    finish(start(version, OFPT_ECHO_REQUEST, xid))
}

pub fn encode_barrier_reply(version: u8, xid: u32) -> Vec<u8> {
    let kind = if version == OFP10 {
        OFPT10_BARRIER_REPLY
    } else {
        OFPT13_BARRIER_REPLY
    };
    finish(start(version, kind, xid))
}

pub fn encode_get_config_reply(version: u8, xid: u32, flags: u16, miss_send_len: u16) -> Vec<u8> {
    let mut out = start(version, OFPT_GET_CONFIG_REPLY, xid);
    out.put_u16(flags);
    out.put_u16(miss_send_len);
    finish(out)
}

/// A switch port as OpenFlow describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PortDesc {
    pub number: u32,
    pub name: String,
    pub hw_addr: [u8; 6],
    /// OFPPC_* bits.
    pub config: u32,
    /// OFPPS_* bits (1: link down).
    pub state: u32,
    /// Current speed in kbps (OpenFlow 1.3).
    pub curr_speed: u32,
}

fn put_name(out: &mut Vec<u8>, name: &str, width: usize) {
    let b = name.as_bytes();
    let n = b.len().min(width - 1);
    out.extend_from_slice(&b[..n]);
    out.put_zeros(width - n);
}

fn put_port(version: u8, p: &PortDesc, out: &mut Vec<u8>) {
    // 10 Gb/s copper, full duplex, as OVS reports for virtual ports.
    const FEATURES: u32 = (1 << 6) | (1 << 11);
    if version == OFP10 {
        out.put_u16(super::port_to_of10(p.number));
        out.extend_from_slice(&p.hw_addr);
        put_name(out, &p.name, 16);
        out.put_u32(p.config);
        out.put_u32(p.state);
        out.put_u32(FEATURES);
        out.put_zeros(12);
    } else if version == OFP13 {
        out.put_u32(p.number);
        out.put_zeros(4);
        out.extend_from_slice(&p.hw_addr);
        out.put_zeros(2);
        put_name(out, &p.name, 16);
        out.put_u32(p.config);
        out.put_u32(p.state);
        out.put_u32(FEATURES);
        out.put_zeros(12);
        out.put_u32(p.curr_speed);
        out.put_u32(p.curr_speed);
    } else {
        // OpenFlow 1.4: the Ethernet details move into a property.
        out.put_u32(p.number);
        out.put_u16(72);
        out.put_zeros(2);
        out.extend_from_slice(&p.hw_addr);
        out.put_zeros(2);
        put_name(out, &p.name, 16);
        out.put_u32(p.config);
        out.put_u32(p.state);
        out.put_u16(0);
        out.put_u16(32);
        out.put_zeros(4);
        out.put_u32(FEATURES);
        out.put_zeros(12);
        out.put_u32(p.curr_speed);
        out.put_u32(p.curr_speed);
    }
}

pub fn encode_features_reply(
    version: u8,
    xid: u32,
    datapath_id: u64,
    n_tables: u8,
    ports: &[PortDesc],
) -> Vec<u8> {
    let mut out = start(version, OFPT_FEATURES_REPLY, xid);
    out.put_u64(datapath_id);
    out.put_u32(0);
    out.put_u8(n_tables);
    if version == OFP10 {
        out.put_zeros(3);
        // Flow, table and port statistics; ARP match IP.
        out.put_u32(0x1 | 0x2 | 0x4 | 0x80);
        // Every OpenFlow 1.0 action but ENQUEUE.
        out.put_u32(0x7ff);
        for p in ports {
            put_port(version, p, &mut out);
        }
    } else {
        out.put_u8(0);
        out.put_zeros(2);
        out.put_u32(0x1 | 0x2 | 0x4 | 0x40);
        out.put_u32(0);
    }
    finish(out)
}

/// PORT_STATUS: reason 0 add, 1 delete, 2 modify.
pub fn encode_port_status(version: u8, reason: u8, p: &PortDesc) -> Vec<u8> {
    let mut out = start(version, OFPT_PORT_STATUS, 0);
    out.put_u8(reason);
    out.put_zeros(7);
    put_port(version, p, &mut out);
    finish(out)
}

pub fn encode_role_reply(
    version: u8,
    xid: u32,
    role: u32,
    generation_id: u64,
    nicira: bool,
) -> Vec<u8> {
    if nicira {
        let mut out = start(version, OFPT_VENDOR, xid);
        out.put_u32(NX_VENDOR_ID);
        out.put_u32(NXT_ROLE_REPLY);
        out.put_u32(role);
        return finish(out);
    }
    let mut out = start(version, OFPT13_ROLE_REPLY, xid);
    out.put_u32(role);
    out.put_zeros(4);
    out.put_u64(generation_id);
    finish(out)
}

/// GET_ASYNC_REPLY with OVS's defaults for a master: every packet-in,
/// port-status and flow-removed reason.
pub fn encode_get_async_reply(version: u8, xid: u32) -> Vec<u8> {
    let mut out = start(version, OFPT13_GET_ASYNC_REPLY, xid);
    for mask in [0x7u32, 0, 0x7, 0x7, 0xf, 0] {
        out.put_u32(mask);
    }
    finish(out)
}

/// Reply to a bundle control request (the reply type is the request's + 1).
pub fn encode_bundle_reply(version: u8, xid: u32, id: u32, op: BundleOp, flags: u16) -> Vec<u8> {
    let kind = match op {
        BundleOp::Open => 1,
        BundleOp::Close => 3,
        BundleOp::Commit => 5,
        BundleOp::Discard => 7,
    };
    let mut out = if version >= OFP14 {
        start(version, OFPT14_BUNDLE_CONTROL, xid)
    } else {
        let mut o = start(version, OFPT_VENDOR, xid);
        o.put_u32(ONF_VENDOR_ID);
        o.put_u32(ONFT_BUNDLE_CONTROL);
        o
    };
    out.put_u32(id);
    out.put_u16(kind);
    out.put_u16(flags);
    finish(out)
}

/// One rule in a flow stats reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowStatsEntry {
    pub table: u8,
    pub duration_sec: u32,
    pub duration_nsec: u32,
    pub priority: u16,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub flags: u16,
    pub idle_age: u16,
    pub hard_age: u16,
    pub cookie: u64,
    pub packet_count: u64,
    pub byte_count: u64,
    pub matches: Match,
    pub instructions: Instructions,
}

fn put_flow_entry(
    version: u8,
    format: FlowFormat,
    e: &FlowStatsEntry,
    out: &mut Vec<u8>,
) -> Result<(), OfpError> {
    let start = out.len();
    match format {
        FlowFormat::Oxm => {
            out.put_u16(0);
            out.put_u8(e.table);
            out.put_zeros(1);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.priority);
            out.put_u16(e.idle_timeout);
            out.put_u16(e.hard_timeout);
            out.put_u16(e.flags);
            out.put_zeros(4);
            out.put_u64(e.cookie);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            put_oxm_match(&e.matches, out);
            actions::encode_instructions(version, &e.instructions, out)?;
        }
        FlowFormat::Nxm => {
            let entries = nxm::encode(&e.matches, false);
            out.put_u16(0);
            out.put_u8(e.table);
            out.put_zeros(1);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.priority);
            out.put_u16(e.idle_timeout);
            out.put_u16(e.hard_timeout);
            out.put_u16(entries.len() as u16);
            out.put_u16(e.idle_age);
            out.put_u16(e.hard_age);
            out.put_u64(e.cookie);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            let m = out.len();
            out.extend_from_slice(&entries);
            out.pad8_from(m);
            actions::encode_actions_of10(&e.instructions, out)?;
        }
        FlowFormat::Of10 => {
            out.put_u16(0);
            out.put_u8(e.table);
            out.put_zeros(1);
            encode_of10_match(&e.matches, out);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.priority);
            out.put_u16(e.idle_timeout);
            out.put_u16(e.hard_timeout);
            out.put_zeros(6);
            out.put_u64(e.cookie);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            actions::encode_actions_of10(&e.instructions, out)?;
        }
    }
    let len = (out.len() - start) as u16;
    out.set_u16(start, len);
    Ok(())
}

fn put_oxm_match(m: &Match, out: &mut Vec<u8>) {
    let entries = nxm::encode(m, true);
    let start = out.len();
    out.put_u16(1);
    out.put_u16(4 + entries.len() as u16);
    out.extend_from_slice(&entries);
    out.pad8_from(start);
}

/// The header of one multipart reply message of `kind`.
fn multipart_start(version: u8, xid: u32, kind: u16, nx_subtype: Option<u32>) -> Vec<u8> {
    if version == OFP10 {
        let mut out = start(version, OFPT10_STATS_REPLY, xid);
        match nx_subtype {
            Some(sub) => {
                out.put_u16(OFPST_VENDOR);
                out.put_u16(0);
                out.put_u32(NX_VENDOR_ID);
                out.put_u32(sub);
                out.put_zeros(4);
            }
            None => {
                out.put_u16(kind);
                out.put_u16(0);
            }
        }
        out
    } else {
        let mut out = start(version, OFPT13_MULTIPART_REPLY, xid);
        out.put_u16(kind);
        out.put_u16(0);
        out.put_zeros(4);
        out
    }
}

/// Splits `items` (each already encoded) into multipart replies of at most
/// 64 kB, all but the last flagged REPLY_MORE.
fn multipart_replies(
    version: u8,
    xid: u32,
    kind: u16,
    nx_subtype: Option<u32>,
    items: impl IntoIterator<Item = Vec<u8>>,
) -> Vec<Vec<u8>> {
    // The flags follow the header and the 16-bit type in every version.
    let flags_at = 10;
    let mut msgs = Vec::new();
    let mut cur = multipart_start(version, xid, kind, nx_subtype);
    let empty_len = cur.len();
    for item in items {
        if cur.len() + item.len() > MAX_MSG && cur.len() > empty_len {
            cur.set_u16(flags_at, REPLY_MORE);
            msgs.push(finish(std::mem::replace(
                &mut cur,
                multipart_start(version, xid, kind, nx_subtype),
            )));
        }
        cur.extend_from_slice(&item);
    }
    msgs.push(finish(cur));
    msgs
}

/// Flow stats replies (as many messages as it takes); refused whole if a
/// rule's actions cannot be encoded.
pub fn encode_flow_stats_reply(
    version: u8,
    xid: u32,
    format: FlowFormat,
    entries: &[FlowStatsEntry],
) -> Result<Vec<Vec<u8>>, OfpError> {
    let nx = (format == FlowFormat::Nxm).then_some(NXST_FLOW);
    let items = entries
        .iter()
        .map(|e| {
            let mut b = Vec::with_capacity(128);
            put_flow_entry(version, format, e, &mut b)?;
            Ok(b)
        })
        .collect::<Result<Vec<_>, OfpError>>()?;
    Ok(multipart_replies(version, xid, OFPST_FLOW, nx, items))
}

pub fn encode_aggregate_reply(
    version: u8,
    xid: u32,
    format: FlowFormat,
    packets: u64,
    bytes: u64,
    flows: u32,
) -> Vec<u8> {
    let nx = (format == FlowFormat::Nxm).then_some(NXST_AGGREGATE);
    let mut out = multipart_start(version, xid, OFPST_AGGREGATE, nx);
    out.put_u64(packets);
    out.put_u64(bytes);
    out.put_u32(flows);
    out.put_zeros(4);
    finish(out)
}

pub fn encode_desc_reply(version: u8, xid: u32, dp_desc: &str) -> Vec<u8> {
    let mut out = multipart_start(version, xid, OFPST_DESC, None);
    put_name(&mut out, "upcalld", 256);
    put_name(&mut out, "upcalld userspace slow path", 256);
    put_name(&mut out, env!("CARGO_PKG_VERSION"), 256);
    put_name(&mut out, "None", 32);
    put_name(&mut out, dp_desc, 256);
    finish(out)
}

/// Table stats: one entry per table, with its number of rules.
pub fn encode_table_stats_reply(version: u8, xid: u32, active: &[u32]) -> Vec<Vec<u8>> {
    multipart_replies(
        version,
        xid,
        OFPST_TABLE,
        None,
        active.iter().enumerate().map(|(i, n)| {
            let mut b = Vec::new();
            b.put_u8(i as u8);
            b.put_zeros(3);
            if version == OFP10 {
                put_name(&mut b, &format!("table{i}"), 32);
                b.put_u32(0x3f_ffff);
                b.put_u32(1_000_000);
                b.put_u32(*n);
            } else {
                b.put_u32(*n);
            }
            b.put_u64(0);
            b.put_u64(0);
            b
        }),
    )
}

/// OFPMP_GROUP_DESC's reply: each group (`ofp_group_desc`) with its
/// buckets (`ofp_bucket`) and their actions.
pub fn encode_group_desc_reply(
    version: u8,
    xid: u32,
    groups: &[&crate::group::Group],
) -> Result<Vec<Vec<u8>>, OfpError> {
    use crate::group::GroupType;
    let items = groups
        .iter()
        .map(|g| {
            let mut b = Vec::new();
            b.put_u16(0);
            b.put_u8(match g.kind {
                GroupType::All => 0,
                GroupType::Select => 1,
                GroupType::Indirect => 2,
                GroupType::FastFailover => 3,
            });
            b.put_u8(0);
            b.put_u32(g.id);
            for bucket in &g.buckets {
                let start = b.len();
                b.put_u16(0);
                b.put_u16(if g.kind == GroupType::Select {
                    bucket.weight
                } else {
                    0
                });
                b.put_u32(bucket.watch_port);
                b.put_u32(bucket.watch_group);
                b.put_zeros(4);
                for a in &bucket.actions {
                    actions::encode_action(version, a, &mut b)?;
                }
                let len = (b.len() - start) as u16;
                b.set_u16(start, len);
            }
            let len = b.len() as u16;
            b.set_u16(0, len);
            Ok(b)
        })
        .collect::<Result<Vec<_>, OfpError>>()?;
    Ok(multipart_replies(
        version,
        xid,
        OFPMP_GROUP_DESC,
        None,
        items,
    ))
}

/// OpenFlow's `OFPG_ALL`: every group, in a statistics request.
const GROUP_ALL: u32 = 0xffff_fffc;

/// OFPMP_GROUP's reply: each group's counters (`ofp_group_stats`) and its
/// buckets' (`ofp_bucket_counter`).
pub fn encode_group_stats_reply(
    version: u8,
    xid: u32,
    stats: &[crate::group::GroupStats],
) -> Vec<Vec<u8>> {
    let items = stats.iter().map(|g| {
        let mut b = Vec::new();
        b.put_u16((40 + 16 * g.buckets.len()) as u16);
        b.put_zeros(2);
        b.put_u32(g.id);
        b.put_u32(g.ref_count);
        b.put_zeros(4);
        b.put_u64(g.packets);
        b.put_u64(g.bytes);
        b.put_u32(g.duration.as_secs() as u32);
        b.put_u32(g.duration.subsec_nanos());
        for (packets, bytes) in &g.buckets {
            b.put_u64(*packets);
            b.put_u64(*bytes);
        }
        b
    });
    multipart_replies(version, xid, OFPMP_GROUP, None, items)
}

/// OFPMP_GROUP_FEATURES' reply: what OVS 3.1 answers (`ofproto-dpif`'s
/// group features): every type, weights, liveness and chaining, up to
/// `OFPG_MAX` groups of each type, and the actions buckets take.
pub fn encode_group_features_reply(version: u8, xid: u32) -> Vec<u8> {
    // OpenFlow 1.3's action numbers: output, set_mpls_ttl, dec_mpls_ttl,
    // push_vlan, pop_vlan, push_mpls, pop_mpls, set_queue, group,
    // set_nw_ttl, dec_nw_ttl, set_field.
    const BUCKET_ACTIONS: u32 = 1 | (((1 << 26) - 1) & !((1 << 15) - 1));
    let mut out = multipart_start(version, xid, OFPMP_GROUP_FEATURES, None);
    out.put_u32(0xf);
    out.put_u32(0x7);
    for _ in 0..4 {
        out.put_u32(crate::group::GROUP_MAX);
    }
    for _ in 0..4 {
        out.put_u32(BUCKET_ACTIONS);
    }
    finish(out)
}

pub fn encode_port_desc_reply(version: u8, xid: u32, ports: &[PortDesc]) -> Vec<Vec<u8>> {
    multipart_replies(
        version,
        xid,
        OFPMP_PORT_DESC,
        None,
        ports.iter().map(|p| {
            let mut b = Vec::new();
            put_port(version, p, &mut b);
            b
        }),
    )
}

/// PORT_STATS: the datapath's counters of each port; the ones it does not
/// keep (frame, overrun and CRC errors, collisions) all ones, which
/// `ovs-ofctl` prints as `?`.
pub fn encode_port_stats_reply(version: u8, xid: u32, stats: &[PortStats]) -> Vec<Vec<u8>> {
    const UNKNOWN: u64 = u64::MAX;
    multipart_replies(
        version,
        xid,
        OFPST_PORT,
        None,
        stats.iter().map(|s| {
            let duration = s.duration.unwrap_or_default();
            let (duration_sec, duration_nsec) =
                (duration.as_secs() as u32, duration.subsec_nanos());
            let mut b = Vec::new();
            if version >= OFP14 {
                // Length, port, duration, the eight counters, then the
                // Ethernet property with the four error counters.
                b.put_u16(120);
                b.put_zeros(2);
                b.put_u32(s.number);
                b.put_u32(duration_sec);
                b.put_u32(duration_nsec);
                for v in [
                    s.rx_packets,
                    s.tx_packets,
                    s.rx_bytes,
                    s.tx_bytes,
                    s.rx_dropped,
                    s.tx_dropped,
                    s.rx_errors,
                    s.tx_errors,
                ] {
                    b.put_u64(v);
                }
                b.put_u16(0);
                b.put_u16(40);
                b.put_zeros(4);
                for _ in 0..4 {
                    b.put_u64(UNKNOWN);
                }
                return b;
            }
            if version == OFP10 {
                b.put_u16(super::port_to_of10(s.number));
                b.put_zeros(6);
            } else {
                b.put_u32(s.number);
                b.put_zeros(4);
            }
            for v in [
                s.rx_packets,
                s.tx_packets,
                s.rx_bytes,
                s.tx_bytes,
                s.rx_dropped,
                s.tx_dropped,
                s.rx_errors,
                s.tx_errors,
                UNKNOWN,
                UNKNOWN,
                UNKNOWN,
                UNKNOWN,
            ] {
                b.put_u64(v);
            }
            if version != OFP10 {
                b.put_u32(duration_sec);
                b.put_u32(duration_nsec);
            }
            b
        }),
    )
}

/// TABLE_FEATURES: one entry per table (every table matches and writes
/// all of metadata and holds up to a million rules), with the eight
/// properties OpenFlow 1.3 requires, each empty.
pub fn encode_table_features_reply(version: u8, xid: u32, n_tables: u8) -> Vec<Vec<u8>> {
    multipart_replies(
        version,
        xid,
        OFPMP_TABLE_FEATURES,
        None,
        (0..n_tables).map(|i| {
            let mut b = Vec::with_capacity(128);
            b.put_u16(64 + 8 * 8);
            b.put_u8(i);
            b.put_zeros(5);
            put_name(&mut b, "", 32);
            b.put_u64(u64::MAX);
            b.put_u64(u64::MAX);
            b.put_u32(0);
            b.put_u32(1_000_000);
            // INSTRUCTIONS, NEXT_TABLES, WRITE_ACTIONS, APPLY_ACTIONS, MATCH,
            // WILDCARDS, WRITE_SETFIELD, APPLY_SETFIELD.
            for prop in (0..16).step_by(2) {
                b.put_u16(prop);
                b.put_u16(4);
                b.put_zeros(4);
            }
            b
        }),
    )
}

/// OFPMP_METER_CONFIG's reply: each meter (`ofp_meter_config`) with its
/// bands.
pub fn encode_meter_config_reply(
    version: u8,
    xid: u32,
    meters: &[&crate::meter::Meter],
) -> Vec<Vec<u8>> {
    let items = meters.iter().map(|m| {
        let mut b = Vec::new();
        b.put_u16((8 + 16 * m.bands.len()) as u16);
        b.put_u16(m.flags());
        b.put_u32(m.id);
        for band in &m.bands {
            put_drop_band(band, &mut b);
        }
        b
    });
    multipart_replies(version, xid, OFPMP_METER_CONFIG, None, items)
}

fn put_drop_band(band: &crate::meter::Band, b: &mut Vec<u8>) {
    b.put_u16(1);
    b.put_u16(16);
    b.put_u32(band.rate);
    b.put_u32(band.burst_size);
    b.put_zeros(4);
}

/// One meter's statistics for OFPMP_METER's reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MeterStatsEntry {
    pub id: u32,
    pub flow_count: u32,
    pub duration: std::time::Duration,
    pub stats: crate::meter::MeterStats,
}

/// OFPMP_METER's reply (`ofp_meter_stats` and a `ofp_meter_band_stats`
/// per band).
pub fn encode_meter_stats_reply(
    version: u8,
    xid: u32,
    entries: &[MeterStatsEntry],
) -> Vec<Vec<u8>> {
    let items = entries.iter().map(|e| {
        let mut b = Vec::new();
        b.put_u32(e.id);
        b.put_u16((40 + 16 * e.stats.bands.len()) as u16);
        b.put_zeros(6);
        b.put_u32(e.flow_count);
        b.put_u64(e.stats.packets_in);
        b.put_u64(e.stats.bytes_in);
        b.put_u32(e.duration.as_secs() as u32);
        b.put_u32(e.duration.subsec_nanos());
        for (packets, bytes) in &e.stats.bands {
            b.put_u64(*packets);
            b.put_u64(*bytes);
        }
        b
    });
    multipart_replies(version, xid, OFPMP_METER, None, items)
}

/// OFPMP_METER_FEATURES' reply: what the datapath's meters can do (none
/// at all: zeros).
pub fn encode_meter_features_reply(
    version: u8,
    xid: u32,
    features: Option<crate::dpif::MeterFeatures>,
) -> Vec<u8> {
    let mut out = multipart_start(version, xid, OFPMP_METER_FEATURES, None);
    match features {
        Some(f) => {
            out.put_u32(f.max_meters);
            // Drop bands only; every flag.
            out.put_u32(1 << 1);
            out.put_u32(0xf);
            out.put_u8(f.max_bands);
        }
        None => {
            out.put_zeros(13);
        }
    }
    out.put_u8(0);
    out.put_zeros(2);
    finish(out)
}

/// An empty multipart reply of `kind`.
pub fn encode_empty_multipart_reply(version: u8, xid: u32, kind: u16) -> Vec<u8> {
    finish(multipart_start(version, xid, kind, None))
}

/// A packet-in: the frame (truncated to `total_len`'s `max_len` share by
/// the caller), why, which rule, and the packet's metadata as a match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PacketIn {
    /// The reason as the connection's version has it
    /// (`ofp::packet_in_reason::for_version`).
    pub reason: u8,
    pub table: u8,
    pub cookie: u64,
    pub in_port: u32,
    /// The metadata fields (registers, metadata, tunnel) as OVS sends them.
    pub metadata: Match,
    pub total_len: u16,
    pub data: Vec<u8>,
    /// A `controller` action's userdata (sent in NXT_PACKET_IN2 only).
    pub userdata: Vec<u8>,
    /// A paused pipeline's NXPINT_CONTINUATION property, encoded
    /// (`continuation::encode_continuation`; sent in NXT_PACKET_IN2 only;
    /// empty: none).
    pub continuation: Vec<u8>,
}

/// The packet-in formats of NXT_SET_PACKET_IN_FORMAT.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PacketInFormat {
    /// The version's own OFPT_PACKET_IN.
    #[default]
    Standard,
    /// Nicira's NXT_PACKET_IN (NXM match).
    Nxt,
    /// Nicira's NXT_PACKET_IN2 (properties).
    Nxt2,
}

impl PacketInFormat {
    /// NXT_SET_PACKET_IN_FORMAT's number, if known.
    pub fn from_nx(n: u32) -> Option<PacketInFormat> {
        match n {
            0 => Some(PacketInFormat::Standard),
            1 => Some(PacketInFormat::Nxt),
            2 => Some(PacketInFormat::Nxt2),
            _ => None,
        }
    }
}

/// Encodes a packet-in for `version` in `format`.
pub fn encode_packet_in(version: u8, p: &PacketIn, format: PacketInFormat) -> Vec<u8> {
    let mut m = p.metadata;
    m.flow.in_port = p.in_port;
    m.mask.in_port = u32::MAX;
    if format == PacketInFormat::Nxt2 {
        let mut out = start(version, OFPT_VENDOR, 0);
        out.put_u32(NX_VENDOR_ID);
        out.put_u32(NXT_PACKET_IN2);
        let prop = |out: &mut Vec<u8>, kind: u16, body: &[u8]| {
            let s = out.len();
            out.put_u16(kind);
            out.put_u16(4 + body.len() as u16);
            out.extend_from_slice(body);
            out.pad8_from(s);
        };
        // Properties: NXPINT_PACKET, _FULL_LEN, _TABLE_ID, _COOKIE,
        // _REASON, _METADATA.
        prop(&mut out, 0, &p.data);
        prop(&mut out, 1, &u32::from(p.total_len).to_be_bytes());
        prop(&mut out, 3, &[p.table]);
        // 64-bit values sit 8-aligned: 4 bytes of padding after the
        // property header (OVS's `ofpprop_put_be64`).
        let mut cookie = vec![0u8; 4];
        cookie.extend_from_slice(&p.cookie.to_be_bytes());
        prop(&mut out, 4, &cookie);
        prop(&mut out, 5, &[p.reason]);
        prop(&mut out, 6, &nxm::encode(&m, true));
        out.extend_from_slice(&p.continuation);
        if !p.userdata.is_empty() {
            prop(&mut out, 7, &p.userdata);
        }
        return finish(out);
    }
    if format == PacketInFormat::Nxt {
        let entries = nxm::encode(&m, false);
        let mut out = start(version, OFPT_VENDOR, 0);
        out.put_u32(NX_VENDOR_ID);
        out.put_u32(NXT_PACKET_IN);
        out.put_u32(u32::MAX);
        out.put_u16(p.total_len);
        out.put_u8(p.reason);
        out.put_u8(p.table);
        out.put_u64(p.cookie);
        out.put_u16(entries.len() as u16);
        out.put_zeros(6);
        let at = out.len();
        out.extend_from_slice(&entries);
        out.pad8_from(at);
        out.put_zeros(2);
        out.extend_from_slice(&p.data);
        return finish(out);
    }
    if version == OFP10 {
        let mut out = start(version, OFPT_PACKET_IN, 0);
        out.put_u32(u32::MAX);
        out.put_u16(p.total_len);
        out.put_u16(super::port_to_of10(p.in_port));
        out.put_u8(p.reason);
        out.put_zeros(1);
        out.extend_from_slice(&p.data);
        return finish(out);
    }
    let mut out = start(version, OFPT_PACKET_IN, 0);
    out.put_u32(u32::MAX);
    out.put_u16(p.total_len);
    out.put_u8(p.reason);
    out.put_u8(p.table);
    out.put_u64(p.cookie);
    put_oxm_match(&m, &mut out);
    out.put_zeros(2);
    out.extend_from_slice(&p.data);
    finish(out)
}

/// Why a rule went away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RemovedReason {
    IdleTimeout = 0,
    HardTimeout = 1,
    Delete = 2,
    /// OpenFlow 1.3's OFPRR_GROUP_DELETE.
    GroupDelete = 3,
    /// OpenFlow 1.4's OFPRR_METER_DELETE.
    MeterDelete = 4,
}

/// FLOW_REMOVED (OpenFlow 1.3 layout, or Nicira's NXT_FLOW_REMOVED for an
/// NXM connection, or 1.0's).
pub fn encode_flow_removed(
    version: u8,
    format: FlowFormat,
    e: &FlowStatsEntry,
    reason: RemovedReason,
) -> Vec<u8> {
    match format {
        FlowFormat::Oxm => {
            let mut out = start(version, OFPT_FLOW_REMOVED, 0);
            out.put_u64(e.cookie);
            out.put_u16(e.priority);
            out.put_u8(reason as u8);
            out.put_u8(e.table);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.idle_timeout);
            out.put_u16(e.hard_timeout);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            put_oxm_match(&e.matches, &mut out);
            finish(out)
        }
        FlowFormat::Nxm => {
            let entries = nxm::encode(&e.matches, false);
            let mut out = start(version, OFPT_VENDOR, 0);
            out.put_u32(NX_VENDOR_ID);
            out.put_u32(NXT_FLOW_REMOVED);
            out.put_u64(e.cookie);
            out.put_u16(e.priority);
            out.put_u8(reason as u8);
            out.put_u8(e.table);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.idle_timeout);
            out.put_u16(entries.len() as u16);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            let m = out.len();
            out.extend_from_slice(&entries);
            out.pad8_from(m);
            finish(out)
        }
        FlowFormat::Of10 => {
            let mut out = start(version, OFPT_FLOW_REMOVED, 0);
            encode_of10_match(&e.matches, &mut out);
            out.put_u64(e.cookie);
            out.put_u16(e.priority);
            out.put_u8(reason as u8);
            out.put_zeros(1);
            out.put_u32(e.duration_sec);
            out.put_u32(e.duration_nsec);
            out.put_u16(e.idle_timeout);
            out.put_zeros(2);
            out.put_u64(e.packet_count);
            out.put_u64(e.byte_count);
            finish(out)
        }
    }
}

/// Encodes a flow mod (what a controller sends): used by tests and the
/// flow-mod benchmark's streaming client.
pub fn encode_flow_mod(version: u8, xid: u32, fm: &FlowMod) -> Result<Vec<u8>, OfpError> {
    let cmd = match fm.command {
        FlowModCommand::Add => 0u8,
        FlowModCommand::Modify => 1,
        FlowModCommand::ModifyStrict => 2,
        FlowModCommand::Delete => 3,
        FlowModCommand::DeleteStrict => 4,
    };
    if version == OFP10 {
        let entries = nxm::encode(&fm.matches, false);
        let mut out = start(version, OFPT_VENDOR, xid);
        out.put_u32(NX_VENDOR_ID);
        out.put_u32(NXT_FLOW_MOD);
        out.put_u64(fm.cookie);
        out.put_u16(u16::from(cmd) | (u16::from(fm.table) << 8));
        out.put_u16(fm.idle_timeout);
        out.put_u16(fm.hard_timeout);
        out.put_u16(fm.priority);
        out.put_u32(fm.buffer_id);
        out.put_u16(super::port_to_of10(fm.out_port));
        out.put_u16(fm.flags);
        out.put_u16(entries.len() as u16);
        out.put_zeros(6);
        let m = out.len();
        out.extend_from_slice(&entries);
        out.pad8_from(m);
        actions::encode_actions_of10(&fm.instructions, &mut out)?;
        return Ok(finish(out));
    }
    let mut out = start(version, OFPT_FLOW_MOD, xid);
    out.put_u64(fm.cookie);
    out.put_u64(fm.cookie_mask);
    out.put_u8(fm.table);
    out.put_u8(cmd);
    out.put_u16(fm.idle_timeout);
    out.put_u16(fm.hard_timeout);
    out.put_u16(fm.priority);
    out.put_u32(fm.buffer_id);
    out.put_u32(fm.out_port);
    out.put_u32(fm.out_group);
    out.put_u16(fm.flags);
    out.put_zeros(2);
    put_oxm_match(&fm.matches, &mut out);
    actions::encode_instructions(version, &fm.instructions, &mut out)?;
    Ok(finish(out))
}

/// A flow mod that adds `rule`.
pub fn add_flow_mod(rule: &crate::ofp::Rule) -> FlowMod {
    FlowMod {
        command: FlowModCommand::Add,
        table: rule.table,
        cookie: rule.cookie,
        cookie_mask: 0,
        priority: rule.priority,
        idle_timeout: rule.idle_timeout,
        hard_timeout: rule.hard_timeout,
        buffer_id: u32::MAX,
        out_port: port::ANY,
        out_group: port::ANY,
        flags: rule.flags,
        matches: rule.matches,
        instructions: rule.instructions.clone(),
    }
}

/// Encodes a barrier request (tests and clients).
pub fn encode_barrier_request(version: u8, xid: u32) -> Vec<u8> {
    let kind = if version == OFP10 {
        OFPT10_BARRIER_REQUEST
    } else {
        OFPT13_BARRIER_REQUEST
    };
    finish(start(version, kind, xid))
}
