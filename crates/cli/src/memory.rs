//! The memory set-up of the binaries: mimalloc as the global allocator, without transparent
//! huge pages.
//!
//! Why mimalloc: under 32 calls in flight, glibc's malloc/free (and their arena locks) were
//! about a fifth of a service's CPU (`perf`, docs/benchmarks.md); with mimalloc the same
//! workloads ran 19–30 % faster.
//!
//! Why no huge pages: mimalloc reserves large aligned regions, and on a kernel whose THP mode
//! is `always` every touched 2 MiB of them becomes resident. An idle service then took 33–49
//! MiB instead of 18–29 MiB. Disabling THP for the process (`prctl(PR_SET_THP_DISABLE)`) at the
//! start of `main`, before the runtime allocates, brings it back to 19–29 MiB. Child processes
//! inherit the setting.

/// The global allocator of the `tenantry` binary and the benchmark.
pub type Allocator = mimalloc::MiMalloc;

/// Asks the kernel not to back this process's memory with transparent huge pages. Call first
/// thing in `main`. A kernel without the control (not Linux, or too old) is left as it is: the
/// process then only uses more memory, which is not worth failing for.
pub fn disable_transparent_huge_pages() {
    #[cfg(target_os = "linux")]
    {
        let _ = rustix::thread::disable_transparent_huge_pages(true);
    }
}
