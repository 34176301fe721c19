//! Two hosts joined by an overlay: two upcalld daemons on the embedded
//! datapath, each in its own network namespace with its own underlay
//! address, joined by a veth underlay; a host behind each. Ping and a 1 MiB
//! TCP transfer cross a Geneve tunnel whose `tun_metadata0` option one
//! side sets and the other matches, and a VXLAN tunnel with `key=flow`,
//! over an IPv4 underlay and over an IPv6 one, and a VXLAN tunnel with
//! `exts=gbp` carrying a Group Policy id; malformed tunnel packets
//! and sends to a remote the host cannot route to are dropped and
//! counted, and traffic flows on afterwards.

mod common;

use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;

/// The underlay's addresses (side 1's, side 2's) and prefix length.
struct Underlay {
    tag: &'static str,
    subnet: u8,
    addrs: [&'static str; 2],
    prefix: u8,
}

const IPV4: Underlay = Underlay {
    tag: "tnl",
    subnet: 78,
    addrs: ["192.168.77.1", "192.168.77.2"],
    prefix: 24,
};

const GBP: Underlay = Underlay {
    tag: "tgb",
    subnet: 80,
    addrs: ["192.168.76.1", "192.168.76.2"],
    prefix: 24,
};

const IPV6: Underlay = Underlay {
    tag: "tn6",
    subnet: 79,
    addrs: ["fc00:77::1", "fc00:77::2"],
    prefix: 64,
};

/// Both sides and the underlay between them.
fn topology(u: &Underlay) -> (TunnelSide, TunnelSide) {
    let side = |n: u8| tunnel_side(u.tag, u.subnet, n, [2, 0, 0, u.subnet, 0, n]);
    let (a, b) = (side(1), side(2));
    let dev = |n: u8| format!("uc{}u{n}", u.tag);
    ip(&[
        "link",
        "add",
        &dev(1),
        "netns",
        &a.ns.0,
        "type",
        "veth",
        "peer",
        "name",
        &dev(2),
        "netns",
        &b.ns.0,
    ]);
    for (s, n) in [(&a, 1u8), (&b, 2)] {
        let addr = format!("{}/{}", u.addrs[usize::from(n) - 1], u.prefix);
        let mut add = vec!["-n", &s.ns.0, "addr", "add", &addr, "dev"];
        let dev = dev(n);
        add.push(&dev);
        // No duplicate address detection: the address is usable at once.
        if u.prefix > 32 {
            add.push("nodad");
        }
        ip(&add);
        ip(&["-n", &s.ns.0, "link", "set", &dev, "up"]);
    }
    (a, b)
}

fn daemon(u: &Underlay, s: &TunnelSide, n: u8, rules: &str) -> Daemon {
    let remote = u.addrs[if n == 1 { 1 } else { 0 }];
    let ports = format!(
        r#"[[port]]
name = "{port}"
type = "system"
number = 1
[[port]]
name = "gnv0"
type = "geneve"
number = 10
remote_ip = "{remote}"
[[port]]
name = "vx0"
type = "vxlan"
number = 11
remote_ip = "{remote}"
key = "flow"
[[port]]
name = "vxf"
type = "vxlan"
number = 12
remote_ip = "flow"
key = "flow"
[[port]]
name = "vxg"
type = "vxlan"
number = 13
remote_ip = "{remote}"
key = "flow"
dst_port = 4790
exts = "gbp"
"#,
        port = s.host.port
    );
    Daemon::start_in(
        Some(&s.ns.0),
        &format!("{}{n}", u.tag),
        &ports,
        rules,
        r#"tlv_map = ["{class=0xffff,type=0,len=4}->tun_metadata0"]"#,
    )
}

/// Geneve rules: each side sends its own tun_metadata0 and takes only the
/// other's.
fn geneve(mine: u32, theirs: u32) -> String {
    format!(
        "table=0,priority=10,in_port=1,actions=set_field:{mine:#x}->tun_metadata0,output:10\n\
         table=0,priority=10,in_port=10,tun_metadata0={theirs:#x},actions=output:1\n"
    )
}

/// VXLAN with key=flow: the VNI comes from set_field on tun_id, and each
/// side takes only VNI 100.
const VXLAN: &str = "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,output:11\n\
                     table=0,priority=10,in_port=11,tun_id=0x64,actions=output:1\n";

/// Sends UDP datagrams to `to` from inside namespace `ns`.
fn udp_from(ns: &Netns, to: &'static str, datagrams: Vec<Vec<u8>>) {
    in_ns(ns, move || {
        let s = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
        for d in datagrams {
            s.send_to(&d, to).unwrap();
        }
    })
}

#[test]
fn ping_and_tcp_through_geneve_with_an_option_and_vxlan_with_key_flow() {
    require_root();
    let (a, b) = topology(&IPV4);
    let da = daemon(&IPV4, &a, 1, &geneve(0x1234, 0x5678));
    let db = daemon(&IPV4, &b, 2, &geneve(0x5678, 0x1234));
    ping_and_transfer_across(&a, &b, 7001, "geneve");
    let flows = db.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("geneve({class=0xffff,type=0,len=4,0x1234})"),
        "B's megaflows match A's option:\n{flows}"
    );
    assert!(flows.contains("set(tunnel("), "{flows}");
    // A wrong option is not taken: B now wants another value.
    db.ctl(Ctl::ReplaceFlows, &geneve(0x5678, 0x9999));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong option got through"
    );

    // Bad outer payloads are dropped and counted, never a panic: garbage,
    // and a Geneve packet whose unknown option is critical.
    let mut critical = vec![2, 0x40, 0x65, 0x58, 0, 0, 1, 0];
    critical.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 9, 9, 9, 9]);
    critical.extend_from_slice(&[0; 60]);
    udp_from(
        &b.ns,
        "192.168.77.1:6081",
        vec![b"garbage".to_vec(), critical],
    );
    da.wait_until("tunnel drops counted", Duration::from_secs(5), || {
        let m = scrape_in(&a.ns, &da);
        let count = |why: &str| {
            m.lines()
                .filter(|l| l.contains("genev_sys_6081") && l.contains(why))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        count("\"rx_malformed\"") >= 1.0 && count("\"rx_unknown_critical_option\"") >= 1.0
    });
    assert!(!da.ctl(Ctl::UpcallShow, "").is_empty(), "A still answers");

    da.ctl(Ctl::ReplaceFlows, VXLAN);
    db.ctl(Ctl::ReplaceFlows, VXLAN);
    ping_and_transfer_across(&a, &b, 7001, "vxlan");
    let flows = da.ctl(Ctl::DumpDpFlows, "");
    assert!(flows.contains("tun_id=0x64"), "{flows}");

    // A remote the host cannot route to (A's namespace has no route to
    // TEST-NET-2, so nothing leaves it): each send fails, counted, and
    // the vport goes on; back on a reachable remote, traffic flows again.
    da.ctl(
        Ctl::ReplaceFlows,
        "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,\
         set_field:198.51.100.7->tun_dst,output:12\n\
         table=0,priority=10,in_port=11,tun_id=0x64,actions=output:1\n",
    );
    da.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 2),
        "unroutable remote answered"
    );
    da.wait_until("unreachable sends counted", Duration::from_secs(5), || {
        scrape_in(&a.ns, &da)
            .lines()
            .filter(|l| l.contains("vxlan_sys_4789") && l.contains("\"tx_unreachable\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>()
            >= 1.0
    });
    da.ctl(Ctl::ReplaceFlows, VXLAN);
    da.ctl(Ctl::Revalidate, "");
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "no ping after the unreachable remote"
    );
    drop((da, db));
}

#[test]
fn ping_and_tcp_through_geneve_and_vxlan_over_an_ipv6_underlay() {
    require_root();
    let (a, b) = topology(&IPV6);
    let da = daemon(&IPV6, &a, 1, &geneve(0x1234, 0x5678));
    let db = daemon(&IPV6, &b, 2, &geneve(0x5678, 0x1234));
    ping_and_transfer_across(&a, &b, 7002, "geneve over IPv6");
    // B's megaflows match the outer IPv6 addresses and A's option; A's
    // actions send to B's IPv6 address.
    let flows = db.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("ipv6_src=fc00:77::1") && flows.contains("ipv6_dst=fc00:77::2"),
        "B's megaflows match the IPv6 underlay:\n{flows}"
    );
    assert!(
        flows.contains("geneve({class=0xffff,type=0,len=4,0x1234})"),
        "{flows}"
    );
    let flows = da.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("set(tunnel(") && flows.contains("ipv6_dst=fc00:77::2"),
        "A's actions tunnel to B's IPv6 address:\n{flows}"
    );
    // The wrong option is still refused over IPv6.
    db.ctl(Ctl::ReplaceFlows, &geneve(0x5678, 0x9999));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong option got through"
    );

    da.ctl(Ctl::ReplaceFlows, VXLAN);
    db.ctl(Ctl::ReplaceFlows, VXLAN);
    ping_and_transfer_across(&a, &b, 7002, "vxlan over IPv6");
    let flows = db.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("tun_id=0x64") && flows.contains("ipv6_src=fc00:77::1"),
        "{flows}"
    );
    drop((da, db));
}

#[test]
fn ping_and_tcp_through_vxlan_with_a_group_policy_id() {
    require_root();
    let (a, b) = topology(&GBP);
    // Each side sends Group Policy id `mine` and takes only `theirs`.
    let gbp = |mine: u16, theirs: u16| {
        format!(
            "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,\
             set_field:{mine}->tun_gbp_id,set_field:0x08->tun_gbp_flags,output:13\n\
             table=0,priority=10,in_port=13,tun_id=0x64,tun_gbp_id={theirs},actions=output:1\n"
        )
    };
    let da = daemon(&GBP, &a, 1, &gbp(100, 200));
    let db = daemon(&GBP, &b, 2, &gbp(200, 100));
    ping_and_transfer_across(&a, &b, 7003, "vxlan gbp");
    let flows = db.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("vxlan(gbp(id=100"),
        "B's megaflows match A's Group Policy id:\n{flows}"
    );
    assert!(flows.contains("in_port(4790)"), "{flows}");
    // Another id is not taken.
    db.ctl(Ctl::ReplaceFlows, &gbp(200, 300));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong Group Policy id got through"
    );
    drop((da, db));
}
