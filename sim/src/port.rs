//! The bridge's view of a simulated node: the real workstream manager of a [`Node`], driven
//! in-process (as `turnstone-server --redis-host` drives its node), without the HTTP server.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};
use turnstone_actors::mq::{
    CreateRequest, Created, EventForwarding, EventSink, NodePort, PortError, SendOutcome, WsFrame,
};
use turnstone_actors::node::Node;
use turnstone_actors::workstream::{
    ManagerError, WorkstreamError, WorkstreamHandle, WorkstreamOptions,
};

/// A simulated node, as its bridge sees it.
pub struct SimPort {
    node: Arc<Node>,
    server_url: String,
    events: Arc<EventForwarding>,
}

impl std::fmt::Debug for SimPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimPort")
            .field("node_id", &self.node.node_id)
            .finish_non_exhaustive()
    }
}

fn rejected(e: ManagerError) -> PortError {
    match e {
        ManagerError::Unknown => PortError::UnknownWorkstream,
        full @ ManagerError::AllActive(_) => PortError::AtCapacity(full.to_string()),
        other => PortError::Rejected(other.to_string()),
    }
}

impl SimPort {
    /// A port on `node`, advertised as `sim://{node id}`; forwards the node-wide events.
    pub fn new(node: Arc<Node>) -> Arc<Self> {
        Arc::new(Self {
            server_url: format!("sim://{}", node.node_id),
            events: EventForwarding::new(node.global.subscribe()),
            node,
        })
    }

    fn workstream(&self, ws_id: &str) -> Result<WorkstreamHandle, PortError> {
        self.node
            .manager
            .get(ws_id)
            .ok_or(PortError::UnknownWorkstream)
    }
}

#[async_trait]
impl NodePort for SimPort {
    fn node_id(&self) -> &str {
        &self.node.node_id
    }

    fn server_url(&self) -> &str {
        &self.server_url
    }

    fn max_workstreams(&self) -> Option<usize> {
        Some(self.node.config.server.max_workstreams)
    }

    fn attach(&self, sink: EventSink) {
        self.events.attach(sink);
    }

    async fn watch(&self, ws_id: &str) {
        let Ok(ws) = self.workstream(ws_id) else {
            return;
        };
        let Some(watch) = self.events.watch(ws_id) else {
            return;
        };
        ws.tap(watch.relay(WsFrame::of));
    }

    async fn has(&self, ws_id: &str) -> bool {
        self.node.manager.get(ws_id).is_some()
    }

    async fn create(&self, request: CreateRequest) -> Result<Created, PortError> {
        let options = WorkstreamOptions {
            auto_approve: request.auto_approve,
            auto_approve_tools: request.auto_approve_tools.into_iter().collect(),
            model_alias: Some(request.model).filter(|m| !m.is_empty()),
            ..WorkstreamOptions::default()
        };
        let name = Some(request.name.as_str()).filter(|n| !n.is_empty());
        let resume = Some(request.resume_session.as_str()).filter(|r| !r.is_empty());
        let ws = self
            .node
            .manager
            .create(name, options, resume)
            .await
            .map_err(rejected)?;
        // Only a resumed session starts with messages: no round trip to the actor otherwise.
        let message_count = match resume {
            Some(_) => ws.history().await.map(|h| h.len()).unwrap_or(0),
            None => 0,
        };
        Ok(Created {
            ws_id: ws.ws_id().to_owned(),
            name: ws.name().to_owned(),
            resumed: resume.is_some(),
            session_id: ws.session_id().to_owned(),
            message_count,
        })
    }

    async fn adopt(&self, ws_id: &str) -> Result<bool, PortError> {
        match self.node.manager.adopt(ws_id).await {
            Ok(found) => Ok(found.is_some()),
            // A node without a database cannot restore another node's workstream.
            Err(ManagerError::NoStorage) => Ok(false),
            Err(e) => Err(rejected(e)),
        }
    }

    async fn send(&self, ws_id: &str, message: &str) -> Result<SendOutcome, PortError> {
        match self.workstream(ws_id)?.send(message).await {
            Ok(()) => Ok(SendOutcome::Started),
            Err(ManagerError::Workstream(WorkstreamError::Busy)) => Ok(SendOutcome::Busy),
            Err(e) => Err(rejected(e)),
        }
    }

    async fn resume_turn(&self, ws_id: &str, message: &str) -> Result<bool, PortError> {
        self.workstream(ws_id)?
            .resume_turn(message)
            .await
            .map_err(rejected)
    }

    async fn approve(
        &self,
        ws_id: &str,
        approved: bool,
        feedback: Option<String>,
        always: bool,
    ) -> Result<(), PortError> {
        self.workstream(ws_id)?
            .approve(approved, feedback, always)
            .await
            .map_err(rejected)
    }

    async fn plan_feedback(&self, ws_id: &str, feedback: &str) -> Result<(), PortError> {
        self.workstream(ws_id)?
            .plan_feedback(feedback)
            .await
            .map_err(rejected)
    }

    async fn command(&self, ws_id: &str, command: &str) -> Result<(), PortError> {
        self.workstream(ws_id)?;
        Err(PortError::Rejected(format!(
            "commands are not simulated: {command}"
        )))
    }

    async fn close(&self, ws_id: &str) -> Result<(), PortError> {
        self.node.manager.close(ws_id).await.map_err(rejected)
    }

    async fn list(&self) -> Result<Vec<Value>, PortError> {
        let mut out = Vec::new();
        for ws in self.node.manager.list() {
            let state = ws.status().await.map_or("error", |s| s.state.as_str());
            out.push(json!({"id": ws.ws_id(), "name": ws.name(), "state": state,
                "session_id": ws.session_id()}));
        }
        Ok(out)
    }

    async fn health(&self) -> Result<Value, PortError> {
        Ok(json!({
            "status": "ok",
            "node_id": self.node.node_id,
            "sim": true,
            "workstreams": self.node.manager.list().len(),
        }))
    }
}
