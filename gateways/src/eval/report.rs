//! What `turnstone-eval` shows and writes: the table at the end, and an HTML page with SVG
//! charts of the score per iteration and per case.

use std::fmt::Write as _;

use html_escape::encode_text;

use super::cases::{Case, MatchMode};
use super::iteration::Iteration;

fn mode_name(mode: MatchMode) -> &'static str {
    match mode {
        MatchMode::OrderedSubset => "ordered_subset",
        MatchMode::Subset => "subset",
        MatchMode::Exact => "exact",
        MatchMode::ContainsAny => "contains_any",
    }
}

fn counted(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn percent(rate: f64) -> String {
    format!("{:.0}%", rate * 100.0)
}

/// The iteration with the highest pass rate (the earliest of equals).
pub fn best(iterations: &[Iteration]) -> Option<&Iteration> {
    iterations.iter().reduce(|best, it| {
        if it.aggregate.overall_pass_rate > best.aggregate.overall_pass_rate {
            it
        } else {
            best
        }
    })
}

/// The table printed at the end: one row per case, a pass-rate column per iteration.
pub fn table(cases: &[Case], iterations: &[Iteration]) -> String {
    let mut rows: Vec<Vec<String>> = Vec::new();
    let mut head = vec!["case".to_owned(), "mode".to_owned()];
    head.extend(iterations.iter().map(|it| format!("iter {}", it.iteration)));
    head.push("last runs".to_owned());
    rows.push(head);
    for case in cases {
        let mut row = vec![case.id.clone(), mode_name(case.match_mode).to_owned()];
        for it in iterations {
            row.push(
                it.cases
                    .get(&case.id)
                    .map_or_else(|| "-".to_owned(), |c| percent(c.pass_rate)),
            );
        }
        let last = iterations
            .last()
            .and_then(|it| it.cases.get(&case.id))
            .map(|c| {
                c.runs
                    .iter()
                    .map(|r| if r.score.pass { "✓" } else { "✗" })
                    .collect::<String>()
            })
            .unwrap_or_default();
        row.push(last);
        rows.push(row);
    }
    let mut total = vec!["overall".to_owned(), String::new()];
    for it in iterations {
        let (lo, hi) = it.aggregate.overall_pass_interval;
        total.push(format!(
            "{} [{}–{}]",
            percent(it.aggregate.overall_pass_rate),
            percent(lo),
            percent(hi)
        ));
    }
    total.push(String::new());
    rows.push(total);
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| {
            rows.iter()
                .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (n, row) in rows.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell}{}", " ".repeat(w - cell.chars().count())))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if n == 0 || n + 2 == rows.len() {
            let rule: Vec<String> = widths.iter().map(|w| "─".repeat(*w)).collect();
            out.push_str(&rule.join("  "));
            out.push('\n');
        }
    }
    out
}

/// A line chart of the overall pass rate per iteration, its 95 % interval as a band.
fn score_chart(iterations: &[Iteration]) -> String {
    let (w, h, left, top, bottom) = (560.0, 220.0, 44.0, 14.0, 30.0);
    let plot_w = w - left - 16.0;
    let plot_h = h - top - bottom;
    let n = iterations.len().max(1);
    let x = |i: usize| {
        if n == 1 {
            left + plot_w / 2.0
        } else {
            left + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |rate: f64| top + plot_h * (1.0 - rate);
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" role=\"img\" aria-label=\"Overall pass rate per iteration\" \
         class=\"chart\">"
    );
    for tick in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let _ = write!(
            svg,
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{y0:.1}\" y2=\"{y0:.1}\" class=\"grid\"/>\
             <text x=\"{}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            y(tick) + 4.0,
            percent(tick),
            y0 = y(tick),
        );
    }
    let upper: Vec<String> = iterations
        .iter()
        .enumerate()
        .map(|(i, it)| format!("{:.1},{:.1}", x(i), y(it.aggregate.overall_pass_interval.1)))
        .collect();
    let lower: Vec<String> = iterations
        .iter()
        .enumerate()
        .rev()
        .map(|(i, it)| format!("{:.1},{:.1}", x(i), y(it.aggregate.overall_pass_interval.0)))
        .collect();
    let _ = write!(
        svg,
        "<polygon class=\"band\" points=\"{} {}\"/>",
        upper.join(" "),
        lower.join(" ")
    );
    let line: Vec<String> = iterations
        .iter()
        .enumerate()
        .map(|(i, it)| format!("{:.1},{:.1}", x(i), y(it.aggregate.overall_pass_rate)))
        .collect();
    let _ = write!(
        svg,
        "<polyline class=\"line\" points=\"{}\"/>",
        line.join(" ")
    );
    for (i, it) in iterations.iter().enumerate() {
        let rate = it.aggregate.overall_pass_rate;
        let (lo, hi) = it.aggregate.overall_pass_interval;
        let _ = write!(
            svg,
            "<line class=\"whisker\" x1=\"{x0:.1}\" x2=\"{x0:.1}\" y1=\"{:.1}\" y2=\"{:.1}\"/>",
            y(lo),
            y(hi),
            x0 = x(i)
        );
        let _ = write!(
            svg,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"4\" class=\"dot\"><title>iteration {}: {}</title></circle>\
             <text x=\"{:.1}\" y=\"{}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            x(i),
            y(rate),
            it.iteration,
            percent(rate),
            x(i),
            h - 10.0,
            it.iteration
        );
    }
    svg.push_str("</svg>");
    svg
}

/// A grid: a row per case, a cell per iteration coloured by pass rate.
fn case_grid(cases: &[Case], iterations: &[Iteration]) -> String {
    let (label_w, cell_w, cell_h) = (180.0, 64.0, 26.0);
    let w = label_w + cell_w * iterations.len().max(1) as f64 + 8.0;
    let h = cell_h * (cases.len() as f64 + 1.0) + 8.0;
    let mut svg = format!(
        "<svg viewBox=\"0 0 {w} {h}\" width=\"{w}\" role=\"img\" \
         aria-label=\"Pass rate per case and iteration\" class=\"grid-chart\">"
    );
    for (j, it) in iterations.iter().enumerate() {
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"17\" class=\"axis\" text-anchor=\"middle\">iter {}</text>",
            label_w + cell_w * (j as f64 + 0.5),
            it.iteration
        );
    }
    for (i, case) in cases.iter().enumerate() {
        let row_y = cell_h * (i as f64 + 1.0);
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"label\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            row_y + 17.0,
            encode_text(&case.id)
        );
        for (j, it) in iterations.iter().enumerate() {
            let rate = it.cases.get(&case.id).map_or(0.0, |c| c.pass_rate);
            // Red (0) to green (1) through amber.
            let hue = (rate * 120.0).round();
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{}\" height=\"{}\" rx=\"3\" \
                 fill=\"hsl({hue} 60% 40%)\"><title>{}: {}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"cell\" text-anchor=\"middle\">{}</text>",
                label_w + cell_w * j as f64 + 2.0,
                row_y + 2.0,
                cell_w - 4.0,
                cell_h - 4.0,
                encode_text(&case.id),
                percent(rate),
                label_w + cell_w * (j as f64 + 0.5),
                row_y + 17.0,
                percent(rate)
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The HTML report.
pub fn html(model: &str, suite: &str, cases: &[Case], iterations: &[Iteration]) -> String {
    let best = best(iterations);
    let mut page = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>turnstone-eval report</title><style>\
         body{font:15px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;\
         color:#1d2330;background:#fbfbfd}h1{font-size:1.4rem}h2{font-size:1.1rem;margin-top:2rem}\
         .chart{width:100%;max-width:40rem;height:auto}.grid-chart{max-width:100%;height:auto}.grid{stroke:#dde1ea}\
         .axis{font-size:11px;fill:#5b6475}.label{font-size:12px;fill:#1d2330}\
         .cell{font-size:11px;fill:#fff}.band{fill:#5b9cff33}.line{fill:none;stroke:#2f6fd6;\
         stroke-width:2}.whisker{stroke:#2f6fd6;stroke-width:1.5;opacity:.6}.dot{fill:#2f6fd6}pre{background:#f0f2f7;padding:.8rem;border-radius:6px;\
         white-space:pre-wrap}table{border-collapse:collapse}td,th{padding:.2rem .6rem;\
         border-bottom:1px solid #dde1ea;text-align:left}</style></head><body>",
    );
    let _ = write!(
        page,
        "<h1>turnstone-eval: {}</h1><p>Model <b>{}</b> · {} · {}</p>",
        encode_text(suite),
        encode_text(model),
        counted(cases.len(), "case"),
        counted(iterations.len(), "iteration")
    );
    page.push_str("<h2>Overall pass rate (95 % interval shaded)</h2>");
    page.push_str(&score_chart(iterations));
    page.push_str("<h2>Pass rate per case</h2>");
    page.push_str(&case_grid(cases, iterations));
    if let Some(last) = iterations.last() {
        page.push_str(
            "<h2>Runs of the last iteration</h2><table><tr><th>case</th><th>run</th>\
                       <th>pass</th><th>tools called</th><th>detail</th></tr>",
        );
        for (id, result) in &last.cases {
            for r in &result.runs {
                let _ = write!(
                    page,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    encode_text(id),
                    r.run,
                    if r.score.pass { "yes" } else { "no" },
                    encode_text(&r.tool_sequence.join(", ")),
                    encode_text(r.error.as_deref().unwrap_or(&r.score.detail))
                );
            }
        }
        page.push_str("</table>");
    }
    if let Some(best) = best {
        let _ = write!(
            page,
            "<h2>Best prompt (iteration {}, {})</h2><pre>{}</pre>",
            best.iteration,
            percent(best.aggregate.overall_pass_rate),
            encode_text(&best.prompt)
        );
    }
    page.push_str("</body></html>\n");
    page
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::cases::parse;
    use crate::eval::iteration::{Aggregate, CaseResult};
    use std::collections::BTreeMap;

    fn iteration(n: usize, rate: f64) -> Iteration {
        Iteration {
            iteration: n,
            prompt: format!("prompt {n}"),
            prompt_diff: None,
            cases: BTreeMap::from([(
                "<a&b>".to_owned(),
                CaseResult {
                    pass_rate: rate,
                    avg_score: rate,
                    runs: Vec::new(),
                },
            )]),
            aggregate: Aggregate {
                overall_pass_rate: rate,
                overall_pass_interval: (rate / 2.0, (rate + 0.2).min(1.0)),
                overall_avg_score: rate,
                failed_runs: 0,
                per_case_pass_rates: BTreeMap::new(),
            },
        }
    }

    #[test]
    fn the_table_and_report_show_each_iteration_and_the_best_prompt() {
        let suite = parse(
            r#"{"cases": [{"id": "<a&b>", "user_prompt": "p"}]}"#,
            "c.json",
        )
        .unwrap();
        let its = [iteration(0, 0.5), iteration(1, 1.0), iteration(2, 1.0)];
        let table = table(&suite.cases, &its);
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[0].starts_with("case") && lines[0].contains("iter 2"),
            "{table}"
        );
        assert!(
            lines[2].starts_with("<a&b>") && lines[2].contains("50%"),
            "{table}"
        );
        assert!(
            lines[4].starts_with("overall") && lines[4].contains("100% [50%–100%]"),
            "{table}"
        );
        assert_eq!(best(&its).unwrap().iteration, 1, "the earliest of the best");
        let page = html("m", "c.json", &suite.cases, &its);
        assert!(
            page.contains("&lt;a&amp;b&gt;") && !page.contains("<a&b>"),
            "ids are escaped"
        );
        assert_eq!(page.matches("class=\"whisker\"").count(), 3);
        assert!(page.contains("Best prompt (iteration 1, 100%)</h2><pre>prompt 1</pre>"));
    }
}
