#!/usr/bin/env python3
"""The conntrack benchmark next to Open vSwitch 3.1, in one sitting.

    python3 tools/conntrack_sitting.py target/release/upcalld [--connections N] [--per-conn M]

Runs `upcalld bench conntrack` (which writes its frames with --export), then
feeds OVS 3.1's userspace datapath (the dummy datapath of
../shared/tools/ovs-peer, a fresh instance) the very same frames under the
same stateful firewall:

    table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)
    table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit),output:2
    table=1,priority=100,ip,ct_state=+trk+est,actions=output:2
    table=1,priority=1,actions=drop

and times the same phases: N SYNs (new connections), then (untimed) the
handshakes, then N*M established data segments; then, as a baseline, the
established segments under one plain `ip,actions=output:2` rule. OVS's
dummy ports are fed by its main thread one packet per port per loop, so its
raw rates are mostly injection: the per-packet cost of `ct` and
recirculation is the established pass less the baseline, on both sides.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
PEER = os.path.join(SHARED, "tools", "ovs-peer")
sys.path.insert(0, PEER)
import ovs_setup_rate as osr  # noqa: E402
from ovs_unixctl import Unixctl  # noqa: E402

FIREWALL = """\
table=0,priority=100,ip,ct_state=-trk,actions=ct(table=1)
table=1,priority=100,ip,ct_state=+trk+new,actions=ct(commit),output:2
table=1,priority=100,ip,ct_state=+trk+est,actions=output:2
table=1,priority=1,actions=drop
"""
PLAIN = "table=0,priority=100,ip,actions=output:2\n"


def read_frames(path):
    with open(path) as fh:
        return [bytes.fromhex(line.split("\t")[1].strip()) for line in fh if line.strip()]


class Ovs:
    def __init__(self, d, n_ports):
        self.dir = d
        subprocess.run([os.path.join(PEER, "ovs-up.sh"), d, "4"], check=True,
                       capture_output=True)
        self.env = dict(os.environ, OVS_RUNDIR=d, OVS_LOGDIR=d, OVS_DBDIR=d, OVS_SYSCONFDIR=d)
        self.db = "--db=unix:%s/db.sock" % d
        self.mgmt = "unix:%s/br0.mgmt" % d
        self.c = Unixctl.for_dir(d)
        self.ports = ["p%d" % (10 + i) for i in range(1, n_ports + 1)]
        vs = []
        for i, p in enumerate(self.ports, 11):
            vs += ["--", "add-port", "br0", p, "--", "set", "Interface", p, "type=dummy",
                   "ofport_request=%d" % i, "options:pstream=punix:%s" % os.path.join(d, p + ".pstream")]
        self.sh("ovs-vsctl", self.db, "--timeout=30", *vs)
        self.sh("ovs-vsctl", self.db, "set", "Open_vSwitch", ".", "other_config:max-idle=600000")
        for p in self.ports:
            for _ in range(500):
                if os.path.exists(os.path.join(d, p + ".pstream")):
                    break
                time.sleep(0.01)

    def sh(self, *cmd):
        return subprocess.run(list(cmd), check=True, env=self.env, capture_output=True,
                              text=True).stdout

    def rules(self, text):
        path = os.path.join(self.dir, "rules.of")
        with open(path, "w") as fh:
            fh.write(text)
        self.sh("ovs-ofctl", "-O", "OpenFlow13", "--bundle", "replace-flows", self.mgmt, path)
        self.c.call("revalidator/purge", [])

    def feed(self, frames, lookups_per_packet):
        """Feeds frames over the injection ports; returns the wall time until
        the datapath has accounted for every lookup they cause."""
        args = argparse.Namespace(method="stream", dir=self.dir, ports=self.ports, poll=0.0005)
        h, m, l, _, _ = osr.dp_show(self.c)
        base = h + m + l
        t0 = time.perf_counter()
        osr.inject(args, self.c, frames, None, base)
        want = base + lookups_per_packet * len(frames)
        while osr.accounted(self.c) < want:
            if time.perf_counter() - t0 > 300:
                raise RuntimeError("OVS did not account for every packet in 300 s")
            time.sleep(0.0005)
        return time.perf_counter() - t0

    def conntrack_entries(self):
        return sum(1 for ln in self.c.call("dpctl/dump-conntrack", []).splitlines() if ln.strip())

    def down(self):
        subprocess.run([os.path.join(PEER, "ovs-down.sh"), self.dir], capture_output=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--per-conn", type=int, default=20)
    ap.add_argument("--inject-ports", type=int, default=32)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        frames_dir = os.path.join(tmp, "frames")
        out = subprocess.run([a.binary, "bench", "conntrack", "--connections", str(a.connections),
                              "--per-conn", str(a.per_conn), "--export", frames_dir],
                             capture_output=True, text=True, check=True).stdout
        ours = json.loads(out.strip().splitlines()[-1])
        syn = read_frames(os.path.join(frames_dir, "syn.tsv"))
        hs = read_frames(os.path.join(frames_dir, "handshake.tsv"))
        est = read_frames(os.path.join(frames_dir, "established.tsv"))
        ovs = Ovs(os.path.join(tmp, "ovs"), a.inject_ports)
        try:
            ovs.rules(FIREWALL)
            new_s = ovs.feed(syn, 2)
            committed = ovs.conntrack_entries()
            if committed != len(syn):
                print("warning: OVS tracks %d connections after the SYNs, not %d"
                      % (committed, len(syn)), file=sys.stderr)
            ovs.feed(hs, 2)
            est_s = ovs.feed(est, 2)
            entries = ovs.conntrack_entries()
            ovs.rules(PLAIN)
            ovs.c.call("dpctl/flush-conntrack", [])
            ovs.feed(syn, 1)
            base_s = ovs.feed(est, 1)
        finally:
            ovs.down()
    n, p = len(syn), len(est)
    theirs = dict(connections=n, established_packets=p, new_s=new_s, established_s=est_s,
                  baseline_s=base_s, new_conns_per_s=n / new_s, established_pkts_per_s=p / est_s,
                  ns_per_established_pkt=est_s / p * 1e9,
                  ns_ct_per_established_pkt=(est_s - base_s) / p * 1e9, tracked=entries)
    print("upcalld: " + json.dumps(ours))
    print("ovs 3.1: " + json.dumps({k: (round(v, 6) if isinstance(v, float) else v)
                                    for k, v in theirs.items()}))
    print("new connections/s:          upcalld %12.0f   OVS %10.0f   (x%.1f)"
          % (ours["new_conns_per_s"], theirs["new_conns_per_s"],
             ours["new_conns_per_s"] / theirs["new_conns_per_s"]))
    print("established packets/s:      upcalld %12.0f   OVS %10.0f   (x%.1f)"
          % (ours["established_pkts_per_s"], theirs["established_pkts_per_s"],
             ours["established_pkts_per_s"] / theirs["established_pkts_per_s"]))
    print("ns of ct+recirc per packet: upcalld %12.1f   OVS %10.1f   (x%.1f)"
          % (ours["ns_ct_per_established_pkt"], theirs["ns_ct_per_established_pkt"],
             theirs["ns_ct_per_established_pkt"] / max(ours["ns_ct_per_established_pkt"], 1e-9)))


if __name__ == "__main__":
    main()
