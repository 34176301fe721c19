#!/usr/bin/env python3
"""trace_generate.py OVSDIR RULES FLOWS

Like ../shared/tools/ovs-peer/ovs-trace.sh, but traces each flow with
`ofproto/trace ... -generate` (a packet, so the translation has side effects:
learn actions add their rules, controller(pause) emits its continuation).
Replaces br0's rules with RULES (OpenFlow 1.3) and prints one TSV line per
flow: flow, datapath actions, megaflow. Record such a case on a fresh
instance (ovs-down.sh, ovs-up.sh): recirculation ids count from 1 there.
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, "/work/shared/tools/ovs-peer")
from ovs_unixctl import Unixctl  # noqa: E402
from ovs_trace import parse_trace  # noqa: E402


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        sys.exit(2)
    d, rules, flows = sys.argv[1:]
    mgmt = "unix:%s/br0.mgmt" % os.path.abspath(d)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--bundle", "replace-flows", mgmt, rules],
                   check=True)
    time.sleep(0.3)
    c = Unixctl.for_dir(d)
    for raw in open(flows):
        flow = raw.strip()
        if not flow or flow.startswith("#"):
            continue
        actions, megaflow, note = parse_trace(c.call("ofproto/trace", ["br0", flow, "-generate"]))
        cols = [flow, actions or "?", megaflow or "?"] + ([note] if note else [])
        print("\t".join(cols))


if __name__ == "__main__":
    main()
