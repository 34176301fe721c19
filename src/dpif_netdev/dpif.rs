//! The userspace datapath as a [`Dpif`]: upcalls read from its queues,
//! flow operations on its megaflow table, executes, ports.

use super::*;
use messages::dpif::MeterFeatures;
use messages::meter::{Meter, MeterStats, MAX_BANDS, MAX_METERS};

pub(super) fn put_error(e: PutError) -> DpifError {
    DpifError::Refused(e.to_string())
}

impl Dpif for Netdev {
    fn kind(&self) -> &'static str {
        "userspace"
    }

    fn backend_counters(&self) -> Vec<(&'static str, u64)> {
        vec![("meter_drops", self.core.n_metered.load(Ordering::Relaxed))]
    }

    fn meter_features(&self) -> Option<MeterFeatures> {
        Some(MeterFeatures {
            max_meters: MAX_METERS,
            max_bands: MAX_BANDS as u8,
        })
    }

    fn meter_set(&self, id: u32, meter: &Meter) -> Result<(), DpifError> {
        if id >= MAX_METERS {
            return Err(DpifError::Refused(format!(
                "meter id {id} beyond the datapath's {MAX_METERS}"
            )));
        }
        self.core.meters.set(id, meter, monotonic_ms());
        Ok(())
    }

    fn meter_del(&self, id: u32) -> Result<(), DpifError> {
        self.core.meters.delete(id);
        Ok(())
    }

    fn meter_stats(&self, id: u32) -> Result<MeterStats, DpifError> {
        self.core
            .meters
            .stats(id)
            .ok_or_else(|| DpifError::Refused(format!("no datapath meter {id}")))
    }

    fn recv_upcalls(
        &self,
        queue: usize,
        max: usize,
        timeout: Duration,
        out: &mut Vec<Upcall>,
    ) -> Result<(), DpifError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(DpifError::Closed);
        }
        let q = &self.core.queues[queue % self.core.queues.len()];
        let from = out.len();
        q.pop_batch(max, timeout, out);
        for up in &mut out[from..] {
            if up.ufid == UFID_LATER {
                up.ufid = key_ufid(&up.key);
            }
        }
        Ok(())
    }

    fn operate(&self, ops: &mut [DpifOp]) -> Vec<Result<(), DpifError>> {
        // Flow changes under one write lock; packets run after it.
        let mut results = Vec::with_capacity(ops.len());
        let mut n_executes = 0;
        {
            let mut flows = self.core.flows.write();
            for op in ops.iter() {
                let result = match op {
                    DpifOp::FlowPut(put) => {
                        let FlowPut {
                            ufid,
                            ref megaflow,
                            ref actions,
                            mode,
                            reset_stats,
                        } = **put;
                        match mode {
                            PutMode::Create => flows.create(ufid, megaflow, actions),
                            PutMode::Modify => flows.modify(ufid, actions, reset_stats),
                            PutMode::CreateOrModify if flows.get(ufid).is_some() => {
                                flows.modify(ufid, actions, reset_stats)
                            }
                            PutMode::CreateOrModify => flows.create(ufid, megaflow, actions),
                        }
                        .map_err(put_error)
                    }
                    DpifOp::FlowDel { ufid } => match flows.delete(*ufid) {
                        Some(_) => Ok(()),
                        None => Err(put_error(PutError::NoSuchFlow(*ufid))),
                    },
                    DpifOp::Execute(_) => {
                        n_executes += 1;
                        Ok(())
                    }
                };
                results.push(result);
            }
            self.core
                .n_flows
                .store(flows.len() as u64, Ordering::Relaxed);
        }
        if n_executes > 0 {
            let mut egress = Egress::new(&self.core);
            for op in ops.iter_mut() {
                if let DpifOp::Execute(e) = op {
                    // The embedded datapath sends fragments on as they
                    // came, never a reassembled datagram: no MRU to honour.
                    let Execute {
                        packet,
                        metadata,
                        actions,
                        mru: _,
                    } = &mut **e;
                    egress.execute(packet, Known::Metadata(*metadata), actions);
                }
            }
        }
        results
    }

    fn flow_dump(&self) -> Result<Vec<DpFlow>, DpifError> {
        Ok(self.core.flows.read().dump())
    }

    fn flow_dump_terse(&self, out: &mut Vec<(Ufid, FlowStats)>) -> Result<(), DpifError> {
        // Under the table's read lock: a copy of two words and the
        // counters per flow, not a flow built in full.
        self.core.flows.read().dump_terse(out);
        Ok(())
    }

    fn flow_get(&self, ufid: Ufid) -> Result<Option<DpFlow>, DpifError> {
        Ok(self.core.flows.read().get_full(ufid))
    }

    fn stats(&self) -> DpStats {
        DpStats {
            n_hit: self.core.n_hit.load(Ordering::Relaxed),
            n_missed: self.core.n_missed.load(Ordering::Relaxed),
            n_lost: self.core.n_lost.load(Ordering::Relaxed),
            n_flows: self.core.n_flows.load(Ordering::Relaxed),
        }
    }

    fn port_add(&self, spec: &PortSpec) -> Result<u32, DpifError> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(DpifError::Closed);
        }
        let mut ports = self.core.ports.write();
        if ports.values().any(|p| p.info.name == spec.name) {
            return Err(DpifError::Refused(format!(
                "port {:?} already exists",
                spec.name
            )));
        }
        let number = match spec.number {
            Some(n) if ports.contains_key(&n) => {
                return Err(DpifError::Refused(format!("port number {n} is taken")))
            }
            Some(n) => n,
            None => (1..)
                .find(|n| !ports.contains_key(n))
                .expect("a free port number"),
        };
        let (io, replay) = match &spec.kind {
            PortKind::System => (PortIo::open_packet(&spec.name)?, None),
            PortKind::Internal => (PortIo::open_tap(&spec.name)?, None),
            PortKind::Replay { path } => (PortIo::Replay, Some(path.clone())),
            PortKind::Tunnel {
                kind,
                udp_port,
                vxlan_gbp,
            } => (
                PortIo::Tunnel(super::tunnel::TunnelVport::open(
                    *kind, *udp_port, *vxlan_gbp,
                )?),
                None,
            ),
        };
        let port = Arc::new(Port {
            info: PortInfo {
                number,
                name: spec.name.clone(),
                kind: spec.kind.clone(),
            },
            io,
            counters: PortCounters::default(),
            added: std::time::Instant::now(),
        });
        ports.insert(number, port.clone());
        drop(ports);
        self.start_rx(port, replay);
        tracing::info!(port = number, name = %spec.name, kind = ?spec.kind, "port added");
        Ok(number)
    }

    fn port_del(&self, number: u32) -> Result<(), DpifError> {
        let port = self.core.ports.write().remove(&number);
        if port.is_none() {
            return Err(DpifError::NoSuchPort(number));
        }
        if let Some(t) = self.rx_threads.lock().remove(&number) {
            t.stop.store(true, Ordering::Relaxed);
            let _ = t.handle.join();
        }
        Ok(())
    }

    fn ports(&self) -> Vec<PortInfo> {
        self.core
            .ports
            .read()
            .values()
            .map(|p| p.info.clone())
            .collect()
    }

    fn port_stats(&self) -> Vec<PortStats> {
        let ports: Vec<Arc<Port>> = self.core.ports.read().values().cloned().collect();
        ports
            .iter()
            .map(|p| {
                let c = &p.counters;
                c.collect_drops(&p.io);
                let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
                PortStats {
                    number: p.info.number,
                    name: p.info.name.clone(),
                    rx_packets: get(&c.rx_packets),
                    rx_bytes: get(&c.rx_bytes),
                    rx_dropped: get(&c.rx_dropped),
                    rx_errors: get(&c.rx_errors),
                    tx_packets: get(&c.tx_packets),
                    tx_bytes: get(&c.tx_bytes),
                    tx_dropped: 0,
                    tx_errors: get(&c.tx_errors),
                    duration: Some(p.added.elapsed()),
                }
            })
            .collect()
    }
}
