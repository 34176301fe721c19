//! Native (userspace) tunnelling end to end, as OVS's netdev datapath
//! does it: two upcalld daemons on the embedded datapath, each in its own
//! namespace, whose underlay address sits on an internal port of the
//! bridge (`[native_tunnel] port = 3`), joined by a veth underlay attached
//! as an ordinary port; a host behind each. Tunnel outputs are
//! `tnl_push(...)` onto whole outer frames and tunnel packets are
//! `tnl_pop(...)`ped in the datapath. No static neighbours: a tunnel
//! output before the peer's MAC is known is dropped and counted, an ARP
//! reply crossing the bridge teaches it, and traffic flows — ping and
//! 1 MiB of TCP through Geneve with a `tun_metadata0` option set on one
//! side and matched on the other, then VXLAN with `key=flow`. Malformed
//! tunnel packets are counted on the vport.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

fn underlay_ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(192, 168, 79, n)
}

fn underlay_mac(n: u8) -> String {
    format!("02:00:00:79:00:{n:02x}")
}

fn side(n: u8) -> TunnelSide {
    tunnel_side("nt", 79, n, [2, 0, 0, 0x79, 1, n])
}

/// Both sides and the underlay wire between them (no addresses on it:
/// the underlay address is the bridge's, and ARP on the wire's ends is
/// off so that only the bridge's port answers for it).
fn topology() -> (TunnelSide, TunnelSide) {
    let (a, b) = (side(1), side(2));
    ip(&[
        "link", "add", "ucntu1", "netns", &a.ns.0, "type", "veth", "peer", "name", "ucntu2",
        "netns", &b.ns.0,
    ]);
    for (s, dev) in [(&a, "ucntu1"), (&b, "ucntu2")] {
        ip(&["-n", &s.ns.0, "link", "set", dev, "arp", "off"]);
        ip(&["-n", &s.ns.0, "link", "set", dev, "up"]);
    }
    (a, b)
}

fn daemon(s: &TunnelSide, n: u8, rules: &str) -> Daemon {
    let remote = underlay_ip(3 - n);
    let ports = format!(
        r#"[[port]]
name = "{host}"
number = 1
[[port]]
name = "ucntu{n}"
number = 2
[[port]]
name = "ucntl{n}"
type = "internal"
number = 3
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
"#,
        host = s.host.port
    );
    let extra = format!(
        r#"tlv_map = ["{{class=0xffff,type=0,len=4}}->tun_metadata0"]
[native_tunnel]
port = 3
address = ["{}/24"]
mac = "{}"
"#,
        underlay_ip(n),
        underlay_mac(n)
    );
    let d = Daemon::start_in(Some(&s.ns.0), &format!("ntnl{n}"), &ports, rules, &extra);
    // The underlay address on the bridge's port, as `ip addr add ... dev
    // br0` on an OVS host.
    let dev = format!("ucntl{n}");
    ip(&[
        "-n",
        &s.ns.0,
        "link",
        "set",
        &dev,
        "address",
        &underlay_mac(n),
    ]);
    ip(&[
        "-n",
        &s.ns.0,
        "addr",
        "add",
        &format!("{}/24", underlay_ip(n)),
        "dev",
        &dev,
    ]);
    ip(&["-n", &s.ns.0, "link", "set", &dev, "up"]);
    d
}

/// The bridge carries the underlay between the wire (2) and the
/// address's port (3); `overlay` adds the tunnel rules.
fn rules(overlay: &str) -> String {
    format!(
        "table=0,priority=100,in_port=2,actions=output:3\n\
         table=0,priority=100,in_port=3,actions=output:2\n{overlay}"
    )
}

fn geneve(mine: u32, theirs: u32) -> String {
    rules(&format!(
        "table=0,priority=10,in_port=1,actions=set_field:{mine:#x}->tun_metadata0,output:10\n\
         table=0,priority=10,in_port=10,tun_metadata0={theirs:#x},actions=output:1\n"
    ))
}

/// `ovs-appctl -t SOCKET COMMAND`'s output.
fn appctl(d: &Daemon, command: &str) -> String {
    let out = std::process::Command::new("ovs-appctl")
        .arg("-t")
        .arg(d.socket())
        .arg(command)
        .output()
        .expect("running ovs-appctl");
    assert!(
        out.status.success(),
        "{command}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A number from the `native tunnel` line of `upcall-show`.
fn native_count(d: &Daemon, name: &str) -> u64 {
    let show = d.ctl(Ctl::UpcallShow, "");
    let line = show
        .lines()
        .find(|l| l.contains("native tunnel"))
        .unwrap_or_else(|| panic!("no native tunnel line:\n{show}"));
    line.split([' ', ','])
        .find_map(|w| w.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {line:?}"))
}

#[test]
fn tnl_push_and_tnl_pop_carry_ping_and_tcp_through_geneve_and_vxlan() {
    require_root();
    let (a, b) = topology();
    let da = daemon(&a, 1, &geneve(0x1234, 0x5678));
    let db = daemon(&b, 2, &geneve(0x5678, 0x1234));

    // No neighbour yet: the tunnel output is dropped, counted.
    assert!(
        !ping_ok(&a.host, b.host.addr, 2),
        "a tunnel packet left without a next-hop MAC"
    );
    assert!(native_count(&da, "neighbour_miss") >= 1);

    // The underlay itself works through both bridges (ARP and ICMP
    // between the address ports), and A snoops B's ARP reply.
    let a_underlay = Host {
        netns: a.ns.0.clone(),
        port: String::new(),
        addr: underlay_ip(1),
        mac: [0; 6],
    };
    assert!(
        ping_ok(&a_underlay, underlay_ip(2), 10),
        "no underlay ping between the bridges' ports"
    );
    let neigh = appctl(&da, "tnl/neigh/show");
    assert!(
        neigh.contains("192.168.79.2") && neigh.contains(&underlay_mac(2)),
        "A learned B's underlay MAC from its ARP reply:\n{neigh}"
    );

    ping_and_transfer_across(&a, &b, 7002, "geneve");
    let flows = da.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("tnl_push(tnl_port(6081),header(size=58,type=5,")
            && flows.contains(&format!(
                "eth(dst={},src={},dl_type=0x0800),ipv4(src=192.168.79.1,dst=192.168.79.2,",
                underlay_mac(2),
                underlay_mac(1)
            ))
            && flows.contains("options({class=0xffff,type=0,len=4,0x1234}))),out_port(3)),2"),
        "A pushes whole outer headers:\n{flows}"
    );
    let flows = db.ctl(Ctl::DumpDpFlows, "");
    assert!(flows.contains("tnl_pop(6081)"), "B pops:\n{flows}");
    assert!(
        flows.contains("geneve({class=0xffff,type=0,len=4,0x1234})"),
        "B's megaflows match A's option:\n{flows}"
    );
    // B learned A's MAC from A's tunnel packets (it never saw A's ARP reply).
    assert!(appctl(&db, "tnl/neigh/show").contains(&underlay_mac(1)));

    // A wrong option is not taken.
    db.ctl(Ctl::ReplaceFlows, &geneve(0x5678, 0x9999));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong option got through"
    );

    // Malformed tunnel packets reach tnl_pop and are counted on the vport:
    // garbage, and a Geneve packet whose unknown option is critical.
    let mut critical = vec![2, 0x40, 0x65, 0x58, 0, 0, 1, 0];
    critical.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 9, 9, 9, 9]);
    critical.extend_from_slice(&[0; 60]);
    in_ns(&b.ns, move || {
        let s = std::net::UdpSocket::bind("192.168.79.2:0").unwrap();
        for d in [b"garbage".to_vec(), critical] {
            s.send_to(&d, "192.168.79.1:6081").unwrap();
        }
    });
    da.wait_until("tnl_pop drops counted", Duration::from_secs(5), || {
        let m = scrape_in(&a.ns, &da);
        let count = |why: &str| {
            m.lines()
                .filter(|l| l.contains("genev_sys_6081") && l.contains(why))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        };
        count("\"rx_malformed\"") >= 1.0 && count("\"rx_unknown_critical_option\"") >= 1.0
    });

    // VXLAN with key=flow: the VNI from set_field on tun_id.
    let vxlan = rules(
        "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,output:11\n\
         table=0,priority=10,in_port=11,tun_id=0x64,actions=output:1\n",
    );
    da.ctl(Ctl::ReplaceFlows, &vxlan);
    db.ctl(Ctl::ReplaceFlows, &vxlan);
    ping_and_transfer_across(&a, &b, 7002, "vxlan");
    let flows = da.ctl(Ctl::DumpDpFlows, "");
    assert!(
        flows.contains("vxlan(flags=0x8000000,vni=0x64)),out_port(3)),2"),
        "{flows}"
    );
    assert!(db.ctl(Ctl::DumpDpFlows, "").contains("tnl_pop(4789)"));
    drop((da, db));
}
