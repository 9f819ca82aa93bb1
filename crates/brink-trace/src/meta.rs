//! `meta.json`: what was recorded, how, and what came of it.

use serde::{Deserialize, Serialize};

/// The trace's metadata. Fields may be added; unknown fields are ignored on read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceMeta {
    pub format_version: u32,
    pub brink_version: String,
    /// Where the events came from: `fuse-loop` (brink record) or `dm-log-writes`.
    pub source: String,
    /// File system on the disk (`ext4`, `xfs`, `btrfs`), or `unknown` for imports.
    pub fs: String,
    #[serde(default)]
    pub mkfs_opts: String,
    #[serde(default)]
    pub mount_opts: String,
    pub image_size: u64,
    pub sector_size: u64,
    pub chunk_bytes: u64,
    /// Number of records in `events.log` and its length in bytes, to detect truncation.
    pub events: u64,
    pub events_log_bytes: u64,
    pub pack_bytes: u64,
    /// Content digest of `base.img` (`image::digest_file`).
    pub base_image_digest: String,
    /// Content digest of the disk as it stood when recording ended, if the source knew it.
    #[serde(default)]
    pub final_image_digest: Option<String>,
    #[serde(default)]
    pub workload: Option<WorkloadInfo>,
    /// Fault injections armed while recording, as their specs (`flush:3,once`, …); empty
    /// without.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub injections: Vec<String>,
    /// The workload's system calls, if recorded (`calls.log`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<crate::CallsMeta>,
}

impl TraceMeta {
    /// Metadata for a new trace; the writer fills in counts, sizes and the base hash.
    pub fn new(source: &str, fs: &str, image_size: u64) -> TraceMeta {
        TraceMeta {
            format_version: crate::FORMAT_VERSION,
            brink_version: env!("CARGO_PKG_VERSION").into(),
            source: source.into(),
            fs: fs.into(),
            mkfs_opts: String::new(),
            mount_opts: String::new(),
            image_size,
            sector_size: crate::SECTOR_BYTES,
            chunk_bytes: crate::CHUNK_BYTES as u64,
            events: 0,
            events_log_bytes: 0,
            pack_bytes: 0,
            base_image_digest: String::new(),
            final_image_digest: None,
            workload: None,
            injections: Vec::new(),
            calls: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    pub argv: Vec<String>,
    #[serde(default)]
    pub setup: Option<String>,
    pub exit: ExitInfo,
    /// Captured output, at most `output_bytes_max` bytes each (the tail is kept).
    pub stdout: String,
    pub stderr: String,
    pub output_truncated: bool,
    pub wall_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code if the workload exited.
    pub code: Option<i32>,
    /// Signal number if it was killed.
    pub signal: Option<i32>,
}

impl ExitInfo {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(c), _) => write!(f, "exit {c}"),
            (None, Some(s)) => write!(f, "signal {s}"),
            (None, None) => write!(f, "unknown"),
        }
    }
}
