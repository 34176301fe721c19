//! Meters with real traffic through the daemon on the embedded datapath:
//! host A floods host B with UDP to two ports, each through a meter (one
//! in packets/s, one in kbit/s), at several times the meters' rates; B
//! must receive each at its meter's rate (plus its burst) within 10 %,
//! and `meter-stats` must count what came in and what the band dropped.

mod common;

use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};

use common::*;
use upcalld::control::Command as Ctl;

const RULES: &str = "\
table=0,priority=100,arp,actions=NORMAL
table=0,priority=90,in_port=2,actions=output:1
table=0,priority=80,in_port=1,actions=output:2
";

/// 1000 packets/s, a burst of 100.
const PKTPS: &str = "meter=1 pktps burst stats bands=type=drop rate=1000 burst_size=100";
/// 4000 kbit/s (500 frames of 1000 bytes a second), a burst of 400 kbit.
const KBPS: &str = "meter=2 kbps burst stats bands=type=drop rate=4000 burst_size=400";

/// UDP payload making a 1000-byte frame (14 + 20 + 8 + 958).
const PAYLOAD: usize = 958;
const FLOOD: Duration = Duration::from_secs(3);
/// Offered to each port, packets/s: five times the faster meter.
const OFFERED: f64 = 5000.0;

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
fn meters_limit_a_udp_flood_to_their_rates() {
    require_root();
    let (a, b) = two_hosts("mt");
    let d = Daemon::start("mt", &[(&a.port, 1), (&b.port, 2)], RULES, "");
    // A rule may use only a meter that exists.
    let refused = d.ctl_err(
        Ctl::AddFlows,
        "table=0,priority=100,in_port=1,udp,tp_dst=5001,actions=meter:1,output:2",
    );
    assert!(refused.contains("meter 1 does not exist"), "{refused}");
    d.ctl(Ctl::AddMeters, &format!("{PKTPS}\n{KBPS}\n"));
    let dup = d.ctl_err(Ctl::AddMeters, PKTPS);
    assert!(dup.contains("OFPMMFC_METER_EXISTS"), "{dup}");
    d.ctl(
        Ctl::AddFlows,
        "table=0,priority=100,in_port=1,udp,tp_dst=5001,actions=meter:1,output:2\n\
         table=0,priority=100,in_port=1,udp,tp_dst=5002,actions=meter:2,output:2\n",
    );
    assert_eq!(
        d.ctl(Ctl::DumpMeters, ""),
        "meter=1 pktps burst stats bands=\ntype=drop rate=1000 burst_size=100\n\n\
         meter=2 kbps burst stats bands=\ntype=drop rate=4000 burst_size=400\n"
    );
    assert!(ping_ok(&a, b.addr, 5), "A reaches B\n{}", d.log());

    let until = Instant::now() + FLOOD + Duration::from_millis(500);
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
            while start.elapsed() < FLOOD {
                // Catch up to the offered rate, then yield a little.
                let due = (start.elapsed().as_secs_f64() * OFFERED) as u64;
                while sent < due {
                    for port in [5001, 5002] {
                        let _ = s.send_to(&payload, (baddr, port));
                    }
                    sent += 1;
                }
                std::thread::sleep(Duration::from_micros(500));
            }
            (sent, start.elapsed())
        })
        .unwrap();
    let got = (r1.join().unwrap().unwrap(), r2.join().unwrap().unwrap());
    let secs = took.as_secs_f64();
    eprintln!("sent {sent} to each port in {secs:.2} s; received {got:?}");
    assert!(
        sent as f64 >= 3.0 * 1000.0 * secs,
        "the flood must exceed the meters' rates: {sent} in {secs:.2} s"
    );
    // What the buckets let through: the burst, then the rate.
    for (what, got, expected) in [
        ("pktps", got.0, 100.0 + 1000.0 * secs),
        ("kbps", got.1, 50.0 + 500.0 * secs),
    ] {
        let off = (got as f64 - expected).abs() / expected;
        assert!(
            off <= 0.10,
            "{what} meter: {got} received, {expected:.0} expected (off by {:.1} %)\n{}",
            off * 100.0,
            d.ctl(Ctl::MeterStats, "")
        );
    }

    // The meters counted packets in and the band's drops.
    let stats = d.ctl(Ctl::MeterStats, "meter=1");
    let first = stats.lines().next().unwrap_or_default();
    assert!(first.starts_with("meter:1 flow_count:1 "), "{stats}");
    let packets_in = field(first, "packet_in_count").unwrap();
    let band = stats.lines().nth(1).unwrap_or_default();
    let dropped = field(band, "packet_count").unwrap();
    assert!(
        packets_in >= got.0 as u64 + dropped && dropped > packets_in / 2,
        "in {packets_in}, dropped {dropped}, through {}: {stats}",
        got.0
    );
    let flows = d.ctl(Ctl::DumpDpFlows, "");
    assert!(flows.contains("actions:meter(0),2"), "{flows}");
    assert!(flows.contains("actions:meter(1),2"), "{flows}");

    // Deleting a meter deletes the rules that use it.
    let out = d.ctl(Ctl::DelMeters, "meter=1");
    assert!(out.contains("(1 meters, 1 rules"), "{out}");
    let rules = d.ctl(Ctl::DumpFlows, "");
    assert!(!rules.contains("meter:1"), "{rules}");
    assert!(rules.contains("meter:2"), "{rules}");
    assert!(d.ctl(Ctl::DumpMeters, "meter=1").is_empty());
}
