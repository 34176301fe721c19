//! Two hosts joined by an overlay on Linux's openvswitch module: two
//! upcalld daemons on the kernel datapath, each in its own network
//! namespace (its datapath and tunnel vports live there) with its own
//! underlay address, joined by a veth underlay; a host behind each. Ping
//! and a 1 MiB TCP transfer cross a Geneve tunnel whose `tun_metadata0`
//! option one side sets and the other matches, and a VXLAN tunnel with
//! `key=flow`, over an IPv4 underlay and over an IPv6 one, and a VXLAN
//! tunnel with `exts=gbp` carrying a Group Policy id, and Geneve
//! options the receiver's TLV map does not know (kept in its kernel flows'
//! keys; a critical one dropped); `ovs-dpctl
//! dump-flows` shows the tunnel keys and the `set(tunnel(...))` actions
//! the daemons' traces predict. Run inside the
//! kernel VM (`.ci/kernel-vm.sh`, which loads `vport-vxlan` and
//! `vport-geneve`); skips where the `ovs_datapath` family is absent, unless
//! `OVS_KERNEL_REQUIRED=1`.

mod common;
mod kernel_common;

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use common::{pattern, ping_ok, tcp_transfer};
use kernel_common::daemon::*;
use kernel_common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// The daemon child process (see `kernel_common::daemon`).
#[test]
#[ignore = "the daemon process of the kernel tunnel test, started by it"]
fn daemon_child() {
    daemon_child_main();
}

/// Traffic in an emulated VM is slow: generous timeouts.
const SLOW: Duration = Duration::from_secs(30);

const TLV_MAP: &str = r#"tlv_map = ["{class=0xffff,type=0,len=4}->tun_metadata0"]"#;

/// A namespace for a daemon, deleted when dropped.
struct Netns(String);

impl Netns {
    fn new(name: &str) -> Netns {
        let _ = Command::new("/sbin/ip")
            .args(["netns", "del", name])
            .output();
        run("/sbin/ip", &["netns", "add", name]);
        run("/sbin/ip", &["-n", name, "link", "set", "lo", "up"]);
        Netns(name.into())
    }

    fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        run("/sbin/ip", &all)
    }

    /// Whether this namespace has a device `name`.
    fn has_link(&self, name: &str) -> bool {
        Command::new("/sbin/ip")
            .args(["-n", &self.0, "link", "show", name])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// `ovs-dpctl dump-flows` of datapath `dp`, inside this namespace.
    fn dpctl_flows(&self, dp: &str) -> String {
        run(
            "/sbin/ip",
            &[
                "netns",
                "exec",
                &self.0,
                "ovs-dpctl",
                "--no-names",
                "dump-flows",
                &format!("system@{dp}"),
            ],
        )
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("/sbin/ip")
            .args(["netns", "del", &self.0])
            .output();
    }
}

/// One side: a daemon's namespace (underlay `192.168.81.N`, or
/// `fc00:81::N` for an IPv6 underlay), its datapath `ukt-TAG-N`, and a
/// host (`10.81.0.N`, `10.82.0.N` beside an IPv6 underlay) whose port is
/// moved into the daemon's namespace.
struct Side {
    n: u8,
    v6: bool,
    ns: Netns,
    host: Host,
    dp: String,
}

fn side(n: u8, v6: bool) -> Side {
    let (tag, subnet) = if v6 { ("tn6", 0x82) } else { ("tnl", 0x81) };
    let ns = Netns::new(&format!("ukt-{tag}-d{n}"));
    let host = Host::create(
        &format!("ukt-{tag}-h{n}"),
        &format!("uk{tag}h{n}"),
        Ipv4Addr::new(10, subnet, 0, n),
        [2, 0, 0, subnet, 0, n],
    )
    .expect("creating a host");
    // Room for the outer headers on a 1500-byte underlay, as OVN lowers
    // its ports' MTU.
    run(
        "/sbin/ip",
        &["-n", &host.netns, "link", "set", "eth0", "mtu", "1400"],
    );
    run("/sbin/ip", &["link", "set", &host.port, "netns", &ns.0]);
    // The kernel datapath does not bring its ports up.
    ns.ip(&["link", "set", &host.port, "up"]);
    Side {
        n,
        v6,
        ns,
        host,
        dp: format!("ukt-{tag}-{n}"),
    }
}

/// Both sides and the underlay between them.
fn topology(v6: bool) -> (Side, Side) {
    let (a, b) = (side(1, v6), side(2, v6));
    let dev = |n: u8| format!("uk{}u{n}", if v6 { "tn6" } else { "tnl" });
    run(
        "/sbin/ip",
        &[
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
        ],
    );
    for s in [&a, &b] {
        let dev = dev(s.n);
        let cidr = s.underlay_cidr();
        let mut add = vec!["addr", "add", &cidr, "dev", &dev];
        // No duplicate address detection: the address is usable at once.
        if v6 {
            add.push("nodad");
        }
        s.ns.ip(&add);
        s.ns.ip(&["link", "set", &dev, "up"]);
    }
    (a, b)
}

impl Side {
    fn underlay(&self) -> String {
        match self.v6 {
            true => format!("fc00:81::{}", self.n),
            false => format!("192.168.81.{}", self.n),
        }
    }

    fn underlay_cidr(&self) -> String {
        format!("{}/{}", self.underlay(), if self.v6 { 64 } else { 24 })
    }

    /// The daemon of this side: the host on port 1, a Geneve port 10, a
    /// VXLAN port 11 (`key=flow`) and a VXLAN port 12 with `exts=gbp` (UDP
    /// port 4790) to `remote`.
    fn daemon(&self, remote: &Side, rules: &str) -> Daemon {
        let mut config = kernel_config(
            &self.dp,
            &[],
            &format!("max_idle_ms = 60000\n{TLV_MAP}"),
            "on_exit = \"delete\"",
        );
        config.push_str(&format!(
            "[[port]]\nname = \"{port}\"\nnumber = 1\n\
             [[port]]\nname = \"gnv0\"\ntype = \"geneve\"\nnumber = 10\nremote_ip = \"{remote}\"\n\
             [[port]]\nname = \"vx0\"\ntype = \"vxlan\"\nnumber = 11\nremote_ip = \"{remote}\"\nkey = \"flow\"\n\
             [[port]]\nname = \"vxg\"\ntype = \"vxlan\"\nnumber = 12\nremote_ip = \"{remote}\"\nkey = \"flow\"\n\
             dst_port = 4790\nexts = \"gbp\"\n",
            port = self.host.port,
            remote = remote.underlay(),
        ));
        Daemon::start_in(
            Some(&self.ns.0),
            &format!("k{}{}", if self.v6 { "tn6" } else { "tnl" }, self.n),
            &config,
            rules,
        )
    }
}

/// The lines of `ovs-dpctl dump-flows` whose flow and actions contain
/// `in_flow` and `in_actions`.
fn flows_with(s: &Side, in_flow: &str, in_actions: &str) -> Vec<DpctlFlow> {
    parse_flow_lines(&s.ns.dpctl_flows(&s.dp))
        .into_iter()
        .filter(|f| f.flow.contains(in_flow) && f.actions.contains(in_actions))
        .collect()
}

/// The `Datapath actions:` line of the daemon's trace of `flow`.
fn traced_actions(d: &Daemon, flow: &str) -> String {
    let trace = d.ctl(Ctl::Trace, flow);
    trace
        .lines()
        .find_map(|l| l.strip_prefix("Datapath actions: "))
        .unwrap_or_else(|| panic!("no datapath actions in the trace of {flow}:\n{trace}"))
        .to_string()
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

fn transfer_and_ping(a: &Side, b: &Side, da: &Daemon, db: &Daemon, what: &str) {
    let diag = || format!("A:\n{}\nB:\n{}", da.diagnosis(), db.diagnosis());
    assert!(
        ping_ok(&a.host, b.host.addr, 10),
        "{what}: no ping reply across the tunnel\n{}",
        diag()
    );
    let got = tcp_transfer(&a.host, &b.host, 7001, 1 << 20, SLOW)
        .unwrap_or_else(|e| panic!("{what}: TCP transfer failed: {e}\n{}", diag()));
    assert_eq!(got.len(), 1 << 20, "{what}");
    assert!(got == pattern(1 << 20), "{what}: data differs");
}

#[test]
fn ping_and_tcp_through_kernel_geneve_with_an_option_and_vxlan_with_key_flow() {
    if !ovs_present() {
        return;
    }
    let (a, b) = topology(false);
    let da = a.daemon(&b, &geneve(0x1234, 0x5678));
    let db = b.daemon(&a, &geneve(0x5678, 0x1234));
    transfer_and_ping(&a, &b, &da, &db, "geneve");

    // A's kernel flow for IPv4 from its host: the actions its trace
    // predicts, the option and the tunnel header included.
    let ip_from_host = format!(
        "in_port=1,ip,dl_src=02:00:00:81:00:01,dl_dst=02:00:00:81:00:02,\
         nw_src={},nw_dst={},nw_ttl=64",
        a.host.addr, b.host.addr
    );
    let predicted = traced_actions(&da, &ip_from_host);
    // A Geneve port without `key` sends no VNI (OVS: no KEY flag).
    assert_eq!(
        predicted,
        "set(tunnel(dst=192.168.81.2,ttl=64,tp_dst=6081,\
         geneve({class=0xffff,type=0,len=4,0x1234}),flags(df))),6081"
    );
    let sent = flows_with(&a, "in_port(1)", "set(tunnel(");
    assert!(
        sent.iter()
            .any(|f| f.flow.contains("eth_type(0x0800)") && f.actions == predicted),
        "A's kernel has no IPv4 flow with the predicted actions {predicted}:\n{}",
        a.ns.dpctl_flows(&a.dp)
    );
    // B's kernel flow for what came through the tunnel: the tunnel key
    // from A, A's option matched, out to B's host as B's trace says.
    let received = flows_with(&b, "in_port(6081)", "");
    assert!(
        received
            .iter()
            .any(|f| f.flow.contains("src=192.168.81.1,dst=192.168.81.2,")
                && f.flow.contains("geneve({class=0xffff,type=0,len=4,0x1234")
                && f.actions == "1"),
        "B's kernel has no flow from A's tunnel with A's option:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    let b_trace = traced_actions(
        &db,
        "in_port=10,tun_src=192.168.81.1,tun_dst=192.168.81.2,tun_metadata0=0x1234,ip",
    );
    assert_eq!(b_trace, "1");
    // The daemon reads the kernel's flows, Geneve masks included (a flow
    // it could not read would be deleted).
    let ours = db.ctl(Ctl::DumpDpFlows, "");
    assert!(
        ours.contains("geneve({class=0xffff,type=0,len=4,0x1234"),
        "{ours}\n{}",
        db.diagnosis()
    );

    // A wrong option is not taken: B now wants another value.
    db.ctl(Ctl::ReplaceFlows, &geneve(0x5678, 0x9999));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong option got through"
    );

    da.ctl(Ctl::ReplaceFlows, VXLAN);
    db.ctl(Ctl::ReplaceFlows, VXLAN);
    da.ctl(Ctl::Revalidate, "");
    db.ctl(Ctl::Revalidate, "");
    transfer_and_ping(&a, &b, &da, &db, "vxlan");
    let predicted = traced_actions(&da, &ip_from_host);
    assert_eq!(
        predicted,
        "set(tunnel(tun_id=0x64,dst=192.168.81.2,ttl=64,tp_dst=4789,flags(df|key))),4789"
    );
    assert!(
        flows_with(&a, "in_port(1)", "")
            .iter()
            .any(|f| f.flow.contains("eth_type(0x0800)") && f.actions == predicted),
        "A's kernel has no IPv4 flow with the predicted actions {predicted}:\n{}",
        a.ns.dpctl_flows(&a.dp)
    );
    assert!(
        flows_with(&b, "in_port(4789)", "1").iter().any(|f| f
            .flow
            .contains("tunnel(tun_id=0x64,src=192.168.81.1,dst=192.168.81.2,")),
        "B's kernel has no flow from A's VXLAN with VNI 100:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );

    // VXLAN with exts=gbp: each side sends Group Policy id 100 and takes
    // only 100; the kernel's vports carry it (OVS_VXLAN_EXT_GBP).
    let gbp = |theirs: u16| {
        format!(
            "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,\
             set_field:100->tun_gbp_id,output:12\n\
             table=0,priority=10,in_port=12,tun_id=0x64,tun_gbp_id={theirs},actions=output:1\n"
        )
    };
    da.ctl(Ctl::ReplaceFlows, &gbp(100));
    db.ctl(Ctl::ReplaceFlows, &gbp(100));
    da.ctl(Ctl::Revalidate, "");
    db.ctl(Ctl::Revalidate, "");
    transfer_and_ping(&a, &b, &da, &db, "vxlan gbp");
    let predicted = traced_actions(&da, &ip_from_host);
    assert!(predicted.contains("gbp(id=100"), "{predicted}");
    assert!(
        flows_with(&a, "in_port(1)", "")
            .iter()
            .any(|f| f.flow.contains("eth_type(0x0800)") && f.actions == predicted),
        "A's kernel has no IPv4 flow with the predicted actions {predicted}:\n{}",
        a.ns.dpctl_flows(&a.dp)
    );
    assert!(
        flows_with(&b, "in_port(4790)", "1")
            .iter()
            .any(|f| f.flow.contains("vxlan(gbp(id=100")),
        "B's kernel has no flow from A's VXLAN with Group Policy id 100:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    db.ctl(Ctl::ReplaceFlows, &gbp(300));
    db.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with the wrong Group Policy id got through"
    );

    // Options B's map does not know: A maps two more and sends one after
    // tun_metadata0. B's kernel flow keeps it in its key (data
    // wildcarded), as OVS keeps a kernel key's options raw, so the packets
    // after the first match in the kernel (a key without it never would:
    // the kernel matches the options' length exactly).
    da.ctl(
        Ctl::AddTlvMap,
        "{class=0x102,type=0x1,len=4}->tun_metadata1,{class=0x102,type=0x81,len=4}->tun_metadata2",
    );
    let also = |set: &str| {
        format!(
            "table=0,priority=10,in_port=1,actions=set_field:0x1234->tun_metadata0,{set},output:10\n\
             table=0,priority=10,in_port=10,actions=output:1\n"
        )
    };
    da.ctl(Ctl::ReplaceFlows, &also("set_field:0xabcd->tun_metadata1"));
    db.ctl(Ctl::ReplaceFlows, &geneve(0x5678, 0x1234));
    da.ctl(Ctl::Revalidate, "");
    db.ctl(Ctl::Revalidate, "");
    transfer_and_ping(&a, &b, &da, &db, "geneve with an option B does not know");
    assert!(
        flows_with(&b, "in_port(6081)", "1").iter().any(|f| f
            .flow
            .contains("{class=0x102,type=0x1,len=4}")
            && f.flow.contains("{class=0xffff,type=0,len=4,0x1234")
            && f.packets > 10),
        "B's kernel has no flow hit by A's packets with the option it does not know:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    // An unknown option with the critical bit: B drops such packets, in
    // the kernel, by a flow for that layout.
    da.ctl(Ctl::ReplaceFlows, &also("set_field:0x1->tun_metadata2"));
    da.ctl(Ctl::Revalidate, "");
    assert!(
        !ping_ok(&a.host, b.host.addr, 3),
        "a packet with an unknown critical option got through"
    );
    assert!(
        flows_with(&b, "{class=0x102,type=0x81,len=4}", "drop")
            .iter()
            .any(|f| f.flow.contains("in_port(6081)")),
        "B's kernel has no drop flow for the unknown critical option:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    drop((da, db));
}

#[test]
fn ping_and_tcp_through_kernel_geneve_and_vxlan_over_an_ipv6_underlay() {
    if !ovs_present() {
        return;
    }
    let (a, b) = topology(true);
    let da = a.daemon(&b, &geneve(0x1234, 0x5678));
    let db = b.daemon(&a, &geneve(0x5678, 0x1234));
    transfer_and_ping(&a, &b, &da, &db, "geneve over IPv6");

    let ip_from_host = format!(
        "in_port=1,ip,dl_src=02:00:00:82:00:01,dl_dst=02:00:00:82:00:02,\
         nw_src={},nw_dst={},nw_ttl=64",
        a.host.addr, b.host.addr
    );
    let predicted = traced_actions(&da, &ip_from_host);
    assert_eq!(
        predicted,
        "set(tunnel(ipv6_dst=fc00:81::2,ttl=64,tp_dst=6081,\
         geneve({class=0xffff,type=0,len=4,0x1234}),flags(df))),6081"
    );
    assert!(
        flows_with(&a, "in_port(1)", "set(tunnel(")
            .iter()
            .any(|f| f.flow.contains("eth_type(0x0800)") && f.actions == predicted),
        "A's kernel has no IPv4 flow with the predicted actions {predicted}:\n{}",
        a.ns.dpctl_flows(&a.dp)
    );
    // B's kernel flow for what came through the tunnel: the IPv6 outer
    // addresses and A's option.
    assert!(
        flows_with(&b, "in_port(6081)", "").iter().any(|f| f
            .flow
            .contains("ipv6_src=fc00:81::1,ipv6_dst=fc00:81::2,")
            && f.flow.contains("geneve({class=0xffff,type=0,len=4,0x1234")
            && f.actions == "1"),
        "B's kernel has no flow from A's IPv6 tunnel with A's option:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    assert_eq!(
        traced_actions(
            &db,
            "in_port=10,tun_ipv6_src=fc00:81::1,tun_ipv6_dst=fc00:81::2,tun_metadata0=0x1234,ip",
        ),
        "1"
    );
    let ours = db.ctl(Ctl::DumpDpFlows, "");
    assert!(ours.contains("ipv6_src=fc00:81::1"), "{ours}");
    // The Geneve device is made over rtnetlink as OVS makes it: it takes
    // IPv6 datagrams without a UDP checksum, which is what the tunnel
    // sends (the module's own Geneve vport refuses them all).
    let dev = b.ns.ip(&["-d", "link", "show", "genev_sys_6081"]);
    assert!(
        dev.contains("external") && dev.contains("udp6zerocsumrx"),
        "{dev}"
    );

    da.ctl(Ctl::ReplaceFlows, VXLAN);
    db.ctl(Ctl::ReplaceFlows, VXLAN);
    da.ctl(Ctl::Revalidate, "");
    db.ctl(Ctl::Revalidate, "");
    transfer_and_ping(&a, &b, &da, &db, "vxlan over IPv6");
    let predicted = traced_actions(&da, &ip_from_host);
    assert_eq!(
        predicted,
        "set(tunnel(tun_id=0x64,ipv6_dst=fc00:81::2,ttl=64,tp_dst=4789,flags(df|key))),4789"
    );
    assert!(
        flows_with(&b, "in_port(4789)", "1").iter().any(|f| f
            .flow
            .contains("tunnel(tun_id=0x64,ipv6_src=fc00:81::1,ipv6_dst=fc00:81::2,")),
        "B's kernel has no flow from A's IPv6 VXLAN with VNI 100:\n{}",
        b.ns.dpctl_flows(&b.dp)
    );
    // A daemon that exits deleting its datapath (`on_exit = "delete"`)
    // deletes the tunnel devices made for it too.
    let (mut da, mut db) = (da, db);
    da.stop();
    db.stop();
    for dev in ["genev_sys_6081", "vxlan_sys_4789", "vxlan_sys_4790"] {
        assert!(!a.ns.has_link(dev), "{dev} left behind");
    }
}
