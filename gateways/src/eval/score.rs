//! Scoring a run's tool calls against a case's expected actions, as 0.4.1 scores them, and
//! the pass rate's confidence interval.

use serde::Serialize;
use serde_json::Value;

use super::cases::{Expected, MatchMode};

/// One tool call the model made.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Call {
    /// The tool.
    pub tool: String,
    /// Its arguments (`{"_raw": text}` when they were not a JSON object).
    pub args: Value,
}

impl Call {
    /// A call from the model's argument text.
    pub fn parse(tool: &str, arguments: &str) -> Self {
        let args = match serde_json::from_str::<Value>(arguments) {
            Ok(v @ Value::Object(_)) => v,
            _ => serde_json::json!({"_raw": arguments}),
        };
        Self {
            tool: tool.to_owned(),
            args,
        }
    }

    fn unparsed(&self) -> bool {
        self.args
            .as_object()
            .is_some_and(|o| o.len() == 1 && o.contains_key("_raw"))
    }
}

/// How one run scored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Whether the run passes.
    pub pass: bool,
    /// Matched share of the expected actions, 0–1.
    pub score: f64,
    /// Expected actions matched (indices).
    pub matched: Vec<usize>,
    /// Expected actions not matched (indices).
    pub unmatched: Vec<usize>,
    /// Calls beyond what was expected (exact and contains_any modes).
    pub extra_tools: Vec<String>,
    /// In words.
    pub detail: String,
}

/// A value as text for comparison (strings without quotes), as 0.4.1's `str()`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Whether `call` is the `expected` action: same tool, each named argument equal, each
/// pattern found.
pub fn matches(call: &Call, expected: &Expected) -> bool {
    if call.tool != expected.tool {
        return false;
    }
    if call.unparsed() {
        return expected.args.is_empty() && expected.patterns.is_empty();
    }
    let equal = expected.args.iter().all(|(k, want)| {
        call.args
            .get(k)
            .filter(|v| !v.is_null())
            .is_some_and(|got| text(got) == text(want))
    });
    equal
        && expected.patterns.iter().all(|(k, re)| {
            let got = call.args.get(k).map(text).unwrap_or_default();
            re.is_match(&got)
        })
}

fn indices_not_in(n: usize, matched: &[usize]) -> Vec<usize> {
    (0..n).filter(|i| !matched.contains(i)).collect()
}

/// Scores `calls` against `expected` in `mode`.
pub fn score(calls: &[Call], expected: &[Expected], mode: MatchMode) -> Score {
    let n = expected.len();
    if n == 0 {
        return Score {
            pass: true,
            score: 1.0,
            matched: Vec::new(),
            unmatched: Vec::new(),
            extra_tools: Vec::new(),
            detail: "No expected actions defined".into(),
        };
    }
    let share = |m: usize| m as f64 / n as f64;
    match mode {
        MatchMode::Exact => {
            let matched: Vec<usize> = calls
                .iter()
                .zip(expected)
                .enumerate()
                .filter(|(_, (c, e))| matches(c, e))
                .map(|(i, _)| i)
                .collect();
            let length_ok = calls.len() == n;
            let mut detail = format!("Exact: {}/{n} matched", matched.len());
            if !length_ok {
                detail.push_str(&format!(" (length {} vs {n})", calls.len()));
            }
            Score {
                pass: length_ok && matched.len() == n,
                score: share(matched.len()),
                unmatched: indices_not_in(n, &matched),
                extra_tools: calls.iter().skip(n).map(|c| c.tool.clone()).collect(),
                matched,
                detail,
            }
        }
        MatchMode::OrderedSubset => {
            let mut matched = Vec::new();
            let mut from = 0;
            for (ei, e) in expected.iter().enumerate() {
                if let Some(ai) = (from..calls.len()).find(|&ai| matches(&calls[ai], e)) {
                    matched.push(ei);
                    from = ai + 1;
                }
            }
            Score {
                pass: matched.len() == n,
                score: share(matched.len()),
                unmatched: indices_not_in(n, &matched),
                extra_tools: Vec::new(),
                detail: format!("Ordered subset: {}/{n}", matched.len()),
                matched,
            }
        }
        MatchMode::Subset => {
            let mut matched = Vec::new();
            let mut used = vec![false; calls.len()];
            for (ei, e) in expected.iter().enumerate() {
                if let Some(ai) = (0..calls.len()).find(|&ai| !used[ai] && matches(&calls[ai], e)) {
                    used[ai] = true;
                    matched.push(ei);
                }
            }
            Score {
                pass: matched.len() == n,
                score: share(matched.len()),
                unmatched: indices_not_in(n, &matched),
                extra_tools: Vec::new(),
                detail: format!("Subset: {}/{n}", matched.len()),
                matched,
            }
        }
        MatchMode::ContainsAny => {
            let hit = expected
                .iter()
                .position(|e| calls.iter().any(|c| matches(c, e)));
            match hit {
                Some(ei) => Score {
                    pass: true,
                    score: 1.0,
                    matched: vec![ei],
                    unmatched: Vec::new(),
                    extra_tools: Vec::new(),
                    detail: "Contains at least one match".into(),
                },
                None => Score {
                    pass: false,
                    score: 0.0,
                    matched: Vec::new(),
                    unmatched: (0..n).collect(),
                    extra_tools: calls.iter().map(|c| c.tool.clone()).collect(),
                    detail: "None of the expected actions were found".into(),
                },
            }
        }
    }
}

/// The 95 % Wilson score interval of `passes` out of `runs` (0–1 each way).
pub fn wilson_interval(passes: usize, runs: usize) -> (f64, f64) {
    if runs == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_964_f64;
    let n = runs as f64;
    let p = passes as f64 / n;
    let denominator = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denominator;
    let half = z * (p * (1.0 - p) / n + z * z / (4.0 * n * n)).sqrt() / denominator;
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn expect(tool: &str, args: &[(&str, Value)], patterns: &[(&str, &str)]) -> Expected {
        Expected {
            tool: tool.into(),
            args: args
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect::<BTreeMap<_, _>>(),
            patterns: patterns
                .iter()
                .map(|(k, p)| ((*k).to_owned(), regex::Regex::new(p).unwrap()))
                .collect(),
        }
    }

    fn call(tool: &str, args: &str) -> Call {
        Call::parse(tool, args)
    }

    #[test]
    fn arguments_match_exactly_or_by_pattern_and_extra_arguments_are_fine() {
        let read = expect("read_file", &[("path", "a.txt".into())], &[]);
        assert!(matches(
            &call("read_file", r#"{"path": "a.txt", "limit": 5}"#),
            &read
        ));
        assert!(!matches(&call("read_file", r#"{"path": "b.txt"}"#), &read));
        assert!(!matches(&call("read_file", "{}"), &read));
        assert!(!matches(&call("write_file", r#"{"path": "a.txt"}"#), &read));
        let ls = expect("bash", &[], &[("command", r"^ls\b")]);
        assert!(matches(&call("bash", r#"{"command": "ls -la"}"#), &ls));
        assert!(!matches(&call("bash", r#"{"command": "cat ls"}"#), &ls));
        let numbers = expect("read_file", &[("offset", 3.into())], &[]);
        assert!(matches(&call("read_file", r#"{"offset": 3}"#), &numbers));
        assert!(matches(&call("read_file", r#"{"offset": "3"}"#), &numbers));
        // Unparseable arguments match only on the tool's name.
        assert!(matches(
            &call("bash", "not json"),
            &expect("bash", &[], &[])
        ));
        assert!(!matches(&call("bash", "not json"), &ls));
    }

    #[test]
    fn each_match_mode_scores_as_0_4_1() {
        let expected = [
            expect("search", &[], &[]),
            expect("read_file", &[], &[]),
            expect("edit_file", &[], &[]),
        ];
        let calls = [
            call("bash", "{}"),
            call("search", "{}"),
            call("read_file", "{}"),
            call("edit_file", "{}"),
        ];
        let ordered = score(&calls, &expected, MatchMode::OrderedSubset);
        assert!(ordered.pass && (ordered.score - 1.0).abs() < 1e-9);
        let reversed = [
            call("edit_file", "{}"),
            call("read_file", "{}"),
            call("search", "{}"),
        ];
        let ordered = score(&reversed, &expected, MatchMode::OrderedSubset);
        assert!(!ordered.pass);
        assert_eq!(ordered.matched, vec![0]);
        assert_eq!(ordered.unmatched, vec![1, 2]);
        assert!(score(&reversed, &expected, MatchMode::Subset).pass);
        let exact = score(&calls, &expected, MatchMode::Exact);
        assert!(!exact.pass, "a leading extra call breaks exact");
        assert_eq!(exact.detail, "Exact: 0/3 matched (length 4 vs 3)");
        assert_eq!(exact.extra_tools, vec!["edit_file"]);
        assert!(score(&calls[1..], &expected, MatchMode::Exact).pass);
        let any = score(
            &[call("read_file", "{}")],
            &expected,
            MatchMode::ContainsAny,
        );
        assert!(any.pass);
        assert_eq!(any.matched, vec![1]);
        let none = score(&[call("bash", "{}")], &expected, MatchMode::ContainsAny);
        assert!(!none.pass);
        assert_eq!(none.extra_tools, vec!["bash"]);
        // Subset uses each call once.
        let twice = [expect("bash", &[], &[]), expect("bash", &[], &[])];
        let once = score(&[call("bash", "{}")], &twice, MatchMode::Subset);
        assert!(!once.pass);
        assert!((once.score - 0.5).abs() < 1e-9);
        assert!(
            score(&[], &[], MatchMode::Exact).pass,
            "nothing expected passes"
        );
    }

    #[test]
    fn the_interval_narrows_with_more_runs() {
        let (lo, hi) = wilson_interval(5, 10);
        assert!(
            (lo - 0.2366).abs() < 1e-3 && (hi - 0.7634).abs() < 1e-3,
            "{lo} {hi}"
        );
        let (lo, hi) = wilson_interval(50, 100);
        assert!(hi - lo < 0.2);
        assert_eq!(wilson_interval(0, 0), (0.0, 1.0));
        let (lo, hi) = wilson_interval(3, 3);
        assert!(lo > 0.4 && (hi - 1.0).abs() < 1e-9);
    }
}
