//! `upcalld bench conntrack`: the userspace datapath's connection tracker
//! under a stateful firewall's megaflows (`ct` then `recirc`; `+new` is
//! committed, `+est` passes), as OVS's userspace conntrack runs them:
//!
//! - **new**: N TCP SYNs of distinct connections, each committed;
//! - **handshake**: their SYN-ACKs and ACKs (not timed);
//! - **established**: M data segments per connection, round robin, every
//!   one `+est` after a window check;
//! - **baseline**: the established segments again through a datapath with
//!   one plain `output` megaflow, so that what `ct` and recirculation add
//!   per packet is the difference.
//!
//! Packets are fed from the calling thread as a port's receive loop feeds
//! them. `--export DIR` writes the frames (replay TSV) so that
//! `tools/conntrack_sitting.py` feeds OVS 3.1 the same ones.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::dpif::{DpifOp, FlowPut, PutMode};
use messages::flow::{CS_ESTABLISHED, CS_INVALID, CS_NEW, CS_RELATED, CS_TRACKED};
use messages::odp::{CtAction, OdpAction};
use messages::wire::checksum;
use messages::{Flow, Megaflow};

use crate::dpif_netdev::{Injector, Netdev, NetdevConfig, ReplayFrame};

/// The workload's frames, by phase.
pub struct Workload {
    pub syn: Vec<ReplayFrame>,
    pub handshake: Vec<ReplayFrame>,
    pub established: Vec<ReplayFrame>,
}

const CLIENT_PORT: u32 = 1;
const SERVER_PORT: u32 = 2;
const PAYLOAD: usize = 100;

/// The two ends of a TCP connection, in one direction.
#[derive(Clone, Copy)]
struct Ends {
    src: u32,
    dst: u32,
    sport: u16,
    dport: u16,
}

impl Ends {
    fn reversed(self) -> Ends {
        Ends {
            src: self.dst,
            dst: self.src,
            sport: self.dport,
            dport: self.sport,
        }
    }

    /// A segment from `src` to `dst` with valid checksums.
    fn frame(self, flags: u8, seq: u32, ack: u32, payload: usize) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        let total = 20 + 20 + payload;
        let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&self.src.to_be_bytes());
        ip.extend_from_slice(&self.dst.to_be_bytes());
        let sum = checksum::internet(&ip);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        let mut tcp = Vec::with_capacity(20 + payload);
        tcp.extend_from_slice(&self.sport.to_be_bytes());
        tcp.extend_from_slice(&self.dport.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.resize(20 + payload, 0x5a);
        let pseudo = checksum::pseudo_header_v4(self.src, self.dst, 6, tcp.len() as u16);
        let sum = !checksum::combine(pseudo, checksum::ones_sum(&tcp));
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        f.extend_from_slice(&ip);
        f.extend_from_slice(&tcp);
        f
    }
}

impl Workload {
    /// `n` connections (at most 2^24) from distinct clients to one server,
    /// with `m` data segments each.
    pub fn new(n: u32, m: u32) -> Workload {
        let client = |i: u32| Ends {
            src: 0x0b00_0000 + i,
            dst: 0x0a02_0001,
            sport: 40000,
            dport: 80,
        };
        let frame = |port, frame| ReplayFrame {
            in_port: Some(port),
            frame,
        };
        let (syn, syn_ack, ack, push_ack) = (0x02, 0x12, 0x10, 0x18);
        let syns = (0..n)
            .map(|i| frame(CLIENT_PORT, client(i).frame(syn, 1000, 0, 0)))
            .collect();
        let handshake = (0..n)
            .flat_map(|i| {
                let c = client(i);
                [
                    frame(SERVER_PORT, c.reversed().frame(syn_ack, 5000, 1001, 0)),
                    frame(CLIENT_PORT, c.frame(ack, 1001, 5001, 0)),
                ]
            })
            .collect();
        let established = (0..m)
            .flat_map(|k| {
                (0..n).map(move |i| {
                    let seq = 1001 + k * PAYLOAD as u32;
                    frame(CLIENT_PORT, client(i).frame(push_ack, seq, 5001, PAYLOAD))
                })
            })
            .collect();
        Workload {
            syn: syns,
            handshake,
            established,
        }
    }

    /// Writes each phase as a replay file (`in_port<TAB>hex`) in `dir`.
    pub fn export(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, frames) in [
            ("syn", &self.syn),
            ("handshake", &self.handshake),
            ("established", &self.established),
        ] {
            let text: String = frames
                .iter()
                .map(|f| {
                    let hex: String = f.frame.iter().map(|b| format!("{b:02x}")).collect();
                    format!("{}\t{hex}\n", f.in_port.unwrap_or(CLIENT_PORT))
                })
                .collect();
            let path = dir.join(format!("{name}.tsv"));
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }
}

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct ConntrackBench {
    pub connections: u64,
    pub established_packets: u64,
    pub new_s: f64,
    pub established_s: f64,
    pub baseline_s: f64,
    pub tracked: u64,
    pub invalid: u64,
    pub forwarded: u64,
}

impl ConntrackBench {
    pub fn json(&self) -> String {
        let per = |s: f64, n: u64| s / n.max(1) as f64 * 1e9;
        format!(
            "{{\"connections\":{},\"established_packets\":{},\"new_s\":{:.6},\"established_s\":{:.6},\"baseline_s\":{:.6},\"new_conns_per_s\":{:.0},\"established_pkts_per_s\":{:.0},\"ns_per_established_pkt\":{:.1},\"ns_ct_per_established_pkt\":{:.1},\"tracked\":{},\"invalid\":{},\"forwarded\":{}}}",
            self.connections,
            self.established_packets,
            self.new_s,
            self.established_s,
            self.baseline_s,
            self.connections as f64 / self.new_s.max(f64::MIN_POSITIVE),
            self.established_packets as f64 / self.established_s.max(f64::MIN_POSITIVE),
            per(self.established_s, self.established_packets),
            per(self.established_s - self.baseline_s, self.established_packets),
            self.tracked,
            self.invalid,
            self.forwarded,
        )
    }
}

/// A datapath with two ports that take output (replay ports playing an
/// empty file), fed from this thread.
fn datapath(empty: &Path) -> anyhow::Result<Arc<Netdev>> {
    let dp = Arc::new(Netdev::new(NetdevConfig::default()));
    for number in [CLIENT_PORT, SERVER_PORT] {
        dp.port_add(&PortSpec {
            name: format!("sink{number}"),
            kind: PortKind::Replay {
                path: empty.to_path_buf(),
            },
            number: Some(number),
        })?;
    }
    Ok(dp)
}

fn put(
    dp: &Netdev,
    ufid: u128,
    key: &Flow,
    mask: &Flow,
    actions: Vec<OdpAction>,
) -> anyhow::Result<()> {
    let r = dp.operate(&mut [DpifOp::put(FlowPut {
        ufid,
        megaflow: Megaflow::new(key, mask),
        actions: Arc::new(actions),
        mode: PutMode::Create,
        reset_stats: false,
    })]);
    r.into_iter().next().expect("one result")?;
    Ok(())
}

/// The firewall's megaflows, as OVS translates
/// `ip,ct_state=-trk,actions=ct(table=1)`, `table=1,ip,ct_state=+trk+new,
/// actions=ct(commit),output:2` and `table=1,ip,ct_state=+trk+est,
/// actions=output:2`.
fn install_firewall(dp: &Netdev) -> anyhow::Result<()> {
    let ip = |recirc_id, ct_state| {
        let key = Flow {
            recirc_id,
            ct_state,
            dl_type: 0x0800,
            ..Flow::default()
        };
        let mask = Flow {
            recirc_id: u32::MAX,
            ct_state: if recirc_id == 0 {
                CS_TRACKED
            } else {
                CS_TRACKED | CS_NEW | CS_ESTABLISHED | CS_RELATED | CS_INVALID
            },
            dl_type: u16::MAX,
            ..Flow::default()
        };
        (key, mask)
    };
    let ct = |commit| {
        OdpAction::Ct(CtAction {
            commit,
            ..CtAction::default()
        })
    };
    let (k, m) = ip(0, 0);
    put(dp, 1, &k, &m, vec![ct(false), OdpAction::Recirc(1)])?;
    let (k, m) = ip(1, CS_TRACKED | CS_NEW);
    put(
        dp,
        2,
        &k,
        &m,
        vec![ct(true), OdpAction::Output(SERVER_PORT)],
    )?;
    let (k, m) = ip(1, CS_TRACKED | CS_ESTABLISHED);
    put(dp, 3, &k, &m, vec![OdpAction::Output(SERVER_PORT)])
}

/// Feeds `frames` as one port's receive loop would; returns the seconds.
fn timed(injector: &mut Injector<'_>, frames: &[ReplayFrame]) -> f64 {
    let start = Instant::now();
    for chunk in frames.chunks(4096) {
        injector.inject(chunk);
    }
    start.elapsed().as_secs_f64()
}

/// Runs the benchmark.
pub fn conntrack(n: u32, m: u32, export: Option<&Path>) -> anyhow::Result<ConntrackBench> {
    anyhow::ensure!((1..1 << 24).contains(&n), "--connections: 1 to 2^24");
    let w = Workload::new(n, m);
    if let Some(dir) = export {
        w.export(dir)?;
    }
    let empty = std::env::temp_dir().join(format!("upcalld-bench-empty-{}", std::process::id()));
    std::fs::write(&empty, "").with_context(|| format!("writing {}", empty.display()))?;
    let dp = datapath(&empty)?;
    install_firewall(&dp)?;
    let mut injector = dp.injector(CLIENT_PORT);
    let new_s = timed(&mut injector, &w.syn);
    timed(&mut injector, &w.handshake);
    let tx_before: u64 = dp.tx_packets().values().sum();
    let established_s = timed(&mut injector, &w.established);
    let forwarded = dp.tx_packets().values().sum::<u64>() - tx_before;
    let ct = dp.conntrack();
    let tracked = ct.len() as u64;
    let invalid = ct
        .counters
        .invalid
        .load(std::sync::atomic::Ordering::Relaxed);

    let plain = datapath(&empty)?;
    let all_ip = Flow {
        dl_type: 0x0800,
        ..Flow::default()
    };
    let mask = Flow {
        recirc_id: u32::MAX,
        dl_type: u16::MAX,
        ..Flow::default()
    };
    put(
        &plain,
        1,
        &all_ip,
        &mask,
        vec![OdpAction::Output(SERVER_PORT)],
    )?;
    let mut injector = plain.injector(CLIENT_PORT);
    timed(&mut injector, &w.syn);
    let baseline_s = timed(&mut injector, &w.established);
    let _ = std::fs::remove_file(&empty);
    Ok(ConntrackBench {
        connections: n.into(),
        established_packets: w.established.len() as u64,
        new_s,
        established_s,
        baseline_s,
        tracked,
        invalid,
        forwarded,
    })
}
