//! The verdict cache: a nightly run on an unchanged trace, or on states whose images did
//! not change, reuses the verdicts of earlier runs instead of checking again.
//!
//! A verdict depends on the state's image, the marks it is held to, the checkers and
//! how the state is recovered. The key hashes all of them: the image's content hash
//! (the same one the explorer deduplicates by), the marks' texts, the file system and
//! mount options, the recovery mode, the brink version, and each checker's *identity*:
//! its command line and the content of every regular file in the folder of each word
//! of it that names a file (so editing `checkers/sqlite/check.sh` or a helper beside it
//! invalidates its verdicts; a checker that reads files elsewhere is not tracked).
//! At the logical level (brink-logical) the image is the state's tree hash and the
//! recovery is the level and the checker protocol, so equal trees share a verdict
//! across runs and across models.
//!
//! Wire format: `DIR/verdicts.jsonl` and `DIR/verdicts.*.jsonl`, one
//! `{"key":…,"checks":[…]}` a line; a line cut by a kill, or otherwise not a line of that
//! shape, is ignored. Each run appends only to a file of its own,
//! `verdicts.HOST.PID.NANOS.jsonl` (one `write(2)` a line, fsynced when the run ends),
//! and reads them all when it opens. That is what makes one cache safe for many writers
//! at once, the shards of an exploration on a shared file system included: a file has a
//! single writer, so no two lines can interleave even where `O_APPEND` is not atomic
//! (NFS). A run does not see verdicts stored by another run after it opened the cache.
//! Verdicts with a checker failure are not stored (they may be transient); media-fault
//! states are not cached (a latent sector error is not in the image). Limits:
//! `FOLDER_FILES_MAX` files and `FOLDER_BYTES_MAX` bytes hashed per checker folder.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use brink_check::{CheckOutcome, Verdict};
use serde::{Deserialize, Serialize};

use crate::{CheckerSpec, ExploreError, ImageHash};

pub const FILE: &str = "verdicts.jsonl";
const FOLDER_FILES_MAX: usize = 256;
const FOLDER_BYTES_MAX: u64 = 64 << 20;

#[derive(Serialize, Deserialize)]
struct Line {
    key: String,
    checks: Vec<CheckOutcome>,
}

pub struct VerdictCache {
    path: PathBuf,
    identity: blake3::Hash,
    map: Mutex<HashMap<String, Vec<CheckOutcome>>>,
    file: Mutex<File>,
    pub hits: AtomicU64,
    pub stored: AtomicU64,
}

/// What a checker is: its command and the files beside each file its command names.
fn checker_identity(spec: &CheckerSpec, h: &mut blake3::Hasher) {
    h.update(spec.name().as_bytes());
    h.update(b"\0");
    let CheckerSpec::Command(cmd) = spec else { return };
    for word in cmd.split_whitespace() {
        let p = Path::new(word);
        if !p.is_file() {
            continue;
        }
        let Some(dir) = p.parent().map(|d| if d.as_os_str().is_empty() { Path::new(".") } else { d }) else { continue };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file()).take(FOLDER_FILES_MAX).collect()
            })
            .unwrap_or_default();
        files.sort();
        let mut budget = FOLDER_BYTES_MAX;
        for f in files {
            let Ok(file) = File::open(&f) else { continue };
            h.update(f.file_name().map(|n| n.as_encoded_bytes()).unwrap_or_default());
            let mut buf = Vec::new();
            let _ = file.take(budget).read_to_end(&mut buf);
            budget = budget.saturating_sub(buf.len() as u64);
            h.update(&(buf.len() as u64).to_le_bytes());
            h.update(&buf);
        }
    }
}

/// The cache's files: the single file of older versions and one per run, sorted.
fn verdict_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let name = e?.file_name();
        let name = name.to_string_lossy();
        if name == FILE || name.starts_with("verdicts.") && name.ends_with(".jsonl") {
            files.push(dir.join(&*name));
        }
    }
    files.sort();
    Ok(files)
}

/// Every well-formed line of `path` into `map`. A file that is not a regular file (a
/// FIFO would block) is read as empty.
fn read_into(path: &Path, map: &mut HashMap<String, Vec<CheckOutcome>>) {
    let Ok(f) = brink_trace::open_regular(path) else { return };
    for line in BufReader::new(f).lines() {
        let Ok(line) = line else { break };
        if let Ok(l) = serde_json::from_str::<Line>(&line) {
            map.insert(l.key, l.checks);
        }
    }
}

/// This run's file: unique across machines (host), processes (pid) and time.
fn own_file_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host = host.trim();
    let host: String = host.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' }).collect();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("verdicts.{host}.{}.{nanos}.jsonl", std::process::id())
}

impl VerdictCache {
    /// Open (creating) the cache in `dir` for one exploration's checkers and recovery.
    pub fn open(dir: &Path, checkers: &[CheckerSpec], recovery: &str) -> Result<VerdictCache, ExploreError> {
        std::fs::create_dir_all(dir).map_err(|e| ExploreError::io(dir, e))?;
        let mut h = blake3::Hasher::new();
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(b"\0");
        h.update(recovery.as_bytes());
        for c in checkers {
            checker_identity(c, &mut h);
        }
        let identity = h.finalize();
        let mut map = HashMap::new();
        for f in verdict_files(dir).map_err(|e| ExploreError::io(dir, e))? {
            read_into(&f, &mut map);
        }
        let path = dir.join(own_file_name());
        let file =
            OpenOptions::new().create_new(true).append(true).open(&path).map_err(|e| ExploreError::io(&path, e))?;
        Ok(VerdictCache {
            path,
            identity,
            map: Mutex::new(map),
            file: Mutex::new(file),
            hits: AtomicU64::new(0),
            stored: AtomicU64::new(0),
        })
    }

    fn key(&self, image: &ImageHash, marks: &[String]) -> String {
        let mut h = blake3::Hasher::new();
        h.update(self.identity.as_bytes());
        h.update(image.to_string().as_bytes());
        for m in marks {
            h.update(b"\n");
            h.update(m.as_bytes());
        }
        h.finalize().to_hex().to_string()
    }

    /// The verdict of an identical state, if an earlier run checked one.
    pub fn get(&self, image: &ImageHash, marks: &[String]) -> Option<Vec<CheckOutcome>> {
        let got = self.map.lock().expect("cache").get(&self.key(image, marks)).cloned();
        if got.is_some() {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        got
    }

    pub fn put(&self, image: &ImageHash, marks: &[String], checks: &[CheckOutcome]) -> Result<(), ExploreError> {
        if checks.is_empty() || checks.iter().any(|c| c.verdict == Verdict::CheckerFailure) {
            return Ok(());
        }
        let key = self.key(image, marks);
        let mut line = serde_json::to_vec(&Line { key: key.clone(), checks: checks.to_vec() }).expect("json");
        line.push(b'\n');
        self.file.lock().expect("cache").write_all(&line).map_err(|e| ExploreError::io(&self.path, e))?;
        self.map.lock().expect("cache").insert(key, checks.to_vec());
        self.stored.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Make what this run stored durable.
    pub fn sync(&self) -> Result<(), ExploreError> {
        self.file.lock().expect("cache").sync_data().map_err(|e| ExploreError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(checker: &str) -> Vec<CheckOutcome> {
        vec![CheckOutcome {
            checker: checker.into(),
            verdict: Verdict::Consistent,
            message: String::new(),
            details: None,
            ms: 1,
        }]
    }

    /// Shards writing one cache at once each append to a file of their own; a later run
    /// reads every file, the single file of older versions too, and skips lines that
    /// are not verdicts (one cut by a kill).
    #[test]
    fn concurrent_writers_never_share_a_file_and_every_verdict_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let checkers = [CheckerSpec::Command("true".into())];
        let (h1, h2, h3) = (ImageHash::sector(1, b"a"), ImageHash::sector(2, b"b"), ImageHash::sector(3, b"c"));
        let marks = ["m".to_string()];
        let a = VerdictCache::open(dir.path(), &checkers, "r").unwrap();
        let b = VerdictCache::open(dir.path(), &checkers, "r").unwrap();
        assert_ne!(a.path, b.path);
        a.put(&h1, &marks, &pass("true")).unwrap();
        b.put(&h2, &marks, &pass("true")).unwrap();
        a.sync().unwrap();
        b.sync().unwrap();
        let old = VerdictCache::open(tempfile::tempdir().unwrap().path(), &checkers, "r").unwrap();
        let line = serde_json::to_string(&Line { key: old.key(&h3, &marks), checks: pass("true") }).unwrap();
        std::fs::write(dir.path().join(FILE), format!("{line}\n{{\"key\":\"cut")).unwrap();
        let c = VerdictCache::open(dir.path(), &checkers, "r").unwrap();
        for h in [h1, h2, h3] {
            assert_eq!(c.get(&h, &marks).map(|v| v.len()), Some(1));
        }
        assert_eq!(c.get(&h1, &[]), None, "other marks, another key");
        assert_eq!(verdict_files(dir.path()).unwrap().len(), 4);
    }
}
