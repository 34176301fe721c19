//! The dpif-writer's batching, in process on the userspace datapath.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::dpif_writer::WriterConfig;
use actors::pipeline::{Pipeline, PipelineConfig};
use actors::tables::Tables;
use common::workload;
use messages::dpif::Dpif;
use upcalld::dpif_netdev::{Netdev, NetdevConfig};

/// A partial batch waits for more ops only while handlers have some on the
/// way: the last upcalls of a burst get their megaflows at once, not after
/// the latency bound (a minute here).
#[test]
fn a_partial_batch_is_written_once_no_more_ops_are_on_the_way() {
    let (flows, waited) = actix::System::new().block_on(async {
        let rules = upcalld::daemon::parse_rules(
            "table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop\n\
             table=0,priority=100,ip,actions=output:4\n",
            "test rules",
        )
        .unwrap();
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let pipeline = Pipeline::start(
            netdev.clone(),
            Tables::from_rules(rules),
            PipelineConfig {
                writer: WriterConfig {
                    batch_size: 1000,
                    max_latency: Duration::from_secs(60),
                    handlers_write: false,
                },
                ..PipelineConfig::default()
            },
        );
        let frames = workload(5);
        let feeder = {
            let netdev = netdev.clone();
            std::thread::spawn(move || netdev.inject(&frames, 0))
        };
        let start = Instant::now();
        while netdev.stats().n_flows < 5 && start.elapsed() < Duration::from_secs(20) {
            actix::clock::sleep(Duration::from_millis(5)).await;
        }
        let waited = start.elapsed();
        let out = (netdev.stats().n_flows, waited);
        pipeline.stop();
        netdev.close();
        feeder.join().unwrap();
        out
    });
    assert_eq!(
        flows, 5,
        "every megaflow installed, {waited:?} after the burst"
    );
}

/// Handlers that write their own batches (the kernel datapath's way):
/// every megaflow installed and every packet run, in batches of at most
/// `batch_size`, with the ukeys agreeing with the datapath.
#[test]
fn handlers_writing_their_own_batches_install_every_flow() {
    let (flows, ukeys, puts, executes, handled, batches) = actix::System::new().block_on(async {
        let rules = upcalld::daemon::parse_rules(
            "table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop\n\
             table=0,priority=100,ip,actions=output:4\n",
            "test rules",
        )
        .unwrap();
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let pipeline = Pipeline::start(
            netdev.clone(),
            Tables::from_rules(rules),
            PipelineConfig {
                n_handlers: 2,
                writer: WriterConfig {
                    batch_size: 8,
                    handlers_write: true,
                    ..WriterConfig::default()
                },
                ..PipelineConfig::default()
            },
        );
        // 1000 source MACs on 3 ports: a megaflow per packet.
        upcalld::bench::feed(&netdev, &pipeline, &workload(3000))
            .await
            .unwrap();
        let s = &pipeline.stats;
        let g = actors::stats::PipelineStats::get;
        let out = (
            netdev.stats().n_flows,
            pipeline.ukeys.len() as u64,
            g(&s.flow_puts),
            g(&s.executes),
            g(&s.upcalls_handled),
            g(&s.dpif_batches),
        );
        pipeline.stop();
        netdev.close();
        out
    });
    assert_eq!((flows, ukeys, puts), (3000, 3000, 3000));
    assert_eq!((handled, executes), (3000, 3000), "every packet run");
    assert!(
        batches >= (puts + executes) / 8,
        "{batches} batches of at most 8"
    );
}

/// Handlers that read their own upcall queues as well (the kernel
/// datapath's way, as OVS's handler threads): no receiver runs, and every
/// upcall of both queues is read, translated and installed.
#[test]
fn handlers_reading_their_own_queues_install_every_flow() {
    let (receivers, flows, received, handled, puts) = actix::System::new().block_on(async {
        let rules = upcalld::daemon::parse_rules(
            "table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop\n\
             table=0,priority=100,ip,actions=output:4\n",
            "test rules",
        )
        .unwrap();
        let netdev = Arc::new(Netdev::new(NetdevConfig {
            n_upcall_queues: 2,
            ..NetdevConfig::default()
        }));
        let pipeline = Pipeline::start(
            netdev.clone(),
            Tables::from_rules(rules),
            PipelineConfig {
                n_handlers: 2,
                handlers_read: true,
                writer: WriterConfig {
                    handlers_write: true,
                    ..WriterConfig::default()
                },
                ..PipelineConfig::default()
            },
        );
        upcalld::bench::feed(&netdev, &pipeline, &workload(3000))
            .await
            .unwrap();
        let s = &pipeline.stats;
        let g = actors::stats::PipelineStats::get;
        let out = (
            pipeline.receivers.len(),
            netdev.stats().n_flows,
            g(&s.upcalls_received),
            g(&s.upcalls_handled),
            g(&s.flow_puts),
        );
        pipeline.stop();
        netdev.close();
        out
    });
    assert_eq!(receivers, 0, "no receiver between the queues and handlers");
    assert_eq!((received, handled), (3000, 3000));
    assert_eq!((flows, puts), (3000, 3000));
}
