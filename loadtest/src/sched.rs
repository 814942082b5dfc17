//! Yielding the CPU to a server on the same machine.
//!
//! On a small machine the load generator and the node share the cores, and every
//! moment the node's shard thread waits for one while a client thread runs is
//! counted against the node. In the idle scheduling class the load generator runs
//! only when the node does not want the core: what a load generator on another
//! machine would be. Its own sending is then late at times, which the measurements
//! do not count (frames carry the time they were actually sent, and receive times
//! are the kernel's).
#![allow(unsafe_code)]

/// Put the calling thread, and every thread it starts afterwards, in `SCHED_IDLE`.
pub fn yield_cpu() -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: a plain system call on the calling thread (pid 0) with a valid
    // parameter struct that outlives it.
    let r = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
