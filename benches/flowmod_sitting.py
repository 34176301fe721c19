#!/usr/bin/env python3
"""Flow mods per second, upcalld next to Open vSwitch 3.1, in one sitting.

The same 100 000 rules (distinct TCP destinations and ports, table 0, each
`actions=output:2`) go into both switches two ways:

  add-flows  Debian's `ovs-ofctl -O OpenFlow13 add-flows` of the file (what
             an operator runs; ovs-ofctl's own parsing is in the time, the
             same for both);
  stream     one OpenFlow 1.3 connection writing the flow mods, already
             encoded, as fast as the switch reads them, then a barrier:
             the time from the first byte to the barrier reply (the
             switch alone).

OVS is a fresh ovs-peer instance (../shared/tools/ovs-peer, dummy
datapath); upcalld a fresh `upcalld run` with no ports and an OpenFlow
listener in a temporary directory. Before each load both are emptied
(`del-flows`), and after it the rules are counted (dump-aggregate). Each
load runs ROUNDS times; medians are printed side by side, and the ratio.

    python3 benches/flowmod_sitting.py target/release/upcalld [--rules 100000] [--rounds 3]
"""

import argparse
import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "tools", "ovs-peer"))


def rules(n):
    """n distinct rules: (priority, IPv4 destination, TCP port)."""
    out = []
    for i in range(n):
        dst = (10 << 24) | i
        out.append((1000 + i % 3, dst, 1 + i % 60000))
    return out


def rules_text(rs):
    lines = []
    for prio, dst, port in rs:
        ip = socket.inet_ntoa(struct.pack("!I", dst))
        lines.append("table=0,priority=%d,tcp,nw_dst=%s,tp_dst=%d,actions=output:2" % (prio, ip, port))
    return "\n".join(lines) + "\n"


def flow_mod(xid, prio, dst, port):
    """An OpenFlow 1.3 OFPT_FLOW_MOD (add) as ovs-ofctl encodes the rule."""
    oxm = struct.pack("!IH", 0x80000A02, 0x0800)  # eth_type
    oxm += struct.pack("!IB", 0x80001401, 6)  # ip_proto
    oxm += struct.pack("!II", 0x80001804, dst)  # ipv4_dst
    oxm += struct.pack("!IH", 0x80001C02, port)  # tcp_dst
    match = struct.pack("!HH", 1, 4 + len(oxm)) + oxm
    match += b"\0" * (-len(match) % 8)
    output = struct.pack("!HHIH6x", 0, 16, 2, 0)
    apply = struct.pack("!HH4x", 4, 8 + len(output)) + output
    body = struct.pack("!QQBBHHHIIIH2x", 0, 0, 0, 0, 0, 0, prio, 0xFFFFFFFF,
                       0xFFFFFFFF, 0xFFFFFFFF, 0) + match + apply
    return struct.pack("!BBHI", 4, 14, 8 + len(body), xid) + body


def read_msg(s, buf):
    while len(buf) < 8 or len(buf) < struct.unpack("!H", buf[2:4])[0]:
        b = s.recv(1 << 20)
        if not b:
            raise RuntimeError("connection closed")
        buf.extend(b)
    n = struct.unpack("!H", buf[2:4])[0]
    m = bytes(buf[:n])
    del buf[:n]
    return m


def stream(path, encoded, n):
    """Writes the flow mods and a barrier on one connection; seconds until
    the barrier reply, and the errors the switch sent."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    buf = bytearray()
    s.sendall(struct.pack("!BBHI", 4, 0, 16, 1) + struct.pack("!HHI", 1, 8, 1 << 4))
    read_msg(s, buf)  # the switch's hello
    barrier_xid = n + 10
    t0 = time.monotonic()
    s.sendall(encoded)
    s.sendall(struct.pack("!BBHI", 4, 20, 8, barrier_xid))
    errors = 0
    while True:
        m = read_msg(s, buf)
        kind, xid = m[1], struct.unpack("!I", m[4:8])[0]
        if kind == 1:
            errors += 1
        elif kind == 2:  # echo request
            s.sendall(struct.pack("!BBHI", 4, 3, len(m), xid) + m[8:])
        elif kind == 21 and xid == barrier_xid:
            break
    dt = time.monotonic() - t0
    s.close()
    return dt, errors


def ofctl(*args):
    return subprocess.run(["ovs-ofctl"] + list(args), check=True, capture_output=True,
                          text=True).stdout


def flow_count(target):
    out = ofctl("-O", "OpenFlow13", "dump-aggregate", target)
    return int(out.split("flow_count=")[1].split()[0])


def clear(target):
    ofctl("-O", "OpenFlow13", "del-flows", target)
    assert flow_count(target) == 0


def timed_add_flows(target, path):
    t0 = time.monotonic()
    ofctl("-O", "OpenFlow13", "add-flows", target, path)
    return time.monotonic() - t0


def start_upcalld(binary, tmp):
    mgmt = os.path.join(tmp, "u.mgmt")
    cfg = os.path.join(tmp, "upcalld.toml")
    with open(os.path.join(tmp, "empty.rules"), "w"):
        pass
    with open(cfg, "w") as f:
        # No metrics endpoint: the default port (9464) is the demo's.
        f.write('rules = "%s"\ncontrol_socket = "%s"\nmetrics_addr = ""\n'
                '[openflow]\nlisten = ["punix:%s"]\n'
                % (os.path.join(tmp, "empty.rules"), os.path.join(tmp, "ctl.sock"), mgmt))
    log = open(os.path.join(tmp, "upcalld.log"), "w")
    p = subprocess.Popen([binary, "run", "--config", cfg], stdout=log, stderr=log)
    for _ in range(100):
        if os.path.exists(mgmt):
            return p, mgmt
        time.sleep(0.1)
    p.kill()
    sys.exit("upcalld did not start; see %s" % log.name)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("upcalld")
    ap.add_argument("--rules", type=int, default=100000)
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    rs = rules(a.rules)
    tmp = tempfile.mkdtemp(prefix="fm-", dir="/tmp")
    path = os.path.join(tmp, "rules.of13")
    with open(path, "w") as f:
        f.write(rules_text(rs))
    encoded = b"".join(flow_mod(i + 2, *r) for i, r in enumerate(rs))

    ovs_dir = os.path.join(tmp, "ovs")
    subprocess.run([os.path.join(PEER, "ovs-up.sh"), ovs_dir, "2"], check=True,
                   stdout=subprocess.DEVNULL)
    upcalld, mgmt = start_upcalld(os.path.abspath(a.upcalld), tmp)
    switches = {"OVS 3.1": ("unix:" + os.path.join(ovs_dir, "br0.mgmt"),
                            os.path.join(ovs_dir, "br0.mgmt")),
                "upcalld": ("unix:" + mgmt, mgmt)}
    results = {name: {"add-flows": [], "stream": []} for name in switches}
    try:
        for _ in range(a.rounds):
            for name, (target, sock) in switches.items():
                clear(target)
                results[name]["add-flows"].append(timed_add_flows(target, path))
                assert flow_count(target) == a.rules, name
                clear(target)
                dt, errors = stream(sock, encoded, a.rules)
                assert errors == 0, "%s sent %d errors" % (name, errors)
                assert flow_count(target) == a.rules, name
                results[name]["stream"].append(dt)
    finally:
        upcalld.terminate()
        upcalld.wait()
        subprocess.run([os.path.join(PEER, "ovs-down.sh"), ovs_dir], stdout=subprocess.DEVNULL)
    print("%d flow mods, %d rounds, medians (flow mods per second; seconds)" % (a.rules, a.rounds))
    print("%-10s %22s %22s %8s" % ("load", "OVS 3.1", "upcalld", "ratio"))
    for load in ("add-flows", "stream"):
        o = statistics.median(results["OVS 3.1"][load])
        u = statistics.median(results["upcalld"][load])
        print("%-10s %12.0f/s (%5.2fs) %12.0f/s (%5.2fs) %7.1fx"
              % (load, a.rules / o, o, a.rules / u, u, o / u))


if __name__ == "__main__":
    main()
