//! One daemon per control socket, datapath, demo topology and port: each
//! is claimed by an exclusive `flock` on a lock file that holds the
//! claiming daemon's pid, taken before anything on the host is touched.
//! The kernel drops the lock when its holder exits, however it exits, so a
//! lock file left behind never blocks a later start. Lock files are not
//! removed (removing one that another process has just opened would let
//! two daemons hold "the" lock).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A held lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct Lock {
    _file: File,
    pub path: PathBuf,
}

/// Where the locks on host-wide things (the demo, a kernel datapath, a
/// network interface) live.
pub const LOCK_DIR: &str = "/run";

/// Names the network namespace this process runs in, for the locks on
/// what belongs to one (interfaces, kernel datapaths, UDP ports): `/run`
/// is shared by every namespace, and two namespaces may each have an
/// `eth0`. The namespace's inode number stays unique while the daemon
/// lives in it.
pub fn netns_tag() -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/proc/self/ns/net").map_err(|e| {
        anyhow::anyhow!("/proc/self/ns/net: cannot tell the network namespace: {e}")
    })?;
    Ok(format!("net{}", m.ino()))
}

/// The lock file beside a control socket.
pub fn beside(socket: &Path) -> PathBuf {
    let mut name = socket.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Takes the lock at `path` for `what` (e.g. "control socket
/// /run/upcalld.sock"), or says which daemon holds it.
pub fn acquire(path: &Path, what: &str) -> anyhow::Result<Lock> {
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o644)
        .open(path)
        .map_err(|e| {
            anyhow::anyhow!(
                "{}: cannot open the lock file for {what}: {e}",
                path.display()
            )
        })?;
    if let Err(e) = rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e != rustix::io::Errno::WOULDBLOCK {
            let e = std::io::Error::from(e);
            anyhow::bail!("{}: cannot lock it for {what}: {e}", path.display());
        }
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let holder = match text.trim().parse::<u32>() {
            Ok(pid) => format!("upcalld pid {pid}"),
            Err(_) => "another upcalld".to_string(),
        };
        anyhow::bail!(
            "{what} is in use by {holder} (it holds the lock {}); stop it first, or configure another",
            path.display()
        );
    }
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())?;
    Ok(Lock {
        _file: file,
        path: path.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_claim_is_refused_with_the_holders_pid() {
        let dir = std::env::temp_dir().join(format!("upcalld-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let held = acquire(&path, "thing x").unwrap();
        // flock locks belong to the open file description: a second open
        // conflicts even within one process.
        let e = acquire(&path, "thing x").unwrap_err().to_string();
        assert!(e.contains("thing x is in use by upcalld pid"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        drop(held);
        acquire(&path, "thing x").unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
