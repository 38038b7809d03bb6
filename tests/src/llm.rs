//! A scripted OpenAI- and Anthropic-compatible LLM server: the one sanctioned stand-in.
//!
//! Tests program it reply by reply; it speaks the real wire formats over HTTP on loopback:
//! `POST /v1/chat/completions` (SSE chunks with content, reasoning, tool-call deltas split across
//! chunks, usage, finish reasons, `data: [DONE]`), `POST /v1/messages` (Anthropic SSE events),
//! `GET /v1/models`, and scripted faults: HTTP errors with JSON bodies, slow streams, streams cut
//! mid-way, and requests that never get an answer. Every request body is recorded.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};
use warp::Filter;
use warp::http::StatusCode;

/// One tool call in a scripted turn.
#[derive(Clone, Debug, PartialEq)]
pub struct ScriptedToolCall {
    /// Call id.
    pub id: String,
    /// Function name.
    pub name: String,
    /// Raw arguments text (need not be valid JSON: tests of bad model output use that).
    pub arguments: String,
}

/// A model turn, rendered in either wire format.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Turn {
    reasoning: Vec<String>,
    content: Vec<String>,
    tool_calls: Vec<ScriptedToolCall>,
    usage: Option<(u64, u64)>,
    finish: Option<String>,
    /// A provider-side web search before the text: query and (url, title) results, which the
    /// text cites.
    search: Option<(String, Vec<(String, String)>)>,
}

impl Turn {
    /// An empty turn.
    pub fn new() -> Self {
        Self::default()
    }

    /// A turn that just says `text` (in two chunks).
    pub fn text(text: &str) -> Self {
        let mid = text
            .char_indices()
            .nth(text.chars().count() / 2)
            .map_or(0, |(i, _)| i);
        Self::new().content(&text[..mid]).content(&text[mid..])
    }

    /// Adds a content chunk.
    pub fn content(mut self, chunk: &str) -> Self {
        self.content.push(chunk.to_owned());
        self
    }

    /// Adds a reasoning chunk (OpenAI: `reasoning_content` delta; Anthropic: thinking delta).
    pub fn reasoning(mut self, chunk: &str) -> Self {
        self.reasoning.push(chunk.to_owned());
        self
    }

    /// Adds a tool call; its arguments are streamed in two deltas.
    pub fn tool_call(mut self, id: &str, name: &str, arguments: &str) -> Self {
        self.tool_calls.push(ScriptedToolCall {
            id: id.into(),
            name: name.into(),
            arguments: arguments.into(),
        });
        self
    }

    /// A provider-side web search (Anthropic server tool / OpenAI search model) whose results
    /// the text cites.
    pub fn web_search(mut self, query: &str, results: &[(&str, &str)]) -> Self {
        let results = results
            .iter()
            .map(|(url, title)| ((*url).to_owned(), (*title).to_owned()))
            .collect();
        self.search = Some((query.to_owned(), results));
        self
    }

    /// Token usage reported at the end.
    pub fn usage(mut self, prompt: u64, completion: u64) -> Self {
        self.usage = Some((prompt, completion));
        self
    }

    /// The finish reason (default: `tool_calls` when there are calls, else `stop`).
    pub fn finish(mut self, reason: &str) -> Self {
        self.finish = Some(reason.into());
        self
    }

    fn finish_reason(&self) -> String {
        self.finish.clone().unwrap_or_else(|| {
            if self.tool_calls.is_empty() {
                "stop".into()
            } else {
                "tool_calls".into()
            }
        })
    }

    /// The OpenAI `chat.completion.chunk` data payloads, in order (without `[DONE]`).
    pub fn openai_chunks(&self, model: &str) -> Vec<Value> {
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]
            })
        };
        let mut out = vec![chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
        )];
        for r in &self.reasoning {
            out.push(chunk(json!({"reasoning_content": r}), Value::Null));
        }
        for c in &self.content {
            out.push(chunk(json!({"content": c}), Value::Null));
        }
        if let Some((_, results)) = &self.search {
            let annotations: Vec<Value> = results
                .iter()
                .map(|(url, title)| {
                    json!({"type": "url_citation", "url_citation":
                    {"url": url, "title": title, "start_index": 0, "end_index": 1}})
                })
                .collect();
            out.push(chunk(
                json!({"content": "", "annotations": annotations}),
                Value::Null,
            ));
        }
        for (index, call) in self.tool_calls.iter().enumerate() {
            let split = call
                .arguments
                .char_indices()
                .nth(call.arguments.chars().count() / 2)
                .map_or(0, |(i, _)| i);
            out.push(chunk(
                json!({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                    "function": {"name": call.name, "arguments": &call.arguments[..split]}}]}),
                Value::Null,
            ));
            out.push(chunk(
                json!({"tool_calls": [{"index": index,
                    "function": {"arguments": &call.arguments[split..]}}]}),
                Value::Null,
            ));
        }
        out.push(chunk(json!({}), json!(self.finish_reason())));
        if let Some((prompt, completion)) = self.usage {
            out.push(json!({
                "id": "chatcmpl-scripted", "object": "chat.completion.chunk", "created": 0,
                "model": model, "choices": [],
                "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                          "total_tokens": prompt + completion}
            }));
        }
        out
    }

    /// The Anthropic Messages stream events, as `(event name, data)`.
    pub fn anthropic_events(&self, model: &str) -> Vec<(String, Value)> {
        let (input, output) = self.usage.unwrap_or((0, 0));
        let mut out = vec![(
            "message_start".to_owned(),
            json!({"type": "message_start", "message": {"id": "msg_scripted", "type": "message",
                "role": "assistant", "model": model, "content": [], "stop_reason": null,
                "usage": {"input_tokens": input, "output_tokens": 0}}}),
        )];
        let mut index = 0;
        let mut block = |out: &mut Vec<(String, Value)>, start: Value, deltas: Vec<Value>| {
            out.push((
                "content_block_start".into(),
                json!({"type": "content_block_start", "index": index, "content_block": start}),
            ));
            for d in deltas {
                out.push((
                    "content_block_delta".into(),
                    json!({"type": "content_block_delta", "index": index, "delta": d}),
                ));
            }
            out.push((
                "content_block_stop".into(),
                json!({"type": "content_block_stop", "index": index}),
            ));
            index += 1;
        };
        if !self.reasoning.is_empty() {
            let deltas = self
                .reasoning
                .iter()
                .map(|r| json!({"type": "thinking_delta", "thinking": r}))
                .collect();
            block(
                &mut out,
                json!({"type": "thinking", "thinking": ""}),
                deltas,
            );
        }
        if let Some((query, results)) = &self.search {
            block(
                &mut out,
                json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                    "input": {"query": query}}),
                Vec::new(),
            );
            let content: Vec<Value> = results
                .iter()
                .map(|(url, title)| {
                    json!({"type": "web_search_result", "url": url,
                    "title": title, "encrypted_content": "x", "page_age": null})
                })
                .collect();
            block(
                &mut out,
                json!({"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                    "content": content}),
                Vec::new(),
            );
        }
        if !self.content.is_empty() {
            let mut deltas: Vec<Value> = self
                .content
                .iter()
                .map(|c| json!({"type": "text_delta", "text": c}))
                .collect();
            for (url, title) in self.search.iter().flat_map(|(_, r)| r) {
                deltas.push(json!({"type": "citations_delta", "citation": {
                    "type": "web_search_result_location", "url": url, "title": title,
                    "cited_text": "…", "encrypted_index": "x"}}));
            }
            block(&mut out, json!({"type": "text", "text": ""}), deltas);
        }
        for call in &self.tool_calls {
            let split = call.arguments.len() / 2;
            let split = (0..=split)
                .rev()
                .find(|i| call.arguments.is_char_boundary(*i))
                .unwrap_or(0);
            block(
                &mut out,
                json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}}),
                vec![
                    json!({"type": "input_json_delta", "partial_json": &call.arguments[..split]}),
                    json!({"type": "input_json_delta", "partial_json": &call.arguments[split..]}),
                ],
            );
        }
        let stop = match self.finish_reason().as_str() {
            "tool_calls" => "tool_use".to_owned(),
            "length" => "max_tokens".to_owned(),
            "stop" => "end_turn".to_owned(),
            other => other.to_owned(),
        };
        out.push((
            "message_delta".into(),
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                   "usage": {"output_tokens": output}}),
        ));
        out.push(("message_stop".into(), json!({"type": "message_stop"})));
        out
    }
}

/// What the server does with the next request.
#[derive(Clone, Debug)]
pub enum Reply {
    /// Stream this turn, waiting `delay` before each chunk; with `cut_after`, drop the
    /// connection after that many chunks.
    Stream {
        /// The turn.
        turn: Turn,
        /// Pause before each chunk.
        delay: Duration,
        /// Abort the connection after this many chunks.
        cut_after: Option<usize>,
    },
    /// Answer with this HTTP status and a JSON error body carrying `message`.
    Error {
        /// Status code.
        status: u16,
        /// Error message.
        message: String,
    },
    /// Never answer (until the server stops).
    Hang,
}

impl Reply {
    /// Stream `turn` at full speed.
    pub fn turn(turn: Turn) -> Self {
        Self::Stream {
            turn,
            delay: Duration::ZERO,
            cut_after: None,
        }
    }

    /// An HTTP error.
    pub fn error(status: u16, message: &str) -> Self {
        Self::Error {
            status,
            message: message.into(),
        }
    }
}

/// A request the server received.
#[derive(Clone, Debug, PartialEq)]
pub struct Recorded {
    /// `chat/completions`, `messages` or `models`.
    pub endpoint: String,
    /// The JSON body (Null for GET).
    pub body: Value,
    /// The `Authorization` or `x-api-key` header.
    pub auth: Option<String>,
}

/// A request as the server keeps it.
#[derive(Debug)]
struct Received {
    endpoint: &'static str,
    body: String,
    auth: Option<String>,
}

impl Received {
    fn recorded(&self) -> Recorded {
        Recorded {
            endpoint: self.endpoint.to_owned(),
            body: serde_json::from_str(&self.body).unwrap_or(Value::Null),
            auth: self.auth.clone(),
        }
    }
}

#[derive(Debug)]
struct Route {
    marker: String,
    turn: Turn,
    /// Match only the conversation's last message (not the history before it).
    latest_only: bool,
    /// Pause before each chunk.
    delay: Duration,
}

#[derive(Debug, Default)]
struct Shared {
    /// Standing replies for requests whose body contains a marker (not consumed).
    routes: Vec<Route>,
    traceparents: Vec<String>,
    script: VecDeque<Reply>,
    /// Each request's body as it came: parsed only when a test reads it, so that a
    /// benchmark's thousands of requests cost the server no JSON trees.
    requests: Vec<Received>,
    models: Vec<String>,
    models_down: bool,
}

/// The running server. Stops when dropped.
#[derive(Debug)]
pub struct ScriptedLlm {
    addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    _stop: oneshot::Sender<()>,
}

#[derive(Debug)]
struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("scripted disconnect")
    }
}

impl std::error::Error for Cut {}

impl ScriptedLlm {
    /// Starts a server on a free loopback port, serving model `scripted-model`.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// Starts a server on a free port of `ip` (`0.0.0.0` for containers on this host).
    pub async fn start_on(ip: std::net::Ipv4Addr) -> std::io::Result<Self> {
        let shared = Arc::new(Mutex::new(Shared {
            models: vec!["scripted-model".into()],
            ..Shared::default()
        }));
        // TCP_NODELAY on the listening socket is inherited by accepted connections (Linux);
        // without it small SSE writes meet delayed ACKs and stall ~40 ms.
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_nodelay(true)?;
        socket.bind((ip, 0).into())?;
        let listener = socket.listen(1024)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let routes = routes(Arc::clone(&shared));
        tokio::spawn(
            warp::serve(routes)
                .incoming(listener)
                .graceful(async move {
                    let _ = stopped.await;
                })
                .run(),
        );
        Ok(Self {
            addr,
            shared,
            _stop: stop,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        lock(&self.shared)
    }

    /// `http://127.0.0.1:PORT/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Queues replies, answered in order across endpoints.
    pub fn push(&self, replies: impl IntoIterator<Item = Reply>) {
        self.lock().script.extend(replies);
    }

    /// Queues one streamed turn.
    pub fn push_turn(&self, turn: Turn) {
        self.push([Reply::turn(turn)]);
    }

    /// Answers every request whose JSON body contains `marker` with `turn`, without using the
    /// queue (for background requests such as session titles).
    pub fn route(&self, marker: &str, turn: Turn) {
        self.lock().routes.push(Route {
            marker: marker.to_owned(),
            turn,
            latest_only: false,
            delay: Duration::ZERO,
        });
    }

    /// Answers every request whose *last* message contains `marker` with `turn` (so a long
    /// conversation is answered by what was said last, not by its history).
    pub fn route_latest(&self, marker: &str, turn: Turn) {
        self.route_latest_slowly(marker, turn, Duration::ZERO);
    }

    /// As [`Self::route_latest`], pausing `delay` before each streamed chunk.
    pub fn route_latest_slowly(&self, marker: &str, turn: Turn, delay: Duration) {
        self.lock().routes.push(Route {
            marker: marker.to_owned(),
            turn,
            latest_only: true,
            delay,
        });
    }

    /// Removes the routes for `marker`.
    pub fn unroute(&self, marker: &str) {
        self.lock().routes.retain(|r| r.marker != marker);
    }

    /// Replies not yet used.
    pub fn pending(&self) -> usize {
        self.lock().script.len()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock()
            .requests
            .iter()
            .map(Received::recorded)
            .collect()
    }

    /// Bodies of the chat requests (`chat/completions` and `messages`) so far.
    pub fn chat_bodies(&self) -> Vec<Value> {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.endpoint != "models")
            .map(|r| r.recorded().body)
            .collect()
    }

    /// Sets the models `GET /v1/models` lists.
    pub fn set_models(&self, models: &[&str]) {
        self.lock().models = models.iter().map(|m| (*m).to_owned()).collect();
    }

    /// The `traceparent` headers of the chat requests received, in order.
    pub fn traceparents(&self) -> Vec<String> {
        self.lock().traceparents.clone()
    }

    /// Makes `GET /v1/models` fail with 503 (a backend that is down for probes).
    pub fn set_models_down(&self, down: bool) {
        self.lock().models_down = down;
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

fn error_reply(status: u16, message: &str) -> warp::reply::Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {"message": message, "type": "scripted_error", "param": null,
        "code": null}});
    warp::reply::with_status(warp::reply::json(&body), code).into_response()
}

use warp::Reply as _;

/// The reply to a request whose body is `text`: the first standing route whose marker the
/// body (or, for a latest-only route, the conversation's last message) contains, else the
/// next scripted reply.
fn next_reply(
    shared: &Mutex<Shared>,
    endpoint: &'static str,
    text: String,
    auth: Option<String>,
) -> Option<Reply> {
    let mut s = lock(shared);
    // The last message, as JSON text: read only if a latest-only route asks for it.
    let mut latest: Option<String> = None;
    let mut last_message = || {
        latest
            .get_or_insert_with(|| {
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|body| body["messages"].as_array()?.last().map(Value::to_string))
                    .unwrap_or_default()
            })
            .clone()
    };
    let routed = s
        .routes
        .iter()
        .find(|r| {
            if r.latest_only {
                last_message().contains(r.marker.as_str())
            } else {
                text.contains(r.marker.as_str())
            }
        })
        .map(|r| Reply::Stream {
            turn: r.turn.clone(),
            delay: r.delay,
            cut_after: None,
        });
    s.requests.push(Received {
        endpoint,
        body: text,
        auth,
    });
    routed.or_else(|| s.script.pop_front())
}

fn sse_reply(
    events: Vec<warp::sse::Event>,
    delay: Duration,
    cut_after: Option<usize>,
) -> warp::reply::Response {
    let (tx, rx) = mpsc::channel::<Result<warp::sse::Event, Cut>>(16);
    tokio::spawn(async move {
        for (i, event) in events.into_iter().enumerate() {
            if cut_after == Some(i) {
                // Let the chunks already sent reach the client before the connection drops.
                tokio::time::sleep(Duration::from_millis(50)).await;
                let _ = tx.send(Err(Cut)).await;
                return;
            }
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
    });
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    warp::sse::reply(stream).into_response()
}

/// What the server reads of a request body itself: the model. (Parsing into this checks the
/// whole body is JSON without building a tree of it.)
#[derive(serde::Deserialize)]
struct Head {
    #[serde(default)]
    model: Option<String>,
}

async fn answer(
    shared: Arc<Mutex<Shared>>,
    endpoint: &'static str,
    body: warp::hyper::body::Bytes,
    auth: Option<String>,
    traceparent: Option<String>,
) -> Result<warp::reply::Response, Infallible> {
    if let Some(tp) = traceparent {
        lock(&shared).traceparents.push(tp);
    }
    let Ok(head) = serde_json::from_slice::<Head>(&body) else {
        return Ok(error_reply(
            400,
            "scripted LLM: the body is not a JSON object",
        ));
    };
    let model = head.model.unwrap_or_else(|| "scripted-model".into());
    let text = String::from_utf8_lossy(&body).into_owned();
    let Some(reply) = next_reply(&shared, endpoint, text, auth) else {
        return Ok(error_reply(
            500,
            "scripted LLM: no reply scripted for this request",
        ));
    };
    Ok(match reply {
        Reply::Error { status, message } => error_reply(status, &message),
        Reply::Hang => {
            futures::future::pending::<()>().await;
            error_reply(500, "unreachable")
        }
        Reply::Stream {
            turn,
            delay,
            cut_after,
        } => {
            let events = if endpoint == "messages" {
                turn.anthropic_events(&model)
                    .into_iter()
                    .map(|(name, data)| {
                        warp::sse::Event::default()
                            .event(name)
                            .data(data.to_string())
                    })
                    .collect()
            } else {
                let mut events: Vec<_> = turn
                    .openai_chunks(&model)
                    .into_iter()
                    .map(|c| warp::sse::Event::default().data(c.to_string()))
                    .collect();
                events.push(warp::sse::Event::default().data("[DONE]"));
                events
            };
            sse_reply(events, delay, cut_after)
        }
    })
}

fn routes(
    shared: Arc<Mutex<Shared>>,
) -> impl Filter<Extract = (warp::reply::Response,), Error = warp::Rejection> + Clone {
    let with_shared = {
        let shared = Arc::clone(&shared);
        warp::any().map(move || Arc::clone(&shared))
    };
    let auth = warp::header::optional::<String>("authorization")
        .and(warp::header::optional::<String>("x-api-key"))
        .map(|a: Option<String>, k: Option<String>| a.or(k));
    let chat = warp::post()
        .and(warp::path!("v1" / "chat" / "completions"))
        .and(with_shared.clone())
        .and(warp::body::bytes())
        .and(auth)
        .and(warp::header::optional::<String>("traceparent"))
        .and_then(|s, body, auth, tp| answer(s, "chat/completions", body, auth, tp));
    let messages = warp::post()
        .and(warp::path!("v1" / "messages"))
        .and(with_shared.clone())
        .and(warp::body::bytes())
        .and(auth)
        .and(warp::header::optional::<String>("traceparent"))
        .and_then(|s, body, auth, tp| answer(s, "messages", body, auth, tp));
    let models = warp::get()
        .and(warp::path!("v1" / "models"))
        .and(with_shared)
        .and(auth)
        .map(|s: Arc<Mutex<Shared>>, auth| {
            let mut shared = lock(&s);
            shared.requests.push(Received {
                endpoint: "models",
                body: String::new(),
                auth,
            });
            if shared.models_down {
                return error_reply(503, "scripted LLM: models endpoint down");
            }
            let data: Vec<Value> = shared
                .models
                .iter()
                .map(
                    |id| json!({"id": id, "object": "model", "created": 0, "owned_by": "scripted"}),
                )
                .collect();
            warp::reply::json(&json!({"object": "list", "data": data})).into_response()
        });
    chat.or(messages).unify().or(models).unify()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_rendering_splits_tool_arguments_across_two_deltas() {
        let chunks = Turn::new()
            .tool_call("c1", "bash", r#"{"command":"ls"}"#)
            .usage(10, 2)
            .openai_chunks("m");
        let args: Vec<&str> = chunks
            .iter()
            .filter_map(|c| {
                c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"].as_str()
            })
            .collect();
        assert_eq!(args.concat(), r#"{"command":"ls"}"#);
        assert_eq!(args.len(), 2);
        assert_eq!(
            chunks[chunks.len() - 2]["choices"][0]["finish_reason"],
            "tool_calls"
        );
        assert_eq!(chunks[chunks.len() - 1]["usage"]["total_tokens"], 12);
    }

    #[test]
    fn anthropic_rendering_uses_content_blocks_and_stop_reasons() {
        let events = Turn::new()
            .reasoning("hmm")
            .content("hi")
            .tool_call("t1", "read_file", r#"{"path":"a"}"#)
            .anthropic_events("claude");
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"));
        assert_eq!(names.last(), Some(&"message_stop"));
        let delta = &events[events.len() - 2].1;
        assert_eq!(delta["delta"]["stop_reason"], "tool_use");
        assert_eq!(
            events
                .iter()
                .filter(|(n, _)| n == "content_block_start")
                .count(),
            3
        );
    }
}
