//! Preconditions of an exploration, checked before any state: its numeric settings are
//! in range, and every program its recovery and checkers run is installed.
//!
//! Why up front: a setting out of range (an infinite time budget) used to panic deep in
//! the standard library, and a missing program made every state a "violation" or a
//! checker failure ("e2fsck not found") — hundreds of verdicts blaming the application
//! for what is an input error. Refusing before the first state says it once.
//!
//! Settings are named in words ("the checker timeout"), as everywhere in the library;
//! the binary maps them to its flags. Callers that take seconds as a number (a flag, a
//! manifest) convert them with [`seconds`], which refuses what `Duration` cannot hold
//! instead of panicking.

use std::path::PathBuf;
use std::time::Duration;

use brink_blockdev::FsKind;

use crate::defaults::{CHECKER_TIMEOUT_MAX, JOBS_MAX, TIME_BUDGET_MAX};
use crate::{CheckerSpec, ExploreConfig, Recovery};

/// A numeric setting of an exploration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Setting {
    /// How long a checker may run on one state (`ExploreConfig::checker_timeout`).
    CheckerTimeout,
    /// How long the run may take before it stops (`ExploreConfig::time_budget`).
    TimeBudget,
    /// States checked at once (`ExploreConfig::jobs`).
    Jobs,
}

impl Setting {
    /// The setting in words, as messages name it.
    pub fn words(self) -> &'static str {
        match self {
            Setting::CheckerTimeout => "the checker timeout",
            Setting::TimeBudget => "the time budget",
            Setting::Jobs => "the number of jobs",
        }
    }

    /// Whether zero is allowed: a zero time budget stops the run before its first state
    /// (what is recorded is kept); a zero timeout would fail every checker.
    fn zero_allowed(self) -> bool {
        self == Setting::TimeBudget
    }

    fn max_secs(self) -> f64 {
        match self {
            Setting::CheckerTimeout => CHECKER_TIMEOUT_MAX.as_secs_f64(),
            Setting::TimeBudget => TIME_BUDGET_MAX.as_secs_f64(),
            Setting::Jobs => JOBS_MAX as f64,
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.words())
    }
}

/// A number as a person reads it: huge ones in scientific notation (`1e300`), not 301 digits.
fn short(v: f64) -> String {
    if v.abs() >= 1e12 { format!("{v:e}") } else { format!("{v}") }
}

/// Why a numeric setting is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingError {
    #[error("{setting} must be a finite number, not {value}")]
    NotFinite { setting: Setting, value: f64 },
    #[error("{setting} must be more than zero, not {value}")]
    NotPositive { setting: Setting, value: f64 },
    #[error("{setting} must not be negative, not {value}")]
    Negative { setting: Setting, value: f64 },
    #[error("{setting} of {} is more than its maximum, {}", short(*value), short(*max))]
    TooLarge { setting: Setting, value: f64, max: f64 },
}

/// `secs` seconds as a `Duration` for `setting`, if it is in range: finite, not
/// negative, more than zero unless the setting allows zero, at most its maximum.
pub fn seconds(setting: Setting, secs: f64) -> Result<Duration, SettingError> {
    check_range(setting, secs)?;
    // In range, so representable: the maximum is far below what a Duration holds.
    Ok(Duration::try_from_secs_f64(secs).expect("a setting in range fits a Duration"))
}

fn check_range(setting: Setting, value: f64) -> Result<(), SettingError> {
    if !value.is_finite() {
        return Err(SettingError::NotFinite { setting, value });
    }
    if value < 0.0 {
        return Err(SettingError::Negative { setting, value });
    }
    if value == 0.0 && !setting.zero_allowed() {
        return Err(SettingError::NotPositive { setting, value });
    }
    let max = setting.max_secs();
    if value > max {
        return Err(SettingError::TooLarge { setting, value, max });
    }
    Ok(())
}

/// The numeric settings of `cfg`, each in range.
pub(crate) fn validate(cfg: &ExploreConfig) -> Result<(), SettingError> {
    check_range(Setting::CheckerTimeout, cfg.checker_timeout.as_secs_f64())?;
    if let Some(b) = cfg.time_budget {
        check_range(Setting::TimeBudget, b.as_secs_f64())?;
    }
    check_range(Setting::Jobs, cfg.jobs as f64)
}

/// A program an exploration runs that is not installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} runs {prog}, which is not installed (neither on the PATH nor in an sbin directory): install {package}")]
#[non_exhaustive]
pub struct MissingTool {
    pub prog: &'static str,
    /// What needs it, in words.
    pub what: &'static str,
    pub package: &'static str,
}

/// The first program that recovering states with `recovery` and running `checkers`
/// on `fs` needs and `find` does not find.
pub(crate) fn missing_tool(
    recovery: Recovery,
    checkers: &[CheckerSpec],
    fs: FsKind,
    find: &dyn Fn(&str) -> Option<PathBuf>,
) -> Option<MissingTool> {
    let mut needed = Vec::new();
    if recovery == Recovery::Userspace {
        needed.push(("e2fsck", "userspace recovery", "e2fsprogs"));
        needed.push(("debugfs", "userspace recovery", "e2fsprogs"));
    }
    if checkers.contains(&CheckerSpec::Fsck) {
        let (prog, _) = brink_check::fsck_command(fs, std::path::Path::new(""));
        needed.push((prog, "the fsck checker", fs.package()));
    }
    needed.into_iter().find(|(prog, ..)| find(prog).is_none()).map(|(prog, what, package)| MissingTool {
        prog,
        what,
        package,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_range_seconds_are_errors_not_panics() {
        for (secs, what) in [
            (f64::INFINITY, "finite"),
            (f64::NAN, "finite"),
            (1e300, "maximum"),
            (-1.0, "negative"),
            (0.0, "more than zero"),
        ] {
            let e = seconds(Setting::CheckerTimeout, secs).unwrap_err().to_string();
            assert!(e.starts_with("the checker timeout ") && e.contains(what), "{secs}: {e}");
            assert!(!e.contains("--"), "no flags in library messages: {e}");
        }
        assert!(seconds(Setting::TimeBudget, 1e300).is_err());
        assert!(seconds(Setting::TimeBudget, -1.0).is_err());
        assert_eq!(seconds(Setting::TimeBudget, 0.0), Ok(Duration::ZERO));
        assert_eq!(seconds(Setting::CheckerTimeout, 0.25), Ok(Duration::from_millis(250)));
        assert_eq!(seconds(Setting::CheckerTimeout, CHECKER_TIMEOUT_MAX.as_secs_f64()), Ok(CHECKER_TIMEOUT_MAX));
    }

    #[test]
    fn missing_tools_are_found_before_any_state() {
        let none = |_: &str| None;
        let all = |p: &str| Some(PathBuf::from(p));
        let m = missing_tool(Recovery::Userspace, &[], FsKind::Ext4, &none).unwrap();
        assert_eq!((m.prog, m.package), ("e2fsck", "e2fsprogs"));
        assert_eq!(
            m.to_string(),
            "userspace recovery runs e2fsck, which is not installed (neither on the PATH nor in an sbin directory): install e2fsprogs"
        );
        let only_e2fsck = |p: &str| (p == "e2fsck").then(|| PathBuf::from(p));
        assert_eq!(missing_tool(Recovery::Userspace, &[], FsKind::Ext4, &only_e2fsck).unwrap().prog, "debugfs");
        assert_eq!(missing_tool(Recovery::Userspace, &[], FsKind::Ext4, &all), None);
        assert_eq!(missing_tool(Recovery::Kernel, &[], FsKind::Xfs, &none), None);
        let fsck = [CheckerSpec::Fsck];
        assert_eq!(missing_tool(Recovery::Kernel, &fsck, FsKind::Xfs, &none).unwrap().prog, "xfs_repair");
    }
}
