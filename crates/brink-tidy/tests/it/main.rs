//! The repository's hygiene rules (see the crate docs); each test lists every offender.

use brink_tidy::{dangling_paths, missing_module_docs, modules_missing_from_architecture, named_paths, repo_root};

#[test]
fn every_rust_file_opens_with_a_module_doc() {
    let missing = missing_module_docs(&repo_root());
    assert!(missing.is_empty(), "these files do not start with a `//!` line saying what they are for: {missing:#?}");
}

#[test]
fn paths_named_in_docs_exist() {
    let bad = dangling_paths(&repo_root());
    assert!(bad.is_empty(), "documents name paths that do not exist: {bad:#?}");
}

#[test]
fn architecture_names_every_module() {
    let missing = modules_missing_from_architecture(&repo_root());
    assert!(missing.is_empty(), "ARCHITECTURE.md does not name these modules: {missing:#?}");
}

#[test]
fn named_paths_skips_prose_and_placeholders() {
    let text = "see `crates/brink-trace/src/lib.rs`, `results/NAME.md`, `brink run`, `checkers/*/check.sh`, \
                `README.md`, `workloads/sqlite/workload.toml:3`";
    assert_eq!(named_paths(text), ["crates/brink-trace/src/lib.rs", "README.md", "workloads/sqlite/workload.toml"]);
}
