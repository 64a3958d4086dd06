//! SIGINT and SIGTERM while a window or a load runs: they end it early, what was measured is
//! still printed (marked partial), and the exit status is the shell's 128 + signal.
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

/// The signal that asked us to stop, or 0.
static SIGNAL: AtomicI32 = AtomicI32::new(0);
/// Set with [`SIGNAL`]: the load generator's stop flag (`LoadConfig::stop`).
pub static STOP_LOAD: AtomicBool = AtomicBool::new(false);

extern "C" fn request_stop(signal: libc::c_int) {
    SIGNAL.store(signal, Ordering::Relaxed);
    STOP_LOAD.store(true, Ordering::Relaxed);
}

/// From now on SIGINT and SIGTERM ask us to stop rather than kill us.
pub fn catch() {
    // SAFETY: the handler only stores to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, request_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, request_stop as *const () as libc::sighandler_t);
    }
}

/// Back to the default dispositions, so that a second Ctrl-C stops us at once: `profile` calls
/// it when its window ends, before naming the stacks; `bench` when the run has been printed.
pub fn release() {
    // SAFETY: restoring the default dispositions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
    }
}

/// The signal that asked us to stop, if one did.
pub fn caught() -> Option<i32> {
    match SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        signal => Some(signal),
    }
}

/// Exits with the shell's status for a command ended by `signal`.
pub fn exit(signal: i32) -> ! {
    std::process::exit(128 + signal)
}
