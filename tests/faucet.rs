//! A real controller: Faucet (from PyPI, in a virtualenv this test
//! creates) programs the daemon over OpenFlow 1.3 on Faucet's tutorial
//! set-up: hosts 1-3 on VLAN 100, host 4 on VLAN 200, an ACL on port 1
//! dropping TCP to port 8080. Hosts are network namespaces on veths, the
//! datapath is the embedded one.
//!
//! The virtualenv is `$FAUCET_VENV`, or /tmp/upcalld-faucet-venv; it is
//! made (`python3 -m venv`, `pip install faucet`) when it has no
//! `bin/faucet`. When that fails the test is skipped, unless
//! `FAUCET_REQUIRED=1`.

mod common;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use upcalld::control::Command as Ctl;
use upcalld::netns::Host;

/// A virtualenv with Faucet, or why there is none.
fn faucet_venv() -> Result<PathBuf, String> {
    let venv = std::env::var_os("FAUCET_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/upcalld-faucet-venv"));
    if venv.join("bin/faucet").exists() {
        return Ok(venv);
    }
    let run = |cmd: &mut Command| -> Result<(), String> {
        let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{cmd:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args(["install", "-q", "faucet"]))?;
    Ok(venv)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running Faucet, stopped when dropped.
struct Faucet {
    child: Child,
}

impl Faucet {
    fn start(venv: &Path, dir: &Path, of_port: u16) -> Faucet {
        let prometheus = free_port();
        // Faucet execs `ryu-manager`, which it looks for on PATH.
        let path = format!(
            "{}:{}",
            venv.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new(venv.join("bin/faucet"))
            .arg(format!("--ryu-ofp-tcp-listen-port={of_port}"))
            .arg("--ryu-ofp-listen-host=127.0.0.1")
            .env("PATH", path)
            .env("FAUCET_CONFIG", dir.join("faucet.yaml"))
            .env("FAUCET_LOG", dir.join("faucet.log"))
            .env("FAUCET_EXCEPTION_LOG", dir.join("faucet-exception.log"))
            .env("FAUCET_PROMETHEUS_PORT", prometheus.to_string())
            .env("FAUCET_PROMETHEUS_ADDR", "127.0.0.1")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("faucet.out")).unwrap())
            .spawn()
            .expect("starting faucet");
        Faucet { child }
    }
}

impl Drop for Faucet {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Faucet's tutorial: three hosts in VLAN 100, one in VLAN 200, and an
/// ACL on port 1 that drops TCP to port 8080.
const FAUCET_YAML: &str = "\
vlans:
  office:
    vid: 100
  guest:
    vid: 200
acls:
  block-8080:
    - rule:
        dl_type: 0x800
        nw_proto: 6
        tcp_dst: 8080
        actions:
          allow: False
    - rule:
        actions:
          allow: True
dps:
  sw1:
    dp_id: 0x1
    hardware: \"Open vSwitch\"
    interfaces:
      1:
        native_vlan: office
        acls_in: [block-8080]
      2:
        native_vlan: office
      3:
        native_vlan: office
      4:
        native_vlan: guest
";

fn host(i: u8) -> Host {
    Host::create(
        &format!("fct-h{i}"),
        &format!("fcth{i}"),
        Ipv4Addr::new(10, 79, 0, i),
        [2, 0, 0, 0x79, 0, i],
    )
    .expect("creating a host")
}

fn rule_count(d: &Daemon) -> usize {
    d.ctl(Ctl::DumpFlows, "")
        .lines()
        .filter(|l| l.contains("priority="))
        .count()
}

fn logs(d: &Daemon, dir: &Path) -> String {
    format!(
        "daemon log:\n{}\nfaucet log:\n{}\nfaucet errors:\n{}{}\nrules:\n{}",
        d.log(),
        std::fs::read_to_string(dir.join("faucet.log")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("faucet.out")).unwrap_or_default(),
        std::fs::read_to_string(dir.join("faucet-exception.log")).unwrap_or_default(),
        d.ctl(Ctl::DumpFlows, ""),
    )
}

#[test]
fn faucet_learns_hosts_keeps_vlans_apart_applies_its_acl_and_survives_a_restart() {
    require_root();
    let venv = match faucet_venv() {
        Ok(v) => v,
        Err(e) if std::env::var("FAUCET_REQUIRED").as_deref() == Ok("1") => {
            panic!("FAUCET_REQUIRED=1 and Faucet could not be installed: {e}")
        }
        Err(e) => {
            eprintln!(
                "skipped: Faucet could not be installed ({e}); FAUCET_REQUIRED=1 fails instead"
            );
            return;
        }
    };
    let dir = std::env::temp_dir().join(format!("upcalld-faucet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("faucet.yaml"), FAUCET_YAML).unwrap();
    let hosts: Vec<Host> = (1..=4).map(host).collect();
    let of_port = free_port();
    let mut faucet = Faucet::start(&venv, &dir, of_port);
    let ports: Vec<(&str, u32)> = hosts
        .iter()
        .zip(1..)
        .map(|(h, n)| (h.port.as_str(), n))
        .collect();
    let d = Daemon::start(
        "fct",
        &ports,
        "",
        &format!(
            "[bridge]\nname = \"br0\"\ndatapath_id = \"0x1\"\n\
             [openflow]\nlisten = [\"punix:{}\"]\ncontrollers = [\"tcp:127.0.0.1:{of_port}\"]\n\
             fail_mode = \"secure\"\n",
            dir.join("br0.mgmt").display()
        ),
    );
    // Faucet starts slowly (Python imports): allow it a while.
    let start = Instant::now();
    while rule_count(&d) < 5 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Faucet programmed no rules; {}",
            logs(&d, &dir)
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Same VLAN: the hosts reach each other once Faucet has learned them
    // from packet-ins.
    for (from, to) in [(0, 1), (1, 2), (0, 2)] {
        assert!(
            ping_ok(&hosts[from], hosts[to].addr, 20),
            "host {} -> host {} (VLAN 100) failed; {}",
            from + 1,
            to + 1,
            logs(&d, &dir)
        );
    }
    // Different VLANs: no.
    assert!(
        !ping_ok(&hosts[0], hosts[3].addr, 3),
        "host 1 reached host 4 across VLANs; {}",
        logs(&d, &dir)
    );
    assert!(!ping_ok(&hosts[3], hosts[1].addr, 3));

    // The ACL on port 1: TCP to 8080 is dropped, other TCP passes.
    let t = Duration::from_secs(3);
    assert_eq!(
        tcp_transfer(&hosts[0], &hosts[1], 5001, 10_000, t).map(|v| v.len()),
        Ok(10_000),
        "TCP 5001 from host 1; {}",
        logs(&d, &dir)
    );
    assert!(
        tcp_transfer(&hosts[0], &hosts[1], 8080, 10_000, t).is_err(),
        "TCP 8080 from host 1 passed the ACL; {}",
        logs(&d, &dir)
    );
    // Only port 1 has the ACL.
    assert_eq!(
        tcp_transfer(&hosts[2], &hosts[1], 8080, 10_000, t).map(|v| v.len()),
        Ok(10_000)
    );

    // Faucet stops: fail_mode secure keeps its rules, traffic flows.
    let rules_before = rule_count(&d);
    drop(faucet);
    assert!(
        ping_ok(&hosts[0], hosts[1].addr, 5),
        "traffic stopped with Faucet; {}",
        logs(&d, &dir)
    );
    assert_eq!(
        rule_count(&d),
        rules_before,
        "fail_mode secure keeps the rules"
    );

    // Faucet comes back: the daemon reconnects (backoff at most 8 s) and
    // Faucet synchronises its rules again; traffic still flows.
    faucet = Faucet::start(&venv, &dir, of_port);
    let start = Instant::now();
    while d.log().matches("connected to controller").count() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the daemon did not reconnect; {}",
            logs(&d, &dir)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(3));
    assert!(rule_count(&d) >= 5, "{}", logs(&d, &dir));
    for (from, to) in [(0, 1), (2, 1)] {
        assert!(
            ping_ok(&hosts[from], hosts[to].addr, 20),
            "host {} -> host {} after the restart; {}",
            from + 1,
            to + 1,
            logs(&d, &dir)
        );
    }
    assert!(!ping_ok(&hosts[0], hosts[3].addr, 3));
    drop(faucet);
    let _ = std::fs::remove_dir_all(&dir);
}
