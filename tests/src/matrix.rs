//! People on the test Synapse (`scripts/test` starts it): users registered with the shared
//! secret, who make rooms, talk, react, and read what the bot wrote — through the same
//! client-server API any Matrix client uses.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Duration;

use hmac::{Hmac, Mac};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Value, json};

use crate::services::ServiceMissing;

/// The Synapse URL.
pub fn synapse_url() -> Result<String, ServiceMissing> {
    std::env::var("TURNSTONE_TEST_SYNAPSE_URL").map_err(|_| ServiceMissing {
        var: "TURNSTONE_TEST_SYNAPSE_URL",
        service: "Matrix Synapse",
    })
}

fn secret() -> String {
    std::env::var("TURNSTONE_TEST_SYNAPSE_SECRET").unwrap()
}

fn seg(s: &str) -> String {
    utf8_percent_encode(s, NON_ALPHANUMERIC).to_string()
}

/// A signed-in Matrix account.
#[derive(Clone, Debug)]
pub struct MatrixUser {
    /// `@name:test.local`.
    pub user_id: String,
    /// Its password.
    pub password: String,
    token: String,
    base: String,
    http: reqwest::Client,
}

impl MatrixUser {
    /// Registers `name` plus a random suffix (so runs do not collide) and signs it in.
    pub async fn register(name: &str) -> Self {
        Self::register_as(name, false).await
    }

    /// A server administrator (for the admin API: rate-limit overrides).
    pub async fn register_admin(name: &str) -> Self {
        Self::register_as(name, true).await
    }

    async fn register_as(name: &str, admin: bool) -> Self {
        let server = synapse_url().unwrap();
        turnstone_actors::provider::install_crypto_provider();
        let http = reqwest::Client::new();
        let username = format!("{name}{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let password = format!("pw-{username}");
        let url = format!("{server}/_synapse/admin/v1/register");
        let nonce: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let nonce = nonce["nonce"].as_str().unwrap().to_owned();
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(secret().as_bytes()).unwrap();
        let role = if admin { "admin" } else { "notadmin" };
        mac.update(format!("{nonce}\0{username}\0{password}\0{role}").as_bytes());
        let mac = hex::encode(mac.finalize().into_bytes());
        let registered: Value = http
            .post(&url)
            .json(&json!({"nonce": nonce, "username": username, "password": password, "admin": admin, "mac": mac}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = registered["access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("registration failed: {registered}"))
            .to_owned();
        Self {
            user_id: registered["user_id"].as_str().unwrap().to_owned(),
            password,
            token,
            base: format!("{server}/_matrix/client/v3"),
            http,
        }
    }

    /// As an administrator: limits `user` to `per_second` messages (bursts of `burst`).
    pub async fn limit_messages(&self, user: &str, per_second: u32, burst: u32) {
        let url = format!(
            "{}/_synapse/admin/v1/users/{}/override_ratelimit",
            synapse_url().unwrap(),
            seg(user)
        );
        let response = self
            .http
            .post(url)
            .bearer_auth(&self.token)
            .json(&json!({"messages_per_second": per_second, "burst_count": burst}))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "override_ratelimit: {}",
            response.status()
        );
    }

    /// The localpart (what the bot signs in with).
    pub fn localpart(&self) -> &str {
        self.user_id
            .trim_start_matches('@')
            .split(':')
            .next()
            .unwrap()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{path}: {status} {answer}");
        answer
    }

    /// Creates a room inviting `invite`; its id.
    pub async fn create_room(&self, invite: &[&str]) -> String {
        let answer = self
            .call(
                reqwest::Method::POST,
                "/createRoom",
                Some(json!({"invite": invite, "preset": "private_chat"})),
            )
            .await;
        answer["room_id"].as_str().unwrap().to_owned()
    }

    /// Joins a room.
    pub async fn join(&self, room: &str) {
        self.call(
            reqwest::Method::POST,
            &format!("/rooms/{}/join", seg(room)),
            Some(json!({})),
        )
        .await;
    }

    /// The rooms this user is invited to.
    pub async fn invites(&self) -> Vec<String> {
        let answer = self
            .call(reqwest::Method::GET, "/sync?timeout=0", None)
            .await;
        answer["rooms"]["invite"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The room's joined members.
    pub async fn members(&self, room: &str) -> Vec<String> {
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("/rooms/{}/joined_members", seg(room)),
                None,
            )
            .await;
        answer["joined"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Sends an event; its id.
    pub async fn send(&self, room: &str, kind: &str, content: Value) -> String {
        let txn = uuid::Uuid::new_v4().simple().to_string();
        let answer = self
            .call(
                reqwest::Method::PUT,
                &format!("/rooms/{}/send/{}/{txn}", seg(room), seg(kind)),
                Some(content),
            )
            .await;
        answer["event_id"].as_str().unwrap().to_owned()
    }

    /// Says `body` in the room.
    pub async fn say(&self, room: &str, body: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": body}),
        )
        .await
    }

    /// Says `body` mentioning `who`, as clients write mentions.
    pub async fn mention(&self, room: &str, who: &str, body: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": format!("{who}: {body}"), "m.mentions": {"user_ids": [who]}}),
        )
        .await
    }

    /// Says `body` in the thread rooted at `root`.
    pub async fn say_in_thread(&self, room: &str, root: &str, body: &str) -> String {
        self.send(
            room,
            "m.room.message",
            json!({"msgtype": "m.text", "body": body, "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
        )
        .await
    }

    /// Reacts to an event.
    pub async fn react(&self, room: &str, event: &str, key: &str) -> String {
        self.send(
            room,
            "m.reaction",
            json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": event, "key": key}}),
        )
        .await
    }

    /// The room's newest events (up to 500), oldest first.
    pub async fn events(&self, room: &str) -> Vec<Value> {
        let answer = self
            .call(
                reqwest::Method::GET,
                &format!("/rooms/{}/messages?dir=b&limit=500", seg(room)),
                None,
            )
            .await;
        let mut events = answer["chunk"].as_array().cloned().unwrap_or_default();
        events.reverse();
        events
    }

    /// What `sender` shows in the thread of `root` now: each of its messages with edits
    /// applied, oldest first, with the edits each got.
    pub async fn thread_view(&self, room: &str, root: &str, sender: &str) -> Vec<Shown> {
        let events = self.events(room).await;
        let mut shown: Vec<Shown> = Vec::new();
        for event in &events {
            if event["sender"] != sender || event["type"] != "m.room.message" {
                continue;
            }
            let content = &event["content"];
            let relates = &content["m.relates_to"];
            if relates["rel_type"] == "m.replace" {
                let target = relates["event_id"].as_str().unwrap_or("");
                if let Some(message) = shown.iter_mut().find(|m| m.event_id == target) {
                    message.body = content["m.new_content"]["body"]
                        .as_str()
                        .unwrap_or("")
                        .to_owned();
                    message
                        .edits
                        .push(event["origin_server_ts"].as_u64().unwrap_or(0));
                }
                continue;
            }
            if relates["rel_type"] != "m.thread" || relates["event_id"] != root {
                continue;
            }
            shown.push(Shown {
                event_id: event["event_id"].as_str().unwrap_or("").to_owned(),
                body: content["body"].as_str().unwrap_or("").to_owned(),
                sent: event["origin_server_ts"].as_u64().unwrap_or(0),
                edits: Vec::new(),
            });
        }
        shown
    }

    /// Waits until `sender`'s messages in the thread satisfy `done`; them.
    pub async fn wait_thread(
        &self,
        room: &str,
        root: &str,
        sender: &str,
        what: &str,
        done: impl Fn(&[Shown]) -> bool,
    ) -> Vec<Shown> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let view = self.thread_view(room, root, sender).await;
            if done(&view) {
                return view;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 30 s for {what}; the thread shows {view:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits for a room message of `sender` (outside threads too) whose body contains `text`.
    pub async fn wait_message(&self, room: &str, sender: &str, text: &str) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events = self.events(room).await;
            if let Some(found) = events.iter().find(|e| {
                e["sender"] == sender
                    && e["content"]["body"]
                        .as_str()
                        .is_some_and(|b| b.contains(text))
            }) {
                return found.clone();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "waited 30 s for {sender} to say {text:?}; the room has {:#?}",
                events
                    .iter()
                    .map(|e| &e["content"]["body"])
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One message of a thread as it shows now.
#[derive(Clone, Debug)]
pub struct Shown {
    /// Its event id.
    pub event_id: String,
    /// Its text with the last edit applied.
    pub body: String,
    /// When it was sent (ms).
    pub sent: u64,
    /// When each edit was sent (ms).
    pub edits: Vec<u64>,
}
