//! libvirt's QEMU driver opens on one fixed CPU.
//!
//! When it opens, the driver records the CPUID of the CPU its thread
//! happens to run on, and later throws its cached QEMU capabilities away
//! ("Outdated capabilities ...: host cpuid changed", a ~4 s probe of every
//! QEMU binary) when that CPUID differs from the one the cache was made
//! with. On machines whose CPUs answer CPUID differently (virtual CPUs of
//! one guest do: APIC ids, cache topology), a command that the scheduler
//! put on another CPU than the last one re-probed: every other command,
//! at random. So the opening thread is held on the lowest CPU this
//! process may use (its cgroup's cpuset, not its affinity: `taskset`
//! must not change which CPU the driver sees), and gets its own affinity
//! back afterwards.

/// Runs `f` with the calling thread on the first CPU it is allowed on,
/// then restores its affinity. If the affinity cannot be read or set
/// (not Linux, a seccomp policy), `f` runs where it is: a re-probe costs
/// time, not correctness.
pub fn on_first_cpu<T>(f: impl FnOnce() -> T) -> T {
    let Some(saved) = affinity() else { return f() };
    let pinned = online().into_iter().any(|cpu| {
        // SAFETY: cpu_set_t is plain data; CPU_SET bounds-checks the index.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        unsafe { libc::CPU_SET(cpu, &mut one) };
        set_affinity(&one)
    });
    let out = f();
    if pinned {
        set_affinity(&saved);
    }
    out
}

/// The calling thread's affinity.
fn affinity() -> Option<libc::cpu_set_t> {
    // SAFETY: the set is plain data and its size is passed with it; pid 0
    // is the calling thread.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    (rc == 0).then_some(set)
}

fn set_affinity(set: &libc::cpu_set_t) -> bool {
    // SAFETY: as in `affinity`.
    unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) == 0 }
}

/// The online CPUs in order, from `/sys/devices/system/cpu/online`
/// ("0-3,6"); CPU 0 alone if that cannot be read.
fn online() -> Vec<usize> {
    std::fs::read_to_string("/sys/devices/system/cpu/online").ok().map(|s| cpu_list(&s)).filter(|l| !l.is_empty()).unwrap_or_else(|| vec![0])
}

/// A kernel CPU list ("0-3,6") as numbers; ranges past the size of a CPU
/// set are cut there.
fn cpu_list(s: &str) -> Vec<usize> {
    let max = 8 * std::mem::size_of::<libc::cpu_set_t>();
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) else { continue };
        out.extend((a..=b.min(max.saturating_sub(1))).take(max));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_cpu_lists_are_read_as_the_kernel_writes_them() {
        assert_eq!(cpu_list("0-3,6\n"), vec![0, 1, 2, 3, 6]);
        assert_eq!(cpu_list("1"), vec![1]);
        assert_eq!(cpu_list(""), Vec::<usize>::new());
        assert_eq!(cpu_list("x,2"), vec![2]);
        assert_eq!(cpu_list("0-99999999").len(), 8 * std::mem::size_of::<libc::cpu_set_t>());
    }

    #[test]
    fn the_thread_runs_on_the_first_cpu_and_gets_its_affinity_back() {
        // In a thread of its own: the test harness's other tests keep theirs.
        std::thread::spawn(|| {
            let before = affinity().unwrap();
            let first = online()[0];
            let inside = on_first_cpu(|| {
                // SAFETY: sched_getcpu has no preconditions.
                (affinity().unwrap(), unsafe { libc::sched_getcpu() })
            });
            let mut only: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(first, &mut only) };
            assert!(unsafe { libc::CPU_EQUAL(&inside.0, &only) }, "held on CPU {first} alone");
            assert_eq!(inside.1, first as i32);
            assert!(unsafe { libc::CPU_EQUAL(&affinity().unwrap(), &before) }, "its own affinity back");
        })
        .join()
        .unwrap();
    }
}
