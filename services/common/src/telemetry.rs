//! Prometheus metrics and health endpoints, one implementation for every mailroot binary.
//!
//! With `--metrics ADDR` a process installs the `metrics` facade's Prometheus recorder
//! ([`install_recorder`]) and serves one small HTTP/1.1 listener ([`serve`]):
//! - `GET /metrics`: the Prometheus text exposition of everything recorded so far;
//! - `GET /healthz`: `200` while the process is alive (it answers, so it is);
//! - `GET /readyz`: `200` when the binary's own [`Readiness`] check passes, else `503` with
//!   its one-line reason (the front-end: store reachable, settings stream live, not draining;
//!   the store: index loaded, storage writable).
//!
//! Without the flag no recorder is installed and the `metrics` macros are no-ops.
//!
//! This module owns the recorder set-up (bucket boundaries, upkeep) and the HTTP plumbing; it
//! must not know any metric by name except through the overrides its callers pass in, nor
//! what "ready" means for a binary. The listener is plain HTTP with no authentication: bind
//! it to a private address (the compose network, loopback). It is hyper — the one tonic
//! already brings — with a read limit on request headers; bodies are never read.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;

/// The binary's readiness check: `Err(reason)` (one line) makes `/readyz` answer 503.
pub type Readiness = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Histogram buckets for durations in seconds, from a fast RPC on loopback (sub-millisecond)
/// to an Argon2id queue or a slow fsync (seconds).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder's histogram buffers are folded in and idle state trimmed.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);
/// A client must send its request headers within this long.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Prometheus text exposition format, version 0.0.4.
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Installs the process-wide Prometheus recorder and its upkeep task (call inside the
/// runtime, once). Every histogram gets [`SECONDS_BUCKETS`] (a real Prometheus histogram,
/// aggregatable over nodes, not a per-node summary) unless `buckets` names it with others.
pub fn install_recorder(buckets: &[(&str, &[f64])]) -> Result<PrometheusHandle, String> {
    let mut builder = PrometheusBuilder::new()
        .set_buckets(SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?;
    for (name, values) in buckets {
        builder = builder
            .set_buckets_for_metric(Matcher::Full((*name).to_string()), values)
            .map_err(|e| e.to_string())?;
    }
    let handle = builder
        .install_recorder()
        .map_err(|e| format!("metrics recorder: {e}"))?;
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(UPKEEP_EVERY);
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
}

/// `--metrics`: installs the recorder and serves the endpoints on `listener` in a task of its
/// own; returns the bound address (port 0 picks one) for the binary's readiness line.
pub fn start(
    listener: TcpListener,
    buckets: &[(&str, &[f64])],
    ready: Readiness,
) -> Result<std::net::SocketAddr, String> {
    let addr = listener
        .local_addr()
        .map_err(|e| format!("--metrics: {e}"))?;
    let metrics = install_recorder(buckets)?;
    tokio::spawn(serve(listener, Endpoints { metrics, ready }));
    Ok(addr)
}

/// What the listener answers with.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: PrometheusHandle,
    pub ready: Readiness,
}

/// Serves `/metrics`, `/healthz` and `/readyz` on `listener` for as long as the task runs
/// (the whole life of the process: a draining node must keep saying it is not ready).
pub async fn serve(listener: TcpListener, endpoints: Endpoints) {
    let endpoints = Arc::new(endpoints);
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let response = endpoints.respond(req.method(), req.uri().path());
                async move { Ok::<_, Infallible>(response) }
            });
            let served = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = served {
                tracing::debug!(error = %e, "metrics connection ended with an error");
            }
        });
    }
}

impl Endpoints {
    /// The answer to one request (HEAD is answered like GET; hyper leaves the body out).
    pub fn respond(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        if *method != Method::GET && *method != Method::HEAD {
            return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
        }
        match path {
            "/metrics" => reply(StatusCode::OK, EXPOSITION, self.metrics.render()),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" => match (self.ready)() {
                Ok(()) => reply(StatusCode::OK, "text/plain", "ready\n"),
                Err(reason) => reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "text/plain",
                    format!("not ready: {}\n", one_line(&reason)),
                ),
            },
            _ => reply(
                StatusCode::NOT_FOUND,
                "text/plain",
                "not found: /metrics, /healthz, /readyz\n",
            ),
        }
    }
}

fn reply(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn one_line(reason: &str) -> String {
    reason.lines().next().unwrap_or_default().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut text = String::new();
        s.read_to_string(&mut text).await.unwrap();
        let status = text[9..12].parse().unwrap();
        let body = text.split_once("\r\n\r\n").unwrap().1.to_string();
        (status, body)
    }

    #[tokio::test]
    async fn endpoints_answer_and_readiness_follows_the_check() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        metrics::with_local_recorder(&recorder, || {
            metrics::counter!("mailroot_test_total", "kind" => "a").increment(3);
        });
        let ready = Arc::new(AtomicBool::new(false));
        let flag = ready.clone();
        let endpoints = Endpoints {
            metrics: handle,
            ready: Arc::new(move || {
                if flag.load(Ordering::SeqCst) {
                    Ok(())
                } else {
                    Err("store unreachable\nsecond line dropped".into())
                }
            }),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, endpoints));

        assert_eq!(get(addr, "/healthz").await.0, 200);
        assert_eq!(
            get(addr, "/readyz").await,
            (503, "not ready: store unreachable\n".to_string())
        );
        ready.store(true, Ordering::SeqCst);
        assert_eq!(get(addr, "/readyz").await, (200, "ready\n".to_string()));
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("mailroot_test_total{kind=\"a\"} 3"), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);
    }
}
