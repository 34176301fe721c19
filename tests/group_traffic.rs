//! Groups with real traffic through the daemon on the embedded datapath:
//! a select group spreads TCP connections from host A over two backends
//! by their 5-tuple (OVS's default: the datapath hashes, recirculates, and
//! the megaflow of the second pass matches `dp_hash`), every packet of a
//! connection going to the same backend; a fast-failover group sends to
//! its first backend until that backend's link goes down, then to the
//! second, and back when the link comes up. The backends are two network
//! namespaces with the same address, so a connection works end to end
//! only if all of its packets reach one of them.

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

// ARP goes to both backends, so that each knows A.
const RULES: &str = "\
table=0,priority=100,in_port=1,arp,actions=output:2,output:3
table=0,priority=90,in_port=2,actions=output:1
table=0,priority=90,in_port=3,actions=output:1
";

const GROUPS: &str = "group_id=7,type=select,bucket=output:2,bucket=output:3\n";

const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 78, 0, 2);
const PORT: u16 = 8080;
const CONNECTIONS: usize = 24;

/// Accepts connections for `for_how_long`, answering each with `name`;
/// returns how many it answered.
fn backend(name: u8, for_how_long: Duration) -> usize {
    let l = TcpListener::bind((BACKEND, PORT)).unwrap();
    l.set_nonblocking(true).unwrap();
    let start = Instant::now();
    let mut served = 0;
    while start.elapsed() < for_how_long {
        match l.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                let mut req = [0u8; 5];
                if s.read_exact(&mut req).is_ok() && s.write_all(&[name]).is_ok() {
                    served += 1;
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    served
}

#[test]
fn a_select_group_spreads_tcp_connections_over_two_backends() {
    require_root();
    let a = Host::create(
        "uct-gs-a",
        "ucgsa",
        Ipv4Addr::new(10, 78, 0, 1),
        [2, 0, 0, 0x78, 0, 1],
    )
    .expect("creating host A");
    // Two backends with one address and one MAC.
    let b1 = Host::create("uct-gs-b1", "ucgsb1", BACKEND, [2, 0, 0, 0x78, 0, 2])
        .expect("creating backend 1");
    let b2 = Host::create("uct-gs-b2", "ucgsb2", BACKEND, [2, 0, 0, 0x78, 0, 2])
        .expect("creating backend 2");
    let d = Daemon::start(
        "gs",
        &[(&a.port, 1), (&b1.port, 2), (&b2.port, 3)],
        RULES,
        "",
    );
    // A rule may send only to a group that exists.
    let refused = d.ctl_err(
        Ctl::AddFlows,
        "table=0,priority=90,in_port=1,actions=group:7",
    );
    assert!(refused.contains("group 7 does not exist"), "{refused}");
    d.ctl(Ctl::AddGroups, GROUPS);
    d.ctl(
        Ctl::AddFlows,
        "table=0,priority=90,in_port=1,actions=group:7",
    );
    let dump = d.ctl(Ctl::DumpGroups, "");
    assert_eq!(
        dump,
        " group_id=7,type=select,bucket=actions=output:2,bucket=actions=output:3\n"
    );

    let serve = Duration::from_secs(12);
    let s1 = b1.spawn(move || backend(1, serve)).unwrap();
    let s2 = b2.spawn(move || backend(2, serve)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let answers = a
        .run(|| {
            (0..CONNECTIONS)
                .map(|_| {
                    let mut s =
                        TcpStream::connect_timeout(&(BACKEND, PORT).into(), Duration::from_secs(3))
                            .map_err(|e| format!("connect: {e}"))?;
                    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
                    s.write_all(b"hello").map_err(|e| format!("write: {e}"))?;
                    let mut who = [0u8; 1];
                    s.read_exact(&mut who).map_err(|e| format!("read: {e}"))?;
                    Ok(who[0])
                })
                .collect::<Vec<Result<u8, String>>>()
        })
        .unwrap();
    let served = (s1.join().unwrap().unwrap(), s2.join().unwrap().unwrap());

    let ok: Vec<u8> = answers.iter().filter_map(|r| r.clone().ok()).collect();
    assert_eq!(
        ok.len(),
        CONNECTIONS,
        "every connection stays on one backend and completes: {answers:?}\nlog:\n{}",
        d.log()
    );
    let to_1 = ok.iter().filter(|&&w| w == 1).count();
    assert!(
        to_1 >= 3 && CONNECTIONS - to_1 >= 3,
        "both backends get connections: {to_1} and {}",
        CONNECTIONS - to_1
    );
    assert_eq!(served, (to_1, CONNECTIONS - to_1));
    let flows = d.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("actions:hash(sym_l4(0)),recirc(0x"),
        "the datapath hashes and recirculates: {flows}"
    );
    assert!(
        flows
            .lines()
            .any(|f| f.contains("dp_hash(") && f.ends_with("actions:3")),
        "the second pass matches dp_hash: {flows}"
    );

    group_stats_follow_the_ports(&d);

    // Deleting the group deletes the rule that sends to it.
    let out = d.ctl(Ctl::DelGroups, "group_id=7");
    assert!(out.contains("(1 groups, 1 rules"), "{out}");
    assert_eq!(d.ctl(Ctl::DumpGroups, ""), "");
    assert!(!d.ctl(Ctl::DumpFlows, "").contains("group:7"));
}

/// Runs Debian's `ovs-ofctl ARGS`: (success, stdout, stderr).
fn ovs_ofctl(args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new("ovs-ofctl")
        .args(args)
        .output()
        .expect("running ovs-ofctl (package openvswitch-common; .ci/run installs it)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A `name=N` count in `text` after `after`.
fn count_after(text: &str, after: &str, name: &str) -> u64 {
    let rest = &text[text
        .find(after)
        .unwrap_or_else(|| panic!("no {after} in {text}"))..];
    let at = rest.find(&format!("{name}=")).unwrap() + name.len() + 1;
    rest[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Group 7's counters as OVS keeps them: credited from the flows that ran
/// it, each bucket with what went through it. Everything from A but ARP
/// goes through the group, and ARP goes to both backends' ports, so each
/// bucket's count is its port's transmit count less the same ARP count;
/// the group's is the buckets' sum. `ovs-ofctl dump-group-stats` (OpenFlow
/// 1.3 GROUP_STATS) prints what `ctl dump-group-stats` does.
fn group_stats_follow_the_ports(d: &Daemon) {
    let of = format!("unix:{}", d.dir.join("br0.mgmt").display());
    let start = Instant::now();
    loop {
        // Every flow's traffic pushed (a revalidation round) and the
        // handlers' credits in (the dump asks them).
        d.ctl(Ctl::Revalidate, "");
        let ports = d.ctl(Ctl::DumpPorts, "");
        let stats = d.ctl(Ctl::DumpGroupStats, "group_id=7");
        let tx = |port: &str| {
            let line = ports
                .lines()
                .skip_while(|l| !l.trim_start().starts_with(port))
                .nth(1)
                .unwrap_or_else(|| panic!("no {port} in {ports}"));
            count_after(line, "tx", "pkts")
        };
        let (tx2, tx3) = (tx("port  2:"), tx("port  3:"));
        let group = count_after(&stats, "group_id=7", "packet_count");
        let b0 = count_after(&stats, "bucket0:", "packet_count");
        let b1 = count_after(&stats, "bucket1:", "packet_count");
        let arp = |tx: u64, bucket: u64| tx.checked_sub(bucket);
        let agrees = group == b0 + b1 && arp(tx2, b0).is_some() && arp(tx2, b0) == arp(tx3, b1);
        if agrees && ports == d.ctl(Ctl::DumpPorts, "") {
            assert!(
                b0 > 0 && b1 > 0,
                "both buckets carried connections: {stats}"
            );
            assert!(
                stats.starts_with(" group_id=7,duration=") && stats.contains(",ref_count=1,"),
                "{stats}"
            );
            assert!(
                count_after(&stats, "group_id=7", "byte_count") > group * 54,
                "{stats}"
            );
            let (ok, out, err) = ovs_ofctl(&["-O", "OpenFlow13", "dump-group-stats", &of]);
            assert!(ok, "ovs-ofctl dump-group-stats: {err}");
            let without_duration = |s: &str| {
                let at = s.find(",ref_count").unwrap();
                s[at..].trim().to_string()
            };
            let line = out.lines().nth(1).unwrap_or_default();
            assert_eq!(
                without_duration(line),
                without_duration(&stats),
                "ovs-ofctl dump-group-stats:\n{out}"
            );
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "group counters never matched the ports' (group {group}, buckets {b0} {b1}, \
             tx {tx2} {tx3}):\n{stats}\n{ports}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_fast_failover_group_follows_its_watched_ports_link() {
    require_root();
    let backend_addr = Ipv4Addr::new(10, 78, 1, 2);
    let a = Host::create(
        "uct-ff-a",
        "ucffa",
        Ipv4Addr::new(10, 78, 1, 1),
        [2, 0, 0, 0x78, 1, 1],
    )
    .expect("creating host A");
    let b1 = Host::create("uct-ff-b1", "ucffb1", backend_addr, [2, 0, 0, 0x78, 1, 2])
        .expect("creating backend 1");
    let b2 = Host::create("uct-ff-b2", "ucffb2", backend_addr, [2, 0, 0, 0x78, 1, 2])
        .expect("creating backend 2");
    let d = Daemon::start(
        "ff",
        &[(&a.port, 1), (&b1.port, 2), (&b2.port, 3)],
        RULES,
        "",
    );
    d.ctl(
        Ctl::AddGroups,
        "group_id=1,type=fast_failover,\
         bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3\n",
    );
    d.ctl(
        Ctl::AddFlows,
        "table=0,priority=90,in_port=1,actions=group:1",
    );
    let stop = Arc::new(AtomicBool::new(false));
    let servers = [(1, &b1), (2, &b2)].map(|(name, h)| {
        let stop = stop.clone();
        h.spawn(move || answer_until(name, backend_addr, PORT, stop))
            .unwrap()
    });
    let wait_for = |want: u8, what: &str| {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < Duration::from_secs(30) {
            let got = who_answers(&a, backend_addr, PORT);
            if got == Some(want) {
                return;
            }
            seen.push(got);
        }
        panic!(
            "{what}: backend {want} never answered (answers {seen:?})\nflows:\n{}\nlog:\n{}",
            d.ctl(Ctl::DumpDpFlows, ""),
            d.log()
        );
    };
    wait_for(1, "both links up: the first bucket");
    for _ in 0..3 {
        assert_eq!(
            who_answers(&a, backend_addr, PORT),
            Some(1),
            "stays on backend 1"
        );
    }
    // Backend 1's link goes down: port 2 loses its carrier.
    let link = |h: &Host, state: &str| ip(&["-n", &h.netns, "link", "set", "eth0", state]);
    link(&b1, "down");
    wait_for(2, "backend 1's link down: the second bucket");
    for _ in 0..3 {
        assert_eq!(
            who_answers(&a, backend_addr, PORT),
            Some(2),
            "stays on backend 2"
        );
    }
    let flows = d.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows
            .lines()
            .any(|f| f.contains("in_port(1)") && f.ends_with("actions:3")),
        "flows from A go to port 3: {flows}"
    );
    link(&b1, "up");
    wait_for(1, "backend 1's link up again: the first bucket");
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap().unwrap();
    }
}
