//! The process's memory: whether its heap may use transparent huge pages.
//!
//! The allocator (mimalloc) asks the kernel for huge pages on its heap
//! (`MADV_HUGEPAGE`). A huge page saves TLB misses once it is in use, but
//! the first touch of a fresh one costs the whole 2 MiB at once, and on a
//! virtual machine whose host takes back the guest's free memory (free
//! page reporting, ballooning: common in clouds) far more: measured on
//! this project's 2-CPU VM, a setup-rate miss pass that runs in 13 ms took
//! 40-60 ms whenever it started a few seconds after other work, the
//! dpif-writer stalled in the kernel clearing fresh huge pages. With 4 KiB
//! pages the same pass takes 13 ms whenever it runs. A slow path meets
//! fresh memory exactly when it is busiest (a burst of new flows after a
//! quiet spell), so upcalld leaves huge pages off unless configured
//! (`transparent_huge_pages = true`).

/// Allows or forbids transparent huge pages for the whole process (Linux's
/// `PR_SET_THP_DISABLE`, which overrides the allocator's `MADV_HUGEPAGE`).
pub fn set_transparent_huge_pages(enabled: bool) -> std::io::Result<()> {
    Ok(rustix::thread::disable_transparent_huge_pages(!enabled)?)
}

/// Whether the process may use transparent huge pages.
pub fn transparent_huge_pages() -> std::io::Result<bool> {
    Ok(!rustix::thread::transparent_huge_pages_are_disabled()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_pages_can_be_turned_off_and_on() {
        let before = transparent_huge_pages().unwrap();
        set_transparent_huge_pages(false).unwrap();
        assert!(!transparent_huge_pages().unwrap());
        set_transparent_huge_pages(true).unwrap();
        assert!(transparent_huge_pages().unwrap());
        set_transparent_huge_pages(before).unwrap();
    }
}
