//! [`prefetch`]: a hint that some memory is about to be read.
//!
//! netsim runs a thousand cores in one process, and every gossip delivery touches a
//! different core's peer table and holder map, gigabytes that no cache holds: each
//! delivery waits for two or three loads from main memory, one after another. Asked a few
//! deliveries ahead ([`super::Core::prefetch_have`]), the CPU fetches those lines while
//! earlier deliveries run, so the waits overlap instead of adding up. The daemon, with one
//! core, has no use for it; it changes nothing but timing.

/// Asks the CPU to bring the cache line holding `value` into its caches. A no-op on
/// targets other than x86-64.
#[allow(unsafe_code)] // `_mm_prefetch` has no safe wrapper in std; see the SAFETY note.
pub(super) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing the program can observe and cannot fault, whatever
    // the address (here one from a reference). SSE, which it needs, is part of x86-64.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            (value as *const T).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}
