//! `upcalld bench setup-rate`: the flow-setup benchmark on the userspace
//! datapath, through the whole pipeline. A miss pass (every packet is
//! upcalled, translated, installed and executed) and then a hit pass of the
//! same packets; the difference per upcall is the slow path's cost.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::dpif::Dpif;
use actors::pipeline::{Pipeline, PipelineConfig};
use actors::revalidator::RevalidatorConfig;
use actors::stats::{DropReason, PipelineStats};
use actors::tables::Tables;
use anyhow::Context as _;

use crate::dpif_netdev::{read_replay_file, Netdev, NetdevConfig, ReplayFrame};

/// What the benchmark measured.
#[derive(Clone, Debug, PartialEq)]
pub struct SetupRate {
    pub packets: u64,
    pub upcalls: u64,
    pub megaflows: u64,
    pub miss_pass_s: f64,
    pub hit_pass_s: f64,
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
            "{{\"packets\":{},\"upcalls\":{},\"megaflows\":{},\"miss_pass_s\":{:.6},\"hit_pass_s\":{:.6},\"us_per_upcall\":{:.4},\"upcalls_per_s\":{:.0}}}",
            self.packets,
            self.upcalls,
            self.megaflows,
            self.miss_pass_s,
            self.hit_pass_s,
            self.us_per_upcall(),
            self.upcalls_per_s()
        )
    }
}

/// Benchmark settings.
#[derive(Clone, Debug)]
pub struct SetupRateOptions {
    pub handlers: usize,
    pub batch_size: usize,
}

/// Upcalls fully dealt with: translated, or dropped with a counted reason.
fn upcalls_done(s: &PipelineStats) -> u64 {
    PipelineStats::get(&s.upcalls_handled)
        + s.dropped(DropReason::HandlerPanic)
        + s.dropped(DropReason::HandlerGone)
}

/// Feeds `frames` and waits until every packet is accounted for: a hit, or
/// an upcall translated with its operations written. Returns the time taken.
pub async fn pass(
    netdev: &Arc<Netdev>,
    pipeline: &Pipeline,
    frames: &Arc<Vec<ReplayFrame>>,
) -> anyhow::Result<Duration> {
    let before = netdev.stats();
    let n = frames.len() as u64;
    let start = Instant::now();
    let feeder = {
        let (netdev, frames) = (netdev.clone(), frames.clone());
        std::thread::spawn(move || netdev.inject(&frames, 0))
    };
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
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
    pipeline.flush().await.context("flushing the dpif-writer")?;
    let took = start.elapsed();
    feeder
        .join()
        .map_err(|_| anyhow::anyhow!("the feeder thread panicked"))?;
    Ok(took)
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
    let frames = Arc::new(read_replay_file(packets)?);
    let netdev = Arc::new(Netdev::new(NetdevConfig {
        upcall_queue_len: 4096,
        max_flows: 1_000_000,
        ..NetdevConfig::default()
    }));
    let dpif: Arc<dyn Dpif> = netdev.clone();
    let config = PipelineConfig {
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
        ..PipelineConfig::default()
    };
    let system = actix::System::new();
    let result = system.block_on(async move {
        let pipeline = Pipeline::start(dpif, Tables::from_rules(rules), config);
        let miss = pass(&netdev, &pipeline, &frames).await?;
        let after_miss = netdev.stats();
        let hit = pass(&netdev, &pipeline, &frames).await?;
        pipeline.stop();
        netdev.close();
        Ok::<_, anyhow::Error>(SetupRate {
            packets: frames.len() as u64,
            upcalls: after_miss.n_missed,
            megaflows: after_miss.n_flows,
            miss_pass_s: miss.as_secs_f64(),
            hit_pass_s: hit.as_secs_f64(),
        })
    });
    actix::System::current().stop();
    result
}
