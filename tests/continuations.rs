//! Continuations end to end, as OVS's own tests (`tests/ofproto-dpif.at`,
//! "continuation - …") run them, on the embedded datapath with real
//! packets: `ovs-ofctl monitor … resume` answers every packet-in that
//! carries a continuation with an NXT_RESUME, and the packet goes on
//! through the pipeline until it has reached each of ports 2..N once.
//! Then one `pause` is taken out and the same is checked again, until none
//! is left. Bad and stale continuations get OVS's errors. Needs root and
//! `ovs-ofctl` (`.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

fn ofctl(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new("ovs-ofctl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running ovs-ofctl (package openvswitch-common)");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ovs-ofctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `ovs-ofctl monitor TARGET resume`, its log (stderr, where it prints
/// what it sends) in a file.
struct Monitor {
    child: Child,
    log: std::path::PathBuf,
}

impl Monitor {
    fn start(target: &str, version: &str, log: std::path::PathBuf) -> Monitor {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new("ovs-ofctl")
            .arg(format!("--unixctl={}.ctl", log.display()))
            .args(["-O", version, "monitor", target, "resume"])
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .expect("running ovs-ofctl monitor");
        Monitor { child, log }
    }

    fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn resumes(&self) -> usize {
        self.text().matches("NXT_RESUME").count()
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// OVS's test packet: an ICMP echo from 192.168.0.1 to 192.168.0.2,
/// 50:54:00:00:00:05 to 50:54:00:00:00:07, TTL 128.
fn icmp_frame() -> Vec<u8> {
    let mut f = vec![
        0x50, 0x54, 0, 0, 0, 0x07, 0x50, 0x54, 0, 0, 0, 0x05, 0x08, 0x00,
    ];
    let mut ip = vec![
        0x45, 0, 0, 28, 0, 1, 0, 0, 128, 1, 0, 0, 192, 168, 0, 1, 192, 168, 0, 2,
    ];
    let sum = messages::wire::checksum::internet(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut icmp = vec![8, 0, 0, 0, 0, 1, 0, 1];
    let sum = messages::wire::checksum::internet(&icmp);
    icmp[2..4].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&icmp);
    f
}

fn send_from(host: &Host, frame: Vec<u8>) {
    host.run(move || {
        let port = upcalld::dpif_netdev::PortIo::open_packet("eth0").expect("AF_PACKET on eth0");
        port.send(&frame).expect("sending a frame");
    })
    .expect("sending in the host's namespace");
}

/// The ICMP frames host `h` has received (its other traffic is IPv6
/// and ARP it sends, which no rule here forwards).
fn received(h: &Host) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            &h.netns,
            "cat",
            "/sys/class/net/eth0/statistics/rx_packets",
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// A switch with ports 1..=n, each a host in its own namespace, and an
/// OpenFlow socket in the daemon's directory.
struct Bridge {
    hosts: Vec<Host>,
    d: Daemon,
    target: String,
}

fn bridge(tag: &str, n: u32) -> Bridge {
    let hosts: Vec<Host> = (1..=n)
        .map(|i| {
            Host::create(
                &format!("uct-{tag}-{i}"),
                &format!("uc{tag}{i}"),
                std::net::Ipv4Addr::new(10, 79, 0, i as u8),
                [2, 0, 0, 0x79, 0, i as u8],
            )
            .expect("creating a host")
        })
        .collect();
    // The ports' own IPv6 (router solicitations, MLD) would reach the
    // hosts beside the switch's frames.
    for h in &hosts {
        let knob = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", h.port);
        std::fs::write(&knob, "1").unwrap_or_else(|e| panic!("{knob}: {e}"));
    }
    let ports: Vec<(&str, u32)> = hosts
        .iter()
        .zip(1..)
        .map(|(h, i)| (h.port.as_str(), i))
        .collect();
    // Secure: without rules nothing is forwarded (standalone would flood
    // the hosts' own traffic).
    let d = Daemon::start(tag, &ports, "", "[openflow]\nfail_mode = \"secure\"\n");
    let mgmt = d.dir.join("br0.mgmt");
    d.wait_until("the OpenFlow socket exists", Duration::from_secs(5), || {
        mgmt.exists()
    });
    let target = format!("unix:{}", mgmt.display());
    Bridge { hosts, d, target }
}

/// The datapath up to date with the rules before a packet is sent (OVS's
/// tests do the same): the last round's flow may still pause.
fn revalidator_wait(b: &Bridge) {
    let wait = Command::new("ovs-appctl")
        .arg("-t")
        .arg(b.d.socket())
        .arg("revalidator/wait")
        .status()
        .expect("running ovs-appctl");
    assert!(wait.success());
}

/// OVS's CHECK_CONTINUATION on `b` with a monitor of `version`: the
/// rules (`pause` standing for `controller(pause)`, each rule limited to
/// ICMP so that the hosts' own traffic stays out), one packet from port 1
/// per round, each of ports 2..=n receiving it once (and the ports after
/// n nothing), one NXT_RESUME per pause; then one pause fewer, until none
/// is left.
fn check_continuation(b: &Bridge, n: usize, version: &str, actions: &str) {
    let monitor = Monitor::start(
        &b.target,
        version,
        b.d.dir.join(format!("monitor-{version}")),
    );
    std::thread::sleep(Duration::from_millis(300));
    let rules = |actions: &str| -> String {
        actions
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(|l| format!("icmp {}\n", l.replace("pause", "controller(pause)")))
            .collect()
    };
    let mut actions = actions.to_string();
    let (mut n_packets, mut n_resumes) = (0, 0);
    let base: Vec<u64> = b.hosts.iter().map(received).collect();
    loop {
        ofctl(&["del-flows", &b.target], None);
        ofctl(
            &["-O", "OpenFlow13", "add-flows", &b.target, "-"],
            Some(&rules(&actions)),
        );
        revalidator_wait(b);
        send_from(&b.hosts[0], icmp_frame());
        n_packets += 1;
        n_resumes += actions.matches("pause").count();
        let until = Instant::now() + Duration::from_secs(10);
        let counts = || -> Vec<u64> {
            b.hosts[1..]
                .iter()
                .zip(&base[1..])
                .map(|(h, b0)| received(h) - b0)
                .collect()
        };
        let want: Vec<u64> = (2..=b.hosts.len())
            .map(|p| if p <= n { n_packets } else { 0 })
            .collect();
        while (counts() != want || monitor.resumes() != n_resumes) && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            (counts(), monitor.resumes()),
            (want, n_resumes),
            "packets at ports 2.. and NXT_RESUMEs sent, with {version} and\n{actions}\n\
             monitor:\n{}\ndatapath flows:\n{}\nlog:\n{}",
            monitor.text(),
            b.d.ctl(Ctl::DumpDpFlows, ""),
            b.d.log()
        );
        match actions.find("pause") {
            Some(i) => actions.replace_range(i..i + "pause".len(), ""),
            None => break,
        }
    }
}

/// OVS's cases, in its order: (title, ports, rules).
const CASES: [(&str, usize, &str); 7] = [
    ("pause at end of pipeline", 2, "actions=2 pause"),
    (
        "actions",
        7,
        "in_port=1 actions=pause 2 pause 3 pause 4 pause 5 pause 6 pause 7",
    ),
    (
        "resubmit",
        10,
        "table=0 in_port=1  actions=pause 2 pause resubmit(,1) pause 10 pause
         table=1 in_port=1  actions=pause 3 pause resubmit(,2) pause 9 pause
         table=2 in_port=1  actions=pause 4 pause resubmit(,3) pause 8 pause
         table=3 in_port=1  actions=pause 5 pause resubmit:55  pause 7 pause
         table=3 in_port=55 actions=pause 6 pause",
    ),
    (
        "action set",
        3,
        "in_port=1 actions=1 pause resubmit(,1) pause 2
         table=1 actions=write_actions(3)",
    ),
    (
        "goto_table",
        6,
        "table=0 in_port=1 actions=pause 2 pause goto_table:1
         table=1 in_port=1 actions=pause 3 pause goto_table:2
         table=2 in_port=1 actions=pause 4 pause goto_table:3
         table=3 in_port=1 actions=pause 5 pause goto_table:4
         table=4 in_port=1 actions=pause 6 pause",
    ),
    (
        "write_metadata",
        6,
        "table=0 in_port=1             actions=pause 2 pause write_metadata:1/1 goto_table:1
         table=1 in_port=1 metadata=1  actions=pause 3 pause write_metadata:2/2 goto_table:2
         table=2 in_port=1 metadata=3  actions=pause 4 pause write_metadata:4/4 goto_table:3
         table=3 in_port=1 metadata=7  actions=pause 5 pause write_metadata:8/8 goto_table:4
         table=4 in_port=1 metadata=15 actions=pause 6 pause",
    ),
    (
        "data stack",
        3,
        "in_port=1 actions=pause set_field:1->reg0 pause set_field:2->reg1 pause \
         output:NXM_NX_REG0[] pause push:NXM_NX_REG1[] pop:NXM_NX_REG2[] pause \
         output:NXM_NX_REG2[] pause 3",
    ),
];

#[test]
fn paused_pipelines_resume_through_ovs_ofctl_monitor() {
    require_root();
    let b = bridge("cont", 10);
    for (title, n, actions) in CASES {
        for version in ["OpenFlow10", "OpenFlow13"] {
            eprintln!("continuation - {title} - {version}");
            check_continuation(&b, n, version, actions);
        }
    }
}

/// OVS's "continuation flow stats" and "continuation with conntrack": the
/// resumed translation credits the rules it goes through, and a packet
/// tracked before the pause is resumed tracked.
#[test]
fn resumed_packets_count_in_flow_stats_and_keep_their_conntrack_state() {
    require_root();
    let b = bridge("cstat", 2);
    let cases = [
        "table=0 in_port=1 icmp actions=set_field:1->reg1 controller(pause) resubmit(,2)\n\
         table=2 reg1=0x1 actions=2\n",
        "table=0 in_port=1 icmp actions=ct(table=1)\n\
         table=1 icmp actions=controller(pause) resubmit(,2)\n\
         table=2 in_port=1 icmp ct_state=+trk+new actions=output:2\n",
    ];
    let monitor = Monitor::start(&b.target, "OpenFlow10", b.d.dir.join("monitor"));
    std::thread::sleep(Duration::from_millis(300));
    for (i, rules) in cases.iter().enumerate() {
        ofctl(&["del-flows", &b.target], None);
        ofctl(
            &["-O", "OpenFlow13", "add-flows", &b.target, "-"],
            Some(rules),
        );
        revalidator_wait(&b);
        let before = received(&b.hosts[1]);
        send_from(&b.hosts[0], icmp_frame());
        let until = Instant::now() + Duration::from_secs(10);
        while received(&b.hosts[1]) == before && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(
            received(&b.hosts[1]) - before,
            1,
            "{rules}\n{}",
            monitor.text()
        );
        assert_eq!(monitor.resumes(), i + 1, "{}", monitor.text());
        let stats = ofctl(&["dump-flows", &b.target], None);
        let table2 = stats.lines().find(|l| l.contains("table=2")).unwrap();
        assert!(
            table2.contains("n_packets=1, n_bytes=42"),
            "{rules}\n{stats}"
        );
    }
}

/// Reads messages from `s` until one of type `kind` with `xid` comes.
fn read_until(s: &mut UnixStream, kind: u8, xid: u32) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Ok(Some(len)) = messages::openflow::frame_len(&got) {
            let msg: Vec<u8> = got.drain(..len).collect();
            let h = messages::openflow::Header::parse(&msg).unwrap();
            if (h.kind, h.xid) == (kind, xid) {
                return msg;
            }
        }
        let n = s.read(&mut buf).expect("the switch answers");
        assert!(n > 0, "the switch closed the connection");
        got.extend_from_slice(&buf[..n]);
    }
}

/// A continuation this daemon did not make, or that is malformed, gets
/// OVS's error, and the connection goes on.
#[test]
fn stale_and_malformed_continuations_get_ovs_errors() {
    use messages::openflow::continuation::{encode_continuation, encode_resume, Continuation};
    use messages::openflow::{encode_barrier_request, encode_hello, OFP13};
    require_root();
    let b = bridge("cbad", 2);
    let path = b.target.strip_prefix("unix:").unwrap();
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(&encode_hello(OFP13, 1 << OFP13)).unwrap();
    let frame = icmp_frame();
    let mut md = messages::ofp::Match::default();
    md.flow.in_port = 1;
    md.mask.in_port = u32::MAX;
    let stale = Continuation {
        bridge: [0x5a; 16],
        odp_port: 1,
        ..Continuation::default()
    };
    let with_xid = |mut m: Vec<u8>, xid: u32| {
        m[4..8].copy_from_slice(&xid.to_be_bytes());
        m
    };
    let cases: [(Vec<u8>, &[u8]); 3] = [
        // Another bridge's (or a restarted daemon's): NXR_STALE, an
        // experimenter error (type 0xffff, Nicira, code 35).
        (
            encode_resume(
                OFP13,
                &frame,
                &md,
                &encode_continuation(OFP13, &stale).unwrap(),
            ),
            &[0xff, 0xff, 0, 35, 0, 0, 0x23, 0x20],
        ),
        // No continuation at all: stale too.
        (
            encode_resume(OFP13, &frame, &md, &[]),
            &[0xff, 0xff, 0, 35, 0, 0, 0x23, 0x20],
        ),
        // No packet: OFPBRC_BAD_LEN.
        (
            encode_resume(
                OFP13,
                &[],
                &md,
                &encode_continuation(OFP13, &stale).unwrap(),
            ),
            &[0, 1, 0, 6],
        ),
    ];
    for (i, (msg, want)) in cases.into_iter().enumerate() {
        let xid = 100 + i as u32;
        s.write_all(&with_xid(msg, xid)).unwrap();
        let err = read_until(&mut s, 1, xid);
        assert_eq!(&err[8..8 + want.len()], want, "case {i}: {err:02x?}");
    }
    s.write_all(&encode_barrier_request(OFP13, 200)).unwrap();
    read_until(&mut s, 21, 200);
    assert_eq!(received(&b.hosts[1]), 0);
}
