//! Connection governance: the accept loop `launch` serves with, so that one client holding
//! thousands of sockets cannot take the desk and the kiosks offline.
//!
//! - **Idle and slow clients are closed:** a request's head must arrive within
//!   `idle_timeout` of the connection opening or of the previous response (hyper's header
//!   read timer, which also bounds an idle keep-alive connection and a slowloris head); the
//!   body then has the request guard's own limit (`crate::http`).
//! - **A cap on open connections, overall and per client address.** At either cap the oldest
//!   idle connection (no request in flight) is closed to make room, the address holding the
//!   most going first, so a newcomer is always served while the hoarder loses its own
//!   sockets. Only when every connection in the way is busy is the newcomer refused (a JSON
//!   503).
//! - **File descriptors:** the soft limit is raised to the hard one at start-up, and the
//!   overall cap is kept [`FD_RESERVE`] below it for the database, the upstreams and the
//!   logs. An accept that fails for want of descriptors closes an idle connection and waits
//!   a moment rather than spinning.
//! - **hyper's own errors in the JSON shape:** what hyper answers before any service runs (a
//!   request line or headers it cannot parse or take: 400, 414, 431) leaves with the same
//!   JSON error body as every other error ([`JsonErrorIo`]).

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};
use tower::ServiceExt;

/// Descriptors kept free of connections: SQLite's files, the reader pool, upstream clients,
/// logs.
pub const FD_RESERVE: u64 = 256;

/// The limits a server runs under (from `[http]` in the configuration).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_connections: usize,
    pub max_connections_per_client: usize,
    pub idle_timeout: Duration,
    /// The `Retry-After` of the 503 a newcomer gets when no room can be made for it.
    pub retry_after_secs: u64,
}

impl Limits {
    /// Raises the descriptor limit as far as allowed and keeps the connection cap under it.
    pub fn within_descriptors(mut self) -> Self {
        let soft = match rlimit::increase_nofile_limit(u64::MAX) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read or raise the open-file limit");
                return self;
            }
        };
        let room = soft.saturating_sub(FD_RESERVE).max(16) as usize;
        if room < self.max_connections {
            tracing::warn!(
                open_file_limit = soft,
                configured = self.max_connections,
                using = room,
                "http.max_connections lowered to fit the open-file limit"
            );
            self.max_connections = room;
        }
        self.max_connections_per_client = self.max_connections_per_client.min(self.max_connections);
        self
    }
}

/// One open connection, as the registry sees it.
struct Conn {
    ip: IpAddr,
    /// Requests in flight on it.
    busy: Arc<AtomicUsize>,
    /// When it last started or finished a request (or opened), in ms since the registry began.
    active_at: Arc<AtomicU64>,
    close: Arc<Notify>,
}

/// The open connections and their counts per address.
pub struct Registry {
    limits: Limits,
    began: Instant,
    next_id: AtomicU64,
    inner: Mutex<Inner>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Inner {
    conns: HashMap<u64, Conn>,
    per_ip: HashMap<IpAddr, usize>,
}

impl Inner {
    /// Takes connection `id` off the books (and its address's count), if it is still on them.
    fn forget(&mut self, id: u64) -> Option<Conn> {
        let c = self.conns.remove(&id)?;
        if let Some(n) = self.per_ip.get_mut(&c.ip) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&c.ip);
            }
        }
        Some(c)
    }
}

/// What a connection holds while it is open; dropping it frees its place.
pub struct Admitted {
    registry: Arc<Registry>,
    id: u64,
    busy: Arc<AtomicUsize>,
    active_at: Arc<AtomicU64>,
    close: Arc<Notify>,
}

impl Registry {
    pub fn new(limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            limits,
            began: Instant::now(),
            next_id: AtomicU64::new(0),
            inner: Mutex::default(),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.began.elapsed().as_millis() as u64
    }

    /// Open connections, idle connections closed to make room, and newcomers refused so far.
    pub fn counts(&self) -> (usize, u64, u64) {
        let open = self.inner.lock().map_or(0, |i| i.conns.len());
        (
            open,
            self.evicted.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// Makes room for a connection from `ip` (closing the oldest idle ones in the way) and
    /// registers it; `None` when every connection in the way is busy.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.per_ip.get(&ip).copied().unwrap_or(0) >= self.limits.max_connections_per_client
            && !self.evict_one(&mut inner, Some(ip))
        {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        if inner.conns.len() >= self.limits.max_connections && !self.evict_one(&mut inner, None) {
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Conn {
            ip,
            busy: Arc::new(AtomicUsize::new(0)),
            active_at: Arc::new(AtomicU64::new(self.now_ms())),
            close: Arc::new(Notify::new()),
        };
        let admitted = Admitted {
            registry: self.clone(),
            id,
            busy: conn.busy.clone(),
            active_at: conn.active_at.clone(),
            close: conn.close.clone(),
        };
        inner.conns.insert(id, conn);
        *inner.per_ip.entry(ip).or_default() += 1;
        Some(admitted)
    }

    /// Closes the oldest idle connection: of `ip` when given, else of the address holding
    /// the most connections (then any). False when there is none to close.
    fn evict_one(&self, inner: &mut Inner, ip: Option<IpAddr>) -> bool {
        let target_ip = ip.or_else(|| {
            inner
                .per_ip
                .iter()
                .max_by_key(|(_, n)| **n)
                .map(|(ip, _)| *ip)
        });
        let oldest_idle = |only: Option<IpAddr>| {
            inner
                .conns
                .iter()
                .filter(|(_, c)| only.is_none_or(|ip| c.ip == ip))
                .filter(|(_, c)| c.busy.load(Ordering::SeqCst) == 0)
                .min_by_key(|(_, c)| c.active_at.load(Ordering::Relaxed))
                .map(|(id, _)| *id)
        };
        let victim = oldest_idle(target_ip).or_else(|| {
            if ip.is_some() {
                None
            } else {
                oldest_idle(None)
            }
        });
        let Some(id) = victim else { return false };
        if let Some(c) = inner.forget(id) {
            c.close.notify_one();
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// For an accept that failed for want of descriptors: closes one idle connection.
    fn shed(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        self.evict_one(&mut inner, None);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let mut inner = self
            .registry
            .inner
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        inner.forget(self.id);
    }
}

/// Accepts and serves until `stop` turns true, then lets open connections finish their
/// requests (each closes once idle) and returns when all are closed.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    registry: Arc<Registry>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        while tasks.try_join_next().is_some() {}
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE/ENFILE and the like: make room, then try again shortly.
                tracing::warn!(error = %e, "accept failed; closing an idle connection");
                registry.shed();
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let Some(admitted) = registry.admit(peer.ip()) else {
            tasks.spawn(refuse(stream, registry.limits.retry_after_secs));
            continue;
        };
        tasks.spawn(connection(
            stream,
            peer,
            app.clone(),
            admitted,
            registry.limits.idle_timeout,
            stop.clone(),
        ));
    }
    drop(listener);
    while tasks.join_next().await.is_some() {}
}

/// A 503 in the JSON shape for a newcomer no room could be made for.
async fn refuse(mut stream: TcpStream, retry_after_secs: u64) {
    let body = crate::http::error_body(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        Some("too many connections are busy; retry shortly"),
    );
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: {retry_after_secs}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    app: Router,
    admitted: Admitted,
    idle_timeout: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let (busy, active_at, registry) = (
        admitted.busy.clone(),
        admitted.active_at.clone(),
        admitted.registry.clone(),
    );
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        let (busy, active_at, registry) = (busy.clone(), active_at.clone(), registry.clone());
        busy.fetch_add(1, Ordering::SeqCst);
        active_at.store(registry.now_ms(), Ordering::Relaxed);
        let answer = app.clone().oneshot(req.map(Body::new));
        async move {
            let res = answer.await;
            active_at.store(registry.now_ms(), Ordering::Relaxed);
            busy.fetch_sub(1, Ordering::SeqCst);
            res
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(idle_timeout)
        // One buffer per write, so hyper's own error answers can be recognised and rewritten.
        .writev(false);
    let conn = builder.serve_connection(TokioIo::new(JsonErrorIo::new(stream)), service);
    tokio::pin!(conn);
    let close = admitted.close.clone();
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => break,
            _ = close.notified(), if !closing => {
                if admitted.busy.load(Ordering::SeqCst) == 0 {
                    // Idle: closed now (dropping the connection closes the socket).
                    break;
                }
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            _ = stop.wait_for(|s| *s), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
        }
    }
    drop(admitted);
}

/// The socket, with hyper's own error answers (a bodiless 4xx it writes before any service
/// runs) rewritten into the JSON error shape.
pub struct JsonErrorIo<T> {
    inner: T,
    /// A rewritten answer being written, how much of it is written, and the length of what
    /// hyper handed us (reported once all of it is out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> JsonErrorIo<T> {
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: None,
        }
    }
}

/// hyper's own answer: `HTTP/1.x 4xx …` with `content-length: 0` and nothing after the head.
/// Every answer of the app's own has a JSON body (`crate::http::edge`).
pub fn rewrite_bodiless_error(buf: &[u8]) -> Option<Vec<u8>> {
    let head = std::str::from_utf8(buf).ok()?;
    if !(head.starts_with("HTTP/1.1 4") || head.starts_with("HTTP/1.0 4"))
        || !head.ends_with("\r\n\r\n")
    {
        return None;
    }
    let mut lines = head.trim_end_matches("\r\n").split("\r\n");
    let status_line = lines.next()?;
    let code: u16 = status_line.get(9..12)?.parse().ok()?;
    let status = axum::http::StatusCode::from_u16(code).ok()?;
    let headers: Vec<&str> = lines.collect();
    let empty = headers
        .iter()
        .any(|h| h.eq_ignore_ascii_case("content-length: 0"));
    if !empty {
        return None;
    }
    let body = crate::http::error_body(status, None);
    let mut out = format!("{status_line}\r\n");
    for h in headers {
        if !h.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(h);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!(
        "content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some(out.into_bytes())
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonErrorIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonErrorIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.pending.is_none() {
            match rewrite_bodiless_error(buf) {
                None => return Pin::new(&mut self.inner).poll_write(cx, buf),
                Some(rewritten) => self.pending = Some((rewritten, 0, buf.len())),
            }
        }
        let this = &mut *self;
        let Some((bytes, written, reported)) = this.pending.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        while *written < bytes.len() {
            match Pin::new(&mut this.inner).poll_write(cx, &bytes[*written..]) {
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => *written += n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        let reported = *reported;
        this.pending = None;
        Poll::Ready(Ok(reported))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_bodiless_errors_become_json_and_nothing_else_changes() {
        let hyper_414 = b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 09:00:00 GMT\r\n\r\n";
        let out = String::from_utf8(rewrite_bodiless_error(hyper_414).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 414 URI Too Long\r\n"));
        assert!(head.contains("date: Sun"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "uri_too_long");
        // The app's own answers, successes and bodies are left alone.
        for other in [
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 40\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 x\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"error\":1}",
        ] {
            assert!(rewrite_bodiless_error(other).is_none());
        }
    }

    fn limits(max: usize, per: usize) -> Limits {
        Limits {
            max_connections: max,
            max_connections_per_client: per,
            idle_timeout: Duration::from_secs(10),
            retry_after_secs: 1,
        }
    }

    #[test]
    fn a_hoarding_address_loses_its_own_idle_connections_first() {
        let r = Registry::new(limits(6, 4));
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let mut held: Vec<Admitted> = (0..4).map(|_| r.admit(a).unwrap()).collect();
        // A fifth from `a` closes `a`'s oldest idle one.
        held.push(r.admit(a).unwrap());
        assert_eq!(r.counts(), (4, 1, 0));
        // `b` fills the rest, then one more from `b` closes one of `a`'s (the larger holder).
        held.push(r.admit(b).unwrap());
        held.push(r.admit(b).unwrap());
        held.push(r.admit(b).unwrap());
        let inner = r.inner.lock().unwrap();
        assert_eq!(inner.per_ip.get(&a), Some(&3));
        assert_eq!(inner.per_ip.get(&b), Some(&3));
    }

    #[test]
    fn busy_connections_are_never_closed_to_make_room() {
        let r = Registry::new(limits(2, 2));
        let ip = IpAddr::from([10, 0, 0, 1]);
        let held: Vec<Admitted> = (0..2).map(|_| r.admit(ip).unwrap()).collect();
        for h in &held {
            h.busy.fetch_add(1, Ordering::SeqCst);
        }
        assert!(r.admit(ip).is_none());
        assert!(r.admit(IpAddr::from([10, 0, 0, 9])).is_none());
        assert_eq!(r.counts(), (2, 0, 2));
        held[0].busy.fetch_sub(1, Ordering::SeqCst);
        assert!(r.admit(ip).is_some());
    }
}
