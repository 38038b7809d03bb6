//! The JSON routes under `/v1/api/` (SPEC §2): send, approve, plan, command, workstreams,
//! dashboard and sessions.

use serde::Deserialize;
use serde_json::{Value, json};
use turnstone_actors::workstream::{
    ManagerError, WorkstreamError, WorkstreamHandle, WorkstreamOptions, WsState,
};
use warp::Filter;
use warp::filters::BoxedFilter;
use warp::reply::{Reply, Response};

use super::error::ApiError;
use super::workstream_errors::manager_error;
use super::{Shared, body, commands, with_state};

fn ok() -> Response {
    warp::reply::json(&json!({"status": "ok"})).into_response()
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct SendRequest {
    #[serde(default)]
    message: String,
    #[serde(default)]
    ws_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct ApproveRequest {
    #[serde(default)]
    approved: bool,
    #[serde(default)]
    feedback: Option<String>,
    #[serde(default)]
    always: bool,
    #[serde(default)]
    ws_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct PlanRequest {
    #[serde(default)]
    feedback: String,
    #[serde(default)]
    ws_id: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CommandRequest {
    #[serde(default)]
    command: String,
    #[serde(default)]
    ws_id: String,
}

/// `POST /v1/api/workstreams/new`.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(default)]
pub struct NewRequest {
    /// Display name.
    pub name: String,
    /// Model alias.
    pub model: String,
    /// Approve every call.
    pub auto_approve: bool,
    /// A stored session to continue.
    pub resume_session: String,
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub(crate) struct CloseRequest {
    #[serde(default)]
    ws_id: String,
}

async fn send(state: Shared, req: SendRequest) -> Result<Response, warp::Rejection> {
    if req.message.trim().is_empty() {
        return Err(ApiError::bad_request("Empty message").into());
    }
    let ws = state.workstream(&req.ws_id)?;
    if send_message(&state, &ws, &req.message).await? {
        Ok(ok())
    } else {
        Ok(warp::reply::json(&json!({"status": "busy"})).into_response())
    }
}

/// Starts a turn, counted in the metrics; `Ok(false)` if a turn is already running.
pub async fn send_message(
    state: &Shared,
    ws: &WorkstreamHandle,
    message: &str,
) -> Result<bool, ApiError> {
    state.follow(ws);
    match ws.send(message).await {
        Ok(()) => {
            state.metrics.messages_sent.inc();
            state
                .metrics
                .workstream_messages
                .get_or_create(&vec![
                    ("ws_id", ws.ws_id().to_owned()),
                    ("name", ws.name().to_owned()),
                ])
                .inc();
            Ok(true)
        }
        Err(ManagerError::Workstream(WorkstreamError::Busy)) => Ok(false),
        Err(e) => Err(manager_error(e)),
    }
}

async fn approve(state: Shared, req: ApproveRequest) -> Result<Response, warp::Rejection> {
    let ws = state.workstream(&req.ws_id)?;
    let feedback = req.feedback.filter(|f| !f.trim().is_empty());
    ws.approve(req.approved, feedback, req.always)
        .await
        .map_err(manager_error)?;
    Ok(ok())
}

async fn plan(state: Shared, req: PlanRequest) -> Result<Response, warp::Rejection> {
    let ws = state.workstream(&req.ws_id)?;
    ws.plan_feedback(&req.feedback)
        .await
        .map_err(manager_error)?;
    Ok(ok())
}

async fn command(state: Shared, req: CommandRequest) -> Result<Response, warp::Rejection> {
    if req.command.trim().is_empty() {
        return Err(ApiError::bad_request("Empty command").into());
    }
    let ws = state.workstream(&req.ws_id)?;
    let log = state.follow(&ws);
    commands::run(&state, &ws, &log, req.command.trim()).await;
    Ok(ok())
}

async fn list(state: Shared) -> Result<Response, warp::Rejection> {
    Ok(warp::reply::json(&json!({"workstreams": list_json(&state).await})).into_response())
}

/// The workstreams as `GET /v1/api/workstreams` lists them.
pub async fn list_json(state: &Shared) -> Vec<Value> {
    let mut out = Vec::new();
    for ws in state.node.manager.list() {
        let state_name = match ws.status().await {
            Ok(s) => s.state.as_str(),
            Err(_) => "error",
        };
        out.push(
            json!({"id": ws.ws_id(), "name": ws.name(), "state": state_name,
            "session_id": ws.session_id()}),
        );
    }
    out
}

async fn create(state: Shared, req: NewRequest) -> Result<Response, warp::Rejection> {
    let created = open_workstream(&state, &req, &[]).await?;
    Ok(warp::reply::json(&created).into_response())
}

/// Creates (or resumes) a workstream as `POST /v1/api/workstreams/new` does; answers its
/// `{ws_id, name, resumed, session_id, message_count}`.
pub async fn open_workstream(
    state: &Shared,
    req: &NewRequest,
    auto_approve_tools: &[String],
) -> Result<Value, ApiError> {
    let model = req.model.trim();
    if !model.is_empty() && state.node.router.lane(model).is_none() {
        return Err(ApiError::internal(format!("Unknown model alias {model:?}")));
    }
    let options = WorkstreamOptions {
        auto_approve: req.auto_approve || state.options.skip_permissions,
        model_alias: Some(model.to_owned()).filter(|m| !m.is_empty()),
        auto_approve_tools: auto_approve_tools.iter().cloned().collect(),
        ..WorkstreamOptions::default()
    };
    let name = Some(req.name.trim().to_owned()).filter(|n| !n.is_empty());
    let resume = Some(req.resume_session.trim().to_owned()).filter(|r| !r.is_empty());
    let resumed = resume.is_some();
    let ws = state
        .node
        .manager
        .create(name.as_deref(), options, resume.as_deref())
        .await
        .map_err(manager_error)?;
    let log = state.follow(&ws);
    let history = ws.history().await.map_err(manager_error)?;
    if resumed {
        log.publish(json!({"type": "clear_ui"}).to_string());
        log.publish(super::hub::history_event(&history));
    }
    Ok(json!({
        "ws_id": ws.ws_id(),
        "name": ws.name(),
        "resumed": resumed,
        "session_id": ws.session_id(),
        "message_count": history.len(),
    }))
}

async fn close(state: Shared, req: CloseRequest) -> Result<Response, warp::Rejection> {
    close_workstream(&state, &req.ws_id).await?;
    Ok(ok())
}

/// Closes a workstream as `POST /v1/api/workstreams/close` does.
pub async fn close_workstream(state: &Shared, ws_id: &str) -> Result<(), ApiError> {
    if state.node.manager.get(ws_id).is_none() {
        // 0.4.1 answers the same for an unknown id.
        return Err(ApiError::bad_request("Cannot close last workstream"));
    }
    state
        .node
        .manager
        .close(ws_id)
        .await
        .map_err(manager_error)?;
    state.hub.remove(ws_id);
    Ok(())
}

fn count_state(state: WsState) -> bool {
    state != WsState::Idle
}

async fn dashboard(state: Shared) -> Result<Response, warp::Rejection> {
    let mut rows = Vec::new();
    let (mut tokens, mut calls, mut active) = (0u64, 0u64, 0usize);
    let workstreams = state.node.manager.list();
    for ws in &workstreams {
        let Ok(status) = ws.status().await else {
            continue;
        };
        let title = match &state.node.store {
            Some(store) => store
                .session(ws.session_id())
                .await
                .ok()
                .flatten()
                .and_then(|s| s.title),
            None => None,
        };
        let activity = state.activity(ws.ws_id());
        let model = state
            .node
            .router
            .lane(&status.model_alias)
            .map(|l| (l.model.get(), f64::from(l.context_window.max(1))));
        let ratio = match &model {
            Some((_, window)) => status.prompt_tokens as f64 / window,
            None => activity.context_ratio,
        };
        tokens += status.tokens;
        calls += status.tool_calls;
        if count_state(status.state) {
            active += 1;
        }
        rows.push(json!({
            "id": ws.ws_id(),
            "name": ws.name(),
            "state": status.state.as_str(),
            "session_id": ws.session_id(),
            // "" without one, as 0.4.1 (its console searches titles as strings).
            "title": title.unwrap_or_default(),
            "tokens": status.tokens,
            "context_ratio": (ratio * 1000.0).round() / 1000.0,
            "activity": activity.activity,
            "activity_state": activity.activity_state,
            "tool_calls": status.tool_calls,
            "node": "local",
            "model": model.map(|m| m.0).unwrap_or_default(),
            "model_alias": status.model_alias,
        }));
    }
    Ok(warp::reply::json(&json!({
        "workstreams": rows,
        "aggregate": {
            "total_tokens": tokens,
            "total_tool_calls": calls,
            "active_count": active,
            "total_count": workstreams.len(),
            "uptime_seconds": state.started.elapsed().as_secs(),
            "node": "local",
        }
    }))
    .into_response())
}

async fn sessions(state: Shared) -> Result<Response, warp::Rejection> {
    let Some(store) = &state.node.store else {
        return Ok(warp::reply::json(&json!({"sessions": []})).into_response());
    };
    let sessions = store
        .list_sessions(50)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let rows: Vec<Value> = sessions
        .into_iter()
        .map(|s| {
            json!({"session_id": s.session_id, "alias": s.alias, "title": s.title,
                "created": s.created, "updated": s.updated, "message_count": s.message_count,
                "node_id": s.node_id, "ws_id": s.ws_id})
        })
        .collect();
    Ok(warp::reply::json(&json!({"sessions": rows})).into_response())
}

/// The JSON routes (after `/v1/api`).
pub fn routes(state: Shared) -> BoxedFilter<(Response,)> {
    let s = || with_state(state.clone());
    let post = |name: &'static str| warp::post().and(warp::path(name)).and(warp::path::end());
    let get = |name: &'static str| warp::get().and(warp::path(name)).and(warp::path::end());
    let send = post("send").and(s()).and(body::json()).and_then(send);
    let approve = post("approve").and(s()).and(body::json()).and_then(approve);
    let plan = post("plan").and(s()).and(body::json()).and_then(plan);
    let command = post("command").and(s()).and(body::json()).and_then(command);
    let list = get("workstreams").and(s()).and_then(list);
    let create = warp::post()
        .and(warp::path!("workstreams" / "new"))
        .and(s())
        .and(body::json())
        .and_then(create);
    let close = warp::post()
        .and(warp::path!("workstreams" / "close"))
        .and(s())
        .and(body::json())
        .and_then(close);
    let dashboard = get("dashboard").and(s()).and_then(dashboard);
    let sessions = get("sessions").and(s()).and_then(sessions);
    send.or(approve)
        .unify()
        .or(plan)
        .unify()
        .or(command)
        .unify()
        .or(list)
        .unify()
        .or(create)
        .unify()
        .or(close)
        .unify()
        .or(dashboard)
        .unify()
        .or(sessions)
        .unify()
        .boxed()
}
