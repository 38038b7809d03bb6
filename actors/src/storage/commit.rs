//! Group commit: the batches of writes that workstreams hand to [`Store::commit`] within a
//! short window land in one transaction.
//!
//! Each workstream already gathers a turn's writes into one batch; with many workstreams
//! busy, a node still committed once per turn, and a commit is what costs in SQLite (the
//! write-ahead-log append of every page the turn touched and the full-text index's flush) and
//! a round trip in PostgreSQL. The committer is one task per store: it takes the first batch,
//! gathers what arrives within [`WINDOW`] (at most [`MAX_BATCHES`]), and writes them all in
//! one transaction, in arrival order, so each workstream's writes keep their order. If that
//! transaction fails, each batch is retried on its own and then each write, so one bad write
//! neither takes other workstreams' writes down nor goes unreported.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::writes::steps;
use super::{Store, StoreError, Write};

/// How long the committer gathers batches after the first one arrives.
pub const WINDOW: Duration = Duration::from_millis(1);

/// The most batches in one transaction.
pub const MAX_BATCHES: usize = 256;

/// One caller's batch and where its outcome goes.
struct Request {
    writes: Vec<Write>,
    reply: oneshot::Sender<Vec<StoreError>>,
}

impl Store {
    /// Lands `writes` in order, together with what other workstreams commit meanwhile: the
    /// store's group committer puts every batch that arrives within [`WINDOW`] into
    /// one transaction (one commit, one write-ahead-log append and one full-text-index flush
    /// in SQLite; one COMMIT round trip in PostgreSQL). Returns the errors of the writes that
    /// did not land, each reported on its own: empty when all landed.
    pub async fn commit(&self, writes: Vec<Write>) -> Vec<StoreError> {
        match &self.committer {
            Some(committer) => committer.commit(self, writes).await,
            None => land(self, &writes).await,
        }
    }
}

/// The handle to a store's committer task.
#[derive(Clone, Debug)]
pub(super) struct Committer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Committer {
    /// Starts the committer of `store` (a store without a committer of its own). It stops
    /// when the last handle is dropped.
    pub(super) fn start(store: Store) -> Self {
        let (requests, mut queue) = mpsc::unbounded_channel::<Request>();
        tokio::spawn(async move {
            while let Some(first) = queue.recv().await {
                let mut group = vec![first];
                let deadline = tokio::time::Instant::now() + WINDOW;
                while group.len() < MAX_BATCHES {
                    match tokio::time::timeout_at(deadline, queue.recv()).await {
                        Ok(Some(next)) => group.push(next),
                        Ok(None) | Err(_) => break,
                    }
                }
                land_group(&store, group).await;
            }
        });
        Self { requests }
    }

    /// Hands `writes` to the committer and waits for their outcome. A committer that is gone
    /// (its runtime shut down) leaves the caller to write them itself.
    pub(super) async fn commit(&self, store: &Store, writes: Vec<Write>) -> Vec<StoreError> {
        let (reply, outcome) = oneshot::channel();
        if let Err(refused) = self.requests.send(Request { writes, reply }) {
            return land(store, &refused.0.writes).await;
        }
        outcome
            .await
            .unwrap_or_else(|_| vec![StoreError::CommitterStopped])
    }
}

/// Writes a group: one transaction for all, else each batch on its own.
async fn land_group(store: &Store, group: Vec<Request>) {
    let together = match group.as_slice() {
        [_] => false,
        _ => store
            .write_steps(steps(group.iter().flat_map(|r| &r.writes)))
            .await
            .is_ok(),
    };
    for request in group {
        let errors = if together {
            Vec::new()
        } else {
            land(store, &request.writes).await
        };
        let _ = request.reply.send(errors);
    }
}

/// Writes one batch in one transaction; if that fails, each write on its own, so every
/// failure is reported.
pub(super) async fn land(store: &Store, writes: &[Write]) -> Vec<StoreError> {
    let failed = match writes {
        [] => return Vec::new(),
        // One write is its own transaction: its error is the one to report.
        [_] => return store.write_all(writes).await.err().into_iter().collect(),
        _ => store.write_all(writes).await.is_err(),
    };
    let mut errors = Vec::new();
    if failed {
        for write in writes {
            if let Err(e) = store.write_all(std::slice::from_ref(write)).await {
                errors.push(e);
            }
        }
    }
    errors
}
