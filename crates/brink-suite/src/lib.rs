//! The suite: workloads with the verdicts they must get, and the runner that records,
//! explores and judges them. A manifest (`workload.toml`, see [`manifest`]) says how to
//! record a workload and explore its crash states in each mode (a journaling mode, a
//! file system, application settings) and whether that mode must be clean or must show
//! violations. [`Workload::plan`] turns a mode into the recorder's and the explorer's
//! configs; [`run`] drives them, through a [`Driver`] that lets a binary show progress;
//! [`judge`] turns one mode's exploration into a table row that passes or not. The
//! fault sweep ([`sweep`]) and the ext4 data-mode comparison ([`ext4_modes`]) are the
//! same runner on workloads built in code.
//!
//! Why expectations live with the workload: a suite is a regression test of brink
//! itself. A buggy workload that stops failing means brink lost its eyes; a fixed one
//! that starts failing means a false positive. Both must turn the suite red.

#![forbid(unsafe_code)]

pub mod error;
pub mod ext4_modes;
pub mod judge;
mod machine;
pub mod manifest;
pub mod plan;
pub mod run;
pub mod sweep;
pub mod verdict;

pub use error::{ManifestError, ManifestProblem, RunError, UnknownStrategy, one_line};
pub use ext4_modes::Ext4Modes;
pub use judge::{Example, Explored, Outcome, Row, RunFacts, judge, render_markdown, render_text};
pub use machine::describe_machine;
pub use manifest::{Expect, ExploreSpec, Mode, Workload, discover, load};
pub use plan::{FULL_MAX_STATES_DEFAULT, Plan, RunOpts};
pub use run::{Driver, Quiet, Selection, Step, fresh_dir, run_workloads, write_tables};
pub use sweep::{Sweep, SweepRow, SweepTarget};
pub use verdict::{NoCrash, RowVerdict, UnknownWord};
