//! The provider supervisor: one `ProviderActor` per model alias, built from the configuration.

use std::time::Duration;

use futures::StreamExt;
use ractor::ActorCell;
use turnstone_runtime::supervise::{
    ChildSpec, Observer, Restart, SupervisorHandle, SupervisorSpec,
};

use super::actor::{ProviderActor, ProviderSettings};
use super::router::{Lane, ModelRouter, RetryPolicy};
use super::{Accumulator, Completion, DeltaStream, OpenAiBackend, ProviderError, StreamEvent};
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
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            open_timeout: Duration::from_secs(300),
            retry: RetryPolicy::default(),
            probes: true,
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
    /// An alias asks for a protocol this build does not speak yet.
    #[error("model alias {alias:?}: provider {provider:?} is not supported yet")]
    Unsupported {
        /// The alias.
        alias: String,
        /// The protocol.
        provider: &'static str,
    },
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

/// Starts one provider actor per lane under a `providers` supervisor and returns the router.
pub async fn start_providers(
    config: &TurnstoneConfig,
    options: PoolOptions,
    observer: Observer,
    parent: Option<ActorCell>,
) -> Result<(SupervisorHandle, ModelRouter), PoolError> {
    let settings = |alias: &str, backend: OpenAiBackend| ProviderSettings {
        alias: alias.to_owned(),
        backend,
        breaker_threshold: config.health.circuit_breaker_threshold,
        breaker_cooldown: Duration::from_secs_f64(config.health.circuit_breaker_cooldown.max(0.0)),
        probe_interval: options
            .probes
            .then(|| Duration::from_secs_f64(config.health.backend_probe_interval.max(0.01))),
        probe_timeout: Duration::from_secs_f64(config.health.backend_probe_timeout.max(0.01)),
        observer: observer.clone(),
    };

    let api_key = config.api.api_key.as_deref();
    let default_backend = OpenAiBackend::new(&config.api.base_url, api_key, options.open_timeout)?;
    let default_model = match &config.model.name {
        Some(name) => name.clone(),
        None => {
            let listed = default_backend
                .list_models(Duration::from_secs(10))
                .await
                .map_err(|e| PoolError::Detect {
                    base_url: config.api.base_url.clone(),
                    reason: e.to_string(),
                })?;
            choose_model(&listed).ok_or_else(|| PoolError::Detect {
                base_url: config.api.base_url.clone(),
                reason: "it lists no models".into(),
            })?
        }
    };

    let mut specs = vec![(
        "default".to_owned(),
        default_model,
        config.model.context_window,
        default_backend,
    )];
    for (alias, m) in &config.models {
        if m.provider == ProviderKind::Anthropic {
            return Err(PoolError::Unsupported {
                alias: alias.clone(),
                provider: "anthropic",
            });
        }
        let base_url = m.base_url.as_deref().unwrap_or(&config.api.base_url);
        let key = m.api_key.as_deref().or(api_key);
        let backend = OpenAiBackend::new(base_url, key, options.open_timeout)?;
        specs.push((
            alias.clone(),
            m.model.clone(),
            m.context_window.unwrap_or(config.model.context_window),
            backend,
        ));
    }

    let mut supervisor = SupervisorSpec::new("providers");
    let mut lanes = Vec::new();
    for (alias, model, context_window, backend) in specs {
        let lane_settings = settings(&alias, backend);
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
