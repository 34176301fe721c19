//! MPLS with real traffic through the daemon on the embedded datapath:
//! hosts A and B in network namespaces this test creates, and between
//! them a wire (a veth pair whose two ends are both switch ports) that
//! carries only MPLS. A's packets get label 100 pushed on their way onto
//! the wire and popped when they come back off it; B's get label 200,
//! and their pop is followed by `dec_ttl`, which needs the IP header
//! under the label: the datapath recirculates the popped packet and the
//! slow path resumes the frozen translation on it (OVS's `was_mpls`).
//! A ping from A to B works only if every push and pop is right.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use common::*;
use upcalld::control::Command as Ctl;

const RULES: &str = "\
table=0,priority=100,in_port=1,arp,actions=output:2
table=0,priority=100,in_port=2,arp,actions=output:1
table=0,priority=100,in_port=1,ip,actions=push_mpls:0x8847,set_field:100->mpls_label,output:3
table=0,priority=100,in_port=2,ip,actions=push_mpls:0x8847,set_mpls_label(200),output:4
table=0,priority=100,in_port=4,mpls,mpls_label=100,actions=pop_mpls:0x0800,output:2
table=0,priority=100,in_port=3,mpls,mpls_label=200,actions=pop_mpls:0x0800,dec_ttl,output:1
";

/// A veth pair in the test's own namespace, both ends up, deleted when
/// dropped.
struct Wire(&'static str);

impl Wire {
    fn create(a: &'static str, b: &str) -> Wire {
        let _ = Command::new("ip").args(["link", "del", a]).output();
        ip(&["link", "add", a, "type", "veth", "peer", "name", b]);
        ip(&["link", "set", a, "up"]);
        ip(&["link", "set", b, "up"]);
        Wire(a)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", self.0]).output();
    }
}

#[test]
fn a_ping_crosses_an_mpls_wire_pushed_on_one_side_and_popped_on_the_other() {
    require_root();
    let (a, b) = two_hosts("mp");
    let _wire = Wire::create("ucmpw3", "ucmpw4");
    let d = Daemon::start(
        "mp",
        &[(&a.port, 1), (&b.port, 2), ("ucmpw3", 3), ("ucmpw4", 4)],
        RULES,
        "",
    );
    assert!(
        ping_ok(&a, Ipv4Addr::new(10, 77, 0, 2), 10),
        "A pings B across the MPLS wire\nflows:\n{}\nlog:\n{}",
        d.ctl(Ctl::DumpDpFlows, ""),
        d.log()
    );
    for seq in 0..5 {
        assert!(ping_ok(&a, Ipv4Addr::new(10, 77, 0, 2), 3), "ping {seq}");
    }

    let flows = d.ctl(Ctl::DumpDpFlows, "");
    let has = |what: &str| flows.lines().any(|l| l.contains(what));
    assert!(
        has("actions:push_mpls(label=100,tc=0,ttl=64,bos=1,eth_type=0x8847),3"),
        "A's packets get label 100: {flows}"
    );
    assert!(
        has("actions:push_mpls(label=200,tc=0,ttl=64,bos=1,eth_type=0x8847),4"),
        "B's get label 200: {flows}"
    );
    assert!(
        has("mpls(label=100") && has("actions:pop_mpls(eth_type=0x800),2"),
        "label 100 comes off the wire and is popped: {flows}"
    );
    // B's replies: popped, recirculated, then TTL decremented on the IP
    // header the datapath found under the label.
    let resumed = flows
        .lines()
        .find(|l| l.contains("actions:pop_mpls(eth_type=0x800),recirc(0x"))
        .unwrap_or_else(|| panic!("the pop before dec_ttl recirculates: {flows}"));
    let id = resumed
        .split("recirc(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap();
    assert!(
        flows
            .lines()
            .any(|l| l.contains(&format!(" recirc_id({id}),"))
                && l.contains("eth_type(0x0800)")
                && l.contains("actions:set(ipv4(ttl=63)),1")),
        "the resumed pass sees IPv4 and decrements its TTL: {flows}"
    );
}
