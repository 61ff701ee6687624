//! The admin HTTP port of a process: `/metrics` (what [`Metrics`] renders), `/livez` and
//! `/readyz` (what [`Readiness`] says). Its own module so that the metrics registry depends on
//! nothing of the server, and the server on nothing of the admin port.

use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::server::{Readiness, Shutdown};

/// Serves the admin port on `listener` until `shutdown`: `/metrics`, `/livez`, `/readyz`.
pub async fn serve_admin(
    listener: TcpListener,
    metrics: Metrics,
    readiness: Readiness,
    shutdown: Shutdown,
) -> std::io::Result<()> {
    use axum::http::{StatusCode, header};
    use axum::routing::get;

    let router = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        metrics.render(),
                    )
                }
            }),
        )
        .route("/livez", get(|| async { (StatusCode::OK, "ok\n") }))
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    let (status, head) = if readiness.is_ready().await {
                        (StatusCode::OK, "ready")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    };
                    // What the node runs without, one line each (still ready: it answers what
                    // it can, the rest UNAVAILABLE).
                    let mut body = format!("{head}\n");
                    for degradation in readiness.degradations() {
                        body.push_str(&format!("degraded: {degradation}\n"));
                    }
                    (status, body)
                }
            }),
        );
    axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}
