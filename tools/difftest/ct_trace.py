#!/usr/bin/env python3
"""ct_trace.py: differential tests of stateful pipelines (conntrack and
recirculation) against OVS 3.1's ofproto/trace, every pass compared.

    ct_trace.py record OVSDIR CASEDIR...   write CASEDIR/expected.tsv from OVS
    ct_trace.py compare UPCALLD CASEDIR... compare `upcalld trace` with it

A case directory holds `rules.of13` (ovs-ofctl add-flows syntax, OpenFlow
1.3), optionally `bridge.toml` (upcalld's configuration of what the peer
was configured with by hand, e.g. zone timeout policies), optionally `setup`
(`add-group GROUP` lines, added to the peer with `ovs-ofctl add-group`
before the rules and given to `upcalld trace --setup`), and `flows.txt`: one trace per line, `FLOW` or
`FLOW<TAB>STATE[<TAB>STATE...]` where each STATE is a --ct-next argument
(`trk,est`). `expected.tsv` has one line per pass of each trace:

    flow<TAB>ct-next<TAB>pass<TAB>banner<TAB>datapath actions<TAB>megaflow

Recirculation ids depend on the switch's history, so both sides are
normalized: within one trace, ids are renumbered 0x1, 0x2, ... in order of
first appearance. OVSDIR is an instance started by
../shared/tools/ovs-peer/ovs-up.sh (8 ports, like the oracle corpus).
"""
import os
import re
import subprocess
import sys
import time

PEER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                    "../../../shared/tools/ovs-peer")
RULE = "=" * 79


def passes(text):
    """Splits ofproto/trace (or upcalld trace) output into passes:
    [(banner, actions, megaflow)]."""
    out = []
    banner, actions, megaflow = "", None, None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line == RULE:
            if actions is not None or megaflow is not None:
                out.append((banner, actions, megaflow))
            body = []
            i += 1
            while i < len(lines) and lines[i] != RULE:
                body.append(lines[i].strip())
                i += 1
            banner = " | ".join(b for b in body if b)
            actions = megaflow = None
        elif line.startswith("Megaflow: "):
            megaflow = line[len("Megaflow: "):]
        elif line.startswith("Datapath actions: "):
            actions = line[len("Datapath actions: "):]
        i += 1
    out.append((banner, actions, megaflow))
    return out


def normalize(rows):
    """Renumbers recirculation ids in order of first appearance."""
    ids = {}

    def sub(m):
        old = int(m.group(2), 16)
        new = ids.setdefault(old, len(ids) + 1)
        return "%s%#x" % (m.group(1), new)

    pat = re.compile(r"(recirc\(|recirc_id=)(0x[0-9a-f]+)")
    res = []
    for row in rows:
        res.append(tuple(pat.sub(sub, c) if c else c for c in row))
    return res


def traces(case):
    with open(os.path.join(case, "flows.txt")) as f:
        for raw in f:
            line = raw.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            parts = line.split("\t")
            yield parts[0].strip(), [p.strip() for p in parts[1:] if p.strip()]


def setup(case):
    """The case's setup commands (`add-group GROUP`), as (command, argument)."""
    path = os.path.join(case, "setup")
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path):
        line = line.strip()
        if line and not line.startswith("#"):
            cmd, arg = line.split(None, 1)
            out.append((cmd, arg))
    return out


def record(ovsdir, cases):
    sys.path.insert(0, PEER)
    from ovs_unixctl import Unixctl, UnixctlError
    c = Unixctl.for_dir(ovsdir)
    mgmt = "unix:%s/br0.mgmt" % ovsdir
    for case in cases:
        # Added in file order on an empty table: among subtables of equal
        # priority OVS then looks up in the order they were created, as
        # upcalld does (replace-flows would add them in hash order).
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-flows", mgmt], check=True)
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "del-groups", mgmt], check=True)
        time.sleep(0.3)
        for cmd, arg in setup(case):
            # OpenFlow 1.5: in 1.3 ovs-ofctl silently drops selection_method.
            subprocess.run(["ovs-ofctl", "-O", "OpenFlow15", cmd, mgmt, arg], check=True)
        subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flows",
                        mgmt, os.path.join(case, "rules.of13")], check=True)
        time.sleep(0.3)
        rows = []
        for flow, states in traces(case):
            args = ["br0", flow]
            for s in states:
                args += ["--ct-next", s]
            try:
                text = c.call("ofproto/trace", args)
            except UnixctlError as e:
                rows.append((flow, ",".join(states) and " ".join(states), "0", "",
                             "ERROR", str(e).replace("\n", " ").strip()))
                continue
            for n, p in enumerate(normalize(passes(text))):
                rows.append((flow, " ".join(states), str(n)) + tuple(x or "" for x in p))
        with open(os.path.join(case, "expected.tsv"), "w") as f:
            for r in rows:
                f.write("\t".join(r) + "\n")
        print("%s: %d passes" % (case, len(rows)))


def compare(upcalld, cases):
    total = same = 0
    for case in cases:
        want = [l.rstrip("\n").split("\t")
                for l in open(os.path.join(case, "expected.tsv"))]
        got = []
        for flow, states in traces(case):
            cmd = [upcalld, "trace", "--rules", os.path.join(case, "rules.of13")]
            # The bridge's zone timeout policies, as the peer was configured.
            if os.path.exists(os.path.join(case, "bridge.toml")):
                cmd += ["--config", os.path.join(case, "bridge.toml")]
            if os.path.exists(os.path.join(case, "setup")):
                cmd += ["--setup", os.path.join(case, "setup")]
            for s in states:
                cmd += ["--ct-next", s]
            cmd.append(flow)
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                got.append([flow, " ".join(states), "0", "", "ERROR",
                            r.stderr.strip().replace("\n", " ")])
                continue
            for n, p in enumerate(normalize(passes(r.stdout))):
                got.append([flow, " ".join(states), str(n)] + [x or "" for x in p])
        for i in range(max(len(want), len(got))):
            w = want[i] if i < len(want) else None
            g = got[i] if i < len(got) else None
            total += 1
            if w == g:
                same += 1
            else:
                print("%s:\n  want %s\n  got  %s" % (case, w, g))
    print("%d/%d passes identical" % (same, total))
    return same == total


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in ("record", "compare"):
        print(__doc__)
        sys.exit(2)
    if sys.argv[1] == "record":
        record(os.path.abspath(sys.argv[2]), sys.argv[3:])
    else:
        sys.exit(0 if compare(sys.argv[2], sys.argv[3:]) else 1)


if __name__ == "__main__":
    main()
