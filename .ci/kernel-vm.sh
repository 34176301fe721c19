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
KVM_OVS_TIMEOUT=${KVM_OVS_TIMEOUT:-600} \
  "$KVM/cargo-test-in-vm.sh" -p upcalld "$@" --test kernel_datapath --test kernel_daemon --test kernel_traffic -- --test-threads=1
