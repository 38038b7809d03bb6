//! The stored session: opening it (a restarted or resumed workstream continues) and the
//! ordered writer of what a turn records.

use std::time::Duration;

use ractor::RpcReplyPort;
use tokio::sync::mpsc;

use crate::provider::ChatMessage;
use crate::storage::{Store, Write};
use crate::workstream::{SessionSettings, WorkstreamActor, WsEvent, WsState};

/// A write for the workstream's database writer, applied in order.
pub(super) enum Persist {
    Message(ChatMessage),
    State(WsState),
    Setting(&'static str, String),
    Rename(String),
    /// Answered once the writes queued before it have landed.
    Barrier(RpcReplyPort<()>),
}

/// How long a workstream's writer holds writes while a turn runs, to write them together.
const WRITE_SETTLE: Duration = Duration::from_millis(20);

impl Persist {
    /// Whether the writes queued so far can go now: the turn settled, or this is not a
    /// turn's write.
    fn settles(&self) -> bool {
        match self {
            Self::State(state) => !matches!(state, WsState::Thinking | WsState::Running),
            Self::Message(_) => false,
            Self::Setting(..) | Self::Rename(_) | Self::Barrier(_) => true,
        }
    }
}

impl WorkstreamActor {
    /// Records the session and workstream, loads the stored conversation (a restarted or
    /// resumed workstream continues where it was), and starts the ordered writer. Storage
    /// failures are reported as error events; the workstream keeps working from memory.
    pub(super) async fn open_session(
        &self,
        store: &Store,
        settings: &mut SessionSettings,
    ) -> (Vec<ChatMessage>, Option<mpsc::UnboundedSender<Persist>>) {
        let spec = &self.spec;
        let node = Some(self.deps.node_id.as_str());
        let mut history = spec.history.clone();
        let opened = store
            .open_workstream(
                &spec.session_id,
                &spec.ws_id,
                node,
                &spec.name,
                WsState::Idle.as_str(),
            )
            .await;
        match opened {
            Ok(opened) => {
                settings.apply_stored(&opened.config);
                if !opened.history.is_empty() {
                    history = opened.history;
                }
            }
            Err(e) => self.emit(WsEvent::Error {
                message: format!("Error: could not open the session in the database: {e}"),
            }),
        }
        let (writer, mut queue) = mpsc::unbounded_channel::<Persist>();
        let committer = store.clone();
        let events = self.events.clone();
        let (session_id, ws_id, mut name) = (
            spec.session_id.clone(),
            spec.ws_id.clone(),
            spec.name.clone(),
        );
        let mut last_state = WsState::Idle;
        let node_id = self.deps.node_id.clone();
        store.spawn_writer(async move {
            while let Some(first) = queue.recv().await {
                let mut ops = vec![first];
                // A turn's writes go together once it settles (idle, failed, waiting for a
                // person), or after WRITE_SETTLE at most: a quick turn is one transaction,
                // written after the turn rather than while it runs.
                let deadline = tokio::time::Instant::now() + WRITE_SETTLE;
                loop {
                    while let Ok(next) = queue.try_recv() {
                        ops.push(next);
                    }
                    if ops.iter().any(Persist::settles) {
                        break;
                    }
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(next)) => ops.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                // The workstream's name and state as of each write. (States a later write
                // replaces are left out when they land.)
                let mut writes = Vec::with_capacity(ops.len());
                let mut barriers = Vec::new();
                for op in ops {
                    writes.push(match op {
                        Persist::Message(message) => Write::Message {
                            session_id: session_id.clone(),
                            message,
                        },
                        Persist::State(state) => {
                            last_state = state;
                            workstream_write(&ws_id, &node_id, &name, last_state)
                        }
                        Persist::Rename(new_name) => {
                            name = new_name;
                            workstream_write(&ws_id, &node_id, &name, last_state)
                        }
                        Persist::Setting(key, value) => Write::SessionConfig {
                            session_id: session_id.clone(),
                            key: key.to_owned(),
                            value,
                        },
                        Persist::Barrier(reply) => {
                            barriers.push(reply);
                            continue;
                        }
                    });
                }
                // With other workstreams' writes, in one transaction (group commit); what
                // fails is reported write by write.
                if !writes.is_empty() {
                    for e in committer.commit(writes).await {
                        let _ = events.send(WsEvent::Error {
                            message: format!("Error: could not save to the database: {e}"),
                        });
                    }
                }
                for reply in barriers {
                    let _ = reply.send(());
                }
            }
        });
        (history, Some(writer))
    }
}

/// The write that records a workstream's name and state.
fn workstream_write(ws_id: &str, node_id: &str, name: &str, state: WsState) -> Write {
    Write::Workstream {
        ws_id: ws_id.to_owned(),
        node_id: Some(node_id.to_owned()),
        name: name.to_owned(),
        state: state.as_str(),
    }
}
