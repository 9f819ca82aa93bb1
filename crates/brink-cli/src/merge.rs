//! `brink merge R1 R2 … -o R`: the shards of one exploration (`brink explore --shard
//! I/N`) into one results directory, as one machine would have written it; the
//! library does the work (`brink_explore::merge`), this file prints what it did.

use std::path::PathBuf;

use anyhow::Result;

#[derive(clap::Args)]
pub struct MergeArgs {
    /// The shards' results directories (any order).
    #[arg(required = true)]
    shards: Vec<PathBuf>,
    /// The merged results directory (must not exist).
    #[arg(short, long)]
    output: PathBuf,
    /// Print the merged summary as JSON.
    #[arg(long)]
    json: bool,
}

/// Merge, name what is missing or stopped, then report as `brink explore` does; the
/// exit code is explore's on the merged summary.
pub fn merge(a: MergeArgs) -> Result<i32> {
    let summary = brink_explore::merge::merge(&a.shards, &a.output)?;
    let info = summary.merged.clone().expect("a merge says what it merged");
    let of = |v: &[u32]| v.iter().map(|k| format!("{k}/{}", info.shards)).collect::<Vec<_>>().join(", ");
    eprintln!(
        "brink: merged {} of {} shards into {}; the complete ones cover {:.0}% of the space",
        info.merged.len(),
        info.shards,
        a.output.display(),
        info.fraction_covered * 100.0
    );
    if !info.missing.is_empty() {
        eprintln!("brink: missing shards: {} (explore them with --shard, then merge again)", of(&info.missing));
    }
    if !info.incomplete.is_empty() {
        eprintln!("brink: shards stopped before their end: {} (resume them, then merge again)", of(&info.incomplete));
    }
    if a.json {
        crate::emit(&(serde_json::to_string_pretty(&summary)? + "\n"))?;
    } else {
        crate::explore::report(&a.output, false, None, None)?;
    }
    Ok(if summary.violations > 0 {
        1
    } else if summary.unjudged() > 0 || !summary.complete {
        2
    } else {
        0
    })
}
