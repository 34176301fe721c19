//! Running datapath actions on frames: rewrites, VLAN and MPLS pushes and pops,
//! outputs to ports and upcalls, the connection tracker (`ct`,
//! `ct_clear`) and recirculation (the packet looked up again, here).

use super::*;
use messages::hash::symmetric_l4_hash;
use messages::tunnel::DecapError;

use conntrack::ipf::Verdict;

/// What running actions on a burst of packets needs at hand: the ports,
/// read-locked at the burst's first output and held for the rest of it (a
/// lookup per output would take and release the lock, and count a
/// reference, per packet), and the drop counts, added to the datapath's
/// once at the end.
pub(super) struct Egress<'a> {
    core: &'a Core,
    ports: Option<parking_lot::RwLockReadGuard<'a, BTreeMap<u32, Arc<Port>>>>,
    no_port: u64,
    errors: u64,
    /// Packets dropped for recirculating more than `MAX_RECIRC_DEPTH` times.
    too_deep: u64,
    /// Packets a meter dropped.
    metered: u64,
    /// The burst's time, for the connection tracker and flow statistics.
    now_ms: u64,
}

/// Most recirculations of one packet (OVS's `MAX_RECIRC_DEPTH`): a rule
/// set that loops through `ct(table=…)` ends with a counted drop.
const MAX_RECIRC_DEPTH: u8 = 6;

impl<'a> Egress<'a> {
    pub(super) fn new(core: &'a Core) -> Self {
        Egress {
            core,
            ports: None,
            no_port: 0,
            errors: 0,
            too_deep: 0,
            metered: 0,
            now_ms: monotonic_ms(),
        }
    }

    fn port(&mut self, number: u32) -> Option<&Arc<Port>> {
        let core = self.core;
        self.ports
            .get_or_insert_with(|| core.ports.read())
            .get(&number)
    }

    /// Runs datapath actions on a frame, known by its parsed key (a hit) or
    /// by its metadata alone (an execute).
    pub(super) fn execute(&mut self, frame: &mut Vec<u8>, known: Known<'_>, actions: &OdpActions) {
        self.run(frame, known, actions, 0);
    }

    /// [`Egress::execute`] for a packet recirculated `depth` times.
    fn run(&mut self, frame: &mut Vec<u8>, mut known: Known<'_>, actions: &[OdpAction], depth: u8) {
        // What a `trunc` leaves of the packet for the next output.
        let mut truncate: Option<usize> = None;
        for (i, action) in actions.iter().enumerate() {
            let applied = match action {
                OdpAction::Output(port) => {
                    let tunnel = known.tunnel();
                    // A truncation applies to the inner frame of a tunnel too.
                    let len = truncate.take().map_or(frame.len(), |n| n.min(frame.len()));
                    let frame = &frame[..len];
                    match self.port(*port) {
                        Some(p) => match &p.io {
                            PortIo::Tunnel(v) => {
                                p.counters.count_tx(&v.send(frame, &tunnel), frame.len())
                            }
                            io => p.counters.count_tx(&io.send(frame), frame.len()),
                        },
                        None => self.no_port += 1,
                    }
                    Ok(())
                }
                OdpAction::Trunc(n) => {
                    truncate = Some(*n as usize);
                    Ok(())
                }
                OdpAction::Meter(id) => {
                    if !self.core.meters.admit(*id, frame.len(), self.now_ms) {
                        // Over the band's rate: the band counted it.
                        self.metered += 1;
                        return;
                    }
                    Ok(())
                }
                OdpAction::Clone(inner) => {
                    let mut copy = frame.clone();
                    self.run(&mut copy, known.fork(), inner, depth);
                    Ok(())
                }
                OdpAction::CheckPktLen { pkt_len, gt, le } => {
                    let branch = if frame.len() > usize::from(*pkt_len) {
                        gt
                    } else {
                        le
                    };
                    if i + 1 == actions.len() {
                        self.run(frame, known, branch, depth);
                        return;
                    }
                    // Not the last action: the rest run on the original.
                    self.run(&mut frame.clone(), known.fork(), branch, depth);
                    Ok(())
                }
                OdpAction::Userspace { userdata, .. } => {
                    let len = truncate.take().map_or(frame.len(), |n| n.min(frame.len()));
                    let upcall = Upcall {
                        kind: UpcallKind::Action {
                            userdata: userdata.clone(),
                        },
                        packet: frame[..len].to_vec(),
                        ufid: UFID_LATER,
                        key: known.key(frame),
                        mru: 0,
                    };
                    self.core.queue_upcalls(&mut vec![upcall], &|| false);
                    Ok(())
                }
                OdpAction::SetMasked(SetHeader::SkbPriority { key: v, mask }) => {
                    let md = known.metadata_mut();
                    md.skb_priority = (md.skb_priority & !mask) | (v & mask);
                    Ok(())
                }
                OdpAction::SetMasked(SetHeader::SkbMark { key: v, mask }) => {
                    let md = known.metadata_mut();
                    md.pkt_mark = (md.pkt_mark & !mask) | (v & mask);
                    Ok(())
                }
                OdpAction::SetTunnel(attrs) => {
                    // The tunnel a following output to a tunnel port
                    // encapsulates with.
                    let mut t = Flow::default();
                    let _ = messages::tunnel::tunnel_from_attrs(
                        attrs,
                        &messages::tlv::current(),
                        &mut t,
                    );
                    known
                        .metadata_mut()
                        .tunnel
                        .copy_from_slice(t.tunnel_bytes());
                    Ok(())
                }
                OdpAction::SetMasked(header) => {
                    known.headers_changed();
                    apply_set_masked(frame, header)
                }
                OdpAction::PushVlan { tpid, tci } => {
                    known.headers_changed();
                    push_vlan(frame, *tpid, *tci)
                }
                OdpAction::PopVlan => {
                    known.headers_changed();
                    pop_vlan(frame)
                }
                OdpAction::PushMpls { lse, ethertype } => {
                    known.headers_changed();
                    push_mpls(frame, *lse, *ethertype)
                }
                OdpAction::PopMpls(ethertype) => {
                    known.headers_changed();
                    pop_mpls(frame, *ethertype)
                }
                OdpAction::SetMpls(lse) => {
                    known.headers_changed();
                    set_mpls(frame, *lse)
                }
                OdpAction::Ct(ct) => {
                    let cmd = CtCommand::of(ct);
                    let rest = &actions[i + 1..];
                    self.send_expired_fragments(&cmd, rest, depth);
                    let md = known.metadata_mut();
                    let tracker = &self.core.conntrack;
                    let mut state = CtMetadata::of(md);
                    let recirc_id = md.recirc_id;
                    match tracker
                        .fragments
                        .handle(frame, *md, cmd.zone, recirc_id, self.now_ms)
                    {
                        Verdict::Whole => {
                            if tracker.execute(frame, &mut state, &cmd, self.now_ms) {
                                known.headers_changed();
                            }
                        }
                        Verdict::Invalid => tracker.untrackable(&mut state, cmd.zone),
                        // The datagram's last fragment sends them all on.
                        Verdict::Held => return,
                        Verdict::Complete(mut whole) => {
                            tracker.execute(&mut whole.datagram, &mut state, &cmd, self.now_ms);
                            for mut f in whole.into_fragments() {
                                state.write_to(&mut f.md);
                                self.run(&mut f.frame, Known::Metadata(f.md), rest, depth);
                            }
                            return;
                        }
                    }
                    state.write_to(known.metadata_mut());
                    Ok(())
                }
                OdpAction::CtClear => {
                    CtMetadata::default().write_to(known.metadata_mut());
                    Ok(())
                }
                // Both algorithms hash the 5-tuple; the symmetric one serves
                // for the plain one too (OVS's dpif-netdev uses the packet's
                // RSS hash there).
                OdpAction::Hash { basis, .. } => {
                    let hash = symmetric_l4_hash(&known.key(frame), *basis);
                    known.metadata_mut().dp_hash = hash;
                    Ok(())
                }
                OdpAction::TnlPush(push) => {
                    // The outer UDP source port spreads flows (OVS hashes
                    // the inner 5-tuple too).
                    let hash = symmetric_l4_hash(&known.key(frame), 0);
                    push.push(frame, hash);
                    known.headers_changed();
                    Ok(())
                }
                OdpAction::TnlPop(vport) => {
                    if i + 1 == actions.len() {
                        self.tnl_pop(frame, &known, *vport, depth);
                        return;
                    }
                    self.tnl_pop(&mut frame.clone(), &known, *vport, depth);
                    Ok(())
                }
                OdpAction::Recirc(id) => {
                    known.metadata_mut().recirc_id = *id;
                    let key = known.key(frame);
                    if i + 1 == actions.len() {
                        self.recirculate(frame, key, depth);
                        return;
                    }
                    // Not the last action: the rest run on the original.
                    self.recirculate(&mut frame.clone(), key, depth);
                    Ok(())
                }
            };
            if let Err(e) = applied {
                self.errors += 1;
                tracing::debug!(error = %e, "action not applicable; packet dropped");
                return;
            }
        }
    }
}

impl Egress<'_> {
    /// Fragments whose datagram did not complete in time go on `+trk+inv`
    /// through the actions after a `ct` (OVS sends them with the next
    /// batch that goes through conntrack).
    fn send_expired_fragments(&mut self, cmd: &CtCommand, rest: &[OdpAction], depth: u8) {
        let tracker = &self.core.conntrack;
        for mut f in tracker.fragments.expired(self.now_ms) {
            let mut state = CtMetadata::default();
            tracker.untrackable(&mut state, cmd.zone);
            state.write_to(&mut f.md);
            self.run(&mut f.frame, Known::Metadata(f.md), rest, depth);
        }
    }

    /// OVS's `tnl_pop`: the outer headers come off and the inner frame is
    /// received on tunnel vport `vport` with their tunnel metadata (looked
    /// up again, as a recirculation). A header that does not parse drops
    /// the packet, counted on the vport.
    fn tnl_pop(&mut self, frame: &mut Vec<u8>, known: &Known<'_>, vport: u32, depth: u8) {
        let mut md = known.fork().metadata_flow();
        let Some(p) = self.port(vport).cloned() else {
            self.no_port += 1;
            return;
        };
        let PortIo::Tunnel(v) = &p.io else {
            self.no_port += 1;
            return;
        };
        let mut tunnel = Flow::default();
        if let Err(e) =
            messages::native_tunnel::pop(v.kind, frame, &messages::tlv::current(), &mut tunnel)
        {
            let c = match e {
                messages::native_tunnel::PopError::Decap(DecapError::Geneve(_)) => {
                    &v.counters.rx_unknown_critical
                }
                _ => &v.counters.rx_malformed,
            };
            c.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(error = %e, "tnl_pop dropped a packet");
            return;
        }
        p.counters.rx_packets.fetch_add(1, Ordering::Relaxed);
        p.counters
            .rx_bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        md.copy_tunnel_from(&tunnel);
        md.in_port = vport;
        let key = flow_extract(frame, &md);
        self.recirculate(frame, key, depth);
    }

    /// Looks a recirculated packet up again with its new `recirc_id` and
    /// conntrack state: a hit runs that megaflow's actions here, a miss
    /// goes up as an upcall (the slow path resumes the frozen translation).
    fn recirculate(&mut self, frame: &mut Vec<u8>, key: Flow, depth: u8) {
        if depth >= MAX_RECIRC_DEPTH {
            self.too_deep += 1;
            return;
        }
        let found = self.core.flows.read().lookup(&key).cloned();
        match found {
            Some(e) => {
                e.hit(1, frame.len() as u64, self.now_ms, key.tcp_flags);
                self.core.n_hit.fetch_add(1, Ordering::Relaxed);
                self.run(frame, Known::Key(&key), &e.actions, depth + 1);
            }
            None => {
                self.core.n_missed.fetch_add(1, Ordering::Relaxed);
                let upcall = Upcall {
                    kind: UpcallKind::Miss,
                    packet: std::mem::take(frame),
                    ufid: UFID_LATER,
                    key,
                    mru: 0,
                };
                self.core.queue_upcalls(&mut vec![upcall], &|| false);
            }
        }
    }
}

impl Drop for Egress<'_> {
    fn drop(&mut self) {
        if self.metered > 0 {
            self.core
                .n_metered
                .fetch_add(self.metered, Ordering::Relaxed);
        }
        if self.too_deep > 0 {
            self.core
                .n_recirc_too_deep
                .fetch_add(self.too_deep, Ordering::Relaxed);
        }
        if self.no_port > 0 {
            self.core
                .n_tx_no_port
                .fetch_add(self.no_port, Ordering::Relaxed);
        }
        if self.errors > 0 {
            self.core
                .n_exec_errors
                .fetch_add(self.errors, Ordering::Relaxed);
        }
    }
}

/// What the datapath knows of a frame while running actions on it. Most
/// action lists only rewrite and output, so the flow key is worked out only
/// for an upcall: copied from a hit's key, or parsed from the frame.
pub(super) enum Known<'a> {
    /// The frame's key, metadata included.
    Key(&'a Flow),
    /// The headers of the key, with metadata that actions changed.
    KeyWith(&'a Flow, PacketMetadata),
    /// The metadata only: the headers are the frame's.
    Metadata(PacketMetadata),
}

impl<'a> Known<'a> {
    /// The same knowledge, for a copy of the frame.
    fn fork(&self) -> Known<'a> {
        match self {
            Known::Key(k) => Known::Key(k),
            Known::KeyWith(k, md) => Known::KeyWith(k, *md),
            Known::Metadata(md) => Known::Metadata(*md),
        }
    }

    fn metadata_mut(&mut self) -> &mut PacketMetadata {
        if let Known::Key(k) = *self {
            *self = Known::KeyWith(k, PacketMetadata::of(k));
        }
        match self {
            Known::KeyWith(_, md) | Known::Metadata(md) => md,
            Known::Key(_) => unreachable!("replaced above"),
        }
    }

    /// The packet's tunnel (as a flow holding only tunnel fields): the one
    /// it came by, or the one a `set(tunnel(...))` gave it.
    fn tunnel(&self) -> Flow {
        let mut t = Flow::default();
        match self {
            Known::Key(k) => t.copy_tunnel_from(k),
            Known::KeyWith(_, md) | Known::Metadata(md) => t.set_tunnel_bytes(&md.tunnel),
        }
        t
    }

    /// The metadata as a flow (headers zero).
    fn metadata_flow(&mut self) -> Flow {
        self.metadata_mut().to_flow()
    }

    /// An action rewrote a header: the key no longer describes the frame.
    fn headers_changed(&mut self) {
        let md = match self {
            Known::Key(k) => PacketMetadata::of(k),
            Known::KeyWith(_, md) | Known::Metadata(md) => *md,
        };
        *self = Known::Metadata(md);
    }

    /// The frame's flow key now.
    fn key(&self, frame: &[u8]) -> Flow {
        match self {
            Known::Key(k) => **k,
            Known::KeyWith(k, md) => {
                let mut key = **k;
                md.write_to(&mut key);
                key
            }
            Known::Metadata(md) => flow_extract(frame, &md.to_flow()),
        }
    }
}
