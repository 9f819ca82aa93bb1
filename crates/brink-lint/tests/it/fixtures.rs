//! The lint over `brink-calls`' committed strace fixtures (its `tests/fixtures`: every
//! decoded call, threads, a killed child): whatever the trace, no panic, and the same
//! findings twice.

use std::path::{Path, PathBuf};

use brink_calls::parse_file;
use brink_lint::{LintOptions, lint_with};

#[test]
fn the_calls_crates_fixtures_lint_without_panics_and_deterministically() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../brink-calls/tests/fixtures");
    for name in ["basic.strace", "kinds.strace", "killed.strace"] {
        let calls = parse_file(&fixtures.join(name)).unwrap().calls;
        // The fixtures were recorded in /tmp/bc/fx; any of their files can play the mark.
        for mark in ["/tmp/bc/fx/a", "/tmp/bc/fx/t2", "/nowhere"] {
            let options = LintOptions::new(Path::new(mark)).base_dir(Path::new("/tmp/bc/fx"));
            let first = lint_with(&calls, &options);
            assert_eq!(first, lint_with(&calls, &options), "{name}, mark {mark}");
            for finding in &first {
                assert!(finding.count >= 1 && !finding.calls.is_empty() && !finding.message.is_empty());
            }
        }
    }
}
