//! The fault sweep: run a workload once per injection point and explore each run, so one
//! table says, for every flush (or every write to a named file) the workload issues,
//! what the application did when that request failed and whether any acknowledged data
//! was lost, with or without a crash.
//!
//! The injection points are counted by a first recording with nothing injected (watched
//! rules count the requests the workload issues while it runs). A file target is the
//! blocks the file holds after setup: an application that deletes and recreates the
//! file (SQLite does so with its WAL) writes elsewhere, and the blocks may then hold
//! another file; sweeping every write covers that. Each point is then a new recording
//! from the same setup: a workload whose I/O varies from run to run may issue a
//! different number of requests, so each row says whether its injection fired.

use std::fmt::Write as _;
use std::path::Path;

use brink_record::{Injection, Target};
use serde::Serialize;

use crate::error::RunError;
use crate::judge::{Outcome, Row};
use crate::manifest::{Mode, Workload};
use crate::plan::RunOpts;
use crate::run::{Driver, run_workloads, write};

/// Which requests a sweep fails, one point at a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SweepTarget {
    /// Each flush.
    Flushes,
    /// Each write.
    Writes,
    /// Each write to the data blocks this file (relative to the file system's root)
    /// holds after setup (ext4, XFS).
    File(String),
}

/// A sweep: what it fails, how, and how many points at most.
#[derive(Debug, Clone)]
pub struct Sweep {
    pub target: SweepTarget,
    /// Fail every matching request from the point on, instead of that one only.
    pub permanent: bool,
    /// Sweep at most this many points (the first ones).
    pub max_points: u64,
}

/// The default of [`Sweep::max_points`].
pub const MAX_POINTS_DEFAULT: u64 = 64;

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

impl SweepRow {
    /// True if this point lost acknowledged data or did not run as it should.
    pub fn failed(&self) -> bool {
        self.row.violations > 0 || self.row.outcome == Outcome::Mismatch
    }
}

/// The mode named `name`, or the workload's first.
pub fn select_mode<'a>(w: &'a Workload, name: Option<&str>) -> Result<&'a Mode, RunError> {
    match name {
        Some(name) => w.modes.iter().find(|m| m.name == name).ok_or_else(|| RunError::NoSuchMode {
            workload: w.name.clone(),
            name: name.to_string(),
            modes: w.modes.iter().map(|m| m.name.clone()).collect(),
        }),
        None => Ok(&w.modes[0]),
    }
}

impl Sweep {
    /// The injection at point `nth` (from 1).
    pub fn injection(&self, nth: u64) -> Injection {
        let permanent = self.permanent;
        match &self.target {
            SweepTarget::File(f) => Injection { target: Target::File(f.clone()), nth, permanent },
            SweepTarget::Writes => Injection { target: Target::Write(nth), nth: 1, permanent },
            SweepTarget::Flushes => Injection { target: Target::Flush(nth), nth: 1, permanent },
        }
    }

    /// The points, in words: "flushes", "writes", "writes to FILE".
    pub fn what(&self) -> String {
        match &self.target {
            SweepTarget::File(f) => format!("writes to {f}"),
            SweepTarget::Writes => "writes".to_string(),
            SweepTarget::Flushes => "flushes".to_string(),
        }
    }

    /// The points the workload offers: one recording of `mode` with nothing injected
    /// and the target watched, in `out/count`. None is an error: nothing to sweep.
    pub fn count(
        &self,
        w: &Workload,
        mode: &Mode,
        out: &Path,
        opts: &RunOpts,
        driver: &dyn Driver,
    ) -> Result<u64, RunError> {
        let mut quiet = mode.clone();
        quiet.inject = Vec::new();
        let dir = out.join("count");
        std::fs::create_dir_all(&dir).map_err(|source| RunError::CreateDir { path: dir.clone(), source })?;
        let mut count = w.plan(&quiet, &dir, opts)?;
        count.record.watch = vec![self.injection(1)];
        let counted = driver.record(&count.record)?;
        // The watched rule of a flush or write target matches every flush or write.
        match counted.watched[0] {
            0 => Err(RunError::NothingToSweep { what: self.what() }),
            points => Ok(points),
        }
    }

    /// The modes of a sweep over the first `points` points: the run without an
    /// injection, then one run per point. A point fails once (or from then on), and
    /// any exit is an answer.
    pub fn modes(&self, mode: &Mode, points: u64) -> Vec<Mode> {
        std::iter::once(None)
            .chain((1..=points).map(Some))
            .map(|p| Mode {
                name: p.map_or("none".to_string(), |n| self.injection(n).to_string()),
                inject: p.map(|n| self.injection(n)).into_iter().collect(),
                exit_code: None,
                expect: None,
                message: None,
                logical: Vec::new(),
                ..mode.clone()
            })
            .collect()
    }

    /// Run the sweep over the first `points` points, each in a folder of `out` named
    /// after it, and say per row whether its injection fired.
    pub fn run(
        &self,
        w: &Workload,
        mode: &Mode,
        points: u64,
        out: &Path,
        opts: &RunOpts,
        driver: &dyn Driver,
    ) -> Result<Vec<SweepRow>, RunError> {
        let dir_of = |_: &Workload, m: &Mode| out.join(m.name.replace(['/', ','], "_"));
        let rows = run_workloads(&[(w.clone(), self.modes(mode, points))], &dir_of, opts, driver)?;
        Ok(rows.into_iter().map(|row| SweepRow { point: row.mode.clone(), fired: fired(&row.trace), row }).collect())
    }
}

/// The requests the recorder failed in a trace (0 if it cannot be read).
fn fired(trace: &Path) -> u64 {
    brink_trace::TraceReader::open(trace).and_then(|r| brink_trace::TraceSummary::compute(&r)).map_or(0, |s| s.errors)
}

/// Write `sweep.json` (the rows) and `sweep.md` (`title`, the machine, the table) into
/// `out`, crash-safely.
pub fn write_tables(out: &Path, rows: &[SweepRow], title: &str, brink_version: &str) -> Result<(), RunError> {
    let md = format!(
        "# {title}\n\n## Machine\n\n{}\n## Results\n\n{}",
        crate::describe_machine(brink_version),
        render(rows, true)
    );
    let json = serde_json::to_string_pretty(rows).expect("rows serialize") + "\n";
    write(&out.join("sweep.json"), json.as_bytes())?;
    write(&out.join("sweep.md"), md.as_bytes())
}

const HEAD: [&str; 8] =
    ["point", "fired", "app exit", "app said (last line)", "unique", "violations", "no crash", "example"];

fn cells(r: &SweepRow) -> Vec<String> {
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
}

/// `cell` in at most `w` characters, its end cut to `…`.
fn cut(cell: &str, w: usize) -> String {
    if cell.chars().count() <= w { cell.to_string() } else { cell.chars().take(w - 1).collect::<String>() + "…" }
}

/// A point in at most `w` characters: cut in the middle, never in its `@N,…` (what
/// tells the rows of one target apart).
fn cut_point(point: &str, w: usize) -> String {
    let n = point.chars().count();
    if n <= w {
        return point.to_string();
    }
    let tail: String = match point.rfind('@') {
        Some(at) => point[at..].to_string(),
        None => return cut(point, w),
    };
    let keep = w.saturating_sub(tail.chars().count() + 1);
    point.chars().take(keep).collect::<String>() + "…" + &tail
}

/// The sweep's table: per point, whether it fired, what the application did, and the
/// verdicts (with crash states, and without a crash).
pub fn render(rows: &[SweepRow], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        let _ = writeln!(out, "| {} |", HEAD.join(" | "));
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
        |i: usize, cap: usize| all.iter().map(|c| c[i].chars().count()).max().unwrap_or(0).max(HEAD[i].len()).min(cap);
    let widths: Vec<usize> = (0..HEAD.len() - 1).map(|i| width(i, if i == 3 { 36 } else { 40 })).collect();
    let line = |c: &[String]| {
        let mut l = String::new();
        for (i, w) in widths.iter().enumerate() {
            let cell = if i == 0 { cut_point(&c[i], *w) } else { cut(&c[i], *w) };
            let _ = write!(l, "{cell:<w$}  ");
        }
        l + &c[HEAD.len() - 1]
    };
    let _ = writeln!(out, "{}", line(&HEAD.map(String::from)));
    for c in &all {
        let _ = writeln!(out, "{}", line(c));
    }
    out
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    #[test]
    fn injection_points_print_as_record_takes_them() {
        let i = Injection { target: Target::File("db/wal".into()), nth: 3, permanent: false };
        assert_eq!(i.to_string(), "file:db/wal@3,once");
        assert_eq!(i.to_string().parse::<Injection>().unwrap(), i);
    }

    /// The modes of a sweep: the run without an injection, then one per point, none
    /// judged and any exit accepted; for each target kind.
    #[test]
    fn a_sweep_is_one_mode_per_point() {
        let w = crate::ext4_modes::tests::workload();
        let base = &w.modes[0];
        let mut got = String::new();
        for (target, permanent) in
            [(SweepTarget::Flushes, false), (SweepTarget::Writes, true), (SweepTarget::File("db/wal".into()), false)]
        {
            let sweep = Sweep { target, permanent, max_points: 2 };
            let modes = sweep.modes(base, 2);
            let inject = |m: &Mode| m.inject.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
            let names: Vec<String> = modes.iter().map(|m| format!("{} [{}]", m.name, inject(m))).collect();
            got += &format!("{}: {}\n", sweep.what(), names.join(" | "));
            assert!(modes.iter().all(|m| m.expect.is_none() && m.exit_code.is_none() && m.message.is_none()));
        }
        expect![[r#"
            flushes: none [] | flush:1,once [flush:1,once] | flush:2,once [flush:2,once]
            writes: none [] | write:1,permanent [write:1,permanent] | write:2,permanent [write:2,permanent]
            writes to db/wal: none [] | file:db/wal,once [file:db/wal,once] | file:db/wal@2,once [file:db/wal@2,once]
        "#]]
        .assert_eq(&got);
    }

    /// The sweep's table, for a terminal and in Markdown.
    /// Issue 13: the point column keeps the `@N` that tells the rows apart.
    #[test]
    fn sweep_table_keeps_the_points_at_n() {
        let long = "file:var/lib/postgresql/data/pg_wal/000000010000000000000001";
        let m = &crate::ext4_modes::tests::workload().modes[0];
        let row = |n| {
            let row = Row::failed("w", m, String::new(), "/r/t".into(), "/r/r".into());
            SweepRow { point: format!("{long}@{n},once"), fired: 1, row }
        };
        let table = render(&[row(7), row(12)], false);
        let points: Vec<&str> = table.lines().skip(1).map(|l| l.split("  ").next().unwrap()).collect();
        assert_eq!(points.len(), 2, "{table}");
        assert!(points[0].ends_with("…@7,once") && points[1].ends_with("…@12,once"), "{table}");
        assert!(points.iter().all(|p| p.chars().count() <= 40), "{table}");
    }

    #[test]
    fn the_sweep_table() {
        let m = &crate::ext4_modes::tests::workload().modes[0];
        let row = |point: &str, fired, said: &str, violations| {
            let mut row = Row::failed("w", m, String::new(), "/r/t".into(), "/r/r".into());
            (row.outcome, row.exit, row.said, row.violations, row.unique) =
                (Outcome::Reported, "exit 1".into(), said.into(), violations, 12);
            SweepRow { point: point.into(), fired, row }
        };
        let rows = [
            row("none", 0, "", 0),
            row("flush:1,once", 1, "fsync failed: Input/output error, retrying once | then giving up", 2),
            row("flush:2,once", 0, "", 0),
        ];
        assert!(rows[1].failed() && !rows[0].failed());
        expect![[r#"
            point         fired  app exit  app said (last line)                  unique  violations  no crash  example
            none          0      exit 1                                          12      0           -         
            flush:1,once  1      exit 1    fsync failed: Input/output error, r…  12      2           -         
            flush:2,once  0      exit 1                                          12      0           -         
        "#]]
        .assert_eq(&render(&rows, false));
        expect![[r#"
            | point | fired | app exit | app said (last line) | unique | violations | no crash | example |
            |---|---:|---|---|---:|---:|---|---|
            | none | 0 | exit 1 |  | 12 | 0 | - |  |
            | flush:1,once | 1 | exit 1 | fsync failed: Input/output error, retrying once \| then giving up | 12 | 2 | - |  |
            | flush:2,once | 0 | exit 1 |  | 12 | 0 | - |  |
        "#]].assert_eq(&render(&rows, true));
    }
}
