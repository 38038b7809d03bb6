//! `web_search`: Tavily's search API (`POST {tavily_url}/search`). Providers that search
//! natively (Anthropic, OpenAI's search models) replace this tool with their own; see the
//! provider module.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::provider::{ToolSpec, WEB_SEARCH};
use crate::text::prefix;
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Topics Tavily knows.
const TOPICS: [&str; 3] = ["general", "news", "finance"];
/// Snippet length shown per result.
const SNIPPET: usize = 500;

/// The web_search tool.
#[derive(Debug)]
pub struct WebSearch {
    key: Option<String>,
    endpoint: String,
}

impl WebSearch {
    /// Searching with `key` at `root` (`https://api.tavily.com`).
    pub fn new(key: Option<String>, root: &str) -> Self {
        Self {
            key: key.filter(|k| !k.trim().is_empty()),
            endpoint: format!("{}/search", root.trim_end_matches('/')),
        }
    }
}

fn max_results(args: &Value) -> Result<u64, String> {
    match &args["max_results"] {
        Value::Null => Ok(5),
        v => v
            .as_u64()
            .filter(|n| (1..=20).contains(n))
            .ok_or_else(|| format!("max_results must be a whole number from 1 to 20, not {v}")),
    }
}

fn topic(args: &Value) -> Result<&str, String> {
    match &args["topic"] {
        Value::Null => Ok("general"),
        v => v
            .as_str()
            .filter(|t| TOPICS.contains(t))
            .ok_or_else(|| format!("topic must be one of {}, not {v}", TOPICS.join(", "))),
    }
}

/// Tavily's answer as the text the model reads.
pub fn format_results(body: &Value) -> String {
    let mut out = String::new();
    if let Some(answer) = body["answer"].as_str().filter(|a| !a.trim().is_empty()) {
        out.push_str(&format!("Answer: {}\n\n", answer.trim()));
    }
    let results = body["results"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    for (i, r) in results.iter().enumerate() {
        let title = r["title"].as_str().unwrap_or("(untitled)");
        let url = r["url"].as_str().unwrap_or("");
        let snippet = r["content"].as_str().unwrap_or("").trim();
        out.push_str(&format!(
            "{}. [{title}]({url})\n   {}\n",
            i + 1,
            prefix(snippet, SNIPPET)
        ));
    }
    if out.is_empty() {
        "No results found.".into()
    } else {
        out.trim_end().to_owned()
    }
}

#[async_trait]
impl Tool for WebSearch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: WEB_SEARCH.into(),
            description: "Search the web; returns a short answer and the top results with links."
                .into(),
            parameters: json!({"type": "object", "properties": {
                "query": {"type": "string"},
                "max_results": {"type": "integer", "minimum": 1, "maximum": 20, "default": 5},
                "topic": {"type": "string", "enum": TOPICS, "default": "general"}},
                "required": ["query"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("query")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        args["query"]
            .as_str()
            .filter(|q| !q.trim().is_empty())
            .ok_or("missing required argument 'query'")?;
        max_results(args)?;
        topic(args).map(|_| ())
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        self.validate(&args)?;
        let key = self.key.as_deref().ok_or(
            "web_search needs a Tavily API key: set api.tavily_key in \
             ~/.config/turnstone/config.toml or $TAVILY_API_KEY",
        )?;
        crate::provider::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| e.to_string())?;
        let response = client
            .post(&self.endpoint)
            .bearer_auth(key)
            .json(&json!({
                "query": args["query"],
                "max_results": max_results(&args)?,
                "topic": topic(&args)?,
                "include_answer": true,
            }))
            .send()
            .await
            .map_err(|e| format!("web search failed: {e}"))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|e| {
            format!("web search returned an unreadable answer (HTTP {status}): {e}")
        })?;
        if !status.is_success() {
            let detail = body["detail"]["error"]
                .as_str()
                .or_else(|| body["detail"].as_str())
                .or_else(|| body["error"].as_str())
                .unwrap_or("no detail");
            return Err(format!(
                "web search failed: HTTP {}: {detail}",
                status.as_u16()
            ));
        }
        Ok(ToolOutput::text(format_results(&body)))
    }
}
