//! Supervision: handlers and the dpif-writer that panic are restarted,
//! lose at most the batch they were handling, and every flow still gets
//! installed once the datapath upcalls those packets again: no ukey of a
//! lost put blocks its reinstall.

use std::sync::Arc;

use actors::pipeline::{Pipeline, PipelineConfig};
use actors::revalidator::RevalidatorConfig;
use actors::stats::DropReason;
use actors::tables::Tables;
use messages::dpif::Dpif;
use upcalld::bench::feed;
use upcalld::dpif_netdev::{Netdev, NetdevConfig};

mod common;
use common::workload;

/// The first rule makes every source MAC its own megaflow.
const RULES: &str = "\
table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop
table=0,priority=200,tcp,tp_dst=80,actions=output:2
table=0,priority=100,ip,nw_dst=10.1.0.0/16,actions=output:3
table=0,priority=0,actions=output:4
";

struct Outcome {
    megaflows: u64,
    handler_restarts: u64,
    lost_to_panics: u64,
    writer_restarts: u64,
    ukeys: u64,
}

/// Replays the workload twice, with `panics` injected into each handler
/// and `writer_panics` into the writer before the first pass.
fn run(panics: u32, writer_panics: u32) -> Outcome {
    let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
    let frames = workload(3000);
    let system = actix::System::new();
    system.block_on(async move {
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let config = PipelineConfig {
            n_handlers: 2,
            revalidator: RevalidatorConfig {
                flow_limit_start: 200_000,
                ..RevalidatorConfig::default()
            },
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(netdev.clone(), Tables::from_rules(rules), config);
        for h in 0..2 {
            pipeline.inject_handler_panics(h, panics);
        }
        pipeline.inject_writer_panics(writer_panics);
        feed(&netdev, &pipeline, &frames).await.unwrap();
        feed(&netdev, &pipeline, &frames).await.unwrap();
        let outcome = Outcome {
            megaflows: netdev.stats().n_flows,
            handler_restarts: pipeline.stats.restarts("handler"),
            lost_to_panics: pipeline.stats.dropped(DropReason::HandlerPanic),
            writer_restarts: pipeline.stats.restarts("dpif_writer"),
            ukeys: pipeline.ukeys.len() as u64,
        };
        pipeline.stop();
        netdev.close();
        outcome
    })
}

#[test]
fn panicking_handlers_restart_and_every_flow_is_installed() {
    let clean = run(0, 0);
    assert!(clean.megaflows >= 1000, "every source MAC makes a megaflow");
    assert_eq!(clean.handler_restarts, 0);

    let faulty = run(1, 0);
    assert_eq!(faulty.handler_restarts, 2, "each handler panicked once");
    assert!(faulty.lost_to_panics > 0, "the panicking batches were lost");
    assert!(
        faulty.lost_to_panics <= 2 * 64,
        "a panic loses at most its batch, lost {}",
        faulty.lost_to_panics
    );
    assert_eq!(
        faulty.megaflows, clean.megaflows,
        "every flow installed after the replay"
    );
}

#[test]
fn a_writer_that_panics_midway_through_a_batch_blocks_no_reinstall() {
    let clean = run(0, 0);
    let faulty = run(0, 1);
    assert_eq!(faulty.writer_restarts, 1);
    assert_eq!(
        faulty.megaflows, clean.megaflows,
        "every flow installed after the replay"
    );
    // The half batch that reached the datapath unconfirmed has no ukeys
    // until a dump adopts it; every other flow has one.
    assert!(faulty.ukeys <= faulty.megaflows);
    assert!(
        faulty.ukeys + 25 >= faulty.megaflows,
        "{} ukeys",
        faulty.ukeys
    );
}
