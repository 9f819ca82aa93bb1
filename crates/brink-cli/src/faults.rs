//! `brink faults sweep`: flags to a [`Sweep`], progress while the suite crate counts the
//! injection points and runs one mode per point (`brink_suite::sweep`), one table
//! printed, and the exit code (1 if any point lost acknowledged data).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Result, bail};
use brink_suite::sweep::{self, MAX_POINTS_DEFAULT, Sweep, SweepTarget};

use crate::emit;
use crate::progress::Bars;

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
    #[arg(long, default_value_t = MAX_POINTS_DEFAULT)]
    max_points: u64,
    /// Results directory (must not exist): POINT/{trace,results}, sweep.json, sweep.md.
    #[arg(short, long)]
    output: PathBuf,
    #[command(flatten)]
    run: crate::suite::RunArgs,
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
    let mode = sweep::select_mode(&w, a.mode.as_deref())?;
    let target = match &a.file {
        Some(f) => SweepTarget::File(f.clone()),
        None if a.writes => SweepTarget::Writes,
        None => SweepTarget::Flushes,
    };
    let spec = Sweep { target, permanent: a.permanent, max_points: a.max_points };
    let opts = a.run.run_opts(interrupt)?;
    brink_suite::fresh_dir(&a.output)?;
    let started = Instant::now();

    eprintln!("brink: {} {}: counting the injection points", w.name, mode.name);
    let points = spec.count(&w, mode, &a.output, &opts, &Bars)?;
    let what = spec.what();
    let swept = points.min(spec.max_points);
    eprintln!(
        "brink: the workload issues {points} {what}; sweeping {swept}{}",
        if swept < points { " (--max-points)" } else { "" }
    );
    let out = spec.run(&w, mode, swept, &a.output, &opts, &Bars)?;
    let title = format!("brink faults sweep: {} ({}), {swept} of {points} {what}", w.name, mode.name);
    sweep::write_tables(&a.output, &out, &title, env!("CARGO_PKG_VERSION"))?;
    if a.run.json {
        emit(&(serde_json::to_string_pretty(&out)? + "\n"))?;
    } else {
        emit(&format!(
            "{title}\n\n{}\n{:.0}s; tables in {}\n",
            sweep::render(&out, false),
            started.elapsed().as_secs_f64(),
            a.output.join("sweep.md").display()
        ))?;
    }
    Ok(i32::from(out.iter().any(|r| r.failed())))
}
