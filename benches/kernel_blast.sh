#!/usr/bin/env bash
# Flow setups through `upcalld run` on Linux's openvswitch module, measured
# the way Open vSwitch's figures in ../shared/tools/kernel-vm/README.md were:
# inside the kernel VM, ovs-blast sends the frames of a setup-rate workload
# into the datapath's ports and polls the datapath's counters until every
# megaflow is installed (or the flow count stops changing).
#
# One pass per writer batch size (1, 8, 64 ops per datapath transaction),
# each on a fresh datapath with 2 handlers (each reading its own upcall
# socket) and 1 revalidator (Open vSwitch's 2 handlers and 1 revalidator on this VM),
# the flow limit out of the way and flows kept for a minute (MAX_IDLE_MS).
# Prints ovs-blast's BLAST line (setups_per_s, upcalls_per_s, lost) and the
# daemon's upcall-show (flow ops and batches: ops per sendmsg).
#
# Usage (from the checkout, as root):  benches/kernel_blast.sh [WORKLOAD] [BLAST-ARGS...]
#   WORKLOAD: mac (default, 20000 megaflows), natural (5304 megaflows), or
#             the path of a TSV of frames (in_port<TAB>hex)
#   BLAST-ARGS: extra ovs-blast options, e.g. -r 8000 (pace to 8000 frames/s)
# Environment: BATCHES (default "1 8 64"), SETTLE_S (seconds to wait after a
#   pass before upcall-show, so that its dump duration is a round over every
#   flow installed; default 0), MAX_IDLE_MS (both daemons' max-idle,
#   default 60000: flows kept for a minute), KVM_OVS_MEM (the VM's MiB,
#   default 512),
#   UPCALLD (a built binary to run instead of building target/release/upcalld,
#   so that a long run is not rebuilt by edits made meanwhile), UPCALLD_B (a
#   second binary: each pass then runs both, interleaved, in the same VM
#   sitting, the second labelled batchN-b: an A/B comparison), REPEATS
#   (passes of each binary per batch size, default 1), PERF=1 (profile each
#   pass with the host's perf, cpu-clock over the whole VM, and print the
#   share of samples per thread, per thread and object, and the top symbols
#   as PERF lines), OVS=1 (Open vSwitch 3.1 in the same VM sitting: each
#   pass of upcalld follows a pass of ovs-vswitchd, labelled ovs, started
#   fresh with 2 handlers and 1 revalidator, the same rules, frames and
#   ovs-blast options, its flow limit 200000, so that both daemons' CPU per
#   thread (THREADS, CPU) and their rates come from the same minutes; the
#   binaries come from ../shared/tools/kvm-ovs-bench/build.sh's cache).
set -euo pipefail
cd "$(dirname "$0")/.."
WORKLOAD=${1:-mac}
shift || true
BLAST_ARGS=("$@")
KVM=${KERNEL_VM_DIR:-}
for cand in ../shared/tools/kernel-vm ../../shared/tools/kernel-vm; do
  [[ -z $KVM && -x $cand/cargo-test-in-vm.sh ]] && KVM=$cand
done
[[ -n $KVM ]] || { echo "kernel-vm scripts not found" >&2; exit 1; }
BENCH=$(dirname "$KVM")/../bench
FRAMES=$BENCH/setup-rate-20000-$WORKLOAD.tsv
[[ -f $WORKLOAD ]] && FRAMES=$WORKLOAD
BATCHES=${BATCHES:-1 8 64}
REPEATS=${REPEATS:-1}
PERF=${PERF:-}
SETTLE_S=${SETTLE_S:-0}
MAX_IDLE_MS=${MAX_IDLE_MS:-60000}
[[ -f $FRAMES ]] || { echo "no workload $FRAMES" >&2; exit 1; }

# In the checkout (as .ci/kernel-vm.sh): two trees benching at once must not
# boot each other's image.
OUT=${KVM_OVS_OUT:-$PWD/target/kernel-vm-blast}
WORK=$(mktemp -d /tmp/upcalld-blast.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

command -v gcc >/dev/null || { apt-get update >/dev/null; apt-get install -y -qq gcc libc6-dev >/dev/null; }
gcc -O2 -static -Wall -o "$WORK/ovs-blast" "$KVM/blaster/ovs-blast.c" -lpthread
if [[ -z ${UPCALLD:-} ]]; then
  cargo build --release --bin upcalld
  UPCALLD=${CARGO_TARGET_DIR:-target}/release/upcalld
fi

# The workload's input ports and the rules' output ports.
PORTS=$( { cut -f1 "$FRAMES" | grep -v '^#' | sort -un; printf '2\n3\n4\n'; } | sort -un)
{
  echo 'rules = "/bench/setup-rate.rules"'
  echo 'handlers = 2'
  echo 'revalidators = 1'
  echo "max_idle_ms = $MAX_IDLE_MS"
  # Setups are measured, not the dynamic flow limit: it would start at
  # 10000 and, with the emulated VM's slow dumps, shrink.
  echo 'flow_limit = 200000'
  echo 'flow_limit_start = 200000'
  echo 'metrics_addr = ""'
  echo 'control_socket = "/tmp/upcalld.sock"'
  echo 'batch_size = BATCH'
  echo '[datapath]'
  echo 'type = "kernel"'
  echo 'name = "upcalld"'
  echo 'on_exit = "delete"'
  for p in $PORTS; do printf '[[port]]\nname = "vp%s"\nnumber = %s\n' "$p" "$p"; done
} > "$WORK/upcalld.toml.in"

VARIANTS=a
[[ -n ${UPCALLD_B:-} ]] && VARIANTS="a b"
OVS_ARGS=()
if [[ -n ${OVS:-} ]]; then
  VARIANTS="ovs $VARIANTS"
  ROOT=${KVM_OVS_CACHE:-/tmp/kvm-ovs/cache}/ovs-bench-root
  [[ -f $ROOT/.done ]] || "$KVM/../kvm-ovs-bench/build.sh" -o "$WORK/ovs-out" >/dev/null
  for b in usr/sbin/ovsdb-server usr/bin/ovsdb-tool usr/lib/openvswitch-switch/ovs-vswitchd \
    usr/bin/ovs-vsctl usr/bin/ovs-appctl usr/bin/ovs-ofctl usr/bin/ovs-dpctl; do
    OVS_ARGS+=(--bin "$ROOT/$b:/usr/sbin/$(basename "$b")")
  done
  OVS_ARGS+=(--file "$ROOT/usr/share/openvswitch/vswitch.ovsschema:/usr/share/openvswitch/vswitch.ovsschema"
    --module nf_conntrack_netlink)
  export KVM_OVS_MEM=${KVM_OVS_MEM:-1024}
fi

cat > "$WORK/blast.sh" <<EOF
#!/bin/sh
IP=/sbin/ip
echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6
echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6
for p in $(echo $PORTS); do
  \$IP link add vp\$p type veth peer name vb\$p
  \$IP link set vp\$p up; \$IP link set vb\$p up
done
threads() {
  echo "THREADS label=\$2\$(for t in /proc/\$1/task/*; do awk '/^Name:/{printf " %s", \$2}' \$t/status; awk '{i=index(\$0, ") "); split(substr(\$0, i+2), f, " "); printf "=u%.2f+s%.2f", f[12]/100, f[13]/100}' \$t/stat; awk '/^voluntary_ctxt/{v=\$2} /^nonvoluntary_ctxt/{w=\$2} END{printf ",cs%d+%d", v, w}' \$t/status; done)"
}
perf_start() {
  [ -n "$PERF" ] && { /bin/perf record -e cpu-clock -F 499 -a -o /tmp/perf.data >/dev/null 2>&1 & perfpid=\$!; }
}
perf_report() {
  if [ -n "$PERF" ]; then
    kill -INT \$perfpid; wait \$perfpid
    for sort in comm comm,dso comm,dso,sym; do
      /bin/perf report -i /tmp/perf.data --stdio --no-children --sort \$sort --percent-limit 0.2 2>/dev/null \\
        | grep -v '^#' | grep -v '^\$' | head -150 | sed "s/^/PERF \$1 /"
    done
  fi
}
# Open vSwitch 3.1 from a fresh database each pass, as upcalld starts fresh.
ovs_pass() {
  mkdir -p /etc/openvswitch /var/run/openvswitch /var/log/openvswitch
  rm -f /etc/openvswitch/conf.db
  ovsdb-tool create /etc/openvswitch/conf.db /usr/share/openvswitch/vswitch.ovsschema
  ovsdb-server /etc/openvswitch/conf.db --remote=punix:/var/run/openvswitch/db.sock \\
    --pidfile --detach --no-chdir --log-file
  ovs-vsctl --no-wait init
  ovs-vsctl --no-wait set Open_vSwitch . other_config:max-idle=$MAX_IDLE_MS other_config:flow-limit=200000
  # OVS 3.1.0 starts no handler in per-CPU mode before 10 s of uptime
  # (fixed in 3.1.1).
  while [ "\$(awk '{print int(\$1)}' /proc/uptime)" -lt 11 ]; do sleep 0.2; done
  ovs-vswitchd unix:/var/run/openvswitch/db.sock --pidfile --detach --no-chdir --log-file -vconsole:off
  vspid=\$(cat /var/run/openvswitch/ovs-vswitchd.pid)
  args="-- add-br br0 -- set bridge br0 datapath_type=system fail-mode=secure protocols=OpenFlow10,OpenFlow13"
  for p in $(echo $PORTS); do args="\$args -- add-port br0 vp\$p -- set Interface vp\$p ofport_request=\$p"; done
  ovs-vsctl --timeout=120 \$args
  ovs-ofctl -O OpenFlow13 add-flows br0 /bench/setup-rate.rules
  ovs-appctl upcall/set-flow-limit 200000 >/dev/null
  perf_start
  /bin/ovs-blast -d ovs-system -l ovs -P \$vspid ${BLAST_ARGS[*]:-} /bench/frames.tsv
  perf_report ovs
  threads \$vspid ovs
  sleep $SETTLE_S
  ovs-appctl upcall/show | sed "s/^/ovs: /"
  ovs-appctl -t ovs-vswitchd exit --cleanup
  ovs-appctl -t ovsdb-server exit
  while [ -e /proc/\$vspid ]; do sleep 0.1; done
}
for b in $BATCHES; do
for r in \$(seq $REPEATS); do
for v in $VARIANTS; do
  [ \$v = ovs ] && { ovs_pass; continue; }
  bin=/bin/upcalld; l=batch\$b
  [ \$v = b ] && { bin=/bin/upcalld-b; l=batch\$b-b; }
  sed "s/BATCH/\$b/" /bench/upcalld.toml.in > /tmp/upcalld.toml
  RUST_LOG=warn \$bin run --config /tmp/upcalld.toml &
  pid=\$!
  i=0
  until \$bin ctl --socket /tmp/upcalld.sock upcall-show >/dev/null 2>&1; do
    i=\$((i+1)); [ \$i -gt 300 ] && { echo "daemon did not start"; exit 1; }
    sleep 0.1
  done
  perf_start
  /bin/ovs-blast -d upcalld -l \$l -P \$pid ${BLAST_ARGS[*]:-} /bench/frames.tsv
  perf_report \$l
  # Each thread's user and system CPU (s) and voluntary+involuntary
  # context switches since the daemon started: where a setup's CPU goes.
  threads \$pid \$l
  sleep $SETTLE_S
  \$bin ctl --socket /tmp/upcalld.sock upcall-show | sed "s/^/\$l: /"
  kill -TERM \$pid; wait \$pid
done
done
done
EOF

EXTRA_BINS=()
[[ -n ${UPCALLD_B:-} ]] && EXTRA_BINS=(--bin "$UPCALLD_B:/bin/upcalld-b")
[[ -n $PERF ]] && EXTRA_BINS+=(--bin "$(command -v perf):/bin/perf")
"$KVM/build-initramfs.sh" -o "$OUT" --iproute2 --strip \
  --bin "$UPCALLD:/bin/upcalld" "${EXTRA_BINS[@]}" "${OVS_ARGS[@]}" --bin "$WORK/ovs-blast:/bin/ovs-blast" \
  --file "$FRAMES:/bench/frames.tsv" --file "$BENCH/setup-rate.rules:/bench/setup-rate.rules" \
  --file "$WORK/upcalld.toml.in:/bench/upcalld.toml.in" --script "$WORK/blast.sh"
"$KVM/run-vm.sh" -o "$OUT" -t "${KVM_OVS_TIMEOUT:-600}" | grep -aE '^(BLAST|CPU|THREADS|PERF|batch|ovs:|VM-EXIT|daemon)|error|panicked'
