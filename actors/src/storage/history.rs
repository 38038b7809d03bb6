//! A session's conversation read back: the rows rebuilt into messages, a dangling tool call
//! dropped, and what a workstream finds when it opens.

use std::collections::BTreeMap;

use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, TransactionTrait,
};

use super::sessions::{create_session_on, session_config_on};
use super::writes::save_workstream_on;
use super::{Store, StoreError, conversation};
use crate::provider::{ChatMessage, Role, ToolCall};

impl Store {
    /// The conversation of a session, rebuilt as messages that form a valid history: calls are
    /// merged into the assistant message before them, results are matched by id (else by
    /// position), orphans are skipped and unanswered calls removed.
    pub async fn load_history(&self, session_id: &str) -> Result<Vec<ChatMessage>, StoreError> {
        load_history_on(&self.db, session_id).await
    }

    /// Opens a workstream on its session in one transaction: records the session (if new)
    /// and the workstream, and reads back what the session already holds. A session this
    /// call created holds nothing, so a new workstream costs two inserts and no reads; a
    /// resumed or restarted one gets its settings and conversation.
    pub async fn open_workstream(
        &self,
        session_id: &str,
        ws_id: &str,
        node_id: Option<&str>,
        name: &str,
        state: &str,
    ) -> Result<Opened, StoreError> {
        let txn = self.db.begin().await?;
        let created = create_session_on(&txn, session_id, Some(ws_id), node_id).await?;
        save_workstream_on(&txn, ws_id, node_id, name, state).await?;
        let opened = if created {
            Opened::default()
        } else {
            Opened {
                config: session_config_on(&txn, session_id).await?,
                history: load_history_on(&txn, session_id).await?,
            }
        };
        txn.commit().await?;
        Ok(opened)
    }
}

/// [`Store::load_history`] on `db`.
async fn load_history_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
) -> Result<Vec<ChatMessage>, StoreError> {
    let rows = conversation::Entity::find()
        .filter(conversation::Column::SessionId.eq(session_id))
        .order_by_asc(conversation::Column::Id)
        .all(db)
        .await?;
    Ok(rebuild(rows))
}

/// What a workstream finds in its session when it opens ([`Store::open_workstream`]).
#[derive(Clone, Debug, Default)]
pub struct Opened {
    /// The session's settings.
    pub config: BTreeMap<String, String>,
    /// Its conversation.
    pub history: Vec<ChatMessage>,
}

/// Rebuilds messages from rows (see [`Store::load_history`]).
fn rebuild(rows: Vec<conversation::Model>) -> Vec<ChatMessage> {
    let mut out: Vec<ChatMessage> = Vec::new();
    let mut previous_role = String::new();
    for row in rows {
        match row.role.as_str() {
            "user" => out.push(ChatMessage::user(row.content.unwrap_or_default())),
            "assistant" => out.push(ChatMessage::assistant(row.content, Vec::new())),
            "tool_call" => {
                let call = ToolCall {
                    id: row.tool_call_id.unwrap_or_default(),
                    name: row.tool_name.unwrap_or_default(),
                    arguments: row.tool_args.unwrap_or_default(),
                };
                let joins_previous = matches!(previous_role.as_str(), "assistant" | "tool_call")
                    && out.last().is_some_and(|m| m.role == Role::Assistant);
                match out.last_mut() {
                    Some(last) if joins_previous => last.tool_calls.push(call),
                    _ => out.push(ChatMessage::assistant(None, vec![call])),
                }
            }
            "tool_result" => {
                // The call this answers: the latest assistant message with calls, by id or
                // else the first call not yet answered.
                let Some(pos) = out.iter().rposition(|m| !m.tool_calls.is_empty()) else {
                    previous_role = row.role;
                    continue; // orphan
                };
                let answered: Vec<&str> = out[pos + 1..]
                    .iter()
                    .filter_map(|m| m.tool_call_id.as_deref())
                    .collect();
                let calls = &out[pos].tool_calls;
                let call = row
                    .tool_call_id
                    .as_deref()
                    .and_then(|id| calls.iter().find(|c| c.id == id && !answered.contains(&id)))
                    .or_else(|| calls.iter().find(|c| !answered.contains(&c.id.as_str())))
                    .cloned();
                if let Some(call) = call {
                    out.push(ChatMessage::tool(&call, row.content.unwrap_or_default()));
                }
            }
            _ => {}
        }
        previous_role = row.role;
    }
    drop_unanswered_calls(out)
}

/// Removes calls without a result; an assistant message left empty goes too.
fn drop_unanswered_calls(messages: Vec<ChatMessage>) -> Vec<ChatMessage> {
    let answered: std::collections::HashSet<String> = messages
        .iter()
        .filter_map(|m| m.tool_call_id.clone())
        .collect();
    messages
        .into_iter()
        .filter_map(|mut m| {
            if m.role == Role::Assistant && !m.tool_calls.is_empty() {
                m.tool_calls.retain(|c| answered.contains(&c.id));
                if m.tool_calls.is_empty() && m.content.is_none() {
                    return None;
                }
            }
            Some(m)
        })
        .collect()
}
