#!/usr/bin/env python3
"""Conjunctions and learn next to Open vSwitch 3.1, in one sitting.

Two rule sets on the flow-setup benchmark's packets (the `mac` workload of
../shared/tools/ovs-peer: every packet has its own source MAC, so every
packet is an upcall):

  conjunction  10 000 conjunctive flows: 5 000 `nw_src` clauses and 5 000
               `nw_dst` clauses of one conjunction (the cross product would
               be 25 000 000 flows), its conj_id rule, a default;
  learn        a learning switch: every packet runs
               learn(table=1,eth_dst=eth_src,load:in_port->reg0), so every
               upcall learns a rule (one learn action per upcall).

Each round runs OVS once per rule set (a fresh ovs-peer instance, the
packets injected through its dummy datapath) and then upcalld's
`bench setup-rate` on the same rules and packets RUNS times; medians are
printed: upcalls/s, µs per upcall (miss pass minus hit pass), and, for
learn, rules learned per second.

    python3 tools/conj_learn_sitting.py target/release/upcalld [--n 20000] [--rounds 2] [--runs 3]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PEER = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "tools", "ovs-peer"))
sys.path.insert(0, PEER)
import ovs_setup_rate  # noqa: E402

N_CLAUSES = 5000


def conjunction_rules():
    """10 000 clause flows over the sources and destinations of the first
    packets, the conj_id rule, the blocked-MAC rule of the benchmark (so
    that megaflows match dl_src) and a default."""
    srcs, dsts = [], []
    for i in range(4 * N_CLAUSES):
        f = ovs_setup_rate.pkt_fields(i, "mac")
        if len(srcs) < N_CLAUSES and f["src"] not in srcs:
            srcs.append(f["src"])
        if len(dsts) < N_CLAUSES and f["dst"] not in dsts:
            dsts.append(f["dst"])
    r = ["table=0,priority=1000,dl_src=%s,actions=drop" % ovs_setup_rate.BLOCKED_MAC]
    r += ["table=0,priority=100,ip,nw_src=%s,actions=conjunction(7,1/2)" % s for s in srcs]
    r += ["table=0,priority=100,ip,nw_dst=%s,actions=conjunction(7,2/2)" % d for d in dsts]
    r.append("table=0,priority=100,conj_id=7,ip,actions=output:2")
    r.append("table=0,priority=0,actions=output:3")
    return r


def learn_rules():
    return [
        "table=0,priority=1000,dl_src=%s,actions=drop" % ovs_setup_rate.BLOCKED_MAC,
        "table=0,priority=0,actions=learn(table=1,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],"
        "load:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15]),resubmit(,1)",
        "table=1,priority=0,actions=output:2",
    ]


WORKLOADS = {"conjunction": conjunction_rules, "learn": learn_rules}


def write_workload(tmp, name, n):
    rules = os.path.join(tmp, name + ".rules")
    with open(rules, "w") as f:
        f.write("\n".join(WORKLOADS[name]()) + "\n")
    packets = os.path.join(tmp, "packets-%d.tsv" % n)
    if not os.path.exists(packets):
        # The injection order of ovs_setup_rate.py: 100 packets a port a
        # round over ports 11..42.
        with open(packets, "w") as f:
            for i in range(n):
                port = 11 + (i // 100) % 32
                frame = ovs_setup_rate.build_frame(ovs_setup_rate.pkt_fields(i, "mac"))
                f.write("%d\t%s\n" % (port, frame.hex()))
    return rules, packets


def ovs_run(name, n, tmp):
    """ovs_setup_rate.py with this workload's rules, on a fresh instance."""
    d = os.path.join(tmp, "ovs-" + name)
    subprocess.run([os.path.join(PEER, "ovs-up.sh"), d, "4"], check=True,
                   capture_output=True)
    summary = os.path.join(tmp, "ovs-%s.json" % name)
    code = ("import sys; sys.path.insert(0, %r); import ovs_setup_rate as m; "
            "sys.path.insert(0, %r); import conj_learn_sitting as w; "
            "m.gen_rules = w.WORKLOADS[%r]; "
            "sys.argv = ['ovs_setup_rate', %r, %r, '--mode', 'mac', '--json', %r]; m.main()"
            % (PEER, HERE, name, d, str(n), summary))
    try:
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                       text=True)
        rules_after = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "unix:%s/br0.mgmt" % d],
            check=True, capture_output=True, text=True).stdout
    finally:
        subprocess.run([os.path.join(PEER, "ovs-down.sh"), d], capture_output=True)
    with open(summary) as f:
        run = json.load(f)
    passes = {p["pass_"]: p for p in run["passes"]}
    miss, hit = passes["miss"], passes["hit"]
    learned = sum(1 for ln in rules_after.splitlines() if "table=1," in ln and "dl_dst=" in ln)
    return dict(upcalls=miss["upcalls"], miss_s=miss["wall_s"], hit_s=hit["wall_s"],
                megaflows=miss["new_flows"], learned=learned)


def upcalld_run(binary, rules, packets):
    out = subprocess.run([binary, "bench", "setup-rate", "--rules", rules,
                          "--packets", packets],
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    return dict(upcalls=r["upcalls"], miss_s=r["miss_pass_s"], hit_s=r["hit_pass_s"],
                megaflows=r["megaflows"], learned=r.get("rules_learned", 0))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("upcalld")
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.rounds):
            for name in WORKLOADS:
                rules, packets = write_workload(tmp, name, args.n)
                results.setdefault(("ovs", name), []).append(ovs_run(name, args.n, tmp))
                for _ in range(args.runs):
                    results.setdefault(("upcalld", name), []).append(
                        upcalld_run(args.upcalld, rules, packets))
    for (who, name), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        med = lambda key: statistics.median(r[key] for r in runs)  # noqa: E731
        upcalls = med("upcalls")
        line = (f"{name:11} {who:7} n={len(runs)}  {upcalls / med('miss_s'):8.0f} upcalls/s  "
                f"{(med('miss_s') - med('hit_s')) / max(upcalls, 1) * 1e6:6.2f} us/upcall  "
                f"miss {med('miss_s') * 1e3:7.1f} ms  megaflows {med('megaflows'):.0f}")
        if name == "learn":
            line += f"  rules learned {med('learned'):.0f} ({med('learned') / med('miss_s'):.0f}/s)"
        print(line)


if __name__ == "__main__":
    main()
