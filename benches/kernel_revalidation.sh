#!/usr/bin/env bash
# A revalidation round over 200 000 kernel flows, none changed: upcalld and
# Open vSwitch 3.1 in one sitting of the kernel VM (TCG), the same frames.
#
# The frames are the mac workload (../shared/bench/setup-rate-20000-mac.tsv)
# ten times over, each copy with its own fourth source MAC byte, so every
# frame makes its own megaflow. Each switch sets them all up (paced, closed
# loop), then sits idle for a few revalidation rounds (500 ms each, flows
# kept), and reports its last round's duration: OVS's `upcall/show` "dump
# duration" (wall clock; OVS logs "unreasonably long" above 2 s), upcalld's
# `ctl upcall-show` "dump duration" (CPU and wall clock).
#
# Usage (from the checkout, as root): benches/kernel_revalidation.sh
# Takes about 20 minutes; run it under /tmp/upcalld-vm.lock. Environment:
# COPIES (default 10: 200 000 frames).
set -euo pipefail
cd "$(dirname "$0")/.."
KVM=
for cand in ../shared/tools ../../shared/tools; do
  [[ -z $KVM && -x $cand/kvm-ovs-bench/run.sh ]] && KVM=$cand
done
[[ -n $KVM ]] || { echo "shared/tools/kvm-ovs-bench not found" >&2; exit 1; }
BENCH=$KVM/../bench
COPIES=${COPIES:-10}
WORK=$(mktemp -d /tmp/upcalld-reval.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

# The TSV: copy k sets the source MAC's fourth byte (hex digits 19-20 of
# the frame) to k.
python3 - "$BENCH/setup-rate-20000-mac.tsv" "$WORK/setup-rate-20000-mac.tsv" "$COPIES" <<'PY'
import sys
src, dst, copies = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = [l.rstrip("\n").split("\t") for l in open(src) if l.strip() and not l.startswith("#")]
with open(dst, "w") as out:
    for k in range(copies):
        for port, frame in rows:
            out.write(f"{port}\t{frame[:18]}{k:02x}{frame[20:]}\n")
PY
cp "$BENCH/setup-rate.rules" "$BENCH/setup-rate-20000-natural.tsv" "$WORK/"
N=$(wc -l < "$WORK/setup-rate-20000-mac.tsv")
echo "frames: $N"

# OVS: one paced pass, then the hit pass (all frames again) and upcall/show.
BENCH_DIR=$WORK KVM_OVS_MEM=2048 VM_TIMEOUT=1800 \
  "$KVM/kvm-ovs-bench/run.sh" --repeats 1 --workloads mac --no-warmup \
  --variants "q4m:-Q 4194304" -o "$WORK/ovs-out" >"$WORK/ovs.log" 2>&1 || true
grep -aE '^BLAST|upcall/show|unreasonably|VM-EXIT' "$WORK/ovs.log" | sed 's/^/ovs: /'
ovs_ms=$(grep -a 'upcall/show mac-q4m' "$WORK/ovs.log" | sed -n 's/.*dump duration : \([0-9]*\)ms.*/\1/p' | tail -1)
ovs_flows=$(grep -a 'upcall/show mac-q4m' "$WORK/ovs.log" | sed -n 's/.*flows : (current \([0-9]*\)).*/\1/p' | tail -1)

# upcalld: the same frames, one pass (batch 64), 5 s idle, upcall-show.
BATCHES=64 SETTLE_S=5 KVM_OVS_MEM=2048 KVM_OVS_TIMEOUT=1800 \
  benches/kernel_blast.sh "$WORK/setup-rate-20000-mac.tsv" -Q 4194304 >"$WORK/upcalld.log" 2>&1 || true
grep -av 'flow dump failed' "$WORK/upcalld.log" | sed 's/^/upcalld: /'
up_cpu=$(sed -n 's/.*dump duration : \([0-9]*\)ms (cpu).*/\1/p' "$WORK/upcalld.log" | tail -1)
up_wall=$(sed -n 's/.*dump duration : .*, \([0-9]*\)ms (wall).*/\1/p' "$WORK/upcalld.log" | tail -1)
up_flows=$(sed -n 's/.*flows *: (current \([0-9]*\)).*/\1/p' "$WORK/upcalld.log" | tail -1)
echo "REVALIDATION flows_ovs=${ovs_flows:-?} round_ms_ovs=${ovs_ms:-?} flows_upcalld=${up_flows:-?} round_ms_upcalld_wall=${up_wall:-?} round_ms_upcalld_cpu=${up_cpu:-?}"
