//! `workload.toml`: what to run, on which file system, how to explore it, and what the
//! verdict must be in each mode. Unknown keys are errors, so a typo cannot silently
//! turn an expectation off.
//!
//! ```toml
//! description = "one line"
//! setup = "sh {dir}/setup.sh {args}"     # optional; becomes the base image
//! command = "sh {dir}/workload.sh {args}"
//! fs = "ext4"                             # ext4 (default), xfs, btrfs
//! size = "64M"                            # default 64M (or the file system's minimum)
//! mkfs_opts = ""                          # optional
//! mount_opts = "data=ordered"             # default for the modes
//! checkers = ["{checkers}/name/check.sh", "fsck"]
//!
//! [explore]                               # all optional
//! strategy = "exhaustive"                 # or "prefix", "omit-one", "omit-2",
//!                                         # "sample-500", "sample-500-seed-7"
//! max_states = 100000                     # refuse a larger run (any strategy but sample)
//! model = "writeback"                     # or "writethrough"
//! torn = "none"                           # or "sector", "prefix"
//! checker_timeout = 30
//!
//! [[mode]]                                # one or more
//! name = "data=ordered"
//! mount_opts = "data=ordered"             # overrides the top-level value
//! args = "WAL FULL"                       # substituted for {args}
//! fs = "xfs"                              # overrides the top-level value
//! strategy = "omit-one"                # overrides [explore] (so do max_states and torn)
//! file_system_findings = true             # `clean` is about the application's checkers:
//!                                         # states that do not mount or fail fsck (the
//!                                         # file system's own metadata torn) are shown,
//!                                         # not judged (for torn-write modes)
//! inject = ["file:data,once"]             # fail requests with EIO (brink record --inject)
//! exit_code = 1                           # the workload's expected exit (default 0)
//! expect = "violations"                   # or "clean"
//! message = "acknowledged"                # a violation's message must contain this
//! ```
//!
//! In `setup`, `command` and `checkers`, `{dir}` is the workload's folder and
//! `{checkers}` the checkers' folder, both absolute and shell-quoted; `{args}` is the
//! mode's `args`, inserted as written.

use std::path::{Path, PathBuf};
use std::time::Duration;

use brink_blockdev::FsKind;
use brink_pmodel::{CacheModel, Model, Strategy, Torn};
use serde::{Deserialize, Serialize};

use brink_explore::defaults::CHECKER_TIMEOUT;

use crate::error::{ManifestError, ManifestProblem, UnknownStrategy};

/// The outcome a mode must have (spelled by [`crate::verdict`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Expect {
    /// No violation and no checker failure in any explored state.
    Clean,
    /// At least one violation (whose message contains `message`, if given).
    Violations,
}

/// A workload, resolved: paths absolute, placeholders substituted, defaults applied.
#[derive(Debug, Clone)]
pub struct Workload {
    pub name: String,
    pub dir: PathBuf,
    pub description: String,
    pub checkers: Vec<String>,
    pub explore: ExploreSpec,
    pub modes: Vec<Mode>,
}

/// How the modes of a workload are checked.
#[derive(Debug, Clone)]
pub struct ExploreSpec {
    pub model: Model,
    pub checker_timeout: Duration,
}

/// One way to run a workload, with its expected verdict.
#[derive(Debug, Clone)]
pub struct Mode {
    pub name: String,
    pub fs: FsKind,
    pub size: u64,
    pub mkfs_opts: String,
    pub mount_opts: String,
    pub setup: Option<String>,
    pub command: String,
    /// `None` only for workloads built in code to be reported, not judged.
    pub expect: Option<Expect>,
    pub message: Option<String>,
    /// The bounded (default) run's strategy; `--full` replaces it by exhaustive.
    pub strategy: Strategy,
    /// Refuse an exhaustive space larger than this.
    pub max_states: u128,
    /// How writes may tear, from the mode or else `[explore]`.
    pub torn: Torn,
    /// `clean` judges the application's checkers only (`file_system_findings`).
    pub fs_findings_allowed: bool,
    /// Requests the recorder fails with EIO (`brink record --inject`).
    pub inject: Vec<brink_record::Injection>,
    /// The workload's expected exit code (0 unless the mode expects it to give up);
    /// `None` accepts any exit (a fault sweep, where giving up is one of the answers).
    pub exit_code: Option<i32>,
    /// The same recording explored at the logical level under these APMs (ALICE's
    /// strategy, the application's checkers), each with its expected outcome: a row each.
    pub logical: Vec<(brink_pmodel::Apm, Expect)>,
}

/// Default bound on an exhaustive exploration, per mode.
pub const MAX_STATES_DEFAULT: u128 = 100_000;
/// The image size when a manifest gives none (raised to the file system's minimum).
pub const SIZE_DEFAULT: u64 = brink_record::IMAGE_BYTES_DEFAULT;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    description: String,
    setup: Option<String>,
    command: String,
    fs: Option<String>,
    size: Option<String>,
    mkfs_opts: Option<String>,
    mount_opts: Option<String>,
    checkers: Vec<String>,
    #[serde(default)]
    explore: RawExplore,
    mode: Vec<RawMode>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawExplore {
    strategy: Option<String>,
    max_states: Option<u64>,
    model: Option<CacheModel>,
    torn: Option<Torn>,
    checker_timeout: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMode {
    name: String,
    fs: Option<String>,
    size: Option<String>,
    mkfs_opts: Option<String>,
    mount_opts: Option<String>,
    args: Option<String>,
    strategy: Option<String>,
    max_states: Option<u64>,
    torn: Option<Torn>,
    #[serde(default)]
    file_system_findings: bool,
    #[serde(default)]
    inject: Vec<String>,
    exit_code: Option<i32>,
    expect: Expect,
    message: Option<String>,
    /// Expected verdicts of the same recording explored at the logical level, by APM.
    #[serde(default)]
    logical: std::collections::BTreeMap<String, Expect>,
}

/// A strategy as manifests write it: `exhaustive`, `prefix`, `omit-one`, `omit-K`,
/// `sample-N` or `sample-N-seed-S`.
pub fn parse_strategy(s: &str) -> Result<Strategy, UnknownStrategy> {
    let num = |t: &str| t.parse::<u64>().ok().filter(|&n| n > 0);
    let parsed = match s {
        "exhaustive" => Some(Strategy::Exhaustive),
        "prefix" => Some(Strategy::Prefix),
        "omit-one" => Some(Strategy::OmitK(1)),
        _ => {
            if let Some(k) = s.strip_prefix("omit-") {
                num(k).and_then(|k| u32::try_from(k).ok()).map(Strategy::OmitK)
            } else if let Some(rest) = s.strip_prefix("sample-") {
                match rest.split_once("-seed-") {
                    Some((n, seed)) => {
                        num(n).zip(seed.parse().ok()).map(|(samples, seed)| Strategy::Sample { samples, seed })
                    }
                    None => num(rest).map(|samples| Strategy::Sample { samples, seed: 0 }),
                }
            } else {
                None
            }
        }
    };
    parsed.ok_or_else(|| UnknownStrategy(s.to_string()))
}

fn quote(p: &Path) -> String {
    shlex::try_quote(&p.to_string_lossy()).map(|s| s.into_owned()).unwrap_or_else(|_| p.display().to_string())
}

/// Another crate's rejection of a value, as the text the user reads.
pub(crate) fn text(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// What a manifest's placeholders stand for.
struct Placeholders {
    dir: String,
    checkers: String,
}

impl Placeholders {
    fn subst(&self, s: &str, args: &str) -> String {
        s.replace("{dir}", &self.dir).replace("{checkers}", &self.checkers).replace("{args}", args)
    }
}

/// Read `dir/workload.toml`. `checkers_dir` is what `{checkers}` stands for.
pub fn load(dir: &Path, checkers_dir: &Path) -> Result<Workload, ManifestError> {
    let read = |path: &Path, source| ManifestError::Read { path: path.to_path_buf(), source };
    let dir = std::path::absolute(dir).map_err(|e| read(dir, e))?;
    let checkers_dir = std::path::absolute(checkers_dir).map_err(|e| read(checkers_dir, e))?;
    let path = dir.join("workload.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| read(&path, e))?;
    let bad = |problem| ManifestError::Invalid { path: path.clone(), problem };
    let raw: RawManifest = toml::from_str(&text).map_err(|e| bad(ManifestProblem::Syntax(e.message().to_string())))?;
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let places = Placeholders { dir: quote(&dir), checkers: quote(&checkers_dir) };
    if raw.mode.is_empty() {
        return Err(bad(ManifestProblem::NoModes));
    }
    if raw.checkers.is_empty() {
        return Err(bad(ManifestProblem::NoCheckers));
    }
    let e = &raw.explore;
    let timeout = e.checker_timeout.unwrap_or(CHECKER_TIMEOUT.as_secs_f64());
    let checker_timeout = brink_explore::seconds(brink_explore::Setting::CheckerTimeout, timeout)
        .map_err(|_| bad(ManifestProblem::CheckerTimeout(timeout)))?;
    let explore = ExploreSpec {
        model: Model { cache: e.model.unwrap_or(CacheModel::Writeback), torn: e.torn.unwrap_or(Torn::None) },
        checker_timeout,
    };
    let mut modes: Vec<Mode> = Vec::new();
    for m in &raw.mode {
        if modes.iter().any(|o| o.name == m.name) {
            return Err(bad(ManifestProblem::DuplicateMode(m.name.clone())));
        }
        modes.push(resolve_mode(&raw, m, &places).map_err(bad)?);
    }
    Ok(Workload {
        name,
        checkers: raw.checkers.iter().map(|c| places.subst(c, "")).collect(),
        dir,
        description: raw.description,
        explore,
        modes,
    })
}

/// One `[[mode]]`, its settings completed from the top level and the defaults.
fn resolve_mode(raw: &RawManifest, m: &RawMode, places: &Placeholders) -> Result<Mode, ManifestProblem> {
    if m.name.is_empty() || m.name.contains('/') || m.name.starts_with('.') {
        return Err(ManifestProblem::ModeName(m.name.clone()));
    }
    let fs: FsKind =
        m.fs.as_deref()
            .or(raw.fs.as_deref())
            .unwrap_or("ext4")
            .parse()
            .map_err(|e| ManifestProblem::FileSystem(text(e)))?;
    let size = match m.size.as_deref().or(raw.size.as_deref()) {
        Some(s) => brink_blockdev::parse_size(s).map_err(|e| ManifestProblem::Size(text(e)))?,
        None => SIZE_DEFAULT.max(fs.min_image_bytes()),
    };
    let with_mode = |message: String| (m.name.clone(), message);
    let mount_opts = m.mount_opts.clone().or_else(|| raw.mount_opts.clone()).unwrap_or_default();
    mount_opts.parse::<brink_blockdev::MountOptions>().map_err(|e| {
        let (mode, message) = with_mode(text(e));
        ManifestProblem::MountOptions { mode, message }
    })?;
    if m.message.is_some() && m.expect == Expect::Clean {
        return Err(ManifestProblem::MessageWhenClean(m.name.clone()));
    }
    let args = m.args.clone().unwrap_or_default();
    let inject = m.inject.iter().map(|s| s.parse().map_err(text)).collect::<Result<_, _>>();
    let inject = inject.map_err(|message| ManifestProblem::Injection { mode: m.name.clone(), message })?;
    let strategy = match m.strategy.as_deref().or(raw.explore.strategy.as_deref()) {
        Some(st) => parse_strategy(st).map_err(|error| ManifestProblem::Strategy { mode: m.name.clone(), error })?,
        None => Strategy::Exhaustive,
    };
    let logical = m.logical.iter().map(|(apm, e)| {
        Ok((apm.parse().map_err(|e| ManifestProblem::Apm { mode: m.name.clone(), message: text(e) })?, *e))
    });
    let logical = logical.collect::<Result<Vec<_>, ManifestProblem>>()?;
    Ok(Mode {
        logical,
        name: m.name.clone(),
        fs,
        size,
        mkfs_opts: m.mkfs_opts.clone().or_else(|| raw.mkfs_opts.clone()).unwrap_or_default(),
        mount_opts,
        setup: raw.setup.as_deref().map(|s| places.subst(s, &args)),
        command: places.subst(&raw.command, &args),
        expect: Some(m.expect),
        message: m.message.clone(),
        strategy,
        inject,
        exit_code: Some(m.exit_code.unwrap_or(0)),
        max_states: m.max_states.or(raw.explore.max_states).map_or(MAX_STATES_DEFAULT, u128::from),
        torn: m.torn.or(raw.explore.torn).unwrap_or(Torn::None),
        fs_findings_allowed: m.file_system_findings,
    })
}

/// The workload folders under `root` (those holding a `workload.toml`), sorted; or,
/// when `names` is not empty, exactly those, in the order given.
pub fn discover(root: &Path, names: &[String]) -> Result<Vec<PathBuf>, ManifestError> {
    if !names.is_empty() {
        return names
            .iter()
            .map(|n| {
                let d = root.join(n);
                if d.join("workload.toml").is_file() {
                    Ok(d)
                } else {
                    Err(ManifestError::Invalid {
                        path: d.join("workload.toml"),
                        problem: ManifestProblem::NoSuchWorkload { name: n.clone(), root: root.to_path_buf() },
                    })
                }
            })
            .collect();
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map_err(|source| ManifestError::Read { path: root.to_path_buf(), source })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|d| d.join("workload.toml").is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(ManifestError::Invalid { path: root.to_path_buf(), problem: ManifestProblem::NoWorkloads });
    }
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use brink_pmodel::Strategy;
    use expect_test::expect;

    use super::{load, parse_strategy};

    #[test]
    fn strategies() {
        assert_eq!(parse_strategy("exhaustive"), Ok(Strategy::Exhaustive));
        assert_eq!(parse_strategy("omit-one"), Ok(Strategy::OmitK(1)));
        assert_eq!(parse_strategy("omit-3"), Ok(Strategy::OmitK(3)));
        assert_eq!(parse_strategy("sample-500"), Ok(Strategy::Sample { samples: 500, seed: 0 }));
        assert_eq!(parse_strategy("sample-500-seed-7"), Ok(Strategy::Sample { samples: 500, seed: 7 }));
        for bad in ["omit-0", "omit-", "sample-x", "sample-5-seed-", "random"] {
            assert_eq!(parse_strategy(bad), Err(crate::UnknownStrategy(bad.into())), "{bad}");
        }
    }

    const GOOD: &str = r#"
description = "a workload"
setup = "sh {dir}/setup.sh {args}"
command = "sh {dir}/workload.sh {args}"
mount_opts = "data=ordered"
checkers = ["{checkers}/c/check.sh", "fsck"]

[explore]
strategy = "omit-one"
checker_timeout = 5

[[mode]]
name = "ordered"
args = "A B"
expect = "violations"
message = "lost"

[[mode]]
name = "journal"
mount_opts = "data=journal"
strategy = "exhaustive"
max_states = 500
exit_code = 1
expect = "clean"
"#;

    /// Load `manifest` as `ROOT/w/workload.toml`, with `{checkers}` standing for
    /// `ROOT/checkers`: the workload as one line per mode, or the error's line, with
    /// ROOT written for the temporary folder.
    fn loaded(manifest: &str) -> String {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("w");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("workload.toml"), manifest).unwrap();
        let got = match load(&dir, &root.path().join("checkers")) {
            Ok(w) => {
                let mut out = format!("{} {:?} checkers {:?} {:?}\n", w.name, w.description, w.checkers, w.explore);
                for m in &w.modes {
                    out += &format!(
                        "{}: {} {} {:?} {:?} max {} exit {:?} expect {:?} message {:?}\n  setup {:?}\n  command {:?}\n",
                        m.name,
                        m.fs.name(),
                        m.size,
                        m.mount_opts,
                        m.strategy,
                        m.max_states,
                        m.exit_code,
                        m.expect,
                        m.message,
                        m.setup,
                        m.command
                    );
                }
                out
            }
            Err(e) => crate::one_line(&e),
        };
        got.replace(&root.path().display().to_string(), "ROOT")
    }

    /// Placeholders resolved (absolute, shell-quoted paths; the mode's args), mode
    /// settings over the top level's, defaults filled in.
    #[test]
    fn a_manifest_resolves_to_its_modes() {
        expect![[r#"
            w "a workload" checkers ["ROOT/checkers/c/check.sh", "fsck"] ExploreSpec { model: Model { cache: Writeback, torn: None }, checker_timeout: 5s }
            ordered: ext4 67108864 "data=ordered" OmitK(1) max 100000 exit Some(0) expect Some(Violations) message Some("lost")
              setup Some("sh ROOT/w/setup.sh A B")
              command "sh ROOT/w/workload.sh A B"
            journal: ext4 67108864 "data=journal" Exhaustive max 500 exit Some(1) expect Some(Clean) message None
              setup Some("sh ROOT/w/setup.sh ")
              command "sh ROOT/w/workload.sh "
        "#]].assert_eq(&loaded(GOOD));
    }

    /// Each way a manifest can be wrong, and the one line that says so.
    #[test]
    fn bad_manifests_say_what_is_wrong() {
        let cases: [(&str, &str); 11] = [
            ("[[mode]]\nname = \"ordered\"", "[[mode]]\nname = \"ordered\"\nbogus = 1"),
            ("expect = \"clean\"", "expect = \"maybe\""),
            ("checker_timeout = 5", "checker_timeout = 0"),
            ("name = \"journal\"", "name = \"ordered\""),
            ("name = \"journal\"", "name = \"a/b\""),
            ("name = \"journal\"", "name = \"journal\"\nfs = \"zfs\""),
            ("name = \"journal\"", "name = \"journal\"\nsize = \"lots\""),
            ("strategy = \"exhaustive\"", "strategy = \"random\""),
            ("expect = \"clean\"", "expect = \"clean\"\nmessage = \"lost\""),
            ("checkers = [\"{checkers}/c/check.sh\", \"fsck\"]", "checkers = []"),
            ("name = \"journal\"", "name = \"journal\"\nlogical = { zfs = \"clean\" }"),
        ];
        let mut got: Vec<String> = cases.iter().map(|(from, to)| loaded(&GOOD.replacen(from, to, 1))).collect();
        got.push(loaded(GOOD.split("[[mode]]").next().unwrap()));
        expect![[r#"
            ROOT/w/workload.toml: unknown field `bogus`, expected one of `name`, `fs`, `size`, `mkfs_opts`, `mount_opts`, `args`, `strategy`, `max_states`, `torn`, `file_system_findings`, `inject`, `exit_code`, `expect`, `message`, `logical`
            ROOT/w/workload.toml: unknown variant `maybe`, expected `clean` or `violations`
            ROOT/w/workload.toml: checker_timeout 0 must be between 0 and 86400 seconds
            ROOT/w/workload.toml: two modes are named 'ordered'
            ROOT/w/workload.toml: mode name 'a/b' must be non-empty, without '/', not starting with '.'
            ROOT/w/workload.toml: unknown file system 'zfs' (expected ext4, xfs or btrfs)
            ROOT/w/workload.toml: bad size 'lots': use bytes or a K, M, G or T suffix
            ROOT/w/workload.toml: mode 'journal': unknown strategy 'random': use exhaustive, prefix, omit-one, omit-K, sample-N or sample-N-seed-S
            ROOT/w/workload.toml: mode 'journal': a message is only meaningful with expect = "violations"
            ROOT/w/workload.toml: no checkers: name at least one ("fsck" is built in)
            ROOT/w/workload.toml: mode 'journal': logical: unknown APM 'zfs': expected one of posix, ext4-ordered, ext4-writeback, ext4-journal, xfs, btrfs
            ROOT/w/workload.toml: missing field `mode`"#]].assert_eq(&got.join("\n"));
    }

    #[test]
    fn missing_folders_and_workloads_are_errors() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let got = [
            super::discover(&r.join("none"), &[]).map(|_| ()),
            super::discover(r, &[]).map(|_| ()),
            super::discover(r, &["w".to_string()]).map(|_| ()),
        ]
        .map(|e| crate::one_line(&e.unwrap_err()).replace(&r.display().to_string(), "ROOT"));
        expect![[r#"
            ROOT/none: No such file or directory (os error 2)
            ROOT: no workload folders (with a workload.toml) here
            ROOT/w/workload.toml: no workload named 'w' in ROOT"#]]
        .assert_eq(&got.join("\n"));
    }
}
