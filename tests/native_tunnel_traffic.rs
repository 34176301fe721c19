//! Native (userspace) tunnelling end to end, as OVS's netdev datapath
//! does it: two upcalld daemons on the embedded datapath, each in its own
//! namespace, whose underlay address sits on an internal port of the
//! bridge (`[native_tunnel] port = 3`), joined by a veth underlay attached
//! as an ordinary port; a host behind each. Tunnel outputs are
//! `tnl_push(...)` onto whole outer frames and tunnel packets are
//! `tnl_pop(...)`ped in the datapath. No static neighbours: a tunnel
//! output before the peer's MAC is known is dropped and counted, and
//! sends an ARP request whose reply, crossing the bridge, teaches it;
//! then traffic flows — ping and
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
host_tables = {}
"#,
        underlay_ip(n),
        underlay_mac(n),
        // A also takes the host's routes and neighbours.
        n == 1
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
    appctl_args(d, &[command])
}

fn run_appctl(d: &Daemon, args: &[&str]) -> std::process::Output {
    std::process::Command::new("ovs-appctl")
        .arg("-t")
        .arg(d.socket())
        .args(args)
        .output()
        .expect("running ovs-appctl")
}

/// `ovs-appctl -t SOCKET COMMAND ARGS...`'s output, which must succeed.
fn appctl_args(d: &Daemon, args: &[&str]) -> String {
    let out = run_appctl(d, args);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The error of an `ovs-appctl` command that must fail.
fn appctl_err(d: &Daemon, args: &[&str]) -> String {
    let out = run_appctl(d, args);
    assert!(!out.status.success(), "{args:?} succeeded");
    String::from_utf8_lossy(&out.stderr).into_owned()
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

    // No neighbour yet: the tunnel output is dropped, counted, and an ARP
    // request for the next hop goes out of the underlay port through the
    // tables (OVS's tnl_send_arp_request); B's address port answers and A
    // snoops the reply. Nothing else crosses the underlay before. (The
    // first tunnel packet may be the ping's or the host's own background
    // IPv6 traffic: the ping may make it or not.)
    ping_ok(&a.host, b.host.addr, 1);
    assert!(native_count(&da, "neighbour_miss") >= 1);
    da.wait_until(
        "A learned B's underlay MAC from the reply to its ARP request",
        Duration::from_secs(5),
        || appctl(&da, "tnl/neigh/show").contains(&underlay_mac(2)),
    );
    assert!(native_count(&da, "arp_requests") >= 1);
    assert!(
        appctl(&da, "tnl/neigh/show").contains("192.168.79.2"),
        "the neighbour is B's underlay address"
    );

    // The underlay itself works through both bridges (ARP and ICMP
    // between the address ports).
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

    underlay_through_ovs_appctl(&a, &b, &da);
    drop((da, db));
}

/// `ovs-appctl`'s `tnl/neigh/*` and `ovs/route/*` on the running daemon,
/// with OVS's replies and errors, and what they do to traffic: a flushed
/// or aged-out neighbour is asked for again, a wrong one set by hand
/// stops the tunnel, and the next hop comes from the routes.
fn underlay_through_ovs_appctl(a: &TunnelSide, b: &TunnelSide, da: &Daemon) {
    let neighbour_known = || appctl(da, "tnl/neigh/show").contains(&underlay_mac(2));
    assert_eq!(appctl(da, "tnl/neigh/aging"), "900\n");
    assert!(appctl_err(da, &["tnl/neigh/aging", "0"]).contains("bad aging value"));
    assert!(appctl_err(da, &["tnl/neigh/aging", "3601"]).contains("bad aging value"));

    // Flushed: the installed flows translate again and miss, the next
    // hop is asked for again, and traffic resumes.
    let requests = native_count(da, "arp_requests");
    // Two rounds take in the last traffic's packets first: a round that
    // sees new packets on a flow learns again what they showed.
    da.ctl(Ctl::Revalidate, "");
    da.ctl(Ctl::Revalidate, "");
    assert_eq!(appctl(da, "tnl/neigh/flush"), "OK\n");
    assert!(!neighbour_known(), "flushed");
    da.ctl(Ctl::Revalidate, "");
    da.wait_until(
        "the flushed neighbour is asked for and learned again",
        Duration::from_secs(5),
        neighbour_known,
    );
    assert!(native_count(da, "arp_requests") > requests);
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "no ping after the neighbour cache was flushed"
    );

    // A wrong MAC set by hand is used (the tunnel stops), the right one
    // brings it back.
    let set = |mac: &str| appctl_args(da, &["tnl/neigh/set", "br0", "192.168.79.2", mac]);
    da.ctl(Ctl::Revalidate, "");
    da.ctl(Ctl::Revalidate, "");
    assert_eq!(set("02:00:00:79:00:99"), "OK\n");
    da.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 2),
        "a ping reached B through a wrong MAC"
    );
    assert_eq!(set(&underlay_mac(2)), "OK\n");
    da.ctl(Ctl::Revalidate, "");
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "no ping with the MAC set right"
    );
    assert!(
        appctl_err(da, &["tnl/neigh/set", "br0", "192.168.79.2", "nonsense"])
            .contains("bad MAC address")
    );

    // Aging: an unused neighbour goes after the aging time, counted.
    assert_eq!(appctl_args(da, &["tnl/neigh/aging", "1"]), "OK\n");
    assert_eq!(appctl(da, "tnl/neigh/aging"), "1\n");
    // (The flows still installed translate again and ask for it again.)
    da.wait_until(
        "the idle neighbour aged out",
        Duration::from_secs(10),
        || native_count(da, "expired") >= 1,
    );
    assert_eq!(appctl_args(da, &["tnl/neigh/aging", "900"]), "OK\n");
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "no ping after the neighbour aged out"
    );

    // Routes: the connected one, one added through a gateway, looked up,
    // deleted.
    let show = appctl(da, "ovs/route/show");
    assert!(
        show.contains("Cached: 192.168.79.0/24 dev ucntl1 SRC 192.168.79.1\n")
            && show.contains("Cached: 192.168.79.1/32 dev ucntl1 SRC 192.168.79.1 local\n"),
        "{show}"
    );
    assert_eq!(
        appctl_args(
            da,
            &["ovs/route/add", "10.200.7.9/16", "ucntl1", "192.168.79.2"]
        ),
        "OK\n"
    );
    assert!(appctl(da, "ovs/route/show")
        .contains("User: 10.200.0.0/16 dev ucntl1 GW 192.168.79.2 SRC 192.168.79.1\n"));
    assert_eq!(
        appctl_args(da, &["ovs/route/lookup", "10.200.1.1"]),
        "src 192.168.79.1\ngateway 192.168.79.2\ndev ucntl1\n"
    );
    assert_eq!(
        appctl_args(da, &["ovs/route/lookup", "192.168.79.2"]),
        "src 192.168.79.1\ngateway ::\ndev ucntl1\n"
    );
    assert!(appctl_err(
        da,
        &["ovs/route/add", "10.9.0.0/16", "ucntl1", "172.16.0.1"]
    )
    .contains("Error while inserting route"));
    assert_eq!(appctl_args(da, &["ovs/route/del", "10.200.0.0/16"]), "OK\n");
    assert!(appctl_err(da, &["ovs/route/del", "10.200.0.0/16"]).contains("Not found"));
    assert!(appctl_err(da, &["ovs/route/lookup", "10.200.1.1"]).contains("Not found"));

    // The host's tables (A follows them): a route and a neighbour added
    // with `ip` on the underlay device are taken, and the route goes
    // with it.
    let host_route = "Cached: 10.201.0.0/16 dev ucntl1 GW 192.168.79.2 SRC 192.168.79.1\n";
    ip(&[
        "-n",
        &a.ns.0,
        "route",
        "add",
        "10.201.0.0/16",
        "via",
        "192.168.79.2",
        "dev",
        "ucntl1",
    ]);
    da.wait_until("the host's route is read", Duration::from_secs(5), || {
        appctl(da, "ovs/route/show").contains(host_route)
    });
    assert_eq!(
        appctl_args(da, &["ovs/route/lookup", "10.201.3.4"]),
        "src 192.168.79.1\ngateway 192.168.79.2\ndev ucntl1\n"
    );
    ip(&["-n", &a.ns.0, "route", "del", "10.201.0.0/16"]);
    da.wait_until("the host's route is gone", Duration::from_secs(5), || {
        !appctl(da, "ovs/route/show").contains(host_route)
    });
    ip(&[
        "-n",
        &a.ns.0,
        "neigh",
        "replace",
        "192.168.79.77",
        "lladdr",
        "02:00:00:79:00:77",
        "dev",
        "ucntl1",
        "nud",
        "permanent",
    ]);
    da.wait_until(
        "the host's neighbour is read",
        Duration::from_secs(5),
        || appctl(da, "tnl/neigh/show").contains("02:00:00:79:00:77"),
    );
}
