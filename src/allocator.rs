//! glibc malloc settings for a process whose caches hold 100,000s of small
//! objects. Filling them parses list responses of hundreds of MB; glibc
//! keeps what they freed (per arena, one per thread by default) and the
//! RSS stays at the peak. One arena (threads keep their own small-object
//! caches) and a periodic trim give it back.

use std::time::Duration;

/// How often freed heap is returned to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Caps malloc at one arena; call before any thread starts.
#[allow(unsafe_code)]
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator parameters; called before
    // other threads exist.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

/// Returns freed heap pages to the OS every [`TRIM_EVERY`], forever.
#[allow(unsafe_code)]
pub async fn trim_periodically() {
    loop {
        tokio::time::sleep(TRIM_EVERY).await;
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        // SAFETY: malloc_trim is thread-safe; it takes the arenas' locks.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}
