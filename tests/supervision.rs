//! Supervision: handlers and the dpif-writer that panic are restarted,
//! lose at most the batch they were handling, and every flow still gets
//! installed once the datapath upcalls those packets again: no ukey of a
//! lost put blocks its reinstall.

use std::sync::Arc;

use std::time::Duration;

use actors::dpif_writer::WriterConfig;
use actors::pipeline::{Pipeline, PipelineConfig};
use actors::protocol::RuleChange;
use actors::revalidator::RevalidatorConfig;
use actors::stats::DropReason;
use actors::tables::Tables;
use messages::dpif::Dpif;
use messages::format::odp_actions::format_odp_actions;
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
    run_with(panics, writer_panics, WriterConfig::default())
}

/// As [`run`], with the writer batching as `writer` says.
fn run_with(panics: u32, writer_panics: u32, writer: WriterConfig) -> Outcome {
    let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
    let frames = workload(3000);
    let system = actix::System::new();
    system.block_on(async move {
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let config = PipelineConfig {
            n_handlers: 2,
            writer,
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

#[test]
fn a_writer_that_panics_writing_its_queue_restarts() {
    // Batches larger than any handler's message: the writer writes only
    // from its queue (when no more ops are on their way, on its latency
    // timer, or on a flush), outside the part of its message handler that
    // was guarded. A panic there killed the writer's thread for good, and
    // every later op was lost.
    let queue_only = WriterConfig {
        batch_size: 100_000,
        ..WriterConfig::default()
    };
    let clean = run_with(0, 0, queue_only);
    let faulty = run_with(0, 1, queue_only);
    assert_eq!(faulty.writer_restarts, 1);
    assert_eq!(
        faulty.megaflows, clean.megaflows,
        "every flow installed after the replay"
    );
}

/// Flows of each action list in the datapath, by the list as ODP prints it.
fn flows_by_actions(netdev: &Netdev) -> std::collections::BTreeMap<String, usize> {
    let mut by = std::collections::BTreeMap::new();
    for f in netdev.flow_dump().unwrap() {
        *by.entry(format_odp_actions(&f.actions)).or_default() += 1;
    }
    by
}

#[test]
fn a_revalidator_that_panics_mid_round_leaves_no_flow_with_stale_actions() {
    let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
    // The same rules but the web traffic's port: each of its flows is
    // modified, none deleted (the masks stay).
    let moved = RULES.replace("tp_dst=80,actions=output:2", "tp_dst=80,actions=output:3");
    let moved = upcalld::daemon::parse_rules(&moved, "test rules").unwrap();
    let frames = workload(3000);
    let system = actix::System::new();
    system.block_on(async move {
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let config = PipelineConfig {
            revalidator: RevalidatorConfig {
                flow_limit_start: 200_000,
                // Rounds only when the test asks for one.
                interval: Duration::from_secs(3600),
                ..RevalidatorConfig::default()
            },
            ..PipelineConfig::default()
        };
        let pipeline = Pipeline::start(netdev.clone(), Tables::from_rules(rules), config);
        feed(&netdev, &pipeline, &frames).await.unwrap();
        let before = flows_by_actions(&netdev);
        let web = before.get("2").copied().unwrap_or(0);
        assert!(web >= 100, "flows by actions before: {before:?}");

        pipeline
            .rule_table
            .send(RuleChange::Replace(moved))
            .await
            .unwrap();
        // This round panics halfway, with modifies made and not written;
        // the restarted revalidator's next round writes them.
        pipeline.inject_revalidator_panics(0, 1);
        pipeline.revalidate_now().await.unwrap();
        assert_eq!(pipeline.stats.restarts("revalidator"), 1);
        pipeline.revalidate_now().await.unwrap();

        let after = flows_by_actions(&netdev);
        assert_eq!(
            after.get("2"),
            None,
            "flows left with the old actions: before {before:?}, after {after:?}"
        );
        assert_eq!(
            after.values().sum::<usize>(),
            before.values().sum::<usize>(),
            "every flow kept: before {before:?}, after {after:?}"
        );
        pipeline.stop();
        netdev.close();
    });
}
