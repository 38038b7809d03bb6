//! What workstreams write — messages, states, settings, names — one at a time or a batch as
//! one transaction of the fewest statements.

use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, TransactionTrait,
};

use super::sessions::set_session_config_on;
use super::{Store, StoreError, TOOL_RESULT_CHARS, conversation, now, session, workstream};
use crate::provider::{ChatMessage, Role};

impl Store {
    /// Appends one message as Turnstone's rows: user/assistant text, one `tool_call` row per
    /// call, a `tool_result` row (first 2000 characters). System messages are not stored.
    pub async fn append(&self, session_id: &str, message: &ChatMessage) -> Result<(), StoreError> {
        append_on(&self.db, session_id, message).await
    }

    /// Applies `writes` in one transaction: one commit (one write-ahead-log sync point, one
    /// round trip for PostgreSQL's COMMIT) for what a workstream queued meanwhile. A single
    /// write needs no transaction.
    ///
    /// Within the transaction, consecutive messages of a session are one insert (and one
    /// touch of the session), and a workstream row is written once, as the last write for it
    /// leaves it: nobody sees the states in between, so writing them would only cost
    /// statements (and, in SQLite, a flush of the full-text index for each).
    pub async fn write_all(&self, writes: &[Write]) -> Result<(), StoreError> {
        if let [write] = writes {
            return write_on(&self.db, write).await;
        }
        self.write_steps(steps(writes)).await
    }

    /// Runs `steps` in one transaction.
    pub(super) async fn write_steps(&self, steps: Vec<Step<'_>>) -> Result<(), StoreError> {
        let txn = self.db.begin().await?;
        for step in steps {
            match step {
                Step::Messages(session_id, messages) => {
                    append_many_on(&txn, session_id, &messages).await?;
                }
                Step::One(write) => write_on(&txn, write).await?,
            }
        }
        txn.commit().await?;
        Ok(())
    }

    /// Records a workstream and its state.
    pub async fn save_workstream(
        &self,
        ws_id: &str,
        node_id: Option<&str>,
        name: &str,
        state: &str,
    ) -> Result<(), StoreError> {
        save_workstream_on(&self.db, ws_id, node_id, name, state).await
    }

    /// A workstream's stored state.
    pub async fn workstream(&self, ws_id: &str) -> Result<Option<workstream::Model>, StoreError> {
        Ok(workstream::Entity::find_by_id(ws_id.to_owned())
            .one(&self.db)
            .await?)
    }
}

/// One write of [`Store::write_all`] on `db` (the pool or a transaction).
async fn write_on<C: ConnectionTrait>(db: &C, write: &Write) -> Result<(), StoreError> {
    match write {
        Write::Message {
            session_id,
            message,
        } => append_on(db, session_id, message).await,
        Write::Workstream {
            ws_id,
            node_id,
            name,
            state,
        } => save_workstream_on(db, ws_id, node_id.as_deref(), name, state).await,
        Write::SessionConfig {
            session_id,
            key,
            value,
        } => set_session_config_on(db, session_id, key, value).await,
    }
}

/// What [`Store::write_all`] runs in its transaction.
#[derive(Debug)]
pub(super) enum Step<'a> {
    /// Consecutive messages of one session.
    Messages(&'a str, Vec<&'a ChatMessage>),
    /// Any other write.
    One(&'a Write),
}

/// `writes` as statements: consecutive messages of a session together, and only the last
/// write of each workstream.
pub(super) fn steps<'a, I>(writes: I) -> Vec<Step<'a>>
where
    I: IntoIterator<Item = &'a Write>,
{
    let writes: Vec<&'a Write> = writes.into_iter().collect();
    let replaced = |i: usize, ws: &str| {
        writes[i + 1..]
            .iter()
            .any(|later| matches!(later, Write::Workstream { ws_id, .. } if ws_id == ws))
    };
    let mut out: Vec<Step<'a>> = Vec::with_capacity(writes.len());
    for (i, &write) in writes.iter().enumerate() {
        match write {
            Write::Message {
                session_id,
                message,
            } => match out.last_mut() {
                Some(Step::Messages(session, batch)) if *session == session_id.as_str() => {
                    batch.push(message);
                }
                _ => out.push(Step::Messages(session_id, vec![message])),
            },
            Write::Workstream { ws_id, .. } if replaced(i, ws_id) => {}
            other => out.push(Step::One(other)),
        }
    }
    out
}

/// [`Store::append`] on `db` (the pool or a transaction).
async fn append_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    message: &ChatMessage,
) -> Result<(), StoreError> {
    append_many_on(db, session_id, &[message]).await
}

/// Appends `messages` to a session in one insert, and touches the session once.
async fn append_many_on<C: ConnectionTrait>(
    db: &C,
    session_id: &str,
    messages: &[&ChatMessage],
) -> Result<(), StoreError> {
    let now = now();
    let row = |role: &str| conversation::ActiveModel {
        id: sea_orm::ActiveValue::NotSet,
        session_id: Set(session_id.to_owned()),
        timestamp: Set(now.clone()),
        role: Set(role.to_owned()),
        content: Set(None),
        tool_name: Set(None),
        tool_args: Set(None),
        tool_call_id: Set(None),
        provider_data: Set(None),
    };
    let mut rows = Vec::new();
    for message in messages {
        match message.role {
            Role::System => {}
            Role::User => {
                let mut r = row("user");
                r.content = Set(message.content.clone());
                rows.push(r);
            }
            Role::Assistant => {
                if message.content.is_some() || message.tool_calls.is_empty() {
                    let mut r = row("assistant");
                    r.content = Set(message.content.clone());
                    rows.push(r);
                }
                for call in &message.tool_calls {
                    let mut r = row("tool_call");
                    r.tool_name = Set(Some(call.name.clone()));
                    r.tool_args = Set(Some(call.arguments.clone()));
                    r.tool_call_id = Set(Some(call.id.clone()));
                    rows.push(r);
                }
            }
            Role::Tool => {
                let mut r = row("tool_result");
                r.content = Set(message
                    .content
                    .as_deref()
                    .map(|c| crate::text::prefix(c, TOOL_RESULT_CHARS).to_owned()));
                r.tool_name = Set(message.name.clone());
                r.tool_call_id = Set(message.tool_call_id.clone());
                rows.push(r);
            }
        }
    }
    if rows.is_empty() {
        return Ok(());
    }
    // Without RETURNING: nobody needs the new ids, and reading them back costs a query.
    conversation::Entity::insert_many(rows)
        .exec_without_returning(db)
        .await?;
    session::Entity::update_many()
        .col_expr(session::Column::Updated, Expr::value(now))
        .filter(session::Column::SessionId.eq(session_id))
        .exec(db)
        .await?;
    Ok(())
}

/// [`Store::save_workstream`] on `db`.
pub(super) async fn save_workstream_on<C: ConnectionTrait>(
    db: &C,
    ws_id: &str,
    node_id: Option<&str>,
    name: &str,
    state: &str,
) -> Result<(), StoreError> {
    let now = now();
    let row = workstream::ActiveModel {
        ws_id: Set(ws_id.to_owned()),
        node_id: Set(node_id.map(str::to_owned)),
        user_id: Set(None),
        name: Set(name.to_owned()),
        state: Set(state.to_owned()),
        created: Set(now.clone()),
        updated: Set(now),
    };
    workstream::Entity::insert(row)
        .on_conflict(
            OnConflict::column(workstream::Column::WsId)
                .update_columns([
                    workstream::Column::Name,
                    workstream::Column::State,
                    workstream::Column::NodeId,
                    workstream::Column::Updated,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// One write of [`Store::write_all`] and [`Store::commit`], owned so that the group
/// committer can hold it until it lands.
#[derive(Clone, Debug)]
pub enum Write {
    /// [`Store::append`].
    Message {
        /// The session.
        session_id: String,
        /// The message.
        message: ChatMessage,
    },
    /// [`Store::save_workstream`].
    Workstream {
        /// The workstream.
        ws_id: String,
        /// Its node.
        node_id: Option<String>,
        /// Its name.
        name: String,
        /// Its state.
        state: &'static str,
    },
    /// [`Store::set_session_config`].
    SessionConfig {
        /// The session.
        session_id: String,
        /// The setting.
        key: String,
        /// Its value.
        value: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ws(state: &'static str) -> Write {
        Write::Workstream {
            ws_id: "w".into(),
            node_id: Some("n".into()),
            name: "main".into(),
            state,
        }
    }

    #[test]
    fn a_batch_is_one_insert_per_run_of_messages_and_the_last_workstream_state() {
        let (q, a, other) = (
            ChatMessage::user("q"),
            ChatMessage::assistant(Some("a".into()), vec![]),
            ChatMessage::user("elsewhere"),
        );
        let message = |session_id: &str, message: &ChatMessage| Write::Message {
            session_id: session_id.into(),
            message: message.clone(),
        };
        let writes = [
            ws("thinking"),
            message("s", &q),
            ws("running"),
            message("s", &a),
            message("t", &other),
            ws("idle"),
        ];
        let steps = steps(&writes);
        let shape: Vec<String> = steps
            .iter()
            .map(|step| match step {
                Step::Messages(session, batch) => format!("{session}×{}", batch.len()),
                Step::One(Write::Workstream { state, .. }) => (*state).to_owned(),
                Step::One(other) => format!("{other:?}"),
            })
            .collect();
        assert_eq!(shape, ["s×2", "t×1", "idle"]);
    }
}
