//! `upcalld bench setup-rate`: the flow-setup benchmark on the userspace
//! datapath, through the whole pipeline. A miss pass (every packet is
//! upcalled, translated, installed and executed) and then a hit pass of the
//! same packets; the difference per upcall is the slow path's cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::pipeline::{Pipeline, PipelineConfig};
use actors::revalidator::RevalidatorConfig;
use actors::stats::{DropReason, PipelineStats};
use actors::tables::Tables;
use anyhow::Context as _;
use messages::dpif::Dpif;
use messages::threads::{allowed_cpus, datapath_first, start_thread_as, CpuPlacement};

use crate::config::Placement;
use crate::dpif_netdev::{read_replay_file, Netdev, NetdevConfig, ReplayFrame};

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupRate {
    pub packets: u64,
    pub upcalls: u64,
    pub megaflows: u64,
    pub miss_pass_s: f64,
    pub hit_pass_s: f64,
    /// CPU seconds each thread spent in the miss pass, by thread name
    /// (where the slow path's time goes).
    pub miss_pass_cpu: BTreeMap<String, f64>,
    /// Growth of resident memory in the miss pass, in bytes.
    pub miss_pass_rss_growth: i64,
    /// Rules that `learn` actions added (both passes).
    pub rules_learned: u64,
}

impl SetupRate {
    pub fn us_per_upcall(&self) -> f64 {
        if self.upcalls == 0 {
            return 0.0;
        }
        (self.miss_pass_s - self.hit_pass_s) / self.upcalls as f64 * 1e6
    }

    pub fn upcalls_per_s(&self) -> f64 {
        self.upcalls as f64 / self.miss_pass_s.max(f64::MIN_POSITIVE)
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"packets\":{},\"upcalls\":{},\"megaflows\":{},\"miss_pass_s\":{:.6},\"hit_pass_s\":{:.6},\"us_per_upcall\":{:.4},\"upcalls_per_s\":{:.0},\"rules_learned\":{}}}",
            self.packets,
            self.upcalls,
            self.megaflows,
            self.miss_pass_s,
            self.hit_pass_s,
            self.us_per_upcall(),
            self.upcalls_per_s(),
            self.rules_learned
        )
    }
}

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct SetupRateOptions {
    pub handlers: usize,
    pub batch_size: usize,
    /// Where threads run, as the daemon's `[cpus] placement`: the feeder
    /// stands for the datapath's port thread.
    pub placement: Placement,
    /// As the daemon's `transparent_huge_pages`.
    pub transparent_huge_pages: bool,
}

/// The feeder's CPUs and the actors', for `placement`.
fn thread_cpus(placement: Placement) -> (Vec<usize>, CpuPlacement) {
    match placement {
        Placement::Auto => datapath_first(&allowed_cpus()).unwrap_or_default(),
        Placement::None => Default::default(),
    }
}

/// Upcalls fully dealt with: translated, or dropped with a counted reason.
fn upcalls_done(s: &PipelineStats) -> u64 {
    PipelineStats::get(&s.upcalls_handled)
        + s.dropped(DropReason::HandlerPanic)
        + s.dropped(DropReason::HandlerGone)
}

/// CPU time of the calling thread.
fn own_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU seconds of the process's live threads, summed by thread name
/// (`/proc/self/task/*/schedstat`; empty where the kernel lacks it).
fn cpu_by_thread() -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let dir = task.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
        let ns: Option<u64> = std::fs::read_to_string(dir.join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok());
        if let Some(ns) = ns {
            *out.entry(comm.trim().to_string()).or_insert(0.0) += ns as f64 / 1e9;
        }
    }
    out
}

/// Resident memory of the process, in bytes (0 where unknown).
fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// What one pass took: wall time, CPU seconds by thread name, and how much
/// the resident memory grew.
pub struct PassTimes {
    pub wall: Duration,
    pub cpu: BTreeMap<String, f64>,
    pub rss_growth: i64,
}

/// The datapath's port thread in the benchmark: one thread feeds every
/// pass through one [`crate::dpif_netdev::Injector`], keeping its receive
/// state (its exact-match cache) from pass to pass, as a port's receive
/// thread lives on between bursts of traffic.
pub struct Feeder {
    go: std::sync::mpsc::Sender<()>,
    /// The feeder's CPU time for a pass, and when it fed its last frame.
    fed: std::sync::mpsc::Receiver<(Duration, Instant)>,
    thread: std::thread::JoinHandle<()>,
}

impl Feeder {
    /// Starts the feeder on `cpus` and waits until it is ready to feed.
    pub fn start(
        netdev: &Arc<Netdev>,
        frames: &Arc<Vec<ReplayFrame>>,
        cpus: &[usize],
    ) -> anyhow::Result<Feeder> {
        let (go, go_rx) = std::sync::mpsc::channel::<()>();
        let (fed_tx, fed) = std::sync::mpsc::channel();
        let (netdev, frames, cpus) = (netdev.clone(), frames.clone(), cpus.to_vec());
        let thread = std::thread::Builder::new()
            .name("feeder".into())
            .spawn(move || {
                if let Err(e) = start_thread_as("feeder", &cpus) {
                    tracing::warn!(?cpus, error = %e, "could not pin the feeder; it runs unpinned");
                }
                let mut injector = netdev.injector(0);
                let ready = (Duration::ZERO, Instant::now());
                if fed_tx.send(ready).is_err() {
                    return;
                }
                while go_rx.recv().is_ok() {
                    let before = own_cpu_time();
                    injector.inject(&frames);
                    if fed_tx
                        .send((own_cpu_time() - before, Instant::now()))
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .context("spawning the feeder thread")?;
        let feeder = Feeder { go, fed, thread };
        feeder.wait_fed()?;
        Ok(feeder)
    }

    fn wait_fed(&self) -> anyhow::Result<(Duration, Instant)> {
        self.fed
            .recv()
            .map_err(|_| anyhow::anyhow!("the feeder thread stopped"))
    }

    /// Stops the feeder thread.
    pub fn stop(self) -> anyhow::Result<()> {
        drop(self.go);
        self.thread
            .join()
            .map_err(|_| anyhow::anyhow!("the feeder thread panicked"))
    }
}

/// Has `feeder` feed its frames once and waits until every packet is
/// accounted for: a hit, or an upcall translated with its operations
/// written. The pass ends when the last of that happened: the feeder's
/// last hit, or the dpif-writer's last batch (so how often this checks
/// does not change the figure).
pub async fn pass(
    netdev: &Arc<Netdev>,
    pipeline: &Pipeline,
    feeder: &Feeder,
    n: u64,
) -> anyhow::Result<PassTimes> {
    let cpu_before = cpu_by_thread();
    let rss_before = resident_bytes();
    let before = netdev.stats();
    let start = Instant::now();
    feeder
        .go
        .send(())
        .map_err(|_| anyhow::anyhow!("the feeder thread stopped"))?;
    loop {
        let s = netdev.stats();
        let seen =
            (s.n_hit + s.n_missed + s.n_lost) - (before.n_hit + before.n_missed + before.n_lost);
        if seen == n
            && upcalls_done(&pipeline.stats) >= s.n_missed
            && netdev.n_queued_upcalls() == 0
        {
            break;
        }
        // Rarely: waking costs CPU the pipeline could use, and the pass's end
        // comes from timestamps, not from when this notices.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    pipeline.flush().await.context("flushing the dpif-writer")?;
    let rss_growth = resident_bytes() as i64 - rss_before as i64;
    let (feeder_cpu, fed) = feeder.wait_fed()?;
    let mut cpu = cpu_by_thread();
    for (name, secs) in cpu.iter_mut() {
        *secs -= cpu_before.get(name).copied().unwrap_or(0.0);
    }
    cpu.retain(|_, secs| *secs > 0.0);
    // The feeder's own clock, read as it finished: its schedstat may lag.
    cpu.insert("feeder".into(), feeder_cpu.as_secs_f64());
    let written = pipeline.stats.last_write().unwrap_or(start);
    let wall = fed.max(written) - start;
    Ok(PassTimes {
        wall,
        cpu,
        rss_growth,
    })
}

/// Feeds `frames` once, from a feeder thread of its own, and waits until
/// every packet is accounted for (see [`pass`]).
pub async fn feed(
    netdev: &Arc<Netdev>,
    pipeline: &Pipeline,
    frames: &Arc<Vec<ReplayFrame>>,
) -> anyhow::Result<PassTimes> {
    let feeder = Feeder::start(netdev, frames, &[])?;
    let times = pass(netdev, pipeline, &feeder, frames.len() as u64).await?;
    feeder.stop()?;
    Ok(times)
}

/// Runs the benchmark on `rules` and `packets` (both files).
pub fn setup_rate(
    rules: &Path,
    packets: &Path,
    opts: &SetupRateOptions,
) -> anyhow::Result<SetupRate> {
    let text =
        std::fs::read_to_string(rules).with_context(|| format!("reading {}", rules.display()))?;
    let rules = crate::daemon::parse_rules(&text, &rules.display().to_string())?;
    crate::memory::set_transparent_huge_pages(opts.transparent_huge_pages)
        .context("setting transparent huge pages")?;
    let frames = Arc::new(read_replay_file(packets)?);
    let netdev = Arc::new(Netdev::new(NetdevConfig {
        upcall_queue_len: 4096,
        max_flows: 1_000_000,
        ..NetdevConfig::default()
    }));
    let dpif: Arc<dyn Dpif> = netdev.clone();
    let (feeder_cpus, cpus) = thread_cpus(opts.placement);
    let config = PipelineConfig {
        cpus,
        n_handlers: opts.handlers,
        n_revalidators: 1,
        writer: actors::dpif_writer::WriterConfig {
            batch_size: opts.batch_size,
            ..Default::default()
        },
        revalidator: RevalidatorConfig {
            // Every packet gets its megaflow: no flow limit in the way, and
            // nothing expires between the passes.
            flow_limit: 1_000_000,
            flow_limit_start: 1_000_000,
            max_idle: Duration::from_secs(600),
            ..RevalidatorConfig::default()
        },
        // Packets learn, as the daemon's do.
        xlate: actors::xlate::XlateConfig {
            side_effects: true,
            ..Default::default()
        },
        ..PipelineConfig::default()
    };
    let system = actix::System::new();
    let result = system.block_on(async move {
        let pipeline = Pipeline::start(dpif, Tables::from_rules(rules), config);
        let feeder = Feeder::start(&netdev, &frames, &feeder_cpus)?;
        let n = frames.len() as u64;
        let miss = pass(&netdev, &pipeline, &feeder, n).await?;
        let after_miss = netdev.stats();
        let hit = pass(&netdev, &pipeline, &feeder, n).await?;
        let rules_learned = PipelineStats::get(&pipeline.stats.rules_learned);
        feeder.stop()?;
        pipeline.stop();
        netdev.close();
        Ok::<_, anyhow::Error>(SetupRate {
            packets: frames.len() as u64,
            upcalls: after_miss.n_missed,
            megaflows: after_miss.n_flows,
            miss_pass_s: miss.wall.as_secs_f64(),
            hit_pass_s: hit.wall.as_secs_f64(),
            miss_pass_cpu: miss.cpu,
            miss_pass_rss_growth: miss.rss_growth,
            rules_learned,
        })
    });
    actix::System::current().stop();
    result
}
