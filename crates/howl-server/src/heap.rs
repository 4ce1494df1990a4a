//! How the server's heap gives memory back to the OS.
//!
//! A server that runs for months must return to its baseline RSS after load goes away (seed
//! 002). glibc's defaults work against that: freed chunks stay in per-thread arenas, and its
//! mmap threshold grows with every large buffer freed, so encoded frames end up carved out of
//! the arenas and fragment them. Measured on seed002 (50 vanished clients after a 50-client
//! warm-up, RSS after the idle trim): with the defaults the anonymous RSS moved -300 to +460 kB
//! run to run; with one arena and a fixed 64 KiB mmap threshold it moved +8 to +52 kB.

/// Buffers at least this large (keyframes, socket and framing buffers) get their own mapping,
/// unmapped on free, instead of a chunk of an arena. Setting it also stops glibc from raising
/// the threshold dynamically.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 64 * 1024;

/// One arena: the server runs a two-thread runtime plus short blocking tasks, and glibc's
/// per-thread caches absorb the small allocations, so more arenas would only add fragmentation.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const ARENA_MAX: libc::c_int = 1;

/// Sets the allocator policy. Call first thing in `main`, before any thread starts.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn configure() {
    // SAFETY: mallopt only changes glibc's tuning parameters; it is called before any other
    // thread exists. A refusal (return 0) leaves the defaults, which are correct, only larger.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn configure() {}

/// Returns freed heap pages to the OS. Called by the engine once it has been idle a moment.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
pub fn release_freed() {
    // SAFETY: malloc_trim only walks glibc's own arenas under their locks; it has no
    // preconditions and returns whether it released anything.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn release_freed() {}
