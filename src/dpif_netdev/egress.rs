//! Running datapath actions on frames: rewrites, VLAN pushes and pops,
//! outputs to ports and upcalls.

use super::*;

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
}

impl<'a> Egress<'a> {
    pub(super) fn new(core: &'a Core) -> Self {
        Egress {
            core,
            ports: None,
            no_port: 0,
            errors: 0,
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
    pub(super) fn execute(
        &mut self,
        frame: &mut Vec<u8>,
        mut known: Known<'_>,
        actions: &OdpActions,
    ) {
        for action in actions {
            let applied = match action {
                OdpAction::Output(port) => {
                    match self.port(*port) {
                        Some(p) => p.counters.count_tx(&p.io.send(frame)),
                        None => self.no_port += 1,
                    }
                    Ok(())
                }
                OdpAction::Userspace { userdata, .. } => {
                    let upcall = Upcall {
                        kind: UpcallKind::Action {
                            userdata: userdata.clone(),
                        },
                        packet: frame.clone(),
                        ufid: UFID_LATER,
                        key: known.key(frame),
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
                OdpAction::Ct(_) => Err(ExecuteError::Unsupported { action: "ct" }),
                OdpAction::CtClear => Err(ExecuteError::Unsupported { action: "ct_clear" }),
                OdpAction::Recirc(_) => Err(ExecuteError::Unsupported { action: "recirc" }),
            };
            if let Err(e) = applied {
                self.errors += 1;
                tracing::debug!(error = %e, "action not applicable; packet dropped");
                return;
            }
        }
    }
}

impl Drop for Egress<'_> {
    fn drop(&mut self) {
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

impl Known<'_> {
    fn metadata_mut(&mut self) -> &mut PacketMetadata {
        if let Known::Key(k) = *self {
            *self = Known::KeyWith(k, PacketMetadata::of(k));
        }
        match self {
            Known::KeyWith(_, md) | Known::Metadata(md) => md,
            Known::Key(_) => unreachable!("replaced above"),
        }
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
