#!/usr/bin/env bash
# Runs the kernel datapath tests inside the QEMU VM with Linux's real
# openvswitch module (../shared/tools/kernel-vm). The VM scripts install what
# they need (qemu, busybox, the Debian kernel and ovs-dpctl) with apt.
# Inside the VM OVS_KERNEL_REQUIRED=1, so a missing module fails the run.
# Arguments are extra cargo build arguments (e.g. --release).
set -euo pipefail
cd "$(dirname "$0")/.."
# shared/ sits beside the checkout (CI) or a level higher (worktrees).
KVM=${KERNEL_VM_DIR:-}
for cand in ../shared/tools/kernel-vm ../../shared/tools/kernel-vm; do
  [[ -z $KVM && -x $cand/cargo-test-in-vm.sh ]] && KVM=$cand
done
if [[ -z $KVM || ! -x $KVM/cargo-test-in-vm.sh ]]; then
  echo "kernel-vm: shared/tools/kernel-vm/cargo-test-in-vm.sh not found" >&2
  exit 1
fi
# bookworm's qemu-system-x86 cannot be installed next to a newer qemu-utils
# from backports; install both at bookworm's version first.
if ! command -v qemu-system-x86_64 >/dev/null; then
  apt-get update >/dev/null
  ver=$(apt-cache madison qemu-system-x86 | awk 'NR==1 {print $3}')
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    --allow-downgrades "qemu-system-x86=$ver" "qemu-utils=$ver" >/dev/null
fi
# As the VM scripts' cargo-test-in-vm.sh, with the tunnel vport modules
# (vport-vxlan, vport-geneve), conntrack timeout policies (nfnetlink_cttimeout)
# and the FTP helper that ct(alg=ftp) attaches (nf_conntrack_ftp)
# loaded too, which it cannot be asked for.
# The image lives in this checkout's target/ so that two checkouts testing at
# once never boot each other's test binaries.
OUT=${KVM_OVS_OUT:-$PWD/target/kernel-vm}
mapfile -t EXES < <(cargo test --no-run --message-format=json -p upcalld "$@" \
  --test kernel_datapath --test kernel_daemon --test kernel_traffic --test kernel_tunnel \
  --test kernel_actions |
  python3 -c '
import sys, json
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m.get("profile", {}).get("test"):
        print(m["executable"])')
[[ ${#EXES[@]} -gt 0 ]] || { echo "kernel-vm: no test executables" >&2; exit 1; }
SCRIPT=$(mktemp /tmp/upcalld-kernel-vm.XXXXXX)
trap 'rm -f "$SCRIPT"' EXIT
BIN_ARGS=()
{
  echo '#!/bin/sh'
  echo 'export OVS_KERNEL_REQUIRED=1 OVS_KERNEL_VM=1 RUST_BACKTRACE=1'
  echo 'cd /; failed=0'
  for exe in "${EXES[@]}"; do
    name=$(basename "$exe")
    BIN_ARGS+=(--bin "$exe:/tests/$name")
    echo "echo \"[vm] running /tests/$name\""
    echo "/tests/$name --test-threads=1 || { echo \"[vm] FAILED: $name (rc=\$?)\"; failed=1; }"
  done
  echo 'exit $failed'
} > "$SCRIPT"
"$KVM/build-initramfs.sh" -o "$OUT" --iproute2 --ovs-dpctl --strip \
  -m vport-vxlan -m vport-geneve -m nfnetlink_cttimeout -m nf_conntrack_ftp "${BIN_ARGS[@]}" --script "$SCRIPT"
exec "$KVM/run-vm.sh" -o "$OUT" -t "${KVM_OVS_TIMEOUT:-600}"
