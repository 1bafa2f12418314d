//! One upstream (central or the processor) on its own listener, with its own accept loop, so
//! that faults can act at the transport level: `down` closes the listener and aborts every live
//! connection (clients get "connection refused"), `drop_response` closes a connection without
//! an HTTP response, `hang` never answers.

use std::future::pending;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use super::state::{ApiError, Fault, Mode, Shared, Upstream, lock};

/// The service's error: hyper closes the connection without writing a response.
#[derive(Debug, thiserror::Error)]
#[error("response dropped by the simulator's drop_response fault")]
struct Dropped;

enum Command {
    SetFault(Fault, oneshot::Sender<Result<(), String>>),
    Shutdown,
}

/// A running upstream: its fixed address and the way to reach its accept loop.
pub(crate) struct UpstreamHandle {
    pub addr: SocketAddr,
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
}

#[derive(Clone)]
pub(crate) struct Controller(mpsc::Sender<Command>);

impl Controller {
    /// Applies `fault`; returns once the listener is really closed or re-bound.
    pub async fn set_fault(&self, fault: Fault) -> Result<(), String> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Command::SetFault(fault, tx))
            .await
            .map_err(|_| "upstream stopped".to_owned())?;
        rx.await.map_err(|_| "upstream stopped".to_owned())?
    }
}

impl UpstreamHandle {
    /// Binds `listen` and starts serving `router` with `which`'s faults applied.
    pub async fn start(
        which: Upstream,
        listen: SocketAddr,
        router: Router,
        state: Shared,
    ) -> anyhow::Result<UpstreamHandle> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (commands, rx) = mpsc::channel(8);
        let ctx = Arc::new(Ctx {
            which,
            router,
            state,
        });
        let task = tokio::spawn(accept_loop(Some(listener), addr, rx, ctx));
        Ok(UpstreamHandle {
            addr,
            commands,
            task,
        })
    }

    pub fn controller(&self) -> Controller {
        Controller(self.commands.clone())
    }

    pub async fn shutdown(self) {
        let _ = self.commands.send(Command::Shutdown).await;
        let _ = self.task.await;
    }
}

struct Ctx {
    which: Upstream,
    router: Router,
    state: Shared,
}

enum Event {
    Command(Option<Command>),
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    Reaped,
}

async fn accept(listener: &Option<TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => pending().await,
    }
}

async fn accept_loop(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    mut commands: mpsc::Receiver<Command>,
    ctx: Arc<Ctx>,
) {
    let mut conns = JoinSet::new();
    loop {
        let event = tokio::select! {
            c = commands.recv() => Event::Command(c),
            a = accept(&listener) => Event::Accepted(a),
            Some(_) = conns.join_next(), if !conns.is_empty() => Event::Reaped,
        };
        match event {
            Event::Command(None | Some(Command::Shutdown)) => break,
            Event::Command(Some(Command::SetFault(fault, ack))) => {
                let down = fault.mode == Mode::Down;
                *lock(&ctx.state).fault_mut(ctx.which) = fault;
                let result = if down {
                    listener = None;
                    conns.abort_all();
                    Ok(())
                } else if listener.is_none() {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            listener = Some(l);
                            Ok(())
                        }
                        Err(e) => {
                            *lock(&ctx.state).fault_mut(ctx.which) = Fault::plain(Mode::Down);
                            Err(format!("cannot re-bind {addr}: {e}"))
                        }
                    }
                } else {
                    Ok(())
                };
                let _ = ack.send(result);
            }
            Event::Accepted(Ok((stream, _))) => {
                let ctx = ctx.clone();
                conns.spawn(serve_connection(stream, ctx));
            }
            Event::Accepted(Err(e)) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "simulator accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Event::Reaped => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_connection(stream: TcpStream, ctx: Arc<Ctx>) {
    let _ = stream.set_nodelay(true);
    let service = hyper::service::service_fn(move |req| handle(ctx.clone(), req));
    let _ = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// Applies the upstream's current fault around the router.
async fn handle(ctx: Arc<Ctx>, mut req: Request<Incoming>) -> Result<Response<Body>, Dropped> {
    let mut fault = lock(&ctx.state).fault(ctx.which).clone();
    if fault.health_ok && req.uri().path() == "/v1/health" {
        fault = Fault::OK;
    }
    match fault.mode {
        // A request that slipped in while the listener was closing.
        Mode::Down => return Err(Dropped),
        Mode::Error => {
            let status = StatusCode::from_u16(fault.status.unwrap_or(500))
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let msg = "fault injected by the simulator";
            return Ok(ApiError::new(status, "injected_error", msg).into_response());
        }
        Mode::RetryAfter => {
            let status = StatusCode::from_u16(fault.status.unwrap_or(503))
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let code = if status == StatusCode::TOO_MANY_REQUESTS {
                "rate_limited"
            } else {
                "unavailable"
            };
            let mut resp = ApiError::new(status, code, "try again later").into_response();
            let secs = fault.retry_after_s.unwrap_or(10).to_string();
            if let Ok(v) = HeaderValue::from_str(&secs) {
                resp.headers_mut().insert("retry-after", v);
            }
            return Ok(resp);
        }
        Mode::Latency => {
            tokio::time::sleep(Duration::from_millis(fault.latency_ms.unwrap_or(2_000))).await;
        }
        _ => {}
    }
    let mode = fault.mode;
    req.extensions_mut().insert(fault);
    let resp = match ctx.router.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    match mode {
        // The effect is applied and the answer stored; the caller never hears back.
        Mode::Hang => pending().await,
        Mode::DropResponse => Err(Dropped),
        _ => Ok(resp),
    }
}
