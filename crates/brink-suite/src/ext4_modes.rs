//! A workload built from a command line instead of a manifest: one command recorded and
//! explored under ext4 `data=ordered`, `data=writeback` and `data=journal`, so the three
//! journaling modes can be compared in one table. Nothing is expected of it: its rows
//! are reported, not judged.

use std::path::PathBuf;
use std::time::Duration;

use brink_pmodel::{Model, Strategy};

use crate::error::RunError;
use crate::manifest::{ExploreSpec, Mode, Workload};

/// ext4's data modes, in the order the table lists them.
pub const DATA_MODES: [&str; 3] = ["ordered", "writeback", "journal"];

/// What the three runs share.
#[derive(Debug, Clone)]
pub struct Ext4Modes {
    /// The workload, as a program and its arguments.
    pub command: Vec<String>,
    /// A shell command run before recording; its result is the base image.
    pub setup: Option<String>,
    /// The image size in bytes.
    pub size: u64,
    pub checkers: Vec<String>,
    pub model: Model,
    pub strategy: Strategy,
    pub max_states: u128,
    pub checker_timeout: Duration,
    /// The folder the workload is run from (what a manifest's `{dir}` would be).
    pub dir: PathBuf,
}

impl Ext4Modes {
    /// The workload, one mode per data mode, each expected to exit 0.
    pub fn workload(&self) -> Result<Workload, RunError> {
        let command = shlex::try_join(self.command.iter().map(String::as_str))?;
        let modes = DATA_MODES
            .into_iter()
            .map(|m| Mode {
                name: m.into(),
                fs: brink_blockdev::FsKind::Ext4,
                size: self.size,
                mkfs_opts: String::new(),
                mount_opts: format!("data={m}"),
                setup: self.setup.clone(),
                command: command.clone(),
                expect: None,
                message: None,
                strategy: self.strategy,
                max_states: self.max_states,
                torn: self.model.torn,
                fs_findings_allowed: false,
                inject: Vec::new(),
                exit_code: Some(0),
                logical: Vec::new(),
            })
            .collect();
        Ok(Workload {
            name: label(&self.command),
            dir: self.dir.clone(),
            description: command,
            checkers: self.checkers.clone(),
            explore: ExploreSpec { model: self.model, checker_timeout: self.checker_timeout },
            modes,
        })
    }
}

/// A short name for the workload of `command`, for table rows: a shell script's file
/// name (`sh dir/run.sh` → `run.sh`), `sh -c` for a command string, else the program's
/// (`./bench --x` → `bench`).
fn label(command: &[String]) -> String {
    let base = |w: &String| {
        std::path::Path::new(w).file_name().map_or_else(|| w.clone(), |n| n.to_string_lossy().into_owned())
    };
    let shells = ["sh", "dash", "bash"];
    match command {
        [prog, script, ..] if shells.contains(&base(prog).as_str()) && !script.starts_with('-') => base(script),
        [prog, flag, ..] if shells.contains(&base(prog).as_str()) && flag == "-c" => format!("{} -c", base(prog)),
        [prog, ..] => base(prog),
        [] => "workload".into(),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use brink_pmodel::{CacheModel, Model, Strategy, Torn};
    use expect_test::expect;

    use super::Ext4Modes;
    use crate::Workload;

    /// The workload of `brink ext4-modes -- sh -c 'echo "a b" > f'`.
    pub(crate) fn workload() -> Workload {
        Ext4Modes {
            command: vec!["sh".into(), "-c".into(), "echo \"a b\" > f".into()],
            setup: Some("printf old > f".into()),
            size: brink_record::IMAGE_BYTES_DEFAULT,
            checkers: vec!["fsck".into()],
            model: Model { cache: CacheModel::Writeback, torn: Torn::None },
            strategy: Strategy::Exhaustive,
            max_states: 1000,
            checker_timeout: brink_explore::defaults::CHECKER_TIMEOUT,
            dir: "/work".into(),
        }
        .workload()
        .unwrap()
    }

    /// One mode per data mode, the command quoted back into one shell line.
    #[test]
    fn one_mode_per_data_mode() {
        let w = workload();
        let modes: Vec<String> =
            w.modes.iter().map(|m| format!("{}: {} {:?} {:?}", m.name, m.mount_opts, m.command, m.expect)).collect();
        expect![[r#"
            ordered: data=ordered "sh -c 'echo \"a b\" > f'" None
            writeback: data=writeback "sh -c 'echo \"a b\" > f'" None
            journal: data=journal "sh -c 'echo \"a b\" > f'" None"#]]
        .assert_eq(&modes.join("\n"));
    }
}
