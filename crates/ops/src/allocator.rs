//! Settings of the C allocator (glibc's malloc, which Rust's global allocator calls) for a
//! long-running controller process, made once at start-up before any thread exists.
//!
//! glibc's defaults suit short programs, not a controller whose reconciles run on many threads
//! (tokio's workers and its blocking pool, where renders run) and briefly hold large buffers
//! (list responses, artifacts): each thread that meets contention gets an arena of its own (up to
//! eight per core), and memory freed in an arena mostly stays with the process; a large buffer
//! freed also raises the size above which buffers come straight from the kernel, so later ones of
//! that size are kept too. Measured with `make bench-vs-flux` at 1000 Syncs (README, Performance),
//! the settings below took the render controller's peak from 42.4 to 38.8 MiB.
//!
//! An environment that sets `MALLOC_ARENA_MAX`, `MALLOC_MMAP_THRESHOLD_` or
//! `MALLOC_TRIM_THRESHOLD_` (or `GLIBC_TUNABLES`) keeps its own values.
//!
//! Why glibc and not another global allocator: measured with `bench_vs_flux` at 1000 Syncs
//! (`BENCH_SYSTEMS=plumb`, the same release binaries with the other allocator preloaded, on a
//! machine shared with other builds, load 9-15), glibc tuned as here peaked at 15.6/26.4/28.3 MiB
//! (source/render/sync). jemalloc 5.3, the library `tikv-jemallocator` builds (two arenas,
//! background purging, one-second decay), peaked at 17.7/29.7/30.1 MiB: its code added 1.2 MiB
//! of file-backed pages to each process and its arenas and thread caches 0.9-4 MiB of anonymous
//! memory before the fleet, more than it saved on the fleet. mimalloc 2.0 had passed glibc's
//! peaks before 615 of the 1000 Syncs were Ready (render 33.5, sync 31.6 MiB). A `malloc_trim`
//! every second on top of these settings changed the peaks by no more than runs of the same
//! binaries differ under that load (render 30.3 against 32.2 MiB, sync 28.1 against 29.8 MiB,
//! both runs beside another run's namespaces being deleted): the resident set grows with what
//! the caches hold, not with memory glibc keeps free.

/// Arenas at most: two serve a controller's few busy threads without lock contention.
pub const ARENA_MAX: i32 = 2;
/// Allocations of this size and above are mapped from the kernel and returned to it when freed
/// (a fixed value: glibc otherwise raises it after each large free).
pub const MMAP_THRESHOLD: i32 = 128 * 1024;
/// Free memory at the top of the heap beyond this is returned to the kernel.
pub const TRIM_THRESHOLD: i32 = 256 * 1024;

/// The variables through which a person may set the same parameters; any of them set leaves the
/// allocator as the environment configured it.
const ENVIRONMENT: [&str; 4] = [
    "MALLOC_ARENA_MAX",
    "MALLOC_MMAP_THRESHOLD_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
];

/// Applies [`ARENA_MAX`], [`MMAP_THRESHOLD`] and [`TRIM_THRESHOLD`] unless the environment sets
/// allocator parameters. Call it first in `main`, before any thread is started. Returns whether
/// the settings were made (false elsewhere than on glibc, or when the environment decides).
pub fn tune_for_controller() -> bool {
    if ENVIRONMENT.iter().any(|v| std::env::var_os(v).is_some()) {
        return false;
    }
    set_parameters()
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_parameters() -> bool {
    // SAFETY: mallopt only changes malloc's tuning parameters, under malloc's own lock; it is
    // called at start-up, and the values are ones glibc documents as valid for these parameters.
    #[allow(unsafe_code)]
    let results = unsafe {
        [
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX),
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD),
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        ]
    };
    // mallopt returns 1 on success, 0 on error.
    results.iter().all(|r| *r == 1)
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_parameters() -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_accepts_the_controller_settings() {
        // Each test binary is its own process; setting these here changes only its allocator.
        if ENVIRONMENT.iter().any(|v| std::env::var_os(v).is_some()) {
            return;
        }
        let applied = tune_for_controller();
        assert_eq!(applied, cfg!(all(target_os = "linux", target_env = "gnu")));
        // The allocator still serves large and small requests after the change.
        let big = vec![7u8; 4 * MMAP_THRESHOLD as usize];
        let small: Vec<u8> = (0..64).collect();
        assert_eq!(
            big.iter().map(|b| u64::from(*b)).sum::<u64>(),
            7 * big.len() as u64
        );
        assert_eq!(small.len(), 64);
    }
}
