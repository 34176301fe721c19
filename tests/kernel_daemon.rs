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
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actors::tables::Tables;
use actors::xlate::{xlate, XlateConfig};
use kernel_common::*;
use messages::extract::flow_extract;
use messages::flow::Flow;
use messages::format::odp_actions::format_odp_actions;
use messages::format::odp_flow::format_odp_flow;
use upcalld::config::Config;
use upcalld::control::{self, Command as Ctl};

/// Where `daemon_child` finds its configuration.
const CONFIG_ENV: &str = "UPCALLD_KERNEL_TEST_CONFIG";

const IP_A: u32 = 0x0a00_0001;
const IP_B: u32 = 0x0a00_0002;

/// The daemon in a child process.
struct Daemon {
    child: Option<Child>,
    dir: PathBuf,
    socket: PathBuf,
}

impl Daemon {
    /// Writes `config` (the control socket and rules file lines are added)
    /// and `rules` into a directory named after `tag`, and starts the daemon.
    fn start(tag: &str, config: &str, rules: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("upcalld-kd-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let rules_path = dir.join("rules.of13");
        std::fs::write(&rules_path, rules).unwrap();
        let text = format!(
            "control_socket = {socket:?}\nrules = {rules_path:?}\nmetrics_addr = \"\"\n{config}"
        );
        std::fs::write(dir.join("upcalld.toml"), text).unwrap();
        let mut d = Daemon {
            child: None,
            dir,
            socket,
        };
        d.spawn();
        d
    }

    fn rules_path(&self) -> PathBuf {
        self.dir.join("rules.of13")
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("upcalld.log"))
            .unwrap();
        let child = Command::new(std::env::current_exe().unwrap())
            .args(["daemon_child", "--exact", "--ignored", "--nocapture"])
            .env(CONFIG_ENV, self.dir.join("upcalld.toml"))
            .env(
                "RUST_LOG",
                std::env::var("UPCALLD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the daemon");
        self.child = Some(child);
        let socket = self.socket.clone();
        self.wait_until("the control socket answers", || {
            control::call(&socket, Ctl::UpcallShow, "").is_ok_and(|r| r.is_ok())
        });
    }

    /// The daemon's log and upcall counters, the datapath's flows and
    /// counters, and the kernel's complaints: what a failure message needs.
    fn diagnosis(&self) -> String {
        let upcalls = control::call(&self.socket, Ctl::UpcallShow, "")
            .map(|r| r.unwrap_or_else(|e| e))
            .unwrap_or_else(|e| e.to_string());
        let dpctl = |args: &[&str]| {
            Command::new("ovs-dpctl")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        format!(
            "daemon log:\n{}\nupcall-show:\n{upcalls}\novs-dpctl show:\n{}\novs-dpctl dump-flows:\n{}\nnetlink sockets:\n{}\n{}",
            self.log(),
            dpctl(&["show"]),
            dpctl(&["dump-flows"]),
            std::fs::read_to_string("/proc/net/netlink").unwrap_or_default(),
            ovs_dmesg()
        )
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("upcalld.log")).unwrap_or_default()
    }

    /// Waits (up to a minute: the VM is emulated) until `cond` holds.
    fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon exited ({status}) before {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting until {what}\n{}",
                self.diagnosis()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The datapath's `missed` count (upcalls), as the daemon reads it.
    fn missed(&self) -> u64 {
        let show = self.ctl(Ctl::UpcallShow, "");
        missed_in(&show).unwrap_or_else(|| panic!("no missed count in:\n{show}"))
    }

    fn ctl(&self, cmd: Ctl, body: &str) -> String {
        match control::call(&self.socket, cmd, body).expect("control socket") {
            Ok(out) => out,
            Err(e) => panic!("ctl {} failed: {e}\nlog:\n{}", cmd.name(), self.log()),
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaping the daemon");
        }
    }

    /// SIGTERM, then the daemon must exit cleanly.
    fn stop(&mut self) {
        let mut c = self.child.take().expect("daemon running");
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let status = c.wait().expect("waiting for the daemon");
        assert!(
            status.success(),
            "daemon exit {status}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The daemon child process: `Daemon::spawn` runs this binary with only
/// this test selected and the configuration's path in `CONFIG_ENV`.
#[test]
#[ignore = "the daemon process of the kernel daemon tests, started by them"]
fn daemon_child() {
    let path = std::env::var_os(CONFIG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("run by the other tests, with {CONFIG_ENV} set"));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(&path).expect("loading the configuration");
    // The daemon gets the stack of a main thread (8 MiB), not a test's.
    std::thread::Builder::new()
        .name("daemon".into())
        .stack_size(8 << 20)
        .spawn(move || upcalld::daemon::run(config, Some(path)))
        .expect("starting the daemon thread")
        .join()
        .expect("the daemon panicked")
        .expect("the daemon failed");
}

/// A kernel datapath configuration: `extra` goes at the top level,
/// `datapath_extra` into `[datapath]`.
fn kernel_config(dp: &str, ports: &[(&str, u32)], extra: &str, datapath_extra: &str) -> String {
    let mut c = format!(
        "receivers = 2\nhandlers = 2\nrevalidators = 1\nrevalidate_interval_ms = 100\n{extra}\n\
         [datapath]\ntype = \"kernel\"\nname = \"{dp}\"\n{datapath_extra}\n"
    );
    for (name, n) in ports {
        c.push_str(&format!("[[port]]\nname = \"{name}\"\nnumber = {n}\n"));
    }
    c
}

/// One line of `ovs-dpctl dump-flows`: the flow (key/mask), its packet
/// count and its actions.
#[derive(Debug)]
struct DpctlFlow {
    flow: String,
    packets: u64,
    actions: String,
}

fn dpctl_dump(dp: &str) -> Vec<DpctlFlow> {
    parse_flow_lines(&dpctl_flows(dp).join("\n"))
}

/// Flow lines as `ovs-dpctl dump-flows` or `upcalld ctl dump-dp-flows`
/// (with a leading `ufid:` field) print them.
fn parse_flow_lines(text: &str) -> Vec<DpctlFlow> {
    text.lines()
        .filter_map(|line| {
            let line = match line.strip_prefix("ufid:") {
                Some(rest) => rest.split_once(", ")?.1,
                None => line,
            };
            let (flow, rest) = line.split_once(", packets:")?;
            let (packets, _) = rest.split_once(',')?;
            let (_, actions) = rest.split_once("actions:")?;
            Some(DpctlFlow {
                flow: flow.to_string(),
                packets: packets.parse().ok()?,
                actions: actions.to_string(),
            })
        })
        .collect()
}

/// The datapath's `missed` lookups (upcalls), from `ovs-dpctl show`.
fn dp_missed(dp: &str) -> u64 {
    let show = run("ovs-dpctl", &["show", &format!("system@{dp}")]);
    missed_in(&show).unwrap_or_else(|| panic!("no missed count in:\n{show}"))
}

fn missed_in(text: &str) -> Option<u64> {
    text.split("missed:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

fn dp_exists(dp: &str) -> bool {
    run("ovs-dpctl", &["dump-dps"])
        .lines()
        .any(|l| l.trim() == format!("system@{dp}"))
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
