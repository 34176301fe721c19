//! Flow setups through the kernel datapath, batch sizes 1, 8 and 64. Runs
//! inside the kernel VM (it needs the openvswitch module and root):
//!
//! ```sh
//! ../shared/tools/kernel-vm/cargo-test-in-vm.sh --release -p upcalld --bench kernel_setup
//! ```
//!
//! Two workloads, one `BENCH` line each per batch size:
//! - `put`: N megaflows installed with `operate` in batches of B puts.
//! - `upcall`: N distinct frames sent into a port in bursts of 64; each
//!   MISS upcall read is answered with a put and an execute, batched B ops
//!   per `operate`, until every frame has a flow (closed loop, so nothing
//!   overflows the upcall sockets).
//!
//! Figures: setups/s, ops per `sendmsg`, lost upcalls. Where the module is
//! absent the benchmark says so and exits 0.

use std::os::fd::OwnedFd;
use std::process::Command;
use std::time::{Duration, Instant};

use messages::dpif::{Dpif, PortKind, PortSpec};
use messages::dpif::{DpifOp, Execute, FlowPut, PacketMetadata, PutMode, Upcall};
use messages::flow::*;
use messages::hash::key_ufid;
use messages::odp::OdpAction;
use messages::Megaflow;
use upcalld::dpif_kernel::{kernel_has_ovs, KernelDpif, KernelDpifConfig};
use upcalld::raw_socket;

const N_PUT: u32 = 20_000;
const N_UPCALL: u32 = 2_000;

fn ip(args: &[&str]) {
    let ok = Command::new("/sbin/ip")
        .args(args)
        .status()
        .map(|s| s.success());
    assert_eq!(ok.ok(), Some(true), "ip {args:?}");
}

fn mask() -> Flow {
    Flow {
        in_port: u32::MAX,
        recirc_id: u32::MAX,
        dl_type: u16::MAX,
        nw_dst: u32::MAX,
        nw_frag: FLOW_NW_FRAG_MASK,
        ..Flow::default()
    }
}

fn frame(dst_ip: u32) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x08, 0x00];
    let mut iph = vec![
        0x45,
        0,
        0,
        28,
        0,
        1,
        0x40,
        0,
        64,
        IPPROTO_UDP,
        0,
        0,
        10,
        0,
        0,
        1,
    ];
    iph.extend_from_slice(&dst_ip.to_be_bytes());
    let csum = messages::wire::checksum::internet(&iph);
    iph[10..12].copy_from_slice(&csum.to_be_bytes());
    f.extend_from_slice(&iph);
    f.extend_from_slice(&[0x13, 0x88, 0, 53, 0, 8, 0, 0]);
    f
}

fn bench_put(dpif: &KernelDpif, port: u32, batch: usize) {
    dpif.flow_flush().expect("flush");
    let before = dpif.counters();
    let t0 = Instant::now();
    let mut ops = Vec::with_capacity(batch);
    let mut failed = 0;
    for i in 0..N_PUT {
        let key = Flow {
            in_port: port,
            dl_type: ETH_TYPE_IP,
            nw_dst: 0x0b00_0000 + i,
            nw_proto: IPPROTO_UDP,
            ..Flow::default()
        };
        ops.push(DpifOp::put(FlowPut {
            ufid: key_ufid(&key),
            megaflow: Megaflow::new(&key, &mask()),
            actions: vec![OdpAction::Output(port)].into(),
            mode: PutMode::Create,
            reset_stats: false,
        }));
        if ops.len() == batch {
            failed += dpif
                .operate(&mut std::mem::take(&mut ops))
                .iter()
                .filter(|r| r.is_err())
                .count();
        }
    }
    failed += dpif.operate(&mut ops).iter().filter(|r| r.is_err()).count();
    let secs = t0.elapsed().as_secs_f64();
    let after = dpif.counters();
    let sends = after.sendmsg_calls - before.sendmsg_calls;
    println!(
        "BENCH workload=put batch={batch} flows={N_PUT} failed={failed} setups_per_s={:.0} sendmsg={sends} ops_per_sendmsg={:.1} n_flows={}",
        N_PUT as f64 / secs,
        (after.ops - before.ops) as f64 / sends.max(1) as f64,
        dpif.stats().n_flows
    );
}

fn bench_upcall(dpif: &KernelDpif, port: u32, tx: &OwnedFd, batch: usize) {
    dpif.flow_flush().expect("flush");
    let stats0 = dpif.stats();
    let before = dpif.counters();
    let frames: Vec<Vec<u8>> = (0..N_UPCALL).map(|i| frame(0x0c00_0000 + i)).collect();
    let t0 = Instant::now();
    let mut installed = 0u32;
    let mut sent = 0usize;
    let mut ops = Vec::with_capacity(batch);
    let mut ups: Vec<Upcall> = Vec::new();
    let mut idle_since = Instant::now();
    while (installed as usize) < frames.len() {
        if sent < frames.len() && sent <= installed as usize {
            for f in frames.iter().skip(sent).take(64) {
                let _ = raw_socket::send(tx, f);
                sent += 1;
            }
        }
        ups.clear();
        for q in 0..dpif.queue_pids().len() {
            dpif.recv_upcalls(q, 64, Duration::from_millis(1), &mut ups)
                .expect("recv");
        }
        if ups.is_empty() {
            if idle_since.elapsed() > Duration::from_secs(2) {
                // Lost upcalls: send the missing frames again.
                sent = installed as usize;
                idle_since = Instant::now();
            }
            continue;
        }
        idle_since = Instant::now();
        for u in &ups {
            let actions = vec![OdpAction::Output(port)];
            ops.push(DpifOp::put(FlowPut {
                ufid: u.ufid,
                megaflow: Megaflow::new(&u.key, &mask()),
                actions: actions.clone().into(),
                mode: PutMode::Create,
                reset_stats: false,
            }));
            ops.push(DpifOp::Execute(Box::new(Execute {
                packet: u.packet.clone(),
                metadata: PacketMetadata::of(&u.key),
                actions: actions.into(),
                mru: 0,
            })));
            if ops.len() >= batch {
                let r = dpif.operate(&mut std::mem::take(&mut ops));
                installed += r.iter().step_by(2).filter(|r| r.is_ok()).count() as u32;
            }
        }
        if !ops.is_empty() {
            let r = dpif.operate(&mut std::mem::take(&mut ops));
            installed += r.iter().step_by(2).filter(|r| r.is_ok()).count() as u32;
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let after = dpif.counters();
    let stats = dpif.stats();
    let sends = after.sendmsg_calls - before.sendmsg_calls;
    println!(
        "BENCH workload=upcall batch={batch} flows={installed} setups_per_s={:.0} ops_per_sendmsg={:.1} upcalls_lost={} n_flows={}",
        installed as f64 / secs,
        (after.ops - before.ops) as f64 / sends.max(1) as f64,
        stats.n_lost - stats0.n_lost,
        stats.n_flows
    );
}

fn main() {
    if !matches!(kernel_has_ovs(), Ok(true)) {
        assert!(
            std::env::var("OVS_KERNEL_REQUIRED").as_deref() != Ok("1"),
            "OVS_KERNEL_REQUIRED=1 but the ovs_datapath family is missing"
        );
        println!("SKIPPED: no openvswitch kernel module");
        return;
    }
    for conf in ["all", "default"] {
        let _ = std::fs::write(format!("/proc/sys/net/ipv6/conf/{conf}/disable_ipv6"), "1");
    }
    ip(&[
        "link", "add", "kbench", "type", "veth", "peer", "name", "kbench_p",
    ]);
    ip(&["link", "set", "kbench", "up"]);
    ip(&["link", "set", "kbench_p", "up"]);
    let dpif = KernelDpif::open(&KernelDpifConfig {
        name: "kbench0".into(),
        n_queues: 2,
        per_cpu_dispatch: true,
    })
    .expect("open datapath");
    let port = dpif
        .port_add(&PortSpec {
            name: "kbench".into(),
            kind: PortKind::System,
            number: None,
        })
        .expect("add port");
    // Protocol 0: the socket only sends.
    let tx = raw_socket::packet_socket("kbench_p", 0).expect("AF_PACKET on kbench_p");
    println!(
        "BENCH dispatch={:?} handlers={}",
        dpif.dispatch(),
        dpif.queue_pids().len()
    );
    for batch in [1, 8, 64] {
        bench_put(&dpif, port, batch);
    }
    for batch in [1, 8, 64] {
        bench_upcall(&dpif, port, &tx, batch);
    }
    dpif.destroy().expect("destroy");
}
