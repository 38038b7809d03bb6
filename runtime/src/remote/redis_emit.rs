//! Event batches of every caller of one [`RedisTransport`](super::RedisTransport), sent as
//! one atomic call per group (group commit).
//!
//! Each caller of `emit` (a bridge's publisher) already sends what it has queued as one batch.
//! A process that runs many nodes on one transport (the simulator: a thousand bridges) would
//! otherwise make one script call per batch, most of them a single event, and spend its time
//! on round trips. A batch that finds no call in flight goes at once; the batches that find
//! one wait, and the group task sends them — with those that come within the group window
//! (1 ms by default) — as one atomic call when the call is done, answering each caller with
//! its own batch's stream ids. A batch's events for one stream are one stream entry. A group of first
//! attempts is one `MULTI`/`EXEC` transaction; a group with a retry is one script call.
//! Every batch keeps its own token and retry flag, so a group is applied exactly as its
//! batches would be one after another: a retried batch that was applied is skipped alone.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::transport::{Attempt, Emit, TransportError};

/// Script calls in flight at once: while one is, new batches wait and join the next group.
const IN_FLIGHT: usize = 1;

/// How long a group waits for more batches once its first has come (while a call was in
/// flight), unless [`WINDOW_VAR`] says otherwise: at most one call per window then, whatever
/// the number of callers. A batch that finds no call in flight goes at once, so a quiet node's
/// events are not held; a busy process's wait for the window is what its events are grouped by.
const WINDOW: Duration = Duration::from_millis(1);

/// The environment variable that sets the group window in microseconds (0: none).
pub const WINDOW_VAR: &str = "TURNSTONE_REDIS_GROUP_WINDOW_US";

/// The group window: [`WINDOW_VAR`] if set to a number of microseconds, else [`WINDOW`].
pub(super) fn window() -> Duration {
    std::env::var(WINDOW_VAR)
        .ok()
        .and_then(|us| us.trim().parse().ok())
        .map_or(WINDOW, Duration::from_micros)
}

/// Events in one group at most (a batch is never split).
const GROUP_EVENTS: usize = 2048;

/// Emits groups that hold a retried batch (groups of first attempts go as a transaction,
/// [`send_first`], which writes exactly what this script's write path does). KEYS: the
/// group's streams. ARGV: the cap, then per batch its token, whether it is a retry (`1`), its
/// number of events, then per event its stream's index in KEYS (0: none), channel and
/// payload. A batch adds one entry to each of its streams, holding its events for that stream
/// in order (field `e`, repeated) and its token (field `b`), so a retry of a batch that was
/// applied — its reply lost with the connection — finds its token among the newest 64 entries
/// (other batches, of its group or of other nodes, may have been added to a shared stream
/// after it) and is skipped; a first attempt skips that look. Then each event is published.
/// Returns per batch the ids of its entries, one per stream in the order the batch first
/// names them (empty: skipped).
const GROUP_SCRIPT: &str = r"
local RECENT = 64
local cap = ARGV[1]
local out = {}
local i = 2
while i <= #ARGV do
  local token, retry, n = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  local first, stop = i + 3, i + 2 + 3 * n
  local fields, streams = {}, {}
  for j = first, stop, 3 do
    local k = tonumber(ARGV[j])
    if k > 0 then
      local f = fields[k]
      if not f then
        f = {}
        fields[k] = f
        streams[#streams + 1] = k
      end
      f[#f + 1] = 'e'
      f[#f + 1] = ARGV[j + 2]
    end
  end
  local applied = false
  if retry == '1' then
    for _, k in ipairs(streams) do
      for _, entry in ipairs(redis.call('XREVRANGE', KEYS[k], '+', '-', 'COUNT', RECENT)) do
        local f = entry[2]
        for m = 1, #f, 2 do
          if f[m] == 'b' and f[m + 1] == token then applied = true end
        end
      end
    end
  end
  local ids = {}
  if not applied then
    for _, k in ipairs(streams) do
      local f = fields[k]
      f[#f + 1] = 'b'
      f[#f + 1] = token
      ids[#ids + 1] = redis.call('XADD', KEYS[k], 'MAXLEN', '~', cap, '*', unpack(f))
    end
    for j = first, stop, 3 do
      redis.call('PUBLISH', ARGV[j + 1], ARGV[j + 2])
    end
  end
  out[#out + 1] = ids
  i = stop + 1
end
return out";

/// One caller's batch as the script takes it.
#[derive(Clone, Copy)]
struct Batch<'a> {
    events: &'a [Emit],
    cap: usize,
    attempt: Attempt,
}

/// A batch that found every call in flight, waiting for its group to go out.
struct Pending {
    events: Vec<Emit>,
    cap: usize,
    attempt: Attempt,
    reply: oneshot::Sender<Result<Vec<String>, TransportError>>,
}

impl Pending {
    fn batch(&self) -> Batch<'_> {
        Batch {
            events: &self.events,
            cap: self.cap,
            attempt: self.attempt,
        }
    }
}

/// The handle callers send their batches through; the group task ends when it is dropped.
#[derive(Debug)]
pub(super) struct Emitter {
    queue: mpsc::UnboundedSender<Pending>,
    commands: ConnectionManager,
    script: Arc<redis::Script>,
    /// Calls that may be in flight (one); the group task takes it for a group once the call
    /// before is done.
    slots: Arc<Semaphore>,
}

impl Emitter {
    /// Starts the group task on `commands`, grouping what waits over `window`.
    pub(super) fn start(commands: ConnectionManager, window: Duration) -> Self {
        let (queue, rx) = mpsc::unbounded_channel();
        let script = Arc::new(redis::Script::new(GROUP_SCRIPT));
        let slots = Arc::new(Semaphore::new(IN_FLIGHT));
        tokio::spawn(run(
            commands.clone(),
            script.clone(),
            slots.clone(),
            rx,
            window,
        ));
        Self {
            queue,
            commands,
            script,
            slots,
        }
    }

    /// Emits `events` as one batch and returns the stream id of each event (empty for events
    /// without a stream, and for all of them when a retried batch had been applied before).
    /// A batch that finds a call free goes at once, from the caller's task and uncopied — a
    /// node's one publisher never waits for a group; otherwise it joins the next group.
    pub(super) async fn emit(
        &self,
        events: &[Emit],
        cap: usize,
        attempt: Attempt,
    ) -> Result<Vec<String>, TransportError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let batch = Batch {
            events,
            cap,
            attempt,
        };
        // The semaphore is fair: a batch does not overtake groups already waiting for a call.
        if let Ok(_slot) = self.slots.try_acquire() {
            let mut commands = self.commands.clone();
            let mut ids = send(&mut commands, &self.script, &[batch])
                .await
                .map_err(TransportError::Backend)?;
            return Ok(stream_ids(events, ids.pop().unwrap_or_default()));
        }
        let (reply, answer) = oneshot::channel();
        let pending = Pending {
            events: events.to_vec(),
            cap,
            attempt,
            reply,
        };
        let gone = || TransportError::Backend("the event emitter stopped".into());
        self.queue.send(pending).map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

/// Takes what waits whenever a call may go out, and sends it as one group.
async fn run(
    commands: ConnectionManager,
    script: Arc<redis::Script>,
    slots: Arc<Semaphore>,
    mut queue: mpsc::UnboundedReceiver<Pending>,
    window: Duration,
) {
    loop {
        // Only a batch that found the call in flight waits here: the slot is taken after it
        // came (a group task that held it while idle would send every batch through here).
        let Some(first) = queue.recv().await else {
            return;
        };
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        // Batches that come within the window join this group: one call instead of one each.
        if !window.is_zero() {
            tokio::time::sleep(window).await;
        }
        let mut size = first.events.len();
        let mut group = vec![first];
        while size < GROUP_EVENTS {
            match queue.try_recv() {
                Ok(next) => {
                    size += next.events.len();
                    group.push(next);
                }
                Err(_) => break,
            }
        }
        let mut commands = commands.clone();
        let script = script.clone();
        tokio::spawn(async move {
            let batches: Vec<Batch<'_>> = group.iter().map(Pending::batch).collect();
            let answers = send(&mut commands, &script, &batches).await;
            drop(batches);
            match answers {
                Ok(ids) => {
                    for (pending, ids) in group.into_iter().zip(ids) {
                        let ids = stream_ids(&pending.events, ids);
                        let _ = pending.reply.send(Ok(ids));
                    }
                }
                Err(e) => {
                    for pending in group {
                        let _ = pending.reply.send(Err(TransportError::Backend(e.clone())));
                    }
                }
            }
            drop(slot);
        });
    }
}

/// One atomic call for `group`; per batch, the ids of its stream entries. A group of first
/// attempts goes as one `MULTI`/`EXEC` transaction of plain `XADD`s and `PUBLISH`es: there is
/// nothing to look up first, and Redis runs queued commands for about a third of what each
/// `redis.call` of a script costs it. A group with a retry goes through the script, which
/// looks for each retried batch's token before adding anything.
async fn send(
    commands: &mut ConnectionManager,
    script: &redis::Script,
    group: &[Batch<'_>],
) -> Result<Vec<Vec<String>>, String> {
    if group.iter().all(|b| b.attempt == Attempt::First) {
        return send_first(commands, group).await;
    }
    send_scripted(commands, script, group).await
}

/// First attempts as one transaction: the script's write path, command for command.
async fn send_first(
    commands: &mut ConnectionManager,
    group: &[Batch<'_>],
) -> Result<Vec<Vec<String>>, String> {
    let cap = group.iter().map(|b| b.cap).max().unwrap_or(1).max(1);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let mut counts = Vec::with_capacity(group.len());
    for batch in group {
        let token = token(batch.events);
        let streams = streams_of(batch.events);
        for stream in &streams {
            pipe.cmd("XADD")
                .arg(*stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(cap)
                .arg("*");
            for event in batch.events {
                if event.stream.as_deref() == Some(*stream) {
                    pipe.arg("e").arg(&event.payload);
                }
            }
            pipe.arg("b").arg(&token);
        }
        for event in batch.events {
            pipe.cmd("PUBLISH")
                .arg(&event.channel)
                .arg(&event.payload)
                .ignore();
        }
        counts.push(streams.len());
    }
    let ids: Vec<String> = pipe
        .query_async(commands)
        .await
        .map_err(|e| e.to_string())?;
    if ids.len() != counts.iter().sum::<usize>() {
        return Err(format!(
            "the emit transaction answered {} stream ids of {}",
            ids.len(),
            counts.iter().sum::<usize>()
        ));
    }
    let mut ids = ids.into_iter();
    Ok(counts
        .into_iter()
        .map(|n| ids.by_ref().take(n).collect())
        .collect())
}

/// A batch's streams, in the order it first names them: each gets one entry of the batch.
fn streams_of(events: &[Emit]) -> Vec<&str> {
    let mut streams: Vec<&str> = Vec::new();
    for stream in events.iter().filter_map(|e| e.stream.as_deref()) {
        if !streams.contains(&stream) {
            streams.push(stream);
        }
    }
    streams
}

/// One script call for `group`.
async fn send_scripted(
    commands: &mut ConnectionManager,
    script: &redis::Script,
    group: &[Batch<'_>],
) -> Result<Vec<Vec<String>>, String> {
    let mut streams: Vec<&str> = Vec::new();
    let mut invocation = script.prepare_invoke();
    // Every batch of a group has the bridge's cap; the largest wins if they differ.
    let cap = group.iter().map(|b| b.cap).max().unwrap_or(1).max(1);
    invocation.arg(cap);
    for batch in group {
        invocation
            .arg(token(batch.events))
            .arg(u8::from(batch.attempt == Attempt::Retry))
            .arg(batch.events.len());
        for event in batch.events {
            let index = match &event.stream {
                Some(stream) => match streams.iter().position(|s| s == stream) {
                    Some(i) => i + 1,
                    None => {
                        streams.push(stream);
                        streams.len()
                    }
                },
                None => 0,
            };
            invocation
                .arg(index)
                .arg(&event.channel)
                .arg(&event.payload);
        }
    }
    for stream in &streams {
        invocation.key(*stream);
    }
    let ids: Vec<Vec<String>> = invocation
        .invoke_async(commands)
        .await
        .map_err(|e| e.to_string())?;
    if ids.len() != group.len() {
        return Err(format!(
            "the emit script answered {} batches of {}",
            ids.len(),
            group.len()
        ));
    }
    Ok(ids)
}

/// A batch's token: a digest of everything in it (two distinct batches with the same events
/// to the microsecond of their timestamps do not happen).
fn token(events: &[Emit]) -> String {
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    for event in events {
        for part in [
            event.stream.as_deref().unwrap_or(""),
            &event.channel,
            &event.payload,
        ] {
            digest.update(part.as_bytes());
            digest.update(&[0]);
        }
    }
    format!("{:016x}", digest.digest())
}

/// Each event's stream id, in order: the id of its batch's entry in its stream (empty where
/// it has no stream, and for all of them when the batch was skipped as applied before).
fn stream_ids(events: &[Emit], ids: Vec<String>) -> Vec<String> {
    let streams = streams_of(events);
    events
        .iter()
        .map(|e| {
            e.stream
                .as_deref()
                .and_then(|s| streams.iter().position(|known| *known == s))
                .and_then(|i| ids.get(i).cloned())
                .unwrap_or_default()
        })
        .collect()
}
