//! What a valid schedule is and when it fires (SPEC §3.3): five-field cron expressions read
//! in UTC or the schedule's IANA time zone, or one ISO-8601 time with an offset. Times are
//! kept as UTC `YYYY-MM-DDTHH:MM:SS`, which sorts as it reads, so "due" is a string
//! comparison in the database.

use chrono::{DateTime, NaiveDateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use serde_json::{Map, Value, json};
use turnstone_actors::storage::scheduled_task;

use crate::console::api::valid_node_id;

/// Longest name.
pub const MAX_NAME: usize = 256;
/// Longest description.
pub const MAX_DESCRIPTION: usize = 1024;
/// Longest model alias.
pub const MAX_MODEL: usize = 128;
/// Longest first message.
pub const MAX_MESSAGE: usize = 4096;
/// Longest cron expression.
pub const MAX_CRON: usize = 256;
/// Longest target (a node id).
pub const MAX_TARGET: usize = 256;
/// Longest retry window: a day.
pub const MAX_RETRY_WINDOW: i64 = 86_400;
/// Schedules a cluster may hold.
pub const MAX_SCHEDULES: u64 = 200;
/// Firing times a preview may list.
pub const MAX_PREVIEW: usize = 20;

/// A refused schedule: the message says which field and why (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RuleError(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, RuleError> {
    Err(RuleError(message.into()))
}

/// A UTC time as stored: `YYYY-MM-DDTHH:MM:SS`.
pub fn stored(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// A stored time read back.
pub fn parse_stored(s: &str) -> Option<DateTime<Utc>> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S")
        .ok()
        .map(|n| n.and_utc())
}

/// Parses a five-field cron expression (minute hour day-of-month month day-of-week).
pub fn parse_cron(expr: &str) -> Result<Cron, RuleError> {
    let fields = expr.split_whitespace().count();
    if fields != 5 && !expr.trim_start().starts_with('@') {
        return refuse(format!(
            "Invalid cron expression: {expr:?}: expected 5 fields (minute hour day month weekday), found {fields}"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(expr)
        .map_err(|e| RuleError(format!("Invalid cron expression: {expr:?}: {e}")))
}

/// Parses an IANA time zone name ("" is UTC).
pub fn parse_zone(name: &str) -> Result<Tz, RuleError> {
    if name.is_empty() {
        return Ok(Tz::UTC);
    }
    name.parse::<Tz>()
        .map_err(|_| RuleError(format!("Unknown time zone: {name:?}")))
}

/// Parses `at_time`: ISO-8601 with an offset (`Z` or `±HH:MM`).
pub fn parse_at(at: &str) -> Result<DateTime<Utc>, RuleError> {
    if let Ok(t) = DateTime::parse_from_rfc3339(at) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in [
        "%Y-%m-%dT%H:%M%:z",
        "%Y-%m-%d %H:%M:%S%:z",
        "%Y-%m-%d %H:%M%:z",
    ] {
        if let Ok(t) = DateTime::parse_from_str(at, format) {
            return Ok(t.with_timezone(&Utc));
        }
    }
    let naive = ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S"]
        .iter()
        .any(|f| NaiveDateTime::parse_from_str(at, f).is_ok());
    if naive {
        refuse("at_time must include a timezone offset (e.g. 2024-01-01T12:00:00Z or +00:00)")
    } else {
        refuse("at_time must be a valid ISO8601 timestamp with timezone")
    }
}

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Timing {
    /// On a cron expression, read in a time zone.
    Cron(Box<Cron>, Tz),
    /// Once.
    At(DateTime<Utc>),
}

impl Timing {
    /// The timing of `schedule_type` with its fields.
    pub fn parse(
        schedule_type: &str,
        cron_expr: &str,
        at_time: &str,
        timezone: &str,
    ) -> Result<Self, RuleError> {
        let zone = parse_zone(timezone)?;
        match schedule_type {
            "cron" if cron_expr.is_empty() => {
                refuse("cron_expr is required when schedule_type is 'cron'")
            }
            "cron" => Ok(Timing::Cron(Box::new(parse_cron(cron_expr)?), zone)),
            "at" if at_time.is_empty() => refuse("at_time is required when schedule_type is 'at'"),
            "at" => Ok(Timing::At(parse_at(at_time)?)),
            _ => refuse("schedule_type must be 'cron' or 'at'"),
        }
    }

    /// The first firing strictly after `now`; for `at`, its time whenever it is.
    pub fn next_after(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        match self {
            Timing::Cron(cron, zone) => cron
                .find_next_occurrence(&now.with_timezone(zone), false)
                .ok()
                .map(|t| t.with_timezone(&Utc)),
            Timing::At(t) => Some(*t),
        }
    }

    /// The next `count` firings after `now`.
    pub fn preview(&self, now: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        match self {
            Timing::Cron(cron, zone) => cron
                .iter_after(now.with_timezone(zone))
                .take(count)
                .map(|t| t.with_timezone(&Utc))
                .collect(),
            Timing::At(t) => (*t > now).then_some(*t).into_iter().collect(),
        }
    }
}

/// The editable fields of a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft {
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// `cron` or `at`.
    pub schedule_type: String,
    /// Cron expression.
    pub cron_expr: String,
    /// One-off time.
    pub at_time: String,
    /// IANA zone ("" = UTC).
    pub timezone: String,
    /// `auto`, `pool`, `all` or a node id.
    pub target_mode: String,
    /// Model alias.
    pub model: String,
    /// First message.
    pub initial_message: String,
    /// Approve every tool call.
    pub auto_approve: bool,
    /// Tools approved without asking.
    pub auto_approve_tools: Vec<String>,
    /// Fires.
    pub enabled: bool,
    /// Seconds to retry a firing that found no node.
    pub retry_window: i64,
}

impl Default for Draft {
    fn default() -> Self {
        Self {
            name: String::new(),
            description: String::new(),
            schedule_type: String::new(),
            cron_expr: String::new(),
            at_time: String::new(),
            timezone: String::new(),
            target_mode: "auto".into(),
            model: String::new(),
            initial_message: String::new(),
            auto_approve: false,
            auto_approve_tools: Vec::new(),
            enabled: true,
            retry_window: 0,
        }
    }
}

/// Which kinds of fields an update touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touched {
    /// `schedule_type`, `cron_expr`, `at_time` or `timezone`.
    pub timing: bool,
    /// `enabled`.
    pub enabled: bool,
}

fn text(body: &Map<String, Value>, name: &str, max: usize) -> Result<Option<String>, RuleError> {
    match body.get(name) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(String::new())),
        Some(Value::String(s)) => {
            let s = s.trim();
            if s.chars().count() > max {
                refuse(format!("{name} must be at most {max} characters"))
            } else {
                Ok(Some(s.to_owned()))
            }
        }
        Some(_) => refuse(format!("{name} must be a string")),
    }
}

fn flag(body: &Map<String, Value>, name: &str) -> Result<Option<bool>, RuleError> {
    match body.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => refuse(format!("{name} must be true or false")),
    }
}

fn tools(body: &Map<String, Value>) -> Result<Option<Vec<String>>, RuleError> {
    match body.get("auto_approve_tools") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if !s.trim().is_empty() && !s.contains(',') => {
                    Ok(s.trim().to_owned())
                }
                _ => refuse("auto_approve_tools must be a list of tool names"),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => refuse("auto_approve_tools must be a list of tool names"),
    }
}

impl Draft {
    /// The draft of a stored schedule.
    pub fn of(task: &scheduled_task::Model) -> Self {
        Self {
            name: task.name.clone(),
            description: task.description.clone(),
            schedule_type: task.schedule_type.clone(),
            cron_expr: task.cron_expr.clone(),
            at_time: task.at_time.clone(),
            timezone: task.timezone.clone(),
            target_mode: task.target_mode.clone(),
            model: task.model.clone(),
            initial_message: task.initial_message.clone(),
            auto_approve: task.auto_approve != 0,
            auto_approve_tools: split_tools(&task.auto_approve_tools),
            enabled: task.enabled != 0,
            retry_window: i64::from(task.retry_window),
        }
    }

    /// Applies the fields present in `body`, each checked; says which kinds it touched.
    pub fn apply(&mut self, body: &Value) -> Result<Touched, RuleError> {
        let Value::Object(body) = body else {
            return refuse("the body must be a JSON object");
        };
        let mut touched = Touched::default();
        if let Some(v) = text(body, "name", MAX_NAME)? {
            self.name = v;
        }
        if let Some(v) = text(body, "description", MAX_DESCRIPTION)? {
            self.description = v;
        }
        for (name, max) in [
            ("schedule_type", 8),
            ("cron_expr", MAX_CRON),
            ("at_time", 64),
            ("timezone", 64),
        ] {
            if let Some(v) = text(body, name, max)? {
                touched.timing = true;
                match name {
                    "schedule_type" => self.schedule_type = v,
                    "cron_expr" => self.cron_expr = v,
                    "at_time" => self.at_time = v,
                    _ => self.timezone = v,
                }
            }
        }
        if let Some(v) = text(body, "target_mode", MAX_TARGET)? {
            self.target_mode = v;
        }
        if let Some(v) = text(body, "model", MAX_MODEL)? {
            self.model = v;
        }
        if let Some(v) = text(body, "initial_message", MAX_MESSAGE)? {
            self.initial_message = v;
        }
        if let Some(v) = flag(body, "auto_approve")? {
            self.auto_approve = v;
        }
        if let Some(v) = tools(body)? {
            self.auto_approve_tools = v;
        }
        if let Some(v) = flag(body, "enabled")? {
            touched.enabled = true;
            self.enabled = v;
        }
        match body.get("retry_window") {
            None | Some(Value::Null) => {}
            Some(v) => match v.as_i64() {
                Some(secs) if (0..=MAX_RETRY_WINDOW).contains(&secs) => self.retry_window = secs,
                _ => {
                    return refuse(format!(
                        "retry_window must be a whole number of seconds from 0 to {MAX_RETRY_WINDOW}"
                    ));
                }
            },
        }
        Ok(touched)
    }

    /// Checks the whole draft; its timing, when valid.
    pub fn check(&self) -> Result<Timing, RuleError> {
        if self.name.is_empty() {
            return refuse("name is required");
        }
        if self.initial_message.is_empty() {
            return refuse("initial_message is required");
        }
        let target = self.target_mode.as_str();
        if target.is_empty() {
            return refuse("target_mode is required");
        }
        if !matches!(target, "auto" | "pool" | "all") && !valid_node_id(target) {
            return refuse("target_mode must be auto, pool, all or a node id");
        }
        Timing::parse(
            &self.schedule_type,
            &self.cron_expr,
            &self.at_time,
            &self.timezone,
        )
    }

    /// The next run of an enabled draft with `timing`, checking that a one-off time is
    /// still ahead; "" when disabled.
    pub fn next_run(&self, timing: &Timing, now: DateTime<Utc>) -> Result<String, RuleError> {
        if !self.enabled {
            return Ok(String::new());
        }
        if let Timing::At(t) = timing
            && *t <= now
        {
            return refuse("at_time must be in the future");
        }
        Ok(timing.next_after(now).map(stored).unwrap_or_default())
    }

    /// Writes the draft's fields into a stored schedule.
    pub fn write(self, task: &mut scheduled_task::Model) {
        task.name = self.name;
        task.description = self.description;
        task.schedule_type = self.schedule_type;
        task.cron_expr = self.cron_expr;
        task.at_time = self.at_time;
        task.timezone = self.timezone;
        task.target_mode = self.target_mode;
        task.model = self.model;
        task.initial_message = self.initial_message;
        task.auto_approve = i32::from(self.auto_approve);
        task.auto_approve_tools = self.auto_approve_tools.join(",");
        task.enabled = i32::from(self.enabled);
        task.retry_window = i32::try_from(self.retry_window).unwrap_or(0);
    }
}

/// The tools of the stored comma-separated list.
pub fn split_tools(csv: &str) -> Vec<String> {
    csv.split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

/// A schedule as the API shows it (0.4.1's fields; flags as booleans, tools as a list).
pub fn to_json(task: &scheduled_task::Model) -> Value {
    json!({
        "task_id": task.task_id,
        "name": task.name,
        "description": task.description,
        "schedule_type": task.schedule_type,
        "cron_expr": task.cron_expr,
        "at_time": task.at_time,
        "timezone": task.timezone,
        "target_mode": task.target_mode,
        "model": task.model,
        "initial_message": task.initial_message,
        "auto_approve": task.auto_approve != 0,
        "auto_approve_tools": split_tools(&task.auto_approve_tools),
        "enabled": task.enabled != 0,
        "retry_window": task.retry_window,
        "created_by": task.created_by,
        "last_run": task.last_run,
        "next_run": task.next_run.clone().unwrap_or_default(),
        "created": task.created,
        "updated": task.updated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        parse_stored(s).unwrap()
    }

    #[test]
    fn cron_fires_after_now_in_its_zone() {
        let now = at("2026-12-06T21:59:30");
        let utc = Timing::parse("cron", "0 9 * * 1-5", "", "").unwrap();
        // Sunday evening → Monday 09:00 UTC.
        assert_eq!(
            utc.next_after(now).map(stored).unwrap(),
            "2026-12-07T09:00:00"
        );
        let tokyo = Timing::parse("cron", "0 9 * * 1-5", "", "Asia/Tokyo").unwrap();
        // Monday 09:00 in Tokyo is Monday 00:00 UTC.
        assert_eq!(
            tokyo.next_after(now).map(stored).unwrap(),
            "2026-12-07T00:00:00"
        );
        let every = Timing::parse("cron", "*/15 * * * *", "", "").unwrap();
        let times: Vec<String> = every.preview(now, 3).into_iter().map(stored).collect();
        assert_eq!(
            times,
            [
                "2026-12-06T22:00:00",
                "2026-12-06T22:15:00",
                "2026-12-06T22:30:00"
            ]
        );
        // Exactly on a firing: the next one, not the same.
        assert_eq!(
            every
                .next_after(at("2026-12-06T22:00:00"))
                .map(stored)
                .unwrap(),
            "2026-12-06T22:15:00"
        );
    }

    #[test]
    fn a_zone_keeps_local_time_across_daylight_saving() {
        // 09:00 in New York is 14:00 UTC in winter and 13:00 UTC in summer.
        let ny = Timing::parse("cron", "0 9 * * *", "", "America/New_York").unwrap();
        assert_eq!(
            ny.next_after(at("2027-03-13T12:00:00"))
                .map(stored)
                .unwrap(),
            "2027-03-13T14:00:00"
        );
        assert_eq!(
            ny.next_after(at("2027-03-14T12:00:00"))
                .map(stored)
                .unwrap(),
            "2027-03-14T13:00:00"
        );
    }

    #[test]
    fn bad_timings_are_named() {
        let cases = [
            (("cron", "61 * * * *", "", ""), "Invalid cron expression"),
            (("cron", "* * * *", "", ""), "expected 5 fields"),
            (("cron", "0 0 * * * *", "", ""), "expected 5 fields"),
            (("cron", "", "", ""), "cron_expr is required"),
            (("at", "", "2026-12-07T10:00:00", ""), "timezone offset"),
            (("at", "", "tomorrow", ""), "valid ISO8601"),
            (("at", "", "", ""), "at_time is required"),
            (
                ("cron", "* * * * *", "", "Mars/Olympus"),
                "Unknown time zone",
            ),
            (("weekly", "", "", ""), "schedule_type must be"),
        ];
        for ((kind, cron, at_time, zone), expected) in cases {
            let err = Timing::parse(kind, cron, at_time, zone).unwrap_err();
            assert!(err.0.contains(expected), "{kind} {cron} {at_time}: {err}");
        }
        let t = Timing::parse("at", "", "2026-12-07T10:00:00+05:00", "").unwrap();
        assert_eq!(
            t.next_after(at("2026-12-06T00:00:00")).map(stored).unwrap(),
            "2026-12-07T05:00:00",
            "kept in UTC, so it is due at the right time"
        );
    }

    #[test]
    fn drafts_check_every_field() {
        let now = at("2026-12-06T12:00:00");
        let mut d = Draft::default();
        d.apply(&json!({"name": "nightly", "schedule_type": "at",
            "at_time": "2026-12-06T11:00:00Z", "initial_message": "report"}))
            .unwrap();
        let timing = d.check().unwrap();
        assert_eq!(
            d.next_run(&timing, now).unwrap_err().0,
            "at_time must be in the future"
        );
        d.enabled = false;
        assert_eq!(d.next_run(&timing, now).unwrap(), "", "disabled: never");

        for (body, expected) in [
            (json!({"name": "x".repeat(257)}), "name must be at most 256"),
            (
                json!({"initial_message": "x".repeat(4097)}),
                "initial_message must be at most 4096",
            ),
            (json!({"name": 5}), "name must be a string"),
            (json!({"enabled": "yes"}), "enabled must be true or false"),
            (
                json!({"auto_approve_tools": "bash"}),
                "auto_approve_tools must be a list",
            ),
            (json!({"retry_window": -1}), "retry_window must be"),
            (json!([1]), "JSON object"),
        ] {
            let err = Draft::default().apply(&body).unwrap_err();
            assert!(err.0.contains(expected), "{body}: {err}");
        }
        let mut d = Draft::default();
        d.apply(
            &json!({"name": "n", "initial_message": "m", "schedule_type": "cron",
            "cron_expr": "* * * * *", "target_mode": "../etc"}),
        )
        .unwrap();
        assert!(d.check().unwrap_err().0.contains("target_mode"));
        let touched = d.apply(&json!({"timezone": "Europe/Paris"})).unwrap();
        assert!(touched.timing && !touched.enabled);
    }
}
