#!/usr/bin/env python3
"""The setup-rate benchmark next to Open vSwitch 3.1, in one sitting.

Machines here are noisy, so upcalld's figures are only compared with OVS's
measured in the same sitting: each round runs OVS once per workload
(../shared/tools/ovs-peer/ovs-setup-rate.sh, a fresh instance a run) and
then upcalld's `bench setup-rate` RUNS times per thread placement, and the
medians and quartiles of each are printed.

    python3 tools/ovs_sitting.py target/release/upcalld [--rounds 3] [--runs 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared"))
OVS_SETUP_RATE = os.path.join(SHARED, "tools", "ovs-peer", "ovs-setup-rate.sh")
BENCH = os.path.join(SHARED, "bench")
MODES = ("mac", "natural")
PLACEMENTS = ("auto", "none")


def upcalld_run(binary, mode, placement):
    out = subprocess.run(
        [binary, "bench", "setup-rate",
         "--rules", os.path.join(BENCH, "setup-rate.rules"),
         "--packets", os.path.join(BENCH, f"setup-rate-20000-{mode}.tsv"),
         "--placement", placement],
        capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def ovs_run(mode):
    with tempfile.TemporaryDirectory() as tmp:
        summary = os.path.join(tmp, "summary.json")
        subprocess.run([OVS_SETUP_RATE, os.path.join(tmp, "ovs"), "20000",
                        "--mode", mode, "--json", summary],
                       capture_output=True, text=True, check=True)
        with open(summary) as f:
            run = json.load(f)
    passes = {p["pass_"]: p for p in run["passes"]}
    miss, hit = passes["miss"], passes["hit"]
    return {
        "us_per_upcall": (miss["wall_s"] - hit["wall_s"]) / miss["upcalls"] * 1e6,
        "upcalls_per_s": run["upcalls_per_s"],
        "megaflows": miss["flows_after"],
        "upcalls": miss["upcalls"],
        "miss_pass_s": miss["wall_s"],
        "hit_pass_s": hit["wall_s"],
    }


def quartiles(values):
    v = sorted(values)
    return v[len(v) // 4], statistics.median(v), v[(3 * len(v)) // 4]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("upcalld")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=7,
                    help="upcalld runs per placement after each OVS run")
    args = ap.parse_args()
    results = {}
    for _ in range(args.rounds):
        for mode in MODES:
            results.setdefault(("ovs", mode), []).append(ovs_run(mode))
            for _ in range(args.runs):
                for placement in PLACEMENTS:
                    results.setdefault((placement, mode), []).append(
                        upcalld_run(args.upcalld, mode, placement))
    for (who, mode), runs in sorted(results.items()):
        q1, med, q3 = quartiles(r["us_per_upcall"] for r in runs)
        print(f"{who:5} {mode:8} n={len(runs):2}  us/upcall median {med:.3f} "
              f"(q1 {q1:.3f}, q3 {q3:.3f})  "
              f"miss {statistics.median(r['miss_pass_s'] for r in runs) * 1e3:.1f} ms  "
              f"hit {statistics.median(r['hit_pass_s'] for r in runs) * 1e3:.1f} ms  "
              f"{statistics.median(r['upcalls_per_s'] for r in runs):.0f} upcalls/s  "
              f"megaflows {sorted({r['megaflows'] for r in runs})}")


if __name__ == "__main__":
    main()
