//! The kernel datapath against Linux's real openvswitch module. Run inside
//! the VM of ../shared/tools/kernel-vm:
//!
//! ```sh
//! ../shared/tools/kernel-vm/cargo-test-in-vm.sh --test kernel_datapath -- --test-threads=1
//! ```
//!
//! Each test skips (passes, saying so) where the `ovs_datapath` family is
//! absent, unless `OVS_KERNEL_REQUIRED=1`, where that is a failure. The
//! tests make their own veth pairs and datapaths and remove them.

mod kernel_common;

use std::time::{Duration, Instant};

use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::dpif::{DpifOp, Execute, FlowPut, PacketMetadata, PutMode, Upcall, UpcallKind};
use messages::flow::*;
use messages::format::odp_flow::format_odp_flow;
use messages::odp::OdpAction;
use messages::Megaflow;

use kernel_common::*;
use messages::hash::key_ufid;
use upcalld::dpif_kernel::{Dispatch, KernelDpif, KernelDpifConfig};

fn open(name: &str) -> KernelDpif {
    let dpif = KernelDpif::open(&KernelDpifConfig {
        name: name.into(),
        n_queues: 2,
        per_cpu_dispatch: true,
    })
    .unwrap_or_else(|e| panic!("opening datapath {name}: {e}\n{}", ovs_dmesg()));
    dpif.flow_flush().expect("flush");
    dpif
}

/// Upcalls from all queues within `timeout`.
fn upcalls(dpif: &KernelDpif, timeout: Duration) -> Vec<Upcall> {
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    while Instant::now() < deadline {
        for q in 0..dpif.queue_pids().len() {
            dpif.recv_upcalls(q, 64, Duration::from_millis(50), &mut out)
                .expect("recv_upcalls");
        }
        if !out.is_empty() {
            // Give the other queue a moment to deliver what it has too.
            for q in 0..dpif.queue_pids().len() {
                dpif.recv_upcalls(q, 64, Duration::from_millis(20), &mut out)
                    .expect("recv_upcalls");
            }
            break;
        }
    }
    out
}

#[test]
fn miss_upcall_then_megaflow_forwards_without_upcalls() {
    if !ovs_present() {
        return;
    }
    let a = Veth::new("kda");
    let b = Veth::new("kdb");
    let dpif = open("kdt1");
    assert_eq!(
        dpif.dispatch(),
        Dispatch::PerCpu,
        "kernel 6.1 supports per-CPU dispatch"
    );
    let pa = dpif
        .port_add(&PortSpec {
            name: a.name.clone(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port a");
    let pb = dpif
        .port_add(&PortSpec {
            name: b.name.clone(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port b");
    let names: Vec<String> = dpif.ports().into_iter().map(|p| p.name).collect();
    assert!(
        names.contains(&a.name) && names.contains(&b.name),
        "{names:?}"
    );

    let tx = PacketSocket::bind(&a.peer());
    let rx = PacketSocket::bind(&b.peer());
    let frame = udp_frame(MAC_A, MAC_B, 0x0a00_0001, 0x0a00_0002, 5000, 53);
    tx.send(&frame);

    let ups = upcalls(&dpif, Duration::from_secs(5));
    let up = ups
        .iter()
        .find(|u| u.packet == frame)
        .unwrap_or_else(|| panic!("no upcall for our frame; got {ups:?}"));
    assert_eq!(up.kind, UpcallKind::Miss);
    assert_eq!(up.key.in_port, pa);
    assert_eq!(up.key.dl_type, ETH_TYPE_IP);
    assert_eq!(up.key.nw_proto, IPPROTO_UDP);
    assert_eq!((up.key.nw_src, up.key.nw_dst), (0x0a00_0001, 0x0a00_0002));
    assert_eq!((up.key.tp_src, up.key.tp_dst), (5000, 53));
    assert_eq!(up.key.dl_src, MAC_A);

    // A megaflow on in_port + IPv4 destination /24 + UDP dst port.
    let mask = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        nw_dst: 0xffff_ff00,
        nw_proto: u8::MAX,
        nw_frag: FLOW_NW_FRAG_MASK,
        tp_dst: u16::MAX,
        recirc_id: u32::MAX,
        ..Flow::default()
    };
    let actions = vec![OdpAction::Output(pb)];
    let results = dpif.operate(&mut [
        DpifOp::put(FlowPut {
            ufid: up.ufid,
            megaflow: Megaflow::new(&up.key, &mask),
            actions: actions.clone().into(),
            mode: PutMode::Create,
            reset_stats: false,
        }),
        DpifOp::Execute(Box::new(Execute {
            packet: up.packet.clone(),
            metadata: PacketMetadata::of(&up.key),
            actions: actions.clone().into(),
            mru: 0,
        })),
    ]);
    for r in &results {
        assert!(r.is_ok(), "{results:?}\n{}", ovs_dmesg());
    }
    let executed = rx.recv_matching(Duration::from_secs(2), |f| f == frame.as_slice());
    assert_eq!(executed.len(), 1, "the executed packet leaves port b");

    // ovs-dpctl shows the megaflow as our printer predicts.
    let lines = dpctl_flows("kdt1");
    assert_eq!(lines.len(), 1, "{lines:?}");
    let expected = format!(
        "{}, packets:0, bytes:0, used:never, actions:{pb}",
        format_odp_flow(&up.key, &mask)
    );
    assert_eq!(lines[0], expected);

    // The same flow again, another source port: handled in the kernel.
    let frame2 = udp_frame(MAC_A, MAC_B, 0x0a00_0001, 0x0a00_0002, 6000, 53);
    tx.send(&frame2);
    let forwarded = rx.recv_matching(Duration::from_secs(2), |f| f == frame2.as_slice());
    assert_eq!(
        forwarded.len(),
        1,
        "the second packet is forwarded by the megaflow"
    );
    let ups = upcalls(&dpif, Duration::from_millis(500));
    assert!(
        ups.iter().all(|u| u.packet != frame2),
        "no upcall for a packet the megaflow matches"
    );

    let flows = dpif.flow_dump().expect("dump");
    assert_eq!(flows.len(), 1);
    let f = &flows[0];
    assert_eq!(f.ufid, up.ufid);
    assert_eq!(f.actions, actions);
    assert_eq!(f.stats.n_packets, 1);
    assert!(f.stats.used_ms.is_some());
    assert_eq!(f.key.nw_dst, 0x0a00_0000, "the kernel keeps the key masked");
    assert_eq!(f.mask.nw_dst, 0xffff_ff00);
    let stats = dpif.stats();
    assert_eq!(stats.n_flows, 1);
    assert!(stats.n_hit >= 1 && stats.n_missed >= 1, "{stats:?}");

    // Modify to drop, then delete.
    let r = dpif.operate(&mut [DpifOp::put(FlowPut {
        ufid: up.ufid,
        megaflow: Megaflow::new(&up.key, &mask),
        actions: vec![].into(),
        mode: PutMode::Modify,
        reset_stats: true,
    })]);
    assert!(r[0].is_ok(), "{r:?}");
    let flows = dpif.flow_dump().expect("dump");
    assert_eq!(flows[0].actions, vec![]);
    assert_eq!(flows[0].stats.n_packets, 0, "stats were reset");
    let r = dpif.operate(&mut [DpifOp::FlowDel { ufid: up.ufid }]);
    assert!(r[0].is_ok(), "{r:?}");
    assert!(dpif.flow_dump().expect("dump").is_empty());

    dpif.port_del(pb).expect("del port");
    assert!(dpif.port_del(pb).is_err(), "deleting a missing port fails");
    dpif.destroy().expect("destroy");
}

#[test]
fn a_batch_goes_in_one_sendmsg_and_each_answer_reaches_its_op() {
    if !ovs_present() {
        return;
    }
    let a = Veth::new("kdc");
    let dpif = open("kdt2");
    let pa = dpif
        .port_add(&PortSpec {
            name: a.name.clone(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port");
    let mask = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        nw_dst: u32::MAX,
        recirc_id: u32::MAX,
        ..Flow::default()
    };
    let keys: Vec<Flow> = (0..64u32)
        .map(|i| Flow {
            in_port: pa,
            dl_type: ETH_TYPE_IP,
            nw_src: 0x0a00_0001,
            nw_dst: 0x0a01_0000 + i,
            nw_proto: IPPROTO_TCP,
            nw_ttl: 64,
            tp_src: 1000,
            tp_dst: 80,
            ..Flow::default()
        })
        .collect();
    let mut ops: Vec<DpifOp> = keys
        .iter()
        .map(|k| {
            DpifOp::put(FlowPut {
                ufid: key_ufid(k),
                megaflow: Megaflow::new(k, &mask),
                actions: vec![OdpAction::Output(pa)].into(),
                mode: PutMode::Create,
                reset_stats: false,
            })
        })
        .collect();
    // Two ops that must fail, in the middle: a duplicate create and a
    // modify of a flow that does not exist.
    ops.insert(
        10,
        DpifOp::put(FlowPut {
            ufid: key_ufid(&keys[3]),
            megaflow: Megaflow::new(&keys[3], &mask),
            actions: vec![].into(),
            mode: PutMode::Create,
            reset_stats: false,
        }),
    );
    ops.insert(
        20,
        DpifOp::put(FlowPut {
            ufid: 42,
            megaflow: Megaflow::new(
                &Flow {
                    nw_dst: 0x0b00_0000,
                    ..keys[0]
                },
                &mask,
            ),
            actions: vec![].into(),
            mode: PutMode::Modify,
            reset_stats: false,
        }),
    );
    let before = dpif.counters();
    let results = dpif.operate(&mut ops);
    let after = dpif.counters();
    assert_eq!(
        after.sendmsg_calls - before.sendmsg_calls,
        1,
        "66 ops in one sendmsg"
    );
    assert_eq!(after.ops - before.ops, 66);
    // The two errors and the read that finds the socket empty: no
    // answer per request.
    assert!(
        after.recvmsg_calls - before.recvmsg_calls <= 3,
        "{} recvmsg calls for 66 ops",
        after.recvmsg_calls - before.recvmsg_calls
    );
    for (i, r) in results.iter().enumerate() {
        match i {
            10 | 20 => assert!(r.is_err(), "op {i} should fail: {r:?}"),
            _ => assert!(r.is_ok(), "op {i}: {r:?}\n{}", ovs_dmesg()),
        }
    }
    let flows = dpif.flow_dump().expect("dump");
    assert_eq!(flows.len(), 64);
    let mut dsts: Vec<u32> = flows.iter().map(|f| f.key.nw_dst).collect();
    dsts.sort();
    assert_eq!(dsts, (0..64).map(|i| 0x0a01_0000 + i).collect::<Vec<_>>());
    assert_eq!(dpctl_flows("kdt2").len(), 64);

    let mut dels: Vec<DpifOp> = keys
        .iter()
        .map(|k| DpifOp::FlowDel { ufid: key_ufid(k) })
        .collect();
    assert!(dpif.operate(&mut dels).iter().all(|r| r.is_ok()));
    assert!(dpif.flow_dump().expect("dump").is_empty());
    dpif.destroy().expect("destroy");
}

#[test]
fn per_vport_dispatch_also_delivers_upcalls() {
    if !ovs_present() {
        return;
    }
    let a = Veth::new("kdd");
    let dpif = KernelDpif::open(&KernelDpifConfig {
        name: "kdt3".into(),
        n_queues: 2,
        per_cpu_dispatch: false,
    })
    .expect("open");
    assert_eq!(dpif.dispatch(), Dispatch::PerVport);
    let pa = dpif
        .port_add(&PortSpec {
            name: a.name.clone(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port");
    let tx = PacketSocket::bind(&a.peer());
    let frame = udp_frame(MAC_A, MAC_B, 0x0a00_0003, 0x0a00_0004, 7, 9);
    tx.send(&frame);
    let ups = upcalls(&dpif, Duration::from_secs(5));
    let up = ups.iter().find(|u| u.packet == frame).expect("upcall");
    assert_eq!(up.key.in_port, pa);
    dpif.destroy().expect("destroy");
}

#[test]
fn every_upcall_is_received_or_counted_as_lost() {
    if !ovs_present() {
        return;
    }
    let a = Veth::new("kde");
    let dpif = KernelDpif::open(&KernelDpifConfig {
        name: "kdt4".into(),
        n_queues: 1,
        per_cpu_dispatch: true,
    })
    .expect("open");
    dpif.port_add(&PortSpec {
        name: a.name.clone(),
        kind: PortKind::System,
        number: None,
    })
    .expect("add port");
    // More misses than the handler's socket buffer holds (16 MiB, which
    // the kernel doubles: some 25 000 upcalls of small frames), sent while
    // nobody reads: the socket, read by nobody else, is the backlog's
    // bound.
    let tx = PacketSocket::bind(&a.peer());
    let sent = 60_000u16;
    for sport in 0..sent {
        tx.send(&udp_frame(MAC_A, MAC_B, 0x0a00_0005, 0x0a00_0006, sport, 9));
    }
    let mut received = Vec::new();
    let mut idle_since = Instant::now();
    while idle_since.elapsed() < Duration::from_secs(1) {
        let before = received.len();
        dpif.recv_upcalls(0, 64, Duration::from_millis(100), &mut received)
            .expect("recv_upcalls");
        if received.len() > before {
            idle_since = Instant::now();
        }
    }
    let stats = dpif.stats();
    let counters = dpif.counters();
    eprintln!(
        "sent {sent}, {stats:?}, {counters:?}, received {}",
        received.len()
    );
    assert!(stats.n_missed >= sent as u64, "{stats:?}");
    assert_eq!(
        received.len() as u64 + counters.bad_upcalls + stats.n_lost,
        stats.n_missed,
        "every miss is received, undecodable, or lost by the kernel"
    );
    assert!(
        stats.n_lost > 0,
        "a flood beyond the socket buffer loses upcalls"
    );
    assert!(
        counters.upcall_overruns > 0,
        "the overrun reached the reader as ENOBUFS and was counted"
    );
    dpif.destroy().expect("destroy");
}

#[test]
fn concurrent_dumps_take_turns() {
    if !ovs_present() {
        return;
    }
    let dpif = open("kdt5");
    // Some flows, so that each dump takes a few replies.
    let mut ops: Vec<DpifOp> = (0..200u32)
        .map(|i| {
            let key = Flow {
                in_port: 1,
                dl_type: ETH_TYPE_IP,
                nw_dst: 0x0a01_0000 + i,
                ..Flow::default()
            };
            let mask = Flow {
                in_port: u32::MAX,
                recirc_id: u32::MAX,
                dl_type: u16::MAX,
                nw_dst: u32::MAX,
                nw_frag: FLOW_NW_FRAG_MASK,
                ..Flow::default()
            };
            DpifOp::put(FlowPut {
                ufid: key_ufid(&key),
                megaflow: Megaflow::new(&key, &mask),
                actions: vec![].into(),
                mode: PutMode::Create,
                reset_stats: false,
            })
        })
        .collect();
    assert!(
        dpif.operate(&mut ops).iter().all(|r| r.is_ok()),
        "{}",
        ovs_dmesg()
    );
    // The kernel refuses a second dump on a socket with one in progress
    // (EBUSY); callers on several threads share the dpif's flow socket.
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    for _ in 0..20 {
                        let flows = dpif.flow_dump().expect("dump");
                        assert_eq!(flows.len(), 200);
                        assert!(!dpif.ports().is_empty(), "the local port at least");
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("dumping thread");
        }
    });
    dpif.destroy().expect("destroy");
}

/// Conntrack on the kernel: the features are probed at open; a packet goes
/// through `ct(commit,zone=5,mark)` and `recirc`, comes back as an upcall
/// whose key carries the tracker's verdict and the original tuple, and
/// once the recirculated megaflow is in, later packets cross the
/// datapath through the tracker without upcalls.
#[test]
fn conntrack_is_probed_and_recirculated_packets_carry_its_verdict() {
    use messages::odp::CtAction;
    if !ovs_present() {
        return;
    }
    let a = Veth::new("kdca");
    let b = Veth::new("kdcb");
    let dpif = open("kdct");
    let support = dpif.conntrack();
    assert_eq!(support.missing(), None, "{support:?}");
    assert!(support.ct_orig_tuple, "{support:?}");
    let add = |name: &str| {
        dpif.port_add(&PortSpec {
            name: name.into(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port")
    };
    let (pa, pb) = (add(&a.name), add(&b.name));
    let tx = PacketSocket::bind(&a.peer());
    let rx = PacketSocket::bind(&b.peer());

    // Pass one: everything from a through the tracker, then recirculate.
    const RECIRC: u32 = 0x41;
    let first = Flow {
        in_port: pa,
        dl_type: ETH_TYPE_IP,
        ..Flow::default()
    };
    let first_mask = Flow {
        in_port: u32::MAX,
        dl_type: u16::MAX,
        recirc_id: u32::MAX,
        ..Flow::default()
    };
    let ct = vec![
        OdpAction::Ct(CtAction {
            commit: true,
            zone: 5,
            mark: Some((0x7, 0xff)),
            ..CtAction::default()
        }),
        OdpAction::Recirc(RECIRC),
    ];
    let r = dpif.operate(&mut [DpifOp::put(FlowPut {
        ufid: 1,
        megaflow: Megaflow::new(&first, &first_mask),
        actions: ct.clone().into(),
        mode: PutMode::Create,
        reset_stats: false,
    })]);
    assert!(r[0].is_ok(), "{r:?}\n{}", ovs_dmesg());

    let frame = udp_frame(MAC_A, MAC_B, 0x0a00_0001, 0x0a00_0002, 5000, 53);
    tx.send(&frame);
    let ups = upcalls(&dpif, Duration::from_secs(5));
    let up = ups
        .iter()
        .find(|u| u.key.recirc_id == RECIRC)
        .unwrap_or_else(|| panic!("no upcall after recirculation; got {ups:?}"));
    let k = &up.key;
    assert_eq!(
        k.ct_state & (CS_TRACKED | CS_NEW),
        CS_TRACKED | CS_NEW,
        "{k:?}"
    );
    assert_eq!((k.ct_zone, k.ct_mark), (5, 0x7));
    assert_eq!(
        (
            k.ct_nw_proto,
            k.ct_nw_src,
            k.ct_nw_dst,
            k.ct_tp_src,
            k.ct_tp_dst
        ),
        (IPPROTO_UDP, 0x0a00_0001, 0x0a00_0002, 5000, 53),
        "the original direction's tuple"
    );

    // Pass two: tracked packets of zone 5 go out of b.
    let second_mask = Flow {
        ct_state: CS_TRACKED,
        ct_zone: u16::MAX,
        ..first_mask
    };
    let r = dpif.operate(&mut [DpifOp::put(FlowPut {
        ufid: 2,
        megaflow: Megaflow::new(k, &second_mask),
        actions: vec![OdpAction::Output(pb)].into(),
        mode: PutMode::Create,
        reset_stats: false,
    })]);
    assert!(r[0].is_ok(), "{r:?}\n{}", ovs_dmesg());
    let frame2 = udp_frame(MAC_A, MAC_B, 0x0a00_0001, 0x0a00_0002, 5000, 53);
    tx.send(&frame2);
    assert_eq!(
        rx.recv_matching(Duration::from_secs(2), |f| f == frame2.as_slice())
            .len(),
        1,
        "tracked and recirculated in the kernel, then forwarded"
    );

    // The dump gives back the ct action, the recirculation and ct keys.
    let flows = dpif.flow_dump().expect("dump");
    let one = flows.iter().find(|f| f.ufid == 1).expect("flow 1");
    assert_eq!(one.actions, ct);
    let two = flows.iter().find(|f| f.ufid == 2).expect("flow 2");
    assert_eq!((two.key.recirc_id, two.key.ct_zone), (RECIRC, 5));
    assert_eq!(two.mask.ct_state, CS_TRACKED);
    assert!(two.stats.n_packets >= 1, "{two:?}");
    let lines = dpctl_flows("kdct");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("actions:ct(commit,zone=5,mark=0x7/0xff),recirc(0x41)")),
        "{lines:?}"
    );
    dpif.destroy().expect("destroy");
}
