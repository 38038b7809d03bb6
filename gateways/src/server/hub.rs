//! The `EventHub`: every workstream's events as a sequenced log with a bounded ring buffer.
//!
//! One pump task per workstream serialises each event once, numbers it and appends it to the
//! ring; any number of readers follow the same log (0.4.1 allowed one, so a browser and the
//! bridge evicted each other). A reader that reconnects with `Last-Event-ID` gets what it
//! missed while that is still in the ring. Publishing never waits for readers: a reader that
//! falls more than the ring behind skips ahead, and the skip is reported to it and counted.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use turnstone_actors::provider::{ChatMessage, Role};
use turnstone_actors::workstream::{WorkstreamHandle, WsEvent};

/// Events kept per workstream for late and reconnecting readers.
pub const RING: usize = 1024;

/// One numbered event, serialised once for every reader.
#[derive(Debug)]
pub struct Frame {
    /// Sequence number within its workstream (from 1).
    pub seq: u64,
    /// The event's JSON.
    pub json: String,
}

#[derive(Debug, Default)]
struct LogState {
    next: u64,
    ring: VecDeque<Arc<Frame>>,
    /// The approval request (JSON) still waiting for an answer.
    pending_approval: Option<String>,
    /// The plan (JSON) still waiting for review.
    pending_plan: Option<String>,
    closed: bool,
}

/// One workstream's event log.
#[derive(Debug)]
pub struct WsLog {
    state: Mutex<LogState>,
    tx: broadcast::Sender<Arc<Frame>>,
}

/// What a new reader starts from.
pub struct Follow {
    /// Frames after the reader's last one, still in the ring.
    pub replay: Vec<Arc<Frame>>,
    /// Frames the reader asked for that the ring no longer holds.
    pub missed: u64,
    /// Live frames after the replay.
    pub live: broadcast::Receiver<Arc<Frame>>,
    /// The approval or plan review still waiting, for a reader that starts fresh.
    pub pending: Vec<String>,
}

impl WsLog {
    /// An empty log whose live channel holds `capacity` frames per reader.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self {
            state: Mutex::new(LogState {
                next: 1,
                ..LogState::default()
            }),
            tx,
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends an event; returns its sequence number.
    pub fn publish(&self, json: String) -> u64 {
        let mut state = self.lock();
        let seq = state.next;
        state.next += 1;
        let frame = Arc::new(Frame { seq, json });
        if state.ring.len() >= RING {
            state.ring.pop_front();
        }
        state.ring.push_back(frame.clone());
        // No readers is fine; a full channel overwrites the oldest (readers see `Lagged`).
        let _ = self.tx.send(frame);
        seq
    }

    /// Appends a typed event, tracking what is still waiting for the person.
    pub fn publish_event(&self, event: &WsEvent) -> u64 {
        let json = serde_json::to_string(event).unwrap_or_else(|e| {
            json!({"type": "error", "message": format!("unserialisable event: {e}")}).to_string()
        });
        {
            let mut state = self.lock();
            match event {
                WsEvent::ApproveRequest { .. } => state.pending_approval = Some(json.clone()),
                WsEvent::PlanReview { .. } => state.pending_plan = Some(json.clone()),
                WsEvent::ToolResult { .. }
                | WsEvent::ToolInfo { .. }
                | WsEvent::ThinkingStart
                | WsEvent::StreamEnd => {
                    state.pending_approval = None;
                    state.pending_plan = None;
                }
                _ => {}
            }
        }
        self.publish(json)
    }

    /// Starts following after `last_seen` (None: from now, with what is pending).
    pub fn follow(&self, last_seen: Option<u64>) -> Follow {
        // Subscribing under the lock that publish takes: the replay and the live receiver
        // neither overlap nor leave a gap.
        let state = self.lock();
        let live = self.tx.subscribe();
        let (replay, missed) = match last_seen {
            None => (Vec::new(), 0),
            Some(last) => {
                let replay: Vec<Arc<Frame>> = state
                    .ring
                    .iter()
                    .filter(|f| f.seq > last)
                    .cloned()
                    .collect();
                let first_kept = replay.first().map_or(state.next, |f| f.seq);
                let wanted_from = last.saturating_add(1).min(state.next);
                (replay, first_kept.saturating_sub(wanted_from))
            }
        };
        let pending = if last_seen.is_none() {
            state
                .pending_approval
                .iter()
                .chain(state.pending_plan.iter())
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        Follow {
            replay,
            missed,
            live,
            pending,
        }
    }

    /// The sequence number the next event will get.
    #[cfg(test)]
    fn next_seq(&self) -> u64 {
        self.lock().next
    }

    /// Whether the workstream is gone.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// Sees each event of a followed workstream as the pump takes it (the pump owns it and drops
/// it when the workstream goes away, aborted or not).
pub trait Observe: Send + 'static {
    /// One event.
    fn event(&mut self, event: &WsEvent);
}

struct Entry {
    log: Arc<WsLog>,
    pump: JoinHandle<()>,
}

/// Event logs of the node's workstreams.
#[derive(Clone, Default)]
pub struct EventHub {
    logs: Arc<Mutex<HashMap<String, Entry>>>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub")
            .field("workstreams", &self.lock().len())
            .finish()
    }
}

impl EventHub {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.logs.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The log of a workstream, starting its pump on first use; the pump also shows every
    /// event to the observer `observe` makes (called only then), and drops it when it ends.
    pub fn log<O: Observe>(
        &self,
        ws: &WorkstreamHandle,
        observe: impl FnOnce() -> O,
    ) -> Arc<WsLog> {
        let mut logs = self.lock();
        if let Some(entry) = logs.get(ws.ws_id()) {
            return entry.log.clone();
        }
        let log = Arc::new(WsLog::new(RING));
        let mut events = ws.subscribe();
        let target = log.clone();
        let mut observer = observe();
        let pump = tokio::spawn(async move {
            loop {
                match events.recv().await {
                    Ok(event) => {
                        observer.event(&event);
                        target.publish_event(&event);
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "event pump fell behind its workstream");
                        target.publish(info(&format!("{n} events were lost")));
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        logs.insert(
            ws.ws_id().to_owned(),
            Entry {
                log: log.clone(),
                pump,
            },
        );
        log
    }

    /// The log of a workstream the hub already follows.
    pub fn existing(&self, ws_id: &str) -> Option<Arc<WsLog>> {
        self.lock().get(ws_id).map(|e| e.log.clone())
    }

    /// Stops following a workstream that went away; its readers end.
    pub fn remove(&self, ws_id: &str) {
        if let Some(entry) = self.lock().remove(ws_id) {
            entry.pump.abort();
            entry.log.lock().closed = true;
            // Readers wake on the closed channel once the last sender (this log) is dropped;
            // wake them now with a final frame.
            entry
                .log
                .publish(json!({"type": "ws_closed", "ws_id": ws_id}).to_string());
        }
    }
}

/// An `info` event's JSON.
pub fn info(message: &str) -> String {
    json!({"type": "info", "message": message}).to_string()
}

/// The `history` event for a conversation.
pub fn history_event(messages: &[ChatMessage]) -> String {
    let rows: Vec<Value> = messages
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut row = json!({"role": role, "content": m.content});
            if !m.tool_calls.is_empty() {
                row["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
                    .collect();
            }
            if let Some(name) = &m.name {
                row["name"] = json!(name);
            }
            row
        })
        .collect();
    json!({"type": "history", "messages": rows}).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnecting_readers_replay_what_they_missed_while_it_is_kept() {
        let log = WsLog::new(8);
        for i in 0..5 {
            log.publish(format!("{{\"n\":{i}}}"));
        }
        let f = log.follow(Some(2));
        assert_eq!(
            f.replay.iter().map(|f| f.seq).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(f.missed, 0);
        let fresh = log.follow(None);
        assert!(fresh.replay.is_empty());
        for i in 0..(RING + 10) {
            log.publish(format!("{i}"));
        }
        let late = log.follow(Some(1));
        assert_eq!(late.replay.len(), RING);
        assert_eq!(late.missed, 14, "seq 2..=15 fell out of the ring");
        let current = log.follow(Some(log.next_seq() - 1));
        assert!(current.replay.is_empty() && current.missed == 0);
    }

    #[test]
    fn pending_approval_is_offered_to_fresh_readers_until_answered() {
        let log = WsLog::new(8);
        log.publish_event(&WsEvent::ApproveRequest { items: Vec::new() });
        assert_eq!(log.follow(None).pending.len(), 1);
        assert!(
            log.follow(Some(0)).pending.is_empty(),
            "a reconnecting reader replays it instead"
        );
        log.publish_event(&WsEvent::ToolInfo { items: Vec::new() });
        assert!(log.follow(None).pending.is_empty());
    }
}
