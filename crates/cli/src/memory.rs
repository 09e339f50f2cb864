//! The allocator's settings for the CLI's training runs (glibc on Linux; elsewhere nothing).
//!
//! Burn's CPU backend allocates a fresh buffer for most tensor ops, and the CaR head at 10,033
//! documents makes them large: 15 MB for the `[384, n_docs]` weight and its Adam moments, 10 MB
//! for a batch's logits. glibc hands blocks this size out with `mmap` and trims the heap's top
//! when they are freed, so every step paid for fresh pages (7 s of kernel time in a 40 s head
//! training). Keeping freed memory in the heap for reuse cut that run by 18 % (crates/core/
//! PERFORMANCE.md, stop 20); the process keeps its peak footprint until it exits.

/// Serves every block from the heap (none from `mmap`) and never trims it. A threshold alone
/// stops at glibc's 32 MiB maximum, and the encoder's feed-forward output at batch 32 is larger
/// (`[32 · 221, 1536]` f32: 43 MB), so those blocks were still mapped and faulted in afresh at
/// every layer (crates/core/PERFORMANCE.md, stop 21).
pub fn keep_freed_memory_for_reuse() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only changes allocator parameters; it is called once at start-up, before
    // any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
