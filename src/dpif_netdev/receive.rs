//! The receive path: each port's loop reads a burst of frames, extracts
//! their keys, looks them up (exact-match cache, then the megaflows), runs
//! the hits and queues the misses as upcalls.

use super::*;

/// The ufid of an upcall not computed yet. A receive thread leaves it to
/// the thread that reads the upcall, so that hashing the key does not slow
/// the packet path; a key whose ufid is this value is merely hashed again.
pub(super) const UFID_LATER: Ufid = 0;

/// Frames processed together (OVS's `NETDEV_MAX_BURST`).
pub(super) const BURST: usize = 32;

/// Most misses queued as one burst: what a receiver reads at once. A
/// receive loop holds its misses over the next input burst while that
/// still fits, so that a reader takes one whole burst by swapping buffers
/// instead of copying a second one after the first; it never holds them
/// while waiting for input.
pub(super) const UPCALL_BURST: usize = messages::dpif::UPCALL_MAX_BATCH;

/// Frames read but not yet processed, with their input ports.
pub(super) type Burst = Vec<(u32, Vec<u8>)>;

/// What a receive loop does when its port's socket fails: an error such as
/// `ENETDOWN` (the interface went down) is transient, so the loop counts it
/// (`rx_errors`), logs it at a limited rate, waits (10 ms, doubling to 1 s
/// while failures go on) and reads again, instead of leaving the port deaf.
pub(super) struct RxErrors {
    backoff: std::time::Duration,
}

static RX_ERROR_LOG: messages::log_limit::RateLimit = messages::log_limit::RateLimit::new(5, 20);

impl RxErrors {
    pub(super) fn new() -> Self {
        RxErrors {
            backoff: std::time::Duration::ZERO,
        }
    }

    pub(super) fn ok(&mut self) {
        self.backoff = std::time::Duration::ZERO;
    }

    pub(super) fn failed(&mut self, port: &Port, e: &std::io::Error) {
        port.counters.rx_errors.fetch_add(1, Ordering::Relaxed);
        self.backoff = (self.backoff * 2).clamp(
            std::time::Duration::from_millis(10),
            std::time::Duration::from_secs(1),
        );
        if let Some(dropped) = RX_ERROR_LOG.check() {
            tracing::warn!(port = %port.info.name, error = %e, retry_in = ?self.backoff, dropped_messages = dropped, "receive failed");
        }
        std::thread::sleep(self.backoff);
    }
}

/// Whether a receive loop may block waiting for the next frame: only with
/// nothing read and no misses held (held misses would wait for the next
/// input too, up to a poll interval).
pub(super) fn may_wait(burst: &Burst, rx: &RxState) -> bool {
    burst.is_empty() && rx.misses.is_empty()
}

/// What a receive thread keeps from one burst to the next: its exact-match
/// cache, and the burst's keys, lookup results and upcalls, whose buffers
/// are reused rather than allocated per burst.
pub(super) struct RxState {
    emc: Emc,
    keys: Vec<Flow>,
    found: Vec<Option<Arc<FlowEntry>>>,
    /// Whether `found[i]` came from the exact-match cache.
    from_emc: Vec<bool>,
    misses: Vec<Upcall>,
}

impl RxState {
    pub(super) fn new(emc: Emc) -> Self {
        RxState {
            emc,
            keys: Vec::with_capacity(BURST),
            found: Vec::with_capacity(BURST),
            from_emc: Vec::with_capacity(BURST),
            misses: Vec::with_capacity(UPCALL_BURST),
        }
    }
}

impl Core {
    /// A receive loop's state, with its own exact-match cache.
    pub(super) fn rx_state(&self) -> RxState {
        RxState::new(Emc::new(self.emc_entries, self.emc_insert_inv_prob))
    }

    /// A port's receive loop. A tunnel vport's packets each come with
    /// their own tunnel metadata; other ports' with their input port.
    pub(super) fn rx_loop(&self, port: &Port, stop: &AtomicBool) {
        let tunnel = match &port.io {
            PortIo::Tunnel(vport) => Some(vport),
            _ => None,
        };
        let mut rx = self.rx_state();
        let mut burst: Burst = Vec::with_capacity(BURST);
        let mut mds: Vec<Flow> = Vec::with_capacity(if tunnel.is_some() { BURST } else { 0 });
        let mut buf = Vec::new();
        let mut scratch = match tunnel {
            Some(_) => Vec::new(),
            None => vec![0; MAX_FRAME],
        };
        let mut md = Flow {
            in_port: port.info.number,
            ..Flow::default()
        };
        let mut errors = RxErrors::new();
        while !stop.load(Ordering::Relaxed) {
            // Wait for one frame, then take whatever else is already there;
            // held misses are queued at once when no frame is there.
            while burst.len() < BURST {
                let wait = may_wait(&burst, &rx);
                let read = match tunnel {
                    Some(vport) => vport.recv(&mut buf, &mut md, wait),
                    None => port.io.recv(&mut buf, &mut scratch, wait),
                };
                match read {
                    Ok(true) => {
                        errors.ok();
                        burst.push((port.info.number, std::mem::take(&mut buf)));
                        if tunnel.is_some() {
                            mds.push(md);
                        }
                    }
                    Ok(false) => break,
                    Err(e) => {
                        errors.failed(port, &e);
                        break;
                    }
                }
            }
            port.counters
                .rx_packets
                .fetch_add(burst.len() as u64, Ordering::Relaxed);
            let bytes: usize = burst.iter().map(|(_, f)| f.len()).sum();
            port.counters
                .rx_bytes
                .fetch_add(bytes as u64, Ordering::Relaxed);
            // A full burst may have more input right behind it.
            let more_input = burst.len() == BURST;
            self.receive_with(&mut burst, &mut rx, tunnel.map(|_| &mds[..]));
            mds.clear();
            self.queue_misses(&mut rx, more_input, &|| false);
        }
    }

    pub(super) fn replay_loop(&self, number: u32, path: &std::path::Path, stop: &AtomicBool) {
        let frames = match read_replay_file(path) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "replay file unreadable");
                return;
            }
        };
        tracing::info!(port = number, frames = frames.len(), path = %path.display(), "replaying");
        let keep_waiting = || !stop.load(Ordering::Relaxed);
        self.replay(frames, number, &mut self.rx_state(), &keep_waiting, stop);
    }

    /// Feeds frames in bursts, waiting for room in the upcall queue.
    pub(super) fn replay(
        &self,
        frames: impl IntoIterator<Item = ReplayFrame>,
        default_port: u32,
        rx: &mut RxState,
        keep_waiting: &dyn Fn() -> bool,
        stop: &AtomicBool,
    ) {
        let mut burst: Burst = Vec::with_capacity(BURST);
        let mut frames = frames.into_iter().peekable();
        while !stop.load(Ordering::Relaxed) {
            burst.extend(
                frames
                    .by_ref()
                    .take(BURST)
                    .map(|f| (f.in_port.unwrap_or(default_port), f.frame)),
            );
            if burst.is_empty() {
                return;
            }
            let n = burst.len() as u64;
            self.receive(&mut burst, rx);
            let more_input = frames.peek().is_some();
            self.queue_misses(rx, more_input, keep_waiting);
            self.n_replayed.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The fast path for a burst of frames (emptied): hits run their
    /// megaflow's actions, misses join `rx.misses` (see
    /// [`Core::queue_misses`]).
    pub(super) fn receive(&self, burst: &mut Burst, rx: &mut RxState) {
        self.receive_with(burst, rx, None)
    }

    /// [`Core::receive`], each frame with its own metadata (`mds`, as
    /// from a tunnel vport) instead of its input port alone.
    pub(super) fn receive_with(&self, burst: &mut Burst, rx: &mut RxState, mds: Option<&[Flow]>) {
        if burst.is_empty() {
            return;
        }
        let now = monotonic_ms();
        let RxState {
            emc,
            keys,
            found,
            from_emc,
            misses,
        } = rx;
        // Extracted in place: the buffer keeps its keys between bursts.
        keys.resize(keys.len().max(burst.len()), Flow::default());
        keys.truncate(burst.len());
        let mut md = Flow::default();
        for (i, ((in_port, frame), key)) in burst.iter().zip(keys.iter_mut()).enumerate() {
            match mds.and_then(|m| m.get(i)) {
                Some(m) => flow_extract_into(frame, m, key),
                None => {
                    md.in_port = *in_port;
                    flow_extract_into(frame, &md, key);
                }
            }
        }
        found.clear();
        found.extend(keys.iter().map(|k| emc.lookup(k)));
        from_emc.clear();
        from_emc.extend(found.iter().map(Option::is_some));
        self.flows.read().lookup_burst(keys, found);
        let mut n_hit = 0;
        credit_hits(burst, keys, found, now);
        let mut egress = Egress::new(self);
        for (i, (_, mut frame)) in burst.drain(..).enumerate() {
            let key = &keys[i];
            match found[i].take() {
                Some(e) => {
                    if !from_emc[i] {
                        emc.maybe_insert(key, &e);
                    }
                    egress.execute(&mut frame, Known::Key(key), &e.actions);
                    n_hit += 1;
                }
                None => misses.push(Upcall {
                    kind: UpcallKind::Miss,
                    packet: frame,
                    // Filled in by the reader (see `recv_upcalls`).
                    ufid: UFID_LATER,
                    key: *key,
                    mru: 0,
                }),
            }
        }
        self.n_hit.fetch_add(n_hit, Ordering::Relaxed);
    }

    /// Queues the misses held in `rx` as upcalls, waiting for room as long
    /// as `keep_waiting` says so; while `more_input` is right behind and
    /// another input burst's misses would still fit in one upcall burst,
    /// holds them instead.
    pub(super) fn queue_misses(
        &self,
        rx: &mut RxState,
        more_input: bool,
        keep_waiting: &dyn Fn() -> bool,
    ) {
        let misses = &mut rx.misses;
        if misses.is_empty() || (more_input && misses.len() + BURST <= UPCALL_BURST) {
            return;
        }
        self.n_missed
            .fetch_add(misses.len() as u64, Ordering::Relaxed);
        self.queue_upcalls(misses, keep_waiting);
    }

    pub(super) fn queue_upcalls(&self, upcalls: &mut Vec<Upcall>, keep_waiting: &dyn Fn() -> bool) {
        let lost = if self.queues.len() == 1 {
            self.queues[0].push(upcalls, keep_waiting)
        } else {
            // The queue follows from the ufid, needed here after all.
            for u in upcalls.iter_mut() {
                u.ufid = key_ufid(&u.key);
            }
            let mut lost = 0;
            for (i, q) in self.queues.iter().enumerate() {
                let n = self.queues.len() as u128;
                let (mut mine, rest): (Vec<Upcall>, Vec<Upcall>) =
                    upcalls.drain(..).partition(|u| (u.ufid % n) as usize == i);
                *upcalls = rest;
                lost += q.push(&mut mine, keep_waiting);
            }
            lost
        };
        self.n_lost.fetch_add(lost as u64, Ordering::Relaxed);
    }
}

/// Credits a burst's hits to their megaflows before the packets run, as
/// OVS does, once per run of hits on one megaflow: the packets of a flow
/// tend to arrive together, and each credit costs the megaflow three
/// atomic operations (OVS batches a burst's packets per flow for the same
/// reason).
pub(super) fn credit_hits(
    burst: &Burst,
    keys: &[Flow],
    found: &[Option<Arc<FlowEntry>>],
    now_ms: u64,
) {
    let mut i = 0;
    while i < found.len() {
        let Some(flow) = &found[i] else {
            i += 1;
            continue;
        };
        let (mut packets, mut bytes, mut tcp_flags) = (0, 0, 0);
        while let Some(Some(next)) = found.get(i) {
            if !Arc::ptr_eq(next, flow) {
                break;
            }
            packets += 1;
            bytes += burst[i].1.len() as u64;
            tcp_flags |= keys[i].tcp_flags;
            i += 1;
        }
        flow.hit(packets, bytes, now_ms, tcp_flags);
    }
}
