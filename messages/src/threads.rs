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
    let bytes: Vec<u8> = name.bytes().filter(|b| *b != 0).take(15).collect();
    let name = std::ffi::CString::new(bytes).expect("NUL bytes were filtered out");
    // A thread keeps its old name if the kernel refuses: only cosmetic.
    let _ = rustix::thread::set_name(&name);
}

/// Restricts the calling thread to `cpus`; an empty list changes nothing.
pub fn pin_current_thread(cpus: &[usize]) -> std::io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    let mut set = rustix::thread::CpuSet::new();
    for &cpu in cpus
        .iter()
        .filter(|&&c| c < rustix::thread::CpuSet::MAX_CPU)
    {
        set.set(cpu);
    }
    rustix::thread::sched_setaffinity(None, &set).map_err(std::io::Error::from)
}

/// The CPUs this process may run on, in order.
pub fn allowed_cpus() -> Vec<usize> {
    match rustix::thread::sched_getaffinity(None) {
        Ok(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Names the calling thread and pins it. A refused pinning is the
/// caller's to log: the thread runs unpinned, which is no reason to stop.
pub fn start_thread_as(name: &str, cpus: &[usize]) -> std::io::Result<()> {
    name_current_thread(name);
    pin_current_thread(cpus)
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
            start_thread_as("pin-test", &[one]).unwrap();
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
            start_thread_as("unpinned", &[]).unwrap();
            allowed_cpus()
        })
        .join()
        .unwrap();
        assert_eq!(seen, cpus);
    }
}
