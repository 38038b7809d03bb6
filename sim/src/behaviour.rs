//! How the simulated model and tools behave: Turnstone 0.4.1's distributions (SPEC §12), with
//! its hidden constants made settable.

use rand::Rng;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Exp, Normal};

/// The words simulated answers are made of (0.4.1's pool).
pub const WORDS: [&str; 29] = [
    "the",
    "result",
    "shows",
    "that",
    "this",
    "file",
    "contains",
    "function",
    "data",
    "analysis",
    "implementation",
    "code",
    "completed",
    "successfully",
    "reviewed",
    "output",
    "processing",
    "module",
    "system",
    "request",
    "response",
    "value",
    "config",
    "status",
    "running",
    "checked",
    "verified",
    "found",
    "done",
];

/// The tools the simulated model calls (0.4.1's set).
pub const TOOLS: [&str; 7] = [
    "bash",
    "read_file",
    "search",
    "edit_file",
    "write_file",
    "math",
    "web_fetch",
];

/// Content chunks per model answer.
pub const CHUNKS: usize = 8;

/// The distributions of the simulated model and tools.
#[derive(Clone, Debug, PartialEq)]
pub struct Behaviour {
    /// Mean seconds before a model answer starts streaming.
    pub llm_latency: f64,
    /// Its standard deviation.
    pub llm_latency_stddev: f64,
    /// Mean words per answer.
    pub tokens: f64,
    /// Its standard deviation.
    pub tokens_stddev: f64,
    /// Words streamed per second.
    pub token_rate: f64,
    /// The model's context window (for the status event's percentage).
    pub context_window: u32,
    /// Mean seconds a tool call takes.
    pub tool_latency: f64,
    /// Its standard deviation.
    pub tool_latency_stddev: f64,
    /// Probability that a tool call fails.
    pub tool_failure_rate: f64,
    /// Mean tool calls when the model calls tools.
    pub calls_mean: f64,
    /// Most tool calls in one answer.
    pub calls_max: usize,
    /// Model requests per turn at most (the last one calls no tools).
    pub max_rounds: usize,
    /// Probability of tool calls in the first answer of a turn.
    pub first_call_probability: f64,
    /// Probability of tool calls in later answers.
    pub later_call_probability: f64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Self {
            llm_latency: 2.0,
            llm_latency_stddev: 0.5,
            tokens: 200.0,
            tokens_stddev: 50.0,
            token_rate: 50.0,
            context_window: 131_072,
            tool_latency: 0.5,
            tool_latency_stddev: 0.2,
            tool_failure_rate: 0.02,
            calls_mean: 1.5,
            calls_max: 4,
            max_rounds: 3,
            first_call_probability: 0.6,
            later_call_probability: 0.3,
        }
    }
}

/// A sample of N(mean, sd), or the mean when the distribution is degenerate.
fn normal(rng: &mut StdRng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd.max(0.0)).map_or(mean, |n| n.sample(rng))
}

/// One simulated model answer.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// Seconds before it starts streaming.
    pub latency: f64,
    /// Its words.
    pub words: Vec<&'static str>,
    /// The tools it calls.
    pub calls: Vec<&'static str>,
}

impl Behaviour {
    /// Draws the answer to the `round`th request of a turn (0 = the first).
    pub fn answer(&self, rng: &mut StdRng, round: usize) -> Answer {
        let latency = normal(rng, self.llm_latency, self.llm_latency_stddev).max(0.05);
        let n = normal(rng, self.tokens, self.tokens_stddev).max(10.0) as usize;
        let words = (0..n)
            .map(|_| WORDS[rng.random_range(0..WORDS.len())])
            .collect();
        let probability = if round == 0 {
            self.first_call_probability
        } else {
            self.later_call_probability
        };
        let mut calls = Vec::new();
        if round + 1 < self.max_rounds && rng.random::<f64>() < probability {
            let count = Exp::new(1.0 / self.calls_mean.max(1e-9))
                .map_or(1.0, |e| e.sample(rng))
                .floor() as usize;
            for _ in 0..count.clamp(1, self.calls_max.max(1)) {
                calls.push(TOOLS[rng.random_range(0..TOOLS.len())]);
            }
        }
        Answer {
            latency,
            words,
            calls,
        }
    }

    /// Draws one tool call: how long it takes and whether it fails.
    pub fn tool_call(&self, rng: &mut StdRng) -> (f64, bool) {
        let latency = normal(rng, self.tool_latency, self.tool_latency_stddev).max(0.01);
        (latency, rng.random::<f64>() < self.tool_failure_rate)
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn answers_follow_the_distributions_and_the_round_limit() {
        let b = Behaviour::default();
        let mut rng = StdRng::seed_from_u64(7);
        let answers: Vec<Answer> = (0..4000).map(|_| b.answer(&mut rng, 0)).collect();
        let with_calls = answers.iter().filter(|a| !a.calls.is_empty()).count() as f64;
        assert!((with_calls / 4000.0 - 0.6).abs() < 0.03, "{with_calls}");
        let mean_words =
            answers.iter().map(|a| a.words.len()).sum::<usize>() as f64 / answers.len() as f64;
        assert!((mean_words - 200.0).abs() < 5.0, "{mean_words}");
        assert!(
            answers
                .iter()
                .all(|a| a.latency >= 0.05 && a.calls.len() <= 4)
        );
        // The last round never calls tools.
        assert!((0..500).all(|_| b.answer(&mut rng, 2).calls.is_empty()));
        let failures = (0..10_000).filter(|_| b.tool_call(&mut rng).1).count();
        assert!((100..300).contains(&failures), "{failures}");
    }

    #[test]
    fn one_seed_draws_the_same_answers() {
        let b = Behaviour::default();
        let draw = || {
            let mut rng = StdRng::seed_from_u64(42);
            (0..50)
                .map(|r| b.answer(&mut rng, r % 3))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(), draw());
    }
}
