//! Ending a git network wait at the GitRepository's `timeout`.
//!
//! libgit2 blocks its thread in `poll`/`recv` while a server says nothing, and its only bound
//! on that wait is one process-wide socket timeout ([`crate::git::bound_network_waits`]), not
//! the object's own `spec.timeout`. Progress callbacks cannot help: a silent server calls none.
//! [`DeadlineWatch`] closes that gap for the socket transports (`http://`, `https://`,
//! `git://`): from the deadline on, it interrupts the thread running the git operation with a
//! signal whose handler does nothing and does not restart system calls, so the blocked `poll`
//! or `recv` returns `EINTR`, libgit2 fails the operation, and the caller reports the timeout.
//! It repeats every [`NUDGE_INTERVAL`] until the operation has returned, as a signal that
//! arrives between two waits interrupts nothing.
//!
//! `ssh://` is not covered: libssh2 retries its socket waits after `EINTR`, so a stalled ssh
//! server still holds the thread until the process-wide socket timeout.

use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often a thread past its deadline is interrupted again until its operation returns.
const NUDGE_INTERVAL: Duration = Duration::from_millis(50);

/// Interrupts the thread that created it once `deadline` has passed, until it is dropped.
/// Create it on the thread about to run a blocking git operation; drop it when the operation
/// returned.
pub struct DeadlineWatch {
    done: Arc<(Mutex<bool>, Condvar)>,
    watcher: Option<std::thread::JoinHandle<()>>,
}

impl DeadlineWatch {
    /// Starts watching `deadline` for the current thread.
    pub fn start(deadline: Instant) -> Self {
        let done = Arc::new((Mutex::new(false), Condvar::new()));
        let Some(target) = interrupt::current_thread() else {
            return Self {
                done,
                watcher: None,
            };
        };
        let shared = done.clone();
        let watcher = std::thread::Builder::new()
            .name("git-deadline".into())
            .spawn(move || watch(&shared, deadline, target))
            .ok();
        Self { done, watcher }
    }
}

impl Drop for DeadlineWatch {
    fn drop(&mut self) {
        let (lock, wake) = &*self.done;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        wake.notify_all();
        if let Some(watcher) = self.watcher.take() {
            let _ = watcher.join();
        }
    }
}

/// The watcher thread: sleeps until the deadline (or until the operation is done), then
/// interrupts `target` every [`NUDGE_INTERVAL`] while the operation runs. The thread is only
/// signalled while `done` is false under the lock, and the watched thread sets it (in
/// [`DeadlineWatch::drop`]) before it can exit, so the signal never reaches another thread.
fn watch(done: &(Mutex<bool>, Condvar), deadline: Instant, target: interrupt::Thread) {
    let (lock, wake) = done;
    let mut finished = lock.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        if *finished {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        finished = wake
            .wait_timeout(finished, deadline - now)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
    while !*finished {
        interrupt::signal(target);
        finished = wake
            .wait_timeout(finished, NUDGE_INTERVAL)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    }
}

#[cfg(unix)]
#[allow(unsafe_code)]
mod interrupt {
    //! The signal: `SIGURG`, which nothing else in the process sends or expects (its default
    //! action is to be ignored, and no socket here has out-of-band data delivery enabled).

    use std::sync::OnceLock;

    /// A thread that can be interrupted.
    pub type Thread = libc::pthread_t;

    const SIGNAL: libc::c_int = libc::SIGURG;

    extern "C" fn ignore(_: libc::c_int) {}

    /// Installs the do-nothing handler (once per process), without `SA_RESTART`, so the
    /// signal ends a blocked system call with `EINTR`. False when it cannot be installed.
    fn install() -> bool {
        static INSTALLED: OnceLock<bool> = OnceLock::new();
        *INSTALLED.get_or_init(|| {
            // SAFETY: a zeroed sigaction is a valid value to fill in; the handler is an
            // `extern "C"` function that touches nothing, so it is async-signal-safe.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = ignore as extern "C" fn(libc::c_int) as libc::sighandler_t;
                action.sa_flags = 0;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(SIGNAL, &action, std::ptr::null_mut()) == 0
            }
        })
    }

    /// The calling thread, when the handler is in place.
    pub fn current_thread() -> Option<Thread> {
        // SAFETY: pthread_self has no preconditions.
        install().then(|| unsafe { libc::pthread_self() })
    }

    /// Interrupts `thread`'s blocking system call, if it is in one.
    pub fn signal(thread: Thread) {
        // SAFETY: `thread` is alive: the caller signals only while the watched thread has not
        // finished its operation (see `watch`).
        unsafe {
            libc::pthread_kill(thread, SIGNAL);
        }
    }
}

#[cfg(not(unix))]
mod interrupt {
    //! No interruption off Unix: the process-wide socket timeout is the only bound there.

    /// A thread that can be interrupted (none).
    pub type Thread = ();

    /// Never available.
    pub fn current_thread() -> Option<Thread> {
        None
    }

    /// Does nothing.
    pub fn signal(_: Thread) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn a_blocked_read_returns_at_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        // Accepts and never writes, so the read below blocks until interrupted.
        let _hold = std::thread::spawn(move || {
            let conn = listener.accept();
            std::thread::sleep(Duration::from_secs(60));
            drop(conn);
        });
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            let watch = DeadlineWatch::start(Instant::now() + Duration::from_millis(200));
            let mut buf = [0u8; 16];
            let read = s.read(&mut buf);
            drop(watch);
            let _ = tx.send(read.map_err(|e| e.kind()));
        });
        // Without the watch the read lasts until the server closes, a minute from now.
        let read = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the read was not interrupted");
        assert_eq!(read, Err(std::io::ErrorKind::Interrupted));
    }
}
