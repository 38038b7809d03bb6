//! `/cluster [status|nodes|ws [state|key=value …]|node <id>]`: the cluster as the console sees
//! it, asked of the console at `[console] url` (`--console-url`) with `--auth-token`.

use std::time::Duration;

use serde_json::Value;

/// The console, as the REPL reaches it.
#[derive(Clone, Debug)]
pub struct ConsoleClient {
    base: String,
    token: Option<String>,
    http: reqwest::Client,
}

/// The states in the console's order.
const STATES: [&str; 5] = ["running", "thinking", "attention", "error", "idle"];

/// Usage of the command.
pub const USAGE: &str =
    "usage: /cluster [status|nodes|ws [state|state=… node=… search=… sort=… page=…]|node <id>]";

fn short(n: &Value) -> String {
    let n = n.as_f64().unwrap_or(0.0);
    if n >= 1e6 {
        format!("{:.1}M", n / 1e6)
    } else if n >= 1e4 {
        format!("{:.1}k", n / 1e3)
    } else {
        format!("{n}")
    }
}

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

impl ConsoleClient {
    /// A client of the console at `base`.
    pub fn new(base: &str, token: Option<String>) -> Self {
        turnstone_actors::provider::install_crypto_provider();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            token: token.filter(|t| !t.is_empty()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        }
    }

    async fn get(&self, path: &str, query: &[(String, String)]) -> Result<Value, String> {
        let mut request = self.http.get(format!("{}{path}", self.base)).query(query);
        if let Some(t) = &self.token {
            request = request.bearer_auth(t);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("cannot reach the console at {}: {e}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(body)
        } else {
            let why = body["error"].as_str().unwrap_or(status.as_str()).to_owned();
            Err(format!("the console answered {}: {why}", status.as_u16()))
        }
    }

    /// Runs `/cluster <args>`; the lines to show.
    pub async fn run(&self, args: &str) -> Result<Vec<String>, String> {
        let mut words = args.split_whitespace();
        match words.next() {
            None | Some("status") => self.status().await,
            Some("nodes") => self.nodes().await,
            Some("ws") => self.workstreams(words.collect()).await,
            Some("node") => match words.next() {
                Some(id) => self.node(id).await,
                None => Err(USAGE.to_owned()),
            },
            Some(_) => Err(USAGE.to_owned()),
        }
    }

    async fn status(&self) -> Result<Vec<String>, String> {
        let o = self.get("/v1/api/cluster/overview", &[]).await?;
        let states: Vec<String> = STATES
            .iter()
            .map(|st| format!("{} {st}", o["states"][*st].as_u64().unwrap_or(0)))
            .collect();
        let mut lines = vec![
            format!(
                "{} nodes · {} workstreams · {}",
                o["nodes"],
                o["workstreams"],
                states.join(", ")
            ),
            format!(
                "{} tokens · {} tool calls",
                short(&o["aggregate"]["total_tokens"]),
                short(&o["aggregate"]["total_tool_calls"])
            ),
        ];
        if o["version_drift"] == true {
            let versions: Vec<&str> = o["versions"]
                .as_array()
                .map(|v| v.iter().map(s).collect())
                .unwrap_or_default();
            lines.push(format!("version drift: {}", versions.join(" / ")));
        }
        Ok(lines)
    }

    async fn nodes(&self) -> Result<Vec<String>, String> {
        let page = self
            .get(
                "/v1/api/cluster/nodes",
                &[
                    ("sort".into(), "name".into()),
                    ("limit".into(), "1000".into()),
                ],
            )
            .await?;
        let mut lines = vec![format!(
            "{:<28} {:>7} {:>4} {:>4} {:>8} {:<10} state",
            "node", "ws", "run", "attn", "tokens", "version"
        )];
        for n in page["nodes"].as_array().into_iter().flatten() {
            let state = if n["reachable"] == false {
                "unreachable"
            } else if n["health"]["status"] == "degraded" {
                "degraded"
            } else {
                "ok"
            };
            lines.push(format!(
                "{:<28} {:>7} {:>4} {:>4} {:>8} {:<10} {state}",
                s(&n["node_id"]),
                format!("{}/{}", n["ws_total"], n["max_ws"]),
                n["ws_running"],
                n["ws_attention"],
                short(&n["total_tokens"]),
                s(&n["version"]),
            ));
        }
        lines.push(format!("{} nodes", page["total"]));
        Ok(lines)
    }

    async fn workstreams(&self, words: Vec<&str>) -> Result<Vec<String>, String> {
        let mut query: Vec<(String, String)> = Vec::new();
        for w in words {
            match w.split_once('=') {
                Some((k, v))
                    if ["state", "node", "search", "sort", "page", "per_page"].contains(&k) =>
                {
                    query.push((k.to_owned(), v.to_owned()));
                }
                Some((k, _)) => return Err(format!("unknown filter {k}; {USAGE}")),
                None if STATES.contains(&w) => query.push(("state".into(), w.to_owned())),
                None => query.push(("search".into(), w.to_owned())),
            }
        }
        let page = self.get("/v1/api/cluster/workstreams", &query).await?;
        let mut lines = vec![format!(
            "{:<10} {:<24} {:<24} {:>8}  activity",
            "state", "name", "node", "tokens"
        )];
        for w in page["workstreams"].as_array().into_iter().flatten() {
            lines.push(format!(
                "{:<10} {:<24} {:<24} {:>8}  {}",
                s(&w["state"]),
                s(&w["name"]),
                s(&w["node"]),
                short(&w["tokens"]),
                s(&w["activity"])
            ));
        }
        lines.push(format!(
            "page {} of {} · {} workstreams",
            page["page"],
            page["pages"].as_u64().unwrap_or(0).max(1),
            page["total"]
        ));
        Ok(lines)
    }

    async fn node(&self, id: &str) -> Result<Vec<String>, String> {
        let encoded: String = url::form_urlencoded::byte_serialize(id.as_bytes()).collect();
        let n = self
            .get(&format!("/v1/api/cluster/node/{encoded}"), &[])
            .await?;
        let mut lines = vec![
            format!("{} — {}", s(&n["node_id"]), s(&n["server_url"])),
            format!(
                "reachable: {} · health: {} · version: {} · model: {}",
                n["reachable"],
                n["health"]["status"].as_str().unwrap_or("—"),
                n["version"]
                    .as_str()
                    .filter(|v| !v.is_empty())
                    .unwrap_or("—"),
                n["health"]["model"].as_str().unwrap_or("—"),
            ),
        ];
        for w in n["workstreams"].as_array().into_iter().flatten() {
            lines.push(format!(
                "  {:<10} {:<24} {:>8}  {}",
                s(&w["state"]),
                s(&w["name"]),
                short(&w["tokens"]),
                s(&w["activity"])
            ));
        }
        Ok(lines)
    }
}
