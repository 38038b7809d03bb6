//! What a service answers while it starts (the database or its first connections not ready
//! yet): `/health` 503 `{"status": "starting"}` and every other path 503 `{"error": …}`, so
//! orchestrators see a live process that is not ready, and clients learn why instead of
//! meeting a refused connection.
//!
//! It serves a second handle of the service's own listening socket; once the service is
//! ready, [`Starting::finish`] stops it and the real routes take over the same socket —
//! connections waiting in its backlog are kept.

use std::os::fd::AsFd;
use std::sync::Arc;

use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use warp::Filter;
use warp::http::StatusCode;
use warp::reply::Reply;

/// The starting-phase responder; [`Starting::finish`] (or drop) stops it.
#[derive(Debug)]
pub struct Starting {
    stop: Option<oneshot::Sender<()>>,
}

impl Starting {
    /// Answers on a second handle of `listener` for `service`, naming `reason`.
    pub fn serve(listener: &TcpListener, service: &str, reason: &str) -> std::io::Result<Self> {
        let fd = listener.as_fd().try_clone_to_owned()?;
        let copy = TcpListener::from_std(std::net::TcpListener::from(fd))?;
        let body = Arc::new(json!({"status": "starting", "service": service, "reason": reason}));
        let error = Arc::new(json!({"error": format!("{service} is starting: {reason}")}));
        let health = warp::path("health").map(move || {
            warp::reply::with_status(warp::reply::json(&*body), StatusCode::SERVICE_UNAVAILABLE)
        });
        let other = warp::any().map(move || {
            let reply = warp::reply::with_status(
                warp::reply::json(&*error),
                StatusCode::SERVICE_UNAVAILABLE,
            );
            warp::reply::with_header(reply, "retry-after", "2").into_response()
        });
        let routes = health.map(Reply::into_response).or(other).unify();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(
            warp::serve(routes)
                .incoming(copy)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(Self { stop: Some(stop) })
    }

    /// Stops answering: the service's real routes serve from now on.
    pub fn finish(self) {
        drop(self);
    }
}

impl Drop for Starting {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
