//! The admin HTTP listener: `/metrics`, `/healthz`, `/readyz` over HTTP/1.1 (hyper).

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::text::CONTENT_TYPE as METRICS_CONTENT_TYPE;
use super::Registry;

/// Connections served at once; more wait in the listen backlog. A scraper and a probe or
/// two need a handful, the bound keeps a misbehaving client from taking every socket.
const MAX_CONNECTIONS: usize = 32;
/// A client must send its request headers within this, so idle sockets don't hold the
/// connection slots.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for requests in progress before dropping them.
const DRAIN_DEADLINE: Duration = Duration::from_secs(5);
/// Pause after a failed `accept` (typically a full file table), so the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves the admin endpoints on `listener` until `shutdown` completes, then lets requests
/// in progress finish (for at most 5 seconds) and returns.
///
/// - `GET /metrics`: [`Registry::render`], `Content-Type: text/plain; version=0.0.4`.
/// - `GET /healthz`: `200 ok` while the process serves at all (liveness).
/// - `GET /readyz`: `200 ready` when [`Registry::ready`], else `503` with one line per
///   route that is not, as `orders: starting`.
/// - `HEAD` is answered like `GET`; other methods get `405`, other paths `404`.
///
/// Failed `accept`s are logged and retried after a pause (they are usually a full file
/// table, which passes), so the error is only that the listener is unusable from the
/// start.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let local = listener.local_addr()?;
    tracing::info!(%local, "admin endpoints listening");
    let (stop_tx, stop_rx) = watch::channel(false);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        if let Some((stream, permit)) = accepted {
            let connection = serve_connection(stream, registry.clone(), stop_rx.clone());
            connections.spawn(async move {
                connection.await;
                drop(permit);
            });
        }
        // Reap finished connections so the set stays as small as the live ones.
        while connections.try_join_next().is_some() {}
    }
    stop_tx.send_replace(true);
    let drained = tokio::time::timeout(DRAIN_DEADLINE, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("admin connections still open at shutdown were dropped");
    }
    Ok(())
}

/// Serves one connection until the client closes it or shutdown begins; then the request
/// in progress, if any, is finished and the connection closed.
async fn serve_connection(stream: TcpStream, registry: Registry, mut stop: watch::Receiver<bool>) {
    let service = service_fn(move |request| {
        let response = respond(&registry, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopping(&mut stop) => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(error) = result {
        tracing::debug!(%error, "admin connection ended with an error");
    }
}

/// Completes once shutdown has begun (or the serve loop is gone).
async fn stopping(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await: drop it here.
    let _ = stop.wait_for(|stop| *stop).await.map(drop);
}

/// Waits for a free connection slot, then for a connection. `None` when `accept` failed
/// (logged, after a pause).
async fn accept(
    listener: &TcpListener,
    slots: &Arc<Semaphore>,
) -> Option<(TcpStream, OwnedSemaphorePermit)> {
    // The semaphore is never closed, so acquiring fails only in theory.
    let permit = Arc::clone(slots).acquire_owned().await.ok()?;
    match listener.accept().await {
        Ok((stream, _)) => Some((stream, permit)),
        Err(error) => {
            tracing::warn!(%error, "admin listener failed to accept a connection");
            tokio::time::sleep(ACCEPT_BACKOFF).await;
            None
        }
    }
}

/// Routes one request.
fn respond(registry: &Registry, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/metrics" | "/healthz" | "/readyz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if request.method() != Method::GET && request.method() != Method::HEAD {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    match path {
        "/metrics" => {
            let mut response = text(StatusCode::OK, registry.render());
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
            response
        }
        "/readyz" => match registry.ready() {
            Ok(()) => text(StatusCode::OK, "ready\n"),
            Err(not_ready) => text(StatusCode::SERVICE_UNAVAILABLE, readiness_body(&not_ready)),
        },
        _ => text(StatusCode::OK, "ok\n"),
    }
}

/// One line per route; a newline inside a failure reason would break that, so it is
/// flattened to a space.
fn readiness_body(not_ready: &[(String, String)]) -> String {
    not_ready
        .iter()
        .map(|(route, why)| format!("{route}: {}\n", why.replace(['\r', '\n'], " ")))
        .collect()
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_stay_one_per_route() {
        let body = readiness_body(&[
            ("a".into(), "starting".into()),
            ("b".into(), "failed: bad\nthing".into()),
        ]);
        assert_eq!(body, "a: starting\nb: failed: bad thing\n");
    }
}
