//! NORMAL with real traffic: hosts in network namespaces joined through
//! `upcalld run` on the userspace datapath, as a learning switch with two
//! access VLANs and a trunk.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// From the trunk host: sends ICMP echo requests to `dst` tagged `vid`
/// and returns the VLAN of the reply that came back (0: untagged), if
/// one did.
fn trunk_echo(t: &Host, vid: u16, dst_mac: [u8; 6], dst: [u8; 4], src: [u8; 4]) -> Option<u16> {
    use messages::flow::{Flow, FlowVlan, ETH_TYPE_IP, ETH_TYPE_VLAN_8021Q, VLAN_CFI};
    let mut request = Flow {
        dl_src: [2, 0, 0, 0x4e, 0, 5],
        dl_dst: dst_mac,
        dl_type: ETH_TYPE_IP,
        nw_src: u32::from_be_bytes(src),
        nw_dst: u32::from_be_bytes(dst),
        nw_proto: 1,
        nw_ttl: 64,
        tp_src: 8, // echo request
        ..Flow::default()
    };
    request.vlans[0] = FlowVlan {
        tpid: ETH_TYPE_VLAN_8021Q,
        tci: VLAN_CFI | vid,
    };
    let frame = messages::compose::flow_compose(&request);
    t.run(move || {
        let port = upcalld::dpif_netdev::PortIo::open_packet("eth0").expect("AF_PACKET on eth0");
        let mut buf = Vec::new();
        let mut scratch = vec![0; upcalld::dpif_netdev::MAX_FRAME];
        for _ in 0..3 {
            port.send(&frame).expect("sending a tagged frame");
            let until = std::time::Instant::now() + Duration::from_millis(700);
            while std::time::Instant::now() < until {
                if !port.recv(&mut buf, &mut scratch, true).expect("receiving") {
                    continue;
                }
                let f = messages::extract::flow_extract(&buf, &Flow::default());
                let reply = f.dl_type == ETH_TYPE_IP
                    && f.nw_proto == 1
                    && f.tp_src == 0
                    && f.nw_src == request.nw_dst
                    && f.nw_dst == request.nw_src;
                if reply {
                    let v = f.vlans[0];
                    return Some(if v.tci & VLAN_CFI != 0 {
                        v.tci & 0xfff
                    } else {
                        0
                    });
                }
            }
        }
        None
    })
    .expect("running in the trunk host's namespace")
}

fn host(name: &str, addr: [u8; 4], last: u8) -> Host {
    Host::create(
        &format!("nrm-{name}"),
        &format!("nrm{name}"),
        Ipv4Addr::from(addr),
        [2, 0, 0, 0x4e, 0, last],
    )
    .unwrap_or_else(|e| panic!("creating host {name}: {e}"))
}

/// Ports 1 and 2: access VLAN 10 (10.78.10.1, .2); port 3: access VLAN
/// 20 (10.78.20.1); port 4: access VLAN 20 but addressed in VLAN 10's
/// subnet (10.78.10.9), so that only the VLANs keep it apart; port 5: a
/// trunk of VLANs 10 and 20, whose host has eth0.10 (10.78.10.5) and
/// eth0.20 (10.78.20.5).
#[test]
fn access_vlans_are_apart_and_the_trunk_carries_both_tagged() {
    require_root();
    let a1 = host("a1", [10, 78, 10, 1], 1);
    let a2 = host("a2", [10, 78, 10, 2], 2);
    let b1 = host("b1", [10, 78, 20, 1], 3);
    let b2 = host("b2", [10, 78, 10, 9], 4);
    let t = host("t", [10, 78, 99, 5], 5);
    // The trunk host's frames are tagged by hand (raw frames, as this
    // kernel may lack VLAN devices); the access hosts know its MAC.
    for (h, addr) in [(&a1, "10.78.10.5"), (&b1, "10.78.20.5")] {
        ip(&[
            "-n",
            &h.netns,
            "neigh",
            "add",
            addr,
            "lladdr",
            "02:00:00:4e:00:05",
            "dev",
            "eth0",
        ]);
    }
    let port = |h: &Host, n: u32, vlan: &str| {
        format!(
            "[[port]]\nname = \"{}\"\ntype = \"system\"\nnumber = {n}\n{vlan}\n",
            h.port
        )
    };
    let ports = [
        port(&a1, 1, "tag = 10"),
        port(&a2, 2, "tag = 10"),
        port(&b1, 3, "tag = 20"),
        port(&b2, 4, "tag = 20"),
        port(&t, 5, "trunks = [10, 20]"),
    ]
    .concat();
    let d = Daemon::start_with_ports("nrm", &ports, "table=0,priority=0,actions=NORMAL\n", "");

    // Same VLAN: both ways.
    assert!(
        ping_ok(&a1, a2.addr, 5),
        "a1 -> a2 (VLAN 10); log:\n{}",
        d.log()
    );
    assert!(ping_ok(&a2, a1.addr, 3), "a2 -> a1 (VLAN 10)");
    // Another VLAN: b2 sits in VLAN 10's subnet but in VLAN 20.
    assert!(!ping_ok(&a1, b2.addr, 3), "a1 reached b2 across VLANs");
    assert!(!ping_ok(&b2, a2.addr, 3), "b2 reached a2 across VLANs");
    // The trunk: an echo request tagged 10 reaches a1 (untagged there)
    // and its reply comes back tagged 10; the same in VLAN 20 with b1.
    let a1_mac = [2, 0, 0, 0x4e, 0, 1];
    let b1_mac = [2, 0, 0, 0x4e, 0, 3];
    assert_eq!(
        trunk_echo(&t, 10, a1_mac, [10, 78, 10, 1], [10, 78, 10, 5]),
        Some(10),
        "trunk <-> a1 in VLAN 10; log:\n{}",
        d.log()
    );
    assert_eq!(
        trunk_echo(&t, 20, b1_mac, [10, 78, 20, 1], [10, 78, 20, 5]),
        Some(20),
        "trunk <-> b1 in VLAN 20"
    );
    // Tagged 20 towards a1 (VLAN 10): never gets there.
    assert_eq!(
        trunk_echo(&t, 20, a1_mac, [10, 78, 10, 1], [10, 78, 10, 5]),
        None,
        "a VLAN 20 frame reached a1"
    );

    // The table learned each host in its VLAN, the trunk host in both.
    let fdb = d.ctl(Ctl::FdbShow, "");
    assert!(
        fdb.starts_with(" port  VLAN  MAC                Age\n"),
        "{fdb}"
    );
    let has = |port: u32, vlan: u16, last: u8| {
        fdb.lines().any(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            w.len() == 4
                && w[0] == port.to_string()
                && w[1] == vlan.to_string()
                && w[2] == format!("02:00:00:4e:00:{last:02x}")
        })
    };
    for (port, vlan, last) in [(1, 10, 1), (2, 10, 2), (4, 20, 4), (5, 10, 5), (5, 20, 5)] {
        assert!(
            has(port, vlan, last),
            "port {port} VLAN {vlan} host {last} not learned:\n{fdb}"
        );
    }
    assert!(!has(4, 10, 4), "b2 learned in VLAN 10:\n{fdb}");

    // The trunk's megaflows carry tags: in from it, tagged; out to it,
    // pushed; out to an access port, popped.
    let flows = d.ctl(Ctl::DumpDpFlows, "");
    let tagged_in = |vid: u16| {
        flows.lines().any(|l| {
            l.contains("in_port(5)")
                && l.contains(&format!("vlan(vid={vid}"))
                && l.contains("pop_vlan")
        })
    };
    assert!(
        tagged_in(10) && tagged_in(20),
        "no tagged megaflows from the trunk:\n{flows}"
    );
    assert!(
        flows.lines().any(|l| l.contains("in_port(1)")
            && l.contains("push_vlan(vid=10")
            && l.contains(",5")),
        "nothing pushed VLAN 10 to the trunk:\n{flows}"
    );
    // Megaflows match both MACs (OVS's NORMAL un-wildcards them).
    assert!(
        flows
            .lines()
            .filter(|l| l.contains("in_port(1)") && !l.contains("eth_type(0x0806)"))
            .all(|l| l.contains("eth(src=02:00:00:4e:00:01,dst=")),
        "{flows}"
    );

    let stats = d.ctl(Ctl::FdbStats, "");
    assert!(
        stats.contains("Total number of learned MAC entries     : ")
            && !stats.contains("learned MAC entries     : 0\n"),
        "{stats}"
    );

    // Flushing forgets every MAC; traffic learns them again.
    assert_eq!(d.ctl(Ctl::FdbFlush, ""), "table successfully flushed\n");
    let empty = d.ctl(Ctl::FdbShow, "");
    assert_eq!(empty.lines().count(), 1, "{empty}");
    assert!(ping_ok(&a2, a1.addr, 5), "a2 -> a1 after the flush");
    d.wait_until("a1 learned again", Duration::from_secs(5), || {
        d.ctl(Ctl::FdbShow, "").contains("02:00:00:4e:00:01")
    });
}
