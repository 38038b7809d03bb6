//! Server-sent events: one workstream's stream (`/v1/api/events?ws_id=`) and the node-wide
//! stream (`/v1/api/events/global`). Each connection is a plain stream over its log — no task
//! per connection — so a client that goes away frees everything at once.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;
use turnstone_actors::workstream::GlobalEvent;
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};
use warp::sse::Event;

use super::hub::{Frame, WsLog, history_event, info};
use super::metrics::ServerMetrics;
use super::{Shared, with_state};

/// Keep-alive comment interval.
pub const KEEP_ALIVE: Duration = Duration::from_secs(5);

/// Counts an open SSE connection for as long as it lives.
struct Connected(Arc<ServerMetrics>);

impl Connected {
    fn new(metrics: Arc<ServerMetrics>) -> Self {
        metrics.sse_connections_active.inc();
        Self(metrics)
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.0.sse_connections_active.dec();
    }
}

/// One reader of one workstream's log.
struct Reader {
    log: Arc<WsLog>,
    /// Frames to send before the live ones (`None` id: per-connection frames).
    queued: VecDeque<(Option<u64>, String)>,
    live: broadcast::Receiver<Arc<Frame>>,
    last: Option<u64>,
    _connected: Connected,
}

impl Reader {
    async fn next(mut self) -> Option<(Event, Self)> {
        loop {
            if let Some((id, json)) = self.queued.pop_front() {
                let mut event = Event::default().data(json);
                if let Some(id) = id {
                    self.last = Some(id);
                    event = event.id(id.to_string());
                }
                return Some((event, self));
            }
            if self.log.is_closed() {
                return None;
            }
            match self.live.recv().await {
                Ok(frame) => {
                    if self.last.is_some_and(|last| frame.seq <= last) {
                        continue;
                    }
                    self.queued.push_back((Some(frame.seq), frame.json.clone()));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    // Too slow for the live channel: catch up from the ring, and say what
                    // could not be recovered.
                    let follow = self.log.follow(Some(self.last.unwrap_or(0)));
                    self.live = follow.live;
                    if follow.missed > 0 {
                        self.queued.push_back((
                            None,
                            info(&format!(
                                "This connection fell behind: {} events were skipped",
                                follow.missed
                            )),
                        ));
                    }
                    for f in follow.replay {
                        self.queued.push_back((Some(f.seq), f.json.clone()));
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct EventsQuery {
    #[serde(default)]
    ws_id: String,
}

async fn workstream_events(
    state: Shared,
    query: EventsQuery,
    last_event_id: Option<String>,
) -> Result<Response, warp::Rejection> {
    let ws = state.workstream(&query.ws_id)?;
    let log = state.follow(&ws);
    let last_seen = last_event_id.and_then(|id| id.trim().parse::<u64>().ok());
    let follow = log.follow(last_seen);
    let status = ws
        .status()
        .await
        .map_err(super::workstream_errors::manager_error)?;
    let model = state
        .node
        .router
        .lane(&status.model_alias)
        .map(|l| l.model.get())
        .unwrap_or_default();
    let mut queued = VecDeque::new();
    queued.push_back((
        None,
        json!({"type": "connected", "model": model, "model_alias": status.model_alias,
            "skip_permissions": status.auto_approve || state.options.skip_permissions,
            "models": state.node.router.lanes().map(|l| l.alias.clone()).collect::<Vec<_>>()})
        .to_string(),
    ));
    if last_seen.is_none() || follow.missed > 0 {
        let history = ws
            .history()
            .await
            .map_err(super::workstream_errors::manager_error)?;
        if !history.is_empty() {
            queued.push_back((None, history_event(&history)));
        }
    }
    if follow.missed > 0 {
        queued.push_back((
            None,
            info(&format!(
                "{} events were no longer buffered; the conversation was reloaded",
                follow.missed
            )),
        ));
    }
    for pending in follow.pending {
        queued.push_back((None, pending));
    }
    for frame in follow.replay {
        queued.push_back((Some(frame.seq), frame.json.clone()));
    }
    let reader = Reader {
        log,
        queued,
        live: follow.live,
        last: last_seen,
        _connected: Connected::new(state.metrics.clone()),
    };
    let stream = futures::stream::unfold(reader, Reader::next);
    Ok(sse_reply(stream))
}

/// Buffered events per connection between its pump and the socket.
const CONNECTION_BUFFER: usize = 64;

/// Streams `events` as SSE. A small task moves them to the socket and ends as soon as the
/// client goes away, even while its source is quiet.
pub(crate) fn sse_reply(events: impl Stream<Item = Event> + Send + 'static) -> Response {
    use futures::StreamExt;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Event>(CONNECTION_BUFFER);
    tokio::spawn(async move {
        let mut events = std::pin::pin!(events);
        loop {
            tokio::select! {
                next = events.next() => match next {
                    Some(event) => {
                        if tx.send(event).await.is_err() {
                            break;
                        }
                    }
                    None => break,
                },
                () = tx.closed() => break,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok::<_, Infallible>);
    warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(stream)).into_response()
}

async fn global_events(state: Shared) -> Result<Response, warp::Rejection> {
    let rx = state.node.global.subscribe();
    let connected = Connected::new(state.metrics.clone());
    let stream = futures::stream::unfold((rx, connected), |(mut rx, connected)| async move {
        loop {
            match rx.recv().await {
                Ok(event) => {
                    let json = serde_json::to_string::<GlobalEvent>(&event).ok()?;
                    return Some((Event::default().data(json), (rx, connected)));
                }
                // Per-listener queue full: the oldest events were dropped (as 0.4.1).
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    Ok(sse_reply(stream))
}

/// The SSE routes (after `/v1/api`).
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let per_ws = warp::get()
        .and(warp::path("events"))
        .and(warp::path::end())
        .and(with_state(state.clone()))
        .and(warp::query::<EventsQuery>())
        .and(warp::header::optional::<String>("last-event-id"))
        .and_then(workstream_events);
    let global = warp::get()
        .and(warp::path!("events" / "global"))
        .and(with_state(state))
        .and_then(global_events);
    global.or(per_ws).unify().boxed()
}
