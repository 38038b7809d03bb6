//! One round of the eval: every case `n_runs` times (up to `parallel` runs at once on the
//! runtime), summed up per case and overall.

use std::collections::BTreeMap;

use futures::StreamExt;
use serde::Serialize;

use super::cases::Case;
use super::run::{RunRecord, RunSettings, run_case};
use super::score::wilson_interval;

/// A case's results in one iteration.
#[derive(Clone, Debug, Serialize)]
pub struct CaseResult {
    /// Passing runs out of all.
    pub pass_rate: f64,
    /// Mean score.
    pub avg_score: f64,
    /// Every run.
    pub runs: Vec<RunRecord>,
}

/// All cases' results in one iteration, with the prompt they ran with.
#[derive(Clone, Debug, Serialize)]
pub struct Iteration {
    /// Its number (0: the initial prompt).
    pub iteration: usize,
    /// The system prompt.
    pub prompt: String,
    /// How it differs from the previous iteration's (unified diff lines).
    pub prompt_diff: Option<String>,
    /// Per case, by id.
    pub cases: BTreeMap<String, CaseResult>,
    /// The totals.
    pub aggregate: Aggregate,
}

/// Totals of one iteration.
#[derive(Clone, Debug, Serialize)]
pub struct Aggregate {
    /// Passing runs out of all runs.
    pub overall_pass_rate: f64,
    /// 95 % Wilson interval of that rate.
    pub overall_pass_interval: (f64, f64),
    /// Mean score of all runs.
    pub overall_avg_score: f64,
    /// Runs that failed before acting (endpoint down, timeouts).
    pub failed_runs: usize,
    /// Per case.
    pub per_case_pass_rates: BTreeMap<String, f64>,
}

/// Runs every case `n_runs` times with `prompt`; `on_run` hears of each finished run.
pub async fn run_iteration(
    iteration: usize,
    cases: &[Case],
    prompt: &str,
    n_runs: u32,
    parallel: usize,
    settings: &RunSettings,
    on_run: &(dyn Fn(&RunRecord) + Sync),
) -> Iteration {
    let jobs = cases
        .iter()
        .flat_map(|case| (0..n_runs).map(move |run| (case, run)));
    let mut records: Vec<RunRecord> = futures::stream::iter(jobs)
        .map(|(case, run)| async move {
            let record = run_case(case, prompt, run, settings).await;
            on_run(&record);
            record
        })
        .buffer_unordered(parallel.max(1))
        .collect()
        .await;
    records.sort_by(|a, b| (a.case.as_str(), a.run).cmp(&(b.case.as_str(), b.run)));
    summarise(iteration, prompt, cases, records)
}

fn summarise(iteration: usize, prompt: &str, cases: &[Case], records: Vec<RunRecord>) -> Iteration {
    let total = records.len();
    let passes = records.iter().filter(|r| r.score.pass).count();
    let failed_runs = records
        .iter()
        .filter(|r| r.error.is_some() && r.calls.is_empty())
        .count();
    let score_sum: f64 = records.iter().map(|r| r.score.score).sum();
    let mut by_case: BTreeMap<String, Vec<RunRecord>> =
        cases.iter().map(|c| (c.id.clone(), Vec::new())).collect();
    for r in records {
        by_case.entry(r.case.clone()).or_default().push(r);
    }
    let cases: BTreeMap<String, CaseResult> = by_case
        .into_iter()
        .map(|(id, runs)| {
            let n = runs.len().max(1) as f64;
            let pass_rate = runs.iter().filter(|r| r.score.pass).count() as f64 / n;
            let avg_score = runs.iter().map(|r| r.score.score).sum::<f64>() / n;
            (
                id,
                CaseResult {
                    pass_rate,
                    avg_score,
                    runs,
                },
            )
        })
        .collect();
    let aggregate = Aggregate {
        overall_pass_rate: passes as f64 / total.max(1) as f64,
        overall_pass_interval: wilson_interval(passes, total),
        overall_avg_score: score_sum / total.max(1) as f64,
        failed_runs,
        per_case_pass_rates: cases
            .iter()
            .map(|(k, v)| (k.clone(), v.pass_rate))
            .collect(),
    };
    Iteration {
        iteration,
        prompt: prompt.to_owned(),
        prompt_diff: None,
        cases,
        aggregate,
    }
}
