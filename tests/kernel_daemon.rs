//! `upcalld run` on Linux's real openvswitch module, end to end: frames
//! sent into veth ports come up as upcalls, the daemon installs the
//! megaflows its translation predicts, later frames stay in the kernel,
//! rule changes and idleness make the revalidators modify or delete kernel
//! flows, and a SIGKILLed daemon's successor adopts what it left. Run
//! inside the kernel VM (`.ci/kernel-vm.sh`, or `cargo test`, whose
//! tests/kernel_vm.rs runs that).
//!
//! The daemon runs as a child process: this test binary again, running only
//! its ignored `daemon_child` entry point (the VM holds the test binaries,
//! not the `upcalld` one). Each test skips where the `ovs_datapath` family
//! is absent, unless `OVS_KERNEL_REQUIRED=1`.

mod kernel_common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use kernel_common::daemon::*;
use kernel_common::*;
use messages::extract::flow_extract;
use messages::flow::Flow;
use messages::format::odp_actions::format_odp_actions;
use messages::format::odp_flow::format_odp_flow;
use upcalld::control::{self, Command as Ctl};

const IP_A: u32 = 0x0a00_0001;
const IP_B: u32 = 0x0a00_0002;

/// The daemon child process: `Daemon::spawn` runs this binary with only
/// this test selected.
#[test]
#[ignore = "the daemon process of the kernel daemon tests, started by them"]
fn daemon_child() {
    daemon_child_main();
}

/// What our translation predicts for `frame` arriving on `in_port`: the
/// megaflow as `ovs-dpctl dump-flows` prints it, and its actions.
fn predict(rules: &str, ports: &[u32], in_port: u32, frame: &[u8]) -> (String, String) {
    let tables = Tables::from_rules(messages::parse::rules::parse_rules(rules).unwrap());
    let md = Flow {
        in_port,
        ..Flow::default()
    };
    let flow = flow_extract(frame, &md);
    let cfg = XlateConfig {
        ports: Some(Arc::new(ports.iter().copied().collect::<BTreeSet<u32>>())),
        upcall_pid: 0,
        local_port: 0,
        ..XlateConfig::default()
    };
    let out = xlate(&tables, &flow, &cfg);
    (
        format_odp_flow(&flow.masked(&out.wc), &out.wc),
        format_odp_actions(&out.actions),
    )
}

/// Whether the frame `tx` sends arrives at `rx` within two seconds.
fn forwarded(tx: &PacketSocket, rx: &PacketSocket, frame: &[u8]) -> bool {
    tx.send(frame);
    rx.sees(Duration::from_secs(2), frame)
}

fn frame_to(sport: u16, dport: u16) -> Vec<u8> {
    udp_frame(MAC_A, MAC_B, IP_A, IP_B, sport, dport)
}

const RULES_FORWARD: &str = "\
table=0,priority=100,in_port=1,udp,actions=output:2
table=0,priority=100,in_port=2,actions=output:1
table=0,priority=0,actions=drop
";

#[test]
fn megaflows_as_predicted_then_rule_changes_modify_and_delete_them() {
    if !ovs_present() {
        return;
    }
    let (a, b) = (Veth::new("kxa"), Veth::new("kxb"));
    let dp = "kxd1";
    let mut d = Daemon::start(
        "megaflows",
        &kernel_config(
            dp,
            &[("kxa", 1), ("kxb", 2)],
            "max_idle_ms = 60000",
            "on_exit = \"delete\"",
        ),
        RULES_FORWARD,
    );
    let (tx, rx) = (PacketSocket::bind(&a.peer()), PacketSocket::bind(&b.peer()));

    // The first frame misses, comes up, and is executed out of port 2.
    let first = frame_to(5000, 53);
    assert!(
        forwarded(&tx, &rx, &first),
        "the upcalled frame leaves port 2; log:\n{}",
        d.log()
    );
    d.wait_until("the megaflow is installed", || dpctl_dump(dp).len() == 1);
    let flows = dpctl_dump(dp);
    let (megaflow, actions) = predict(RULES_FORWARD, &[1, 2], 1, &first);
    assert_eq!(
        flows[0].flow, megaflow,
        "ovs-dpctl shows the predicted megaflow"
    );
    assert_eq!(flows[0].actions, actions);
    assert_eq!(actions, "2");
    // The daemon's own trace agrees on the actions.
    let trace = d.ctl(
        Ctl::Trace,
        "udp,in_port=1,dl_src=02:00:00:00:00:0a,dl_dst=02:00:00:00:00:0b,\
         nw_src=10.0.0.1,nw_dst=10.0.0.2,nw_ttl=64,udp_src=5000,udp_dst=53",
    );
    assert!(
        trace.contains(&format!("Datapath actions: {actions}\n")),
        "{trace}"
    );

    // Frames of the same megaflow stay in the kernel: forwarded, no upcall.
    let missed = dp_missed(dp);
    for sport in 6000..6005 {
        assert!(forwarded(&tx, &rx, &frame_to(sport, 53)));
    }
    assert_eq!(dp_missed(dp), missed, "no upcall for megaflow hits");
    d.wait_until("the megaflow counts the hits", || {
        dpctl_dump(dp).first().is_some_and(|f| f.packets >= 5)
    });

    // Same bits, new actions: the revalidator modifies the kernel flow.
    d.ctl(
        Ctl::ReplaceFlows,
        &RULES_FORWARD.replace("udp,actions=output:2", "udp,actions=drop"),
    );
    d.wait_until("the kernel flow's actions become drop", || {
        let f = dpctl_dump(dp);
        f.len() == 1 && f[0].actions == "drop" && f[0].flow == megaflow
    });
    assert!(!forwarded(&tx, &rx, &frame_to(7000, 53)), "now dropped");

    // A rule on tp_dst: the flow's mask lacks bits the new translation
    // needs, so the revalidator deletes it; the next frame installs a
    // megaflow that matches tp_dst.
    let rules3 =
        format!("table=0,priority=200,in_port=1,udp,tp_dst=53,actions=output:2\n{RULES_FORWARD}");
    d.ctl(Ctl::ReplaceFlows, &rules3);
    d.wait_until("the too-wide flow is deleted", || dpctl_dump(dp).is_empty());
    let again = frame_to(8000, 53);
    assert!(forwarded(&tx, &rx, &again));
    d.wait_until("the narrower megaflow is installed", || {
        dpctl_dump(dp).len() == 1
    });
    let (megaflow3, actions3) = predict(&rules3, &[1, 2], 1, &again);
    let flows = dpctl_dump(dp);
    assert_eq!(flows[0].flow, megaflow3);
    assert!(megaflow3.contains("udp(dst=53)"), "{megaflow3}");
    assert_eq!(flows[0].actions, actions3);

    d.stop();
    assert!(!dp_exists(dp), "on_exit = delete removes the datapath");
}

#[test]
fn idle_flows_expire_with_per_vport_upcall_pids() {
    if !ovs_present() {
        return;
    }
    let (a, b) = (Veth::new("kxc"), Veth::new("kxd"));
    let dp = "kxd2";
    let config = kernel_config(
        dp,
        &[("kxc", 1), ("kxd", 2)],
        "max_idle_ms = 1000",
        "on_exit = \"delete\"\nper_cpu_dispatch = false",
    );
    let mut d = Daemon::start("idle", &config, RULES_FORWARD);
    let (tx, rx) = (PacketSocket::bind(&a.peer()), PacketSocket::bind(&b.peer()));
    assert!(d.log().contains("PerVport"), "{}", d.log());

    // No ovs-dpctl here: opening a datapath, it switches it to per-CPU
    // dispatch where the kernel has that (OVS 3.1's dpif_netlink_open),
    // which would undo the per-vport wiring under test.
    //
    // Traffic (the first frame upcalled, the others megaflow hits) until
    // the flow shows hits, then silence until it expires.
    let mut sport = 1000;
    let waiter = d.socket.clone();
    let flows = move || {
        parse_flow_lines(
            &control::call(&waiter, Ctl::DumpDpFlows, "")
                .unwrap()
                .unwrap(),
        )
    };
    d.wait_until("a flow forwards frames in the kernel", || {
        sport += 1;
        forwarded(&tx, &rx, &frame_to(sport, 53)) && flows().first().is_some_and(|f| f.packets > 0)
    });
    d.wait_until("the idle flow expires", || flows().is_empty());
    // A frame after expiry upcalls again and is forwarded.
    let missed = d.missed();
    assert!(
        forwarded(&tx, &rx, &frame_to(9999, 53)),
        "{}",
        d.diagnosis()
    );
    assert!(d.missed() > missed);
    d.stop();
}

#[test]
fn after_sigkill_traffic_flows_and_the_restarted_daemon_adopts_or_deletes() {
    if !ovs_present() {
        return;
    }
    let (a, b) = (Veth::new("kxe"), Veth::new("kxf"));
    let dp = "kxd3";
    let rules_before = "\
table=0,priority=100,in_port=1,udp,tp_dst=53,actions=output:2
table=0,priority=100,in_port=1,udp,tp_dst=54,actions=output:2
table=0,priority=0,actions=drop
";
    let config = kernel_config(
        dp,
        &[("kxe", 1), ("kxf", 2)],
        "max_idle_ms = 60000",
        "on_exit = \"keep\"",
    );
    let mut d = Daemon::start("restart", &config, rules_before);
    let (tx, rx) = (PacketSocket::bind(&a.peer()), PacketSocket::bind(&b.peer()));
    assert!(forwarded(&tx, &rx, &frame_to(100, 53)));
    assert!(forwarded(&tx, &rx, &frame_to(100, 54)));
    d.wait_until("two megaflows are installed", || dpctl_dump(dp).len() == 2);

    d.kill();
    // Nobody handles upcalls now, yet installed flows go on forwarding.
    let missed = dp_missed(dp);
    assert!(forwarded(&tx, &rx, &frame_to(101, 53)));
    assert!(forwarded(&tx, &rx, &frame_to(101, 54)));
    assert_eq!(dp_missed(dp), missed, "forwarded in the kernel");
    let packets_53 = |flows: &[DpctlFlow]| {
        flows
            .iter()
            .find(|f| f.flow.contains("dst=53"))
            .map(|f| (f.packets, f.actions.clone()))
    };
    let (before_restart, _) = packets_53(&dpctl_dump(dp)).expect("flow for port 53");
    assert!(
        before_restart >= 1,
        "the flow counted the frame sent while down"
    );

    // The successor starts with changed rules: 53 unchanged, 54 dropped,
    // 56 new.
    let rules_after = "\
table=0,priority=100,in_port=1,udp,tp_dst=53,actions=output:2
table=0,priority=100,in_port=1,udp,tp_dst=54,actions=drop
table=0,priority=100,in_port=1,udp,tp_dst=56,actions=output:2
table=0,priority=0,actions=drop
";
    std::fs::write(d.rules_path(), rules_after).unwrap();
    d.spawn();
    // Startup revalidated the flows it found before answering control.
    let flows = dpctl_dump(dp);
    assert_eq!(
        packets_53(&flows),
        Some((before_restart, "2".to_string())),
        "the flow for 53 is adopted with its statistics: {flows:?}"
    );
    assert!(
        flows
            .iter()
            .filter(|f| f.flow.contains("dst=54"))
            .all(|f| f.actions == "drop"),
        "the flow for 54 is modified to drop or deleted: {flows:?}"
    );
    let missed = dp_missed(dp);
    assert!(forwarded(&tx, &rx, &frame_to(102, 53)));
    assert_eq!(
        dp_missed(dp),
        missed,
        "the adopted flow forwards in the kernel"
    );
    assert!(!forwarded(&tx, &rx, &frame_to(102, 54)));
    // New misses reach the new daemon's upcall sockets.
    assert!(forwarded(&tx, &rx, &frame_to(102, 56)), "log:\n{}", d.log());

    d.stop();
    assert!(dp_exists(dp), "on_exit = keep leaves the datapath");
    assert!(!dpctl_dump(dp).is_empty(), "with its flows");
    run("ovs-dpctl", &["del-dp", &format!("system@{dp}")]);
}

const RULES_FIREWALL: &str = "\
table=0,priority=50,ct_state=-trk,ip,actions=ct(table=1,zone=3)
table=0,priority=1,actions=drop
table=1,priority=50,ct_state=+trk+new,udp,in_port=1,actions=ct(commit,zone=3),output:2
table=1,priority=50,ct_state=+trk+est,ip,in_port=2,actions=output:1
table=1,priority=50,ct_state=+trk+est,ip,in_port=1,actions=output:2
table=1,priority=1,actions=drop
";

/// A stateful firewall on the kernel's connection tracker, through the
/// daemon: new UDP from a to b is committed and passes, b's replies pass
/// as `+est`, unsolicited traffic from b is dropped; each pass is a
/// recirculation the daemon resumes from its frozen state.
#[test]
fn stateful_firewall_on_the_kernel_conntrack() {
    if !ovs_present() {
        return;
    }
    let (a, b) = (Veth::new("kfa"), Veth::new("kfb"));
    let dp = "kfw1";
    let mut d = Daemon::start(
        "firewall",
        &kernel_config(
            dp,
            &[("kfa", 1), ("kfb", 2)],
            "max_idle_ms = 60000",
            "on_exit = \"delete\"",
        ),
        RULES_FIREWALL,
    );
    let (ta, tb) = (PacketSocket::bind(&a.peer()), PacketSocket::bind(&b.peer()));
    let to_b = frame_to(7000, 53);
    let from_b = udp_frame(MAC_B, MAC_A, IP_B, IP_A, 53, 7000);
    let unsolicited = udp_frame(MAC_B, MAC_A, IP_B, IP_A, 9999, 8000);

    assert!(
        !forwarded(&tb, &ta, &unsolicited),
        "unsolicited UDP from b is dropped\n{}",
        d.diagnosis()
    );
    assert!(
        forwarded(&ta, &tb, &to_b),
        "new UDP from a is committed and passes\n{}",
        d.diagnosis()
    );
    assert!(
        forwarded(&tb, &ta, &from_b),
        "b's reply passes as +est\n{}",
        d.diagnosis()
    );
    assert!(
        forwarded(&ta, &tb, &to_b),
        "a's next packet passes as +est\n{}",
        d.diagnosis()
    );
    assert!(
        !forwarded(&tb, &ta, &unsolicited),
        "still dropped once a's connection exists\n{}",
        d.diagnosis()
    );

    // The datapath holds the recirculating first pass and the resumed
    // passes, as ovs-dpctl shows them.
    let flows = dpctl_dump(dp);
    let recirc = flows
        .iter()
        .find(|f| f.actions.starts_with("ct(zone=3),recirc(0x"))
        .unwrap_or_else(|| panic!("no first-pass flow in {flows:?}"));
    assert!(recirc.flow.contains("ct_state(-trk)"), "{recirc:?}");
    let committed = flows
        .iter()
        .find(|f| f.actions == "ct(commit,zone=3),2")
        .unwrap_or_else(|| panic!("no committing flow in {flows:?}"));
    assert!(
        committed.flow.contains("ct_state(+new-est+trk)") || committed.flow.contains("+new"),
        "{committed:?}"
    );
    assert!(
        flows
            .iter()
            .any(|f| f.actions == "1" && f.flow.contains("+est")),
        "{flows:?}"
    );
    d.stop();
}

/// A flow deleted behind the daemon's back (`ovs-dpctl del-flows`) is
/// installed again: its upcalls are duplicates of a flow the daemon
/// believes installed only until the dumps have missed it four times.
#[test]
fn a_flow_deleted_behind_the_daemons_back_is_installed_again() {
    if !ovs_present() {
        return;
    }
    let (a, b) = (Veth::new("kxg"), Veth::new("kxh"));
    let dp = "kxd4";
    let mut d = Daemon::start(
        "stale",
        &kernel_config(
            dp,
            &[("kxg", 1), ("kxh", 2)],
            "max_idle_ms = 60000",
            "on_exit = \"delete\"",
        ),
        RULES_FORWARD,
    );
    let (tx, rx) = (PacketSocket::bind(&a.peer()), PacketSocket::bind(&b.peer()));
    assert!(
        forwarded(&tx, &rx, &frame_to(4000, 53)),
        "{}",
        d.diagnosis()
    );
    d.wait_until("the megaflow is installed", || dpctl_dump(dp).len() == 1);
    let installed = dpctl_dump(dp).remove(0).flow;

    run("ovs-dpctl", &["del-flows", &format!("system@{dp}")]);
    assert!(dpctl_dump(dp).is_empty());
    // Every frame upcalls and is forwarded by the daemon meanwhile; once
    // the dumps have missed the flow, the next upcall puts it again.
    let mut sport = 4001;
    d.wait_until("the deleted megaflow is installed again", || {
        sport += 1;
        assert!(
            forwarded(&tx, &rx, &frame_to(sport, 53)),
            "frame {sport} lost"
        );
        dpctl_dump(dp).len() == 1
    });
    assert_eq!(dpctl_dump(dp)[0].flow, installed, "the same megaflow");
    let show = d.ctl(Ctl::UpcallShow, "");
    assert!(
        show.contains("(dropped as missing from dumps: 1)"),
        "{show}"
    );
    d.stop();
}

/// A field of `ctl upcall-show`: the number after `name`.
fn show_field(show: &str, name: &str) -> u64 {
    show.split(name)
        .nth(1)
        .and_then(|rest| {
            rest.trim_start_matches([' ', ':', '('])
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {name} in:\n{show}"))
}

/// Twenty thousand new flows, each frame its own megaflow (every source
/// MAC differs and a rule examines `dl_src`), sent in closed loop as fast
/// as the daemon takes them, with the daemon's default flow limit: every
/// flow gets installed and none is deleted, however long the revalidator
/// goes on dumping them (the dynamic limit must not collapse).
#[test]
fn a_burst_of_20000_new_flows_is_installed_and_none_is_deleted() {
    if !ovs_present() {
        return;
    }
    let (a, _b) = (Veth::new("kxi"), Veth::new("kxj"));
    let dp = "kxd5";
    let rules = "\
table=0,priority=1000,dl_src=02:ff:ff:ff:ff:ff,actions=drop
table=0,priority=100,in_port=1,ip,actions=output:2
table=0,priority=0,actions=drop
";
    let mut d = Daemon::start(
        "burst",
        &kernel_config(
            dp,
            &[("kxi", 1), ("kxj", 2)],
            "max_idle_ms = 60000",
            "on_exit = \"delete\"",
        ),
        rules,
    );
    let tx = PacketSocket::bind(&a.peer());
    let n = 20_000u32;
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let [_, _, hi, lo] = i.to_be_bytes();
            udp_frame([2, 0, 0, 1, hi, lo], MAC_B, IP_A, IP_B, 1000, 53)
        })
        .collect();
    let sock = d.socket.clone();
    let show = move || {
        control::call(&sock, Ctl::UpcallShow, "")
            .expect("control socket")
            .expect("upcall-show")
    };
    let current = |s: &str| show_field(s, "(current");
    // At most three passes: flows the limit refused in one (it starts at
    // 10 000 and grows while rounds are quick) are installed by the next.
    for pass in 0..3 {
        for chunk in frames.chunks(500) {
            for f in chunk {
                tx.send(f);
            }
            d.wait_until(
                &format!("pass {pass}: the daemon handles what came up"),
                || {
                    let s = show();
                    show_field(&s, "handled:") + show_field(&s, "lost:")
                        >= show_field(&s, "missed:")
                },
            );
        }
        if current(&show()) == n as u64 {
            break;
        }
    }
    // Rounds over all of them.
    let rounds = show_field(&show(), "revalidators  : 1 (");
    d.wait_until("five more revalidation rounds", || {
        show_field(&show(), "revalidators  : 1 (") >= rounds + 5
    });
    let s = show();
    assert_eq!(current(&s), n as u64, "every flow installed:\n{s}");
    assert_eq!(show_field(&s, "delete:"), 0, "none deleted:\n{s}");
    assert_eq!(show_field(&s, "lost:"), 0, "no upcall lost:\n{s}");
    // The kernel backend's own counters: every put went out in batches,
    // every dumped flow decoded.
    assert!(show_field(&s, "ops:") >= n as u64, "{s}");
    assert!(
        show_field(&s, "sendmsg_calls:") < show_field(&s, "ops:"),
        "{s}"
    );
    assert_eq!(show_field(&s, "bad_flows:"), 0, "{s}");
    assert_eq!(dpctl_flows(dp).len(), n as usize);
    d.stop();
}
