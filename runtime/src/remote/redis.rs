//! Remote mailboxes and event channels on Redis (feature `redis`).
//!
//! Keys, with a prefix (`turnstone` by default), as Turnstone 0.4.1 names them: a queue at
//! `{p}:{queue}` or `{p}:{queue}:{node}` (RPUSH by producers, consumed from the head). Unlike
//! 0.4.1's destructive BLPOP, a node *moves* each message into its own in-flight list
//! `{p}:processing:{node}:{queue key}` (BLMOVE) and removes it when handled; the set
//! `{p}:processing:{node}` records which in-flight lists a node has, so that a reaper can put a
//! dead node's messages back at the front of the queues they came from, in order. Messages
//! given up on go to `{p}:deadletter` with the reason.
//!
//! Blocking moves run on dedicated pooled connections (deadpool-redis), one pump per queue
//! and node, and only when a `receive` is waiting: a node holds at most one fetched but
//! unclaimed message per queue, and that one is in flight, never lost. Everything else goes
//! through one multiplexed, self-reconnecting connection.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::{Mutex, Semaphore, mpsc};

use super::redis_emit::{self, Emitter};
use super::transport::{
    Attempt, DeadLetter, Delivery, Emit, MailboxAddress, Route, STREAM_START, StreamEntry,
    Subscription, SubscriptionSender, Transport, TransportError,
};
use crate::policy::Backoff;

/// Dead letters kept (the oldest are trimmed).
pub const DEAD_LETTER_CAP: usize = 10_000;
/// Dedicated connections for blocking commands.
const POOL_SIZE: usize = 64;
/// Blocking-command connections kept idle for reuse.
const IDLE_KEPT: usize = 16;
/// The longest a blocking command waits in one call (callers loop for longer waits).
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// Seconds one blocking move waits before checking again whether its node still wants it (a
/// pump of a released node stops after its current move). Each idle pump re-asks this often:
/// at 1 s, a thousand idle nodes cost Redis 2,000 moves a second.
const BLOCK_SECONDS: f64 = 5.0;
/// Published messages buffered per subscription before new ones are dropped (and counted as
/// missed). Tokio allocates the buffer as it fills, so a subscriber that keeps up holds little
/// of it; a busy process's reader of a node-wide channel (thousands of events a second) can
/// lag a few seconds without losing any.
const SUBSCRIPTION_BUFFER: usize = 65_536;

const DEAD_LETTER_SCRIPT: &str = r"
if redis.call('LREM', KEYS[1], 1, ARGV[1]) == 0 then return 0 end
redis.call('RPUSH', KEYS[2], ARGV[2])
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[3]), -1)
return 1";

/// Moves the head of the first non-empty queue (in priority order) to its in-flight list.
/// KEYS: queue1, processing1, queue2, processing2, …; returns {index, message} or nil.
const TAKE_FIRST_SCRIPT: &str = r"
for i = 1, #KEYS, 2 do
  local m = redis.call('LMOVE', KEYS[i], KEYS[i + 1], 'LEFT', 'RIGHT')
  if m then return {tostring((i + 1) / 2), m} end
end
return nil";

/// SET KEYS[1] ARGV[2] if it holds ARGV[1] ("" with ARGV[3] = "absent": if it does not exist).
const COMPARE_AND_SET_SCRIPT: &str = r"
local current = redis.call('GET', KEYS[1])
if ARGV[3] == 'absent' then
  if current then return 0 end
elseif current ~= ARGV[1] then
  return 0
end
redis.call('SET', KEYS[1], ARGV[2])
return 1";

const RELEASE_LEASE_SCRIPT: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0";

const PUSH_ONCE_SCRIPT: &str = r"
local existing = redis.call('GET', KEYS[1])
if existing then return existing end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('RPUSH', KEYS[2], ARGV[3])
return false";

/// The stream field holding an event.
const STREAM_FIELD: &str = "e";

/// [`Transport::push_routed`]. KEYS: the stream whose position is read first, the key naming
/// the owner (each `""` for none). ARGV: the heartbeat keys' prefix (`{p}:node:`; the
/// heartbeat key is named at run time, which standalone Redis allows and a cluster would
/// not), the owner's queue's key without the node, the fallback queue's key, the payload.
/// Returns the position (false: none) and the heartbeating owner (false: none).
const PUSH_ROUTED_SCRIPT: &str = r"
local tail, owner = false, false
if KEYS[1] ~= '' then
  local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)[1]
  tail = top and top[1] or '0-0'
end
if KEYS[2] ~= '' then
  local v = redis.call('GET', KEYS[2])
  if v and redis.call('EXISTS', ARGV[1] .. v) == 1 then owner = v end
end
local queue = ARGV[3]
if owner then queue = ARGV[2] .. owner end
redis.call('RPUSH', queue, ARGV[4])
return {tail, owner}";

/// Moves all of KEYS[1] to the tail of KEYS[2], in order.
const REQUEUE_SCRIPT: &str = r"
local n = 0
while redis.call('LMOVE', KEYS[1], KEYS[2], 'LEFT', 'RIGHT') do n = n + 1 end
return n";

const RECLAIM_SCRIPT: &str = r"
local n = 0
while true do
  local m = redis.call('LMOVE', KEYS[1], KEYS[2], 'RIGHT', 'LEFT')
  if not m then break end
  n = n + 1
end
return n";

fn backend(e: impl std::fmt::Display) -> TransportError {
    TransportError::Backend(e.to_string())
}

/// One queue's pump for one node.
struct Pump {
    from: MailboxAddress,
    rx: mpsc::Receiver<String>,
    demand: Arc<Semaphore>,
    /// A fetch was asked for and its message not yet taken.
    outstanding: bool,
}

impl Drop for Pump {
    fn drop(&mut self) {
        // A pump waiting for demand stops (and its connection closes) with its receiver.
        self.demand.close();
    }
}

/// The Redis transport.
pub struct RedisTransport {
    prefix: String,
    commands: ConnectionManager,
    client: redis::Client,
    pool: deadpool_redis::Pool,
    /// Per node: its pumps, locked only by that node's receives.
    pumps: std::sync::Mutex<HashMap<String, Arc<Mutex<Vec<Pump>>>>>,
    registered: std::sync::Mutex<HashSet<(String, String)>>,
    dead_letter: redis::Script,
    reclaim: redis::Script,
    take_first: redis::Script,
    compare_and_set: redis::Script,
    requeue: redis::Script,
    push_routed: redis::Script,
    release_lease: redis::Script,
    push_once: redis::Script,
    /// Event batches, sent in groups ([`Emitter`]).
    emitter: Emitter,
    /// Blocking-command connections kept between uses.
    idle: std::sync::Mutex<Vec<deadpool_redis::Connection>>,
}

impl std::fmt::Debug for RedisTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTransport")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisTransport {
    /// Connects to `url` (`redis://[:password@]host:port/db`, `rediss://` for TLS) with key
    /// prefix `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, TransportError> {
        Self::connect_sized(url, prefix, POOL_SIZE).await
    }

    /// [`connect`](Self::connect) with room for `blocking_connections` blocking commands at
    /// once. Each node receiving through this transport holds one per queue it waits on, so
    /// a process that runs many nodes (the simulator) needs about two per node.
    pub async fn connect_sized(
        url: &str,
        prefix: &str,
        blocking_connections: usize,
    ) -> Result<Self, TransportError> {
        Self::connect_grouped(url, prefix, blocking_connections, redis_emit::window()).await
    }

    /// [`connect_sized`](Self::connect_sized) with event batches that find a write in flight
    /// grouped over `group_window` (the other constructors read it from
    /// [`GROUP_WINDOW_VAR`](super::GROUP_WINDOW_VAR), 1 ms by default).
    pub async fn connect_grouped(
        url: &str,
        prefix: &str,
        blocking_connections: usize,
        group_window: Duration,
    ) -> Result<Self, TransportError> {
        let client = redis::Client::open(url).map_err(backend)?;
        // Fail fast at start; once running, the manager reconnects on its own.
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2))
            .set_connection_timeout(Some(Duration::from_secs(5)));
        let commands = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(backend)?;
        // Blocking commands (moves, reply waits, stream reads) each hold one connection.
        // redis' default 500 ms response timeout would cut every blocking command short —
        // and a move cut short leaves its message in flight with nobody handling it.
        let blocking = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(5)));
        let manager = deadpool_redis::Manager::new_with_config(url, blocking).map_err(backend)?;
        let pool = deadpool_redis::Pool::builder(manager)
            .max_size(blocking_connections.max(4))
            .runtime(deadpool_redis::Runtime::Tokio1)
            .build()
            .map_err(backend)?;
        let emitter = Emitter::start(commands.clone(), group_window);
        Ok(Self {
            prefix: prefix.trim_end_matches(':').to_owned(),
            commands,
            client,
            pool,
            pumps: std::sync::Mutex::new(HashMap::new()),
            registered: std::sync::Mutex::new(HashSet::new()),
            dead_letter: redis::Script::new(DEAD_LETTER_SCRIPT),
            reclaim: redis::Script::new(RECLAIM_SCRIPT),
            take_first: redis::Script::new(TAKE_FIRST_SCRIPT),
            compare_and_set: redis::Script::new(COMPARE_AND_SET_SCRIPT),
            requeue: redis::Script::new(REQUEUE_SCRIPT),
            push_routed: redis::Script::new(PUSH_ROUTED_SCRIPT),
            release_lease: redis::Script::new(RELEASE_LEASE_SCRIPT),
            push_once: redis::Script::new(PUSH_ONCE_SCRIPT),
            emitter,
            idle: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// A dedicated connection for one blocking command.
    ///
    /// Connections that answered are kept for the next blocking command without deadpool's
    /// recycling check (a PING and an UNWATCH round trip per checkout).
    async fn blocking_connection(&self) -> Result<deadpool_redis::Connection, TransportError> {
        let kept = self.idle.lock().ok().and_then(|mut idle| idle.pop());
        match kept {
            Some(conn) => Ok(conn),
            None => self.pool.get().await.map_err(backend),
        }
    }

    /// Runs one blocking command on a dedicated connection, keeping the connection if it
    /// answered and dropping it if it failed.
    async fn blocking<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, TransportError> {
        let mut conn = self.blocking_connection().await?;
        match cmd.query_async::<T>(&mut *conn).await {
            Ok(answer) => {
                if let Ok(mut idle) = self.idle.lock()
                    && idle.len() < IDLE_KEPT
                {
                    idle.push(conn);
                }
                Ok(answer)
            }
            Err(e) => {
                let _ = deadpool_redis::Connection::take(conn);
                Err(backend(e))
            }
        }
    }

    /// The Redis key of a queue.
    pub fn queue_key(&self, at: &MailboxAddress) -> String {
        format!("{}:{}", self.prefix, at.key())
    }

    fn processing_key(&self, node: &str, queue_key: &str) -> String {
        format!("{}:processing:{node}:{queue_key}", self.prefix)
    }

    fn registry_key(&self, node: &str) -> String {
        format!("{}:processing:{node}", self.prefix)
    }

    fn workers_key(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    fn dead_letter_key(&self) -> String {
        format!("{}:deadletter", self.prefix)
    }

    /// Records that `node` may hold in-flight messages from `queue_key` (once per process).
    async fn register(&self, node: &str, queue_key: &str) -> Result<(), TransportError> {
        let key = (node.to_owned(), queue_key.to_owned());
        let known = self
            .registered
            .lock()
            .map(|r| r.contains(&key))
            .unwrap_or(false);
        if known {
            return Ok(());
        }
        let mut c = self.commands.clone();
        let _: () = redis::pipe()
            .sadd(self.registry_key(node), queue_key)
            .ignore()
            .sadd(self.workers_key(), node)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        if let Ok(mut r) = self.registered.lock() {
            r.insert(key);
        }
        Ok(())
    }

    fn start_pump(&self, node: &str, from: &MailboxAddress) -> Pump {
        let (tx, rx) = mpsc::channel(1);
        let demand = Arc::new(Semaphore::new(0));
        let source = self.queue_key(from);
        let destination = self.processing_key(node, &source);
        let pool = self.pool.clone();
        let permits = demand.clone();
        tokio::spawn(async move {
            let backoff = Backoff::exponential(Duration::from_millis(50), Duration::from_secs(5));
            let mut failures = 0u32;
            // The pump keeps its dedicated connection between moves (a fresh checkout would
            // cost a PING each time) and drops it only when it fails.
            let mut held: Option<deadpool_redis::Connection> = None;
            'fetch: loop {
                // Wait until a receive wants a message from this queue.
                let Ok(permit) = permits.acquire().await else {
                    return;
                };
                permit.forget();
                loop {
                    if tx.is_closed() {
                        return;
                    }
                    let mut conn = match held.take() {
                        Some(c) => c,
                        None => match pool.get().await {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!(error = %e, queue = %source, "redis connection failed; retrying");
                                tokio::time::sleep(backoff.delay(failures)).await;
                                failures = failures.saturating_add(1);
                                continue;
                            }
                        },
                    };
                    let moved: Result<Option<String>, _> = redis::cmd("BLMOVE")
                        .arg(&source)
                        .arg(&destination)
                        .arg("LEFT")
                        .arg("RIGHT")
                        .arg(BLOCK_SECONDS)
                        .query_async(&mut *conn)
                        .await;
                    match moved {
                        Ok(Some(payload)) => {
                            failures = 0;
                            // In flight now: safe even if nobody takes it (reclaimable).
                            if let Err(unsent) = tx.send(payload).await {
                                // The node was released: give the message back at once.
                                let back: Result<Option<String>, _> = redis::cmd("LMOVE")
                                    .arg(&destination)
                                    .arg(&source)
                                    .arg("RIGHT")
                                    .arg("LEFT")
                                    .query_async(&mut *conn)
                                    .await;
                                if let Err(e) = back {
                                    tracing::warn!(error = %e, queue = %source, message = %unsent.0, "could not return a fetched message; it stays in flight for the reaper");
                                }
                                return;
                            }
                            held = Some(conn);
                            continue 'fetch;
                        }
                        Ok(None) => {
                            failures = 0;
                            held = Some(conn);
                        }
                        Err(e) => {
                            // The connection is dropped, not returned to the pool.
                            let _ = deadpool_redis::Connection::take(conn);
                            tracing::warn!(error = %e, queue = %source, "blocking move failed; retrying");
                            tokio::time::sleep(backoff.delay(failures)).await;
                            failures = failures.saturating_add(1);
                        }
                    }
                }
            }
        });
        Pump {
            from: from.clone(),
            rx,
            demand,
            outstanding: false,
        }
    }
}

/// Blocking commands take whole milliseconds, and 0 would mean "forever".
fn block_millis(timeout: Duration) -> u64 {
    u64::try_from(timeout.min(MAX_BLOCK).as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// XREAD's answer: streams with their `(id, [field, value, …])` entries.
type XReadReply = Option<Vec<(String, Vec<(String, Vec<String>)>)>>;

fn stream_entries(reply: XReadReply) -> Vec<StreamEntry> {
    let mut out = Vec::new();
    for (stream, entries) in reply.unwrap_or_default() {
        for (id, fields) in entries {
            // An entry holds one batch's events for the stream, in order, each under `e`.
            let mut fields = fields.into_iter();
            while let (Some(name), Some(payload)) = (fields.next(), fields.next()) {
                if name == STREAM_FIELD {
                    out.push(StreamEntry {
                        stream: stream.clone(),
                        id: id.clone(),
                        payload,
                    });
                }
            }
        }
    }
    out
}

/// A duration as Redis's positive milliseconds.
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

#[async_trait]
impl Transport for RedisTransport {
    fn prefix(&self) -> &str {
        &self.prefix
    }

    async fn push(&self, to: &MailboxAddress, payload: String) -> Result<(), TransportError> {
        let mut c = self.commands.clone();
        let _: i64 = c
            .rpush(self.queue_key(to), payload)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn receive(
        &self,
        node: &str,
        from: &[MailboxAddress],
        timeout: Duration,
    ) -> Result<Option<Delivery>, TransportError> {
        for addr in from {
            self.register(node, &self.queue_key(addr)).await?;
        }
        // One node's wait must not hold up another node's receive on the same transport.
        let node_pumps = self
            .pumps
            .lock()
            .map_err(|_| TransportError::Backend("pump table poisoned".into()))?
            .entry(node.to_owned())
            .or_default()
            .clone();
        let mut pumps = node_pumps.lock().await;
        // What is queued already is taken in priority order, in one atomic step: pumps racing
        // each other would let a shared message overtake a directed one. Once every queue has
        // its pump, the pumps that wait on their queues take what comes at once, and a pump
        // that just delivered is sent again: the step is needed only when a queue's pump is
        // not waiting while a later queue's message is already fetched (it would overtake
        // that queue's backlog). So a node asks Redis nothing per receive but its pumps'
        // blocking moves — not a scripted look at every queue after each message and each
        // idle poll.
        let watched: Vec<Option<&Pump>> = from
            .iter()
            .map(|addr| pumps.iter().find(|p| &p.from == addr))
            .collect();
        let overtaken = watched.iter().enumerate().any(|(i, pump)| {
            pump.is_some_and(|p| !p.outstanding)
                && watched[i + 1..]
                    .iter()
                    .any(|later| later.is_some_and(|l| !l.rx.is_empty()))
        });
        let pumps_suffice = watched.iter().all(Option::is_some) && !overtaken;
        if !pumps_suffice {
            let mut invocation = self.take_first.prepare_invoke();
            for addr in from {
                let queue = self.queue_key(addr);
                invocation
                    .key(&queue)
                    .key(self.processing_key(node, &queue));
            }
            let mut c = self.commands.clone();
            let taken: Option<(String, String)> =
                invocation.invoke_async(&mut c).await.map_err(backend)?;
            if let Some((index, payload)) = taken {
                let index: usize = index.parse().map_err(backend)?;
                let from = from
                    .get(index.saturating_sub(1))
                    .ok_or_else(|| TransportError::Backend("bad queue index".into()))?;
                return Ok(Some(Delivery {
                    from: from.clone(),
                    node: node.to_owned(),
                    payload,
                }));
            }
        }
        for addr in from {
            if !pumps.iter().any(|p| &p.from == addr) {
                let pump = self.start_pump(node, addr);
                pumps.push(pump);
            }
        }
        // Priority order of `from`.
        let mut order: Vec<usize> = from
            .iter()
            .filter_map(|addr| pumps.iter().position(|p| &p.from == addr))
            .collect();
        order.dedup();
        // Already fetched?
        for &i in &order {
            if let Ok(payload) = pumps[i].rx.try_recv() {
                pumps[i].outstanding = false;
                return Ok(Some(Delivery {
                    from: pumps[i].from.clone(),
                    node: node.to_owned(),
                    payload,
                }));
            }
        }
        for &i in &order {
            if !pumps[i].outstanding {
                pumps[i].demand.add_permits(1);
                pumps[i].outstanding = true;
            }
        }
        let waits = pumps
            .iter_mut()
            .enumerate()
            .filter(|(i, _)| order.contains(i))
            .map(|(i, p)| Box::pin(async move { (i, p.rx.recv().await) }));
        let (i, payload) =
            match tokio::time::timeout(timeout, futures::future::select_all(waits)).await {
                Ok(((i, payload), _, rest)) => {
                    drop(rest); // the other waits (cancel-safe) release their pumps
                    (i, payload)
                }
                Err(_) => return Ok(None),
            };
        let Some(payload) = payload else {
            return Err(TransportError::Backend("a queue pump stopped".into()));
        };
        pumps[i].outstanding = false;
        Ok(Some(Delivery {
            from: pumps[i].from.clone(),
            node: node.to_owned(),
            payload,
        }))
    }

    async fn release(&self, node: &str) {
        let pumps = self.pumps.lock().ok().and_then(|mut p| p.remove(node));
        // Dropping a pump's receiver stops it; a message it fetched meanwhile goes back.
        if let Some(pumps) = pumps {
            pumps.lock().await.clear();
        }
    }

    async fn ack(&self, delivery: &Delivery) -> Result<(), TransportError> {
        let key = self.processing_key(&delivery.node, &self.queue_key(&delivery.from));
        let mut c = self.commands.clone();
        let removed: i64 = c.lrem(key, 1, &delivery.payload).await.map_err(backend)?;
        if removed == 0 {
            return Err(TransportError::NotInFlight {
                from: delivery.from.clone(),
                node: delivery.node.clone(),
            });
        }
        Ok(())
    }

    async fn dead_letter(&self, delivery: &Delivery, reason: &str) -> Result<(), TransportError> {
        let record = DeadLetter {
            from: delivery.from.clone(),
            node: delivery.node.clone(),
            payload: delivery.payload.clone(),
            reason: reason.to_owned(),
        };
        let json = serde_json::to_string(&record).map_err(backend)?;
        let mut c = self.commands.clone();
        let moved: i64 = self
            .dead_letter
            .key(self.processing_key(&delivery.node, &self.queue_key(&delivery.from)))
            .key(self.dead_letter_key())
            .arg(&delivery.payload)
            .arg(json)
            .arg(DEAD_LETTER_CAP)
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        if moved == 0 {
            return Err(TransportError::NotInFlight {
                from: delivery.from.clone(),
                node: delivery.node.clone(),
            });
        }
        Ok(())
    }

    async fn reclaim(&self, node: &str) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        let sources: Vec<String> = c.smembers(self.registry_key(node)).await.map_err(backend)?;
        let mut total = 0usize;
        for source in sources {
            let n: usize = self
                .reclaim
                .key(self.processing_key(node, &source))
                .key(&source)
                .invoke_async(&mut c)
                .await
                .map_err(backend)?;
            total += n;
        }
        Ok(total)
    }

    async fn requeue(
        &self,
        from: &MailboxAddress,
        to: &MailboxAddress,
    ) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        self.requeue
            .key(self.queue_key(from))
            .key(self.queue_key(to))
            .invoke_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn forget_worker(&self, node: &str) -> Result<(), TransportError> {
        let mut c = self.commands.clone();
        redis::pipe()
            .srem(self.workers_key(), node)
            .ignore()
            .del(self.registry_key(node))
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(backend)?;
        if let Ok(mut registered) = self.registered.lock() {
            registered.retain(|(n, _)| n != node);
        }
        Ok(())
    }

    async fn queue_len(&self, at: &MailboxAddress) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        c.llen(self.queue_key(at)).await.map_err(backend)
    }

    async fn in_flight_len(&self, node: &str) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        let sources: Vec<String> = c.smembers(self.registry_key(node)).await.map_err(backend)?;
        let mut total = 0usize;
        for source in sources {
            let n: usize = c
                .llen(self.processing_key(node, &source))
                .await
                .map_err(backend)?;
            total += n;
        }
        Ok(total)
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, TransportError> {
        let mut c = self.commands.clone();
        let start = -isize::try_from(limit.max(1)).unwrap_or(isize::MAX);
        let raw: Vec<String> = c
            .lrange(self.dead_letter_key(), start, -1)
            .await
            .map_err(backend)?;
        Ok(raw
            .iter()
            .filter_map(|r| {
                let v: serde_json::Value = serde_json::from_str(r).ok()?;
                Some(DeadLetter {
                    from: serde_json::from_value(v["from"].clone()).ok()?,
                    node: v["node"].as_str()?.to_owned(),
                    payload: v["payload"].as_str()?.to_owned(),
                    reason: v["reason"].as_str()?.to_owned(),
                })
            })
            .collect())
    }

    async fn heartbeat(
        &self,
        node: &str,
        metadata: String,
        ttl: Duration,
    ) -> Result<(), TransportError> {
        let mut c = self.commands.clone();
        let _: () = c
            .set_ex(self.node_key(node), metadata, ttl.as_secs().max(1))
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn live_nodes(&self) -> Result<Vec<(String, String)>, TransportError> {
        let mut c = self.commands.clone();
        let pattern = format!("{}:node:*", self.prefix);
        let mut keys: Vec<String> = Vec::new();
        {
            let mut iter: redis::AsyncIter<'_, String> =
                c.scan_match(&pattern).await.map_err(backend)?;
            while let Some(key) = futures::StreamExt::next(&mut iter).await {
                keys.push(key.map_err(backend)?);
            }
        }
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        keys.sort();
        let values: Vec<Option<String>> = c.mget(&keys).await.map_err(backend)?;
        let strip = format!("{}:node:", self.prefix);
        Ok(keys
            .into_iter()
            .zip(values)
            .filter_map(|(k, v)| Some((k.strip_prefix(&strip)?.to_owned(), v?)))
            .collect())
    }

    async fn workers(&self) -> Result<Vec<String>, TransportError> {
        let mut c = self.commands.clone();
        let mut workers: Vec<String> = c.smembers(self.workers_key()).await.map_err(backend)?;
        workers.sort();
        Ok(workers)
    }

    async fn heartbeating(&self, nodes: &[String]) -> Result<Vec<bool>, TransportError> {
        if nodes.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for node in nodes {
            pipe.exists(self.node_key(node));
        }
        let mut c = self.commands.clone();
        pipe.query_async(&mut c).await.map_err(backend)
    }

    async fn publish(&self, channel: &str, payload: String) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        c.publish(channel, payload).await.map_err(backend)
    }

    async fn subscribe(&self, channel: &str) -> Result<Subscription, TransportError> {
        use futures::StreamExt;
        let mut pubsub = self.client.get_async_pubsub().await.map_err(backend)?;
        pubsub.subscribe(channel).await.map_err(backend)?;
        let (tx, subscription) = SubscriptionSender::channel(channel, SUBSCRIPTION_BUFFER);
        let name = channel.to_owned();
        tokio::spawn(async move {
            let mut messages = pubsub.into_on_message();
            loop {
                tokio::select! {
                    message = messages.next() => {
                        let Some(message) = message else { break };
                        let Ok(payload) = message.get_payload::<String>() else { continue };
                        if !tx.deliver(payload) {
                            break;
                        }
                    }
                    () = tx.closed() => break,
                }
            }
            tracing::debug!(channel = %name, "subscription ended");
        });
        Ok(subscription)
    }

    async fn subscribers(&self, channel: &str) -> Result<usize, TransportError> {
        let mut c = self.commands.clone();
        let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(channel)
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(counts.first().map_or(0, |(_, n)| *n))
    }

    async fn get(&self, key: &str) -> Result<Option<String>, TransportError> {
        let mut c = self.commands.clone();
        c.get(key).await.map_err(backend)
    }

    async fn push_routed(
        &self,
        route: &Route<'_>,
        payload: String,
    ) -> Result<(MailboxAddress, Option<String>), TransportError> {
        let owner_queue = MailboxAddress::directed(route.owner_queue, "");
        let mut c = self.commands.clone();
        let (tail, owner): (Option<String>, Option<String>) = self
            .push_routed
            .key(route.tail_of.unwrap_or(""))
            .key(route.owner.unwrap_or(""))
            .arg(self.node_key(""))
            .arg(self.queue_key(&owner_queue))
            .arg(self.queue_key(&route.fallback))
            .arg(payload)
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        let to = match owner {
            Some(node) => MailboxAddress::directed(route.owner_queue, node),
            None => route.fallback.clone(),
        };
        Ok((to, tail))
    }

    async fn set(
        &self,
        key: &str,
        value: String,
        ttl: Option<Duration>,
    ) -> Result<(), TransportError> {
        let mut c = self.commands.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value);
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        cmd.query_async::<()>(&mut c).await.map_err(backend)
    }

    async fn acquire_lease(
        &self,
        key: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, TransportError> {
        let mut c = self.commands.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(key)
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl))
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(set.is_some())
    }

    async fn release_lease(&self, key: &str, owner: &str) -> Result<bool, TransportError> {
        let mut c = self.commands.clone();
        let released: i64 = self
            .release_lease
            .key(key)
            .arg(owner)
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(released == 1)
    }

    async fn push_once(
        &self,
        to: &MailboxAddress,
        payload: String,
        marker: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<Option<String>, TransportError> {
        let mut c = self.commands.clone();
        self.push_once
            .key(marker)
            .key(self.queue_key(to))
            .arg(value)
            .arg(millis(ttl))
            .arg(payload)
            .invoke_async(&mut c)
            .await
            .map_err(backend)
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expected: Option<&str>,
        value: String,
    ) -> Result<bool, TransportError> {
        let mut c = self.commands.clone();
        let set: i64 = self
            .compare_and_set
            .key(key)
            .arg(expected.unwrap_or(""))
            .arg(value)
            .arg(if expected.is_some() {
                "present"
            } else {
                "absent"
            })
            .invoke_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(set == 1)
    }

    async fn delete(&self, key: &str) -> Result<bool, TransportError> {
        let mut c = self.commands.clone();
        let n: i64 = c.del(key).await.map_err(backend)?;
        Ok(n > 0)
    }

    async fn expire(&self, key: &str, ttl: Duration) -> Result<bool, TransportError> {
        let mut c = self.commands.clone();
        let millis = i64::try_from(ttl.as_millis().max(1)).unwrap_or(i64::MAX);
        let set: i64 = redis::cmd("PEXPIRE")
            .arg(key)
            .arg(millis)
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(set == 1)
    }

    async fn reply(&self, key: &str, payload: String, ttl: Duration) -> Result<(), TransportError> {
        let mut c = self.commands.clone();
        redis::pipe()
            .rpush(key, payload)
            .ignore()
            .expire(key, i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX))
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(backend)
    }

    async fn take_reply(
        &self,
        keys: &[String],
        timeout: Duration,
    ) -> Result<Option<(String, String)>, TransportError> {
        if keys.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(None);
        }
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(keys).arg(block_millis(timeout) as f64 / 1000.0);
        self.blocking(&cmd).await
    }

    async fn emit(
        &self,
        events: &[Emit],
        cap: usize,
        attempt: Attempt,
    ) -> Result<Vec<String>, TransportError> {
        self.emitter.emit(events, cap, attempt).await
    }

    async fn stream_tail(&self, stream: &str) -> Result<String, TransportError> {
        let mut c = self.commands.clone();
        let newest: Vec<(String, Vec<String>)> = redis::cmd("XREVRANGE")
            .arg(stream)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut c)
            .await
            .map_err(backend)?;
        Ok(newest
            .into_iter()
            .next()
            .map_or_else(|| STREAM_START.to_owned(), |(id, _)| id))
    }

    async fn read_streams(
        &self,
        after: &[(String, String)],
        timeout: Duration,
    ) -> Result<Vec<StreamEntry>, TransportError> {
        if after.is_empty() {
            tokio::time::sleep(timeout).await;
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("XREAD");
        cmd.arg("BLOCK").arg(block_millis(timeout)).arg("STREAMS");
        for (stream, _) in after {
            cmd.arg(stream);
        }
        for (_, id) in after {
            cmd.arg(id);
        }
        let reply: XReadReply = self.blocking(&cmd).await?;
        Ok(stream_entries(reply))
    }
}
