//! The daemon under test on the kernel datapath, as a child process: the
//! test binary itself, running only its ignored `daemon_child` test.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{dpctl_flows, ovs_dmesg, run};
use upcalld::config::Config;
use upcalld::control::{self, Command as Ctl};
use upcalld::netns::Host;

/// Where `daemon_child` finds its configuration.
pub const CONFIG_ENV: &str = "UPCALLD_KERNEL_TEST_CONFIG";

/// The daemon in a child process.
pub struct Daemon {
    child: Option<Child>,
    pub dir: PathBuf,
    pub socket: PathBuf,
    /// The network namespace it runs in (its datapath lives there), if not
    /// the test's own.
    pub netns: Option<String>,
}

impl Daemon {
    /// Writes `config` (the control socket and rules file lines are added)
    /// and `rules` into a directory named after `tag`, and starts the daemon.
    pub fn start(tag: &str, config: &str, rules: &str) -> Daemon {
        Daemon::start_in(None, tag, config, rules)
    }

    /// As `start`, the daemon running in network namespace `netns`.
    pub fn start_in(netns: Option<&str>, tag: &str, config: &str, rules: &str) -> Daemon {
        let dir = std::env::temp_dir().join(format!("upcalld-kd-{tag}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("ctl.sock");
        let rules_path = dir.join("rules.of13");
        std::fs::write(&rules_path, rules).unwrap();
        let mut text = format!(
            "control_socket = {socket:?}\nrules = {rules_path:?}\nmetrics_addr = \"\"\n{config}"
        );
        if !text.contains("[openflow]") {
            // No OpenFlow listener: the default one would be shared by
            // every daemon the tests run at once.
            text.push_str("\n[openflow]\nlisten = []\n");
        }
        std::fs::write(dir.join("upcalld.toml"), text).unwrap();
        let mut d = Daemon {
            child: None,
            dir,
            socket,
            netns: netns.map(String::from),
        };
        d.spawn();
        d
    }

    pub fn rules_path(&self) -> PathBuf {
        self.dir.join("rules.of13")
    }

    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("upcalld.log"))
            .unwrap();
        let exe = std::env::current_exe().unwrap();
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("/sbin/ip");
                c.args(["netns", "exec", ns]).arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let child = cmd
            .args(["daemon_child", "--exact", "--ignored", "--nocapture"])
            .env(CONFIG_ENV, self.dir.join("upcalld.toml"))
            .env(
                "RUST_LOG",
                std::env::var("UPCALLD_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting the daemon");
        self.child = Some(child);
        let socket = self.socket.clone();
        self.wait_until("the control socket answers", || {
            control::call(&socket, Ctl::UpcallShow, "").is_ok_and(|r| r.is_ok())
        });
    }

    /// The daemon's log and upcall counters, the datapath's flows and
    /// counters, and the kernel's complaints: what a failure message needs.
    pub fn diagnosis(&self) -> String {
        let upcalls = control::call(&self.socket, Ctl::UpcallShow, "")
            .map(|r| r.unwrap_or_else(|e| e))
            .unwrap_or_else(|e| e.to_string());
        let dpctl = |args: &[&str]| {
            let mut c = match &self.netns {
                Some(ns) => {
                    let mut c = Command::new("/sbin/ip");
                    c.args(["netns", "exec", ns, "ovs-dpctl"]);
                    c
                }
                None => Command::new("ovs-dpctl"),
            };
            c.args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default()
        };
        format!(
            "daemon log:\n{}\nupcall-show:\n{upcalls}\novs-dpctl show:\n{}\novs-dpctl dump-flows:\n{}\nnetlink sockets:\n{}\n{}",
            self.log(),
            dpctl(&["show"]),
            dpctl(&["dump-flows"]),
            std::fs::read_to_string("/proc/net/netlink").unwrap_or_default(),
            ovs_dmesg()
        )
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("upcalld.log")).unwrap_or_default()
    }

    /// Waits (up to a minute: the VM is emulated) until `cond` holds.
    pub fn wait_until(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the daemon exited ({status}) before {what}; log:\n{}",
                    self.log()
                );
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "timed out waiting until {what}\n{}",
                self.diagnosis()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The datapath's `missed` count (upcalls), as the daemon reads it.
    pub fn missed(&self) -> u64 {
        let show = self.ctl(Ctl::UpcallShow, "");
        missed_in(&show).unwrap_or_else(|| panic!("no missed count in:\n{show}"))
    }

    pub fn ctl(&self, cmd: Ctl, body: &str) -> String {
        match control::call(&self.socket, cmd, body).expect("control socket") {
            Ok(out) => out,
            Err(e) => panic!("ctl {} failed: {e}\nlog:\n{}", cmd.name(), self.log()),
        }
    }

    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().expect("SIGKILL");
            c.wait().expect("reaping the daemon");
        }
    }

    /// SIGTERM, then the daemon must exit cleanly.
    pub fn stop(&mut self) {
        let mut c = self.child.take().expect("daemon running");
        rustix::process::kill_process(
            rustix::process::Pid::from_child(&c),
            rustix::process::Signal::TERM,
        )
        .expect("SIGTERM to the daemon");
        let status = c.wait().expect("waiting for the daemon");
        assert!(
            status.success(),
            "daemon exit {status}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The daemon child process's body: `Daemon::spawn` runs its own test
/// binary with only the ignored test `daemon_child` selected (the VM holds
/// the test binaries, not the `upcalld` one), which calls this, with the
/// configuration's path in `CONFIG_ENV`.
pub fn daemon_child_main() {
    let path = std::env::var_os(CONFIG_ENV)
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("run by the other tests, with {CONFIG_ENV} set"));
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let config = Config::load(&path).expect("loading the configuration");
    // The daemon gets the stack of a main thread (8 MiB), not a test's.
    std::thread::Builder::new()
        .name("daemon".into())
        .stack_size(8 << 20)
        .spawn(move || upcalld::daemon::run(config, Some(path)))
        .expect("starting the daemon thread")
        .join()
        .expect("the daemon panicked")
        .expect("the daemon failed");
}

/// A kernel datapath configuration: `extra` goes at the top level,
/// `datapath_extra` into `[datapath]`.
pub fn kernel_config(dp: &str, ports: &[(&str, u32)], extra: &str, datapath_extra: &str) -> String {
    let mut c = format!(
        "receivers = 2\nhandlers = 2\nrevalidators = 1\nrevalidate_interval_ms = 100\n{extra}\n\
         [datapath]\ntype = \"kernel\"\nname = \"{dp}\"\n{datapath_extra}\n"
    );
    for (name, n) in ports {
        c.push_str(&format!("[[port]]\nname = \"{name}\"\nnumber = {n}\n"));
    }
    c
}

/// A host in network namespace `netns` at `addr` with `mac`, its veth
/// end outside `port`, brought up (the kernel datapath does not).
pub fn up_host(netns: &str, port: &str, addr: std::net::Ipv4Addr, mac: [u8; 6]) -> Host {
    let h = Host::create(netns, port, addr, mac)
        .unwrap_or_else(|e| panic!("creating host {netns}: {e}"));
    run("/sbin/ip", &["link", "set", &h.port, "up"]);
    h
}

/// The daemon on kernel datapath `dp` with `ports` as ports 1, 2, …, each
/// port's extra config lines (NORMAL's VLANs) from `port_lines`; flows
/// idle for a minute, the datapath deleted at exit.
pub fn daemon_on_ports(
    tag: &str,
    dp: &str,
    ports: &[&str],
    port_lines: &[&str],
    rules: &str,
) -> Daemon {
    let mut config = kernel_config(dp, &[], "max_idle_ms = 60000", "on_exit = \"delete\"");
    for (i, p) in ports.iter().enumerate() {
        config.push_str(&format!(
            "[[port]]\nname = \"{p}\"\nnumber = {}\n{}\n",
            i + 1,
            port_lines.get(i).copied().unwrap_or("")
        ));
    }
    Daemon::start(tag, &config, rules)
}

/// One line of `ovs-dpctl dump-flows`: the flow (key/mask), its packet
/// count and its actions.
#[derive(Debug)]
pub struct DpctlFlow {
    pub flow: String,
    pub packets: u64,
    pub actions: String,
}

pub fn dpctl_dump(dp: &str) -> Vec<DpctlFlow> {
    parse_flow_lines(&dpctl_flows(dp).join("\n"))
}

/// Flow lines as `ovs-dpctl dump-flows` or `upcalld ctl dump-dp-flows`
/// (with a leading `ufid:` field) print them.
pub fn parse_flow_lines(text: &str) -> Vec<DpctlFlow> {
    text.lines()
        .filter_map(|line| {
            let line = match line.strip_prefix("ufid:") {
                Some(rest) => rest.split_once(", ")?.1,
                None => line,
            };
            let (flow, rest) = line.split_once(", packets:")?;
            let (packets, _) = rest.split_once(',')?;
            let (_, actions) = rest.split_once("actions:")?;
            Some(DpctlFlow {
                flow: flow.to_string(),
                packets: packets.parse().ok()?,
                actions: actions.to_string(),
            })
        })
        .collect()
}

/// The datapath's `missed` lookups (upcalls), from `ovs-dpctl show`.
pub fn dp_missed(dp: &str) -> u64 {
    let show = run("ovs-dpctl", &["show", &format!("system@{dp}")]);
    missed_in(&show).unwrap_or_else(|| panic!("no missed count in:\n{show}"))
}

pub fn missed_in(text: &str) -> Option<u64> {
    text.split("missed:")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn dp_exists(dp: &str) -> bool {
    run("ovs-dpctl", &["dump-dps"])
        .lines()
        .any(|l| l.trim() == format!("system@{dp}"))
}
