//! The gateway's HTTP side (SPEC §13): `POST /v1/api/notify`, by which nodes reach people,
//! and `GET /health`.
//!
//! Notify is refused (401) unless the gateway has a static token (`--auth-token`,
//! `$TURNSTONE_CHANNEL_AUTH_TOKEN`) or a JWT secret, and the caller presents that token or a
//! JWT for the audience `turnstone-channel`. A target is a username (sent to each of the
//! user's linked accounts) or a platform channel.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use turnstone_actors::auth::{Audience, same_secret, verify};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::Gateway;
use crate::web::body;
use crate::web::error::{ApiError, recover};

/// Who may call notify.
#[derive(Clone, Debug, Default)]
pub struct NotifyAuth {
    /// The static token.
    pub token: Option<String>,
    /// The JWT secret.
    pub jwt_secret: Option<String>,
}

impl NotifyAuth {
    fn allows(&self, header: Option<&str>) -> bool {
        let Some(presented) = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
        else {
            return false;
        };
        if let Some(token) = self.token.as_deref().filter(|t| !t.is_empty())
            && same_secret(presented, token)
        {
            return true;
        }
        self.jwt_secret
            .as_deref()
            .filter(|s| !s.is_empty())
            .is_some_and(|secret| verify(secret, presented, Audience::Channel).is_ok())
    }
}

/// A notify request.
#[derive(Debug, Deserialize)]
struct NotifyRequest {
    target: Target,
    message: String,
    #[serde(default)]
    title: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Target {
    username: String,
    channel_type: String,
    channel_id: String,
}

/// The routes: notify and health.
pub fn routes(gateway: Arc<Gateway>, auth: NotifyAuth) -> BoxedFilter<(Response,)> {
    let health = warp::path("health")
        .and(warp::path::end())
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok", "service": "channel"})).into_response());
    let auth = Arc::new(auth);
    let notify = warp::path!("v1" / "api" / "notify")
        .and(warp::post())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::body::content_length_limit(crate::web::MAX_BODY))
        .and(warp::body::bytes())
        .then(
            move |header: Option<String>, bytes: warp::hyper::body::Bytes| {
                let (gateway, auth) = (gateway.clone(), auth.clone());
                async move {
                    match notify(&gateway, &auth, header.as_deref(), &bytes).await {
                        Ok(v) => warp::reply::json(&v).into_response(),
                        Err(e) => e.into_response(),
                    }
                }
            },
        );
    health.or(notify).unify().recover(recover).unify().boxed()
}

async fn notify(
    gateway: &Gateway,
    auth: &NotifyAuth,
    header: Option<&str>,
    bytes: &[u8],
) -> Result<Value, ApiError> {
    if !auth.allows(header) {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "Unauthorized"));
    }
    let request: NotifyRequest = body::parse(bytes)?;
    if request.message.trim().is_empty() {
        return Err(ApiError::bad_request("message is required"));
    }
    let content = if request.title.trim().is_empty() {
        request.message.clone()
    } else {
        format!("**{}**\n{}", request.title.trim(), request.message)
    };
    let target = &request.target;
    let mut results = Vec::new();
    if !target.username.is_empty() {
        let store = gateway.store();
        let user = store
            .user_by_name(&target.username)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Unknown user"))?;
        let links = store
            .channels_of(&user.user_id)
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?;
        if links.is_empty() {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "The user has no linked chat accounts",
            ));
        }
        for link in links {
            let result = match gateway.adapter(&link.channel_type) {
                None => {
                    json!({"channel_type": link.channel_type, "channel_id": link.channel_user_id, "status": "no_adapter"})
                }
                Some(adapter) => match adapter.send_direct(&link.channel_user_id, &content).await {
                    Ok((channel, message_id)) => {
                        json!({"channel_type": link.channel_type, "channel_id": channel, "status": "sent", "message_id": message_id})
                    }
                    Err(e) => {
                        tracing::warn!(channel_type = %link.channel_type, error = %e, "notify failed");
                        json!({"channel_type": link.channel_type, "channel_id": link.channel_user_id, "status": "failed"})
                    }
                },
            };
            results.push(result);
        }
    } else if !target.channel_type.is_empty() && !target.channel_id.is_empty() {
        let channel_type = target.channel_type.to_lowercase();
        let result = match gateway.adapter(&channel_type) {
            None => {
                json!({"channel_type": channel_type, "channel_id": target.channel_id, "status": "no_adapter"})
            }
            Some(adapter) => match adapter.send(&target.channel_id, &content).await {
                Ok(message_id) => {
                    json!({"channel_type": channel_type, "channel_id": target.channel_id, "status": "sent", "message_id": message_id})
                }
                Err(e) => {
                    tracing::warn!(%channel_type, error = %e, "notify failed");
                    json!({"channel_type": channel_type, "channel_id": target.channel_id, "status": "failed"})
                }
            },
        };
        results.push(result);
    } else {
        return Err(ApiError::bad_request(
            "target needs a username, or a channel_type and channel_id",
        ));
    }
    Ok(json!({"results": results}))
}

#[cfg(test)]
mod tests {
    use turnstone_actors::auth::{Scope, mint};

    use super::*;

    #[test]
    fn callers_need_the_static_token_or_a_jwt_for_the_channel_audience() {
        let auth = NotifyAuth {
            token: Some("static-secret".into()),
            jwt_secret: Some("jwt-secret".into()),
        };
        let bearer = |t: &str| format!("Bearer {t}");
        assert!(auth.allows(Some(&bearer("static-secret"))));
        assert!(!auth.allows(Some(&bearer("static-secrex"))));
        assert!(!auth.allows(Some("static-secret")), "not a bearer header");
        assert!(!auth.allows(None));
        let channel = mint(
            "jwt-secret",
            "system",
            &[Scope::Write],
            "test",
            Audience::Channel,
        )
        .unwrap();
        assert!(auth.allows(Some(&bearer(&channel))));
        let server = mint(
            "jwt-secret",
            "system",
            &[Scope::Write],
            "test",
            Audience::Server,
        )
        .unwrap();
        assert!(!auth.allows(Some(&bearer(&server))), "a JWT for the nodes");
        let forged = mint(
            "other-secret",
            "system",
            &[Scope::Write],
            "test",
            Audience::Channel,
        )
        .unwrap();
        assert!(!auth.allows(Some(&bearer(&forged))));
        // Nothing configured: nobody may call.
        assert!(!NotifyAuth::default().allows(Some(&bearer(""))));
    }
}
