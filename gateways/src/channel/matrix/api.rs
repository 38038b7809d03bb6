//! The few Matrix client-server API calls the bot makes (spec v1.x, `/_matrix/client/v3`):
//! password login, who-am-I, long-polled sync, joining, sending and creating rooms. Rate
//! limits (`M_LIMIT_EXCEEDED`, 429) come back as [`AdapterError::RateLimited`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Duration;

use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::channel::adapter::AdapterError;

/// How long a sync waits on the server for news.
pub const SYNC_WAIT: Duration = Duration::from_secs(30);

/// A homeserver session.
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: RwLock<String>,
    txn: AtomicU64,
    txn_prefix: String,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

fn segment(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

impl Api {
    /// A session with `homeserver` (`http://host:port`), not yet signed in.
    pub fn new(homeserver: &str) -> Result<Self, AdapterError> {
        turnstone_actors::provider::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(SYNC_WAIT + Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| AdapterError::Platform(format!("cannot make an HTTP client: {e}")))?;
        Ok(Self {
            http,
            base: format!("{}/_matrix/client/v3", homeserver.trim_end_matches('/')),
            token: RwLock::new(String::new()),
            txn: AtomicU64::new(0),
            txn_prefix: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
        })
    }

    /// Uses an access token.
    pub fn set_token(&self, token: &str) {
        token.clone_into(&mut self.token.write().unwrap_or_else(PoisonError::into_inner));
    }

    /// Whether a token is set.
    pub fn signed_in(&self) -> bool {
        !self
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Signs in with a password; the account's full user id.
    pub async fn login(&self, user: &str, password: &str) -> Result<String, AdapterError> {
        let body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
            "initial_device_display_name": "turnstone-channel",
        });
        let answer = self
            .call(reqwest::Method::POST, "/login", Some(body), None)
            .await?;
        let token = answer["access_token"].as_str().unwrap_or("");
        if token.is_empty() {
            return Err(AdapterError::Platform("login gave no access token".into()));
        }
        self.set_token(token);
        Ok(answer["user_id"].as_str().unwrap_or(user).to_owned())
    }

    /// The signed-in account's user id.
    pub async fn whoami(&self) -> Result<String, AdapterError> {
        let answer = self
            .call(reqwest::Method::GET, "/account/whoami", None, None)
            .await?;
        answer["user_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Platform("whoami gave no user id".into()))
    }

    /// One sync: what happened since `since` (waiting up to `wait` for something).
    pub async fn sync(&self, since: Option<&str>, wait: Duration) -> Result<Value, AdapterError> {
        let mut path = format!("/sync?timeout={}", wait.as_millis());
        match since {
            Some(since) => {
                path.push_str("&since=");
                path.push_str(&segment(since));
            }
            // The first sync only learns where "now" is: history is not answered.
            None => path.push_str(&format!(
                "&filter={}",
                segment(r#"{"room":{"timeline":{"limit":0}}}"#)
            )),
        }
        self.call(
            reqwest::Method::GET,
            &path,
            None,
            Some(wait + Duration::from_secs(15)),
        )
        .await
    }

    /// Joins a room the bot was invited to.
    pub async fn join(&self, room_id: &str) -> Result<(), AdapterError> {
        self.call(
            reqwest::Method::POST,
            &format!("/rooms/{}/join", segment(room_id)),
            Some(json!({})),
            None,
        )
        .await
        .map(drop)
    }

    /// Sends an event to a room; its event id.
    pub async fn send(
        &self,
        room_id: &str,
        kind: &str,
        content: Value,
    ) -> Result<String, AdapterError> {
        let txn = format!(
            "{}-{}",
            self.txn_prefix,
            self.txn.fetch_add(1, Ordering::Relaxed)
        );
        let answer = self
            .call(
                reqwest::Method::PUT,
                &format!(
                    "/rooms/{}/send/{}/{}",
                    segment(room_id),
                    segment(kind),
                    segment(&txn)
                ),
                Some(content),
                None,
            )
            .await?;
        answer["event_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Platform("send gave no event id".into()))
    }

    /// Creates a direct-message room with `user`; its id.
    pub async fn create_direct(&self, user: &str) -> Result<String, AdapterError> {
        let answer = self
            .call(
                reqwest::Method::POST,
                "/createRoom",
                Some(
                    json!({"is_direct": true, "invite": [user], "preset": "trusted_private_chat"}),
                ),
                None,
            )
            .await?;
        answer["room_id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| AdapterError::Platform("createRoom gave no room id".into()))
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        timeout: Option<Duration>,
    ) -> Result<Value, AdapterError> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        let token = self
            .token
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if !token.is_empty() {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        let response = request
            .send()
            .await
            .map_err(|e| AdapterError::Unreachable(e.to_string()))?;
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(answer);
        }
        let code = answer["errcode"].as_str().unwrap_or("");
        if status.as_u16() == 429 || code == "M_LIMIT_EXCEEDED" {
            let ms = answer["retry_after_ms"]
                .as_u64()
                .or_else(|| answer["error"]["retry_after_ms"].as_u64())
                .unwrap_or(1000);
            return Err(AdapterError::RateLimited(Duration::from_millis(ms)));
        }
        let error = answer["error"].as_str().unwrap_or("");
        Err(AdapterError::Platform(format!(
            "the homeserver answered {status} {code} {error}"
        )))
    }
}
