//! The daemon's life cycle and control socket: SIGHUP reloads the rules
//! file atomically (a broken file changes nothing), bad requests get clear
//! errors, the socket is private, and SIGTERM shuts down cleanly.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::*;
use upcalld::control::{self, Command as Ctl};

const RULES: &str = "table=0,priority=10,in_port=1,actions=output:2\n";

fn n_rules(d: &Daemon) -> usize {
    d.ctl(Ctl::DumpFlows, "").lines().count()
}

#[test]
fn sighup_reloads_rules_and_sigterm_stops_cleanly() {
    let mut d = Daemon::start("dm1", &[], RULES, "");
    let mode = std::fs::metadata(d.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the control socket is for root only");
    assert_eq!(n_rules(&d), 1);

    std::fs::write(
        d.rules_path(),
        "table=0,priority=10,in_port=1,actions=output:2\ntable=0,priority=10,in_port=2,actions=output:1\ntable=1,priority=5,actions=drop\n",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_until(
        "SIGHUP reloaded three rules",
        Duration::from_secs(5),
        || n_rules(&d) == 3,
    );

    // A broken file is refused whole: the old rules stay.
    std::fs::write(
        d.rules_path(),
        "table=0,priority=10,in_port=1,actions=output:2\nin_port=frob,actions=drop\n",
    )
    .unwrap();
    d.signal(libc::SIGHUP);
    d.wait_until(
        "the daemon logged the refusal",
        Duration::from_secs(5),
        || d.log().contains("rules not reloaded"),
    );
    assert_eq!(n_rules(&d), 3);

    d.signal(libc::SIGTERM);
    assert!(
        d.wait_exit(Duration::from_secs(10)),
        "clean exit on SIGTERM"
    );
    assert!(
        !d.socket().exists(),
        "the control socket is removed on exit"
    );
}

#[test]
fn bad_requests_get_clear_errors() {
    let d = Daemon::start("dm2", &[], RULES, "");
    let e = d.ctl_err(Ctl::AddFlow, "table=0,in_port=frob,actions=drop");
    assert!(e.contains("frob"), "{e}");
    let e = d.ctl_err(Ctl::Trace, "in_port=1,nw_src=nonsense");
    assert!(!e.is_empty());
    let e = d.ctl_err(Ctl::DelFlows, "no_such_field=3");
    assert!(e.contains("no_such_field"), "{e}");
    assert_eq!(n_rules(&d), 1, "failed requests change nothing");

    // A request the protocol does not know.
    let raw = {
        use std::io::{Read, Write};
        let mut s = std::os::unix::net::UnixStream::connect(d.socket()).unwrap();
        s.write_all(b"frobnicate\n").unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(
        raw.starts_with("error\nunknown command \"frobnicate\""),
        "{raw}"
    );

    // Trace answers for the daemon's switch: this daemon has no port 2,
    // so the rule's output is dropped, as the handlers would drop it.
    let t = d.ctl(Ctl::Trace, "in_port=1,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2");
    assert!(t.contains("Datapath actions: drop"), "{t}");
    // And it runs against the current rules.
    d.ctl(
        Ctl::AddFlow,
        "table=0,priority=20,ip,nw_src=10.0.0.0/8,actions=drop",
    );
    let t = d.ctl(Ctl::Trace, "in_port=1,ip,nw_src=10.0.0.1,nw_dst=10.0.0.2");
    assert!(t.contains("nw_src=10.0.0.0/8"), "{t}");
    assert!(control::call(&d.socket().with_extension("nope"), Ctl::UpcallShow, "").is_err());
}

#[test]
fn geneve_tlv_map_from_config_and_ctl() {
    let d = Daemon::start(
        "dm-tlv",
        &[],
        RULES,
        r#"tlv_map = ["{class=0xffff,type=0,len=4}->tun_metadata0"]"#,
    );
    // A field is usable once mapped, and not before.
    let e = d.ctl_err(Ctl::AddFlow, "tun_metadata1=0x5,actions=drop");
    assert!(
        e.contains("tun_metadata1 has no Geneve option mapped"),
        "{e}"
    );
    d.ctl(
        Ctl::AddTlvMap,
        "{class=0x102,type=0x80,len=8}->tun_metadata1",
    );
    d.ctl(Ctl::AddFlow, "tun_metadata1=0x5,actions=drop");
    d.ctl(
        Ctl::AddFlow,
        "priority=5,tun_metadata0=0x10/0xf0,actions=drop",
    );
    let dump = d.ctl(Ctl::DumpTlvMap, "");
    assert!(
        dump.contains(" 0xffff     0       4  tun_metadata0\n"),
        "{dump}"
    );
    assert!(
        dump.contains("  0x102  0x80       8  tun_metadata1\n"),
        "{dump}"
    );
    assert!(dump.contains(" allocated option space=12\n"), "{dump}");
    let flows = d.ctl(Ctl::DumpFlows, "");
    assert!(flows.contains("tun_metadata1=0x5"), "{flows}");
    assert!(flows.contains("tun_metadata0=0x10/0xf0"), "{flows}");
    // OVS's refusals: a field mapped twice, an option mapped twice.
    let e = d.ctl_err(Ctl::AddTlvMap, "{class=1,type=1,len=4}->tun_metadata0");
    assert!(e.contains("tun_metadata0 is already mapped"), "{e}");
    let e = d.ctl_err(Ctl::AddTlvMap, "{class=0xffff,type=0,len=4}->tun_metadata2");
    assert!(e.contains("already mapped to tun_metadata0"), "{e}");
    let e = d.ctl_err(Ctl::AddTlvMap, "{class=1,type=1,len=6}->tun_metadata2");
    assert!(e.contains("multiple of 4"), "{e}");

    // del-tlv-map: a mapping a rule uses stays; once unused it goes, its
    // space is free, and the field cannot be used again until remapped.
    let e = d.ctl_err(
        Ctl::DelTlvMap,
        "{class=0x102,type=0x80,len=8}->tun_metadata1",
    );
    assert!(e.contains("tun_metadata1 is used by rules"), "{e}");
    d.ctl(Ctl::DelFlows, "tun_metadata1=0x5");
    d.ctl(
        Ctl::DelTlvMap,
        "{class=0x102,type=0x80,len=8}->tun_metadata1",
    );
    let dump = d.ctl(Ctl::DumpTlvMap, "");
    assert!(!dump.contains("tun_metadata1"), "{dump}");
    assert!(dump.contains(" allocated option space=4\n"), "{dump}");
    let e = d.ctl_err(Ctl::AddFlow, "tun_metadata1=0x5,actions=drop");
    assert!(
        e.contains("tun_metadata1 has no Geneve option mapped"),
        "{e}"
    );
    // With no mappings it clears the table, once no rule uses a field.
    assert!(d.ctl_err(Ctl::DelTlvMap, "").contains("tun_metadata0"));
    d.ctl(Ctl::DelFlows, "");
    d.ctl(Ctl::DelTlvMap, "");
    assert!(d
        .ctl(Ctl::DumpTlvMap, "")
        .contains(" allocated option space=0\n"));
}
