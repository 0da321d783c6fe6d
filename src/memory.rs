//! Transparent huge pages for this process, and the children it starts.
//!
//! mimalloc asks for huge pages where the system gives them on request
//! (Debian's default, `madvise`): each first touch then zeroes 2 MiB.
//! Planning 100,000 hosts spent ~0.6 s of system time doing that and held
//! 20 MB more (book: benchmarks.md), so `main` turns them off. The setting
//! is inherited by children, and QEMU started by the embedded libvirt
//! driver is one: guest memory wants huge pages, so they are turned back on
//! before libvirt is connected.

/// Off for this process and the children it starts from now on.
pub fn no_huge_pages() {
    set_disabled(1);
}

/// Back to the system's setting.
pub fn allow_huge_pages() {
    set_disabled(0);
}

fn set_disabled(flag: libc::c_ulong) {
    // SAFETY: prctl with integer arguments only; a failure (an old kernel)
    // leaves the system's setting, which is only slower.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, flag, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong);
    }
}

/// Returns what this thread freed to the system now, rather than after
/// mimalloc's purge delay, which passes only when this thread allocates
/// again: the syntax tree of a large project, freed on the main thread
/// once lowered, stayed resident while other threads built the plan
/// (100,000 written hosts: ~100 MB, 30-40 MB more at the peak once the
/// tree was parsed on several threads). A no-op where mimalloc allocates
/// nothing (it is the allocator of `mln` only).
pub fn return_freed() {
    // SAFETY: no arguments but a flag; mimalloc initialises itself.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

#[cfg(test)]
mod tests {
    fn disabled() -> libc::c_int {
        // SAFETY: as above.
        unsafe { libc::prctl(libc::PR_GET_THP_DISABLE, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong, 0 as libc::c_ulong) }
    }

    #[test]
    fn huge_pages_go_off_and_come_back() {
        super::no_huge_pages();
        assert_eq!(disabled(), 1);
        super::allow_huge_pages();
        assert_eq!(disabled(), 0);
    }
}
