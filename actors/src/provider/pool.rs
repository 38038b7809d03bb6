//! The provider supervisor: one `ProviderActor` per model alias, built from the configuration.

use std::time::Duration;

use futures::StreamExt;
use ractor::ActorCell;
use turnstone_runtime::policy::Backoff;
use turnstone_runtime::supervise::{
    ChildSpec, Observer, Restart, SupervisorHandle, SupervisorSpec,
};

use super::actor::{Detection, ProviderActor, ProviderSettings};
use super::router::{Lane, LaneModel, ModelRouter, RetryPolicy};
use super::{
    Accumulator, AnthropicBackend, Backend, Completion, DeltaStream, OpenAiBackend, ProviderError,
    StreamEvent,
};
use crate::config::{ProviderKind, TurnstoneConfig};

/// Knobs that are not configuration keys (tests shorten them).
#[derive(Clone, Copy, Debug)]
pub struct PoolOptions {
    /// Wait for response headers.
    pub open_timeout: Duration,
    /// Retries per lane.
    pub retry: RetryPolicy,
    /// Run periodic health probes.
    pub probes: bool,
    /// Without `--model`, a backend that lists no model at start: `None` fails the start
    /// (the REPL tells its user at once); `Some` starts anyway and keeps asking with this
    /// backoff (a server that came up before its model server).
    pub detect: Option<Backoff>,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            probes: true,
            detect: None,
        }
    }
}

/// Starting the providers failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No `--model` and the backend did not list one.
    #[error("could not detect a model at {base_url}: {reason}; pass --model")]
    Detect {
        /// The backend.
        base_url: String,
        /// Why.
        reason: String,
    },
    /// A client could not be built.
    #[error(transparent)]
    Provider(#[from] ProviderError),
    /// The supervisor failed to start.
    #[error("provider supervisor failed to start: {0}")]
    Supervisor(String),
}

/// Chooses a model from a backend's list as Turnstone does: the highest `gpt-N(.N)(-date)`,
/// else the first listed.
pub fn choose_model(models: &[String]) -> Option<String> {
    let version = |id: &str| -> Option<(u32, u32, u64)> {
        let rest = id.strip_prefix("gpt-")?;
        let (ver, date) = match rest.split_once('-') {
            Some((v, d)) if d.chars().all(|c| c.is_ascii_digit()) => (v, d.parse().ok()?),
            Some(_) => return None,
            None => (rest, 0),
        };
        let (major, minor) = match ver.split_once('.') {
            Some((a, b)) => (a.parse().ok()?, b.parse().ok()?),
            None => (ver.parse().ok()?, 0),
        };
        Some((major, minor, date))
    };
    models
        .iter()
        .filter_map(|m| version(m).map(|v| (v, m)))
        .max_by_key(|(v, _)| *v)
        .map(|(_, m)| m.clone())
        .or_else(|| models.first().cloned())
}

/// Default base URL of Anthropic lanes that name none.
pub const ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";

fn backend(
    kind: ProviderKind,
    base_url: Option<&str>,
    config: &TurnstoneConfig,
    key: Option<&str>,
    options: &PoolOptions,
) -> Result<Backend, ProviderError> {
    Ok(match kind {
        ProviderKind::Openai => Backend::OpenAi(OpenAiBackend::new(
            base_url.unwrap_or(&config.api.base_url),
            key.or(config.api.api_key.as_deref()),
            options.open_timeout,
        )?),
        ProviderKind::Anthropic => Backend::Anthropic(AnthropicBackend::new(
            base_url.unwrap_or(ANTHROPIC_BASE_URL),
            key.or(config.api.anthropic_api_key.as_deref()),
            options.open_timeout,
        )?),
    })
}

/// Chooses an Anthropic model: the highest `opus`, else `sonnet`, else the first listed.
pub fn choose_anthropic_model(models: &[String]) -> Option<String> {
    let best = |family: &str| models.iter().filter(|m| m.contains(family)).max().cloned();
    best("opus")
        .or_else(|| best("sonnet"))
        .or_else(|| models.first().cloned())
}

/// Starts one provider actor per lane under a `providers` supervisor and returns the router.
pub async fn start_providers(
    config: &TurnstoneConfig,
    options: PoolOptions,
    observer: Observer,
    parent: Option<ActorCell>,
) -> Result<(SupervisorHandle, ModelRouter), PoolError> {
    start_providers_with(config, options, observer, parent, None).await
}

/// [`start_providers`], with `default_backend` (if given) serving the default lane instead of
/// the backend the configuration names — how the simulator plugs in its model.
pub async fn start_providers_with(
    config: &TurnstoneConfig,
    options: PoolOptions,
    observer: Observer,
    parent: Option<ActorCell>,
    default_backend: Option<Backend>,
) -> Result<(SupervisorHandle, ModelRouter), PoolError> {
    let settings = |alias: &str, backend: Backend| ProviderSettings {
        alias: alias.to_owned(),
        backend,
        breaker_threshold: config.health.circuit_breaker_threshold,
        breaker_cooldown: Duration::from_secs_f64(config.health.circuit_breaker_cooldown.max(0.0)),
        probe_interval: options
            .probes
            .then(|| Duration::from_secs_f64(config.health.backend_probe_interval.max(0.01))),
        probe_timeout: Duration::from_secs_f64(config.health.backend_probe_timeout.max(0.01)),
        observer: observer.clone(),
        detection: None,
    };

    // The command-line lane: an Anthropic provider replaces the local default URL.
    let default_url = match config.api.provider {
        ProviderKind::Anthropic
            if config.api.base_url == crate::config::ApiConfig::default().base_url =>
        {
            None
        }
        ProviderKind::Anthropic | ProviderKind::Openai => Some(config.api.base_url.as_str()),
    };
    let default_backend = match default_backend {
        Some(plugged) => plugged,
        None => backend(config.api.provider, default_url, config, None, &options)?,
    };
    let choose: fn(&[String]) -> Option<String> = match config.api.provider {
        ProviderKind::Openai => choose_model,
        ProviderKind::Anthropic => choose_anthropic_model,
    };
    let base_url = default_url.unwrap_or(ANTHROPIC_BASE_URL).to_owned();
    let mut detection = None;
    let default_model = match &config.model.name {
        Some(name) => LaneModel::new(name.clone()),
        None => {
            let detected = default_backend
                .list_models(Duration::from_secs(10))
                .await
                .map_err(|e| e.to_string())
                .and_then(|listed| choose(&listed).ok_or_else(|| "it lists no models".into()));
            match (detected, options.detect) {
                (Ok(model), _) => LaneModel::new(model),
                (Err(reason), None) => return Err(PoolError::Detect { base_url, reason }),
                (Err(reason), Some(backoff)) => {
                    tracing::warn!(
                        "could not detect a model at {base_url} ({reason}); starting without \
                         one and trying again in the background"
                    );
                    let model = LaneModel::default();
                    detection = Some(Detection {
                        model: model.clone(),
                        choose,
                        backoff,
                        base_url,
                        reason,
                    });
                    model
                }
            }
        }
    };

    let mut specs = vec![(
        "default".to_owned(),
        default_model,
        config.model.context_window,
        default_backend,
        detection,
    )];
    for (alias, m) in &config.models {
        let lane_backend = backend(
            m.provider,
            m.base_url.as_deref(),
            config,
            m.api_key.as_deref(),
            &options,
        )?;
        specs.push((
            alias.clone(),
            LaneModel::new(m.model.clone()),
            m.context_window.unwrap_or(config.model.context_window),
            lane_backend,
            None,
        ));
    }

    let mut supervisor = SupervisorSpec::new("providers");
    let mut lanes = Vec::new();
    for (alias, model, context_window, lane_backend, detection) in specs {
        let lane_settings = ProviderSettings {
            detection,
            ..settings(&alias, lane_backend)
        };
        let (child, provider) = ChildSpec::actor(alias.clone(), Restart::Permanent, move || {
            (ProviderActor::new(lane_settings.clone()), ())
        });
        supervisor = supervisor.child(child);
        lanes.push(Lane {
            alias,
            model,
            context_window,
            provider,
        });
    }
    let started = match parent {
        Some(parent) => SupervisorHandle::start_linked(supervisor, observer, parent).await,
        None => SupervisorHandle::start(supervisor, observer).await,
    };
    let (handle, _) = started.map_err(|e| PoolError::Supervisor(e.to_string()))?;
    let router = ModelRouter::new(
        lanes,
        config.model.default.as_deref(),
        &config.model.fallback,
        config.model.agent_model.as_deref(),
        options.retry,
    );
    Ok((handle, router))
}

/// Reads a stream to its end, handing each event to `on_event`. A stream that breaks returns
/// the error together with what had arrived.
pub async fn collect(
    mut stream: DeltaStream,
    on_event: &mut (dyn FnMut(StreamEvent) + Send),
) -> Result<Completion, (ProviderError, Completion)> {
    let mut acc = Accumulator::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(delta) => acc.push(delta).into_iter().for_each(&mut *on_event),
            Err(e) => {
                let (events, partial) = acc.finish();
                events.into_iter().for_each(&mut *on_event);
                return Err((e, partial));
            }
        }
    }
    let (events, done) = acc.finish();
    events.into_iter().for_each(&mut *on_event);
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::choose_model;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prefers_the_highest_gpt_version_else_the_first() {
        assert_eq!(
            choose_model(&ids(&[
                "text-embedding",
                "gpt-4",
                "gpt-4.1",
                "gpt-5-2025",
                "gpt-4o"
            ])),
            Some("gpt-5-2025".into())
        );
        assert_eq!(choose_model(&ids(&["qwen", "llama"])), Some("qwen".into()));
        assert_eq!(choose_model(&[]), None);
    }
}
