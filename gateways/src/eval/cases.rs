//! The case file of `turnstone-eval` (0.4.1's format): `{"defaults": {"n_runs": 3},
//! "cases": [{id, user_prompt, setup: {files: {path: text}}, expected_actions: [{tool, args |
//! args_pattern}], match_mode, max_turns}]}`, checked field by field so a mistake is named by
//! its case and field before anything runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use regex::Regex;
use serde_json::Value;

/// How a run's tool calls are compared with the expected actions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchMode {
    /// Every expected action, in this order, among the calls (others may come between).
    OrderedSubset,
    /// Every expected action, in any order, each matched by a different call.
    Subset,
    /// The calls are exactly the expected actions, in order.
    Exact,
    /// At least one expected action among the calls.
    ContainsAny,
}

impl MatchMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ordered_subset" => Self::OrderedSubset,
            "subset" => Self::Subset,
            "exact" => Self::Exact,
            "contains_any" => Self::ContainsAny,
            _ => return None,
        })
    }
}

/// One expected tool call.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The tool's name.
    pub tool: String,
    /// Arguments that must be equal (others may be present).
    pub args: BTreeMap<String, Value>,
    /// Arguments that must match a regular expression.
    pub patterns: Vec<(String, Regex)>,
}

impl serde::Serialize for Expected {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::json!({"tool": self.tool});
        if !self.args.is_empty() {
            v["args"] = serde_json::json!(self.args);
        }
        if !self.patterns.is_empty() {
            let p: BTreeMap<&str, &str> = self
                .patterns
                .iter()
                .map(|(k, r)| (k.as_str(), r.as_str()))
                .collect();
            v["args_pattern"] = serde_json::json!(p);
        }
        v.serialize(s)
    }
}

/// One case.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Case {
    /// Its id.
    pub id: String,
    /// What the user says.
    pub user_prompt: String,
    /// Files written into the run's working directory first (relative paths).
    #[serde(skip)]
    pub files: Vec<(PathBuf, String)>,
    /// What the model should do.
    pub expected_actions: Vec<Expected>,
    /// How calls are compared.
    pub match_mode: MatchMode,
    /// Model requests allowed in one run.
    pub max_turns: u32,
}

/// A whole case file.
#[derive(Clone, Debug)]
pub struct Suite {
    /// Runs per case (the file's `defaults.n_runs`, else 3).
    pub n_runs: u32,
    /// The cases.
    pub cases: Vec<Case>,
}

/// The case file is not usable.
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// It could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// It is not JSON.
    #[error("{path} is not valid JSON: {message}")]
    Json {
        /// The file.
        path: String,
        /// Where and why.
        message: String,
    },
    /// A field outside the cases is wrong.
    #[error("{path}: {field}: {message}")]
    File {
        /// The file.
        path: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A case's field is wrong.
    #[error("case {case}: {field}: {message}")]
    Case {
        /// The case's id (or its position).
        case: String,
        /// The field.
        field: String,
        /// What is wrong.
        message: String,
    },
}

/// Reads and checks a case file.
pub fn load(path: &Path) -> Result<Suite, SuiteError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| SuiteError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

/// Checks a case file's text (`path` names it in errors).
pub fn parse(text: &str, path: &str) -> Result<Suite, SuiteError> {
    let root: Value = serde_json::from_str(text).map_err(|e| SuiteError::Json {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let file_error = |field: &str, message: &str| SuiteError::File {
        path: path.to_owned(),
        field: field.to_owned(),
        message: message.to_owned(),
    };
    let n_runs = match root.get("defaults").and_then(|d| d.get("n_runs")) {
        None => 3,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| file_error("defaults.n_runs", "must be a whole number ≥ 1"))?,
    };
    let cases = root
        .get("cases")
        .and_then(Value::as_array)
        .ok_or_else(|| file_error("cases", "must be a list of cases"))?;
    if cases.is_empty() {
        return Err(file_error("cases", "the list is empty"));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(cases.len());
    for (i, raw) in cases.iter().enumerate() {
        let case = parse_case(raw, i)?;
        if !seen.insert(case.id.clone()) {
            return Err(SuiteError::Case {
                case: case.id,
                field: "id".into(),
                message: "used by an earlier case too".into(),
            });
        }
        out.push(case);
    }
    Ok(Suite { n_runs, cases: out })
}

fn parse_case(raw: &Value, index: usize) -> Result<Case, SuiteError> {
    let fallback = format!("#{}", index + 1);
    let named = raw
        .get("id")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned);
    let who = named.clone().unwrap_or(fallback);
    let err = |field: &str, message: String| SuiteError::Case {
        case: who.clone(),
        field: field.to_owned(),
        message,
    };
    if !raw.is_object() {
        return Err(err("", "must be an object".into()));
    }
    let id = named.ok_or_else(|| err("id", "missing (a non-empty string)".into()))?;
    let user_prompt = raw
        .get("user_prompt")
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| err("user_prompt", "missing (a non-empty string)".into()))?
        .to_owned();
    let mut files = Vec::new();
    if let Some(setup) = raw.get("setup") {
        let listed = match setup.get("files") {
            None => None,
            Some(f) => Some(
                f.as_object()
                    .ok_or_else(|| err("setup.files", "must map paths to file contents".into()))?,
            ),
        };
        for (name, content) in listed.into_iter().flatten() {
            let field = format!("setup.files.{name}");
            let content = content
                .as_str()
                .ok_or_else(|| err(&field, "the content must be a string".into()))?;
            let rel = confined(name).ok_or_else(|| {
                err(
                    &field,
                    "must be a relative path inside the run's directory".into(),
                )
            })?;
            files.push((rel, content.to_owned()));
        }
    }
    let listed = raw
        .get("expected_actions")
        .map(|v| {
            v.as_array()
                .ok_or_else(|| err("expected_actions", "must be a list".into()))
        })
        .transpose()?
        .cloned()
        .unwrap_or_default();
    let mut expected_actions = Vec::with_capacity(listed.len());
    for (j, action) in listed.iter().enumerate() {
        let field = format!("expected_actions[{j}]");
        let tool = action
            .get("tool")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| err(&format!("{field}.tool"), "missing (a tool name)".into()))?
            .to_owned();
        let args = match action.get("args") {
            None => BTreeMap::new(),
            Some(a) => a
                .as_object()
                .ok_or_else(|| err(&format!("{field}.args"), "must be an object".into()))?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let mut patterns = Vec::new();
        if let Some(p) = action.get("args_pattern") {
            let p = p
                .as_object()
                .ok_or_else(|| err(&format!("{field}.args_pattern"), "must be an object".into()))?;
            for (k, v) in p {
                let at = format!("{field}.args_pattern.{k}");
                let source = v
                    .as_str()
                    .ok_or_else(|| err(&at, "must be a regular expression string".into()))?;
                let regex = Regex::new(source)
                    .map_err(|e| err(&at, format!("not a valid regular expression: {e}")))?;
                patterns.push((k.clone(), regex));
            }
        }
        expected_actions.push(Expected {
            tool,
            args,
            patterns,
        });
    }
    let match_mode = match raw.get("match_mode") {
        None => MatchMode::OrderedSubset,
        Some(v) => v.as_str().and_then(MatchMode::parse).ok_or_else(|| {
            err(
                "match_mode",
                format!("{v} is not one of ordered_subset, subset, exact, contains_any"),
            )
        })?,
    };
    let max_turns = match raw.get("max_turns") {
        None => 10,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| err("max_turns", "must be a whole number ≥ 1".into()))?,
    };
    Ok(Case {
        id,
        user_prompt,
        files,
        expected_actions,
        match_mode,
        max_turns,
    })
}

/// `name` as a path that stays inside the directory it is joined to.
fn confined(name: &str) -> Option<PathBuf> {
    let path = Path::new(name);
    let inside = !name.is_empty()
        && path
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    inside.then(|| path.to_path_buf())
}

/// The expected tools no tool of `known` provides, as (case, tool).
pub fn unknown_tools<'a>(suite: &'a Suite, known: &BTreeSet<String>) -> Vec<(&'a str, &'a str)> {
    suite
        .cases
        .iter()
        .flat_map(|c| {
            c.expected_actions
                .iter()
                .filter(|e| !known.contains(&e.tool))
                .map(move |e| (c.id.as_str(), e.tool.as_str()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn case_error(text: &str) -> String {
        parse(text, "cases.json").unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_is_read_with_its_defaults() {
        let suite = parse(
            r#"{"defaults": {"n_runs": 2}, "cases": [
                {"id": "a", "user_prompt": "list", "setup": {"files": {"src/x.txt": "x"}},
                 "expected_actions": [{"tool": "bash", "args_pattern": {"command": "^ls"}}]},
                {"id": "b", "user_prompt": "read", "match_mode": "exact", "max_turns": 3,
                 "expected_actions": [{"tool": "read_file", "args": {"path": "x"}}]}]}"#,
            "cases.json",
        )
        .unwrap();
        assert_eq!(suite.n_runs, 2);
        assert_eq!(suite.cases[0].match_mode, MatchMode::OrderedSubset);
        assert_eq!(suite.cases[0].max_turns, 10);
        assert_eq!(suite.cases[0].files[0].0, PathBuf::from("src/x.txt"));
        assert_eq!(suite.cases[1].match_mode, MatchMode::Exact);
        assert_eq!(suite.cases[1].expected_actions[0].args["path"], "x");
    }

    #[test]
    fn each_mistake_names_its_case_and_field() {
        assert_eq!(
            case_error(r#"{"cases": [{"id": "a", "user_prompt": "p"}, {"user_prompt": "q"}]}"#),
            "case #2: id: missing (a non-empty string)"
        );
        assert_eq!(
            case_error(r#"{"cases": [{"id": "a"}]}"#),
            "case a: user_prompt: missing (a non-empty string)"
        );
        assert_eq!(
            case_error(r#"{"cases": [{"id": "a", "user_prompt": "p", "match_mode": "most"}]}"#),
            "case a: match_mode: \"most\" is not one of ordered_subset, subset, exact, contains_any"
        );
        assert!(
            case_error(
                r#"{"cases": [{"id": "a", "user_prompt": "p",
                "expected_actions": [{"tool": "bash", "args_pattern": {"command": "(["}}]}]}"#
            )
            .starts_with(
                "case a: expected_actions[0].args_pattern.command: not a valid regular expression"
            )
        );
        assert_eq!(
            case_error(
                r#"{"cases": [{"id": "a", "user_prompt": "p",
                "setup": {"files": {"../escape": "x"}}}]}"#
            ),
            "case a: setup.files.../escape: must be a relative path inside the run's directory"
        );
        assert_eq!(
            case_error(
                r#"{"cases": [{"id": "a", "user_prompt": "p"}, {"id": "a", "user_prompt": "q"}]}"#
            ),
            "case a: id: used by an earlier case too"
        );
        assert_eq!(
            case_error(r#"{"cases": []}"#),
            "cases.json: cases: the list is empty"
        );
        assert!(case_error("{").starts_with("cases.json is not valid JSON"));
    }

    #[test]
    fn unknown_tools_are_listed_with_their_case() {
        let suite = parse(
            r#"{"cases": [{"id": "a", "user_prompt": "p",
              "expected_actions": [{"tool": "bash"}, {"tool": "teleport"}]}]}"#,
            "cases.json",
        )
        .unwrap();
        let known: BTreeSet<String> = ["bash".to_owned()].into();
        assert_eq!(unknown_tools(&suite, &known), vec![("a", "teleport")]);
    }
}
