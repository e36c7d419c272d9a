//! Two different waits for one HTTP/1 timer: a keep-alive connection idle between requests
//! (`--http-idle-timeout`) and a client slowly sending a request's headers
//! (`--http-header-read-timeout`).
//!
//! hyper starts its header-read timer the moment it waits for a request, before any byte of
//! it has arrived, so on its own the idle timeout would be the header timeout. Each connection
//! here gets its own [`WaitTimer`] and [`Tracked`] socket sharing an [`Activity`]: while no
//! byte of the next request has arrived the timer runs to the idle timeout, and from the first
//! byte on to the header timeout counted from that byte.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// What a connection did last: when the first byte of the request being waited for arrived
/// (none yet while idle). Writing a response starts the wait for the next request.
#[derive(Debug, Default)]
pub struct Activity(Mutex<Option<Instant>>);

impl Activity {
    /// A connection that has not received anything yet.
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn first_byte(&self) -> Option<Instant> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn received(&self) {
        let mut first = self.0.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert_with(Instant::now);
    }

    fn responded(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }
}

/// A socket that records its [`Activity`].
#[derive(Debug)]
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// Wraps `inner`, recording into `activity`.
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Self { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.responded();
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.responded();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The timer of one connection: hyper uses it only for its header-read timeout, which this
/// turns into the idle timeout until the first byte of a request arrives.
#[derive(Debug, Clone)]
pub struct WaitTimer {
    activity: Arc<Activity>,
    header: Duration,
    idle: Duration,
}

impl WaitTimer {
    /// A timer for the connection recording into `activity`.
    pub fn new(activity: Arc<Activity>, header: Duration, idle: Duration) -> Self {
        Self {
            activity,
            header,
            idle,
        }
    }
}

impl hyper::rt::Timer for WaitTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(Plain(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // hyper asks for "now + header timeout" when it starts waiting for a request.
        let _ = deadline;
        let started = Instant::now();
        Box::pin(RequestWait {
            timer: self.clone(),
            started,
            sleep: Box::pin(tokio::time::sleep_until((started + self.idle).into())),
        })
    }
}

/// A plain sleep (hyper's other timers, none of which the HTTP/1 server uses today).
struct Plain(Pin<Box<tokio::time::Sleep>>);

impl Future for Plain {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for Plain {}

/// The wait for one request: until the idle timeout while nothing arrived, then until the
/// header timeout after the first byte. Re-evaluated whenever hyper polls it, which it does
/// each time the connection wakes (so also when the first byte arrives).
struct RequestWait {
    timer: WaitTimer,
    started: Instant,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl RequestWait {
    fn deadline(&self) -> Instant {
        match self.timer.activity.first_byte() {
            None => self.started + self.timer.idle,
            Some(first) => first.max(self.started) + self.timer.header,
        }
    }
}

impl Future for RequestWait {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = tokio::time::Instant::from_std(self.deadline());
        if self.sleep.deadline() != deadline {
            self.sleep.as_mut().reset(deadline);
        }
        self.sleep.as_mut().poll(cx)
    }
}

impl hyper::rt::Sleep for RequestWait {}
