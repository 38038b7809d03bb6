//! `web_fetch`: GET a page and answer a question about it. Every hop (the URL and each
//! redirect) is resolved and checked against private, loopback, link-local and other
//! non-public addresses (IPv4, IPv6 and IPv4-mapped IPv6), and the connection is pinned to the
//! checked address, so a DNS answer that changes between check and connect cannot reach inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use serde_json::{Value, json};

use super::agents::AgentKit;
use crate::config::ReasoningEffort;
use crate::provider::{ChatMessage, ModelRequest, ToolSpec, collect};
use crate::tools::{Tool, ToolContext, ToolOutput};

/// Largest body read.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// Page text handed to the extraction call.
const MAX_TEXT: usize = 50_000;
/// Redirects followed.
const MAX_REDIRECTS: usize = 5;

/// Name resolution for web_fetch: the system resolver by default. Each hop is resolved once,
/// checked, and the connection pinned to that answer; whatever the name resolves to later
/// (DNS rebinding) is never consulted.
#[async_trait]
pub trait Resolve: Send + Sync + std::fmt::Debug {
    /// The addresses of `host`, with `port` filled in.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The operating system's resolver (`getaddrinfo`).
#[derive(Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolve for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// The web_fetch tool.
#[derive(Debug)]
pub struct WebFetch {
    kit: Option<AgentKit>,
    /// Exact socket addresses allowed although not public (tests only).
    allowed: Arc<Vec<SocketAddr>>,
    resolver: Arc<dyn Resolve>,
}

impl WebFetch {
    /// With a model to answer the question (else the page text is returned).
    pub fn new(kit: Option<AgentKit>) -> Self {
        Self {
            kit,
            allowed: Arc::new(Vec::new()),
            resolver: Arc::new(SystemResolver),
        }
    }

    /// Resolves names with `resolver` instead of the system's.
    pub fn resolving_with(mut self, resolver: Arc<dyn Resolve>) -> Self {
        self.resolver = resolver;
        self
    }

    /// Also allows these exact addresses (for tests against local servers).
    pub fn allowing(mut self, allowed: Vec<SocketAddr>) -> Self {
        self.allowed = Arc::new(allowed);
        self
    }
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local() // includes 169.254.169.254, cloud metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local
        || (first & 0xffc0) == 0xfe80 // link local
        || ip.to_ipv4().is_some_and(|v4| !is_public_v4(v4)))
}

impl WebFetch {
    /// Resolves and checks one hop; returns the address to pin.
    async fn check(&self, url: &reqwest::Url) -> Result<SocketAddr, String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "only http and https URLs can be fetched, not {}",
                url.scheme()
            ));
        }
        let host = url.host_str().ok_or("the URL has no host")?;
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let addrs = self
            .resolver
            .resolve(host, port)
            .await
            .map_err(|e| format!("cannot resolve {host}: {e}"))?;
        let first = *addrs
            .first()
            .ok_or_else(|| format!("{host} has no address"))?;
        for addr in &addrs {
            if !is_public(addr.ip()) && !self.allowed.contains(addr) {
                return Err(format!(
                    "refusing to fetch {url}: {host} resolves to {} , which is not a public address",
                    addr.ip()
                ));
            }
        }
        Ok(first)
    }

    async fn fetch(&self, start: &str, timeout: Duration) -> Result<(String, String), String> {
        let mut url =
            reqwest::Url::parse(start).map_err(|e| format!("invalid URL {start:?}: {e}"))?;
        for _ in 0..=MAX_REDIRECTS {
            let addr = self.check(&url).await?;
            let host = url
                .host_str()
                .unwrap_or_default()
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            crate::provider::install_crypto_provider();
            let client = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .resolve(&host, addr)
                .timeout(timeout)
                .user_agent("turnstone/1.0")
                .build()
                .map_err(|e| e.to_string())?;
            let response = client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| format!("fetching {url}: {e}"))?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or("redirect without a Location")?;
                url = url
                    .join(location)
                    .map_err(|e| format!("bad redirect {location:?}: {e}"))?;
                continue;
            }
            if !response.status().is_success() {
                return Err(format!(
                    "{url} answered HTTP {}",
                    response.status().as_u16()
                ));
            }
            let content_type = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned();
            let mut body = Vec::new();
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| format!("reading {url}: {e}"))?;
                let room = MAX_BODY.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if body.len() >= MAX_BODY {
                    break;
                }
            }
            let text = String::from_utf8_lossy(&body).into_owned();
            let text = if content_type.contains("html") || text.trim_start().starts_with('<') {
                html_to_text(&text)
            } else {
                text
            };
            return Ok((url.to_string(), text));
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// Drops tags (and script/style contents), unescapes entities, collapses spaces, and keeps at
/// most one blank line in a row.
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let lower = html.to_ascii_lowercase();
    let mut i = 0;
    while i < html.len() {
        if html.as_bytes()[i] == b'<' {
            let skip_block = ["script", "style"]
                .iter()
                .find(|t| lower[i + 1..].starts_with(*t));
            let end = match skip_block {
                Some(tag) => lower[i..].find(&format!("</{tag}")).map(|e| i + e),
                None => None,
            };
            let close = lower[end.unwrap_or(i)..]
                .find('>')
                .map(|c| end.unwrap_or(i) + c + 1);
            match close {
                Some(c) => {
                    let tag = &lower[i..c];
                    if tag.starts_with("<br")
                        || tag.starts_with("<p")
                        || tag.starts_with("</p")
                        || tag.starts_with("<div")
                        || tag.starts_with("</div")
                        || tag.starts_with("<li")
                        || tag.starts_with("<h")
                        || tag.starts_with("</h")
                        || tag.starts_with("<tr")
                    {
                        out.push('\n');
                    }
                    i = c;
                }
                None => break,
            }
        } else {
            let next = html[i..].find('<').map_or(html.len(), |n| i + n);
            out.push_str(&html_escape::decode_html_entities(&html[i..next]));
            i = next;
        }
    }
    let mut text = String::new();
    let mut blank = 0;
    for line in out.lines() {
        let line = line.split_whitespace().collect::<Vec<_>>().join(" ");
        if line.is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
        } else {
            blank = 0;
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.trim().to_owned()
}

#[async_trait]
impl Tool for WebFetch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "web_fetch".into(),
            description: "Fetch a web page (http or https) and answer a question about it.".into(),
            parameters: json!({"type": "object", "properties": {
                "url": {"type": "string"}, "question": {"type": "string"}}, "required": ["url", "question"]}),
        }
    }
    fn needs_approval(&self) -> bool {
        true
    }
    fn primary_key(&self) -> Option<&'static str> {
        Some("url")
    }
    fn validate(&self, args: &Value) -> Result<(), String> {
        let url = args["url"]
            .as_str()
            .ok_or("missing required argument 'url'")?;
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!(
                "only http and https URLs can be fetched, not {}",
                parsed.scheme()
            ));
        }
        args["question"]
            .as_str()
            .map(|_| ())
            .ok_or_else(|| "missing required argument 'question'".into())
    }
    async fn run(&self, args: Value, _: ToolContext) -> Result<ToolOutput, String> {
        self.validate(&args)?;
        let (url, text) = self
            .fetch(
                args["url"].as_str().unwrap_or_default(),
                Duration::from_secs(30),
            )
            .await?;
        let text = crate::tools::truncate_output(&text, MAX_TEXT);
        let question = args["question"].as_str().unwrap_or_default();
        let Some(kit) = &self.kit else {
            return Ok(ToolOutput::text(format!("Content of {url}:\n{text}")));
        };
        let request = ModelRequest {
            model: String::new(),
            messages: Arc::new(vec![
                ChatMessage::system(
                    "Answer the question from the page content only. Quote what matters; say so if the page does not answer it.",
                ),
                ChatMessage::user(format!("Page: {url}\n\n{text}\n\nQuestion: {question}")),
            ]),
            tools: Arc::default(),
            temperature: Some(0.2),
            max_tokens: 2000,
            reasoning_effort: Some(ReasoningEffort::Low),
        };
        let opened = kit
            .router
            .open(kit.router.agent_alias(), &request, &mut |_| {})
            .await
            .map_err(|e| format!("extraction failed: {e}"))?;
        let done = collect(opened.stream, &mut |_| {})
            .await
            .map_err(|(e, _)| format!("extraction failed: {e}"))?;
        Ok(ToolOutput::text(format!(
            "{url}\n{}",
            done.content.unwrap_or_default()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass() {
        for blocked in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(
                !is_public(blocked.parse().unwrap()),
                "{blocked} must be refused"
            );
        }
        for open in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(open.parse().unwrap()), "{open} is public");
        }
    }

    #[test]
    fn html_becomes_readable_text() {
        let html = "<html><head><style>p{color:red}</style><script>alert(1)</script></head>\
                    <body><h1>Title &amp; more</h1><p>First   para.</p><p>Second<br>line</p>\n\n\n\n<div>end</div></body></html>";
        assert_eq!(
            html_to_text(html),
            "Title & more\n\nFirst para.\n\nSecond\nline\n\nend"
        );
    }
}
