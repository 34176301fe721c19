//! Groups, meters and MPLS with real traffic through `upcalld run` on
//! Linux's openvswitch module (the scenarios of tests/group_traffic.rs,
//! tests/meter_traffic.rs and tests/mpls_traffic.rs on the kernel): a
//! select group spreading TCP connections over two backends by 5-tuple
//! (the kernel hashes, recirculates, the second pass matches `dp_hash`);
//! a fast-failover group moving to its second bucket when the watched
//! port's link goes down and back when it comes up; kernel meters (the
//! `ovs_meter` family) limiting a UDP flood to their rates, counted in
//! `meter-stats`; a ping across a wire that carries only MPLS, pushed on
//! one side and popped on the other. Run inside the kernel VM
//! (`.ci/kernel-vm.sh`, or `cargo test`, whose tests/kernel_vm.rs runs
//! that); each test skips where the `ovs_datapath` family is absent,
//! unless `OVS_KERNEL_REQUIRED=1`.

mod common;
mod kernel_common;

use std::net::{Ipv4Addr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{answer_until, field, ping_ok, who_answers};
use kernel_common::daemon::*;
use kernel_common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// The daemon child process (see `kernel_common::daemon`).
#[test]
#[ignore = "the daemon process of the kernel action tests, started by them"]
fn daemon_child() {
    daemon_child_main();
}

const BACKEND_PORT: u16 = 8080;

/// Host A and two backends sharing one address and MAC, for test `tag`
/// in subnet `10.80.<subnet>.0/24`.
fn a_and_two_backends(tag: &str, subnet: u8) -> (Host, Host, Host, Ipv4Addr) {
    let backend = Ipv4Addr::new(10, 80, subnet, 2);
    let a = up_host(
        &format!("uka-{tag}-a"),
        &format!("uka{tag}a"),
        Ipv4Addr::new(10, 80, subnet, 1),
        [2, 0, 0, 0x80, subnet, 1],
    );
    let mac = [2, 0, 0, 0x80, subnet, 2];
    let b1 = up_host(
        &format!("uka-{tag}-b1"),
        &format!("uka{tag}b1"),
        backend,
        mac,
    );
    let b2 = up_host(
        &format!("uka-{tag}-b2"),
        &format!("uka{tag}b2"),
        backend,
        mac,
    );
    (a, b1, b2, backend)
}

/// ARP from A goes to both backends, so that each knows A; what comes
/// back goes to A.
const TO_BACKENDS: &str = "\
table=0,priority=100,in_port=1,arp,actions=output:2,output:3
table=0,priority=90,in_port=2,actions=output:1
table=0,priority=90,in_port=3,actions=output:1
table=0,priority=90,in_port=1,actions=group:1
";

/// Backends 1 and 2 answering on `b1` and `b2` until the returned flag
/// is set.
fn serve(
    b1: &Host,
    b2: &Host,
    addr: Ipv4Addr,
) -> (
    Arc<AtomicBool>,
    Vec<std::thread::JoinHandle<std::io::Result<()>>>,
) {
    let stop = Arc::new(AtomicBool::new(false));
    let servers = [(1, b1), (2, b2)]
        .into_iter()
        .map(|(name, h)| {
            let stop = stop.clone();
            h.spawn(move || answer_until(name, addr, BACKEND_PORT, stop))
                .unwrap()
        })
        .collect();
    (stop, servers)
}

#[test]
fn a_select_group_spreads_tcp_connections_over_two_backends() {
    if !ovs_present() {
        return;
    }
    let (a, b1, b2, backend) = a_and_two_backends("gs", 1);
    let dp = "kags";
    let ports = [a.port.as_str(), &b1.port, &b2.port];
    let d = daemon_on_ports("kagroupsel", dp, &ports, &[], "");
    d.ctl(
        Ctl::AddGroups,
        "group_id=1,type=select,bucket=output:2,bucket=output:3\n",
    );
    d.ctl(Ctl::AddFlows, TO_BACKENDS);
    let (stop, servers) = serve(&b1, &b2, backend);
    // A learns the backends' MAC (and the emulated VM warms up).
    assert!(
        ping_ok(&a, backend, 10),
        "A reaches a backend\n{}",
        d.diagnosis()
    );
    let answers: Vec<Option<u8>> = (0..16)
        .map(|_| who_answers(&a, backend, BACKEND_PORT))
        .collect();
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap().unwrap();
    }
    assert!(
        answers.iter().all(Option::is_some),
        "every connection stays on one backend and completes: {answers:?}\n{}",
        d.diagnosis()
    );
    let to_1 = answers.iter().filter(|&&w| w == Some(1)).count();
    assert!(
        to_1 >= 2 && answers.len() - to_1 >= 2,
        "both backends get connections: {answers:?}"
    );
    // The kernel hashes the 5-tuple and recirculates; the second pass
    // picks the bucket by dp_hash.
    let flows = dpctl_dump(dp);
    assert!(
        flows
            .iter()
            .any(|f| f.actions.starts_with("hash(l4(0)),recirc(")),
        "the kernel hashes and recirculates:\n{}",
        dpctl_flows(dp).join("\n")
    );
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains("dp_hash(") && f.actions == "3" && f.packets > 0),
        "a second pass matches dp_hash:\n{}",
        dpctl_flows(dp).join("\n")
    );
}

#[test]
fn a_fast_failover_group_follows_its_watched_ports_link() {
    if !ovs_present() {
        return;
    }
    let (a, b1, b2, backend) = a_and_two_backends("ff", 2);
    let dp = "kaff";
    let ports = [a.port.as_str(), &b1.port, &b2.port];
    let d = daemon_on_ports("kafailover", dp, &ports, &[], "");
    d.ctl(
        Ctl::AddGroups,
        "group_id=1,type=fast_failover,\
         bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3\n",
    );
    d.ctl(Ctl::AddFlows, TO_BACKENDS);
    let (stop, servers) = serve(&b1, &b2, backend);
    let wait_for = |want: u8, what: &str| {
        let start = Instant::now();
        let mut seen = Vec::new();
        while start.elapsed() < Duration::from_secs(60) {
            let got = who_answers(&a, backend, BACKEND_PORT);
            if got == Some(want) {
                return;
            }
            seen.push(got);
        }
        panic!(
            "{what}: backend {want} never answered (answers {seen:?})\n{}",
            d.diagnosis()
        );
    };
    wait_for(1, "both links up: the first bucket");
    assert_eq!(who_answers(&a, backend, BACKEND_PORT), Some(1));
    // Backend 1's link goes down: port 2 loses its carrier.
    let link = |h: &Host, state: &str| {
        run("/sbin/ip", &["-n", &h.netns, "link", "set", "eth0", state]);
    };
    link(&b1, "down");
    wait_for(2, "backend 1's link down: the second bucket");
    assert_eq!(who_answers(&a, backend, BACKEND_PORT), Some(2));
    assert!(
        dpctl_dump(dp)
            .iter()
            .any(|f| f.flow.contains("in_port(1)") && f.actions == "3"),
        "A's flows go to port 3:\n{}",
        dpctl_flows(dp).join("\n")
    );
    link(&b1, "up");
    wait_for(1, "backend 1's link up again: the first bucket");
    stop.store(true, Ordering::Relaxed);
    for s in servers {
        s.join().unwrap().unwrap();
    }
}

/// UDP payload making a 1000-byte frame (14 + 20 + 8 + 958).
const PAYLOAD: usize = 958;

/// Counts datagrams on `port` until none came for a second after `until`.
fn count(addr: Ipv4Addr, port: u16, until: Instant) -> usize {
    let s = UdpSocket::bind((addr, port)).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut buf = [0u8; 2048];
    let mut n = 0;
    let mut last = Instant::now();
    loop {
        match s.recv(&mut buf) {
            Ok(_) => {
                n += 1;
                last = Instant::now();
            }
            Err(_) if Instant::now() > until && last.elapsed() > Duration::from_secs(1) => {
                return n
            }
            Err(_) => {}
        }
    }
}

#[test]
fn kernel_meters_limit_a_udp_flood_to_their_rates() {
    if !ovs_present() {
        return;
    }
    let a = up_host(
        "uka-mt-a",
        "ukamta",
        Ipv4Addr::new(10, 80, 3, 1),
        [2, 0, 0, 0x80, 3, 1],
    );
    let b = up_host(
        "uka-mt-b",
        "ukamtb",
        Ipv4Addr::new(10, 80, 3, 2),
        [2, 0, 0, 0x80, 3, 2],
    );
    let dp = "kamt";
    let d = daemon_on_ports(
        "kameter",
        dp,
        &[&a.port, &b.port],
        &[],
        "table=0,priority=100,arp,actions=NORMAL\n\
         table=0,priority=90,in_port=2,actions=output:1\n\
         table=0,priority=80,in_port=1,actions=output:2\n",
    );
    // The kernel's meters take one band each (OVS's OFPMMFC_OUT_OF_BANDS).
    let two_bands = upcalld::control::call(
        &d.socket,
        Ctl::AddMeters,
        "meter=9 pktps bands=type=drop rate=10 type=drop rate=20",
    )
    .unwrap()
    .unwrap_err();
    assert!(two_bands.contains("OFPMMFC_OUT_OF_BANDS"), "{two_bands}");
    // 200 packets/s with a burst of 20; 800 kbit/s (100 frames of 1000
    // bytes a second) with a burst of 80 kbit.
    d.ctl(
        Ctl::AddMeters,
        "meter=1 pktps burst stats bands=type=drop rate=200 burst_size=20\n\
         meter=2 kbps burst stats bands=type=drop rate=800 burst_size=80\n",
    );
    d.ctl(
        Ctl::AddFlows,
        "table=0,priority=100,in_port=1,udp,tp_dst=5001,actions=meter:1,output:2\n\
         table=0,priority=100,in_port=1,udp,tp_dst=5002,actions=meter:2,output:2\n",
    );
    assert!(ping_ok(&a, b.addr, 10), "A reaches B\n{}", d.diagnosis());

    let flood = Duration::from_secs(4);
    // Offered to each port: three times the faster meter.
    let offered = 600.0;
    let until = Instant::now() + flood + Duration::from_millis(500);
    let baddr = b.addr;
    let r1 = b.spawn(move || count(baddr, 5001, until)).unwrap();
    let r2 = b.spawn(move || count(baddr, 5002, until)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let (sent, took) = a
        .run(move || {
            let s = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
            let payload = vec![0x5a; PAYLOAD];
            let start = Instant::now();
            let mut sent = 0u64;
            while start.elapsed() < flood {
                let due = (start.elapsed().as_secs_f64() * offered) as u64;
                while sent < due {
                    for port in [5001, 5002] {
                        let _ = s.send_to(&payload, (baddr, port));
                    }
                    sent += 1;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            (sent, start.elapsed())
        })
        .unwrap();
    let got = (r1.join().unwrap().unwrap(), r2.join().unwrap().unwrap());
    let secs = took.as_secs_f64();
    eprintln!("sent {sent} to each port in {secs:.2} s; received {got:?}");
    assert!(
        sent as f64 >= 2.0 * 200.0 * secs,
        "the flood must exceed the meters' rates: {sent} in {secs:.2} s"
    );
    // What the kernel's buckets let through: the burst, then the rate.
    for (what, got, expected) in [
        ("pktps", got.0, 20.0 + 200.0 * secs),
        ("kbps", got.1, 10.0 + 100.0 * secs),
    ] {
        let off = (got as f64 - expected).abs() / expected;
        assert!(
            off <= 0.10,
            "{what} meter: {got} received, {expected:.0} expected (off by {:.1} %)\n{}\n{}",
            off * 100.0,
            d.ctl(Ctl::MeterStats, ""),
            d.diagnosis()
        );
    }

    // The kernel's flows run the datapath meters OVS would number 0 and 1.
    let flows = dpctl_dump(dp);
    for (meter, tp_dst) in [(0, 5001), (1, 5002)] {
        assert!(
            flows
                .iter()
                .any(|f| f.flow.contains(&format!("dst={tp_dst}"))
                    && f.actions == format!("meter({meter}),2")),
            "meter({meter}) for port {tp_dst}:\n{}",
            dpctl_flows(dp).join("\n")
        );
    }
    // meter-stats are the kernel's counts: what came in, what the band
    // dropped; what passed is what B received.
    let stats = d.ctl(Ctl::MeterStats, "meter=1");
    let first = stats.lines().next().unwrap_or_default();
    assert!(first.starts_with("meter:1 flow_count:1 "), "{stats}");
    let packets_in = field(first, "packet_in_count").unwrap();
    let band = stats.lines().nth(1).unwrap_or_default();
    let dropped = field(band, "packet_count").unwrap();
    assert_eq!(
        packets_in - dropped,
        got.0 as u64,
        "in {packets_in} - dropped {dropped} = received: {stats}"
    );
    assert!(dropped > packets_in / 3, "{stats}");

    // A deleted meter is gone from the kernel: its stats are zero and its
    // rules gone.
    let out = d.ctl(Ctl::DelMeters, "meter=1");
    assert!(out.contains("(1 meters, 1 rules"), "{out}");
    assert!(d.ctl(Ctl::DumpMeters, "meter=1").is_empty());
    assert!(!d.ctl(Ctl::DumpFlows, "").contains("meter:1"));
}

/// A veth pair in the VM's own namespace, both ends up.
struct Wire(&'static str);

impl Wire {
    fn create(a: &'static str, b: &str) -> Wire {
        let _ = std::process::Command::new("/sbin/ip")
            .args(["link", "del", a])
            .output();
        run(
            "/sbin/ip",
            &["link", "add", a, "type", "veth", "peer", "name", b],
        );
        run("/sbin/ip", &["link", "set", a, "up"]);
        run("/sbin/ip", &["link", "set", b, "up"]);
        Wire(a)
    }
}

impl Drop for Wire {
    fn drop(&mut self) {
        let _ = std::process::Command::new("/sbin/ip")
            .args(["link", "del", self.0])
            .output();
    }
}

/// As tests/mpls_traffic.rs: A's packets get label 100 on the wire, B's
/// 200; B's pop is followed by `dec_ttl`, so the kernel recirculates the
/// popped packet and the slow path resumes on its IP header.
const MPLS_RULES: &str = "\
table=0,priority=100,in_port=1,arp,actions=output:2
table=0,priority=100,in_port=2,arp,actions=output:1
table=0,priority=100,in_port=1,ip,actions=push_mpls:0x8847,set_field:100->mpls_label,output:3
table=0,priority=100,in_port=2,ip,actions=push_mpls:0x8847,set_mpls_label(200),output:4
table=0,priority=100,in_port=4,mpls,mpls_label=100,actions=pop_mpls:0x0800,output:2
table=0,priority=100,in_port=3,mpls,mpls_label=200,actions=pop_mpls:0x0800,dec_ttl,output:1
";

#[test]
fn a_ping_crosses_an_mpls_wire_pushed_on_one_side_and_popped_on_the_other() {
    if !ovs_present() {
        return;
    }
    let a = up_host(
        "uka-mp-a",
        "ukampa",
        Ipv4Addr::new(10, 80, 4, 1),
        [2, 0, 0, 0x80, 4, 1],
    );
    let b = up_host(
        "uka-mp-b",
        "ukampb",
        Ipv4Addr::new(10, 80, 4, 2),
        [2, 0, 0, 0x80, 4, 2],
    );
    let _wire = Wire::create("ukampw3", "ukampw4");
    let dp = "kamp";
    let d = daemon_on_ports(
        "kampls",
        dp,
        &[&a.port, &b.port, "ukampw3", "ukampw4"],
        &[],
        MPLS_RULES,
    );
    assert!(
        ping_ok(&a, b.addr, 10),
        "A pings B across the MPLS wire\n{}",
        d.diagnosis()
    );
    for seq in 0..3 {
        assert!(ping_ok(&a, b.addr, 3), "ping {seq}\n{}", d.diagnosis());
    }
    let flows = dpctl_dump(dp);
    let all = || dpctl_flows(dp).join("\n");
    let has = |what: &str| {
        flows
            .iter()
            .any(|f| f.actions.contains(what) && f.packets > 0)
    };
    assert!(
        has("push_mpls(label=100,tc=0,ttl=64,bos=1,eth_type=0x8847),3"),
        "A's packets get label 100:\n{}",
        all()
    );
    assert!(
        has("push_mpls(label=200,tc=0,ttl=64,bos=1,eth_type=0x8847),4"),
        "B's get label 200:\n{}",
        all()
    );
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains("mpls(label=100") && f.actions == "pop_mpls(eth_type=0x800),2"),
        "label 100 comes off the wire and is popped:\n{}",
        all()
    );
    let resumed = flows
        .iter()
        .find(|f| f.actions.starts_with("pop_mpls(eth_type=0x800),recirc("))
        .unwrap_or_else(|| panic!("the pop before dec_ttl recirculates:\n{}", all()));
    let id = resumed
        .actions
        .split("recirc(")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .unwrap()
        .to_string();
    assert!(
        flows
            .iter()
            .any(|f| f.flow.contains(&format!("recirc_id({id})"))
                && f.flow.contains("eth_type(0x0800)")
                && f.actions.contains("ttl=63")
                && f.actions.ends_with(",1")),
        "the resumed pass sees IPv4 and decrements its TTL:\n{}",
        all()
    );
}
