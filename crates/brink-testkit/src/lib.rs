//! What brink's tests share: one rule for a test that needs what a machine may lack
//! (root, `/dev/fuse`, loop devices, cgroup v2, a program). Such a test runs where it can;
//! elsewhere it fails, saying what is missing, unless `BRINK_SKIP_PRIVILEGED=1` asks to
//! skip it, and then it says `SKIPPED` loudly. A test never passes silently for want of
//! what it tests. Also the fixtures several crates' tests build alike. A dev-dependency
//! only.

#![forbid(unsafe_code)]

use std::path::Path;

/// The environment variable that turns a missing need into a loud skip.
pub const SKIP_VAR: &str = "BRINK_SKIP_PRIVILEGED";

/// Something a test needs from the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    Root,
    /// `/dev/fuse`: brink's FUSE disks.
    Fuse,
    /// `/dev/loop-control`: loop devices.
    Loop,
    /// A program on `PATH` (or in an sbin directory).
    Program(&'static str),
}

impl Need {
    /// The usual needs of a test that records or recovers on the kernel.
    pub const KERNEL: [Need; 3] = [Need::Root, Need::Fuse, Need::Loop];

    fn met(self) -> bool {
        match self {
            Need::Root => nix::unistd::geteuid().is_root(),
            Need::Fuse => Path::new("/dev/fuse").exists(),
            Need::Loop => Path::new("/dev/loop-control").exists(),
            Need::Program(p) => find_program(p),
        }
    }

    fn name(self) -> String {
        match self {
            Need::Root => "root".into(),
            Need::Fuse => "/dev/fuse".into(),
            Need::Loop => "/dev/loop-control".into(),
            Need::Program(p) => p.into(),
        }
    }
}

/// Whether `program` is on `PATH` or in an sbin directory.
fn find_program(program: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let sbin = ["/usr/local/sbin", "/usr/sbin", "/sbin"].map(std::path::PathBuf::from);
    std::env::split_paths(&path).chain(sbin).any(|d| d.join(program).is_file())
}

/// True if every need of `test` is met. Otherwise: with [`SKIP_VAR`]`=1`, prints
/// `SKIPPED <test> needs …` and returns false; without, panics naming what is missing.
pub fn can_run(test: &str, needs: &[Need]) -> bool {
    let missing: Vec<String> = needs.iter().filter(|n| !n.met()).map(|n| n.name()).collect();
    if missing.is_empty() {
        return true;
    }
    skip_or_fail(test, &format!("it lacks {}", missing.join(", ")))
}

/// The rule for a test that cannot run here for a reason `why` (a sentence fragment):
/// skip loudly with [`SKIP_VAR`]`=1` (returns false), else panic.
pub fn skip_or_fail(test: &str, why: &str) -> bool {
    if std::env::var_os(SKIP_VAR).is_some_and(|v| v == "1") {
        eprintln!("SKIPPED {test}: {why}");
        return false;
    }
    panic!(
        "{test} cannot run here: {why}; run the tests as root with setup.sh's packages, as CI does, or set {SKIP_VAR}=1 to skip them loudly"
    );
}

/// Processes (ids) whose command line holds `marker`: what a test left running.
pub fn processes_with(marker: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| String::from_utf8_lossy(&c).contains(marker))
        })
        .collect()
}

/// Builds dm-log-writes logs the way the kernel target lays them out: a superblock
/// sector (magic, version, entry count, sector size, and four bytes of struct padding,
/// which the kernel leaves as garbage), then per entry a header sector (sector, sector
/// count, flags, text length, text) followed by its data.
pub struct LogBuilder {
    ss: usize,
    entries: Vec<Vec<u8>>,
}

impl LogBuilder {
    pub fn new(ss: usize) -> Self {
        LogBuilder { ss, entries: Vec::new() }
    }

    pub fn entry(&mut self, sector: u64, nr: u64, flags: u64, text: &[u8], data: &[u8]) -> &mut Self {
        let mut h = vec![0u8; self.ss.max(32 + text.len())];
        h[0..8].copy_from_slice(&sector.to_le_bytes());
        h[8..16].copy_from_slice(&nr.to_le_bytes());
        h[16..24].copy_from_slice(&flags.to_le_bytes());
        h[24..32].copy_from_slice(&(text.len() as u64).to_le_bytes());
        h[32..32 + text.len()].copy_from_slice(text);
        h.extend_from_slice(data);
        self.entries.push(h);
        self
    }

    /// The log's bytes, with `sector_size` in the superblock (normally the builder's).
    pub fn bytes_with_sector_size(&self, sector_size: u32) -> Vec<u8> {
        let mut out = vec![0u8; self.ss.max(32)];
        out[0..8].copy_from_slice(&0x006a_7366_7773_6872_u64.to_le_bytes());
        out[8..16].copy_from_slice(&1u64.to_le_bytes());
        out[16..24].copy_from_slice(&(self.entries.len() as u64).to_le_bytes());
        out[24..28].copy_from_slice(&sector_size.to_le_bytes());
        out[28..32].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        for e in &self.entries {
            out.extend_from_slice(e);
        }
        out
    }

    pub fn bytes(&self) -> Vec<u8> {
        self.bytes_with_sector_size(self.ss as u32)
    }

    /// Write the log to `path`.
    pub fn build(&self, path: &Path) {
        std::fs::write(path, self.bytes()).expect("write the dm-log-writes log");
    }
}
