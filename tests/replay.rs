//! Replay: packet files fed into the userspace datapath. The benchmark's
//! natural workload must install exactly the megaflows Open vSwitch 3.1
//! installs for it, and a replay port in the daemon plays pcap files.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use upcalld::bench::{setup_rate, SetupRateOptions};
use upcalld::config::Placement;
use upcalld::control::Command as Ctl;

/// `shared/bench`, found beside the checkout or one of its parents.
fn bench_dir() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.ancestors()
        .map(|a| a.join("shared/bench"))
        .find(|p| p.join("setup-rate.rules").exists())
        .unwrap_or_else(|| panic!("no shared/bench beside {} or its parents", here.display()))
}

/// Runs the setup-rate benchmark's two passes on `packets`.
fn bench(packets: &str, handlers: usize, placement: Placement) -> upcalld::bench::SetupRate {
    let dir = bench_dir();
    let opts = SetupRateOptions {
        handlers,
        batch_size: 50,
        placement,
        transparent_huge_pages: false,
    };
    let (rules, packets) = (dir.join("setup-rate.rules"), dir.join(packets));
    setup_rate(&rules, &packets, &opts).unwrap()
}

#[test]
fn natural_workload_installs_as_many_megaflows_as_ovs() {
    let r = bench("setup-rate-20000-natural.tsv", 2, Placement::None);
    assert_eq!(r.packets, 20_000);
    assert_eq!(
        r.megaflows, 5304,
        "Open vSwitch 3.1 installs 5304 megaflows for this workload"
    );
    assert!(r.upcalls >= r.megaflows);
}

#[test]
fn mac_workload_misses_once_per_packet() {
    // With the threads placed on CPUs, as `bench setup-rate` runs them.
    let r = bench("setup-rate-20000-mac.tsv", 1, Placement::Auto);
    assert_eq!(
        (r.packets, r.upcalls, r.megaflows),
        (20_000, 20_000, 20_000)
    );
}

/// A UDP frame from 10.5.0.`n` to 10.6.0.1, port 5000 + n % 4.
fn udp_frame(n: u8) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, n, 0x08, 0x00];
    f.extend_from_slice(&[
        0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0, 0, 10, 5, 0, n, 10, 6, 0, 1,
    ]);
    f.extend_from_slice(&[0x30, 0x39, 0x13, 0x88 + n % 4, 0, 12, 0, 0, 1, 2, 3, 4]);
    f
}

#[test]
fn daemon_replay_port_plays_a_pcap_file() {
    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    let dir = std::env::temp_dir().join(format!("upcalld-replay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("frames.pcap");
    {
        let mut w =
            PcapWriter::with_header(std::fs::File::create(&pcap).unwrap(), PcapHeader::default())
                .unwrap();
        for n in 0..40u8 {
            let f = udp_frame(n % 20);
            w.write_packet(&PcapPacket::new(Duration::ZERO, f.len() as u32, &f))
                .unwrap();
        }
    }
    let rules =
        "table=0,priority=10,udp,tp_dst=5000,actions=output:2\ntable=0,priority=0,actions=drop\n";
    // Port 2 only receives: a replay port with nothing to play.
    let sink = dir.join("sink.tsv");
    std::fs::write(&sink, "# nothing to play\n").unwrap();
    let extra = format!(
        "[[port]]\nname = \"replay0\"\ntype = \"replay\"\nnumber = 7\npath = {pcap:?}\n\
         [[port]]\nname = \"sink\"\ntype = \"replay\"\nnumber = 2\npath = {sink:?}\n"
    );
    let d = Daemon::start("rp1", &[], rules, &extra);
    d.wait_until(
        "all 40 frames reached the datapath",
        Duration::from_secs(10),
        || {
            let show = d.ctl(Ctl::UpcallShow, "");
            let dp = show
                .lines()
                .find(|l| l.contains("datapath"))
                .unwrap()
                .to_string();
            field(&dp, "hit").unwrap() + field(&dp, "missed").unwrap() == 40
        },
    );
    d.ctl(Ctl::Revalidate, "");
    let flows = d.ctl(Ctl::DumpDpFlows, "");
    // Port 5000 is matched exactly; the other ports share drop megaflows.
    assert!(
        flows
            .lines()
            .any(|l| l.contains("in_port(7)") && l.ends_with("actions:2")),
        "{flows}"
    );
    assert!(
        flows.lines().any(|l| l.ends_with("actions:drop")),
        "{flows}"
    );
    let forwarded = d
        .ctl(Ctl::DumpFlows, "")
        .lines()
        .find(|l| l.contains("tp_dst=5000"))
        .map(|l| field(l, "n_packets").unwrap());
    assert_eq!(forwarded, Some(10), "frames n with n % 4 == 0, twice");
    let _ = std::fs::remove_dir_all(&dir);
}
