#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! Authentication on the node server (SPEC §14) against a real server and database: first-run
//! setup, login by password or token with attempt limiting, cookies and bearer headers, static
//! tokens with roles, API tokens made by `turnstone-admin` (the real binary), scopes per route,
//! and forged, expired or misdirected JWTs.

mod support;

use serde_json::json;
use support::TestServer;
use turnstone_actors::auth::{Audience, Claims, Scope, mint};
use turnstone_actors::config::{StaticToken, TokenRole};

const SECRET: &str = "test-secret-of-enough-length-0123456789";

async fn secured() -> TestServer {
    TestServer::start_with(|c| {
        c.auth.enabled = true;
        c.auth.jwt_secret = Some(SECRET.into());
        c.auth.tokens = vec![
            StaticToken {
                value: "reader-token".into(),
                role: TokenRole::Read,
            },
            StaticToken {
                value: "full-token".into(),
                role: TokenRole::Full,
            },
        ];
    })
    .await
}

async fn with_bearer(
    s: &TestServer,
    method: &str,
    path: &str,
    token: &str,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let req = match method {
        "GET" => s.http.get(s.url(path)),
        _ => s.http.post(s.url(path)).body(body.to_string()),
    };
    let r = req.bearer_auth(token).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json_value().await)
}

trait JsonValue {
    async fn json_value(self) -> serde_json::Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> serde_json::Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap_or(serde_json::Value::Null)
    }
}

#[tokio::test]
async fn first_run_setup_then_login_with_cookie_and_limits() {
    let s = secured().await;
    let (status, body) = s.get("/v1/api/auth/status").await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        json!({"auth_enabled": true, "has_users": false, "setup_required": true})
    );
    let (status, body) = s.get("/v1/api/workstreams").await;
    assert_eq!(
        (status, body),
        (
            401,
            json!({"error": "Unauthorized: missing or invalid token"})
        )
    );
    let (status, _) = s.get("/health").await;
    assert_eq!(status, 200, "health is public");

    let (status, body) = s
        .post(
            "/v1/api/auth/setup",
            json!({"username": "ada", "display_name": "Ada", "password": "short"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Password must be at least 8 characters"))
    );
    let r = s
        .http
        .post(s.url("/v1/api/auth/setup"))
        .body(
            json!({"username": "ada", "display_name": "Ada", "password": "correct horse"})
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("turnstone_auth=ey"), "{cookie}");
    assert!(
        cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Lax")
            && cookie.contains("Max-Age=86400")
    );
    let body = r.json_value().await;
    assert_eq!(body["role"], "full");
    assert_eq!(body["scopes"], "approve,read,write");
    assert_eq!(body["username"], "ada");

    let (status, body) = s
        .post(
            "/v1/api/auth/setup",
            json!({"username": "eve", "password": "something long"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (409, Some("Setup already completed"))
    );

    // The cookie authenticates, as the browser's fetch and EventSource do.
    let session = cookie.split(';').next().unwrap().to_owned();
    let r = s
        .http
        .get(s.url("/v1/api/workstreams"))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);

    let (status, body) = s
        .post(
            "/v1/api/auth/login",
            json!({"username": "ada", "password": "wrong password"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("Invalid credentials"))
    );
    let (status, body) = s
        .post(
            "/v1/api/auth/login",
            json!({"username": "ada", "password": "correct horse"}),
        )
        .await;
    assert_eq!(status, 200);
    let jwt = body["jwt"].as_str().unwrap().to_owned();
    let (status, _) = with_bearer(&s, "GET", "/v1/api/dashboard", &jwt, json!({})).await;
    assert_eq!(status, 200);

    for _ in 0..5 {
        s.post(
            "/v1/api/auth/login",
            json!({"username": "ada", "password": "guess"}),
        )
        .await;
    }
    let (status, body) = s
        .post(
            "/v1/api/auth/login",
            json!({"username": "ada", "password": "correct horse"}),
        )
        .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("Too many login attempts"))
    );

    let r = s
        .http
        .post(s.url("/v1/api/auth/logout"))
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    let (_, status) = s.get("/v1/api/auth/status").await;
    assert_eq!(status["setup_required"], false);
    assert_eq!(status["has_users"], true);
}

#[tokio::test]
async fn scopes_decide_per_route() {
    let s = secured().await;
    let ws = s.default_ws().await;
    let send = json!({"message": "", "ws_id": ws});
    let (status, _) =
        with_bearer(&s, "GET", "/v1/api/workstreams", "reader-token", json!({})).await;
    assert_eq!(status, 200);
    let (status, body) =
        with_bearer(&s, "POST", "/v1/api/send", "reader-token", send.clone()).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("Forbidden: token lacks 'write' scope"))
    );
    let (status, body) = with_bearer(&s, "POST", "/v1/api/send", "full-token", send).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("Empty message")),
        "past auth"
    );

    let writer = mint(SECRET, "u1", &[Scope::Write], "token", Audience::Server).unwrap();
    let (status, body) =
        with_bearer(&s, "POST", "/v1/api/approve", &writer, json!({"ws_id": ws})).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (403, Some("Forbidden: token lacks 'approve' scope"))
    );
    let approver = mint(SECRET, "u1", &[Scope::Approve], "token", Audience::Server).unwrap();
    let (status, _) = with_bearer(
        &s,
        "POST",
        "/v1/api/approve",
        &approver,
        json!({"ws_id": ws}),
    )
    .await;
    assert_eq!(status, 409, "authorised; nothing to approve");

    // Token login gives a JWT with the token's role.
    let (status, body) = s
        .post("/v1/api/auth/login", json!({"token": "reader-token"}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        (body["role"].as_str(), body["scopes"].as_str()),
        (Some("read"), Some("read"))
    );
}

#[tokio::test]
async fn forged_expired_and_misdirected_jwts_are_refused() {
    let s = secured().await;
    let wrong_secret = mint(
        "another-secret",
        "u",
        &[Scope::Approve],
        "x",
        Audience::Server,
    )
    .unwrap();
    let console = mint(SECRET, "u", &[Scope::Approve], "x", Audience::Console).unwrap();
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: "u".into(),
            scopes: "approve,read,write".into(),
            src: String::new(),
            iss: "turnstone".into(),
            iat: 1,
            exp: 2,
            aud: "turnstone-server".into(),
        },
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let valid = mint(SECRET, "u", &[Scope::Read], "x", Audience::Server).unwrap();
    let mut tampered: Vec<&str> = valid.split('.').collect();
    let escalated = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut claims: serde_json::Value =
            serde_json::from_slice(&engine.decode(tampered[1]).unwrap()).unwrap();
        claims["scopes"] = json!("approve,read,write");
        engine.encode(claims.to_string())
    };
    tampered[1] = &escalated;
    let tampered = tampered.join(".");
    for token in [
        wrong_secret,
        console,
        expired,
        tampered,
        "ts_0000".into(),
        "nonsense".into(),
    ] {
        let (status, _) = with_bearer(&s, "GET", "/v1/api/workstreams", &token, json!({})).await;
        assert_eq!(status, 401, "{token}");
    }
    let (status, _) = with_bearer(&s, "GET", "/v1/api/workstreams", &valid, json!({})).await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn api_tokens_from_turnstone_admin_work_until_revoked() {
    let s = secured().await;
    let ws = s.default_ws().await;
    let config = s.work.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\npath = \"{}\"\n",
            s.work.path().join("turnstone.db").display()
        ),
    )
    .unwrap();
    let admin = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_turnstone-admin"))
            .arg("--config")
            .arg(&config)
            .args(args)
            .env("HOME", s.work.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        )
    };
    let (ok, out, err) = admin(
        &["create-user", "--username", "grace", "--name", "Grace"],
        "a long password\n",
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("Created user grace"), "{out}");
    let (ok, _, err) = admin(
        &["create-user", "--username", "grace"],
        "another password\n",
    );
    assert!(!ok && err.contains("Username already taken"), "{err}");
    let (ok, _, err) = admin(
        &["create-token", "--user", "grace", "--scopes", "read,bogus"],
        "",
    );
    assert!(!ok && err.contains("Invalid scopes"), "{err}");
    let (ok, token, err) = admin(
        &[
            "create-token",
            "--user",
            "grace",
            "--name",
            "ci",
            "--scopes",
            "write",
        ],
        "",
    );
    assert!(ok, "{err}");
    assert!(token.starts_with("ts_") && token.len() == 67, "{token}");
    let (ok, listed, _) = admin(&["list-tokens", "--user", "grace"], "");
    assert!(ok);
    assert!(
        listed.contains(&token[..8]) && listed.contains("read,write") && listed.contains(" ci "),
        "{listed}"
    );
    assert!(
        !listed.contains(&token[8..]),
        "the token itself is never stored or shown again"
    );
    let (_, users, _) = admin(&["list-users"], "");
    assert!(users.contains("grace") && users.contains("Grace"));

    let (status, _) = with_bearer(
        &s,
        "POST",
        "/v1/api/send",
        &token,
        json!({"message": "", "ws_id": ws}),
    )
    .await;
    assert_eq!(status, 400, "a write token passes write routes");
    let (status, _) =
        with_bearer(&s, "POST", "/v1/api/approve", &token, json!({"ws_id": ws})).await;
    assert_eq!(status, 403);

    // And it can log in with the password it was given.
    let (status, _) = s
        .post(
            "/v1/api/auth/login",
            json!({"username": "grace", "password": "a long password"}),
        )
        .await;
    assert_eq!(status, 200);

    let token_id = listed.split_whitespace().next().unwrap();
    let (ok, out, _) = admin(&["revoke-token", "--token-id", token_id], "");
    assert!(ok, "{out}");
    let (status, _) = with_bearer(&s, "GET", "/v1/api/workstreams", &token, json!({})).await;
    assert_eq!(status, 401, "revoked");
    let (ok, _, err) = admin(&["revoke-token", "--token-id", token_id], "");
    assert!(!ok && err.contains("Token not found"), "{err}");

    // An expired token is refused.
    let (_, expired, _) = admin(
        &["create-token", "--user", "grace", "--expires-days", "0"],
        "",
    );
    let (status, _) = with_bearer(&s, "GET", "/v1/api/workstreams", &expired, json!({})).await;
    assert_eq!(status, 401);
}
