#!/usr/bin/env bash
# mkfinding.sh DIR : DIR has rules.of13 + flows.txt; writes expected.tsv (OVS, after a settle
# pass) and actual.tsv (ours), and prints a side-by-side.  Env: UPCALLD, OVSDIR (default /tmp/ovsf).
set -e
D=$1; O=${OVSDIR:-/tmp/ovsf}; PEER=${OVS_PEER:-/work/shared/tools/ovs-peer}
$PEER/ovs-trace.sh $O $D/rules.of13 $D/flows.txt >/dev/null 2>&1
sleep 0.3
python3 $PEER/ovs_trace.py $O $D/flows.txt 2>/dev/null | cut -f1-3 > $D/expected.tsv
${UPCALLD:?set UPCALLD} trace --rules $D/rules.of13 --flows $D/flows.txt > $D/actual.tsv 2>$D/actual.err || true
paste -d'\n' <(cut -f2,3 $D/expected.tsv | sed 's/^/OVS : /') <(cut -f2,3 $D/actual.tsv | sed 's/^/ours: /') 
cat $D/actual.err
