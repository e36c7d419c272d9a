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
//! Over ssh the signal is not enough: libssh2 retries its socket waits after `EINTR`. For ssh
//! remotes [`DeadlineWatch::start_closing`] also shuts down (`shutdown(2)`, not `close`: the
//! descriptor stays libssh2's) the socket the thread is blocked on, found from the thread's
//! current system call (`/proc/self/task/<tid>/syscall`: a `poll` on one descriptor or a
//! `recvfrom`/`read`) and checked to be a TCP connection to the remote's port. libssh2 then
//! reads end-of-file, fails the operation, and the caller reports the timeout. Off Linux the
//! process-wide socket timeout stays the bound for ssh.

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
        Self::watching(deadline, None)
    }

    /// Like [`DeadlineWatch::start`], for a transport that retries interrupted waits (ssh):
    /// past the deadline it also shuts down the TCP connection to `peer_port` the thread is
    /// blocked on.
    pub fn start_closing(deadline: Instant, peer_port: u16) -> Self {
        Self::watching(deadline, Some(peer_port))
    }

    fn watching(deadline: Instant, peer_port: Option<u16>) -> Self {
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
            .spawn(move || watch(&shared, deadline, target, peer_port))
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
/// interrupts `target` every [`NUDGE_INTERVAL`] while the operation runs (and, with a
/// `peer_port`, shuts down the connection it waits on). The thread is only signalled while
/// `done` is false under the lock, and the watched thread sets it (in [`DeadlineWatch::drop`])
/// before it can exit, so the signal never reaches another thread, and the descriptor read
/// from its system call is one it still waits on.
fn watch(
    done: &(Mutex<bool>, Condvar),
    deadline: Instant,
    target: interrupt::Thread,
    peer_port: Option<u16>,
) {
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
        if let Some(port) = peer_port {
            interrupt::shut_down_awaited_connection(target, port);
        }
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

    /// A thread that can be interrupted: its pthread handle and, on Linux, its kernel id.
    #[derive(Clone, Copy)]
    pub struct Thread {
        handle: libc::pthread_t,
        #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
        tid: i64,
    }

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
        install().then(|| Thread {
            handle: unsafe { libc::pthread_self() },
            tid: thread_id(),
        })
    }

    #[cfg(target_os = "linux")]
    fn thread_id() -> i64 {
        // SAFETY: gettid has no preconditions.
        i64::from(unsafe { libc::gettid() })
    }

    #[cfg(not(target_os = "linux"))]
    fn thread_id() -> i64 {
        0
    }

    /// Interrupts `thread`'s blocking system call, if it is in one.
    pub fn signal(thread: Thread) {
        // SAFETY: `thread` is alive: the caller signals only while the watched thread has not
        // finished its operation (see `watch`).
        unsafe {
            libc::pthread_kill(thread.handle, SIGNAL);
        }
    }

    /// Shuts down the TCP connection to `port` that `thread` is blocked on, if it is blocked
    /// on one; true when it did.
    #[cfg(target_os = "linux")]
    pub fn shut_down_awaited_connection(thread: Thread, port: u16) -> bool {
        let Some(fd) = awaited_descriptor(thread.tid) else {
            return false;
        };
        if peer_port(fd) != Some(port) {
            return false;
        }
        // SAFETY: shutdown on a descriptor only ends its connection; the descriptor stays
        // open and owned by the blocked thread, which is still in its operation (see `watch`).
        unsafe { libc::shutdown(fd, libc::SHUT_RDWR) == 0 }
    }

    /// Off Linux there is no way to find the descriptor: the process-wide socket timeout
    /// stays the bound.
    #[cfg(not(target_os = "linux"))]
    pub fn shut_down_awaited_connection(_: Thread, _: u16) -> bool {
        false
    }

    /// The descriptor the thread `tid` waits on: the one descriptor of a `poll`/`ppoll`, or
    /// the first argument of a `recvfrom`/`recvmsg`/`read`. None when it runs or is in
    /// another call.
    #[cfg(target_os = "linux")]
    fn awaited_descriptor(tid: i64) -> Option<libc::c_int> {
        // "<number> <arg1> ... <arg6> <sp> <pc>" while blocked in a call; "running" or
        // "-1 <sp> <pc>" otherwise.
        let call = std::fs::read_to_string(format!("/proc/self/task/{tid}/syscall")).ok()?;
        let mut words = call.split_whitespace();
        let number: libc::c_long = words.next()?.parse().ok()?;
        let mut args = words.map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).ok());
        let (first, second) = (args.next()??, args.next()??);
        let polls = [
            #[cfg(target_arch = "x86_64")]
            libc::SYS_poll,
            libc::SYS_ppoll,
        ];
        if polls.contains(&number) {
            if second != 1 {
                return None;
            }
            // The first field of the `struct pollfd` it points at, read through /proc/self/mem
            // so that memory freed meanwhile is an error, not a fault.
            use std::os::unix::fs::FileExt;
            let mem = std::fs::File::open("/proc/self/mem").ok()?;
            let mut fd = [0u8; 4];
            mem.read_exact_at(&mut fd, first).ok()?;
            return Some(libc::c_int::from_ne_bytes(fd));
        }
        if [libc::SYS_recvfrom, libc::SYS_recvmsg, libc::SYS_read].contains(&number) {
            return libc::c_int::try_from(first).ok();
        }
        None
    }

    /// The remote port of a connected TCP socket (v4 or v6).
    #[cfg(target_os = "linux")]
    fn peer_port(fd: libc::c_int) -> Option<u16> {
        // SAFETY: a zeroed sockaddr_storage is valid, and getpeername writes at most `len`
        // bytes into it; on error nothing is read.
        unsafe {
            let mut addr: libc::sockaddr_storage = std::mem::zeroed();
            let mut len = libc::socklen_t::try_from(std::mem::size_of_val(&addr)).ok()?;
            if libc::getpeername(fd, (&raw mut addr).cast(), &mut len) != 0 {
                return None;
            }
            match libc::c_int::from(addr.ss_family) {
                libc::AF_INET => {
                    let v4: libc::sockaddr_in = std::ptr::read((&raw const addr).cast());
                    Some(u16::from_be(v4.sin_port))
                }
                libc::AF_INET6 => {
                    let v6: libc::sockaddr_in6 = std::ptr::read((&raw const addr).cast());
                    Some(u16::from_be(v6.sin6_port))
                }
                _ => None,
            }
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

    /// Does nothing.
    pub fn shut_down_awaited_connection(_: Thread, _: u16) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A loopback server that accepts one connection and sends nothing for a minute.
    fn silent_peer() -> std::net::SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let conn = listener.accept();
            std::thread::sleep(Duration::from_secs(60));
            drop(conn);
        });
        addr
    }

    #[test]
    fn a_blocked_read_returns_at_the_deadline() {
        // Never writes, so the read below blocks until interrupted.
        let addr = silent_peer();
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

    /// What libssh2 does: wait in `poll` again whenever it is interrupted, until the socket
    /// is readable, then read. Returns what the read got (0 = end of file).
    #[cfg(target_os = "linux")]
    #[allow(unsafe_code)]
    fn wait_as_libssh2_does(s: &std::net::TcpStream) -> isize {
        use std::os::fd::AsRawFd;
        let fd = s.as_raw_fd();
        loop {
            let mut p = libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd, no timeout.
            let rc = unsafe { libc::poll(&mut p, 1, -1) };
            if rc < 0 {
                continue;
            }
            let mut buf = [0u8; 16];
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return n;
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_wait_that_retries_after_signals_ends_when_its_connection_is_shut_down() {
        let addr = silent_peer();
        // Another connection of the process, to another port, must be left alone.
        let other = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let bystander = std::net::TcpStream::connect(other.local_addr().unwrap()).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let s = std::net::TcpStream::connect(addr).unwrap();
            let watch = DeadlineWatch::start_closing(
                Instant::now() + Duration::from_millis(200),
                addr.port(),
            );
            let got = wait_as_libssh2_does(&s);
            drop(watch);
            let _ = tx.send(got);
        });
        let got = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the wait did not end at the deadline");
        assert_eq!(got, 0, "the shut-down connection reads end of file");
        bystander
            .set_nonblocking(true)
            .expect("the other connection is still open");
        let mut buf = [0u8; 1];
        assert_eq!(
            (&bystander).read(&mut buf).map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "the other connection was not shut down"
        );
    }
}
