#!/usr/bin/env python3
"""normal_corpus.py OVS_DIR CASE_DIR...

Records what Open vSwitch 3.1 does for NORMAL bridges, for
tests/normal_cases/. OVS_DIR is an instance started by
../shared/tools/ovs-peer/ovs-up.sh with at least as many ports as the
cases number (port N is pN, OpenFlow and datapath port N).

Each CASE_DIR holds:
  bridge.toml  upcalld's configuration: the [[port]]s (number, tag, trunks,
               vlan_mode) are set on OVS's ports pN with ovs-vsctl
  rules.of13   the rules (ovs-ofctl add-flows syntax)
  learn.txt    packets to send first, one per line: PORT<TAB>ODP flow
               (netdev-dummy/receive syntax); OVS learns their MACs
  flows.txt    the flows to trace (ofproto/trace syntax)
and gets:
  fdb.txt      `ovs-appctl fdb/show br0` after the learning packets
  expected.tsv flow<TAB>datapath actions<TAB>megaflow, as ofproto/trace
               printed them
"""
import os
import subprocess
import sys
import time
import tomllib

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.join(HERE, "../../../shared/tools/ovs-peer")


def run(env, *args):
    return subprocess.run(args, env=env, check=True, capture_output=True, text=True).stdout


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    ovs = os.path.abspath(sys.argv[1])
    env = dict(os.environ)
    for line in open(os.path.join(ovs, "env.sh")):
        line = line.strip()
        if line.startswith("export "):
            for kv in line[len("export "):].split():
                k, v = kv.split("=", 1)
                env[k] = v.strip("'\"")
    for case in sys.argv[2:]:
        with open(os.path.join(case, "bridge.toml"), "rb") as f:
            bridge = tomllib.load(f)
        for name in run(env, "ovs-vsctl", "list-ports", "br0").split():
            run(env, "ovs-vsctl", "clear", "port", name, "tag", "trunks", "vlan_mode")
        for p in bridge.get("port", []):
            args = []
            if "tag" in p:
                args.append(f"tag={p['tag']}")
            if p.get("trunks"):
                args.append("trunks=" + ",".join(str(t) for t in p["trunks"]))
            if "vlan_mode" in p:
                args.append(f"vlan_mode={p['vlan_mode']}")
            if args:
                run(env, "ovs-vsctl", "set", "port", f"p{p['number']}", *args)
        run(env, "ovs-appctl", "fdb/flush", "br0")
        run(env, "ovs-ofctl", "-O", "OpenFlow13", "--bundle", "replace-flows", "br0",
            os.path.join(case, "rules.of13"))
        time.sleep(0.5)
        for line in open(os.path.join(case, "learn.txt")):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            port, packet = line.split("\t")
            run(env, "ovs-appctl", "netdev-dummy/receive", f"p{port}", packet)
            time.sleep(0.1)
        time.sleep(0.5)
        fdb = run(env, "ovs-appctl", "fdb/show", "br0")
        open(os.path.join(case, "fdb.txt"), "w").write(fdb)
        out = run(env, "python3", os.path.join(PEER, "ovs_trace.py"), ovs,
                  os.path.join(case, "flows.txt"))
        open(os.path.join(case, "expected.tsv"), "w").write(out)
        print(f"{case}: {len(out.splitlines())} flows, {len(fdb.splitlines()) - 1} MACs")


if __name__ == "__main__":
    main()
