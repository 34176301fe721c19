//! Real traffic through the userspace datapath: two hosts in network
//! namespaces joined by `upcalld run`, following the rules, before and
//! after rule changes, with the metrics endpoint telling the same story.

mod common;

use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;

const RULES: &str = "\
table=0,priority=300,icmp,in_port=1,actions=output:2
table=0,priority=300,icmp,in_port=2,actions=output:1
table=0,priority=200,tcp,tp_dst=9,actions=drop
table=0,priority=100,in_port=1,actions=output:2
table=0,priority=100,in_port=2,actions=output:1
";

/// The same, except that ICMP is dropped.
const RULES_NO_ICMP: &str = "\
table=0,priority=300,icmp,actions=drop
table=0,priority=100,in_port=1,actions=output:2
table=0,priority=100,in_port=2,actions=output:1
";

/// Megaflows (ODP syntax) of ICMP and of TCP.
fn is_icmp(flow: &str) -> bool {
    flow.contains("ipv4(proto=1,")
}

fn is_tcp(flow: &str) -> bool {
    flow.contains("ipv4(proto=6,")
}

fn dp_flows(d: &Daemon) -> Vec<String> {
    d.ctl(Ctl::DumpDpFlows, "")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The dump-flows line of the rule with this priority and match text.
fn rule_line(d: &Daemon, priority: u16, needle: &str) -> String {
    let prio = format!("priority={priority},");
    d.ctl(Ctl::DumpFlows, "")
        .lines()
        .find(|l| l.contains(&prio) && l.contains(needle))
        .unwrap_or_else(|| panic!("no rule {prio}..{needle} in dump-flows"))
        .to_string()
}

#[test]
fn ping_and_tcp_follow_the_rules() {
    require_root();
    let (a, b) = two_hosts("tr1");
    let d = Daemon::start("tr1", &[(&a.port, 1), (&b.port, 2)], RULES, "");

    assert!(
        ping_ok(&a, b.addr, 5),
        "ping A -> B failed; log:\n{}",
        d.log()
    );
    let len = 1 << 20;
    let got = tcp_transfer(&a, &b, 5001, len, Duration::from_secs(10))
        .expect("TCP transfer to port 5001");
    assert_eq!(got.len(), len);
    assert!(got == pattern(len), "TCP data corrupted on the way");

    let refused = tcp_transfer(&a, &b, 9, 10, Duration::from_secs(2));
    assert!(
        refused.is_err(),
        "TCP to port 9 must be dropped by the rules"
    );

    let flows = dp_flows(&d);
    assert!(
        flows
            .iter()
            .any(|f| is_tcp(f) && f.ends_with("actions:drop")),
        "{flows:#?}"
    );
    assert!(
        flows.iter().any(|f| is_icmp(f) && f.ends_with("actions:2")),
        "{flows:#?}"
    );
    assert!(flows.iter().any(|f| f.ends_with("actions:1")), "{flows:#?}");
    // Revalidation credits the rules with the megaflows' packets.
    d.ctl(Ctl::Revalidate, "");
    let dropped = rule_line(&d, 200, "tp_dst=9");
    assert!(field(&dropped, "n_packets").unwrap() >= 1, "{dropped}");
    let bulk = rule_line(&d, 100, "in_port=1");
    assert!(field(&bulk, "n_bytes").unwrap() > len as u64, "{bulk}");
}

#[test]
fn rule_changes_reach_megaflows_in_one_round() {
    require_root();
    let (a, b) = two_hosts("tr2");
    let d = Daemon::start(
        "tr2",
        &[(&a.port, 1), (&b.port, 2)],
        RULES,
        "revalidate_interval_ms = 60000",
    );
    assert!(ping_ok(&a, b.addr, 5));
    assert!(dp_flows(&d)
        .iter()
        .any(|f| is_icmp(f) && f.ends_with("actions:2")));

    // replace-flows: one round later no megaflow forwards ICMP.
    d.ctl(Ctl::ReplaceFlows, RULES_NO_ICMP);
    d.ctl(Ctl::Revalidate, "");
    let flows = dp_flows(&d);
    assert!(
        flows
            .iter()
            .filter(|f| is_icmp(f))
            .all(|f| f.ends_with("actions:drop")),
        "old ICMP megaflows survived replace-flows: {flows:#?}"
    );
    assert!(
        !ping_ok(&a, b.addr, 2),
        "ping must fail once ICMP is dropped"
    );

    // del-flows: one round later nothing forwards anything.
    d.ctl(Ctl::DelFlows, "");
    assert_eq!(d.ctl(Ctl::DumpFlows, ""), "");
    d.ctl(Ctl::Revalidate, "");
    let flows = dp_flows(&d);
    assert!(
        flows.iter().all(|f| f.ends_with("actions:drop")),
        "megaflows survived del-flows: {flows:#?}"
    );

    // And back: traffic follows the new rules.
    d.ctl(Ctl::ReplaceFlows, RULES);
    d.ctl(Ctl::Revalidate, "");
    assert!(
        ping_ok(&a, b.addr, 5),
        "ping must work again after replace-flows"
    );
    let flows = dp_flows(&d);
    assert!(
        flows.iter().any(|f| is_icmp(f) && f.ends_with("actions:2")),
        "{flows:#?}"
    );
}

#[test]
fn metrics_agree_with_the_traffic() {
    require_root();
    let (a, b) = two_hosts("tr3");
    let d = Daemon::start("tr3", &[(&a.port, 1), (&b.port, 2)], RULES, "");
    let pings = 5;
    for seq in 1..=pings {
        let dst = b.addr;
        let rtt = a
            .run(move || upcalld::netns::ping(dst, 0x3e7, seq, Duration::from_secs(2)))
            .unwrap()
            .unwrap();
        assert!(rtt.is_some(), "ping {seq} got no reply");
    }
    let version = d.ctl(Ctl::AddFlow, "table=0,priority=1,actions=drop");
    let version: u64 = version.split_whitespace().nth(2).unwrap().parse().unwrap();
    d.ctl(Ctl::Revalidate, "");

    // Each echo request and reply matched its ICMP rule once.
    assert_eq!(
        field(&rule_line(&d, 300, "in_port=1"), "n_packets"),
        Some(pings as u64)
    );
    assert_eq!(
        field(&rule_line(&d, 300, "in_port=2"), "n_packets"),
        Some(pings as u64)
    );
    // Rules carry their age, as ovs-ofctl prints it: `duration=1.234s`.
    let line = rule_line(&d, 300, "in_port=1");
    let age = line
        .split(", ")
        .find_map(|f| f.strip_prefix("duration="))
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<f64>().ok());
    assert!(age.is_some_and(|a| a > 0.0), "no duration in {line}");

    // Metrics are published every 200 ms; wait for a fresh copy.
    std::thread::sleep(Duration::from_millis(500));
    // A consistent pair: the same counters before and after a scrape that
    // was published (every 200 ms) after the first reading.
    let counters = |show: &str| -> Vec<String> {
        show.lines()
            .filter(|l| l.contains("upcalls") || l.contains("datapath"))
            .map(str::to_string)
            .collect()
    };
    let (show, text) = loop {
        let before = d.ctl(Ctl::UpcallShow, "");
        std::thread::sleep(Duration::from_millis(300));
        let text = d.scrape();
        if counters(&d.ctl(Ctl::UpcallShow, "")) == counters(&before) {
            break (before, text);
        }
    };
    let line = |name: &str| show.lines().find(|l| l.contains(name)).unwrap().to_string();
    let upcalls = line("upcalls");
    let m = |series: &str| {
        metric(&text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}")) as u64
    };
    assert_eq!(
        m("upcalld_upcalls_received_total"),
        field(&upcalls, "received").unwrap()
    );
    assert_eq!(
        m("upcalld_upcalls_handled_total"),
        field(&upcalls, "handled").unwrap()
    );
    let dp = line("datapath");
    assert_eq!(
        m("upcalld_datapath_packets_total{result=\"hit\"}"),
        field(&dp, "hit").unwrap()
    );
    assert_eq!(
        m("upcalld_datapath_packets_total{result=\"missed\"}"),
        field(&dp, "missed").unwrap()
    );
    assert_eq!(m("upcalld_datapath_packets_total{result=\"lost\"}"), 0);
    assert_eq!(m("upcalld_datapath_flows"), dp_flows(&d).len() as u64);
    assert_eq!(m("upcalld_rules_version"), version);
    assert_eq!(m("upcalld_actor_restarts_total{actor=\"handler\"}"), 0);
    // Every packet the hosts sent reached the datapath: the echo requests
    // and replies at least, and every miss was handled.
    let seen = m("upcalld_datapath_packets_total{result=\"hit\"}")
        + m("upcalld_datapath_packets_total{result=\"missed\"}");
    assert!(seen >= 2 * pings as u64, "datapath saw {seen} packets");
    assert_eq!(
        m("upcalld_upcalls_handled_total"),
        m("upcalld_datapath_packets_total{result=\"missed\"}")
    );
    assert!(
        text.contains("upcalld_dpif_batch_size_bucket"),
        "no batch-size histogram"
    );
}

/// UDP committed in zones 5 (a policy of its own) and 9 (none).
const RULES_ZONES: &str = "\
table=0,priority=100,arp,in_port=1,actions=output:2
table=0,priority=100,arp,in_port=2,actions=output:1
table=0,priority=100,udp,in_port=1,actions=ct(commit,zone=5),output:2
table=0,priority=100,udp,in_port=2,actions=ct(commit,zone=9),output:1
";

#[test]
fn zone_timeout_policies_reach_the_connection_tracker() {
    require_root();
    let (a, b) = two_hosts("trzt");
    let d = Daemon::start(
        "trzt",
        &[(&a.port, 1), (&b.port, 2)],
        RULES_ZONES,
        "[datapath.conntrack]\n\
         timeouts = { udp_first = 300 }\n\
         zone_timeouts = { 5 = { udp_first = 1000 } }",
    );
    let (a_addr, b_addr) = (a.addr, b.addr);
    let send = |from: &upcalld::netns::Host, src: std::net::Ipv4Addr, to, port| {
        from.run(move || {
            let s = std::net::UdpSocket::bind((src, 0)).unwrap();
            s.send_to(b"policy?", (to, port)).unwrap();
        })
        .unwrap()
    };
    send(&a, a_addr, b_addr, 7000);
    send(&b, b_addr, a_addr, 7001);
    let mut dump = String::new();
    d.wait_until("both connections tracked", Duration::from_secs(5), || {
        dump = d.ctl(Ctl::DumpConntrack, "-s");
        dump.lines().count() == 2
    });
    let timeout = |zone: &str| {
        let line = dump
            .lines()
            .find(|l| l.contains(zone))
            .unwrap_or_else(|| panic!("no {zone} connection: {dump}"));
        let t = line.split(",timeout=").nth(1).unwrap();
        t.split(',').next().unwrap().parse::<u32>().unwrap()
    };
    // Zone 5's policy sets udp_first; zone 9 has the datapath's default.
    assert!((990..=1000).contains(&timeout("zone=5,")), "{dump}");
    assert!((290..=300).contains(&timeout("zone=9,")), "{dump}");
    let flows = dp_flows(&d);
    assert!(
        flows
            .iter()
            .any(|f| f.contains("ct(commit,zone=5,timeout=1)")),
        "{flows:#?}"
    );
    assert!(
        flows.iter().any(|f| f.contains("ct(commit,zone=9),1")),
        "{flows:#?}"
    );
}
