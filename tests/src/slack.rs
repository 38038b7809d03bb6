//! A Slack on loopback that speaks the documented Web API and Socket Mode protocol, so the
//! gateway's Slack adapter runs unmodified against it through its API base URL:
//!
//! - Web API `POST /api/{method}` (JSON): `auth.test`, `apps.connections.open` (with the
//!   app-level token; answers a `ws://` URL), `chat.postMessage`, `chat.update`,
//!   `chat.postEphemeral`, `conversations.open`. The bot token must be presented as
//!   `Authorization: Bearer xoxb-…` (the app token only for `apps.connections.open`); answers
//!   are `{"ok": …}` as Slack's; a text longer than 40,000 characters or a section longer than
//!   3,000 is `ok: false` and recorded as a violation; rate limits can be imposed (HTTP 429
//!   with `Retry-After`).
//! - Socket Mode: `hello` on connect, then envelopes (`events_api`, `slash_commands`,
//!   `interactive`) the test sends; every envelope must be acknowledged with its
//!   `envelope_id` (the acks are kept, with their payloads); `disconnect` asks the client to
//!   reconnect.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use warp::http::StatusCode;
use warp::ws::{Message, WebSocket};
use warp::{Filter, Reply};

/// The bot's user id.
pub const BOT_USER: &str = "UBOT0001";
/// The team.
pub const TEAM: &str = "T0000001";
/// The app.
pub const APP: &str = "A0000001";

/// A message as the fake keeps it.
#[derive(Clone, Debug)]
pub struct Posted {
    /// Channel.
    pub channel: String,
    /// Its ts (the id).
    pub ts: String,
    /// The thread it is in.
    pub thread_ts: Option<String>,
    /// Text now.
    pub text: String,
    /// Block Kit blocks.
    pub blocks: Value,
    /// Ephemeral: only this user sees it.
    pub only_for: Option<String>,
    /// When it was posted (ms since the fake started).
    pub posted: u64,
    /// When each update landed.
    pub edits: Vec<u64>,
}

#[derive(Default)]
struct State {
    bot_token: String,
    app_token: String,
    next: u64,
    posted: Vec<Posted>,
    requests: Vec<(String, u16)>,
    violations: Vec<String>,
    limits: Vec<(String, u32, u64)>,
    acks: Vec<Value>,
    connections: u32,
    sockets: Vec<mpsc::UnboundedSender<Message>>,
}

/// The fake Slack.
pub struct FakeSlack {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    started: Instant,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn ok(mut body: Value) -> warp::reply::Response {
    body["ok"] = json!(true);
    warp::reply::json(&body).into_response()
}

fn not_ok(error: &str) -> warp::reply::Response {
    warp::reply::json(&json!({"ok": false, "error": error})).into_response()
}

impl FakeSlack {
    /// Starts on a free loopback port, accepting these tokens.
    pub async fn start(bot_token: &str, app_token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            bot_token: bot_token.to_owned(),
            app_token: app_token.to_owned(),
            next: 1_800_000_000,
            ..State::default()
        }));
        let started = Instant::now();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let api_state = state.clone();
        let api = warp::path("api")
            .and(warp::path::param::<String>())
            .and(warp::path::end())
            .and(warp::post())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |method: String, auth: Option<String>, body: bytes::Bytes| {
                    let ms = started.elapsed().as_millis() as u64;
                    web_api(&api_state, &method, auth.as_deref(), &body, ms, addr)
                },
            );
        let ws_state = state.clone();
        let socket = warp::path("link")
            .and(warp::ws())
            .map(move |ws: warp::ws::Ws| {
                let state = ws_state.clone();
                ws.on_upgrade(move |socket| session(socket, state))
            });
        let server = tokio::spawn(warp::serve(api.or(socket)).incoming(listener).run());
        Self {
            addr,
            state,
            started,
            server,
        }
    }

    /// `http://127.0.0.1:PORT/api` (the `--slack-api-url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/api", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn next_ts(&self) -> String {
        let mut s = self.lock();
        s.next += 1;
        format!("{}.000100", s.next)
    }

    /// Sends an envelope to the bot on its newest connection; its id.
    pub fn envelope(&self, kind: &str, payload: Value, accepts_response_payload: bool) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let frame = json!({"envelope_id": id, "type": kind, "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0, "retry_reason": "", "payload": payload});
        let s = self.lock();
        let socket = s.sockets.last().expect("the bot is not connected");
        socket.send(Message::text(frame.to_string())).unwrap();
        id
    }

    fn event(&self, event: Value) -> String {
        let payload = json!({"token": "verification", "team_id": TEAM, "api_app_id": APP, "event": event,
            "type": "event_callback", "event_id": format!("Ev{}", uuid::Uuid::new_v4().simple()),
            "event_time": 1_800_000_000u64, "authed_users": [BOT_USER]});
        self.envelope("events_api", payload, false)
    }

    /// `user` writes `text` in `channel` (in the thread `thread` if given), mentioning the bot
    /// when `mention` (Slack then sends `app_mention`, and `message` too); the message ts.
    pub fn say(
        &self,
        user: &str,
        channel: &str,
        thread: Option<&str>,
        text: &str,
        mention: bool,
    ) -> String {
        let ts = self.next_ts();
        let text = if mention {
            format!("<@{BOT_USER}> {text}")
        } else {
            text.to_owned()
        };
        let mut event = json!({"type": "message", "channel_type": "channel", "user": user, "channel": channel,
            "ts": ts, "event_ts": ts, "text": text, "team": TEAM});
        if let Some(thread) = thread {
            event["thread_ts"] = json!(thread);
        }
        if mention {
            let mut mention_event = event.clone();
            mention_event["type"] = json!("app_mention");
            self.event(mention_event);
        }
        self.event(event);
        ts
    }

    /// `user` runs `/turnstone text` in `channel`; the envelope id (its ack holds the answer).
    pub fn slash(&self, user: &str, channel: &str, text: &str) -> String {
        self.envelope(
            "slash_commands",
            json!({"token": "verification", "team_id": TEAM, "team_domain": "test", "channel_id": channel,
                "channel_name": "general", "user_id": user, "user_name": format!("user-{user}"),
                "command": "/turnstone", "text": text, "api_app_id": APP, "is_enterprise_install": "false",
                "response_url": "https://hooks.invalid/commands/1", "trigger_id": "1.2.3"}),
            true,
        )
    }

    /// `user` presses the button `action_id` of the bot's message `ts`.
    pub fn press(&self, user: &str, ts: &str, action_id: &str) -> String {
        let message = self.message(ts).expect("no such message");
        let button = message.blocks[1]["elements"]
            .as_array()
            .and_then(|e| e.iter().find(|b| b["action_id"] == action_id))
            .cloned()
            .expect("no such button");
        let thread = message.thread_ts.clone().unwrap_or_default();
        self.envelope(
            "interactive",
            json!({"type": "block_actions", "user": {"id": user, "username": format!("user-{user}"), "team_id": TEAM},
                "api_app_id": APP, "token": "verification", "trigger_id": "1.2.4",
                "container": {"type": "message", "message_ts": ts, "channel_id": message.channel, "is_ephemeral": false, "thread_ts": thread},
                "team": {"id": TEAM, "domain": "test"}, "channel": {"id": message.channel, "name": "general"},
                "message": {"type": "message", "user": BOT_USER, "ts": ts, "thread_ts": thread, "text": message.text, "blocks": message.blocks},
                "response_url": "https://hooks.invalid/actions/1",
                "actions": [{"type": "button", "action_id": action_id, "block_id": "b1", "value": button["value"],
                    "text": button["text"], "action_ts": "1800000000.1"}]}),
            false,
        )
    }

    /// Asks the client to reconnect (`disconnect`, reason `refresh_requested`) and closes.
    pub fn disconnect(&self) {
        let frame = json!({"type": "disconnect", "reason": "refresh_requested",
            "debug_info": {"host": "fake-slack"}});
        let mut s = self.lock();
        for socket in s.sockets.drain(..) {
            let _ = socket.send(Message::text(frame.to_string()));
            let _ = socket.send(Message::close());
        }
    }

    /// Answers the next `times` calls of `method` with HTTP 429 and `Retry-After`.
    pub fn rate_limit(&self, method: &str, times: u32, retry_after: u64) {
        self.lock()
            .limits
            .push((method.to_owned(), times, retry_after));
    }

    /// A message by ts.
    pub fn message(&self, ts: &str) -> Option<Posted> {
        self.lock().posted.iter().find(|m| m.ts == ts).cloned()
    }

    /// The bot's messages in a thread, everyone's and ephemeral ones, oldest first.
    pub fn thread(&self, channel: &str, thread: &str) -> Vec<Posted> {
        self.lock()
            .posted
            .iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(thread))
            .cloned()
            .collect()
    }

    /// Everything the bot posted.
    pub fn posted(&self) -> Vec<Posted> {
        self.lock().posted.clone()
    }

    /// The ack of an envelope, if it came.
    pub fn ack(&self, envelope_id: &str) -> Option<Value> {
        self.lock()
            .acks
            .iter()
            .find(|a| a["envelope_id"] == envelope_id)
            .cloned()
    }

    /// Web API calls (method, status).
    pub fn requests(&self) -> Vec<(String, u16)> {
        self.lock().requests.clone()
    }

    /// Calls that broke the documented shapes.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Socket Mode connections made so far.
    pub fn connections(&self) -> u32 {
        self.lock().connections
    }

    /// Whether the bot is connected now.
    pub fn connected(&self) -> bool {
        self.lock().sockets.iter().any(|s| !s.is_closed())
    }

    /// Waits up to 30 s for `done`.
    pub async fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 30 s for {what}; calls: {:?}; posted: {:#?}",
                self.requests(),
                self.posted().iter().rev().take(5).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Milliseconds since the fake started.
    pub fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }
}

fn web_api(
    state: &Arc<Mutex<State>>,
    method: &str,
    auth: Option<&str>,
    body: &[u8],
    ms: u64,
    addr: SocketAddr,
) -> warp::reply::Response {
    let mut s = state.lock().unwrap();
    let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let expected = if method == "apps.connections.open" {
        &s.app_token
    } else {
        &s.bot_token
    };
    if auth != Some(format!("Bearer {expected}").as_str()) {
        s.violations
            .push(format!("{method}: authorization {auth:?}"));
        s.requests.push((method.to_owned(), 200));
        return not_ok("invalid_auth");
    }
    if let Some(limit) = s
        .limits
        .iter_mut()
        .find(|(m, times, _)| m == method && *times > 0)
    {
        limit.1 -= 1;
        let wait = limit.2;
        s.requests.push((method.to_owned(), 429));
        let mut response = warp::reply::with_status(
            warp::reply::json(&json!({"ok": false, "error": "ratelimited"})),
            StatusCode::TOO_MANY_REQUESTS,
        )
        .into_response();
        response
            .headers_mut()
            .insert("retry-after", wait.to_string().parse().unwrap());
        return response;
    }
    s.requests.push((method.to_owned(), 200));
    let text = body["text"].as_str().unwrap_or("");
    if text.chars().count() > 40_000 {
        s.violations.push(format!(
            "{method}: a text of {} characters",
            text.chars().count()
        ));
        return not_ok("msg_too_long");
    }
    for block in body["blocks"].as_array().into_iter().flatten() {
        let section = block["text"]["text"].as_str().unwrap_or("");
        if section.chars().count() > 3000 {
            s.violations.push(format!(
                "{method}: a section of {} characters",
                section.chars().count()
            ));
            return not_ok("invalid_blocks");
        }
        for element in block["elements"].as_array().into_iter().flatten() {
            let id = element["action_id"].as_str().unwrap_or("");
            if element["type"] != "button"
                || id.is_empty()
                || id.len() > 255
                || element["text"]["type"] != "plain_text"
            {
                s.violations
                    .push(format!("{method}: a malformed button {element}"));
                return not_ok("invalid_blocks");
            }
        }
    }
    let next_ts = |s: &mut State| {
        s.next += 1;
        format!("{}.000100", s.next)
    };
    match method {
        "auth.test" => ok(
            json!({"url": "https://test.slack.invalid/", "team": "Test", "user": "turnstone",
            "team_id": TEAM, "user_id": BOT_USER, "bot_id": "BBOT0001"}),
        ),
        "apps.connections.open" => {
            s.connections += 1;
            ok(json!({"url": format!("ws://{addr}/link?ticket={}", s.connections)}))
        }
        "chat.postMessage" | "chat.postEphemeral" => {
            let Some(channel) = body["channel"].as_str() else {
                s.violations.push(format!("{method} without a channel"));
                return not_ok("channel_not_found");
            };
            if text.is_empty() && body["blocks"].is_null() {
                s.violations
                    .push(format!("{method} with neither text nor blocks"));
                return not_ok("no_text");
            }
            let only_for = if method == "chat.postEphemeral" {
                match body["user"].as_str() {
                    Some(user) => Some(user.to_owned()),
                    None => {
                        s.violations
                            .push("chat.postEphemeral without a user".into());
                        return not_ok("user_not_in_channel");
                    }
                }
            } else {
                None
            };
            let ts = next_ts(&mut s);
            s.posted.push(Posted {
                channel: channel.to_owned(),
                ts: ts.clone(),
                thread_ts: body["thread_ts"].as_str().map(str::to_owned),
                text: text.to_owned(),
                blocks: body.get("blocks").cloned().unwrap_or(Value::Null),
                only_for,
                posted: ms,
                edits: Vec::new(),
            });
            if method == "chat.postEphemeral" {
                ok(json!({"message_ts": ts}))
            } else {
                ok(
                    json!({"channel": channel, "ts": ts, "message": {"type": "message", "user": BOT_USER, "text": text, "ts": ts}}),
                )
            }
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (body["channel"].as_str(), body["ts"].as_str()) else {
                s.violations
                    .push("chat.update without channel and ts".into());
                return not_ok("message_not_found");
            };
            let Some(message) = s
                .posted
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return not_ok("message_not_found");
            };
            message.text = text.to_owned();
            message.edits.push(ms);
            ok(json!({"channel": channel, "ts": ts, "text": text}))
        }
        "conversations.open" => {
            let user = body["users"].as_str().unwrap_or("");
            ok(json!({"channel": {"id": format!("D{user}")}}))
        }
        _ => {
            s.violations.push(format!("an unknown method {method}"));
            not_ok("unknown_method")
        }
    }
}

async fn session(socket: WebSocket, state: Arc<Mutex<State>>) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let hello = json!({"type": "hello", "num_connections": 1,
        "debug_info": {"host": "fake-slack", "build_number": 1, "approximate_connection_time": 18060},
        "connection_info": {"app_id": APP}});
    let _ = tx.send(Message::text(hello.to_string()));
    state.lock().unwrap().sockets.push(tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let closing = frame.is_close();
            if sink.send(frame).await.is_err() || closing {
                return;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        if frame.is_ping() {
            continue;
        }
        let Ok(text) = frame.to_str() else {
            continue;
        };
        let Ok(ack) = serde_json::from_str::<Value>(text) else {
            state
                .lock()
                .unwrap()
                .violations
                .push(format!("a frame that is not JSON: {text}"));
            continue;
        };
        if ack["envelope_id"].is_string() {
            state.lock().unwrap().acks.push(ack);
        }
    }
    writer.abort();
    state
        .lock()
        .unwrap()
        .sockets
        .retain(|s| !s.same_channel(&tx));
}
