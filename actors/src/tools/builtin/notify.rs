//! `notify`: sends a message to a person through a channel gateway (`turnstone-channel`).
//! Gateways register in the `services` table; those with a heartbeat in the last 120 s are
//! tried in order with `POST {url}/v1/api/notify`, and the whole cycle is retried after 1 s
//! and 3 s. At most five notifications succeed per turn.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::auth::{Audience, Scope, mint};
use crate::provider::ToolSpec;
use crate::storage::Store;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Longest message.
const MAX_MESSAGE: usize = 2000;
/// Successful notifications per turn.
pub const PER_TURN: u32 = 5;
/// A gateway is alive when its heartbeat is this recent.
const FRESH: Duration = Duration::from_secs(120);
/// Per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How the tool authenticates to gateways.
#[derive(Clone, Debug, Default)]
pub struct ChannelAuth {
    /// A static token (`$TURNSTONE_CHANNEL_AUTH_TOKEN`).
    pub token: Option<String>,
    /// Else a JWT (sub "system", scope write, audience turnstone-channel) with this secret.
    pub jwt_secret: Option<String>,
}

/// The notify tool.
#[derive(Debug)]
pub struct Notify {
    store: Option<Store>,
    auth: ChannelAuth,
    retries: Vec<Duration>,
    /// Session → (turn, successes in that turn).
    sent: Mutex<HashMap<String, (u64, u32)>>,
}

impl Notify {
    /// Finding gateways in `store`, authenticating with `auth`.
    pub fn new(store: Option<Store>, auth: ChannelAuth) -> Self {
        Self {
            store,
            auth,
            retries: vec![Duration::from_secs(1), Duration::from_secs(3)],
            sent: Mutex::new(HashMap::new()),
        }
    }

    /// Waits between delivery cycles (1 s, 3 s by default).
    pub fn with_retries(mut self, retries: Vec<Duration>) -> Self {
        self.retries = retries;
        self
    }

    fn bearer(&self) -> Result<String, String> {
        if let Some(token) = self.auth.token.as_deref().filter(|t| !t.is_empty()) {
            return Ok(token.to_owned());
        }
        match self.auth.jwt_secret.as_deref() {
            Some(secret) => mint(
                secret,
                "system",
                &[Scope::Write],
                "service",
                Audience::Channel,
            )
            .map_err(|e| format!("cannot sign the notify token: {e}")),
            None => Err(
                "notify needs $TURNSTONE_CHANNEL_AUTH_TOKEN or auth.jwt_secret to \
                         authenticate to the channel gateway"
                    .into(),
            ),
        }
    }

    fn successes(&self, session: &str, turn: u64) -> u32 {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        match sent.get(session) {
            Some((t, n)) if *t == turn => *n,
            _ => 0,
        }
    }

    fn count_success(&self, session: &str, turn: u64) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let entry = sent.entry(session.to_owned()).or_insert((turn, 0));
        if entry.0 != turn {
            *entry = (turn, 0);
        }
        entry.1 += 1;
    }

    /// One cycle over the live gateways: the first that reports a message sent wins.
    async fn cycle(&self, client: &reqwest::Client, body: &Value) -> Result<String, String> {
        let store = self
            .store
            .as_ref()
            .ok_or("notify needs the database, where channel gateways register")?;
        let gateways = store
            .live_services("channel", FRESH)
            .await
            .map_err(|e| e.to_string())?;
        if gateways.is_empty() {
            return Err(
                "no channel gateway is running (none sent a heartbeat in the last \
                        120 s); start turnstone-channel"
                    .into(),
            );
        }
        let token = self.bearer()?;
        let mut failures = Vec::new();
        for gateway in gateways {
            let url = format!("{}/v1/api/notify", gateway.url.trim_end_matches('/'));
            let answer = client
                .post(&url)
                .bearer_auth(&token)
                // Inside the tool call's span: the gateway's spans join the turn's trace.
                .headers(crate::provider::trace_headers(
                    turnstone_runtime::remote::TraceContext::current().as_ref(),
                ))
                .json(body)
                .send()
                .await;
            let response = match answer {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{}: {e}", gateway.service_id));
                    continue;
                }
            };
            let status = response.status();
            let reply: Value = response.json().await.unwrap_or(Value::Null);
            let results = reply["results"].as_array().cloned().unwrap_or_default();
            let sent = results.iter().find(|r| r["status"] == "sent");
            match sent {
                Some(result) if status.as_u16() < 300 => {
                    return Ok(format!(
                        "Notification sent via {} ({})",
                        result["channel_type"].as_str().unwrap_or("channel"),
                        gateway.service_id
                    ));
                }
                _ => {
                    let why = reply["error"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            results
                                .first()
                                .and_then(|r| r["status"].as_str())
                                .map(|s| format!("delivery {s}"))
                        })
                        .unwrap_or_else(|| "nothing was sent".into());
                    failures.push(format!(
                        "{}: HTTP {}: {why}",
                        gateway.service_id,
                        status.as_u16()
                    ));
                }
            }
        }
        Err(failures.join("; "))
    }
}

fn text<'a>(args: &'a Value, key: &str) -> Option<&'a str> {
    args[key].as_str().map(str::trim).filter(|s| !s.is_empty())
}

/// The gateway's target object.
fn target(args: &Value) -> Result<Value, String> {
    if let Some(username) = text(args, "username") {
        return Ok(json!({"username": username}));
    }
    match (text(args, "channel_type"), text(args, "channel_id")) {
        (Some(kind), Some(id)) => Ok(json!({"channel_type": kind, "channel_id": id})),
        (Some(_), None) => Err("channel_type needs a channel_id".into()),
        (None, Some(_)) => Err("channel_id needs a channel_type".into()),
        (None, None) => {
            Err("say who to notify: a username, or a channel_type and channel_id".into())
        }
    }
}

#[async_trait]
impl Tool for Notify {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "notify".into(),
            description: "Send a short message to a person (by username) or a chat channel \
                          through the channel gateway, e.g. when long work is done."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "message": {"type": "string", "maxLength": MAX_MESSAGE},
                "username": {"type": "string"},
                "channel_type": {"type": "string", "enum": ["discord", "slack"]},
                "channel_id": {"type": "string"},
                "title": {"type": "string"}},
                "required": ["message"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        false
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("message")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        let message = text(args, "message").ok_or("missing required argument 'message'")?;
        let length = message.chars().count();
        if length > MAX_MESSAGE {
            return Err(format!(
                "message is {length} characters; the limit is {MAX_MESSAGE}"
            ));
        }
        target(args).map(|_| ())
    }
    async fn run(&self, args: Value, ctx: ToolContext) -> Result<ToolOutput, String> {
        self.validate(&args)?;
        if self.successes(&ctx.session_id, ctx.turn) >= PER_TURN {
            return Err(format!(
                "notification limit reached: at most {PER_TURN} per turn"
            ));
        }
        let mut body = json!({
            "target": target(&args)?,
            "message": text(&args, "message"),
        });
        if let Some(title) = text(&args, "title") {
            body["title"] = json!(title);
        }
        crate::provider::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| e.to_string())?;
        let mut last = self.cycle(&client, &body).await;
        for wait in &self.retries {
            if last.is_ok() {
                break;
            }
            tokio::time::sleep(*wait).await;
            last = self.cycle(&client, &body).await;
        }
        match last {
            Ok(done) => {
                self.count_success(&ctx.session_id, ctx.turn);
                Ok(ToolOutput::text(done))
            }
            Err(why) => Err(format!("notify failed: {why}")),
        }
    }
}
