//! The simulated model and tools, plugged into a real node: the model is a
//! [`ModelBackend`] that streams deltas with the simulated timing, the tools are [`Tool`]s that
//! sleep and sometimes fail. Each node draws from its own seeded generator.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use turnstone_actors::provider::{
    Delta, DeltaStream, FinishReason, ModelBackend, ModelRequest, ProviderError, Role,
    ToolCallDelta, ToolSpec, Usage,
};
use turnstone_actors::tools::{Tool, ToolContext, ToolOutput};

use crate::behaviour::{Behaviour, CHUNKS};

/// One node's random draws, shared by its model and tools.
pub type SharedRng = Arc<Mutex<StdRng>>;

fn draw<T>(rng: &SharedRng, f: impl FnOnce(&mut StdRng) -> T) -> T {
    f(&mut rng.lock().unwrap_or_else(PoisonError::into_inner))
}

/// The simulated model of one node.
#[derive(Debug)]
pub struct SimModel {
    behaviour: Arc<Behaviour>,
    rng: SharedRng,
}

impl SimModel {
    /// A model drawing from `rng`.
    pub fn new(behaviour: Arc<Behaviour>, rng: SharedRng) -> Self {
        Self { behaviour, rng }
    }
}

/// Model answers already given in the turn that `request` continues.
fn round_of(request: &ModelRequest) -> usize {
    request
        .messages
        .iter()
        .rev()
        .take_while(|m| m.role != Role::User)
        .filter(|m| m.role == Role::Assistant)
        .count()
}

#[async_trait]
impl ModelBackend for SimModel {
    async fn open(&self, request: &ModelRequest) -> Result<DeltaStream, ProviderError> {
        let round = round_of(request);
        let answer = draw(&self.rng, |rng| self.behaviour.answer(rng, round));
        let rate = self.behaviour.token_rate.max(1e-6);
        let words = answer.words.len();
        // 0.4.1 streams eight chunks, each after the time its words take at the token rate.
        let per_chunk = words.div_ceil(CHUNKS).max(1);
        let mut deltas: Vec<(Duration, Delta)> = answer
            .words
            .chunks(per_chunk)
            .enumerate()
            .map(|(i, chunk)| {
                // Every chunk after the first starts with the space before its first word.
                let mut text = String::with_capacity(chunk.iter().map(|w| w.len() + 1).sum());
                for (j, word) in chunk.iter().enumerate() {
                    if i > 0 || j > 0 {
                        text.push(' ');
                    }
                    text.push_str(word);
                }
                let pause = Duration::from_secs_f64(chunk.len() as f64 / rate);
                (
                    pause,
                    Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                )
            })
            .collect();
        let calls: Vec<ToolCallDelta> = answer
            .calls
            .iter()
            .enumerate()
            .map(|(index, name)| ToolCallDelta {
                index,
                id: Some(format!("sim_{round}_{index}")),
                name: Some((*name).to_owned()),
                arguments: r#"{"simulated": true}"#.to_owned(),
            })
            .collect();
        let finish = if calls.is_empty() {
            FinishReason::Stop
        } else {
            FinishReason::ToolCalls
        };
        deltas.push((
            Duration::ZERO,
            Delta {
                tool_calls: calls,
                usage: Some(Usage {
                    prompt_tokens: 2 * words as u64,
                    completion_tokens: words as u64,
                }),
                finish: Some(finish),
                ..Delta::default()
            },
        ));
        tokio::time::sleep(Duration::from_secs_f64(answer.latency)).await;
        let stream = futures::stream::unfold(deltas.into_iter(), |mut rest| async move {
            let (pause, delta) = rest.next()?;
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
            Some((Ok(delta), rest))
        });
        Ok(Box::pin(stream))
    }

    async fn list_models(&self, _: Duration) -> Result<Vec<String>, ProviderError> {
        Ok(vec!["sim".to_owned()])
    }
}

/// One simulated tool.
#[derive(Debug)]
pub struct SimTool {
    name: &'static str,
    behaviour: Arc<Behaviour>,
    rng: SharedRng,
}

impl SimTool {
    /// The tool `name`, drawing from `rng`.
    pub fn new(name: &'static str, behaviour: Arc<Behaviour>, rng: SharedRng) -> Self {
        Self {
            name,
            behaviour,
            rng,
        }
    }
}

#[async_trait]
impl Tool for SimTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: self.name.to_owned(),
            description: format!("Simulated {}.", self.name),
            parameters: json!({"type": "object", "properties": {}}),
        }
    }

    /// Simulated calls run without asking, as in 0.4.1's simulator.
    fn needs_approval(&self) -> bool {
        false
    }

    async fn run(&self, _: Value, _: ToolContext) -> Result<ToolOutput, String> {
        let (latency, fails) = draw(&self.rng, |rng| self.behaviour.tool_call(rng));
        tokio::time::sleep(Duration::from_secs_f64(latency)).await;
        if fails {
            return Err(format!("Simulated {} failure", self.name));
        }
        Ok(ToolOutput::text(format!(
            "[sim] {} completed successfully",
            self.name
        )))
    }
}
