//! Two hosts joined by an overlay on Linux's openvswitch module: two
//! upcalld daemons on the kernel datapath, each in its own network
//! namespace (its datapath and tunnel vports live there) with its own
//! underlay address, joined by a veth underlay; a host behind each. Ping
//! and a 1 MiB TCP transfer cross a Geneve tunnel whose `tun_metadata0`
//! option one side sets and the other matches, and a VXLAN tunnel with
//! `key=flow`; `ovs-dpctl dump-flows` shows the tunnel keys and the
//! `set(tunnel(...))` actions the daemons' traces predict. Run inside the
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

    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.0];
        all.extend_from_slice(args);
        run("/sbin/ip", &all);
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

/// One side: a daemon's namespace (underlay `192.168.81.N`), its datapath
/// `ukt-tnl-N`, and a host (`10.81.0.N`) whose port is moved into the
/// daemon's namespace.
struct Side {
    n: u8,
    ns: Netns,
    host: Host,
    dp: String,
}

fn side(n: u8) -> Side {
    let ns = Netns::new(&format!("ukt-tnl-d{n}"));
    let host = Host::create(
        &format!("ukt-tnl-h{n}"),
        &format!("uktnlh{n}"),
        Ipv4Addr::new(10, 81, 0, n),
        [2, 0, 0, 0x81, 0, n],
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
        ns,
        host,
        dp: format!("ukt-tnl-{n}"),
    }
}

/// Both sides and the underlay between them.
fn topology() -> (Side, Side) {
    let (a, b) = (side(1), side(2));
    run(
        "/sbin/ip",
        &[
            "link", "add", "uktnlu1", "netns", &a.ns.0, "type", "veth", "peer", "name", "uktnlu2",
            "netns", &b.ns.0,
        ],
    );
    for (s, dev) in [(&a, "uktnlu1"), (&b, "uktnlu2")] {
        s.ns.ip(&["addr", "add", &s.underlay_cidr(), "dev", dev]);
        s.ns.ip(&["link", "set", dev, "up"]);
    }
    (a, b)
}

impl Side {
    fn underlay(&self) -> String {
        format!("192.168.81.{}", self.n)
    }

    fn underlay_cidr(&self) -> String {
        format!("{}/24", self.underlay())
    }

    /// The daemon of this side: the host on port 1, a Geneve port 10 and
    /// a VXLAN port 11 (`key=flow`) to `remote`.
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
             [[port]]\nname = \"vx0\"\ntype = \"vxlan\"\nnumber = 11\nremote_ip = \"{remote}\"\nkey = \"flow\"\n",
            port = self.host.port,
            remote = remote.underlay(),
        ));
        Daemon::start_in(Some(&self.ns.0), &format!("ktnl{}", self.n), &config, rules)
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
    let (a, b) = topology();
    // Geneve: each side sends its own tun_metadata0 and takes only the
    // other's.
    let geneve = |mine: u32, theirs: u32| {
        format!(
            "table=0,priority=10,in_port=1,actions=set_field:{mine:#x}->tun_metadata0,output:10\n\
             table=0,priority=10,in_port=10,tun_metadata0={theirs:#x},actions=output:1\n"
        )
    };
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

    // VXLAN with key=flow: the VNI comes from set_field on tun_id, and
    // each side takes only VNI 100.
    let vxlan = "table=0,priority=10,in_port=1,actions=set_field:0x64->tun_id,output:11\n\
                 table=0,priority=10,in_port=11,tun_id=0x64,actions=output:1\n";
    da.ctl(Ctl::ReplaceFlows, vxlan);
    db.ctl(Ctl::ReplaceFlows, vxlan);
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
    drop((da, db));
}
