//! The result: one row per workload, printed as a table and written as JSON.

use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::load::Measured;

/// One workload's result.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured.
    pub workload: String,
    /// Operations per second of the workload (None where it has no rate, e.g. footprint).
    pub ops_per_sec: Option<f64>,
    /// Median latency, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Option<f64>,
    /// Operations per second of the ceiling measured in the same run.
    pub ceiling_ops_per_sec: Option<f64>,
    /// `ops_per_sec / ceiling_ops_per_sec`.
    pub ratio: Option<f64>,
    /// The goal, as text.
    pub goal: String,
    /// Whether every part of the goal was met (`None`: a row without a goal).
    pub met: Option<bool>,
    /// Measurements that do not fit the columns (sizes, footprint figures).
    pub notes: String,
    /// A correctness violation the workload saw (the run then exits non-zero after printing
    /// the table); unlike a missed goal, this is a failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
}

/// Thresholds of a rate workload's goal.
#[derive(Clone, Copy, Debug)]
pub struct Goal {
    /// Least acceptable ratio to the ceiling.
    pub ratio: f64,
    /// Largest acceptable p50, if any.
    pub p50: Option<Duration>,
    /// Largest acceptable p99, if any.
    pub p99: Option<Duration>,
}

impl Goal {
    fn describe(&self) -> String {
        let mut parts = vec![format!("ratio ≥ {}", self.ratio)];
        if let Some(p50) = self.p50 {
            parts.push(format!("p50 ≤ {} ms", p50.as_millis()));
        }
        if let Some(p99) = self.p99 {
            parts.push(format!("p99 ≤ {} ms", p99.as_millis()));
        }
        parts.join(", ")
    }
}

fn millis(duration: Option<Duration>) -> Option<f64> {
    duration.map(|d| d.as_secs_f64() * 1e3)
}

impl Row {
    /// A row of a workload measured against its ceiling.
    pub fn rated(
        workload: &str,
        measured: &Measured,
        ceiling: &Measured,
        goal: Goal,
        notes: String,
    ) -> Self {
        let ops = measured.ops_per_sec();
        let ceiling_ops = ceiling.ops_per_sec();
        let ratio = (ceiling_ops > 0.0).then(|| ops / ceiling_ops);
        let p50 = measured.quantile(0.5);
        let p99 = measured.quantile(0.99);
        let met = ratio.is_some_and(|ratio| ratio >= goal.ratio)
            && goal
                .p50
                .is_none_or(|limit| p50.is_some_and(|p50| p50 <= limit))
            && goal
                .p99
                .is_none_or(|limit| p99.is_some_and(|p99| p99 <= limit));
        Self {
            workload: workload.to_string(),
            ops_per_sec: Some(ops),
            p50_ms: millis(p50),
            p99_ms: millis(p99),
            ceiling_ops_per_sec: Some(ceiling_ops),
            ratio,
            goal: goal.describe(),
            met: Some(met),
            notes,
            failure: None,
        }
    }

    /// A row of latencies without a rate or ceiling (e.g. a delay per round): `met` is `None`
    /// when the row has no goal.
    pub fn latencies(
        workload: &str,
        samples: &[Duration],
        goal: &str,
        met: Option<bool>,
        notes: String,
    ) -> Self {
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        Self {
            workload: workload.to_string(),
            ops_per_sec: None,
            p50_ms: millis(crate::load::quantile_of_sorted(&sorted, 0.5)),
            p99_ms: millis(crate::load::quantile_of_sorted(&sorted, 0.99)),
            ceiling_ops_per_sec: None,
            ratio: None,
            goal: goal.to_string(),
            met,
            notes,
            failure: None,
        }
    }

    /// A row of figures that fit no column (memory, sizes): everything is in the goal and
    /// the notes.
    pub fn figures(workload: &str, goal: String, met: Option<bool>, notes: String) -> Self {
        Self {
            workload: workload.to_string(),
            ops_per_sec: None,
            p50_ms: None,
            p99_ms: None,
            ceiling_ops_per_sec: None,
            ratio: None,
            goal,
            met,
            notes,
            failure: None,
        }
    }
}

fn number(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(value) => format!("{value:.decimals$}"),
        None => "—".to_string(),
    }
}

/// The table, as printed.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "workload",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "ceiling ops/s",
        "ratio",
        "goal",
        "met?",
    ];
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|row| {
            [
                row.workload.clone(),
                number(row.ops_per_sec, 0),
                number(row.p50_ms, 2),
                number(row.p99_ms, 2),
                number(row.ceiling_ops_per_sec, 0),
                number(row.ratio, 2),
                row.goal.clone(),
                match (&row.failure, row.met) {
                    (Some(_), _) => "FAILED",
                    (None, Some(true)) => "yes",
                    (None, Some(false)) => "no",
                    (None, None) => "—",
                }
                .to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = String::new();
    out.push_str(&line(&header.map(String::from)));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in &cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    let notes: Vec<String> = rows
        .iter()
        .filter(|row| !row.notes.is_empty() || row.failure.is_some())
        .map(|row| match &row.failure {
            Some(failure) if row.notes.is_empty() => {
                format!("- {}: FAILED: {failure}", row.workload)
            }
            Some(failure) => format!("- {}: FAILED: {failure}; {}", row.workload, row.notes),
            None => format!("- {}: {}", row.workload, row.notes),
        })
        .collect();
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&notes.join("\n"));
        out.push('\n');
    }
    out
}

/// Everything written to the JSON file.
#[derive(Debug, Serialize)]
pub struct Report<'a> {
    /// `quick` or `full`.
    pub mode: &'a str,
    /// `release` or `debug` (debug figures are not comparable).
    pub build: &'a str,
    /// Operations in flight.
    pub in_flight: usize,
    /// The command line.
    pub command: String,
    /// CPU model and count, memory.
    pub machine: String,
    /// When the run ended (RFC 3339).
    pub finished_at: String,
    /// The whole run, seconds (start-up and loading included).
    pub duration_seconds: f64,
    /// The results.
    pub rows: &'a [Row],
}

/// Writes `report` as pretty JSON to `path` (creating its directory).
pub fn write_json(path: &Path, report: &Report<'_>) -> anyhow::Result<()> {
    if let Some(parent) = path.parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(report)? + "\n")?;
    Ok(())
}

/// CPU model, core count and memory of this machine, from /proc (Linux).
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name"))
        .and_then(|rest| rest.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_gib = meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0 / 1024.0);
    match memory_gib {
        Some(gib) => format!("{model}, {cores} cores, {gib:.0} GiB RAM"),
        None => format!("{model}, {cores} cores"),
    }
}
