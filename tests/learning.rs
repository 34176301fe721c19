//! `learn` with real traffic: OVS's advanced tutorial's VLAN-aware
//! learning switch on the embedded datapath, hosts in namespaces on veth
//! pairs. Port 1 is the trunk, ports 3 and 4 access ports of VLAN 30.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// The tutorial's tables 0-4 (as in tests/ovs_cases/17-learn-advanced-tutorial),
/// with `LEARN` as table 2's learn arguments.
fn tutorial(learn: &str) -> String {
    format!(
        "\
table=0,dl_src=01:00:00:00:00:00/01:00:00:00:00:00,actions=drop
table=0,dl_dst=01:80:c2:00:00:00/ff:ff:ff:ff:ff:f0,actions=drop
table=0,priority=0,actions=resubmit(,1)
table=1,priority=0,actions=drop
table=1,priority=99,in_port=1,actions=resubmit(,2)
table=1,priority=99,in_port=2,vlan_tci=0,actions=mod_vlan_vid:20,resubmit(,2)
table=1,priority=99,in_port=3,vlan_tci=0,actions=mod_vlan_vid:30,resubmit(,2)
table=1,priority=99,in_port=4,vlan_tci=0,actions=mod_vlan_vid:30,resubmit(,2)
table=2,actions=learn({learn}),resubmit(,3)
table=3,priority=50,actions=resubmit(,10),resubmit(,4)
table=3,priority=99,dl_dst=01:00:00:00:00:00/01:00:00:00:00:00,actions=resubmit(,4)
table=4,reg0=1,actions=1
table=4,reg0=2,vlan_tci=0x1000/0x1000,actions=strip_vlan,2
table=4,reg0=3,vlan_tci=0x1000/0x1000,actions=strip_vlan,3
table=4,reg0=4,vlan_tci=0x1000/0x1000,actions=strip_vlan,4
table=4,reg0=0,priority=99,dl_vlan=20,actions=1,strip_vlan,2
table=4,reg0=0,priority=99,dl_vlan=30,actions=1,strip_vlan,3,4
table=4,reg0=0,priority=50,actions=1
"
    )
}

const MAC_LEARNING: &str = "table=10,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]";

/// A on port 3, B on port 4 (both VLAN 30), a trunk host on port 1.
fn hosts(tag: &str) -> (Host, Host, Host) {
    let (a, b) = two_hosts(tag);
    let trunk = Host::create(
        &format!("uct-{tag}-t"),
        &format!("uc{tag}t"),
        Ipv4Addr::new(10, 77, 0, 3),
        [2, 0, 0, 0x77, 0, 3],
    )
    .expect("creating the trunk host");
    (a, b, trunk)
}

/// Quiets `hosts` so that they send only what the test makes them send:
/// no IPv6 (router solicitations, MLD reports) and permanent neighbour
/// entries for each other (no ARP probes when an entry goes stale). Each
/// such frame would be learned again and renew a learned rule.
fn silence(hosts: &[&Host]) {
    for host in hosts {
        host.run(
            || match std::fs::write("/proc/sys/net/ipv6/conf/eth0/disable_ipv6", "1") {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    panic!("disabling IPv6 on eth0: {e}")
                }
                _ => {}
            },
        )
        .expect("entering the host's namespace");
        for peer in hosts.iter().filter(|p| p.netns != host.netns) {
            let status = std::process::Command::new("ip")
                .args([
                    "-n",
                    &host.netns,
                    "neigh",
                    "replace",
                    &peer.addr.to_string(),
                ])
                .args(["lladdr", &mac(peer.mac), "dev", "eth0", "nud", "permanent"])
                .status()
                .expect("running ip neigh");
            assert!(status.success(), "ip neigh replace in {}", host.netns);
        }
    }
}

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The learned rule for `m`, if table 10 has one.
fn learned_rule(d: &Daemon, m: [u8; 6]) -> Option<String> {
    let needle = format!("dl_dst={}", mac(m));
    d.ctl(Ctl::DumpFlows, "")
        .lines()
        .find(|l| l.contains("table=10,") && l.contains(&needle))
        .map(str::to_string)
}

#[test]
fn the_tutorial_switch_forwards_to_learned_ports() {
    require_root();
    let (a, b, trunk) = hosts("ln1");
    let d = Daemon::start(
        "ln1",
        &[(&trunk.port, 1), (&a.port, 3), (&b.port, 4)],
        &tutorial(MAC_LEARNING),
        "",
    );
    assert!(ping_ok(&a, b.addr, 5), "ping A -> B; log:\n{}", d.log());
    // Both hosts' MACs were learned on VLAN 30 (0x1e), on their ports.
    d.wait_until("both MACs are learned", Duration::from_secs(5), || {
        learned_rule(&d, a.mac).is_some() && learned_rule(&d, b.mac).is_some()
    });
    let rule_a = learned_rule(&d, a.mac).unwrap();
    assert!(
        rule_a.contains("vlan_tci=0x001e/0x0fff")
            && rule_a.ends_with("actions=load:0x3->NXM_NX_REG0[0..15]"),
        "{rule_a}"
    );
    assert!(learned_rule(&d, b.mac)
        .unwrap()
        .ends_with("actions=load:0x4->NXM_NX_REG0[0..15]"));
    // Unicast from A to B now goes to port 4 alone; before learning it was
    // flooded to the trunk (tagged) as well. Revalidation brings the
    // installed megaflows there.
    let len = 256 << 10;
    let got = tcp_transfer(&a, &b, 5003, len, Duration::from_secs(10)).expect("TCP A -> B");
    assert!(got == pattern(len), "TCP data corrupted on the way");
    let src_dst = format!("eth(src={},dst={})", mac(a.mac), mac(b.mac));
    d.wait_until(
        "A -> B unicast megaflows output to port 4 only",
        Duration::from_secs(5),
        || {
            let flows = d.ctl(Ctl::DumpDpFlows, "");
            let unicast: Vec<&str> = flows.lines().filter(|f| f.contains(&src_dst)).collect();
            !unicast.is_empty() && unicast.iter().all(|f| f.ends_with("actions:4"))
        },
    );
    // Deleting the rules of table 10 unlearns; the next packets learn again.
    d.ctl(Ctl::DelFlows, "table=10");
    assert!(learned_rule(&d, a.mac).is_none());
    assert!(ping_ok(&a, b.addr, 5), "ping A -> B after unlearning");
    d.wait_until("A is learned again", Duration::from_secs(5), || {
        learned_rule(&d, a.mac).is_some()
    });
}

#[test]
fn learned_rules_expire_and_go_with_their_learner() {
    require_root();
    let (a, b, trunk) = hosts("ln2");
    // The hard timeout is only seen if nothing renews the learned rules.
    silence(&[&a, &b, &trunk]);
    let learn = format!("{MAC_LEARNING},hard_timeout=2,delete_learned,cookie=0x77");
    let d = Daemon::start(
        "ln2",
        &[(&trunk.port, 1), (&a.port, 3), (&b.port, 4)],
        &tutorial(&learn),
        "",
    );
    assert!(ping_ok(&a, b.addr, 5), "ping A -> B; log:\n{}", d.log());
    d.wait_until("A is learned", Duration::from_secs(5), || {
        learned_rule(&d, a.mac).is_some()
    });
    let rule_a = learned_rule(&d, a.mac).unwrap();
    assert!(
        rule_a.contains("cookie=0x77") && rule_a.contains("hard_timeout=2"),
        "{rule_a}"
    );
    // No traffic (the hosts are silenced): the hard timeout removes the
    // learned rules.
    d.wait_until("the learned rules expire", Duration::from_secs(6), || {
        learned_rule(&d, a.mac).is_none() && learned_rule(&d, b.mac).is_none()
    });
    // Learn again, then delete the learning rule: delete_learned takes the
    // learned rules with it.
    assert!(ping_ok(&a, b.addr, 5), "ping A -> B again");
    d.wait_until("A is learned again", Duration::from_secs(5), || {
        learned_rule(&d, a.mac).is_some()
    });
    d.ctl(Ctl::DelFlows, "table=2");
    assert!(
        learned_rule(&d, a.mac).is_none(),
        "delete_learned left A's rule"
    );
}
