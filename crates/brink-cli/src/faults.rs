//! `brink faults sweep`: run a workload once per injection point and explore each run,
//! so one table says, for every flush (or every write to a named file) the workload
//! issues, what the application did when that request failed and whether any
//! acknowledged data was lost, with or without a crash.
//!
//! The injection points are counted by a first recording with nothing injected (watched
//! rules count the requests the workload issues while it runs). A `--file` target is
//! the blocks the file holds after setup: an application that deletes and recreates
//! the file (SQLite does so with its WAL) writes elsewhere, and the blocks may then
//! hold another file; `--writes` sweeps every write instead. Each point is then a
//! new recording from the same setup: a workload whose I/O varies from run to run may
//! issue a different number of requests, so each row says whether its injection fired.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use brink_record::{Injection, Target};
use brink_suite::{Mode, Row, Workload};
use serde::Serialize;

use crate::emit;

#[derive(clap::Subcommand)]
pub enum FaultsCmd {
    /// Run a workload once per injection point (each flush, or each write to a file),
    /// explore each run, and print one table (exit 1 if any point lost acknowledged
    /// data).
    Sweep(SweepArgs),
}

#[derive(clap::Args)]
pub struct SweepArgs {
    /// A workload folder (with a workload.toml).
    workload: PathBuf,
    /// The mode to run (default: the manifest's first); its own injections are replaced
    /// by the sweep's.
    #[arg(long)]
    mode: Option<String>,
    /// Fail each write to the data blocks this file holds after setup in turn (ext4,
    /// XFS), instead of each flush.
    #[arg(long, conflicts_with = "writes")]
    file: Option<String>,
    /// Fail each write in turn, instead of each flush.
    #[arg(long)]
    writes: bool,
    /// Fail every matching request from the point on, instead of that one only.
    #[arg(long)]
    permanent: bool,
    /// Sweep at most this many points (the first ones).
    #[arg(long, default_value_t = 64)]
    max_points: u64,
    /// Results directory (must not exist): POINT/{trace,results}, sweep.json, sweep.md.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    run: crate::suite::RunArgs,
}

/// One injection point's run.
#[derive(Debug, Serialize)]
pub struct SweepRow {
    /// The injection (`none` for the run without one).
    pub point: String,
    /// Requests the recorder actually failed.
    pub fired: u64,
    #[serde(flatten)]
    pub row: Row,
}

pub fn faults(cmd: FaultsCmd, interrupt: brink_record::Interrupt) -> Result<i32> {
    match cmd {
        FaultsCmd::Sweep(a) => sweep(a, interrupt),
    }
}

fn sweep(a: SweepArgs, interrupt: brink_record::Interrupt) -> Result<i32> {
    if a.max_points == 0 {
        bail!("--max-points must be at least 1");
    }
    let workload = std::path::absolute(&a.workload).unwrap_or(a.workload.clone());
    let checkers = a.run.checkers_dir(workload.parent().unwrap_or(Path::new(".")));
    let w = brink_suite::load(&a.workload, &checkers)?;
    let mode = match &a.mode {
        Some(name) => w.modes.iter().find(|m| &m.name == name).ok_or_else(|| {
            let names: Vec<&str> = w.modes.iter().map(|m| m.name.as_str()).collect();
            anyhow::anyhow!("{} has no mode '{name}' (it has: {})", w.name, names.join(", "))
        })?,
        None => &w.modes[0],
    };
    let target = |nth: u64| match &a.file {
        Some(f) => Injection { target: Target::File(f.clone()), nth, permanent: a.permanent },
        None if a.writes => Injection { target: Target::Write(nth), nth: 1, permanent: a.permanent },
        None => Injection { target: Target::Flush(nth), nth: 1, permanent: a.permanent },
    };
    let mut opts = crate::suite::run_opts(false, 0, a.run.jobs, interrupt)?;
    opts.cache = a.run.cache.clone();
    crate::suite::fresh_dir(&a.output)?;
    let started = Instant::now();

    // Count the points: a recording with nothing injected, the target watched.
    let mut quiet = mode.clone();
    quiet.inject = Vec::new();
    let count_dir = a.output.join("count");
    std::fs::create_dir_all(&count_dir)?;
    let mut count = w.plan(&quiet, &count_dir, &opts)?;
    count.record.watch = vec![target(1)];
    eprintln!("brink: {} {}: counting the injection points", w.name, mode.name);
    let counted = crate::record_with_progress(&count.record)?;
    // The watched rule of a flush or write target matches every flush or write.
    let points = counted.watched[0];
    let what = match &a.file {
        Some(f) => format!("writes to {f}"),
        None if a.writes => "writes".to_string(),
        None => "flushes".to_string(),
    };
    if points == 0 {
        bail!("the workload issued no {what} while it ran: nothing to sweep");
    }
    let swept = points.min(a.max_points);
    eprintln!(
        "brink: the workload issues {points} {what}; sweeping {swept}{}",
        if swept < points { " (--max-points)" } else { "" }
    );

    // The run without an injection, then one run per point; a point fails once (or from
    // then on), and any exit is an answer.
    let modes: Vec<Mode> = std::iter::once(None)
        .chain((1..=swept).map(Some))
        .map(|p| Mode {
            name: p.map_or("none".to_string(), |n| target(n).to_string()),
            inject: p.map(target).into_iter().collect(),
            exit_code: None,
            expect: None,
            message: None,
            ..mode.clone()
        })
        .collect();
    let dir_of = |_: &Workload, m: &Mode| a.output.join(m.name.replace(['/', ','], "_"));
    let rows = crate::suite::run_workloads(&[(w.clone(), modes)], &dir_of, &opts)?;
    let mut out = Vec::new();
    for row in rows {
        let fired = brink_trace::TraceReader::open(&row.trace)
            .and_then(|r| brink_trace::TraceSummary::compute(&r))
            .map_or(0, |s| s.errors);
        out.push(SweepRow { point: row.mode.clone(), fired, row });
    }
    let title = format!("brink faults sweep: {} ({}), {swept} of {points} {what}", w.name, mode.name);
    let md = format!(
        "# {title}\n\n## Machine\n\n{}\n## Results\n\n{}",
        brink_suite::describe_machine(env!("CARGO_PKG_VERSION")),
        render(&out, true)
    );
    brink_trace::durable::write_atomic(
        &a.output.join("sweep.json"),
        (serde_json::to_string_pretty(&out)? + "\n").as_bytes(),
    )?;
    brink_trace::durable::write_atomic(&a.output.join("sweep.md"), md.as_bytes())?;
    if a.run.json {
        emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    } else {
        emit(&format!(
            "{title}\n\n{}\n{:.0}s; tables in {}\n",
            render(&out, false),
            started.elapsed().as_secs_f64(),
            a.output.join("sweep.md").display()
        ))?;
    }
    let failed = out.iter().any(|r| r.row.violations > 0 || r.row.outcome == brink_suite::Outcome::Mismatch);
    Ok(i32::from(failed))
}

/// The sweep's table: per point, whether it fired, what the application did, and the
/// verdicts (with crash states, and without a crash).
fn render(rows: &[SweepRow], markdown: bool) -> String {
    let cells = |r: &SweepRow| -> Vec<String> {
        vec![
            r.point.clone(),
            r.fired.to_string(),
            r.row.exit.clone(),
            r.row.said.clone(),
            r.row.unique.to_string(),
            r.row.violations.to_string(),
            r.row.no_crash_cell().to_string(),
            r.row.what(),
        ]
    };
    let head = ["point", "fired", "app exit", "app said (last line)", "unique", "violations", "no crash", "example"];
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", head.join(" | "));
        let _ = writeln!(out, "|---|---:|---|---|---:|---:|---|---|");
        for r in rows {
            let c: Vec<String> = cells(r).into_iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", c.join(" | "));
        }
        return out;
    }
    let all: Vec<Vec<String>> = rows.iter().map(cells).collect();
    // The last column runs free; "app said" is cut to keep a line readable.
    let width =
        |i: usize, cap: usize| all.iter().map(|c| c[i].chars().count()).max().unwrap_or(0).max(head[i].len()).min(cap);
    let widths: Vec<usize> = (0..head.len() - 1).map(|i| width(i, if i == 3 { 36 } else { 40 })).collect();
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell: String = if c[i].chars().count() > *w {
                c[i].chars().take(w - 1).collect::<String>() + "…"
            } else {
                c[i].clone()
            };
            let _ = write!(l, "{cell:<w$}  ");
        }
        l + &c[head.len() - 1]
    };
    let _ = writeln!(out, "{}", line(&head.map(String::from)));
    for c in &all {
        let _ = writeln!(out, "{}", line(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn injection_points_print_as_record_takes_them() {
        let i = Injection { target: Target::File("db/wal".into()), nth: 3, permanent: false };
        assert_eq!(i.to_string(), "file:db/wal@3,once");
        assert_eq!(i.to_string().parse::<Injection>().unwrap(), i);
    }
}
