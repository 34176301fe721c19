//! `controller` actions end to end, as Open vSwitch 3.1 has them: the
//! options `ovs-ofctl` sends (NXAST_CONTROLLER, NXAST_CONTROLLER2,
//! DEC_TTL_CNT_IDS) come back in flow dumps as OVS prints them, and on the
//! embedded datapath each packet-in carries its reason, controller id,
//! userdata and the registers its translation had (from the frozen
//! state), to the connections that want it. Needs root and `ovs-ofctl`
//! (`.ci/run` installs it).

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;

fn ofctl(args: &[&str]) -> String {
    let out = Command::new("ovs-ofctl")
        .args(args)
        .output()
        .expect("running ovs-ofctl (package openvswitch-common)");
    assert!(
        out.status.success(),
        "ovs-ofctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// dump-flows lines without the reply header, sorted.
fn flows(target: &str, version: &str) -> Vec<String> {
    let mut v: Vec<String> = ofctl(&["-O", version, "--no-stats", "dump-flows", target])
        .lines()
        .filter(|l| !l.contains("reply"))
        .map(|l| l.trim().to_string())
        .collect();
    v.sort();
    v
}

/// `ovs-ofctl monitor`, printing what it receives into a file.
struct Monitor {
    child: std::process::Child,
    out: PathBuf,
}

impl Monitor {
    fn start(target: &str, options: &[&str], extra: &[&str], out: PathBuf) -> Monitor {
        let ctl = format!("--unixctl={}.ctl", out.display());
        let file = std::fs::File::create(&out).unwrap();
        let child = Command::new("ovs-ofctl")
            .arg(ctl)
            .args(options)
            .args(["monitor", target, "65535"])
            .args(extra)
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("running ovs-ofctl monitor");
        Monitor { child, out }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.out).unwrap_or_default()
    }

    /// The first packet-in (its text up to the next message) that
    /// contains `marker`.
    fn packet_in(&self, marker: &str) -> Option<String> {
        self.text()
            .split("PACKET_IN")
            .skip(1)
            .find(|m| m.contains(marker))
            .map(str::to_string)
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A UDP frame from A to B with this TTL and destination port.
fn udp(ttl: u8, dport: u16) -> Vec<u8> {
    let mut f = tcp_frame(0x77, 0x0a4d_0001, 0x0a4d_0002, 1234, dport);
    f[22] = ttl;
    f[23] = 17;
    f
}

fn send_from(host: &upcalld::netns::Host, frame: Vec<u8>) {
    host.run(move || {
        let port = upcalld::dpif_netdev::PortIo::open_packet("eth0").expect("AF_PACKET on eth0");
        port.send(&frame).expect("sending a frame");
    })
    .expect("sending in the host's namespace");
}

/// Marks the packet-in of port 7001's rule, whose packet is cut before
/// its UDP header: the register it loaded.
const FIRST: &str = "reg3=0x2a";

#[test]
fn controller_options_reach_the_connections_that_want_them() {
    require_root();
    let (a, b) = two_hosts("ctla");
    let dir = std::env::temp_dir().join(format!("upcalld-ctla-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mgmt = dir.join("br0.mgmt");
    let d = Daemon::start(
        "ctla",
        &[(&a.port, 1), (&b.port, 2)],
        "priority=10,udp,tp_dst=7001,actions=load:0x2a->NXM_NX_REG3[],\
         controller(reason=no_match,max_len=30,userdata=de.ad.be.ef)\n\
         priority=10,udp,tp_dst=7002,actions=controller(id=5)\n\
         priority=10,udp,tp_dst=7003,actions=dec_ttl,output:2\n\
         cookie=0x77,priority=10,udp,tp_dst=7004,actions=write_actions(output:CONTROLLER)\n",
        &format!("[openflow]\nlisten = [\"punix:{}\"]\n", mgmt.display()),
    );
    d.wait_until("the OpenFlow socket exists", Duration::from_secs(5), || {
        mgmt.exists()
    });
    let target = format!("unix:{}", mgmt.display());

    // The options as ovs-ofctl sends them come back as OVS 3.1 prints them
    // (its dumps, from ovs-peer).
    let rules = [
        "priority=5,udp,actions=controller(reason=no_match,max_len=30,userdata=de.ad.be.ef)",
        "priority=6,udp,actions=controller(id=5),controller(reason=invalid_ttl,max_len=100)",
        "priority=7,udp,actions=controller(pause,meter_id=3),CONTROLLER:64",
        "priority=8,ip,actions=dec_ttl(1,2),dec_ttl",
    ];
    let ovs = [
        "priority=5,udp actions=controller(reason=no_match,max_len=30,userdata=de.ad.be.ef)",
        "priority=6,udp actions=controller(id=5),controller(reason=invalid_ttl,max_len=100)",
        "priority=7,udp actions=controller(pause,meter_id=3),CONTROLLER:64",
        "priority=8,ip actions=dec_ttl(1,2),dec_ttl",
    ];
    for version in ["OpenFlow13", "OpenFlow10"] {
        for rule in rules {
            ofctl(&["-O", version, "add-flow", &target, rule]);
        }
        // (Without the daemon's own rules, of priority 10.)
        let dumped: Vec<String> = flows(&target, version)
            .into_iter()
            .filter(|l| !l.contains("priority=10"))
            .collect();
        assert_eq!(dumped, ovs, "added and dumped in {version}");
        for p in ["5", "6", "7", "8"] {
            ofctl(&[
                "-O",
                version,
                "--strict",
                "del-flows",
                &target,
                &format!("priority={p},{}", if p == "8" { "ip" } else { "udp" }),
            ]);
        }
    }

    // NXT_PACKET_IN2 on OpenFlow 1.0, asking for expired TTLs; standard
    // packet-ins on OpenFlow 1.4, not asking.
    let nx = Monitor::start(&target, &[], &["invalid_ttl"], dir.join("monitor-nx"));
    let of14 = Monitor::start(
        &target,
        &["-O", "OpenFlow14", "--packet-in-format=standard"],
        &[],
        dir.join("monitor-14"),
    );
    std::thread::sleep(Duration::from_millis(500));
    let until = std::time::Instant::now() + Duration::from_secs(10);
    let all_seen = || {
        nx.packet_in(FIRST).is_some()
            && nx.packet_in("tp_dst=7003").is_some()
            && nx.packet_in("tp_dst=7004").is_some()
            && of14.packet_in(FIRST).is_some()
            && of14.packet_in("tp_dst=7004").is_some()
    };
    while !all_seen() && std::time::Instant::now() < until {
        send_from(&a, udp(64, 7002));
        send_from(&a, udp(64, 7001));
        send_from(&a, udp(1, 7003));
        send_from(&a, udp(64, 7004));
        std::thread::sleep(Duration::from_millis(200));
    }
    let (nx_text, of14_text) = (nx.text(), of14.text());
    assert!(
        all_seen(),
        "packet-ins missing; OpenFlow 1.0 monitor:\n{nx_text}\nOpenFlow 1.4 monitor:\n{of14_text}\n\
         datapath flows:\n{}\nlog:\n{}",
        d.ctl(Ctl::DumpDpFlows, ""),
        d.log()
    );
    // The reason given, the register loaded before, the userdata, and the
    // packet cut to max_len.
    let p = nx.packet_in(FIRST).unwrap();
    assert!(nx_text.contains("NXT_PACKET_IN2"), "{nx_text}");
    for want in ["(via no_match)", "data_len=30", "userdata=de.ad.be.ef"] {
        assert!(p.contains(want), "{want} in {p}");
    }
    let p = of14.packet_in(FIRST).unwrap();
    assert!(of14_text.contains("OFPT_PACKET_IN (OF1.4)"), "{of14_text}");
    for want in ["(via no_match)", "data_len=30"] {
        assert!(p.contains(want), "{want} in {p}");
    }
    // An expired TTL: to the connection that asked, as invalid_ttl.
    assert!(
        nx.packet_in("tp_dst=7003")
            .unwrap()
            .contains("(via invalid_ttl)"),
        "{nx_text}"
    );
    assert!(of14.packet_in("tp_dst=7003").is_none(), "{of14_text}");
    // Output to CONTROLLER from the action set: OpenFlow 1.4 says so, 1.0
    // calls it an action's.
    let p = of14.packet_in("tp_dst=7004").unwrap();
    assert!(
        p.contains("(via action_set)") && p.contains("cookie=0x77"),
        "{p}"
    );
    let p = nx.packet_in("tp_dst=7004").unwrap();
    assert!(
        p.contains("(via action)") && p.contains("cookie=0x77"),
        "{p}"
    );
    // Controller id 5: neither connection (both are id 0).
    assert!(nx.packet_in("tp_dst=7002").is_none(), "{nx_text}");
    assert!(of14.packet_in("tp_dst=7002").is_none(), "{of14_text}");

    // The datapath's flows carry OVS's controller cookie, to be sent.
    let dp = d.ctl(Ctl::DumpDpFlows, "");
    let line = dp
        .lines()
        .find(|l| l.contains("dst=7001"))
        .unwrap_or_else(|| panic!("no flow for port 7001:\n{dp}"));
    assert!(
        line.contains("controller(reason=0,dont_send=0,continuation=0,recirc_id=")
            && line.contains("controller_id=0,max_len=30))"),
        "{line}"
    );
    drop((nx, of14, b));
    let _ = std::fs::remove_dir_all(&dir);
}
