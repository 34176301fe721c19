#!/usr/bin/env python3
"""Packet-in round trips through Faucet: the time a packet takes from a
host, through upcalld to Faucet as a PACKET_IN, and back from Faucet as a
PACKET_OUT to the host.

Faucet answers ICMP echo requests to a VLAN's `faucet_vips` address
itself: the switch sends such a request to the controller (Faucet's rules
send traffic for the VIP there), Faucet builds the echo reply and sends it
out of the port the request came in on. So a host's ping of the VIP
measures one whole packet-in round trip: the upcall, translation, the
PACKET_IN's encoding and write, Faucet's Python, the PACKET_OUT's decoding,
translation and execution. For contrast, a ping between two hosts of the
same VLAN (after Faucet has learned them) measures the datapath alone.

Two hosts in network namespaces this script creates (veth pairs, the
embedded datapath, VLAN 100), Faucet from PyPI in a virtualenv
($FAUCET_VENV, or /tmp/upcalld-faucet-venv, made when missing, as
tests/faucet.rs makes it), upcalld with Faucet as its controller over TCP
on loopback. Run it as root, under the test lock:

    flock /tmp/upcalld-test.lock python3 benches/faucet_packet_in.py \\
        target/release/upcalld [--count 200] [--interval 0.02]

OVS is not run beside it: ovs-peer's dummy datapath carries no packets
from namespaces, and the kernel VM has no Python for Faucet.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time

VIP = "10.79.1.254"
HOSTS = [("fpi-h1", "fpih1", "10.79.1.1", "02:00:00:79:01:01"),
         ("fpi-h2", "fpih2", "10.79.1.2", "02:00:00:79:01:02")]

FAUCET_YAML = """\
vlans:
  office:
    vid: 100
    faucet_vips: ["%s/24"]
dps:
  sw1:
    dp_id: 0x1
    hardware: "Open vSwitch"
    interfaces:
      1:
        native_vlan: office
      2:
        native_vlan: office
""" % VIP


def run(*cmd, check=True):
    return subprocess.run(cmd, check=check, capture_output=True, text=True)


def faucet_venv():
    venv = os.environ.get("FAUCET_VENV", "/tmp/upcalld-faucet-venv")
    if not os.path.exists(os.path.join(venv, "bin", "faucet")):
        run("python3", "-m", "venv", venv)
        run(os.path.join(venv, "bin", "pip"), "install", "-q", "faucet")
    return venv


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_hosts():
    for ns, port, addr, mac in HOSTS:
        run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", port, check=False)
        run("ip", "netns", "add", ns)
        run("ip", "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        run("ip", "-n", ns, "link", "set", "eth0", "address", mac)
        run("ip", "-n", ns, "addr", "add", addr + "/24", "dev", "eth0")
        run("ip", "-n", ns, "link", "set", "eth0", "up")
        run("ip", "-n", ns, "link", "set", "lo", "up")
        # Complete checksums on the wire: the datapath reads the frames.
        run("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
        run("ip", "link", "set", port, "up")


def remove_hosts():
    for ns, port, _, _ in HOSTS:
        run("ip", "netns", "del", ns, check=False)
        run("ip", "link", "del", port, check=False)


def ping(ns, addr, count, interval):
    """(sent, received, [rtt ms, ...]) of `ping -c count` from `ns`."""
    out = run("ip", "netns", "exec", ns, "ping", "-n", "-c", str(count), "-i", str(interval),
              "-W", "1", addr, check=False).stdout
    rtts = [float(m) for m in re.findall(r"time=([0-9.]+) ms", out)]
    return count, len(rtts), rtts


def percentile(sorted_v, q):
    return sorted_v[min(len(sorted_v) - 1, int(q * (len(sorted_v) - 1)))]


def report(name, result):
    sent, received, rtts = result
    if not rtts:
        print("%-34s %d sent, none answered" % (name, sent))
        return
    v = sorted(rtts)
    print("%-34s %4d/%d answered  p50 %7.3f ms  p90 %7.3f ms  p99 %7.3f ms  min %7.3f  max %7.3f"
          % (name, received, sent, percentile(v, 0.5), percentile(v, 0.9), percentile(v, 0.99),
             v[0], v[-1]))


def rule_count(upcalld, ctl):
    out = run(upcalld, "ctl", "--socket", ctl, "dump-flows", check=False).stdout
    return sum(1 for line in out.splitlines() if "priority=" in line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upcalld")
    ap.add_argument("--count", type=int, default=200)
    ap.add_argument("--interval", type=float, default=0.02)
    a = ap.parse_args()
    upcalld = os.path.abspath(a.upcalld)
    if os.geteuid() != 0:
        sys.exit("run as root (network namespaces)")
    venv = faucet_venv()
    tmp = tempfile.mkdtemp(prefix="faucet-pi-", dir="/tmp")
    with open(os.path.join(tmp, "faucet.yaml"), "w") as f:
        f.write(FAUCET_YAML)
    of_port = free_port()
    make_hosts()
    faucet = upcalld_p = None
    try:
        env = dict(os.environ, PATH=os.path.join(venv, "bin") + ":" + os.environ.get("PATH", ""),
                   FAUCET_CONFIG=os.path.join(tmp, "faucet.yaml"),
                   FAUCET_LOG=os.path.join(tmp, "faucet.log"),
                   FAUCET_EXCEPTION_LOG=os.path.join(tmp, "faucet-exception.log"),
                   FAUCET_PROMETHEUS_PORT=str(free_port()), FAUCET_PROMETHEUS_ADDR="127.0.0.1")
        faucet = subprocess.Popen([os.path.join(venv, "bin", "faucet"),
                                   "--ryu-ofp-tcp-listen-port=%d" % of_port,
                                   "--ryu-ofp-listen-host=127.0.0.1"],
                                  env=env, stdout=subprocess.DEVNULL,
                                  stderr=open(os.path.join(tmp, "faucet.out"), "w"))
        ctl = os.path.join(tmp, "ctl.sock")
        rules = os.path.join(tmp, "empty.rules")
        open(rules, "w").close()
        ports = "".join('[[port]]\nname = "%s"\ntype = "system"\nnumber = %d\n' % (h[1], i + 1)
                        for i, h in enumerate(HOSTS))
        with open(os.path.join(tmp, "upcalld.toml"), "w") as f:
            # No metrics endpoint: the default port (9464) is the demo's.
            f.write('rules = "%s"\ncontrol_socket = "%s"\nmetrics_addr = ""\n'
                    '[bridge]\nname = "br0"\ndatapath_id = "0x1"\n'
                    '[openflow]\nlisten = ["punix:%s"]\ncontrollers = ["tcp:127.0.0.1:%d"]\n'
                    'fail_mode = "secure"\n%s'
                    % (rules, ctl, os.path.join(tmp, "br0.mgmt"), of_port, ports))
        upcalld_p = subprocess.Popen([upcalld, "run", "--config", os.path.join(tmp, "upcalld.toml")],
                                     stdout=subprocess.DEVNULL,
                                     stderr=open(os.path.join(tmp, "upcalld.log"), "w"))
        deadline = time.monotonic() + 90
        while rule_count(upcalld, ctl) < 5:
            if time.monotonic() > deadline or upcalld_p.poll() is not None:
                sys.exit("Faucet programmed no rules; see %s" % tmp)
            time.sleep(0.25)
        # Faucet learns both hosts and answers ARP for its VIP.
        for ns, _, _, _ in HOSTS:
            ping(ns, VIP, 3, 0.2)
        ping(HOSTS[0][0], HOSTS[1][2], 3, 0.2)
        print("upcalld with Faucet %s, %d pings each, every %g s, load %s"
              % (run(os.path.join(venv, "bin", "pip"), "show", "faucet").stdout.split("Version: ")[1]
                 .split()[0], a.count, a.interval, open("/proc/loadavg").read().split()[0]))
        report("host -> Faucet VIP (packet-in)", ping(HOSTS[0][0], VIP, a.count, a.interval))
        report("host -> host (datapath only)", ping(HOSTS[0][0], HOSTS[1][2], a.count, a.interval))
    finally:
        for p in (upcalld_p, faucet):
            if p is not None:
                p.terminate()
                p.wait()
        remove_hosts()
    print("logs in %s" % tmp)


if __name__ == "__main__":
    main()
