//! Runs the kernel datapath tests (tests/kernel_datapath.rs,
//! tests/kernel_daemon.rs, tests/kernel_traffic.rs, tests/kernel_tunnel.rs,
//! tests/kernel_actions.rs) inside the QEMU VM of
//! ../shared/tools/kernel-vm, where Linux's real openvswitch module is
//! loaded, through `.ci/kernel-vm.sh`; so that `cargo test` alone covers
//! the kernel backend.
//!
//! Skips, saying why, inside the VM itself, without root, without the VM
//! scripts, or where QEMU cannot be had; once the VM boots, any failing
//! test in it fails this one.

use std::path::{Path, PathBuf};
use std::process::Command;

fn skip(why: &str) {
    eprintln!("SKIPPED kernel VM tests: {why}");
}

/// The kernel-vm scripts: `shared/` sits beside the checkout (CI) or one
/// level higher (a worktree).
fn kernel_vm_dir(root: &Path) -> Option<PathBuf> {
    ["../shared/tools/kernel-vm", "../../shared/tools/kernel-vm"]
        .iter()
        .map(|rel| root.join(rel))
        .find(|d| d.join("cargo-test-in-vm.sh").is_file())
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

#[test]
fn kernel_datapath_tests_pass_in_the_vm() {
    if std::env::var_os("OVS_KERNEL_VM").is_some() {
        skip("already inside the VM, where the kernel tests run directly");
        return;
    }
    if !rustix::process::geteuid().is_root() {
        skip("not root (the VM scripts install packages and build an initramfs)");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let Some(kvm) = kernel_vm_dir(root) else {
        skip("no shared/tools/kernel-vm beside the checkout");
        return;
    };
    if !have("qemu-system-x86_64") && !have("apt-get") {
        skip("no qemu-system-x86_64 and no apt-get to install it");
        return;
    }
    // The outer `cargo test` built in the release profile; building the VM
    // tests in the same profile reuses its artifacts.
    let profile_args: &[&str] = if cfg!(debug_assertions) {
        &[]
    } else {
        &["--release"]
    };
    let out = Command::new("bash")
        .arg(root.join(".ci/kernel-vm.sh"))
        .args(profile_args)
        .env("KERNEL_VM_DIR", &kvm)
        .current_dir(root)
        .output()
        .expect("running .ci/kernel-vm.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let log = format!("{stdout}\n--- stderr ---\n{stderr}");
    let results: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("test result:"))
        .collect();
    eprintln!("kernel VM: {}", results.join("\n kernel VM: "));
    assert!(
        stdout.contains("VM-EXIT="),
        "the VM did not run to the end (exit {:?}):\n{log}",
        out.status.code()
    );
    assert!(
        out.status.success() && stdout.contains("VM-EXIT=0"),
        "kernel tests failed in the VM:\n{log}"
    );
    assert!(
        results.iter().any(|l| l.contains("test result: ok")),
        "no test ran in the VM:\n{log}"
    );
}
