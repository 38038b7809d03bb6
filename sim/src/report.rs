//! What a run measured, from outside the nodes: what was injected, which `turn_complete`
//! events came back and when, what was left in the queues. Printed as a table, written as
//! JSON and drawn as an SVG plot.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

/// The latency distribution, in seconds (queueing included).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Mean.
    pub mean: f64,
    /// Maximum.
    pub max: f64,
}

/// Throughput over the scenario window.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Throughput {
    /// Messages injected per second.
    pub messages_per_sec: f64,
    /// Turns completed per second.
    pub turns_per_sec: f64,
}

/// The steady part of a run's load: from a quarter into the injection window to its end, when
/// the cluster has warmed up and no drain tail counts. Throughput over the whole scenario
/// window includes that tail (the turns of the last second still take their latency to come
/// back), so it reads low; this does not. Sustaining a rate means completing what is injected
/// while the sends still unanswered stay level and latency does not climb.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SteadyState {
    /// Start of the window, seconds since the scenario began.
    pub from: f64,
    /// End of the window (the last injection).
    pub to: f64,
    /// Messages injected per second within it.
    pub messages_per_sec: f64,
    /// Turns completed per second within it.
    pub turns_per_sec: f64,
    /// Sends injected and not yet completed at its start.
    pub outstanding_at_start: u64,
    /// The same at its end: grows when the cluster falls behind.
    pub outstanding_at_end: u64,
    /// Median latency of the turns completed in its first third.
    pub p50_first_third: f64,
    /// Median latency of the turns completed in its last third: climbs when work queues up.
    pub p50_last_third: f64,
}

/// The steady state of a load (`None` when it lasted under 4 s: no steady part to speak of).
/// `sends` are the injection times of the sends, `completed` their (completion time, latency).
pub fn steady_state(
    injected: &[f64],
    sends: &[f64],
    completed: &[(f64, f64)],
) -> Option<SteadyState> {
    let first = injected.iter().copied().reduce(f64::min)?;
    let last = injected.iter().copied().reduce(f64::max)?;
    if last - first < 4.0 {
        return None;
    }
    let from = first + (last - first) / 4.0;
    let length = last - from;
    let within = |t: f64| t > from && t <= last;
    let outstanding = |at: f64| {
        let sent = sends.iter().filter(|t| **t <= at).count();
        let done = completed.iter().filter(|(t, _)| *t <= at).count();
        sent.saturating_sub(done) as u64
    };
    let p50_between = |a: f64, b: f64| {
        let mut l: Vec<f64> = completed
            .iter()
            .filter(|(t, _)| *t > a && *t <= b)
            .map(|(_, l)| *l)
            .collect();
        l.sort_by(f64::total_cmp);
        percentile(&l, 0.5)
    };
    let third = length / 3.0;
    Some(SteadyState {
        from: round(from),
        to: round(last),
        messages_per_sec: round(injected.iter().filter(|t| within(**t)).count() as f64 / length),
        turns_per_sec: round(completed.iter().filter(|(t, _)| within(*t)).count() as f64 / length),
        outstanding_at_start: outstanding(from),
        outstanding_at_end: outstanding(last),
        p50_first_third: p50_between(from, from + third),
        p50_last_third: p50_between(last - third, last),
    })
}

/// How the work spread over the nodes.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Utilization {
    /// Mean open workstreams per live node, at the end of the run.
    pub mean_ws_per_node: f64,
    /// Most open workstreams on one node, at the end of the run.
    pub max_ws_per_node: usize,
    /// Live nodes without a workstream, at the end of the run.
    pub nodes_with_zero_ws: usize,
    /// Fewest turns completed by a node.
    pub min_turns_per_node: u64,
    /// Most turns completed by a node.
    pub max_turns_per_node: u64,
    /// Nodes that completed at least one turn.
    pub nodes_with_turns: usize,
}

/// One second (or one bucket) of the run, for the plot.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bucket {
    /// Start of the bucket, seconds since the scenario began.
    pub t: f64,
    /// Messages injected.
    pub injected: u64,
    /// Turns completed.
    pub turns: u64,
    /// Median latency of those turns.
    pub p50: f64,
    /// 99th percentile latency of those turns.
    pub p99: f64,
}

/// Measurements of the machine running the simulation (not reproducible).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Host {
    /// Wall-clock seconds of the whole run.
    pub wall_seconds: f64,
    /// Wall-clock seconds to start every node.
    pub startup_seconds: f64,
    /// Process CPU seconds (user + system) of the whole run.
    pub cpu_seconds: f64,
    /// Process CPU milliseconds per completed turn.
    pub cpu_ms_per_turn: f64,
    /// Redis commands processed during the run (Redis mode).
    pub redis_commands: Option<u64>,
    /// Redis commands per completed turn (Redis mode; load generator and observer included).
    pub redis_commands_per_turn: Option<f64>,
}

/// The report of one run.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Report {
    /// The scenario.
    pub scenario: String,
    /// `memory` or `redis`.
    pub transport: String,
    /// Nodes started.
    pub nodes: usize,
    /// The seed.
    pub seed: u64,
    /// Messages injected (sends, creates, closes).
    pub messages_injected: u64,
    /// Turns whose `turn_complete` came back.
    pub total_turns: u64,
    /// Messages a node refused (an error `ack`, e.g. every workstream busy).
    pub rejections: u64,
    /// `error` events on the global channel.
    pub total_errors: u64,
    /// Messages still waiting in a queue at the end.
    pub backlog: u64,
    /// Messages still in flight on a node at the end.
    pub in_flight: u64,
    /// Messages dead-lettered.
    pub dead_letters: u64,
    /// Injected sends neither completed, refused, queued nor in flight: lost.
    pub lost_messages: u64,
    /// Turns completed more than once (a node presumed dead finished it too).
    pub duplicate_turns: u64,
    /// Seconds from the first injection to the last completion.
    pub duration_seconds: f64,
    /// Throughput over the scenario window.
    pub throughput: Throughput,
    /// Throughput in the steady part of the load (rate scenarios of 4 s or more).
    pub steady_state: Option<SteadyState>,
    /// Injection to `turn_complete`.
    pub latency: Latency,
    /// Spread over the nodes.
    pub utilization: Utilization,
    /// Nodes killed.
    pub node_kills: u64,
    /// Nodes cut off from the transport for a while.
    pub partitions: u64,
    /// Times Redis went down and came back (every link cut, in memory).
    pub redis_restarts: u64,
    /// Turns completed per node.
    pub turns_per_node: BTreeMap<String, u64>,
    /// The run over time.
    pub timeline: Vec<Bucket>,
    /// Host measurements (left out when comparing runs).
    pub host: Host,
}

/// One line of the plot: panel top, panel maximum, colour, legend, value of a bucket.
type Series<'a> = (f64, f64, &'a str, &'a str, Box<dyn Fn(&Bucket) -> f64 + 'a>);

/// Rounds to 0.1 ms so reports compare byte for byte.
pub fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// The `p` percentile of sorted values (0.4.1's index `int(n·p)`).
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p) as usize).min(sorted.len() - 1);
    round(sorted[i])
}

/// The latency summary of `values` (sorted in place).
pub fn latency(values: &mut [f64]) -> Latency {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Latency {
        p50: percentile(values, 0.50),
        p90: percentile(values, 0.90),
        p99: percentile(values, 0.99),
        mean: if n == 0 {
            0.0
        } else {
            round(values.iter().sum::<f64>() / n as f64)
        },
        max: values.last().copied().map_or(0.0, round),
    }
}

/// Buckets `(time, latency)` completions and injection times into `width`-second buckets.
pub fn timeline(injected: &[f64], completed: &[(f64, f64)], width: f64) -> Vec<Bucket> {
    let width = width.max(1e-3);
    let end = injected
        .iter()
        .copied()
        .chain(completed.iter().map(|(t, _)| *t))
        .fold(0.0_f64, f64::max);
    let count = (end / width).floor() as usize + 1;
    let mut buckets: Vec<(u64, Vec<f64>)> = vec![(0, Vec::new()); count];
    for t in injected {
        buckets[((t / width) as usize).min(count - 1)].0 += 1;
    }
    for (t, l) in completed {
        buckets[((t / width) as usize).min(count - 1)].1.push(*l);
    }
    buckets
        .into_iter()
        .enumerate()
        .map(|(i, (injected, mut lat))| {
            lat.sort_by(f64::total_cmp);
            Bucket {
                t: round(i as f64 * width),
                injected,
                turns: lat.len() as u64,
                p50: percentile(&lat, 0.5),
                p99: percentile(&lat, 0.99),
            }
        })
        .collect()
}

/// Turns-per-node spread (over every started node).
pub fn spread(turns: &BTreeMap<String, u64>, nodes: &[String]) -> (u64, u64, usize) {
    let counts: Vec<u64> = nodes
        .iter()
        .map(|n| turns.get(n).copied().unwrap_or(0))
        .collect();
    (
        counts.iter().copied().min().unwrap_or(0),
        counts.iter().copied().max().unwrap_or(0),
        counts.iter().filter(|c| **c > 0).count(),
    )
}

impl Report {
    /// The report as pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
    }

    /// The report without its host measurements, for comparing runs.
    pub fn reproducible_json(&self) -> String {
        let mut copy = self.clone();
        copy.host = Host::default();
        copy.to_json()
    }

    /// A table for the terminal.
    pub fn table(&self) -> String {
        let mut t = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(t, "  {k:<28} {v}");
        };
        row(
            "scenario",
            format!("{} ({} transport)", self.scenario, self.transport),
        );
        row("nodes", self.nodes.to_string());
        row("messages injected", self.messages_injected.to_string());
        row("turns completed", self.total_turns.to_string());
        row("rejections", self.rejections.to_string());
        row("errors", self.total_errors.to_string());
        row("backlog left", self.backlog.to_string());
        row("in flight left", self.in_flight.to_string());
        row("dead letters", self.dead_letters.to_string());
        row("lost messages", self.lost_messages.to_string());
        row("duplicate turns", self.duplicate_turns.to_string());
        row("node kills", self.node_kills.to_string());
        row("partitions", self.partitions.to_string());
        row("redis restarts", self.redis_restarts.to_string());
        row("duration", format!("{:.2} s", self.duration_seconds));
        row(
            "throughput",
            format!(
                "{:.1} msg/s in, {:.1} turns/s out",
                self.throughput.messages_per_sec, self.throughput.turns_per_sec
            ),
        );
        if let Some(s) = &self.steady_state {
            row(
                "steady state",
                format!(
                    "{:.1} s to {:.1} s: {:.1} msg/s in, {:.1} turns/s out",
                    s.from, s.to, s.messages_per_sec, s.turns_per_sec
                ),
            );
            row(
                "  sends unanswered",
                format!(
                    "{} then {}; p50 {:.3} s then {:.3} s",
                    s.outstanding_at_start,
                    s.outstanding_at_end,
                    s.p50_first_third,
                    s.p50_last_third
                ),
            );
        }
        let l = &self.latency;
        row(
            "latency p50/p90/p99/max",
            format!(
                "{:.3} / {:.3} / {:.3} / {:.3} s (mean {:.3})",
                l.p50, l.p90, l.p99, l.max, l.mean
            ),
        );
        let u = &self.utilization;
        row(
            "workstreams per node",
            format!(
                "mean {:.2}, max {}, {} nodes with none",
                u.mean_ws_per_node, u.max_ws_per_node, u.nodes_with_zero_ws
            ),
        );
        row(
            "turns per node",
            format!(
                "min {}, max {}, {} nodes with turns",
                u.min_turns_per_node, u.max_turns_per_node, u.nodes_with_turns
            ),
        );
        let h = &self.host;
        row(
            "host",
            format!(
                "{:.2} s wall ({:.2} s to start nodes), {:.2} s CPU, {:.3} ms CPU/turn",
                h.wall_seconds, h.startup_seconds, h.cpu_seconds, h.cpu_ms_per_turn
            ),
        );
        if let (Some(c), Some(per)) = (h.redis_commands, h.redis_commands_per_turn) {
            row("redis commands", format!("{c} ({per:.1} per turn)"));
        }
        t
    }

    /// An SVG plot of throughput (turns/s, injected msg/s) and latency (p50, p99) over time.
    pub fn svg(&self) -> String {
        let (w, h, pad) = (900.0, 520.0, 60.0);
        let panel = (h - 3.0 * pad) / 2.0;
        let buckets = &self.timeline;
        let width = buckets
            .get(1)
            .map_or(1.0, |b| (b.t - buckets[0].t).max(1e-3));
        let t_max = buckets.last().map_or(1.0, |b| b.t + width).max(1e-3);
        let rate = |n: u64| n as f64 / width;
        let y_rate = buckets
            .iter()
            .map(|b| rate(b.turns).max(rate(b.injected)))
            .fold(1.0, f64::max);
        let y_lat = buckets.iter().map(|b| b.p99).fold(1e-3, f64::max);
        let x = |t: f64| pad + (t / t_max) * (w - 2.0 * pad);
        let line = |top: f64, max: f64, points: &mut dyn Iterator<Item = (f64, f64)>| {
            points
                .map(|(t, v)| {
                    format!(
                        "{:.1},{:.1}",
                        x(t + width / 2.0),
                        top + panel - v / max * panel
                    )
                })
                .collect::<Vec<_>>()
                .join(" ")
        };
        let top1 = pad;
        let top2 = 2.0 * pad + panel;
        let mut s = String::new();
        let _ = write!(
            s,
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="{pad}" y="24" font-size="15">turnstone-sim: {} on {} nodes ({} transport)</text>
"##,
            self.scenario, self.nodes, self.transport
        );
        for (top, label, max, unit) in [
            (top1, "throughput", y_rate, "/s"),
            (top2, "latency", y_lat, " s"),
        ] {
            let _ = write!(
                s,
                r##"<rect x="{pad}" y="{top}" width="{}" height="{panel}" fill="none" stroke="#999"/>
<text x="{pad}" y="{}">{label}</text>
<text x="{}" y="{}" text-anchor="end">{}{unit}</text>
<text x="{}" y="{}" text-anchor="end">0</text>
"##,
                w - 2.0 * pad,
                top - 6.0,
                pad - 4.0,
                top + 10.0,
                axis_value(max),
                pad - 4.0,
                top + panel,
            );
        }
        let series: [Series<'_>; 4] = [
            (
                top1,
                y_rate,
                "#1f77b4",
                "turns/s",
                Box::new(|b| rate(b.turns)),
            ),
            (
                top1,
                y_rate,
                "#aaaaaa",
                "injected msg/s",
                Box::new(|b| rate(b.injected)),
            ),
            (top2, y_lat, "#2ca02c", "p50", Box::new(|b| b.p50)),
            (top2, y_lat, "#d62728", "p99", Box::new(|b| b.p99)),
        ];
        for (i, (top, max, color, name, value)) in series.iter().enumerate() {
            let points = line(*top, *max, &mut buckets.iter().map(|b| (b.t, value(b))));
            let _ = write!(
                s,
                r##"<polyline fill="none" stroke="{color}" stroke-width="1.5" points="{points}"/>
<text x="{}" y="{}" fill="{color}">{name}</text>
"##,
                w - pad - 110.0,
                top + 16.0 + 14.0 * (i % 2) as f64,
            );
        }
        let _ = write!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">seconds since the first message ({t_max:.0} s)</text>
</svg>
"##,
            w / 2.0,
            h - 16.0
        );
        s
    }
}

/// An axis' top value, as precise as its size needs and short enough for the margin
/// ("3545" rather than "3545.00").
fn axis_value(max: f64) -> String {
    if max >= 100.0 {
        format!("{max:.0}")
    } else if max >= 10.0 {
        format!("{max:.1}")
    } else {
        format!("{max:.2}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_index_n_times_p() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = latency(&mut v);
        assert_eq!((l.p50, l.p90, l.p99, l.max), (51.0, 91.0, 100.0, 100.0));
        assert_eq!(l.mean, 50.5);
        assert_eq!(latency(&mut []).p99, 0.0);
    }

    /// 100 sends a second for 20 s; each completes after `latency(i)`.
    fn load(latency: impl Fn(usize) -> f64) -> (Vec<f64>, Vec<(f64, f64)>) {
        let sends: Vec<f64> = (0..2000).map(|i| i as f64 / 100.0).collect();
        let done = sends
            .iter()
            .enumerate()
            .map(|(i, t)| (t + latency(i), latency(i)))
            .collect();
        (sends, done)
    }

    #[test]
    fn the_steady_state_leaves_out_warm_up_and_drain() {
        // Kept up: a flat 1.5 s. Over the whole window (to the last completion) it reads
        // 2000 / 21.5 s = 93/s; in the steady part it is the rate injected.
        let (sends, done) = load(|_| 1.5);
        let s = steady_state(&sends, &sends, &done).unwrap();
        assert_eq!((s.from, s.to), (4.9975, 19.99));
        assert!((s.turns_per_sec - 100.0).abs() < 1.0, "{s:?}");
        assert!((s.messages_per_sec - 100.0).abs() < 1.0, "{s:?}");
        assert_eq!(s.outstanding_at_start, s.outstanding_at_end);
        assert_eq!((s.p50_first_third, s.p50_last_third), (1.5, 1.5));
        // Falling behind: each send waits 10 ms longer than the one before (it completes at
        // 50/s), so unanswered sends pile up and latency climbs.
        let (sends, done) = load(|i| 1.5 + i as f64 * 0.01);
        let s = steady_state(&sends, &sends, &done).unwrap();
        assert!((s.turns_per_sec - 50.0).abs() < 1.0, "{s:?}");
        assert!(s.outstanding_at_end > s.outstanding_at_start + 700, "{s:?}");
        assert!(s.p50_last_third > s.p50_first_third + 4.0, "{s:?}");
        // A burst has no steady part.
        assert_eq!(steady_state(&[0.0, 0.5], &[0.0, 0.5], &[(1.0, 1.0)]), None);
    }

    #[test]
    fn the_timeline_buckets_injections_and_completions() {
        let b = timeline(&[0.1, 0.2, 1.5], &[(0.5, 0.4), (1.2, 1.0), (2.9, 2.0)], 1.0);
        assert_eq!(b.len(), 3);
        assert_eq!((b[0].injected, b[0].turns), (2, 1));
        assert_eq!((b[1].injected, b[1].turns, b[1].p50), (1, 1, 1.0));
        assert_eq!((b[2].turns, b[2].p99), (1, 2.0));
        let report = Report {
            timeline: b,
            ..Report::default()
        };
        let svg = report.svg();
        assert!(svg.starts_with("<svg") && svg.contains("polyline") && svg.ends_with("</svg>\n"));
        // Axis tops as precise as their size needs, short enough for the margin.
        assert!(
            svg.contains(">2.00/s<") && svg.contains(">2.00 s<"),
            "{svg}"
        );
        assert_eq!(
            [axis_value(3545.0), axis_value(12.34), axis_value(0.5)],
            ["3545", "12.3", "0.50"]
        );
    }
}
