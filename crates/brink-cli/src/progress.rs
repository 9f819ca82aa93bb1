//! Progress for people: a spinner while recording, a bar while exploring (indicatif
//! hides both when stderr is not a terminal), and the suite runner's steps as lines on
//! stderr ([`Bars`], the binary's [`Driver`]).

use std::sync::atomic::Ordering;
use std::time::Duration;

use brink_explore::{ExploreConfig, ExploreError, Summary};
use brink_record::{Progress, RecordConfig, RecordError, RecordOutcome};
use brink_suite::{Driver, Step};

/// Run `work` while a thread refreshes `bar` from `refresh` ten times a second; the
/// bar is cleared at the end (indicatif hides it when stderr is not a terminal).
///
/// The refresh thread waits on a channel whose sender `work`'s side drops when it
/// returns or panics: it stops at once (a sleeping thread would hold the command up to a
/// refresh period after its work is done), and when `work` panics too (the scope waits
/// for its threads before it raises the panic again).
fn with_progress<T>(
    bar: &indicatif::ProgressBar,
    refresh: impl Fn(&indicatif::ProgressBar) + Sync,
    work: impl FnOnce() -> T,
) -> T {
    // Dropped after the scope has joined the refresh thread: nothing redraws the bar.
    let _clear = Clear(bar);
    let (stop, stopped) = std::sync::mpsc::channel::<()>();
    std::thread::scope(|s| {
        let refresh = &refresh;
        s.spawn(move || {
            loop {
                refresh(bar);
                match stopped.recv_timeout(REFRESH_EVERY) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                    _ => break,
                }
            }
        });
        let _stop = stop;
        work()
    })
}

/// A bar over a count of states, drawn with `template` (a fixed one: never fails).
fn counting_bar(template: &str, prefix: &'static str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(indicatif::ProgressStyle::with_template(template).expect("template"));
    bar.set_prefix(prefix);
    bar
}

/// A bar over `len` steps of `what`, drawn as each is done (the caller ticks it).
pub fn steps_bar(len: u64, what: &'static str) -> indicatif::ProgressBar {
    let bar = counting_bar("{bar:30} {pos}/{len} {prefix}  ETA {eta}", what);
    bar.set_length(len);
    bar
}

/// How often the progress display is refreshed.
const REFRESH_EVERY: Duration = Duration::from_millis(100);

/// Clears the bar when dropped, by a return or a panic.
struct Clear<'a>(&'a indicatif::ProgressBar);

impl Drop for Clear<'_> {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Run a recording with a spinner on stderr.
pub fn record(cfg: &RecordConfig) -> Result<RecordOutcome, RecordError> {
    let progress = Progress::default();
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(Duration::from_millis(120));
    let refresh = |bar: &indicatif::ProgressBar| {
        let phase = *progress.phase.lock().expect("phase lock");
        bar.set_message(format!(
            "{phase}: {} events, {:.1} MiB written",
            progress.events(),
            progress.bytes() as f64 / (1 << 20) as f64
        ));
    };
    let out = with_progress(&bar, refresh, || brink_record::record(cfg, &progress));
    if let Some(note) = progress.containment_note() {
        eprintln!("brink: note: {note}");
    }
    out
}

/// Explore with a progress bar on stderr.
pub fn explore(cfg: &ExploreConfig) -> Result<Summary, ExploreError> {
    let progress = brink_explore::Progress::default();
    let bar = counting_bar("{bar:30} {pos}/{len} states  {per_sec}  ETA {eta}  {msg}", "");
    let refresh = |bar: &indicatif::ProgressBar| {
        let p = &progress;
        bar.set_length(p.total.load(Ordering::Relaxed));
        bar.set_position(p.done.load(Ordering::Relaxed));
        bar.set_message(format!(
            "violations {}  checker failures {}",
            p.violations.load(Ordering::Relaxed),
            p.checker_failures.load(Ordering::Relaxed)
        ));
    };
    let summary = with_progress(&bar, refresh, || brink_explore::explore(cfg, &progress))?;
    if let Some(note) = &summary.containment_note {
        eprintln!("brink: note: {note}");
    }
    if summary.processes_left_behind > 0 {
        eprintln!(
            "brink: checkers left {} processes running (daemons or background children); brink stopped them",
            summary.processes_left_behind
        );
    }
    Ok(summary)
}

/// Explore one APM logically with a progress bar on stderr.
pub fn explore_logical(
    rec: &brink_logical::Recording,
    cfg: &brink_logical::LogicalConfig,
) -> Result<Summary, brink_logical::LogicalError> {
    let progress = brink_explore::Progress::default();
    let bar = counting_bar("{prefix} {bar:30} {pos}/{len} states  {per_sec}  {msg}", cfg.apm.name());
    let refresh = |bar: &indicatif::ProgressBar| {
        let p = &progress;
        bar.set_length(p.total.load(Ordering::Relaxed));
        bar.set_position(p.done.load(Ordering::Relaxed));
        bar.set_message(format!("violations {}", p.violations.load(Ordering::Relaxed)));
    };
    let summary = with_progress(&bar, refresh, || brink_logical::explore(rec, cfg, &progress))?;
    if let Some(note) = &summary.containment_note {
        eprintln!("brink: note: {note}");
    }
    Ok(summary)
}

/// List a model's states (`brink check-model`) with a progress bar on stderr.
pub fn model_space(
    rec: &brink_logical::Recording,
    plan: &brink_pmodel::Plan,
    strategy: brink_pmodel::LStrategy,
    (max_states, jobs): (u128, usize),
    interrupt: &std::sync::atomic::AtomicUsize,
    only: Option<std::collections::HashSet<(String, u64)>>,
) -> Result<brink_logical::ModelSpace, brink_logical::LogicalError> {
    let progress = brink_explore::Progress::default();
    let bar = counting_bar("{prefix} {bar:30} {pos}/{len} model states  {per_sec}", plan.apm.name());
    let refresh = |bar: &indicatif::ProgressBar| {
        bar.set_length(progress.total.load(Ordering::Relaxed));
        bar.set_position(progress.done.load(Ordering::Relaxed));
    };
    with_progress(&bar, refresh, || {
        brink_logical::model_space(rec, plan, strategy, (max_states, jobs), interrupt, &progress, only)
    })
}

/// A logical error as the command line reports it, `what` failed: an interrupt keeps
/// its signal (the exit status says it).
pub fn logical_error(e: brink_logical::LogicalError, what: &str) -> anyhow::Error {
    match e {
        brink_logical::LogicalError::Interrupted(signal) => RecordError::Interrupted(signal).into(),
        e => anyhow::anyhow!("{what}: {e}"),
    }
}

/// The binary's driver of the suite runner: progress bars, and a line per step.
pub struct Bars;

impl Driver for Bars {
    fn record(&self, cfg: &RecordConfig) -> Result<RecordOutcome, RecordError> {
        record(cfg)
    }
    fn explore(&self, cfg: &ExploreConfig) -> Result<Summary, ExploreError> {
        explore(cfg)
    }
    fn step(&self, step: Step<'_>) {
        match step {
            Step::Recording { label } => eprintln!("brink: {label}: recording"),
            Step::Exploring { label, events } => eprintln!("brink: {label}: exploring {events} events"),
            Step::Failed { label, why } => eprintln!("brink: {label}: {why}"),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refresh thread used to wait for a flag the panicking closure never set: the
    /// scope joined it forever and the panic never reached `main`.
    #[test]
    fn a_panic_under_the_progress_display_ends_it() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let bar = indicatif::ProgressBar::hidden();
            let r = std::panic::catch_unwind(|| with_progress(&bar, |_| {}, || panic!("inside the work")));
            tx.send(r.is_err()).unwrap();
        });
        assert_eq!(rx.recv_timeout(Duration::from_secs(10)), Ok(true), "the panic did not come back");
    }
}
