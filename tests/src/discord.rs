//! A Discord on loopback that speaks the documented wire protocol (API v10), so the gateway's
//! Discord adapter runs unmodified against it through its base URLs:
//!
//! - REST under `/api/v10`: messages (create, edit), threads (from a message, standalone,
//!   archive), DM channels, interaction callbacks and response edits, command overwrites.
//!   Every request must carry `Authorization: Bot {token}` and documented bodies (content
//!   ≤ 2,000 characters, thread names ≤ 100, a valid archive duration, buttons inside action
//!   rows); anything else is answered as Discord does (401, 400 with code 50035) and recorded
//!   as a violation. Rate limits can be imposed (429, `Retry-After`, `X-RateLimit-*`).
//! - The gateway websocket: HELLO, IDENTIFY → READY (with `resume_gateway_url`), heartbeats
//!   and ACKs, RESUME replaying what was missed → RESUMED, and dispatches the test sends
//!   (`MESSAGE_CREATE`, `INTERACTION_CREATE`). The connection can be dropped.
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
pub const BOT_ID: &str = "900000000000000001";
/// Its application id.
pub const APP_ID: &str = "900000000000000002";
/// The guild of the test channels.
pub const GUILD_ID: &str = "900000000000000003";

/// A message as the fake keeps it.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    /// Id.
    pub id: String,
    /// Channel.
    pub channel_id: String,
    /// Author.
    pub author: String,
    /// Text now.
    pub content: String,
    /// Embeds.
    pub embeds: Value,
    /// Components.
    pub components: Value,
    /// When it was posted (ms since the fake started).
    pub posted: u64,
    /// When each edit landed (ms).
    pub edits: Vec<u64>,
}

/// A thread.
#[derive(Clone, Debug)]
pub struct StoredThread {
    /// Id.
    pub id: String,
    /// Parent channel.
    pub parent_id: String,
    /// The message it starts from ("" for a standalone one).
    pub from_message: String,
    /// Name.
    pub name: String,
    /// Minutes until archived.
    pub auto_archive_duration: u64,
    /// Archived.
    pub archived: bool,
}

/// One REST request.
#[derive(Clone, Debug)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path after `/api/v10`.
    pub path: String,
    /// Body.
    pub body: Value,
    /// Answered status.
    pub status: u16,
}

#[derive(Default)]
struct State {
    token: String,
    next_id: u64,
    messages: Vec<StoredMessage>,
    threads: Vec<StoredThread>,
    callbacks: Vec<(String, Value)>,
    responses: Vec<(String, String)>,
    commands: Vec<Value>,
    requests: Vec<Recorded>,
    violations: Vec<String>,
    limits: Vec<(String, String, u32, f64)>,
    events: Vec<(u64, String, Value)>,
    seq: u64,
    session_id: String,
    identifies: u32,
    resumes: u32,
    socket: Option<mpsc::UnboundedSender<Message>>,
}

/// The fake Discord.
pub struct FakeDiscord {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    started: Instant,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDiscord {
    /// Starts on a free loopback port, accepting bot `token`.
    pub async fn start(token: &str) -> Self {
        let state = Arc::new(Mutex::new(State {
            token: token.to_owned(),
            next_id: 910_000_000_000_000_000,
            session_id: uuid::Uuid::new_v4().simple().to_string(),
            ..State::default()
        }));
        let started = Instant::now();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let rest_state = state.clone();
        let rest = warp::path("api")
            .and(warp::path("v10"))
            .and(warp::path::tail())
            .and(warp::method())
            .and(warp::header::optional::<String>("authorization"))
            .and(warp::body::bytes())
            .map(
                move |tail: warp::path::Tail,
                      method: warp::http::Method,
                      auth: Option<String>,
                      body: bytes::Bytes| {
                    let ms = started.elapsed().as_millis() as u64;
                    rest_answer(
                        &rest_state,
                        method.as_str(),
                        tail.as_str(),
                        auth.as_deref(),
                        &body,
                        ms,
                        addr,
                    )
                },
            );
        let ws_state = state.clone();
        let gateway = warp::path::end()
            .and(warp::ws())
            .map(move |ws: warp::ws::Ws| {
                let state = ws_state.clone();
                ws.on_upgrade(move |socket| session(socket, state, addr))
            });
        let routes = rest.or(gateway);
        let server = tokio::spawn(warp::serve(routes).incoming(listener).run());
        Self {
            addr,
            state,
            started,
            server,
        }
    }

    /// `http://127.0.0.1:PORT` (the `--discord-api-url`).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `ws://127.0.0.1:PORT` (the `--discord-gateway-url`).
    pub fn gateway_url(&self) -> String {
        format!("ws://{}", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap()
    }

    fn next_id(&self) -> String {
        let mut s = self.lock();
        s.next_id += 1;
        s.next_id.to_string()
    }

    /// Sends a dispatch to the bot (kept for a resume).
    pub fn dispatch(&self, kind: &str, data: Value) {
        let mut s = self.lock();
        s.seq += 1;
        let seq = s.seq;
        s.events.push((seq, kind.to_owned(), data.clone()));
        let frame = json!({"op": 0, "s": seq, "t": kind, "d": data}).to_string();
        if let Some(socket) = &s.socket {
            let _ = socket.send(Message::text(frame));
        }
    }

    /// `user` writes `content` in `channel`, mentioning the bot when `mention`; the message id.
    pub fn say(&self, user: &str, channel: &str, content: &str, mention: bool) -> String {
        let id = self.next_id();
        let content = if mention {
            format!("<@{BOT_ID}> {content}")
        } else {
            content.to_owned()
        };
        let mentions = if mention {
            json!([{"id": BOT_ID, "username": "turnstone", "discriminator": "0", "avatar": null, "bot": true}])
        } else {
            json!([])
        };
        let ms = self.started.elapsed().as_millis() as u64;
        self.lock().messages.push(StoredMessage {
            id: id.clone(),
            channel_id: channel.to_owned(),
            author: user.to_owned(),
            content: content.clone(),
            embeds: json!([]),
            components: json!([]),
            posted: ms,
            edits: Vec::new(),
        });
        self.dispatch(
            "MESSAGE_CREATE",
            json!({"id": id, "channel_id": channel, "guild_id": GUILD_ID, "type": 0,
                "author": {"id": user, "username": format!("user{user}"), "discriminator": "0", "avatar": null},
                "content": content, "mentions": mentions, "mention_roles": [], "mention_everyone": false,
                "attachments": [], "embeds": [], "pinned": false, "tts": false,
                "timestamp": "2026-12-07T10:00:00.000000+00:00", "edited_timestamp": null}),
        );
        id
    }

    fn interaction(
        &self,
        kind: u8,
        user: &str,
        channel: &str,
        data: Value,
        message: Option<Value>,
    ) -> String {
        let id = self.next_id();
        let token = format!("itoken-{id}");
        let mut body = json!({"id": id, "application_id": APP_ID, "type": kind, "token": token, "version": 1,
            "guild_id": GUILD_ID, "channel_id": channel, "channel": {"id": channel, "type": 11},
            "member": {"user": {"id": user, "username": format!("user{user}"), "discriminator": "0", "avatar": null},
                "roles": [], "joined_at": "2026-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false, "flags": 0},
            "data": data, "entitlements": [], "authorizing_integration_owners": {}, "attachment_size_limit": 8388608});
        if let Some(message) = message {
            body["message"] = message;
        }
        self.dispatch("INTERACTION_CREATE", body);
        token
    }

    /// `user` runs `/name value` in `channel`; the interaction token.
    pub fn slash(
        &self,
        user: &str,
        channel: &str,
        name: &str,
        option: Option<(&str, &str)>,
    ) -> String {
        let options = match option {
            Some((key, value)) => json!([{"name": key, "type": 3, "value": value}]),
            None => json!([]),
        };
        self.interaction(
            2,
            user,
            channel,
            json!({"id": "1", "name": name, "type": 1, "options": options}),
            None,
        )
    }

    /// `user` presses the button `custom_id` of message `message_id`; the interaction token.
    pub fn click(&self, user: &str, message_id: &str, custom_id: &str) -> String {
        let message = self.message(message_id).expect("no such message");
        let payload = json!({"id": message.id, "channel_id": message.channel_id, "content": message.content,
            "embeds": message.embeds, "components": message.components,
            "author": {"id": BOT_ID, "username": "turnstone", "discriminator": "0", "avatar": null, "bot": true}});
        self.interaction(
            3,
            user,
            &message.channel_id,
            json!({"custom_id": custom_id, "component_type": 2}),
            Some(payload),
        )
    }

    /// `user` submits the form `custom_id` with `value` in its one text input.
    pub fn submit(&self, user: &str, channel: &str, custom_id: &str, value: &str) -> String {
        self.interaction(
            5,
            user,
            channel,
            json!({"custom_id": custom_id, "components": [{"type": 1, "components": [{"type": 4, "custom_id": "changes", "value": value}]}]}),
            None,
        )
    }

    /// Drops the gateway connection (the bot should resume).
    pub fn drop_connection(&self) {
        if let Some(socket) = self.lock().socket.take() {
            let _ = socket.send(Message::close_with(4000u16, "dropped by the test"));
        }
    }

    /// Answers the next `times` requests of `method` whose path contains `path` with 429.
    pub fn rate_limit(&self, method: &str, path: &str, times: u32, retry_after: f64) {
        self.lock()
            .limits
            .push((method.to_owned(), path.to_owned(), times, retry_after));
    }

    /// A message by id.
    pub fn message(&self, id: &str) -> Option<StoredMessage> {
        self.lock().messages.iter().find(|m| m.id == id).cloned()
    }

    /// The bot's messages in `channel`, oldest first.
    pub fn bot_messages(&self, channel: &str) -> Vec<StoredMessage> {
        self.lock()
            .messages
            .iter()
            .filter(|m| m.channel_id == channel && m.author == BOT_ID)
            .cloned()
            .collect()
    }

    /// Threads made.
    pub fn threads(&self) -> Vec<StoredThread> {
        self.lock().threads.clone()
    }

    /// Interaction callbacks (token, body).
    pub fn callbacks(&self) -> Vec<(String, Value)> {
        self.lock().callbacks.clone()
    }

    /// The text the bot showed the person behind interaction `token` (its last edit).
    pub fn response(&self, token: &str) -> Option<String> {
        let s = self.lock();
        if let Some((_, text)) = s.responses.iter().rev().find(|(t, _)| t == token) {
            return Some(text.clone());
        }
        s.callbacks
            .iter()
            .rev()
            .find(|(t, b)| t == token && b["type"] == 4)
            .map(|(_, b)| b["data"]["content"].as_str().unwrap_or("").to_owned())
    }

    /// Registered commands.
    pub fn commands(&self) -> Vec<Value> {
        self.lock().commands.clone()
    }

    /// Every REST request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Requests that broke the documented shapes.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// (identifies, resumes) seen by the gateway.
    pub fn sessions(&self) -> (u32, u32) {
        let s = self.lock();
        (s.identifies, s.resumes)
    }

    /// Waits up to 30 s for `done` to hold of the fake; panics with `what` otherwise.
    pub async fn wait(&self, what: &str, done: impl Fn(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 30 s for {what}; requests: {:#?}",
                self.requests().iter().rev().take(8).collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn discord_error(status: StatusCode, code: u64, message: &str) -> warp::reply::Response {
    let body = warp::reply::json(&json!({"code": code, "message": message}));
    warp::reply::with_status(body, status).into_response()
}

fn check_components(components: &Value, violations: &mut Vec<String>) {
    let Some(rows) = components.as_array() else {
        return;
    };
    for row in rows {
        if row["type"] != 1 {
            violations.push(format!(
                "a top-level component that is not an action row: {row}"
            ));
        }
        for button in row["components"].as_array().into_iter().flatten() {
            let id = button["custom_id"].as_str().unwrap_or("");
            if button["type"] != 2
                || button["style"].as_u64().is_none()
                || id.is_empty()
                || id.len() > 100
            {
                violations.push(format!("a malformed button: {button}"));
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn rest_answer(
    state: &Arc<Mutex<State>>,
    method: &str,
    path: &str,
    auth: Option<&str>,
    body: &[u8],
    ms: u64,
    addr: SocketAddr,
) -> warp::reply::Response {
    let _ = addr;
    let mut s = state.lock().unwrap();
    let body: Value = if body.is_empty() {
        Value::Null
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(_) => {
                s.violations
                    .push(format!("{method} /{path}: a body that is not JSON"));
                return discord_error(
                    StatusCode::BAD_REQUEST,
                    50109,
                    "The request body contains invalid JSON.",
                );
            }
        }
    };
    let record = |s: &mut State, status: u16| {
        s.requests.push(Recorded {
            method: method.to_owned(),
            path: path.to_owned(),
            body: body.clone(),
            status,
        });
    };
    if auth != Some(format!("Bot {}", s.token).as_str()) {
        s.violations
            .push(format!("{method} /{path}: authorization {auth:?}"));
        record(&mut s, 401);
        return discord_error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    if let Some(limit) = s
        .limits
        .iter_mut()
        .find(|(m, p, times, _)| m == method && path.contains(p.as_str()) && *times > 0)
    {
        limit.2 -= 1;
        let wait = limit.3;
        record(&mut s, 429);
        let reply = warp::reply::json(
            &json!({"message": "You are being rate limited.", "retry_after": wait, "global": false}),
        );
        let mut response =
            warp::reply::with_status(reply, StatusCode::TOO_MANY_REQUESTS).into_response();
        let headers = response.headers_mut();
        for (name, value) in [
            ("retry-after", format!("{}", wait.ceil() as u64)),
            ("x-ratelimit-limit", "5".to_owned()),
            ("x-ratelimit-remaining", "0".to_owned()),
            ("x-ratelimit-reset-after", format!("{wait:.3}")),
            ("x-ratelimit-bucket", "fake-bucket".to_owned()),
            ("x-ratelimit-scope", "user".to_owned()),
        ] {
            headers.insert(name, value.parse().unwrap());
        }
        return response;
    }
    let parts: Vec<&str> = path.split('/').collect();
    let new_id = |s: &mut State| {
        s.next_id += 1;
        s.next_id.to_string()
    };
    let content_ok = |s: &mut State, body: &Value| {
        let content = body["content"].as_str().unwrap_or("");
        if content.chars().count() > 2000 {
            s.violations
                .push(format!("content of {} characters", content.chars().count()));
            return false;
        }
        check_components(&body["components"], &mut s.violations);
        true
    };
    let answer: Value = match (method, parts.as_slice()) {
        ("POST", ["channels", channel, "messages"]) => {
            if !content_ok(&mut s, &body) {
                record(&mut s, 400);
                return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let id = new_id(&mut s);
            let message = StoredMessage {
                id: id.clone(),
                channel_id: (*channel).to_owned(),
                author: BOT_ID.to_owned(),
                content: body["content"].as_str().unwrap_or("").to_owned(),
                embeds: body.get("embeds").cloned().unwrap_or(json!([])),
                components: body.get("components").cloned().unwrap_or(json!([])),
                posted: ms,
                edits: Vec::new(),
            };
            s.messages.push(message);
            json!({"id": id, "channel_id": channel, "content": body["content"], "type": 0,
                "author": {"id": BOT_ID, "username": "turnstone", "discriminator": "0", "avatar": null, "bot": true}})
        }
        ("PATCH", ["channels", channel, "messages", message]) => {
            if !content_ok(&mut s, &body) {
                record(&mut s, 400);
                return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let Some(stored) = s
                .messages
                .iter_mut()
                .find(|m| m.id == *message && m.channel_id == *channel)
            else {
                record(&mut s, 404);
                return discord_error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
            };
            if let Some(content) = body["content"].as_str() {
                stored.content = content.to_owned();
            }
            stored.edits.push(ms);
            json!({"id": message, "channel_id": channel, "content": stored.content})
        }
        (
            "POST",
            ["channels", parent, "messages", _, "threads"] | ["channels", parent, "threads"],
        ) => {
            let name = body["name"].as_str().unwrap_or("");
            let archive = body["auto_archive_duration"].as_u64().unwrap_or(0);
            if name.is_empty()
                || name.chars().count() > 100
                || ![60, 1440, 4320, 10080].contains(&archive)
            {
                s.violations
                    .push(format!("a thread named {name:?} archived after {archive}"));
                record(&mut s, 400);
                return discord_error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
            }
            let id = new_id(&mut s);
            // `channels/{parent}/messages/{message}/threads` starts from a message.
            let from = if parts.len() == 5 { parts[3] } else { "" };
            s.threads.push(StoredThread {
                id: id.clone(),
                parent_id: (*parent).to_owned(),
                from_message: from.to_owned(),
                name: name.to_owned(),
                auto_archive_duration: archive,
                archived: false,
            });
            json!({"id": id, "type": 11, "parent_id": parent, "name": name, "guild_id": GUILD_ID})
        }
        ("PATCH", ["channels", channel]) => {
            let archived = body["archived"].as_bool().unwrap_or(false);
            if let Some(thread) = s.threads.iter_mut().find(|t| t.id == *channel) {
                thread.archived = archived;
            }
            json!({"id": channel, "type": 11})
        }
        ("POST", ["users", "@me", "channels"]) => {
            let id = new_id(&mut s);
            json!({"id": id, "type": 1, "recipients": [{"id": body["recipient_id"]}]})
        }
        ("POST", ["interactions", _id, token, "callback"]) => {
            let kind = body["type"].as_u64().unwrap_or(0);
            if ![4, 5, 6, 7, 9].contains(&kind) {
                s.violations
                    .push(format!("interaction callback type {kind}"));
            }
            s.callbacks.push(((*token).to_owned(), body.clone()));
            record(&mut s, 204);
            return warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response();
        }
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            if *app != APP_ID {
                s.violations
                    .push(format!("a response edit for application {app}"));
            }
            let content = body["content"].as_str().unwrap_or("").to_owned();
            s.responses.push(((*token).to_owned(), content.clone()));
            json!({"id": "1", "content": content})
        }
        ("PUT", ["applications", app, "commands"])
        | ("PUT", ["applications", app, "guilds", _, "commands"]) => {
            if *app != APP_ID {
                s.violations.push(format!("commands for application {app}"));
            }
            let commands = body.as_array().cloned().unwrap_or_default();
            for command in &commands {
                if command["name"].as_str().is_none_or(str::is_empty)
                    || command["description"].as_str().is_none_or(str::is_empty)
                {
                    s.violations
                        .push(format!("a command without name or description: {command}"));
                }
            }
            s.commands = commands;
            json!(s.commands)
        }
        _ => {
            s.violations
                .push(format!("an unknown route {method} /{path}"));
            record(&mut s, 404);
            return discord_error(StatusCode::NOT_FOUND, 0, "404: Not Found");
        }
    };
    record(&mut s, 200);
    warp::reply::json(&answer).into_response()
}

/// One gateway connection.
async fn session(socket: WebSocket, state: Arc<Mutex<State>>, addr: SocketAddr) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel::<Message>();
    let _ = tx.send(Message::text(
        json!({"op": 10, "d": {"heartbeat_interval": 41250}}).to_string(),
    ));
    let writer = tokio::spawn(async move {
        while let Some(frame) = rx.recv().await {
            let closing = frame.is_close();
            if sink.send(frame).await.is_err() || closing {
                return;
            }
        }
    });
    while let Some(Ok(frame)) = stream.next().await {
        let Ok(text) = frame.to_str() else {
            continue;
        };
        let Ok(payload) = serde_json::from_str::<Value>(text) else {
            continue;
        };
        let mut s = state.lock().unwrap();
        match payload["op"].as_u64() {
            Some(1) => {
                let _ = tx.send(Message::text(json!({"op": 11}).to_string()));
            }
            Some(2) => {
                // Discord takes the token bare or with its `Bot ` prefix (twilight sends it so).
                let given = payload["d"]["token"].as_str().unwrap_or("");
                if given.strip_prefix("Bot ").unwrap_or(given) != s.token {
                    s.violations
                        .push(format!("identify with token {:?}", payload["d"]["token"]));
                }
                s.identifies += 1;
                s.session_id = uuid::Uuid::new_v4().simple().to_string();
                s.seq += 1;
                let ready = json!({"op": 0, "s": s.seq, "t": "READY", "d": {"v": 10,
                    "user": {"id": BOT_ID, "username": "turnstone", "discriminator": "0", "avatar": null, "bot": true},
                    "guilds": [], "session_id": s.session_id, "resume_gateway_url": format!("ws://{addr}"),
                    "shard": [0, 1], "application": {"id": APP_ID, "flags": 0}}});
                let _ = tx.send(Message::text(ready.to_string()));
                s.socket = Some(tx.clone());
            }
            Some(6) => {
                let d = &payload["d"];
                if d["session_id"].as_str() != Some(s.session_id.as_str()) {
                    // Unknown session: "invalid session, not resumable".
                    let _ = tx.send(Message::text(json!({"op": 9, "d": false}).to_string()));
                    continue;
                }
                s.resumes += 1;
                let from = d["seq"].as_u64().unwrap_or(0);
                for (seq, kind, data) in s.events.iter().filter(|(seq, _, _)| *seq > from) {
                    let frame = json!({"op": 0, "s": seq, "t": kind, "d": data});
                    let _ = tx.send(Message::text(frame.to_string()));
                }
                s.seq += 1;
                let resumed = json!({"op": 0, "s": s.seq, "t": "RESUMED", "d": {}});
                let _ = tx.send(Message::text(resumed.to_string()));
                s.socket = Some(tx.clone());
            }
            _ => {}
        }
        drop(s);
        if tx.is_closed() {
            break;
        }
    }
    writer.abort();
}
