//! Two hosts joined by an overlay: two upcalld daemons on the embedded
//! datapath, each in its own network namespace with its own underlay
//! address, joined by a veth underlay; a host behind each. Ping and a 1 MiB
//! TCP transfer cross a Geneve tunnel whose `tun_metadata0` option one
//! side sets and the other matches, and a VXLAN tunnel with `key=flow`;
//! malformed tunnel packets and sends to a remote the host cannot route
//! to are dropped and counted, and traffic flows on afterwards.

mod common;

use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;

fn side(n: u8) -> TunnelSide {
    tunnel_side("tnl", 78, n, [2, 0, 0, 0x78, 0, n])
}

/// Both sides and the underlay between them.
fn topology() -> (TunnelSide, TunnelSide) {
    let (a, b) = (side(1), side(2));
    ip(&[
        "link", "add", "uctnlu1", "netns", &a.ns.0, "type", "veth", "peer", "name", "uctnlu2",
        "netns", &b.ns.0,
    ]);
    for (s, dev, addr) in [
        (&a, "uctnlu1", "192.168.77.1/24"),
        (&b, "uctnlu2", "192.168.77.2/24"),
    ] {
        ip(&["-n", &s.ns.0, "addr", "add", addr, "dev", dev]);
        ip(&["-n", &s.ns.0, "link", "set", dev, "up"]);
    }
    (a, b)
}

fn daemon(s: &TunnelSide, n: u8, rules: &str) -> Daemon {
    let remote = if n == 1 {
        "192.168.77.2"
    } else {
        "192.168.77.1"
    };
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
"#,
        port = s.host.port
    );
    Daemon::start_in(
        Some(&s.ns.0),
        &format!("tnl{n}"),
        &ports,
        rules,
        r#"tlv_map = ["{class=0xffff,type=0,len=4}->tun_metadata0"]"#,
    )
}

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
    let (a, b) = topology();
    // Geneve: each side sends its own tun_metadata0 and takes only the
    // other's.
    let geneve = |mine: u32, theirs: u32| {
        format!(
            "table=0,priority=10,in_port=1,actions=set_field:{mine:#x}->tun_metadata0,output:10\n\
             table=0,priority=10,in_port=10,tun_metadata0={theirs:#x},actions=output:1\n"
        )
    };
    let da = daemon(&a, 1, &geneve(0x1234, 0x5678));
    let db = daemon(&b, 2, &geneve(0x5678, 0x1234));
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

    // VXLAN with key=flow: the VNI comes from set_field on tun_id, and
    // each side takes only VNI 100.
    let vxlan = "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,output:11\n\
                 table=0,priority=10,in_port=11,tun_id=0x64,actions=output:1\n";
    da.ctl(Ctl::ReplaceFlows, vxlan);
    db.ctl(Ctl::ReplaceFlows, vxlan);
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
    da.ctl(Ctl::ReplaceFlows, vxlan);
    da.ctl(Ctl::Revalidate, "");
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "no ping after the unreachable remote"
    );
    drop((da, db));
}
