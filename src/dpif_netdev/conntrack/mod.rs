//! The embedded datapath's connection tracker (OVS's userspace
//! conntrack): `ct` actions look packets up by their connection's key in
//! a zone, track TCP sequence windows and UDP/ICMP exchanges, commit new
//! connections, apply SNAT/DNAT, and tell the packet its state (`+trk`
//! with `+new`, `+est`, `+rel`, `+rpl`, `+inv`, `+snat`, `+dnat`), mark,
//! label and original tuple.
//!
//! Pure logic over frames and a clock (no I/O): the datapath calls
//! [`Conntrack::execute`] for each `ct` action. One mutex guards the
//! table; a packet holds it for one lookup and update.
//!
//! - [`packet`]: a frame's connection key, or why it cannot be tracked;
//! - [`tcp`]: sequence and window tracking;
//! - [`nat`]: choosing translated tuples and rewriting packets;
//! - [`timeouts`]: per-state timeouts;
//! - [`dump`]: `dpctl/dump-conntrack`'s format;
//! - [`ipf`]: IP fragments held and reassembled before tracking;
//! - [`alg`]: the FTP and TFTP helpers' parsing and rewriting.

pub mod alg;
pub mod dump;
pub mod ipf;
pub mod nat;
pub mod packet;
pub mod tcp;
pub mod timeouts;

use std::collections::HashMap;

use alg::{Alg, Expectation, FtpMessage};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rustc_hash::FxSeededState;

pub use nat::{NatKind, NatSpec};
pub use packet::{ConnKey, Endpoint};
use packet::{CtPacket, IPPROTO_ICMP, IPPROTO_ICMPV6, IPPROTO_TCP};
use tcp::{TcpConn, Update};
pub use timeouts::{Timeout, TimeoutPolicies, TimeoutPolicy, ZoneTimeouts};

/// `ct_state` bits, as OVS numbers them.
pub mod state {
    pub const NEW: u8 = 0x01;
    pub const ESTABLISHED: u8 = 0x02;
    pub const RELATED: u8 = 0x04;
    pub const REPLY_DIR: u8 = 0x08;
    pub const INVALID: u8 = 0x10;
    pub const TRACKED: u8 = 0x20;
    pub const SRC_NAT: u8 = 0x40;
    pub const DST_NAT: u8 = 0x80;
}

/// What a `ct` action asks of the tracker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtCommand {
    pub zone: u16,
    pub commit: bool,
    /// Start over when the packet is in the reply direction of an
    /// existing connection (implies `commit`).
    pub force: bool,
    /// `(value, mask)` to write into the connection's mark.
    pub mark: Option<(u32, u32)>,
    /// `(value, mask)` to write into the connection's label.
    pub label: Option<(u128, u128)>,
    pub nat: Option<NatSpec>,
    /// The timeout policy a committed connection keeps (0: the default).
    pub timeout_policy: u32,
    /// The helper (`alg=`) a connection committed now follows.
    pub alg: Option<Alg>,
}

impl CtCommand {
    /// The tracker's view of a datapath `ct` action.
    pub fn of(action: &messages::odp::CtAction) -> CtCommand {
        CtCommand {
            zone: action.zone,
            commit: action.commit,
            force: action.force,
            mark: action.mark,
            label: action.labels,
            nat: action.nat.as_ref().map(NatSpec::of),
            // A name that is no id of ours gets the default policy, as in
            // OVS's userspace datapath.
            timeout_policy: action
                .timeout
                .as_deref()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            alg: action.helper,
        }
    }
}

impl CtMetadata {
    /// A packet's conntrack metadata, as the datapath carries it.
    pub fn of(md: &messages::dpif::PacketMetadata) -> CtMetadata {
        let ipv6 = md.ct_ipv6_src != [0; 16] || md.ct_ipv6_dst != [0; 16];
        let mut orig = OrigTuple {
            ipv6,
            src_port: md.ct_tp_src,
            dst_port: md.ct_tp_dst,
            proto: md.ct_nw_proto,
            ..OrigTuple::default()
        };
        if ipv6 {
            orig.src = md.ct_ipv6_src;
            orig.dst = md.ct_ipv6_dst;
        } else {
            orig.src[..4].copy_from_slice(&md.ct_nw_src.to_be_bytes());
            orig.dst[..4].copy_from_slice(&md.ct_nw_dst.to_be_bytes());
        }
        CtMetadata {
            state: md.ct_state,
            zone: md.ct_zone,
            mark: md.ct_mark,
            label: u128::from_be_bytes(md.ct_label),
            orig: (md.ct_nw_proto != 0).then_some(orig),
        }
    }

    /// Writes this into the datapath's packet metadata.
    pub fn write_to(&self, md: &mut messages::dpif::PacketMetadata) {
        md.ct_state = self.state;
        md.ct_zone = self.zone;
        md.ct_mark = self.mark;
        md.ct_label = self.label.to_be_bytes();
        let o = self.orig.unwrap_or_default();
        md.ct_nw_proto = o.proto;
        md.ct_tp_src = o.src_port;
        md.ct_tp_dst = o.dst_port;
        if o.ipv6 {
            md.ct_ipv6_src = o.src;
            md.ct_ipv6_dst = o.dst;
            md.ct_nw_src = 0;
            md.ct_nw_dst = 0;
        } else {
            md.ct_nw_src = u32::from_be_bytes([o.src[0], o.src[1], o.src[2], o.src[3]]);
            md.ct_nw_dst = u32::from_be_bytes([o.dst[0], o.dst[1], o.dst[2], o.dst[3]]);
            md.ct_ipv6_src = [0; 16];
            md.ct_ipv6_dst = [0; 16];
        }
    }
}

/// The original-direction tuple of a packet's connection (OVS's
/// `ct_orig_tuple`: for ICMP the ports hold the type and code).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OrigTuple {
    pub ipv6: bool,
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub src_port: u16,
    pub dst_port: u16,
    pub proto: u8,
}

impl OrigTuple {
    fn of(key: &ConnKey) -> OrigTuple {
        let icmp = key.is_icmp();
        OrigTuple {
            ipv6: key.ipv6,
            src: key.src.addr,
            dst: key.dst.addr,
            src_port: if icmp {
                key.src.icmp_type.into()
            } else {
                key.src.port
            },
            dst_port: if icmp {
                key.src.icmp_code.into()
            } else {
                key.dst.port
            },
            proto: key.proto,
        }
    }
}

/// A packet's conntrack metadata, read and written by `ct` actions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtMetadata {
    pub state: u8,
    pub zone: u16,
    pub mark: u32,
    pub label: u128,
    /// Set while the packet is tracked; a `ct_clear` clears it.
    pub orig: Option<OrigTuple>,
}

/// Sizes and limits of the tracker.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConntrackConfig {
    /// Most connections tracked at once (OVS's default, 3 000 000).
    pub max_connections: u32,
    /// Most connections per zone, for the zones listed.
    #[serde(deserialize_with = "by_zone")]
    pub zone_limits: std::collections::BTreeMap<u16, u32>,
    /// The default timeout policy.
    pub timeouts: TimeoutPolicy,
    /// The zones' own timeout policies: the connections a `ct(commit)` in
    /// such a zone creates keep its timeouts.
    #[serde(deserialize_with = "by_zone")]
    pub zone_timeouts: std::collections::BTreeMap<u16, ZoneTimeouts>,
    /// Fragment reassembly before tracking.
    pub fragments: ipf::IpfConfig,
}

/// A table keyed by zone: TOML keys are strings, so `{ 5 = … }` comes as
/// `"5"`.
fn by_zone<'de, D, V>(d: D) -> Result<std::collections::BTreeMap<u16, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: serde::Deserialize<'de>,
{
    let by_name: std::collections::BTreeMap<String, V> = serde::Deserialize::deserialize(d)?;
    by_name
        .into_iter()
        .map(|(k, v)| match k.parse::<u16>() {
            Ok(zone) => Ok((zone, v)),
            Err(_) => Err(serde::de::Error::custom(format!(
                "zone {k:?}: a zone is a number from 0 to 65535"
            ))),
        })
        .collect()
}

impl ConntrackConfig {
    pub fn timeout_policies(&self) -> TimeoutPolicies {
        TimeoutPolicies::new(&self.timeouts, &self.zone_timeouts)
    }
}

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            max_connections: 3_000_000,
            zone_limits: Default::default(),
            timeouts: TimeoutPolicy::default(),
            zone_timeouts: Default::default(),
            fragments: Default::default(),
        }
    }
}

/// Counters of what the tracker refused or could not do.
#[derive(Default, Debug)]
pub struct CtCounters {
    /// Packets that could not be tracked (`+inv` before any lookup).
    pub untrackable: AtomicU64,
    /// Packets found invalid for their connection, or unable to open one.
    pub invalid: AtomicU64,
    /// Commits refused because the table (or the zone) was full.
    pub full: AtomicU64,
    /// Commits refused because no NAT tuple was free.
    pub nat_exhausted: AtomicU64,
    /// Connections created.
    pub created: AtomicU64,
    /// Connections removed after their timeout.
    pub expired: AtomicU64,
    /// Data connections a helper expects (FTP, TFTP).
    pub expectations: AtomicU64,
    /// Helper control messages that did not parse, or named a third
    /// party's address (`+inv`).
    pub alg_invalid: AtomicU64,
}

/// Per-protocol state of a connection.
#[derive(Clone, Copy, Debug)]
enum Proto {
    Tcp(TcpConn),
    /// UDP and other protocols: whether each direction has been seen.
    Other {
        replied: bool,
        multiple: bool,
    },
    Icmp {
        replied: bool,
    },
}

/// A tracked connection.
#[derive(Clone, Debug)]
struct Conn {
    fwd: ConnKey,
    rev: ConnKey,
    proto: Proto,
    mark: u32,
    label: u128,
    nat: Option<NatKind>,
    /// The id of its timeout policy.
    timeout_policy: u32,
    expires_ms: u64,
    /// The helper its control messages are read by.
    alg: Option<Alg>,
    /// For a connection a helper expected: its control connection's
    /// original key (reported as the original tuple).
    parent: Option<ConnKey>,
    /// Bytes an FTP helper's NAT rewrites added to the stream in the
    /// direction `skew_reply` (later sequence numbers shift by as much).
    skew: i32,
    skew_reply: bool,
}

/// Where a key points: a connection, and whether the key is its reply.
#[derive(Clone, Copy, Debug)]
struct KeyRef {
    conn: u32,
    reply: bool,
}

struct Table {
    keys: HashMap<ConnKey, KeyRef, FxSeededState>,
    conns: Vec<Option<Conn>>,
    free: Vec<u32>,
    n_conns: u32,
    per_zone: HashMap<u16, u32>,
    /// Next slot the expiry sweep looks at, and when it runs next.
    sweep_at: usize,
    next_sweep_ms: u64,
    random: u32,
    /// Data connections helpers expect, by key with any source port, and
    /// those of each control connection (forgotten with it).
    expectations: HashMap<ConnKey, Expectation>,
    expected_by: HashMap<ConnKey, Vec<ConnKey>>,
}

/// Slots the expiry sweep visits per packet once it is due: the table is
/// swept a little at a time, never in one long pause.
const SWEEP_STEP: usize = 64;
/// How often a sweep of the whole table starts.
const SWEEP_INTERVAL_MS: u64 = 1000;

impl Table {
    fn conn(&self, r: KeyRef) -> &Conn {
        self.conns[r.conn as usize]
            .as_ref()
            .expect("keys point at live conns")
    }

    fn conn_mut(&mut self, r: KeyRef) -> &mut Conn {
        self.conns[r.conn as usize]
            .as_mut()
            .expect("keys point at live conns")
    }

    /// Looks `key` up, removing its connection instead if it expired.
    fn lookup(&mut self, key: &ConnKey, now: u64, counters: &CtCounters) -> Option<KeyRef> {
        let r = *self.keys.get(key)?;
        if self.conn(r).expires_ms <= now {
            self.remove(r.conn);
            counters.expired.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(r)
    }

    fn insert(&mut self, conn: Conn) -> u32 {
        let (fwd, rev, zone) = (conn.fwd, conn.rev, conn.fwd.zone);
        let idx = match self.free.pop() {
            Some(i) => {
                self.conns[i as usize] = Some(conn);
                i
            }
            None => {
                self.conns.push(Some(conn));
                (self.conns.len() - 1) as u32
            }
        };
        self.keys.insert(
            fwd,
            KeyRef {
                conn: idx,
                reply: false,
            },
        );
        self.keys.insert(
            rev,
            KeyRef {
                conn: idx,
                reply: true,
            },
        );
        self.n_conns += 1;
        *self.per_zone.entry(zone).or_default() += 1;
        idx
    }

    fn remove(&mut self, idx: u32) {
        if let Some(c) = self.conns[idx as usize].take() {
            self.keys.remove(&c.fwd);
            self.keys.remove(&c.rev);
            if let Some(expected) = self.expected_by.remove(&c.fwd) {
                for k in expected {
                    self.expectations.remove(&k);
                }
            }
            self.free.push(idx);
            self.n_conns -= 1;
            if let Some(n) = self.per_zone.get_mut(&c.fwd.zone) {
                *n -= 1;
                if *n == 0 {
                    self.per_zone.remove(&c.fwd.zone);
                }
            }
        }
    }

    /// Removes a few expired connections, when a sweep is due.
    fn sweep(&mut self, now: u64, counters: &CtCounters) {
        if now < self.next_sweep_ms {
            return;
        }
        let end = (self.sweep_at + SWEEP_STEP).min(self.conns.len());
        for i in self.sweep_at..end {
            if matches!(&self.conns[i], Some(c) if c.expires_ms <= now) {
                self.remove(i as u32);
                counters.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.sweep_at = end;
        if end >= self.conns.len() {
            self.sweep_at = 0;
            self.next_sweep_ms = now + SWEEP_INTERVAL_MS;
        }
    }
}

/// The connection tracker.
pub struct Conntrack {
    table: Mutex<Table>,
    config: ConntrackConfig,
    policies: TimeoutPolicies,
    pub counters: CtCounters,
    /// Fragments waiting for the rest of their datagram, with the
    /// metadata each came with.
    pub fragments: ipf::Ipf<messages::dpif::PacketMetadata>,
}

impl Conntrack {
    pub fn new(config: ConntrackConfig) -> Self {
        let seed = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Conntrack {
            table: Mutex::new(Table {
                keys: HashMap::with_hasher(FxSeededState::with_seed(seed as usize)),
                conns: Vec::new(),
                free: Vec::new(),
                n_conns: 0,
                per_zone: HashMap::default(),
                sweep_at: 0,
                next_sweep_ms: 0,
                random: seed as u32 | 1,
                expectations: HashMap::new(),
                expected_by: HashMap::new(),
            }),
            policies: config.timeout_policies(),
            fragments: ipf::Ipf::new(config.fragments.clone()),
            config,
            counters: CtCounters::default(),
        }
    }

    /// Connections tracked now (expired ones not yet swept included).
    pub fn len(&self) -> usize {
        self.table.lock().n_conns as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends a packet through the tracker: `md` is its conntrack metadata
    /// (updated), `frame` is rewritten by NAT. Returns whether the frame's
    /// headers changed.
    pub fn execute(
        &self,
        frame: &mut Vec<u8>,
        md: &mut CtMetadata,
        cmd: &CtCommand,
        now: u64,
    ) -> bool {
        // Entering a new zone forgets the state of the previous one.
        if md.state != 0 && md.zone != cmd.zone {
            md.state = 0;
        }
        let Some(mut pkt) = packet::parse(frame) else {
            self.untrackable(md, cmd.zone);
            return false;
        };
        pkt.key.zone = cmd.zone;
        let mut table = self.table.lock();
        table.sweep(now, &self.counters);
        self.process(&mut table, frame, &pkt, md, cmd, now)
    }

    /// A packet the tracker cannot follow: `+trk+inv`, counted.
    pub fn untrackable(&self, md: &mut CtMetadata, zone: u16) {
        self.counters.untrackable.fetch_add(1, Ordering::Relaxed);
        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
        *md = CtMetadata {
            state: state::INVALID | state::TRACKED,
            zone,
            ..CtMetadata::default()
        };
    }

    fn process(
        &self,
        table: &mut Table,
        frame: &mut Vec<u8>,
        pkt: &CtPacket,
        md: &mut CtMetadata,
        cmd: &CtCommand,
        now: u64,
    ) -> bool {
        let mut changed = false;
        let natted = md.state & (state::SRC_NAT | state::DST_NAT) != 0;
        let mut key = pkt.key;
        // A packet NATed already (by an earlier `ct` in this zone) carries
        // its translated tuple: found by the reverse of its key.
        let mut found = if natted {
            table
                .lookup(&key.reversed(), now, &self.counters)
                .map(|r| KeyRef {
                    conn: r.conn,
                    reply: !r.reply,
                })
        } else {
            table.lookup(&key, now, &self.counters)
        };
        if let (true, Some(r)) = (natted, found) {
            let c = table.conn(r);
            key = if r.reply { c.rev } else { c.fwd };
        }
        if let Some(r) = found {
            if cmd.force && r.reply {
                table.remove(r.conn);
                found = None;
            }
        }

        let alg_ctl = alg::ctl_type(pkt);
        let mut pkt = *pkt;
        let pkt = &mut pkt;
        let nat = cmd.nat.is_some();
        let mut create = false;
        if let Some(r) = found {
            if alg_ctl == Some(Alg::Ftp) {
                // Sequence numbers are tracked as the side that caused a
                // skew sees them: the other side's acknowledgements are
                // shifted back first, that side's own shifted after.
                if r.reply != table.conn(r).skew_reply {
                    changed |= ftp_control(table, r, frame, pkt, md, nat, false, &self.counters);
                    create = self.update_state(table, r, pkt, md, now);
                } else {
                    create = self.update_state(table, r, pkt, md, now);
                    if !create {
                        changed |=
                            ftp_control(table, r, frame, pkt, md, nat, false, &self.counters);
                    }
                }
            } else {
                create = self.update_state(table, r, pkt, md, now);
            }
            if create {
                table.remove(r.conn);
                found = None;
            } else if cmd.nat.is_some() {
                changed |= apply_nat(table.conn(r), r.reply, frame, pkt, md, cmd.zone);
            }
        } else if let Some(r) = self.by_orig_tuple(table, &key, md, cmd, now) {
            found = Some(r);
            create = self.update_state(table, r, pkt, md, now);
            if create {
                table.remove(r.conn);
                found = None;
            }
        } else if pkt.related {
            // An ICMP error about no connection we know.
            md.state = state::INVALID;
        } else {
            create = true;
        }

        let mut expected = None;
        if create && table.lookup(&key, now, &self.counters).is_none() {
            expected = table.expectations.get(&alg::expectation_key(&key)).copied();
            found = self.not_found(
                table,
                frame,
                pkt,
                &key,
                md,
                cmd,
                now,
                expected.as_ref(),
                alg_ctl,
                &mut changed,
            );
        }
        if md.state & state::INVALID != 0 {
            self.counters.invalid.fetch_add(1, Ordering::Relaxed);
        }

        // Write the packet's metadata.
        md.state |= state::TRACKED;
        md.zone = cmd.zone;
        match found {
            Some(r) => {
                let c = table.conn_mut(r);
                // A helper's data connection keeps its parent's mark and
                // label.
                if c.parent.is_none() {
                    if let Some((v, m)) = cmd.mark {
                        c.mark = v | (c.mark & !m);
                    }
                    if let Some((v, m)) = cmd.label {
                        c.label = v | (c.label & !m);
                    }
                }
                md.mark = c.mark;
                md.label = c.label;
                md.orig = Some(OrigTuple::of(c.parent.as_ref().unwrap_or(&c.fwd)));
            }
            None => match &expected {
                Some(e) => {
                    md.mark = e.mark;
                    md.label = e.label;
                    md.orig = Some(OrigTuple::of(&e.parent));
                }
                None => {
                    md.mark = 0;
                    md.label = 0;
                    md.orig = (md.state & state::INVALID == 0).then(|| OrigTuple::of(&key));
                }
            },
        }
        // A control connection's message: expectations (and, under NAT,
        // the address it names rewritten).
        if let Some(r) = found {
            let c = table.conn(r);
            if alg_ctl.is_some() && c.alg == alg_ctl {
                match alg_ctl {
                    Some(Alg::Ftp) => {
                        changed |= ftp_control(table, r, frame, pkt, md, nat, true, &self.counters);
                    }
                    Some(Alg::Tftp) => {
                        let port = c.fwd.src.port;
                        add_expectation(table, r, port, &self.counters);
                    }
                    None => {}
                }
            }
        }
        changed
    }

    /// A packet that was NATed by a `ct(nat)` and comes to a `ct` without
    /// NAT in the same zone: its connection is found by the original
    /// tuple it carries.
    fn by_orig_tuple(
        &self,
        table: &mut Table,
        key: &ConnKey,
        md: &CtMetadata,
        cmd: &CtCommand,
        now: u64,
    ) -> Option<KeyRef> {
        if md.state & (state::SRC_NAT | state::DST_NAT) == 0 || cmd.nat.is_some() {
            return None;
        }
        let orig = md.orig?;
        if orig.proto == 0 {
            return None;
        }
        let mut k = ConnKey {
            ipv6: orig.ipv6,
            proto: orig.proto,
            zone: md.zone,
            ..ConnKey::default()
        };
        k.src.addr = orig.src;
        k.dst.addr = orig.dst;
        if key.is_icmp() {
            k.src.port = key.src.port;
            k.dst.port = key.dst.port;
            k.src.icmp_type = orig.src_port as u8;
            let reply = if key.ipv6 {
                packet::icmp6_reply_type(k.src.icmp_type)
            } else {
                packet::icmp4_reply_type(k.src.icmp_type)
            };
            k.dst.icmp_type = reply?;
        } else {
            k.src.port = orig.src_port;
            k.dst.port = orig.dst_port;
        }
        table.lookup(&k, now, &self.counters)
    }

    /// Updates a found connection with the packet and sets the packet's
    /// state; returns whether a new connection must replace it.
    fn update_state(
        &self,
        table: &mut Table,
        r: KeyRef,
        pkt: &CtPacket,
        md: &mut CtMetadata,
        now: u64,
    ) -> bool {
        if pkt.related {
            md.state |= state::RELATED;
            if r.reply {
                md.state |= state::REPLY_DIR;
            }
            return false;
        }
        let c = table.conn_mut(r);
        if c.parent.is_some() {
            md.state |= state::RELATED;
        }
        let timeouts = self.policies.get(c.timeout_policy);
        let (update, timeout) = match &mut c.proto {
            Proto::Tcp(t) => match &pkt.tcp {
                Some(seg) => t.update(seg, r.reply),
                None => (Update::Invalid, None),
            },
            Proto::Other { replied, multiple } => {
                if r.reply {
                    *replied = true;
                } else {
                    *multiple = true;
                }
                if *replied {
                    (Update::Valid, Some(Timeout::OtherBidir))
                } else {
                    (Update::ValidNew, Some(Timeout::OtherMultiple))
                }
            }
            Proto::Icmp { replied } => {
                if r.reply {
                    *replied = true;
                }
                if *replied {
                    (Update::Valid, Some(Timeout::IcmpReply))
                } else {
                    (Update::ValidNew, Some(Timeout::IcmpFirst))
                }
            }
        };
        if let Some(t) = timeout {
            c.expires_ms = now + timeouts.ms(t);
        }
        match update {
            Update::Valid => {
                md.state |= state::ESTABLISHED;
                md.state &= !state::NEW;
                if r.reply {
                    md.state |= state::REPLY_DIR;
                }
                false
            }
            Update::ValidNew => {
                md.state |= state::NEW;
                false
            }
            Update::Invalid => {
                md.state = state::INVALID;
                false
            }
            Update::New => true,
        }
    }

    /// A packet of no known connection: `+new` if it may open one, and
    /// committed (with NAT) when asked and the limits allow.
    #[allow(clippy::too_many_arguments)]
    fn not_found(
        &self,
        table: &mut Table,
        frame: &mut [u8],
        pkt: &CtPacket,
        key: &ConnKey,
        md: &mut CtMetadata,
        cmd: &CtCommand,
        now: u64,
        expected: Option<&Expectation>,
        alg_ctl: Option<Alg>,
        changed: &mut bool,
    ) -> Option<KeyRef> {
        let (proto, timeout) = match key.proto {
            IPPROTO_TCP => {
                let seg = pkt.tcp.as_ref()?;
                if !tcp::valid_new(seg) {
                    md.state = state::INVALID;
                    return None;
                }
                let (t, timeout) = TcpConn::new(seg);
                (Proto::Tcp(t), timeout)
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 if key.is_icmp() => {
                if !pkt.icmp_opens {
                    md.state = state::INVALID;
                    return None;
                }
                (Proto::Icmp { replied: false }, Timeout::IcmpFirst)
            }
            _ => (
                Proto::Other {
                    replied: false,
                    multiple: false,
                },
                Timeout::OtherFirst,
            ),
        };
        md.state = state::NEW;
        if expected.is_some() {
            md.state |= state::RELATED;
        }
        if !(cmd.commit || cmd.force) {
            return None;
        }
        let zone_full = self
            .config
            .zone_limits
            .get(&key.zone)
            .is_some_and(|&limit| table.per_zone.get(&key.zone).copied().unwrap_or(0) >= limit);
        if zone_full || table.n_conns >= self.config.max_connections {
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut conn = Conn {
            fwd: *key,
            rev: key.reversed(),
            proto,
            mark: 0,
            label: 0,
            nat: None,
            timeout_policy: cmd.timeout_policy,
            expires_ms: now + self.policies.get(cmd.timeout_policy).ms(timeout),
            alg: cmd.alg.filter(|a| Some(*a) == alg_ctl),
            parent: expected.map(|e| e.parent),
            skew: 0,
            skew_reply: false,
        };
        if let Some(e) = expected {
            conn.mark = e.mark;
            conn.label = e.label;
        }
        if let (Some(e), Some(_)) = (expected, &cmd.nat) {
            // Translated as the control connection announced it.
            let kind = if e.nat_reply_dst {
                conn.rev.dst.addr = e.nat_addr;
                NatKind::Src
            } else {
                conn.rev.src.addr = e.nat_addr;
                NatKind::Dst
            };
            conn.nat = Some(kind);
            *changed |= apply_nat(&conn, false, frame, pkt, md, cmd.zone);
        } else if let Some(spec) = &cmd.nat {
            if let Some(kind) = spec.kind {
                table.random = table
                    .random
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                let random = table.random;
                let rev = nat::choose(key, spec, kind, table.keys.hasher(), random, |k| {
                    table.keys.contains_key(k)
                });
                let Some(rev) = rev else {
                    self.counters.nat_exhausted.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "no free NAT tuple for a new connection (the ranges are exhausted)"
                    );
                    return None;
                };
                conn.rev = rev;
                conn.nat = Some(kind);
                *changed |= apply_nat(&conn, false, frame, pkt, md, cmd.zone);
            }
        }
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        let idx = table.insert(conn);
        Some(KeyRef {
            conn: idx,
            reply: false,
        })
    }

    /// Forgets every connection, or those of one zone.
    pub fn flush(&self, zone: Option<u16>) {
        let mut table = self.table.lock();
        let doomed: Vec<u32> = table
            .conns
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c {
                Some(c) if zone.is_none_or(|z| c.fwd.zone == z) => Some(i as u32),
                _ => None,
            })
            .collect();
        for i in doomed {
            table.remove(i);
        }
    }

    /// The live connections (of one zone), for a dump.
    pub fn entries(&self, zone: Option<u16>, now: u64) -> Vec<dump::Entry> {
        let table = self.table.lock();
        let mut out: Vec<dump::Entry> = table
            .conns
            .iter()
            .flatten()
            .filter(|c| c.expires_ms > now && zone.is_none_or(|z| c.fwd.zone == z))
            .map(|c| dump::Entry {
                orig: c.fwd,
                reply: c.rev,
                mark: c.mark,
                label: c.label,
                tcp_state: match &c.proto {
                    Proto::Tcp(t) => Some(t.state()),
                    _ => None,
                },
                timeout_s: (c.expires_ms - now).div_ceil(1000) as u32,
                helper: c.alg.map(Alg::name),
            })
            .collect();
        out.sort_by_key(dump::order);
        out
    }
}

/// Applies a connection's NAT to a packet of it, unless the packet was
/// NATed already in this zone; returns whether the frame changed.
fn apply_nat(
    conn: &Conn,
    reply: bool,
    frame: &mut [u8],
    pkt: &CtPacket,
    md: &mut CtMetadata,
    zone: u16,
) -> bool {
    let Some(kind) = conn.nat else {
        return false;
    };
    let natted = md.state & (state::SRC_NAT | state::DST_NAT) != 0;
    if natted && md.zone == zone {
        return false;
    }
    md.state &= !(state::SRC_NAT | state::DST_NAT);
    let (key, kind) = if reply {
        (&conn.fwd, kind.reversed())
    } else {
        (&conn.rev, kind)
    };
    md.state |= match kind {
        NatKind::Src => state::SRC_NAT,
        NatKind::Dst => state::DST_NAT,
    };
    nat::rewrite(frame, pkt, key, kind);
    true
}

#[cfg(test)]
mod tests;

/// Creates the expectation a control connection's message announces
/// (once per data key), unless one is there already.
fn add_expectation(table: &mut Table, r: KeyRef, port: u16, counters: &CtCounters) {
    let c = table.conn(r);
    let (key, e) = alg::expect(
        &c.fwd,
        &c.rev,
        c.nat == Some(NatKind::Dst),
        c.mark,
        c.label,
        port,
        r.reply,
    );
    if table.expectations.contains_key(&key) {
        return;
    }
    let parent = c.fwd;
    table.expectations.insert(key, e);
    table.expected_by.entry(parent).or_default().push(key);
    counters.expectations.fetch_add(1, Ordering::Relaxed);
}

/// The FTP helper on a control segment (OVS's `handle_ftp_ctl`): with
/// `announce`, a `PORT`/PASV/`EPRT`/EPSV message creates an expectation and
/// under NAT (`nat`: the `ct` has `nat`) names the translated address;
/// without, other segments only get the sequence shift earlier rewrites
/// made. Returns whether the frame changed.
#[allow(clippy::too_many_arguments)]
fn ftp_control(
    table: &mut Table,
    r: KeyRef,
    frame: &mut Vec<u8>,
    pkt: &mut CtPacket,
    md: &mut CtMetadata,
    nat: bool,
    announce: bool,
    counters: &CtCounters,
) -> bool {
    let Some(tcp) = pkt.tcp else {
        return false;
    };
    let at = alg::payload_at(frame, pkt);
    let ipv6 = pkt.key.ipv6;
    if alg::ftp_announces(&frame[at..pkt.end], ipv6) != announce {
        return false;
    }
    let c = table.conn(r);
    let (fwd, rev) = (c.fwd, c.rev);
    let mut delta = 0;
    if announce {
        let payload = &frame[at..pkt.end];
        let message = if ipv6 {
            alg::parse_v6(payload, [rev.dst.addr, fwd.src.addr])
        } else {
            let v4 = |a: &[u8; 16]| [a[0], a[1], a[2], a[3]];
            let active = payload.len() >= 4 && payload[..4].eq_ignore_ascii_case(b"PORT");
            // The address the message may name: the announcer's own, or
            // the one it is translated to.
            let allowed = if active {
                [v4(&rev.dst.addr), v4(&fwd.src.addr)]
            } else {
                [v4(&fwd.dst.addr), v4(&rev.src.addr)]
            };
            alg::parse_v4(payload, allowed)
        };
        let announced = match message {
            FtpMessage::Announce(a) => a,
            FtpMessage::Invalid => {
                counters.alg_invalid.fetch_add(1, Ordering::Relaxed);
                tracing::debug!("invalid FTP control message");
                md.state |= state::TRACKED | state::INVALID;
                return false;
            }
        };
        add_expectation(table, r, announced.port, counters);
        // Passive IPv6 replies name no address.
        if nat && (announced.active || !ipv6) {
            let to = if announced.active {
                rev.dst.addr
            } else {
                fwd.dst.addr
            };
            let text = alg::address_text(&to, ipv6);
            delta = alg::replace(
                frame,
                pkt,
                at + announced.addr_at,
                announced.addr_len,
                text.as_bytes(),
            );
        }
    }
    let c = table.conn_mut(r);
    if nat && c.skew != 0 {
        if r.reply != c.skew_reply {
            alg::shift(frame, pkt, true, -c.skew);
            if let Some(t) = pkt.tcp.as_mut() {
                t.ack = tcp.ack.wrapping_add_signed(-c.skew);
            }
        } else {
            alg::shift(frame, pkt, false, c.skew);
        }
    }
    alg::tcp_checksum(frame, pkt);
    if delta != 0 {
        c.skew += delta;
        c.skew_reply = r.reply;
    }
    true
}
