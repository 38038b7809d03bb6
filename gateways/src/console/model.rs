//! The console's picture of the cluster: every node and workstream the collector knows, with
//! the indexes the cluster API reads pages from (SPEC §3, §3.1).
//!
//! Counts per state, per node and in all are kept as workstreams change, and each sort order
//! of the API is an ordered index, so a page is a walk along one index — no request sorts
//! every workstream. The model is plain data: the collector's actors write it, the HTTP
//! handlers read it, both under one lock held for microseconds.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use serde::Serialize;
use serde_json::{Map, Value, json};

/// Workstream states in the API's sort order.
pub const STATES: [&str; 5] = ["running", "thinking", "attention", "error", "idle"];

/// A state's place in [`STATES`] (unknown states sort last, counted as idle).
fn rank(state: &str) -> usize {
    STATES.iter().position(|s| *s == state).unwrap_or(4)
}

/// The state as one of [`STATES`] (unknown states count as idle).
fn canonical(state: &str) -> &'static str {
    STATES[rank(state)]
}

/// Shared text: a workstream's id, name and node are shared by its record and the indexes.
pub type Text = Arc<str>;

/// Counts per state, indexed like [`STATES`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StateCounts(pub [u64; 5]);

impl StateCounts {
    fn add(&mut self, state: &str, n: i64) {
        let slot = &mut self.0[rank(state)];
        *slot = slot.saturating_add_signed(n);
    }

    /// Workstreams in `state`.
    pub fn get(&self, state: &str) -> u64 {
        self.0[rank(state)]
    }

    /// All of them.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `{running, thinking, attention, idle, error}`.
    pub fn json(&self) -> Value {
        json!({
            "running": self.get("running"),
            "thinking": self.get("thinking"),
            "attention": self.get("attention"),
            "idle": self.get("idle"),
            "error": self.get("error"),
        })
    }
}

/// One workstream as the console shows it.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Workstream {
    /// Its id.
    pub id: Text,
    /// Its name.
    pub name: Text,
    /// Its state.
    pub state: &'static str,
    /// The node serving it.
    pub node: Text,
    /// That node's URL (shared with the node).
    pub server_url: Text,
    /// Its session's title.
    pub title: String,
    /// Tokens used.
    pub tokens: u64,
    /// Context used, 0–1.
    pub context_ratio: f64,
    /// What it is doing, for people.
    pub activity: String,
    /// `thinking`, `tool`, `approval` or "".
    pub activity_state: String,
    /// Tool calls made.
    pub tool_calls: u64,
    /// Its session (from polls).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Its model (from polls).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model: String,
    /// Its model alias (from polls).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub model_alias: String,
}

fn str_of(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_owned()
}

fn u64_of(v: &Value, key: &str) -> u64 {
    v.get(key)
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64)))
        .unwrap_or(0)
}

impl Workstream {
    /// A dashboard row of a node (SPEC §2 `GET /v1/api/dashboard`).
    fn from_dashboard(row: &Value, node: &Text, server_url: &Text) -> Option<Self> {
        let id = str_of(row, "id");
        if id.is_empty() {
            return None;
        }
        Some(Self {
            id: id.into(),
            name: str_of(row, "name").into(),
            state: canonical(row.get("state").and_then(Value::as_str).unwrap_or("idle")),
            node: node.clone(),
            server_url: server_url.clone(),
            title: str_of(row, "title"),
            tokens: u64_of(row, "tokens"),
            context_ratio: row
                .get("context_ratio")
                .and_then(Value::as_f64)
                .unwrap_or(0.0),
            activity: str_of(row, "activity"),
            activity_state: str_of(row, "activity_state"),
            tool_calls: u64_of(row, "tool_calls"),
            session_id: row
                .get("session_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            model: str_of(row, "model"),
            model_alias: str_of(row, "model_alias"),
        })
    }

    fn matches(&self, needle: &str) -> bool {
        contains_folded(&self.name, needle)
            || contains_folded(&self.title, needle)
            || contains_folded(&self.node, needle)
    }
}

/// Whether `hay` contains `needle` (already lower case), ignoring case.
fn contains_folded(hay: &str, needle: &str) -> bool {
    if hay.is_ascii() && needle.is_ascii() {
        let (h, n) = (hay.as_bytes(), needle.as_bytes());
        return n.is_empty() || h.windows(n.len()).any(|w| w.eq_ignore_ascii_case(n));
    }
    hay.to_lowercase().contains(needle)
}

/// One node.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Its id.
    pub node_id: String,
    /// Where its server answers (`sim://…` for simulated nodes).
    pub server_url: Text,
    /// When it started (epoch seconds, from its heartbeat).
    pub started: f64,
    /// When it last answered a poll (epoch seconds; 0 never).
    pub last_seen: f64,
    /// Workstreams it can hold.
    pub max_ws: u64,
    /// Its `/health` answer.
    pub health: Value,
    /// Its dashboard's `aggregate`.
    pub aggregate: Value,
    /// Whether its last poll succeeded (nodes not polled count as reachable).
    pub reachable: bool,
    /// Its workstreams.
    ws: BTreeSet<Text>,
    counts: StateCounts,
    ws_tokens: u64,
    ws_tool_calls: u64,
    /// Since when discovery has not seen it (epoch seconds).
    missing_since: Option<f64>,
}

impl Node {
    /// Its version, from `/health`.
    pub fn version(&self) -> &str {
        self.health
            .get("version")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    /// Tokens: the node's own total when it reports one, else its workstreams' sum.
    pub fn tokens(&self) -> u64 {
        match u64_of(&self.aggregate, "total_tokens") {
            0 => self.ws_tokens,
            n => n,
        }
    }

    /// Tool calls, likewise.
    pub fn tool_calls(&self) -> u64 {
        match u64_of(&self.aggregate, "total_tool_calls") {
            0 => self.ws_tool_calls,
            n => n,
        }
    }

    /// Running + attention: what `sort=activity` orders by.
    fn activity(&self) -> u64 {
        self.counts.get("running") + self.counts.get("attention")
    }

    /// A row of `GET /v1/api/cluster/nodes`, serialised straight from the node.
    pub fn row(&self) -> NodeRow<'_> {
        let c = &self.counts;
        NodeRow {
            node_id: &self.node_id,
            server_url: &self.server_url,
            ws_total: c.total(),
            ws_running: c.get("running"),
            ws_thinking: c.get("thinking"),
            ws_attention: c.get("attention"),
            ws_idle: c.get("idle"),
            ws_error: c.get("error"),
            total_tokens: self.tokens(),
            ws_tokens: self.tokens(),
            max_ws: self.max_ws,
            started: self.started,
            last_seen: self.last_seen,
            reachable: self.reachable,
            health: &self.health,
            version: self.version(),
        }
    }
}

/// A node as `GET /v1/api/cluster/nodes` lists it.
#[derive(Debug, Serialize)]
pub struct NodeRow<'a> {
    node_id: &'a str,
    server_url: &'a str,
    ws_total: u64,
    ws_running: u64,
    ws_thinking: u64,
    ws_attention: u64,
    ws_idle: u64,
    ws_error: u64,
    total_tokens: u64,
    ws_tokens: u64,
    max_ws: u64,
    started: f64,
    last_seen: f64,
    reachable: bool,
    health: &'a Value,
    version: &'a str,
}

/// Whether `url` is http(s).
pub fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// What a heartbeat says of a node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Heartbeat {
    /// The node.
    pub node_id: String,
    /// Its `server_url`.
    pub server_url: String,
    /// Its `started`.
    pub started: f64,
    /// Its `max_ws` (10 when absent).
    pub max_ws: u64,
}

impl Heartbeat {
    /// From a `node_list` entry (metadata plus `node_id`).
    pub fn from_entry(entry: &Value) -> Self {
        Self {
            node_id: str_of(entry, "node_id"),
            server_url: str_of(entry, "server_url"),
            started: entry.get("started").and_then(Value::as_f64).unwrap_or(0.0),
            max_ws: entry.get("max_ws").and_then(Value::as_u64).unwrap_or(10),
        }
    }
}

/// Sort orders of the node list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeSort {
    /// Running + attention, most first.
    Activity,
    /// Tokens, most first.
    Tokens,
    /// Node id.
    Name,
}

impl NodeSort {
    /// From the `sort` parameter (unknown → activity).
    pub fn parse(s: &str) -> Self {
        match s {
            "tokens" => Self::Tokens,
            "name" => Self::Name,
            _ => Self::Activity,
        }
    }
}

/// Sort orders of the workstream list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WsSort {
    /// running, thinking, attention, error, idle; then by name.
    State,
    /// Tokens, most first.
    Tokens,
    /// Name.
    Name,
}

impl WsSort {
    /// From the `sort` parameter (unknown → state).
    pub fn parse(s: &str) -> Self {
        match s {
            "tokens" => Self::Tokens,
            "name" => Self::Name,
            _ => Self::State,
        }
    }
}

/// A workstream list query.
#[derive(Clone, Debug)]
pub struct WsQuery {
    /// Only this state.
    pub state: Option<String>,
    /// Only this node.
    pub node: Option<String>,
    /// Substring of name, title or node, any case.
    pub search: Option<String>,
    /// Order.
    pub sort: WsSort,
    /// 1-based page.
    pub page: usize,
    /// Rows per page.
    pub per_page: usize,
}

type StateKey = (usize, Text, Text);
type TokensKey = (Reverse<u64>, Text);
type NameKey = (Text, Text);

/// What changed in the node set.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Membership {
    /// Nodes new to the console.
    pub joined: Vec<String>,
    /// Nodes gone.
    pub lost: Vec<String>,
}

/// What an event did to the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// It changed or confirmed what is known.
    Known,
    /// It named a node the console does not know yet (discovery should look).
    UnknownNode,
    /// Not a cluster event the model keeps.
    Ignored,
}

/// The cluster.
#[derive(Debug, Default)]
pub struct ClusterModel {
    nodes: BTreeMap<String, Node>,
    ws: HashMap<Text, Workstream>,
    counts: StateCounts,
    by_state: BTreeSet<StateKey>,
    by_tokens: BTreeSet<TokensKey>,
    by_name: BTreeSet<NameKey>,
    nodes_by_activity: BTreeSet<(Reverse<u64>, String)>,
    nodes_by_tokens: BTreeSet<(Reverse<u64>, String)>,
    versions: BTreeMap<String, usize>,
    reachable: usize,
}

fn state_key(w: &Workstream) -> StateKey {
    (rank(w.state), w.name.clone(), w.id.clone())
}

impl ClusterModel {
    /// Nodes known.
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Nodes whose last poll succeeded (or that are not polled).
    pub fn reachable_count(&self) -> usize {
        self.reachable
    }

    /// Workstreams known.
    pub fn ws_count(&self) -> usize {
        self.ws.len()
    }

    /// Workstreams per state.
    pub fn state_counts(&self) -> StateCounts {
        self.counts
    }

    /// A node.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.get(id)
    }

    /// A workstream.
    pub fn workstream(&self, id: &str) -> Option<&Workstream> {
        self.ws.get(id)
    }

    /// The nodes, by id.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.nodes.values()
    }

    /// Distinct versions the nodes report, sorted.
    pub fn versions(&self) -> Vec<String> {
        self.versions.keys().cloned().collect()
    }

    // ---------- node index upkeep ----------

    fn unindex_node(&mut self, id: &str) {
        if let Some(n) = self.nodes.get(id) {
            self.nodes_by_activity
                .remove(&(Reverse(n.activity()), id.to_owned()));
            self.nodes_by_tokens
                .remove(&(Reverse(n.tokens()), id.to_owned()));
            if n.reachable {
                self.reachable -= 1;
            }
            let v = n.version().to_owned();
            if !v.is_empty()
                && let Some(count) = self.versions.get_mut(&v)
            {
                *count -= 1;
                if *count == 0 {
                    self.versions.remove(&v);
                }
            }
        }
    }

    fn index_node(&mut self, id: &str) {
        if let Some(n) = self.nodes.get(id) {
            self.nodes_by_activity
                .insert((Reverse(n.activity()), id.to_owned()));
            self.nodes_by_tokens
                .insert((Reverse(n.tokens()), id.to_owned()));
            if n.reachable {
                self.reachable += 1;
            }
            let v = n.version();
            if !v.is_empty() {
                *self.versions.entry(v.to_owned()).or_default() += 1;
            }
        }
    }

    /// Runs `f` on node `id` with its indexes kept right.
    fn with_node<R>(&mut self, id: &str, f: impl FnOnce(&mut Node) -> R) -> Option<R> {
        if !self.nodes.contains_key(id) {
            return None;
        }
        self.unindex_node(id);
        let result = self.nodes.get_mut(id).map(f);
        self.index_node(id);
        result
    }

    // ---------- workstream upkeep ----------

    fn insert_ws(&mut self, w: Workstream) {
        self.remove_ws(&w.id.clone());
        let node = w.node.clone();
        let (state, tokens, calls) = (w.state, w.tokens, w.tool_calls);
        self.by_state.insert(state_key(&w));
        self.by_tokens.insert((Reverse(w.tokens), w.id.clone()));
        self.by_name.insert((w.name.clone(), w.id.clone()));
        self.counts.add(w.state, 1);
        let id = w.id.clone();
        self.ws.insert(id.clone(), w);
        self.with_node(&node, |n| {
            n.ws.insert(id);
            n.counts.add(state, 1);
            n.ws_tokens += tokens;
            n.ws_tool_calls += calls;
        });
    }

    fn remove_ws(&mut self, id: &str) -> Option<Workstream> {
        let w = self.ws.remove(id)?;
        self.by_state.remove(&state_key(&w));
        self.by_tokens.remove(&(Reverse(w.tokens), w.id.clone()));
        self.by_name.remove(&(w.name.clone(), w.id.clone()));
        self.counts.add(w.state, -1);
        self.with_node(&w.node, |n| {
            n.ws.remove(id);
            n.counts.add(w.state, -1);
            n.ws_tokens = n.ws_tokens.saturating_sub(w.tokens);
            n.ws_tool_calls = n.ws_tool_calls.saturating_sub(w.tool_calls);
        });
        Some(w)
    }

    /// Changes workstream `id` through `f`, keeping every index right.
    fn update_ws(&mut self, id: &str, f: impl FnOnce(&mut Workstream)) -> bool {
        let Some(mut w) = self.remove_ws(id) else {
            return false;
        };
        f(&mut w);
        self.insert_ws(w);
        true
    }

    // ---------- what the collector tells ----------

    /// Discovery saw these heartbeats at `now`: new nodes join; a node missing from
    /// discoveries for at least `grace` seconds is lost (a Redis restart empties the
    /// heartbeats until nodes renew them, which must not lose the cluster).
    pub fn discovered(&mut self, beats: &[Heartbeat], now: f64, grace: f64) -> Membership {
        let mut change = Membership::default();
        let mut seen = BTreeSet::new();
        for beat in beats.iter().filter(|b| !b.node_id.is_empty()) {
            seen.insert(beat.node_id.as_str());
            if self.nodes.contains_key(&beat.node_id) {
                self.with_node(&beat.node_id, |n| {
                    if *n.server_url != *beat.server_url {
                        n.server_url = beat.server_url.as_str().into();
                    }
                    n.max_ws = beat.max_ws;
                    n.started = beat.started;
                    n.missing_since = None;
                });
                continue;
            }
            self.nodes.insert(
                beat.node_id.clone(),
                Node {
                    node_id: beat.node_id.clone(),
                    server_url: beat.server_url.as_str().into(),
                    started: beat.started,
                    max_ws: beat.max_ws,
                    health: json!({}),
                    aggregate: json!({}),
                    reachable: true,
                    ..Node::default()
                },
            );
            self.index_node(&beat.node_id);
            change.joined.push(beat.node_id.clone());
        }
        let absent: Vec<String> = self
            .nodes
            .keys()
            .filter(|id| !seen.contains(id.as_str()))
            .cloned()
            .collect();
        for id in absent {
            let since = self
                .with_node(&id, |n| *n.missing_since.get_or_insert(now))
                .unwrap_or(now);
            if now - since >= grace {
                self.remove_node(&id);
                change.lost.push(id);
            }
        }
        change
    }

    /// Forgets a node and its workstreams.
    pub fn remove_node(&mut self, id: &str) {
        let ws: Vec<Text> = self
            .nodes
            .get(id)
            .map(|n| n.ws.iter().cloned().collect())
            .unwrap_or_default();
        for w in ws {
            self.remove_ws(&w);
        }
        self.unindex_node(id);
        self.nodes.remove(id);
    }

    /// A node answered its poll: its dashboard replaces what is known of its workstreams.
    /// Returns whether it had answered before and was reachable until now.
    pub fn polled(&mut self, id: &str, dashboard: &Value, health: Value, now: f64) -> bool {
        let Some((server_url, answering)) = self
            .nodes
            .get(id)
            .map(|n| (n.server_url.clone(), n.reachable && n.last_seen > 0.0))
        else {
            return false;
        };
        let node: Text = id.into();
        let rows: Vec<Workstream> = dashboard
            .get("workstreams")
            .and_then(Value::as_array)
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| Workstream::from_dashboard(r, &node, &server_url))
                    .collect()
            })
            .unwrap_or_default();
        let old: Vec<Text> = self
            .nodes
            .get(id)
            .map(|n| n.ws.iter().cloned().collect())
            .unwrap_or_default();
        let fresh: BTreeSet<&str> = rows.iter().map(|w| &*w.id).collect();
        for w in old.iter().filter(|w| !fresh.contains(&***w)) {
            self.remove_ws(w);
        }
        for w in rows {
            if self.ws.get(&w.id) != Some(&w) {
                self.insert_ws(w);
            }
        }
        let aggregate = dashboard
            .get("aggregate")
            .filter(|a| a.is_object())
            .cloned()
            .unwrap_or_else(|| json!({}));
        let health = if health.is_object() {
            health
        } else {
            json!({})
        };
        self.with_node(id, |n| {
            n.aggregate = aggregate;
            n.health = health;
            n.last_seen = now;
            n.reachable = true;
        });
        answering
    }

    /// A node's poll failed. Returns whether it was reachable until now.
    pub fn unreachable(&mut self, id: &str) -> bool {
        self.with_node(id, |n| std::mem::replace(&mut n.reachable, false))
            .unwrap_or(false)
    }

    /// A cluster-channel event (`cluster_state`, `ws_created`, `ws_closed`, `ws_rename`).
    pub fn apply(&mut self, event: &Map<String, Value>) -> Applied {
        let field = |k: &str| event.get(k).and_then(Value::as_str).unwrap_or("");
        let (kind, ws_id, node_id) = (field("type"), field("ws_id"), field("node_id"));
        match kind {
            "cluster_state" | "ws_created" => {
                if ws_id.is_empty() {
                    return Applied::Ignored;
                }
                if node_id.is_empty() || !self.nodes.contains_key(node_id) {
                    return if node_id.is_empty() {
                        Applied::Ignored
                    } else {
                        Applied::UnknownNode
                    };
                }
                let known = self.ws.get(ws_id).is_some_and(|w| &*w.node == node_id);
                if !known {
                    let server_url = self
                        .nodes
                        .get(node_id)
                        .map(|n| n.server_url.clone())
                        .unwrap_or_default();
                    self.insert_ws(Workstream {
                        id: ws_id.into(),
                        name: field("name").into(),
                        state: "idle",
                        node: node_id.into(),
                        server_url,
                        ..Workstream::default()
                    });
                }
                if kind == "cluster_state" {
                    self.update_ws(ws_id, |w| {
                        if let Some(s) = event.get("state").and_then(Value::as_str) {
                            w.state = canonical(s);
                        }
                        if let Some(t) = event.get("tokens").and_then(Value::as_u64) {
                            w.tokens = t;
                        }
                        if let Some(r) = event.get("context_ratio").and_then(Value::as_f64) {
                            w.context_ratio = r;
                        }
                        if let Some(a) = event.get("activity").and_then(Value::as_str) {
                            a.clone_into(&mut w.activity);
                        }
                        if let Some(a) = event.get("activity_state").and_then(Value::as_str) {
                            a.clone_into(&mut w.activity_state);
                        }
                    });
                } else if let Some(name) = event.get("name").and_then(Value::as_str)
                    && *self.ws.get(ws_id).map_or("", |w| &*w.name) != *name
                {
                    self.update_ws(ws_id, |w| w.name = name.into());
                }
                Applied::Known
            }
            "ws_closed" => {
                self.remove_ws(ws_id);
                Applied::Known
            }
            "ws_rename" => {
                let name: Text = field("name").into();
                self.update_ws(ws_id, |w| w.name = name);
                Applied::Known
            }
            _ => Applied::Ignored,
        }
    }

    // ---------- what the API asks ----------

    /// `GET /v1/api/cluster/overview`.
    pub fn overview(&self) -> Value {
        let (tokens, calls) = self.nodes.values().fold((0u64, 0u64), |(t, c), n| {
            (t + n.tokens(), c + n.tool_calls())
        });
        let versions = self.versions();
        json!({
            "nodes": self.nodes.len(),
            "workstreams": self.ws.len(),
            "states": self.counts.json(),
            "aggregate": {"total_tokens": tokens, "total_tool_calls": calls},
            "version_drift": versions.len() > 1,
            "versions": versions,
        })
    }

    /// `GET /v1/api/cluster/nodes`: a page in `sort` order, and the total.
    pub fn node_page(
        &self,
        sort: NodeSort,
        limit: usize,
        offset: usize,
    ) -> (Vec<NodeRow<'_>>, usize) {
        let ids: Box<dyn Iterator<Item = &String>> = match sort {
            NodeSort::Activity => Box::new(self.nodes_by_activity.iter().map(|(_, id)| id)),
            NodeSort::Tokens => Box::new(self.nodes_by_tokens.iter().map(|(_, id)| id)),
            NodeSort::Name => Box::new(self.nodes.keys()),
        };
        let rows = ids
            .skip(offset)
            .take(limit)
            .filter_map(|id| self.nodes.get(id))
            .map(Node::row)
            .collect();
        (rows, self.nodes.len())
    }

    /// `GET /v1/api/cluster/workstreams`: a page and the number matching.
    pub fn ws_page(&self, q: &WsQuery) -> (Vec<&Workstream>, usize) {
        let needle = q
            .search
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(str::to_lowercase);
        let start = q.page.saturating_sub(1).saturating_mul(q.per_page);
        let keep = |w: &Workstream| {
            q.state.as_deref().is_none_or(|s| w.state == s)
                && q.node.as_deref().is_none_or(|n| &*w.node == n)
                && needle.as_deref().is_none_or(|n| w.matches(n))
        };
        // One node's workstreams are few: sort them.
        if let Some(node) = q.node.as_deref() {
            let Some(n) = self.nodes.get(node) else {
                return (Vec::new(), 0);
            };
            let mut rows: Vec<&Workstream> =
                n.ws.iter()
                    .filter_map(|id| self.ws.get(id))
                    .filter(|w| keep(w))
                    .collect();
            match q.sort {
                WsSort::State => rows.sort_by_key(|w| state_key(w)),
                WsSort::Tokens => rows.sort_by_key(|w| (Reverse(w.tokens), w.id.clone())),
                WsSort::Name => rows.sort_by_key(|w| (w.name.clone(), w.id.clone())),
            }
            let total = rows.len();
            return (
                rows.into_iter().skip(start).take(q.per_page).collect(),
                total,
            );
        }
        // The total is known without a walk unless the search narrows it.
        let known_total = match (&q.state, &needle) {
            (None, None) => Some(self.ws.len()),
            (Some(s), None) => Some(if STATES.contains(&s.as_str()) {
                self.counts.get(s) as usize
            } else {
                self.ws.values().filter(|w| w.state == *s).count()
            }),
            _ => None,
        };
        let ids: Box<dyn Iterator<Item = &Text>> = match (q.sort, &q.state) {
            // A state filter on the state order is one range of the index.
            (WsSort::State, Some(s)) if STATES.contains(&s.as_str()) => {
                let r = rank(s);
                Box::new(
                    self.by_state
                        .range(
                            (r, Text::default(), Text::default())
                                ..(r + 1, Text::default(), Text::default()),
                        )
                        .map(|(_, _, id)| id),
                )
            }
            (WsSort::State, _) => Box::new(self.by_state.iter().map(|(_, _, id)| id)),
            (WsSort::Tokens, _) => Box::new(self.by_tokens.iter().map(|(_, id)| id)),
            (WsSort::Name, _) => Box::new(self.by_name.iter().map(|(_, id)| id)),
        };
        let mut rows = Vec::with_capacity(q.per_page.min(256));
        let mut matched = 0usize;
        for w in ids.filter_map(|id| self.ws.get(id)).filter(|w| keep(w)) {
            if matched >= start && rows.len() < q.per_page {
                rows.push(w);
            }
            matched += 1;
            if rows.len() == q.per_page && known_total.is_some() {
                break;
            }
        }
        (rows, known_total.unwrap_or(matched))
    }

    /// `GET /v1/api/cluster/node/{id}` without its route's checks.
    pub fn node_detail(&self, id: &str) -> Option<Value> {
        let n = self.nodes.get(id)?;
        let mut rows: Vec<&Workstream> = n.ws.iter().filter_map(|w| self.ws.get(w)).collect();
        rows.sort_by_key(|w| state_key(w));
        Some(json!({
            "node_id": n.node_id,
            "server_url": n.server_url,
            "health": n.health,
            "workstreams": rows,
            "aggregate": n.aggregate,
            "reachable": n.reachable,
            "version": n.version(),
            "max_ws": n.max_ws,
            "started": n.started,
            "last_seen": n.last_seen,
        }))
    }

    /// Reachable nodes, busiest first, at most `limit` (a schedule's `all` fan-out).
    pub fn reachable_by_activity(&self, limit: usize) -> Vec<String> {
        self.nodes_by_activity
            .iter()
            .filter_map(|(_, id)| self.nodes.get(id))
            .filter(|n| n.reachable)
            .take(limit)
            .map(|n| n.node_id.clone())
            .collect()
    }

    /// The reachable node with the most room (`max_ws − ws_total`), for `auto` placement.
    pub fn best_node(&self) -> Option<String> {
        self.nodes
            .values()
            .filter(|n| n.reachable)
            .max_by_key(|n| {
                (
                    n.max_ws as i64 - n.counts.total() as i64,
                    Reverse(n.node_id.clone()),
                )
            })
            .map(|n| n.node_id.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn beat(id: &str, url: &str) -> Heartbeat {
        Heartbeat {
            node_id: id.into(),
            server_url: url.into(),
            started: 1.0,
            max_ws: 10,
        }
    }

    fn event(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn model_with(nodes: &[&str]) -> ClusterModel {
        let mut m = ClusterModel::default();
        let beats: Vec<Heartbeat> = nodes.iter().map(|n| beat(n, "sim://x")).collect();
        m.discovered(&beats, 0.0, 15.0);
        m
    }

    fn created(m: &mut ClusterModel, ws: &str, node: &str, name: &str) {
        m.apply(&event(
            json!({"type": "ws_created", "ws_id": ws, "node_id": node, "name": name}),
        ));
    }

    fn state(m: &mut ClusterModel, ws: &str, node: &str, s: &str, tokens: u64) {
        m.apply(&event(
            json!({"type": "cluster_state", "ws_id": ws, "node_id": node,
            "state": s, "tokens": tokens, "activity": "x", "activity_state": "tool"}),
        ));
    }

    fn query(sort: WsSort) -> WsQuery {
        WsQuery {
            state: None,
            node: None,
            search: None,
            sort,
            page: 1,
            per_page: 50,
        }
    }

    #[test]
    fn events_keep_counts_and_indexes_in_step() {
        let mut m = model_with(&["a", "b"]);
        created(&mut m, "w1", "a", "alpha");
        created(&mut m, "w2", "a", "beta");
        created(&mut m, "w3", "b", "gamma");
        state(&mut m, "w2", "a", "running", 500);
        state(&mut m, "w3", "b", "attention", 100);
        assert_eq!(m.state_counts().get("idle"), 1);
        assert_eq!(m.state_counts().get("running"), 1);
        assert_eq!(m.node("a").map(|n| n.tokens()), Some(500));
        let (rows, total) = m.ws_page(&query(WsSort::State));
        let ids: Vec<&str> = rows.iter().map(|w| &*w.id).collect();
        assert_eq!((ids, total), (vec!["w2", "w3", "w1"], 3));
        let (rows, _) = m.ws_page(&query(WsSort::Tokens));
        assert_eq!(&*rows[0].id, "w2");
        // Renames move a workstream in the name order.
        m.apply(&event(
            json!({"type": "ws_rename", "ws_id": "w1", "name": "zeta"}),
        ));
        let (rows, _) = m.ws_page(&query(WsSort::Name));
        let names: Vec<&str> = rows.iter().map(|w| &*w.name).collect();
        assert_eq!(names, vec!["beta", "gamma", "zeta"]);
        m.apply(&event(json!({"type": "ws_closed", "ws_id": "w2"})));
        assert_eq!(m.state_counts().get("running"), 0);
        assert_eq!(m.node("a").map(|n| n.tokens()), Some(0));
        assert_eq!(m.ws_count(), 2);
        let (nodes, _) = m.node_page(NodeSort::Activity, 10, 0);
        assert_eq!(
            serde_json::to_value(&nodes[0]).unwrap_or_default()["node_id"],
            "b",
            "attention counts as activity"
        );
    }

    #[test]
    fn an_event_of_an_unknown_node_asks_for_discovery() {
        let mut m = model_with(&["a"]);
        let applied = m.apply(&event(
            json!({"type": "ws_created", "ws_id": "w", "node_id": "new", "name": "n"}),
        ));
        assert_eq!(applied, Applied::UnknownNode);
        assert_eq!(m.ws_count(), 0);
    }

    #[test]
    fn filters_search_and_pages_agree_with_a_full_sort() {
        let nodes: Vec<String> = (0..20).map(|i| format!("node-{i:02}")).collect();
        let refs: Vec<&str> = nodes.iter().map(String::as_str).collect();
        let mut m = model_with(&refs);
        for i in 0..200u64 {
            let node = &nodes[(i % 20) as usize];
            let ws = format!("ws{i:03}");
            created(&mut m, &ws, node, &format!("task {}", i * 7 % 200));
            state(&mut m, &ws, node, STATES[(i % 5) as usize], i * 13 % 97);
        }
        // Every page of every order, with and without filters, equals slicing a full sort.
        for sort in [WsSort::State, WsSort::Tokens, WsSort::Name] {
            for (st, search, node) in [
                (None, None, None),
                (Some("running"), None, None),
                (None, Some("TASK 1"), None),
                (Some("idle"), Some("node-0"), None),
                (None, None, Some("node-03")),
            ] {
                let mut all: Vec<&Workstream> =
                    m.ws.values()
                        .filter(|w| st.is_none_or(|s| w.state == s))
                        .filter(|w| node.is_none_or(|n| &*w.node == n))
                        .filter(|w| search.is_none_or(|s| w.matches(&s.to_lowercase())))
                        .collect();
                match sort {
                    WsSort::State => all.sort_by_key(|w| state_key(w)),
                    WsSort::Tokens => all.sort_by_key(|w| (Reverse(w.tokens), w.id.clone())),
                    WsSort::Name => all.sort_by_key(|w| (w.name.clone(), w.id.clone())),
                }
                for page in 1..=4 {
                    let q = WsQuery {
                        state: st.map(str::to_owned),
                        node: node.map(str::to_owned),
                        search: search.map(str::to_owned),
                        sort,
                        page,
                        per_page: 17,
                    };
                    let (rows, total) = m.ws_page(&q);
                    let want: Vec<&str> = all
                        .iter()
                        .skip((page - 1) * 17)
                        .take(17)
                        .map(|w| &*w.id)
                        .collect();
                    let got: Vec<&str> = rows.iter().map(|w| &*w.id).collect();
                    assert_eq!(got, want, "{sort:?} {st:?} {search:?} {node:?} p{page}");
                    assert_eq!(total, all.len());
                }
            }
        }
    }

    #[test]
    fn a_poll_replaces_the_nodes_workstreams_and_sets_its_version() {
        let mut m = ClusterModel::default();
        m.discovered(&[beat("n1", "http://127.0.0.1:1")], 0.0, 15.0);
        created(&mut m, "gone", "n1", "old");
        let dash = json!({"workstreams": [
            {"id": "a", "name": "one", "state": "running", "tokens": 10, "tool_calls": 2,
             "title": "Fix bug", "session_id": "s", "model": "m", "model_alias": "default"},
            {"id": "b", "name": "two", "state": "idle"}],
            "aggregate": {"total_tokens": 99, "total_tool_calls": 5}});
        m.polled("n1", &dash, json!({"version": "0.1.0"}), 42.0);
        assert!(m.workstream("gone").is_none());
        assert_eq!(m.ws_count(), 2);
        let n = m.node("n1").cloned().unwrap_or_default();
        assert_eq!((n.tokens(), n.tool_calls(), n.last_seen), (99, 5, 42.0));
        assert_eq!(m.versions(), vec!["0.1.0".to_owned()]);
        m.discovered(
            &[beat("n1", "http://127.0.0.1:1"), beat("n2", "http://x")],
            1.0,
            15.0,
        );
        m.polled("n2", &json!({}), json!({"version": "0.2.0"}), 2.0);
        assert_eq!(m.overview()["version_drift"], true);
        m.unreachable("n1");
        assert_eq!(m.reachable_count(), 1);
        assert_eq!(m.best_node().as_deref(), Some("n2"));
    }

    #[test]
    fn a_node_is_lost_only_after_missing_for_the_grace_period() {
        let mut m = model_with(&["a", "b"]);
        created(&mut m, "w", "b", "x");
        let change = m.discovered(&[beat("a", "sim://x")], 10.0, 15.0);
        assert!(change.lost.is_empty(), "one empty look is not a loss");
        let change = m.discovered(&[beat("a", "sim://x")], 20.0, 15.0);
        assert!(change.lost.is_empty());
        let change = m.discovered(&[beat("a", "sim://x")], 25.0, 15.0);
        assert_eq!(change.lost, vec!["b".to_owned()]);
        assert_eq!(m.ws_count(), 0, "its workstreams go with it");
        // Seen again in between resets the clock.
        let mut m = model_with(&["a"]);
        m.discovered(&[], 10.0, 15.0);
        m.discovered(&[beat("a", "sim://x")], 20.0, 15.0);
        assert!(m.discovered(&[], 30.0, 15.0).lost.is_empty());
    }

    #[test]
    fn best_node_has_the_most_room() {
        let mut m = ClusterModel::default();
        m.discovered(
            &[
                Heartbeat {
                    max_ws: 4,
                    ..beat("small", "sim://s")
                },
                beat("big", "sim://b"),
            ],
            0.0,
            15.0,
        );
        for i in 0..8 {
            created(&mut m, &format!("w{i}"), "big", "x");
        }
        assert_eq!(m.best_node().as_deref(), Some("small"));
        assert!(ClusterModel::default().best_node().is_none());
    }
}
