//! One backend connection as a supervised actor: it owns the client and the circuit breaker,
//! probes the backend's health, and never blocks its mailbox on the network.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use serde::Serialize;
use tokio::time::Instant;
use tracing::Instrument;
use turnstone_runtime::policy::{Backoff, BreakerState, BreakerTransition, CircuitBreaker};
use turnstone_runtime::supervise::{Decision, Observer};

use super::router::LaneModel;
use super::{Backend, Delta, DeltaStream, ModelRequest, ProviderError};

/// How a lane whose model is not known yet finds one: list the backend's models with
/// backoff until it names one.
#[derive(Clone, Debug)]
pub struct Detection {
    /// Where the detected name goes (shared with the lane).
    pub model: LaneModel,
    /// Picks the model from the backend's list.
    pub choose: fn(&[String]) -> Option<String>,
    /// Delay between attempts.
    pub backoff: Backoff,
    /// The backend, for log lines.
    pub base_url: String,
    /// Why the first attempt (at start) found none.
    pub reason: String,
}

impl Detection {
    fn failure(&self, reason: &str) -> String {
        format!("no model detected yet at {}: {reason}", self.base_url)
    }
}

/// Read-only configuration of one provider lane.
#[derive(Clone, Debug)]
pub struct ProviderSettings {
    /// The model alias this actor serves.
    pub alias: String,
    /// The client.
    pub backend: Backend,
    /// Consecutive failures that open the breaker.
    pub breaker_threshold: u32,
    /// Time before a half-open probe.
    pub breaker_cooldown: Duration,
    /// Health probe period (None: no probes).
    pub probe_interval: Option<Duration>,
    /// Health probe timeout.
    pub probe_timeout: Duration,
    /// Where breaker transitions are recorded.
    pub observer: Observer,
    /// Detect the model in the background (the node started before its model server).
    pub detection: Option<Detection>,
}

/// Requests a provider actor answers.
pub enum ProviderMsg {
    /// Open a streaming request; the reply carries the stream or why not.
    Open(
        ModelRequest,
        tracing::Span,
        RpcReplyPort<Result<DeltaStream, ProviderError>>,
    ),
    /// The result of a request or probe (for the breaker).
    Outcome(Result<(), String>),
    /// Probe the backend now.
    Probe,
    /// Report the lane's health.
    Status(RpcReplyPort<ProviderStatus>),
    /// Ask the backend for its models (attempt number), while the model is not known.
    Detect(u32),
    /// What that attempt found.
    Detected(u32, Result<Vec<String>, String>),
}

/// A lane's health, for `/health` and dashboards.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProviderStatus {
    /// The alias.
    pub alias: String,
    /// Breaker state.
    pub circuit: BreakerState,
    /// The last failure seen, if any.
    pub last_error: Option<String>,
}

/// The provider actor.
#[derive(Debug)]
pub struct ProviderActor {
    settings: ProviderSettings,
}

impl ProviderActor {
    /// An actor for `settings`.
    pub fn new(settings: ProviderSettings) -> Self {
        Self { settings }
    }

    fn record(&self, transition: Option<BreakerTransition>, cause: Option<&str>) {
        if let Some(t) = transition {
            self.settings.observer.decide(
                "providers",
                Some(&self.settings.alias),
                Decision::BreakerTripped(t),
                cause.map(|c| vec![c.to_owned()]).unwrap_or_default(),
            );
        }
    }
}

impl ProviderActor {
    fn on_detected(
        &self,
        myself: &ActorRef<ProviderMsg>,
        detection: &Detection,
        attempt: u32,
        listed: Result<Vec<String>, String>,
        state: &mut ProviderState,
    ) {
        let chosen = listed.and_then(|models| {
            (detection.choose)(&models).ok_or_else(|| "it lists no models".to_owned())
        });
        match chosen {
            Ok(model) => {
                tracing::info!(alias = %self.settings.alias, %model, attempts = attempt + 1,
                    "model detected at {}", detection.base_url);
                detection.model.set(&model);
                state.last_error = None;
            }
            Err(reason) => {
                let delay = detection.backoff.delay(attempt);
                tracing::warn!(alias = %self.settings.alias, attempt = attempt + 1,
                    "no model at {} yet ({reason}); trying again in {:.0?}",
                    detection.base_url, delay);
                state.last_error = Some(detection.failure(&reason));
                myself.send_after(delay, move || ProviderMsg::Detect(attempt + 1));
            }
        }
    }
}

/// Mutable state: the breaker and the last error.
#[derive(Debug)]
pub struct ProviderState {
    breaker: CircuitBreaker,
    last_error: Option<String>,
}

impl Actor for ProviderActor {
    type Msg = ProviderMsg;
    type State = ProviderState;
    type Arguments = ();

    async fn pre_start(
        &self,
        myself: ActorRef<ProviderMsg>,
        _: (),
    ) -> Result<ProviderState, ActorProcessingErr> {
        if let Some(period) = self.settings.probe_interval {
            myself.send_interval(period, || ProviderMsg::Probe);
        }
        let detecting = self
            .settings
            .detection
            .as_ref()
            .filter(|d| !d.model.is_known());
        if let Some(detection) = detecting {
            myself.send_after(detection.backoff.delay(0), || ProviderMsg::Detect(1));
        }
        Ok(ProviderState {
            breaker: CircuitBreaker::new(
                self.settings.breaker_threshold,
                self.settings.breaker_cooldown,
            ),
            last_error: detecting.map(|d| d.failure(&d.reason)),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<ProviderMsg>,
        msg: ProviderMsg,
        state: &mut ProviderState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ProviderMsg::Open(request, span, reply) => {
                match state.breaker.try_acquire(Instant::now()) {
                    Err(open) => {
                        let _ = reply.send(Err(ProviderError::CircuitOpen(open)));
                    }
                    Ok(transition) => {
                        self.record(
                            transition,
                            Some("cooldown elapsed: admitting a probe request"),
                        );
                        let backend = self.settings.backend.clone();
                        // The network wait runs beside the mailbox, which stays responsive.
                        // In the caller's span: the request carries its trace context.
                        tokio::spawn(
                            async move {
                                let result = backend.open(&request).await;
                                let outcome =
                                    result.as_ref().map(|_| ()).map_err(ToString::to_string);
                                let _ = myself.cast(ProviderMsg::Outcome(outcome));
                                let _ = reply.send(result.map(|stream| {
                                    Box::pin(Reporting {
                                        inner: stream,
                                        actor: myself,
                                    }) as DeltaStream
                                }));
                            }
                            .instrument(span),
                        );
                    }
                }
            }
            ProviderMsg::Outcome(Ok(())) => {
                let t = state.breaker.on_success();
                self.record(t, None);
            }
            ProviderMsg::Outcome(Err(error)) => {
                let t = state.breaker.on_failure(Instant::now());
                self.record(t, Some(&error));
                state.last_error = Some(error);
            }
            ProviderMsg::Probe => {
                let backend = self.settings.backend.clone();
                let timeout = self.settings.probe_timeout;
                tokio::spawn(async move {
                    let outcome = backend
                        .list_models(timeout)
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("health probe: {e}"));
                    let _ = myself.cast(ProviderMsg::Outcome(outcome));
                });
            }
            ProviderMsg::Detect(attempt) => {
                let backend = self.settings.backend.clone();
                let timeout = self.settings.probe_timeout.max(Duration::from_secs(2));
                tokio::spawn(async move {
                    let listed = backend
                        .list_models(timeout)
                        .await
                        .map_err(|e| e.to_string());
                    let _ = myself.cast(ProviderMsg::Detected(attempt, listed));
                });
            }
            ProviderMsg::Detected(attempt, listed) => {
                if let Some(detection) = &self.settings.detection {
                    self.on_detected(&myself, detection, attempt, listed, state);
                }
            }
            ProviderMsg::Status(reply) => {
                let _ = reply.send(ProviderStatus {
                    alias: self.settings.alias.clone(),
                    circuit: state.breaker.state(),
                    last_error: state.last_error.clone(),
                });
            }
        }
        Ok(())
    }
}

/// Passes a stream through and reports a mid-stream failure to the provider's breaker.
struct Reporting {
    inner: DeltaStream,
    actor: ActorRef<ProviderMsg>,
}

impl Stream for Reporting {
    type Item = Result<Delta, ProviderError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Err(e))) = &polled {
            let _ = self.actor.cast(ProviderMsg::Outcome(Err(e.to_string())));
        }
        polled
    }
}
