//! Revalidation in process: idle flows expire, a rule change that keeps a
//! megaflow's mask modifies its actions in place, only changed flows are
//! translated again, the flow limit holds handlers back, and a flow
//! deleted behind the daemon's back comes back.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actors::pipeline::{Pipeline, PipelineConfig};
use actors::protocol::{GetSnapshot, RevalidateNow, RuleChange};
use actors::revalidator::RevalidatorConfig;
use actors::stats::{DropReason, PipelineStats};
use actors::tables::Tables;
use actors::ukeys::MAX_MISSED_DUMPS;
use common::{tcp_frame, workload};
use messages::dpif::Dpif;
use messages::dpif::DpifOp;
use messages::odp::OdpAction;
use upcalld::bench::feed;
use upcalld::dpif_netdev::{Netdev, NetdevConfig, ReplayFrame};

/// Every source MAC is its own megaflow.
const RULES: &str = "\
table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop
table=0,priority=100,ip,actions=output:4
";

/// Max-idle for the tests that expire flows: long beside the time a test
/// takes to install its flows and run a round on a loaded machine (the
/// flows' age is measured from their creation, so a shorter one let a slow
/// feed's flows expire in the first round), and the sleep past it.
const MAX_IDLE: Duration = Duration::from_secs(2);
const PAST_MAX_IDLE: Duration = Duration::from_millis(2_200);

fn config(revalidator: RevalidatorConfig, n_handlers: usize) -> PipelineConfig {
    PipelineConfig {
        n_handlers,
        revalidator: RevalidatorConfig {
            // Rounds only when the test asks.
            interval: Duration::from_secs(3600),
            ..revalidator
        },
        ..PipelineConfig::default()
    }
}

/// Runs the future `test` makes in an actix system.
fn in_system<F, Fut, R>(test: F) -> R
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = R>,
{
    actix::System::new().block_on(test())
}

fn start(cfg: PipelineConfig) -> (Arc<Netdev>, Pipeline) {
    let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
    let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
    let pipeline = Pipeline::start(netdev.clone(), Tables::from_rules(rules), cfg);
    (netdev, pipeline)
}

#[test]
fn idle_flows_expire() {
    let (installed, after_first_round, after_idle, deletes) = in_system(|| async {
        let (netdev, pipeline) = start(config(
            RevalidatorConfig {
                max_idle: MAX_IDLE,
                flow_limit_start: 200_000,
                ..RevalidatorConfig::default()
            },
            1,
        ));
        feed(&netdev, &pipeline, &workload(500)).await.unwrap();
        let installed = netdev.stats().n_flows;
        // Flows seen for the first time are young: they stay.
        pipeline.revalidate_now().await.unwrap();
        let after_first_round = netdev.stats().n_flows;
        actix::clock::sleep(PAST_MAX_IDLE).await;
        pipeline.revalidate_now().await.unwrap();
        let after_idle = netdev.stats().n_flows;
        let deletes = PipelineStats::get(&pipeline.stats.flow_deletes);
        pipeline.stop();
        netdev.close();
        (installed, after_first_round, after_idle, deletes)
    });
    assert_eq!(installed, 500);
    assert_eq!(after_first_round, 500);
    assert_eq!(after_idle, 0, "every flow was idle longer than max-idle");
    assert_eq!(deletes, 500);
}

#[test]
fn a_rule_change_that_keeps_the_mask_modifies_flows_in_place() {
    let (before, after, modifies, deletes) = in_system(|| async {
        let (netdev, pipeline) = start(config(
            RevalidatorConfig {
                flow_limit_start: 200_000,
                ..RevalidatorConfig::default()
            },
            2,
        ));
        feed(&netdev, &pipeline, &workload(300)).await.unwrap();
        let before = netdev.flow_dump().unwrap();
        let new_rules = upcalld::daemon::parse_rules(
            "table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop\ntable=0,priority=100,ip,actions=output:5\n",
            "new rules",
        )
        .unwrap();
        pipeline
            .rule_table
            .send(RuleChange::Replace(new_rules))
            .await
            .unwrap();
        pipeline.revalidate_now().await.unwrap();
        let after = netdev.flow_dump().unwrap();
        let s = &pipeline.stats;
        let counts = (
            PipelineStats::get(&s.flow_modifies),
            PipelineStats::get(&s.flow_deletes),
        );
        pipeline.stop();
        netdev.close();
        (before, after, counts.0, counts.1)
    });
    assert_eq!(before.len(), 300);
    assert!(before
        .iter()
        .all(|f| f.actions == vec![OdpAction::Output(4)]));
    assert_eq!((modifies, deletes), (300, 0));
    let mut ufids_before: Vec<_> = before.iter().map(|f| f.ufid).collect();
    let mut ufids_after: Vec<_> = after.iter().map(|f| f.ufid).collect();
    ufids_before.sort();
    ufids_after.sort();
    assert_eq!(ufids_before, ufids_after, "the same megaflows, modified");
    assert!(after
        .iter()
        .all(|f| f.actions == vec![OdpAction::Output(5)]));
}

/// A round translates again only the flows whose ukey's rules version is
/// not the current one: over unchanged flows none (a round costs a lookup
/// and a compare a flow), after a rule change each flow once.
#[test]
fn rounds_translate_again_only_the_flows_whose_rules_changed() {
    let (flows, after_quiet, after_change, after_next) = in_system(|| async {
        let (netdev, pipeline) = start(config(
            RevalidatorConfig {
                flow_limit_start: 200_000,
                ..RevalidatorConfig::default()
            },
            2,
        ));
        feed(&netdev, &pipeline, &workload(2000)).await.unwrap();
        let s = pipeline.stats.clone();
        let retranslated = move || PipelineStats::get(&s.flows_retranslated);
        for _ in 0..3 {
            pipeline.revalidate_now().await.unwrap();
        }
        let after_quiet = retranslated();
        let new_rules = upcalld::daemon::parse_rules(
            "table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop\ntable=0,priority=100,ip,actions=output:5\n",
            "new rules",
        )
        .unwrap();
        pipeline
            .rule_table
            .send(RuleChange::Replace(new_rules))
            .await
            .unwrap();
        pipeline.revalidate_now().await.unwrap();
        let after_change = retranslated();
        for _ in 0..3 {
            pipeline.revalidate_now().await.unwrap();
        }
        let out = (
            netdev.stats().n_flows,
            after_quiet,
            after_change,
            retranslated(),
        );
        pipeline.stop();
        netdev.close();
        out
    });
    assert_eq!(flows, 2000);
    assert_eq!(after_quiet, 0, "no flow changed: none translated again");
    assert_eq!(after_change, 2000, "each flow once after the rule change");
    assert_eq!(after_next, 2000, "and not again");
}

#[test]
fn the_flow_limit_holds_handlers_back() {
    let (flows, over_limit, handled) = in_system(|| async {
        let (netdev, pipeline) = start(config(
            RevalidatorConfig {
                flow_limit: 1000,
                flow_limit_start: 1000,
                ..RevalidatorConfig::default()
            },
            1,
        ));
        // 3000 packets from 1000 MACs, twice: 1000 megaflows would be needed.
        let frames = workload(3000);
        feed(&netdev, &pipeline, &frames).await.unwrap();
        let flows = netdev.stats().n_flows;
        let s = &pipeline.stats;
        let out = (
            flows,
            s.dropped(DropReason::FlowLimit),
            PipelineStats::get(&s.upcalls_handled),
        );
        pipeline.stop();
        netdev.close();
        out
    });
    assert_eq!(flows, 1000, "no more flows than the limit");
    assert!(over_limit > 0, "upcalls beyond the limit are counted");
    assert_eq!(
        handled, 3000,
        "and still handled: their packets were executed"
    );
}

#[test]
fn a_flow_deleted_behind_the_daemons_back_is_installed_again() {
    let (installed, while_unnoticed, reinstalled, missing) = in_system(|| async {
        let (netdev, pipeline) = start(config(
            RevalidatorConfig {
                flow_limit_start: 200_000,
                ..RevalidatorConfig::default()
            },
            2,
        ));
        let frames = workload(400);
        feed(&netdev, &pipeline, &frames).await.unwrap();
        pipeline.revalidate_now().await.unwrap();
        let installed = netdev.stats().n_flows;
        // As `ovs-dpctl del-flows` would: not through the daemon.
        let mut dels: Vec<DpifOp> = netdev
            .flow_dump()
            .unwrap()
            .iter()
            .map(|f| DpifOp::FlowDel { ufid: f.ufid })
            .collect();
        assert!(netdev.operate(&mut dels).iter().all(|r| r.is_ok()));
        // Until the dumps have missed the flows long enough, their upcalls
        // are duplicates of flows the daemon believes installed.
        feed(&netdev, &pipeline, &frames).await.unwrap();
        let while_unnoticed = netdev.stats().n_flows;
        for _ in 0..MAX_MISSED_DUMPS {
            pipeline.revalidate_now().await.unwrap();
        }
        let missing = PipelineStats::get(&pipeline.stats.ukeys_missing);
        feed(&netdev, &pipeline, &frames).await.unwrap();
        let reinstalled = netdev.stats().n_flows;
        pipeline.stop();
        netdev.close();
        (installed, while_unnoticed, reinstalled, missing)
    });
    assert_eq!(installed, 400);
    assert_eq!(while_unnoticed, 0);
    assert_eq!(missing, 400, "every ukey whose flow vanished was dropped");
    assert_eq!(reinstalled, 400, "the next upcalls installed them again");
}

#[test]
fn a_burst_of_20000_new_flows_is_installed_and_none_is_deleted() {
    let limit = RevalidatorConfig::default().flow_limit;
    let (flows, deletes, over_limit, final_limit, rounds) = in_system(|| async {
        let (netdev, pipeline) = start(PipelineConfig {
            n_handlers: 2,
            revalidator: RevalidatorConfig {
                // Rounds all through the burst.
                interval: Duration::from_millis(50),
                flow_limit_start: limit,
                ..RevalidatorConfig::default()
            },
            ..PipelineConfig::default()
        });
        // 20 000 source MACs: 20 000 megaflows.
        let frames = Arc::new(
            (0..20_000u32)
                .map(|i| ReplayFrame {
                    in_port: Some(1),
                    frame: tcp_frame(i as u16, 0xc0a8_0001, 0x0a01_0001, 1024, 80),
                })
                .collect::<Vec<_>>(),
        );
        feed(&netdev, &pipeline, &frames).await.unwrap();
        // A few more rounds over the whole table.
        let s = pipeline.stats.clone();
        let after_burst = PipelineStats::get(&s.revalidation_rounds);
        while PipelineStats::get(&s.revalidation_rounds) < after_burst + 4 {
            actix::clock::sleep(Duration::from_millis(20)).await;
        }
        pipeline.flush().await.unwrap();
        let out = (
            netdev.stats().n_flows,
            PipelineStats::get(&s.flow_deletes),
            s.dropped(DropReason::FlowLimit),
            PipelineStats::get(&s.flow_limit),
            PipelineStats::get(&s.revalidation_rounds),
        );
        pipeline.stop();
        netdev.close();
        out
    });
    assert!(rounds >= 4, "the revalidator ran ({rounds} rounds)");
    assert_eq!(flows, 20_000, "every new flow installed");
    assert_eq!(deletes, 0, "none deleted");
    assert_eq!(over_limit, 0, "none refused for the limit");
    assert_eq!(final_limit, limit, "the limit held");
}

/// The embedded datapath, as slow as the kernel's is in the emulated VM:
/// each batch holding a delete waits `delete_delay`, and each terse dump
/// costs `dump_cpu` of the caller's CPU.
struct SlowDatapath {
    netdev: Arc<Netdev>,
    delete_delay: Duration,
    dump_cpu: Duration,
}

fn thread_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

impl Dpif for SlowDatapath {
    fn kind(&self) -> &'static str {
        "slow"
    }
    fn recv_upcalls(
        &self,
        queue: usize,
        max: usize,
        timeout: Duration,
        out: &mut Vec<messages::dpif::Upcall>,
    ) -> Result<(), messages::dpif::DpifError> {
        self.netdev.recv_upcalls(queue, max, timeout, out)
    }
    fn operate(&self, ops: &mut [DpifOp]) -> Vec<Result<(), messages::dpif::DpifError>> {
        if ops.iter().any(|op| matches!(op, DpifOp::FlowDel { .. })) {
            std::thread::sleep(self.delete_delay);
        }
        self.netdev.operate(ops)
    }
    fn flow_dump(&self) -> Result<Vec<messages::dpif::DpFlow>, messages::dpif::DpifError> {
        self.netdev.flow_dump()
    }
    fn flow_dump_terse(
        &self,
        out: &mut Vec<(messages::dpif::Ufid, messages::dpif::FlowStats)>,
    ) -> Result<(), messages::dpif::DpifError> {
        let start = thread_cpu_time();
        while thread_cpu_time() - start < self.dump_cpu {
            std::hint::spin_loop();
        }
        self.netdev.flow_dump_terse(out)
    }
    fn flow_get(
        &self,
        ufid: messages::dpif::Ufid,
    ) -> Result<Option<messages::dpif::DpFlow>, messages::dpif::DpifError> {
        self.netdev.flow_get(ufid)
    }
    fn stats(&self) -> messages::dpif::DpStats {
        self.netdev.stats()
    }
    fn port_add(&self, spec: &messages::dpif::PortSpec) -> Result<u32, messages::dpif::DpifError> {
        self.netdev.port_add(spec)
    }
    fn port_del(&self, number: u32) -> Result<(), messages::dpif::DpifError> {
        self.netdev.port_del(number)
    }
    fn ports(&self) -> Vec<messages::dpif::PortInfo> {
        self.netdev.ports()
    }
    fn port_stats(&self) -> Vec<messages::dpif::PortStats> {
        self.netdev.port_stats()
    }
}

/// The 200 000-flow collapse in the kernel VM: a round's deletes were
/// queued to the dpif-writer, which took seconds over them; later rounds
/// saw the flows still there, sent their deletes again (refused: ENOENT)
/// and adopted flows deleted since their dump. A round now carries out its
/// own deletes before it ends, however slow the datapath.
#[test]
fn a_rounds_deletes_are_done_when_it_ends_each_once() {
    let (installed, after_round, deletes, errors, later_deletes, ukeys_left) =
        in_system(|| async {
            let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
            let slow = Arc::new(SlowDatapath {
                netdev: netdev.clone(),
                delete_delay: Duration::from_millis(20),
                dump_cpu: Duration::ZERO,
            });
            let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
            let pipeline = Pipeline::start(
                slow,
                Tables::from_rules(rules),
                config(
                    RevalidatorConfig {
                        max_idle: MAX_IDLE,
                        flow_limit_start: 200_000,
                        ..RevalidatorConfig::default()
                    },
                    2,
                ),
            );
            feed(&netdev, &pipeline, &workload(2000)).await.unwrap();
            let installed = netdev.stats().n_flows;
            let revalidator = pipeline.revalidators[0].clone();
            // Young flows stay; once idle past max-idle, one round deletes
            // them all (40 batches of 50, 20 ms each on this datapath).
            revalidator.send(RevalidateNow).await.unwrap();
            actix::clock::sleep(PAST_MAX_IDLE).await;
            revalidator.send(RevalidateNow).await.unwrap();
            // No flush of the writer: the round itself must have written.
            let after_round = netdev.stats().n_flows;
            let s = pipeline.stats.clone();
            let deletes = PipelineStats::get(&s.flow_deletes);
            for _ in 0..3 {
                revalidator.send(RevalidateNow).await.unwrap();
            }
            pipeline.flush().await.unwrap();
            let out = (
                installed,
                after_round,
                deletes,
                PipelineStats::get(&s.delete_errors),
                PipelineStats::get(&s.flow_deletes) - deletes,
                pipeline.ukeys.len(),
            );
            pipeline.stop();
            netdev.close();
            out
        });
    assert_eq!(installed, 2000);
    assert_eq!(after_round, 0, "the round's deletes were carried out in it");
    assert_eq!(deletes, 2000);
    assert_eq!(errors, 0, "no delete was sent twice");
    assert_eq!(later_deletes, 0, "later rounds had nothing to delete");
    assert_eq!(ukeys_left, 0, "no ukey outlived its flow");
}

/// Costly rounds are spaced out to `round_spacing` times their CPU time,
/// so that revalidation does not take the CPU a burst of upcalls needs
/// (in the emulated kernel VM a round over 20 000 flows costs 230-470 ms,
/// and every 500 ms that was most of a CPU); a rule change brings the
/// next round back to `interval`.
#[test]
fn costly_rounds_are_spaced_out_and_a_rule_change_brings_the_next_back() {
    let (elapsed, rounds_in_2s, after_change) = in_system(|| async {
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let slow = Arc::new(SlowDatapath {
            netdev: netdev.clone(),
            delete_delay: Duration::ZERO,
            dump_cpu: Duration::from_millis(30),
        });
        let rules = upcalld::daemon::parse_rules(RULES, "test rules").unwrap();
        let pipeline = Pipeline::start(
            slow,
            Tables::from_rules(rules),
            PipelineConfig {
                n_handlers: 1,
                revalidator: RevalidatorConfig {
                    interval: Duration::from_millis(10),
                    // 30 ms of CPU a round: one every 3 s. (The spacing
                    // counts CPU time, the bounds below wall time: they are
                    // wide so that a loaded machine does not blur them.)
                    round_spacing: 100,
                    ..RevalidatorConfig::default()
                },
                ..PipelineConfig::default()
            },
        );
        let s = pipeline.stats.clone();
        let rounds = move || PipelineStats::get(&s.revalidation_rounds);
        let start = std::time::Instant::now();
        actix::clock::sleep(Duration::from_secs(2)).await;
        let rounds_in_2s = rounds();
        // Right after a round, a rule change: the next round is due 10 ms
        // after that one started, not 3 s.
        let seen = rounds();
        while rounds() == seen {
            actix::clock::sleep(Duration::from_millis(2)).await;
        }
        let ended = std::time::Instant::now();
        let new_rules =
            upcalld::daemon::parse_rules("table=0,priority=100,ip,actions=output:5\n", "new rules")
                .unwrap();
        pipeline
            .rule_table
            .send(RuleChange::Replace(new_rules))
            .await
            .unwrap();
        while rounds() == seen + 1 {
            actix::clock::sleep(Duration::from_millis(2)).await;
        }
        let after_change = ended.elapsed();
        pipeline.stop();
        netdev.close();
        (start.elapsed(), rounds_in_2s, after_change)
    });
    assert!(elapsed >= Duration::from_secs(2));
    // Unspaced: a round every 30 ms of CPU, some 60 in 2 s.
    assert!(
        (1..=2).contains(&rounds_in_2s),
        "{rounds_in_2s} rounds in 2 s at 3 s apart"
    );
    assert!(
        after_change < Duration::from_millis(2_000),
        "the round after a rule change came {after_change:?} after the last ended"
    );
}

/// The rule-table builds the lookup indexes a change dropped before it
/// publishes the snapshot: no handler's lookup builds one.
#[test]
fn snapshots_come_with_their_lookup_indexes_built() {
    let rules = |n: u32| {
        let text: String = (0..n)
            .map(|i| {
                format!(
                    "table=0,priority={},ip,nw_dst=10.{}.{}.0/{},actions=output:{}\n",
                    100 + i % 50,
                    i / 256,
                    i % 256,
                    24 + i % 8,
                    1 + i % 4
                )
            })
            .collect();
        upcalld::daemon::parse_rules(&text, "test rules").unwrap()
    };
    // Built lazily by a lookup otherwise:
    assert!(!Tables::from_rules(rules(10)).is_prepared());
    let (first, after_add) = in_system(|| async {
        let (netdev, pipeline) = start(config(RevalidatorConfig::default(), 1));
        let first = pipeline.rule_table.send(GetSnapshot).await.unwrap();
        pipeline
            .rule_table
            .send(RuleChange::Add(rules(2000)))
            .await
            .unwrap();
        let after_add = pipeline.rule_table.send(GetSnapshot).await.unwrap();
        pipeline.stop();
        netdev.close();
        (first.is_prepared(), after_add.is_prepared())
    });
    assert!(first, "the first snapshot");
    assert!(after_add, "a snapshot after a change");
}

/// Recirculation ids live while the ukeys of the flows that match them or
/// recirculate to them do, and are freed (without a walk over the flows)
/// once those flows are gone.
#[test]
fn recirculation_ids_live_as_long_as_flows_hold_them() {
    let rules = "table=0,priority=100,ip,actions=ct(table=1)\n\
                 table=1,priority=100,ip,actions=output:4\n";
    let recirc = Arc::new(actors::recirc::RecircIds::default());
    let (held, flows_held, after_expiry, flows_after) = in_system(|| async {
        let netdev = Arc::new(Netdev::new(NetdevConfig::default()));
        let pipeline = Pipeline::start(
            netdev.clone(),
            Tables::from_rules(upcalld::daemon::parse_rules(rules, "ct rules").unwrap()),
            PipelineConfig {
                xlate: actors::xlate::XlateConfig {
                    recirc: recirc.clone(),
                    ..Default::default()
                },
                ..config(
                    RevalidatorConfig {
                        max_idle: MAX_IDLE,
                        flow_limit_start: 200_000,
                        ..RevalidatorConfig::default()
                    },
                    2,
                )
            },
        );
        // Each frame is looked up twice: before `ct`, and after it, when
        // a miss resumes at table 1 under the id frozen for its in_port
        // (three ports).
        netdev.inject(&workload(300), 0);
        let start = std::time::Instant::now();
        let done = |s: messages::dpif::DpStats| {
            netdev.n_queued_upcalls() == 0
                && PipelineStats::get(&pipeline.stats.upcalls_handled) >= s.n_missed
                && s.n_hit + s.n_missed >= 600
        };
        while !done(netdev.stats()) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "upcalls stuck: {:?}, {} handled, {} queued",
                netdev.stats(),
                PipelineStats::get(&pipeline.stats.upcalls_handled),
                netdev.n_queued_upcalls()
            );
            actix::clock::sleep(Duration::from_millis(10)).await;
        }
        pipeline.flush().await.unwrap();
        for _ in 0..4 {
            pipeline.revalidate_now().await.unwrap();
        }
        let (held, flows_held) = (recirc.len(), netdev.stats().n_flows);
        // Idle past max-idle: every flow is deleted, its ukey with it.
        actix::clock::sleep(PAST_MAX_IDLE).await;
        pipeline.revalidate_now().await.unwrap();
        pipeline.flush().await.unwrap();
        for _ in 0..3 {
            pipeline.revalidate_now().await.unwrap();
        }
        let out = (held, flows_held, recirc.len(), netdev.stats().n_flows);
        pipeline.stop();
        netdev.close();
        out
    });
    assert_eq!(held, 3, "one id per in_port's frozen state, kept");
    assert!(flows_held > 3, "first passes and resumed passes installed");
    assert_eq!(flows_after, 0, "every flow expired");
    assert_eq!(after_expiry, 0, "no flow holds an id: all freed");
}
