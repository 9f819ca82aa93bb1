//! `brink demo`: the first thing a new user runs. Records a bundled workload (an
//! atomic-replace that never fsyncs its directory) on ext4 and shows the trace. Needs
//! no file outside the binary.

use std::path::PathBuf;

use anyhow::Result;
use brink_blockdev::FsKind;
use brink_record::{Interrupt, RecordConfig};

/// The bundled workload: write a file, make it durable, acknowledge; then replace it via
/// a temporary file and rename, acknowledging without fsyncing the directory.
const WORKLOAD: &str = r#"
printf 'version 1\n' > data && sync data && echo "created data v1" > "$BRINK_MARK"
printf 'version 2\n' > data.tmp && sync data.tmp && mv data.tmp data
echo "replaced data with v2" > "$BRINK_MARK"
"#;

pub fn demo(keep: Option<PathBuf>, interrupt: Interrupt) -> Result<i32> {
    let tmp = tempfile::Builder::new().prefix("brink-demo-").tempdir()?;
    let output = keep.clone().unwrap_or_else(|| tmp.path().join("trace"));
    let cfg = RecordConfig {
        fs: FsKind::Ext4,
        mkfs_opts: String::new(),
        mount_opts: "data=ordered".parse()?,
        size: 64 << 20,
        setup: None,
        argv: vec!["/bin/sh".into(), "-c".into(), WORKLOAD.into()],
        output: output.clone(),
        interrupt,
    };
    crate::emit("brink demo: recording an atomic-replace workload on ext4 (data=ordered), 64 MiB image\n\n")?;
    crate::record_with_progress(&cfg)?;
    crate::show::show(&output, false, false)?;
    if keep.is_some() {
        crate::emit(&format!("\nthe trace is in {}; look again with: brink show {}\n", output.display(), output.display()))?;
    }
    Ok(0)
}
