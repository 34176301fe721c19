//! The actors' threads: their names, and the CPUs they may run on.
//!
//! Placement matters on small machines: each upcall's data crosses from
//! the datapath's receive thread to a handler to the dpif-writer, and a
//! thread that runs where the data was written reads it from its own
//! cache. OVS pins its PMD threads (`pmd-cpu-mask`); here each kind of
//! thread can be given a set of CPUs, and [`datapath_first`] is the
//! placement the daemon starts from beside its userspace datapath.

/// CPUs for each kind of thread; an empty list leaves the thread to the
/// kernel's scheduler.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CpuPlacement {
    pub receivers: Vec<usize>,
    pub handlers: Vec<usize>,
    pub revalidators: Vec<usize>,
    pub writer: Vec<usize>,
}

/// The placement beside the userspace datapath, as OVS places its PMD
/// threads: the datapath's port threads get the first of `cpus` (the
/// first returned list), and so does the dpif-writer, which installs the
/// megaflows those threads read and runs the packets they received (OVS's
/// userspace datapath does both on the PMD's core); the receivers,
/// handlers and revalidators share the other CPUs, so that the slow path
/// never takes the datapath's CPU. None with fewer than two CPUs.
pub fn datapath_first(cpus: &[usize]) -> Option<(Vec<usize>, CpuPlacement)> {
    let (first, rest) = match cpus {
        [first, rest @ ..] if !rest.is_empty() => (vec![*first], rest.to_vec()),
        _ => return None,
    };
    let placement = CpuPlacement {
        receivers: rest.clone(),
        handlers: rest.clone(),
        revalidators: rest,
        writer: first.clone(),
    };
    Some((first, placement))
}

/// Names the calling thread (as `top -H` and perf show it), as OVS names
/// its `handler<N>` and `revalidator<N>` threads. Linux keeps 15 bytes.
pub fn name_current_thread(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, bytes.as_ptr());
    }
}

/// Restricts the calling thread to `cpus`; an empty list changes nothing.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: a zeroed cpu_set_t is the empty set; CPU_SET writes inside it
    // for indices below CPU_SETSIZE, which the filter guarantees.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
            libc::CPU_SET(cpu, &mut set);
        }
        set
    };
    // SAFETY: `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: sched_getaffinity fills the zeroed set it is given.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Vec::new();
        }
        (0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect()
    }
}

/// Names the calling thread and pins it, logging (not failing) when the
/// kernel refuses the CPUs.
pub fn start_thread_as(name: &str, cpus: &[usize]) {
    name_current_thread(name);
    if let Err(e) = pin_current_thread(cpus) {
        tracing::warn!(thread = name, ?cpus, error = %e, "could not pin thread; it runs unpinned");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pinned_thread_runs_only_on_its_cpus() {
        let cpus = allowed_cpus();
        assert!(!cpus.is_empty());
        let one = cpus[cpus.len() - 1];
        let seen = std::thread::spawn(move || {
            start_thread_as("pin-test", &[one]);
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, vec![one]);
        // Other threads keep the process's CPUs.
        assert_eq!(allowed_cpus(), cpus);
    }

    #[test]
    fn datapath_first_gives_the_first_cpu_to_the_datapath_and_writer() {
        assert_eq!(datapath_first(&[3]), None);
        assert_eq!(datapath_first(&[]), None);
        let (datapath, actors) = datapath_first(&[2, 5, 7]).unwrap();
        assert_eq!(datapath, [2]);
        assert_eq!(actors.writer, [2]);
        assert_eq!(actors.handlers, [5, 7]);
        assert_eq!(actors.receivers, [5, 7]);
        assert_eq!(actors.revalidators, [5, 7]);
    }

    #[test]
    fn an_empty_placement_pins_nothing() {
        let cpus = allowed_cpus();
        let seen = std::thread::spawn(|| {
            start_thread_as("unpinned", &[]);
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, cpus);
    }
}
