//! One accept loop for every TCP listener (NVHTTP HTTP, NVHTTPS, management API), with the
//! connection hygiene the seeds lacked (000, 001: sockets piling up in CLOSE_WAIT behind a
//! wedged handler):
//!
//! - at most `max_connections` connections are served at once; further ones wait in the
//!   kernel backlog instead of consuming fds and tasks;
//! - the TLS handshake has a deadline;
//! - the request head must arrive within `header_timeout` and fit `max_header_bytes`
//!   (hyper answers 431 and closes when it does not);
//! - every connection has an overall deadline, after which it is dropped;
//! - one request per connection (`Connection: close`), as GameStream hosts do;
//! - every path out of the per-connection task drops the socket, which closes it.

use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-listener limits. See the module docs for what each protects against.
#[derive(Debug, Clone)]
pub struct Limits {
    pub tls_handshake_timeout: Duration,
    pub header_timeout: Duration,
    /// Longest a connection may live, all requests included.
    pub connection_deadline: Duration,
    pub max_connections: usize,
    pub max_header_bytes: usize,
}

/// What a request handler knows about the connection it arrived on.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// DER of the client certificate presented in the TLS handshake, if any.
    pub client_cert: Option<Arc<Vec<u8>>>,
    pub tls: bool,
}

/// Live counters of one listener. The histograms are shared with the metrics registry when
/// made by [`crate::control::metrics::Metrics::listener_stats`]; `default()` gives detached ones.
#[derive(Debug)]
pub struct ListenerStats {
    pub accepted: AtomicU64,
    pub open: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    pub deadline_closes: AtomicU64,
    /// Completed TLS handshakes (failures are counted above, not timed).
    pub tls_handshake_seconds: Histogram,
    /// From a request's head being parsed to its response head being ready.
    pub request_seconds: Histogram,
}

impl Default for ListenerStats {
    fn default() -> Self {
        Self {
            accepted: AtomicU64::new(0),
            open: AtomicU64::new(0),
            tls_handshake_failures: AtomicU64::new(0),
            deadline_closes: AtomicU64::new(0),
            tls_handshake_seconds: tls_handshake_histogram(),
            request_seconds: request_histogram(),
        }
    }
}

/// Times each request of the wrapped service into `hist`. The response body is not awaited:
/// NVHTTP and API bodies are built in full before the head is returned.
struct Timed<S> {
    inner: S,
    hist: Histogram,
}

impl<S, B> hyper::service::Service<http::Request<Incoming>> for Timed<S>
where
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: http::Request<Incoming>) -> Self::Future {
        let start = Instant::now();
        let fut = self.inner.call(req);
        let hist = self.hist.clone();
        Box::pin(async move {
            let r = fut.await;
            hist.observe(start.elapsed().as_secs_f64());
            r
        })
    }
}

/// Decrements `open` however the connection task ends.
struct OpenGuard(Arc<ListenerStats>);
impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Serves `listener` until `shutdown` fires, then stops accepting and returns once every
/// connection task has ended (each is bounded by `connection_deadline`, and dropped at once on
/// shutdown).
pub async fn serve<F, S, B>(
    name: &'static str,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    limits: Limits,
    stats: Arc<ListenerStats>,
    make_service: F,
    shutdown: CancellationToken,
) where
    F: Fn(ConnInfo) -> S + Send + Sync + 'static,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let make_service = Arc::new(make_service);
    let tracker = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break, // the semaphore is never closed; treat as shutdown
            },
            () = shutdown.cancelled() => break,
        };
        let (stream, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning on the error.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        stats.accepted.fetch_add(1, Ordering::Relaxed);
        stats.open.fetch_add(1, Ordering::Relaxed);
        let guard = OpenGuard(stats.clone());
        let tls = tls.clone();
        let limits = limits.clone();
        let make_service = make_service.clone();
        let stop = shutdown.clone();
        let stats = stats.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let _guard = guard;
            let work = handle_conn(stream, peer, tls, &limits, &stats, &*make_service);
            tokio::select! {
                r = tokio::time::timeout(limits.connection_deadline, work) => {
                    if r.is_err() {
                        stats.deadline_closes.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(listener = name, %peer, "connection deadline passed; closing");
                    }
                }
                () = stop.cancelled() => {}
            }
            // The stream was moved into `work`; dropping it above closed the socket.
        });
    }
    tracker.close();
    tracker.wait().await;
    tracing::debug!(listener = name, "stopped");
}

async fn handle_conn<F, S, B>(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    stats: &ListenerStats,
    make_service: &F,
) where
    F: Fn(ConnInfo) -> S,
    S: hyper::service::Service<http::Request<Incoming>, Response = http::Response<B>>
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let _ = stream.set_nodelay(true);
    let local = match stream.local_addr() {
        Ok(a) => a,
        Err(_) => return,
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .keep_alive(false)
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_bytes);
    match tls {
        None => {
            let info = ConnInfo {
                peer,
                local,
                client_cert: None,
                tls: false,
            };
            let svc = Timed {
                inner: make_service(info),
                hist: stats.request_seconds.clone(),
            };
            if let Err(e) = builder.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, error = %e, "http connection ended with an error");
            }
        }
        Some(acceptor) => {
            let start = Instant::now();
            let tls_stream =
                match tokio::time::timeout(limits.tls_handshake_timeout, acceptor.accept(stream))
                    .await
                {
                    Ok(Ok(s)) => {
                        stats
                            .tls_handshake_seconds
                            .observe(start.elapsed().as_secs_f64());
                        s
                    }
                    Ok(Err(e)) => {
                        stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        stats.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(%peer, "TLS handshake deadline passed");
                        return;
                    }
                };
            let client_cert = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| Arc::new(c.as_ref().to_vec()));
            let info = ConnInfo {
                peer,
                local,
                client_cert,
                tls: true,
            };
            let svc = Timed {
                inner: make_service(info),
                hist: stats.request_seconds.clone(),
            };
            if let Err(e) = builder
                .serve_connection(TokioIo::new(tls_stream), svc)
                .await
            {
                tracing::debug!(%peer, error = %e, "https connection ended with an error");
            }
        }
    }
}

/// TLS handshakes on loopback take about a millisecond; a slow client or a busy host a few
/// hundred. 0.5 ms .. ~4 s in 14 doublings, past which the handshake deadline fires anyway.
pub fn tls_handshake_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// Most NVHTTP requests answer in milliseconds; a pairing request waits for the operator's
/// PIN (up to the pairing window). 1 ms .. ~65 s in 17 doublings.
pub fn request_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// One listener's connection counters, read at scrape time.
#[derive(Debug, Clone, Default)]
pub struct ListenerSample {
    pub accepted: u64,
    pub open: u64,
    pub tls_handshake_failures: u64,
    pub deadline_closes: u64,
}

impl ListenerStats {
    /// The counters as they are now, for a metrics scrape.
    pub fn sample(&self) -> ListenerSample {
        let s = self;
        ListenerSample {
            accepted: s.accepted.load(Ordering::Relaxed),
            open: s.open.load(Ordering::Relaxed),
            tls_handshake_failures: s.tls_handshake_failures.load(Ordering::Relaxed),
            deadline_closes: s.deadline_closes.load(Ordering::Relaxed),
        }
    }
}
