//! Returning freed heap memory to the operating system.

/// Hand the allocator's free pages back to the OS (glibc keeps the memory of many small
/// frees, such as a million vocabulary strings, resident after they are freed; the next
/// stage's peak would count it). A no-op where the allocator is not glibc's.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only reads and updates the allocator's own state; 0 = keep no pad.
    unsafe {
        libc::malloc_trim(0);
    }
}
