//! The console's admin API (SPEC §3.3): users, their API tokens and chat links, schedules and
//! their runs — all in the nodes' database, all needing the `approve` scope, all 503 when the
//! console has no database.

use std::collections::HashMap;

use serde_json::{Value, json};
use turnstone_actors::accounts::{self, AccountError, DEFAULT_SCOPES};
use turnstone_actors::auth::Principal;
use turnstone_actors::storage::{Store, scheduled_task};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::reply::{Reply, Response};

use super::Shared;
use super::api::percent_decode;
use super::schedules::rules::{self, Draft, MAX_PREVIEW, MAX_SCHEDULES, Timing};
use crate::web::error::ApiError;
use crate::web::{MAX_BODY, auth, body, with_state};

type Query = HashMap<String, String>;

fn account_error(e: AccountError) -> warp::Rejection {
    let status = match &e {
        AccountError::Invalid(_) => StatusCode::BAD_REQUEST,
        AccountError::Conflict(_) => StatusCode::CONFLICT,
        AccountError::NotFound(_) => StatusCode::NOT_FOUND,
        AccountError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
    };
    ApiError::new(status, e.to_string()).into()
}

fn store_error(e: impl std::fmt::Display) -> warp::Rejection {
    ApiError::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string()).into()
}

fn ok() -> Response {
    warp::reply::json(&json!({"status": "ok"})).into_response()
}

fn reply(value: &impl serde::Serialize) -> Response {
    warp::reply::json(value).into_response()
}

/// The console's database, or 503.
fn with_store(state: Shared) -> impl Filter<Extract = (Store,), Error = warp::Rejection> + Clone {
    warp::any().and_then(move || {
        let store = state.store.clone();
        async move {
            store.ok_or_else(|| {
                warp::reject::custom(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Storage not available: the console has no database",
                ))
            })
        }
    })
}

/// A JSON object body that may be empty (`{}` then).
fn optional_body() -> impl Filter<Extract = (Value,), Error = warp::Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY)
        .and(warp::body::bytes())
        .and_then(|bytes: warp::hyper::body::Bytes| async move {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return Ok(json!({}));
            }
            body::parse::<Value>(&bytes).map_err(warp::reject::custom)
        })
}

fn string(body: &Value, name: &str) -> Result<String, warp::Rejection> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::bad_request(format!("{name} must be a string")).into()),
    }
}

// ---- users, tokens, chat links ----

async fn list_users(store: Store) -> Result<Response, warp::Rejection> {
    let users = accounts::users(&store).await.map_err(account_error)?;
    Ok(reply(&json!({ "users": users })))
}

async fn create_user(store: Store, body: Value) -> Result<Response, warp::Rejection> {
    let user = accounts::create_user(
        &store,
        &string(&body, "username")?,
        &string(&body, "display_name")?,
        &string(&body, "password")?,
    )
    .await
    .map_err(account_error)?;
    Ok(reply(&user))
}

async fn delete_user(user_id: String, store: Store) -> Result<Response, warp::Rejection> {
    accounts::delete_user(&store, &percent_decode(&user_id))
        .await
        .map_err(account_error)?;
    Ok(ok())
}

async fn list_tokens(user_id: String, store: Store) -> Result<Response, warp::Rejection> {
    let tokens = accounts::tokens(&store, &percent_decode(&user_id))
        .await
        .map_err(account_error)?;
    Ok(reply(&json!({ "tokens": tokens })))
}

async fn create_token(
    user_id: String,
    store: Store,
    body: Value,
) -> Result<Response, warp::Rejection> {
    let scopes = match body.get("scopes") {
        None | Some(Value::Null) => DEFAULT_SCOPES.to_owned(),
        Some(_) => string(&body, "scopes")?,
    };
    let expires_days = match body.get("expires_days") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|d| u32::try_from(d).ok())
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| {
                    ApiError::bad_request("expires_days must be a whole number from 1 to 36500")
                })?,
        ),
    };
    let made = accounts::create_token(
        &store,
        &percent_decode(&user_id),
        &string(&body, "name")?,
        &scopes,
        expires_days,
    )
    .await
    .map_err(account_error)?;
    Ok(reply(&made))
}

async fn revoke_token(token_id: String, store: Store) -> Result<Response, warp::Rejection> {
    accounts::revoke_token(&store, &percent_decode(&token_id))
        .await
        .map_err(account_error)?;
    Ok(ok())
}

async fn list_channels(user_id: String, store: Store) -> Result<Response, warp::Rejection> {
    let channels = accounts::channels(&store, &percent_decode(&user_id))
        .await
        .map_err(account_error)?;
    Ok(reply(&json!({ "channels": channels })))
}

async fn link_channel(
    user_id: String,
    store: Store,
    body: Value,
) -> Result<Response, warp::Rejection> {
    let link = accounts::link_channel(
        &store,
        &percent_decode(&user_id),
        &string(&body, "channel_type")?,
        &string(&body, "channel_user_id")?,
    )
    .await
    .map_err(account_error)?;
    Ok(reply(&link))
}

async fn unlink_channel(
    channel_type: String,
    channel_user_id: String,
    store: Store,
) -> Result<Response, warp::Rejection> {
    accounts::unlink_channel(
        &store,
        &percent_decode(&channel_type),
        &percent_decode(&channel_user_id),
    )
    .await
    .map_err(account_error)?;
    Ok(ok())
}

// ---- schedules ----

fn rule_error(e: rules::RuleError) -> warp::Rejection {
    ApiError::bad_request(e.0).into()
}

fn not_found() -> warp::Rejection {
    ApiError::new(StatusCode::NOT_FOUND, "Schedule not found").into()
}

async fn list_schedules(store: Store) -> Result<Response, warp::Rejection> {
    let tasks = store.list_schedules().await.map_err(store_error)?;
    let schedules: Vec<Value> = tasks.iter().map(rules::to_json).collect();
    Ok(reply(&json!({ "schedules": schedules })))
}

async fn create_schedule(
    state: Shared,
    store: Store,
    caller: Option<Principal>,
    body: Value,
) -> Result<Response, warp::Rejection> {
    let mut draft = Draft::default();
    draft.apply(&body).map_err(rule_error)?;
    let timing = draft.check().map_err(rule_error)?;
    let now = state.clock.now();
    let next_run = draft.next_run(&timing, now).map_err(rule_error)?;
    if store.count_schedules().await.map_err(store_error)? >= MAX_SCHEDULES {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("Maximum of {MAX_SCHEDULES} schedules reached"),
        )
        .into());
    }
    let stamp = rules::stored(now);
    let mut task = scheduled_task::Model {
        task_id: uuid::Uuid::new_v4().simple().to_string(),
        name: String::new(),
        description: String::new(),
        schedule_type: String::new(),
        cron_expr: String::new(),
        at_time: String::new(),
        target_mode: String::new(),
        model: String::new(),
        initial_message: String::new(),
        auto_approve: 0,
        auto_approve_tools: String::new(),
        enabled: 1,
        // 0.4.1 always stored "": the scheduler dispatches as the schedule's creator.
        created_by: caller.and_then(|p| p.user_id).unwrap_or_default(),
        last_run: None,
        next_run: Some(next_run),
        created: stamp.clone(),
        updated: stamp,
        timezone: String::new(),
        retry_window: 0,
    };
    draft.write(&mut task);
    store
        .create_schedule(task.clone())
        .await
        .map_err(store_error)?;
    Ok(reply(&rules::to_json(&task)))
}

async fn get_schedule(id: String, store: Store) -> Result<Response, warp::Rejection> {
    let task = store
        .schedule(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    Ok(reply(&rules::to_json(&task)))
}

async fn update_schedule(
    id: String,
    state: Shared,
    store: Store,
    body: Value,
) -> Result<Response, warp::Rejection> {
    let mut task = store
        .schedule(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let mut draft = Draft::of(&task);
    let touched = draft.apply(&body).map_err(rule_error)?;
    let timing = draft.check().map_err(rule_error)?;
    if touched.timing || touched.enabled {
        let next = draft
            .next_run(&timing, state.clock.now())
            .map_err(rule_error)?;
        task.next_run = Some(next);
    }
    draft.write(&mut task);
    if !store
        .save_schedule(task.clone())
        .await
        .map_err(store_error)?
    {
        return Err(not_found());
    }
    let saved = store
        .schedule(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    Ok(reply(&rules::to_json(&saved)))
}

async fn delete_schedule(id: String, store: Store) -> Result<Response, warp::Rejection> {
    if store.delete_schedule(&id).await.map_err(store_error)? {
        Ok(ok())
    } else {
        Err(not_found())
    }
}

async fn schedule_runs(id: String, store: Store, q: Query) -> Result<Response, warp::Rejection> {
    store
        .schedule(&id)
        .await
        .map_err(store_error)?
        .ok_or_else(not_found)?;
    let limit = q
        .get("limit")
        .and_then(|l| l.trim().parse::<u64>().ok())
        .unwrap_or(50)
        .clamp(1, 200);
    let runs = store.runs(&id, limit).await.map_err(store_error)?;
    Ok(reply(&json!({ "runs": runs })))
}

/// `GET …/schedules/preview?schedule_type=cron&cron_expr=…&timezone=…&count=5`: the next
/// firings of an expression (UTC, and local when a zone is named), for the editor.
async fn preview(state: Shared, q: Query) -> Result<Response, warp::Rejection> {
    // Answered, never rejected: `schedules/{id}` also matches this path and would turn a
    // refused expression into "Schedule not found".
    Ok(preview_of(&state, &q).unwrap_or_else(|e| ApiError::bad_request(e.0).into_response()))
}

fn preview_of(state: &Shared, q: &Query) -> Result<Response, rules::RuleError> {
    let field = |name: &str| q.get(name).map_or("", |v| v.trim());
    let kind = match field("schedule_type") {
        "" => "cron",
        other => other,
    };
    let zone_name = field("timezone");
    let timing = Timing::parse(kind, field("cron_expr"), field("at_time"), zone_name)?;
    let count = q
        .get("count")
        .and_then(|c| c.trim().parse::<usize>().ok())
        .unwrap_or(5)
        .clamp(1, MAX_PREVIEW);
    let zone = rules::parse_zone(zone_name)?;
    let times = timing.preview(state.clock.now(), count);
    let utc: Vec<String> = times
        .iter()
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .collect();
    let local: Vec<String> = times
        .iter()
        .map(|t| {
            t.with_timezone(&zone)
                .format("%Y-%m-%dT%H:%M:%S%:z")
                .to_string()
        })
        .collect();
    Ok(reply(&json!({
        "next_runs": utc,
        "local": local,
        "timezone": if zone_name.is_empty() { "UTC" } else { zone_name },
    })))
}

/// The admin routes (after `/v1/api`).
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let admin = || warp::path("admin");
    let s = {
        let state = state.clone();
        move || with_state(state.clone())
    };
    let db = {
        let state = state.clone();
        move || with_store(state.clone())
    };
    let users = admin()
        .and(warp::path!("users"))
        .and(warp::get())
        .and(db())
        .and_then(list_users)
        .or(admin()
            .and(warp::path!("users"))
            .and(warp::post())
            .and(db())
            .and(body::json::<Value>())
            .and_then(create_user))
        .unify()
        .or(admin()
            .and(warp::path!("users" / String))
            .and(warp::delete())
            .and(db())
            .and_then(delete_user))
        .unify();
    let tokens = admin()
        .and(warp::path!("users" / String / "tokens"))
        .and(warp::get())
        .and(db())
        .and_then(list_tokens)
        .or(admin()
            .and(warp::path!("users" / String / "tokens"))
            .and(warp::post())
            .and(db())
            .and(optional_body())
            .and_then(create_token))
        .unify()
        .or(admin()
            .and(warp::path!("tokens" / String))
            .and(warp::delete())
            .and(db())
            .and_then(revoke_token))
        .unify();
    let channels = admin()
        .and(warp::path!("users" / String / "channels"))
        .and(warp::get())
        .and(db())
        .and_then(list_channels)
        .or(admin()
            .and(warp::path!("users" / String / "channels"))
            .and(warp::post())
            .and(db())
            .and(body::json::<Value>())
            .and_then(link_channel))
        .unify()
        .or(admin()
            .and(warp::path!("channels" / String / String))
            .and(warp::delete())
            .and(db())
            .and_then(unlink_channel))
        .unify();
    let schedules = admin()
        .and(warp::path!("schedules"))
        .and(warp::get())
        .and(db())
        .and_then(list_schedules)
        .or(admin()
            .and(warp::path!("schedules"))
            .and(warp::post())
            .and(s())
            .and(db())
            .and(auth::caller(state.clone()))
            .and(body::json::<Value>())
            .and_then(create_schedule))
        .unify()
        .or(admin()
            .and(warp::path!("schedules" / "preview"))
            .and(warp::get())
            .and(s())
            .and(warp::query::<Query>())
            .and_then(preview))
        .unify()
        .or(admin()
            .and(warp::path!("schedules" / String))
            .and(warp::get())
            .and(db())
            .and_then(get_schedule))
        .unify()
        .or(admin()
            .and(warp::path!("schedules" / String))
            .and(warp::put())
            .and(s())
            .and(db())
            .and(body::json::<Value>())
            .and_then(update_schedule))
        .unify()
        .or(admin()
            .and(warp::path!("schedules" / String))
            .and(warp::delete())
            .and(db())
            .and_then(delete_schedule))
        .unify()
        .or(admin()
            .and(warp::path!("schedules" / String / "runs"))
            .and(warp::get())
            .and(db())
            .and(warp::query::<Query>())
            .and_then(schedule_runs))
        .unify();
    users
        .or(tokens)
        .unify()
        .or(channels)
        .unify()
        .or(schedules)
        .unify()
        .boxed()
}
