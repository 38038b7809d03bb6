//! Model lanes by alias, with retries and fallback wrapped around the request itself.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ractor::rpc::CallResult;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::ChildRef;

use super::actor::{ProviderMsg, ProviderStatus};
use super::{DeltaStream, ModelRequest, ProviderError};

/// Retries of one lane.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub retries: u32,
    /// Delay before each retry.
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    /// Turnstone's: 3 retries after 1, 2 and 4 seconds.
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: Backoff::exponential(
                std::time::Duration::from_secs(1),
                std::time::Duration::from_secs(4),
            ),
        }
    }
}

/// A lane's model name at the backend, shared by the lane and its provider actor: empty
/// until the backend lists one when the node started without `--model` before its model
/// server was ready (the provider actor keeps detecting and sets it).
#[derive(Clone, Debug, Default)]
pub struct LaneModel(Arc<RwLock<String>>);

impl LaneModel {
    /// A known model name (or empty: not known yet).
    pub fn new(name: impl Into<String>) -> Self {
        Self(Arc::new(RwLock::new(name.into())))
    }

    /// The name; empty while not known.
    pub fn get(&self) -> String {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Whether a name is known.
    pub fn is_known(&self) -> bool {
        !self.0.read().unwrap_or_else(|p| p.into_inner()).is_empty()
    }

    /// Sets the name.
    pub fn set(&self, name: &str) {
        name.clone_into(&mut self.0.write().unwrap_or_else(|p| p.into_inner()));
    }
}

impl std::fmt::Display for LaneModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.get())
    }
}

/// One model alias and the actor that serves it.
#[derive(Clone, Debug)]
pub struct Lane {
    /// The alias (`default` for the command-line model).
    pub alias: String,
    /// Model name at the backend (empty while it is being detected).
    pub model: LaneModel,
    /// Context window in tokens.
    pub context_window: u32,
    /// The provider actor.
    pub provider: ChildRef<ProviderMsg>,
}

/// A request that got a stream, and from which alias.
pub struct Opened {
    /// The alias that answered (differs from the asked one after a fallback).
    pub alias: String,
    /// The stream.
    pub stream: DeltaStream,
}

/// Routes requests to lanes: retries transient failures, then tries the fallback aliases.
#[derive(Clone, Debug)]
pub struct ModelRouter {
    lanes: Arc<BTreeMap<String, Lane>>,
    default_alias: String,
    fallback: Vec<String>,
    agent_model: Option<String>,
    retry: RetryPolicy,
}

impl ModelRouter {
    /// A router over `lanes`. Unknown default falls back to `default`; unknown fallback and
    /// agent aliases are dropped, as Turnstone does.
    pub fn new(
        lanes: Vec<Lane>,
        default_alias: Option<&str>,
        fallback: &[String],
        agent_model: Option<&str>,
        retry: RetryPolicy,
    ) -> Self {
        let lanes: BTreeMap<String, Lane> =
            lanes.into_iter().map(|l| (l.alias.clone(), l)).collect();
        let known = |a: &&str| lanes.contains_key(*a);
        let default_alias = default_alias.filter(known).unwrap_or("default").to_owned();
        let fallback = fallback
            .iter()
            .map(String::as_str)
            .filter(known)
            .map(str::to_owned)
            .collect();
        let agent_model = agent_model.filter(known).map(str::to_owned);
        Self {
            lanes: Arc::new(lanes),
            default_alias,
            fallback,
            agent_model,
            retry,
        }
    }

    /// The alias used when a workstream names none.
    pub fn default_alias(&self) -> &str {
        &self.default_alias
    }

    /// The alias sub-agents use.
    pub fn agent_alias(&self) -> &str {
        self.agent_model.as_deref().unwrap_or(&self.default_alias)
    }

    /// The fallback chain.
    pub fn fallback(&self) -> &[String] {
        &self.fallback
    }

    /// A lane by alias.
    pub fn lane(&self, alias: &str) -> Option<&Lane> {
        self.lanes.get(alias)
    }

    /// All lanes, by alias.
    pub fn lanes(&self) -> impl Iterator<Item = &Lane> {
        self.lanes.values()
    }

    /// Health of every lane.
    pub async fn status(&self) -> Vec<ProviderStatus> {
        let mut out = Vec::new();
        for lane in self.lanes.values() {
            if let Some(s) = Self::lane_status(lane).await {
                out.push(s);
            }
        }
        out
    }

    /// Health of one lane, if its actor answers.
    pub async fn status_of(&self, alias: &str) -> Option<ProviderStatus> {
        Self::lane_status(self.lane(alias)?).await
    }

    async fn lane_status(lane: &Lane) -> Option<ProviderStatus> {
        match lane.provider.get()?.call(ProviderMsg::Status, None).await {
            Ok(CallResult::Success(s)) => Some(s),
            _ => None,
        }
    }

    /// Opens a stream on `alias`: retries transient failures with backoff, then tries each
    /// fallback alias once. `notice` receives the user-visible notices
    /// ("[Retrying in 1s: RateLimitError]", "[Primary model failed, falling back to X]").
    pub async fn open(
        &self,
        alias: &str,
        request: &ModelRequest,
        notice: &mut (dyn FnMut(String) + Send),
    ) -> Result<Opened, ProviderError> {
        let primary = self
            .lane(alias)
            .ok_or_else(|| ProviderError::UnknownAlias(alias.to_owned()))?;
        let mut last = match self
            .try_lane(primary, request, self.retry.retries, notice)
            .await
        {
            Ok(stream) => {
                return Ok(Opened {
                    alias: alias.to_owned(),
                    stream,
                });
            }
            Err(e) => e,
        };
        for fallback in self.fallback.iter().filter(|f| *f != alias) {
            let Some(lane) = self.lane(fallback) else {
                continue;
            };
            // An event on the model call's span, too.
            tracing::warn!(from = alias, to = %fallback, error = %last, "model fallback");
            notice(format!(
                "[Primary model failed, falling back to {fallback}]"
            ));
            match self.try_lane(lane, request, 0, notice).await {
                Ok(stream) => {
                    return Ok(Opened {
                        alias: fallback.clone(),
                        stream,
                    });
                }
                Err(e) => {
                    notice(format!("[Fallback {fallback} also failed: {e}]"));
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn try_lane(
        &self,
        lane: &Lane,
        request: &ModelRequest,
        retries: u32,
        notice: &mut (dyn FnMut(String) + Send),
    ) -> Result<DeltaStream, ProviderError> {
        let mut request = request.clone();
        request.model = lane.model.get();
        if request.model.is_empty() {
            return Err(ProviderError::NoModel(lane.alias.clone()));
        }
        let mut attempt = 0;
        loop {
            let result = match lane.provider.get() {
                Some(actor) => match actor
                    .call(
                        |reply| ProviderMsg::Open(request.clone(), tracing::Span::current(), reply),
                        None,
                    )
                    .await
                {
                    Ok(CallResult::Success(result)) => result,
                    Ok(CallResult::Timeout | CallResult::SenderError) | Err(_) => {
                        Err(ProviderError::Unavailable(lane.alias.clone()))
                    }
                },
                None => Err(ProviderError::Unavailable(lane.alias.clone())),
            };
            match result {
                Ok(stream) => return Ok(stream),
                Err(e) if e.is_retryable() && attempt < retries => {
                    let delay = self.retry.backoff.delay(attempt);
                    tracing::info!(
                        alias = %lane.alias,
                        attempt = attempt + 1,
                        delay_s = delay.as_secs_f64(),
                        error = e.kind_name(),
                        "model request retried"
                    );
                    notice(format!(
                        "[Retrying in {}s: {}]",
                        delay.as_secs_f64(),
                        e.kind_name()
                    ));
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}
