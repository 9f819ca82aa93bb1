//! Repository hygiene, checked by `cargo test` (as rust-analyzer's `tidy` does): rules that no
//! compiler or linter enforces but that keep the code base readable for the next person.
//!
//! - every Rust file opens with a `//!` line saying what it is for;
//! - every repository path a document names in backquotes exists (docs rot silently otherwise);
//! - `ARCHITECTURE.md` names every module of every crate.
//!
//! The functions return what they found wrong, so that the test prints all of it at once.

#![forbid(unsafe_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// Directories at the top of the repository that a path named in a document may start with.
const TOP_DIRS: &[&str] = &["crates/", "workloads/", "checkers/", "results/", "bench/", ".ci/"];

/// Files at the top of the repository that a document may name on their own.
const TOP_FILES: &[&str] =
    &["README.md", "ARCHITECTURE.md", "packages.txt", "setup.sh", "Cargo.toml", "rustfmt.toml", "clippy.toml"];

/// The repository root, two levels above this crate.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("the repository root exists")
}

/// Every file under `dir` (recursively) whose name ends with `suffix`, skipping build output
/// and hidden directories other than `.ci`.
pub fn files(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            let name = e.file_name().to_string_lossy().into_owned();
            if p.is_dir() {
                if name != "target" && (!name.starts_with('.') || name == ".ci") {
                    stack.push(p);
                }
            } else if name.ends_with(suffix) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Rust files under `crates/` whose first line is not a `//!` doc.
pub fn missing_module_docs(root: &Path) -> Vec<PathBuf> {
    files(&root.join("crates"), ".rs")
        .into_iter()
        .filter(|p| !fs::read_to_string(p).is_ok_and(|s| s.starts_with("//!")))
        .map(|p| p.strip_prefix(root).unwrap_or(&p).to_path_buf())
        .collect()
}

/// The backquoted words of `text` that look like repository paths: they start with a
/// top-level directory or are a top-level file, and hold no placeholder.
pub fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, chunk) in text.split('`').enumerate() {
        if i % 2 == 0 || chunk.contains(char::is_whitespace) {
            continue;
        }
        let path = chunk.split(':').next().unwrap_or("").trim_end_matches(['.', ',', ')']);
        let placeholder = path.contains(['*', '<', '{', '…', '$'])
            || path.chars().any(|c| c.is_ascii_uppercase())
                && !TOP_FILES.iter().any(|f| path.ends_with(f) || path.contains("README"));
        let looks_like = TOP_DIRS.iter().any(|d| path.starts_with(d)) || TOP_FILES.contains(&path);
        if looks_like && !placeholder {
            out.push(path.to_string());
        }
    }
    out
}

/// Paths named in the repository's Markdown documents and module docs that do not exist,
/// as "document: path". A path resolves from the repository root or from the document's
/// own directory.
pub fn dangling_paths(root: &Path) -> Vec<String> {
    let mut docs = files(root, ".md");
    docs.retain(|p| !p.starts_with(root.join("results")) || p.parent() == Some(&root.join("results")));
    let mut bad = Vec::new();
    for doc in docs.iter().chain(files(&root.join("crates"), ".rs").iter()) {
        let Ok(text) = fs::read_to_string(doc) else { continue };
        let text: String = if doc.extension().is_some_and(|e| e == "rs") {
            text.lines().filter(|l| l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
        } else {
            text
        };
        let here = doc.parent().unwrap_or(root);
        for p in named_paths(&text) {
            if !root.join(&p).exists() && !here.join(&p).exists() {
                bad.push(format!("{}: {p}", doc.strip_prefix(root).unwrap_or(doc).display()));
            }
        }
    }
    bad
}

/// Modules of the workspace's crates (as `crate/module`) that `ARCHITECTURE.md` does not name
/// as `module` or `module.rs`.
pub fn modules_missing_from_architecture(root: &Path) -> Vec<String> {
    let arch = fs::read_to_string(root.join("ARCHITECTURE.md")).unwrap_or_default();
    let mut missing = Vec::new();
    for f in files(&root.join("crates"), ".rs") {
        let rel = f.strip_prefix(root.join("crates")).unwrap_or(&f);
        let mut parts = rel.iter().map(|c| c.to_string_lossy().into_owned());
        let (Some(krate), Some(dir)) = (parts.next(), parts.next()) else { continue };
        let stem = f.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        if dir != "src" || ["lib", "main", "mod"].contains(&stem.as_str()) {
            continue;
        }
        let named = arch.contains(&format!("`{stem}`")) || arch.contains(&format!("{stem}.rs"));
        if !named {
            missing.push(format!(
                "{krate}/{}",
                rel.iter().skip(2).map(|c| c.to_string_lossy()).collect::<Vec<_>>().join("/")
            ));
        }
    }
    missing
}
