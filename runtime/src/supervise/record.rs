//! Supervision decisions as typed records, and the [`Observer`] that publishes them.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::broadcast;

use crate::policy::BreakerTransition;

/// Why a child left.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "exit", content = "detail", rename_all = "snake_case")]
pub enum ExitReason {
    /// It stopped on its own without error (with its stop reason, if any).
    Normal(Option<String>),
    /// It panicked or returned an error.
    Failed(String),
    /// Its supervisor stopped it (shutdown, sibling restart, request).
    Shutdown(String),
}

/// Why a child was evicted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvictReason {
    /// Room was needed for a new child and this one was the least recently active idle one.
    Capacity,
    /// It stayed idle longer than the idle timeout.
    Idle,
}

/// What a supervisor (or a policy owner) decided.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    /// A child started for the first time.
    Started,
    /// A child was started again after an exit.
    Restarted {
        /// Incarnation number (1 = first start).
        generation: u64,
        /// Consecutive failures before this restart (0 = first).
        attempt: u32,
        /// Backoff waited before the restart.
        delay_ms: u64,
    },
    /// A child stopped and was not restarted.
    Stopped {
        /// Why it stopped.
        reason: ExitReason,
    },
    /// Too many restarts: the supervisor stopped its children and failed to its parent.
    Escalated {
        /// Restarts seen within the period.
        restarts: u32,
        /// The intensity period.
        period_ms: u64,
    },
    /// An idle child was stopped by a policy.
    Evicted {
        /// Which policy.
        reason: EvictReason,
        /// How long it had been idle.
        idle_ms: u64,
    },
    /// A circuit breaker changed state.
    BreakerTripped(BreakerTransition),
}

impl Decision {
    /// The decision's kind, used as the metric label.
    pub fn kind(&self) -> DecisionKind {
        match self {
            Self::Started => DecisionKind::Started,
            Self::Restarted { .. } => DecisionKind::Restarted,
            Self::Stopped { .. } => DecisionKind::Stopped,
            Self::Escalated { .. } => DecisionKind::Escalated,
            Self::Evicted { .. } => DecisionKind::Evicted,
            Self::BreakerTripped(_) => DecisionKind::BreakerTripped,
        }
    }
}

/// The kind of a [`Decision`], as the `decision` label of `turnstone_supervision_decisions_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DecisionKind {
    /// See [`Decision::Started`].
    Started,
    /// See [`Decision::Restarted`].
    Restarted,
    /// See [`Decision::Stopped`].
    Stopped,
    /// See [`Decision::Escalated`].
    Escalated,
    /// See [`Decision::Evicted`].
    Evicted,
    /// See [`Decision::BreakerTripped`].
    BreakerTripped,
}

impl DecisionKind {
    /// The label value: `started`, `restarted`, `stopped`, `escalated`, `evicted`,
    /// `breaker_tripped`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Started => "started",
            Self::Restarted => "restarted",
            Self::Stopped => "stopped",
            Self::Escalated => "escalated",
            Self::Evicted => "evicted",
            Self::BreakerTripped => "breaker_tripped",
        }
    }
}

impl EncodeLabelValue for DecisionKind {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DecisionLabels {
    decision: DecisionKind,
}

/// One supervision decision with its context and cause chain.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SupervisionRecord {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The supervisor (or policy owner) that decided.
    pub supervisor: String,
    /// The child concerned, if any.
    pub child: Option<String>,
    /// What was decided.
    #[serde(flatten)]
    pub decision: Decision,
    /// Why, outermost cause first (empty when nothing went wrong).
    pub cause: Vec<String>,
}

impl SupervisionRecord {
    /// A record stamped now.
    pub fn new(
        supervisor: impl Into<String>,
        child: Option<String>,
        decision: Decision,
        cause: Vec<String>,
    ) -> Self {
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at_ms,
            supervisor: supervisor.into(),
            child,
            decision,
            cause,
        }
    }
}

/// The messages of an error and of each of its sources, outermost first.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> Vec<String> {
    let mut chain = vec![err.to_string()];
    let mut source = err.source();
    while let Some(e) = source {
        chain.push(e.to_string());
        source = e.source();
    }
    chain
}

/// Publishes supervision records to tracing, metrics and subscribers. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Observer {
    inner: Arc<ObserverInner>,
}

#[derive(Debug)]
struct ObserverInner {
    tx: broadcast::Sender<SupervisionRecord>,
    decisions: Family<DecisionLabels, Counter>,
}

/// Records kept for a subscriber that falls behind before it starts losing the oldest.
const SUBSCRIBER_BUFFER: usize = 1024;

impl Observer {
    /// An observer whose counter is registered in `registry` as
    /// `turnstone_supervision_decisions_total{decision=…}`.
    pub fn new(registry: &mut Registry) -> Self {
        let observer = Self::unregistered();
        registry.register(
            "turnstone_supervision_decisions",
            "Supervision decisions by kind (started, restarted, stopped, escalated, evicted, breaker_tripped)",
            observer.inner.decisions.clone(),
        );
        observer
    }

    /// An observer whose counter is not exported (tests, embedded use without metrics).
    pub fn unregistered() -> Self {
        let (tx, _) = broadcast::channel(SUBSCRIBER_BUFFER);
        Self {
            inner: Arc::new(ObserverInner {
                tx,
                decisions: Family::default(),
            }),
        }
    }

    /// Receives every record published from now on. A subscriber that falls more than 1024
    /// records behind loses the oldest and is told how many (`RecvError::Lagged`).
    pub fn subscribe(&self) -> broadcast::Receiver<SupervisionRecord> {
        self.inner.tx.subscribe()
    }

    /// How many decisions of `kind` were recorded.
    pub fn count(&self, kind: DecisionKind) -> u64 {
        self.inner
            .decisions
            .get_or_create(&DecisionLabels { decision: kind })
            .get()
    }

    /// Publishes one record.
    pub fn record(&self, record: SupervisionRecord) {
        self.inner
            .decisions
            .get_or_create(&DecisionLabels {
                decision: record.decision.kind(),
            })
            .inc();
        let child = record.child.as_deref().unwrap_or("-");
        match &record.decision {
            Decision::Started => {
                tracing::debug!(supervisor = %record.supervisor, child, "child started");
            }
            Decision::Restarted {
                generation,
                attempt,
                delay_ms,
            } => tracing::warn!(
                supervisor = %record.supervisor, child, generation, attempt, delay_ms,
                cause = ?record.cause, "child restarted"
            ),
            Decision::Stopped { reason } => tracing::info!(
                supervisor = %record.supervisor, child, ?reason, "child stopped"
            ),
            Decision::Escalated {
                restarts,
                period_ms,
            } => tracing::error!(
                supervisor = %record.supervisor, child, restarts, period_ms,
                cause = ?record.cause, "restart intensity exceeded; escalating"
            ),
            Decision::Evicted { reason, idle_ms } => tracing::info!(
                supervisor = %record.supervisor, child, ?reason, idle_ms, "child evicted"
            ),
            Decision::BreakerTripped(t) => tracing::warn!(
                supervisor = %record.supervisor, child, from = t.from.as_str(), to = t.to.as_str(),
                cause = ?record.cause, "circuit breaker changed state"
            ),
        }
        // No subscribers is fine: the record went to tracing and metrics.
        let _ = self.inner.tx.send(record);
    }

    /// Shorthand for [`Observer::record`] with a record stamped now.
    pub fn decide(
        &self,
        supervisor: &str,
        child: Option<&str>,
        decision: Decision,
        cause: Vec<String>,
    ) {
        self.record(SupervisionRecord::new(
            supervisor,
            child.map(str::to_owned),
            decision,
            cause,
        ));
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::BreakerState;

    #[derive(Debug, thiserror::Error)]
    #[error("request failed")]
    struct Outer(#[source] Inner);
    #[derive(Debug, thiserror::Error)]
    #[error("connection refused")]
    struct Inner;

    #[test]
    fn cause_chain_walks_sources_outermost_first() {
        assert_eq!(
            cause_chain(&Outer(Inner)),
            vec!["request failed".to_owned(), "connection refused".to_owned()]
        );
    }

    #[tokio::test]
    async fn records_reach_subscribers_metrics_and_serialize_flat() {
        let mut registry = Registry::default();
        let observer = Observer::new(&mut registry);
        let mut rx = observer.subscribe();
        observer.decide(
            "provider",
            Some("default"),
            Decision::BreakerTripped(BreakerTransition {
                from: BreakerState::Closed,
                to: BreakerState::Open,
            }),
            vec!["5 consecutive failures".into()],
        );
        let got = rx.recv().await.unwrap();
        assert_eq!(got.decision.kind(), DecisionKind::BreakerTripped);
        assert_eq!(observer.count(DecisionKind::BreakerTripped), 1);

        let json = serde_json::to_value(&got).unwrap();
        assert_eq!(json["decision"], "breaker_tripped");
        assert_eq!(json["from"], "closed");
        assert_eq!(json["to"], "open");
        assert_eq!(json["child"], "default");

        let text = crate::telemetry::encode_text(&registry).unwrap();
        assert!(
            text.contains(r#"turnstone_supervision_decisions_total{decision="breaker_tripped"} 1"#),
            "{text}"
        );
    }
}
