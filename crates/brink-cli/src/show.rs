//! `brink show` and `brink verify`: presenting a trace to people and machines.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use brink_explore::results::TraceInfo;
use brink_trace::{Event, Failed, SECTOR_BYTES, TraceReader, TraceSummary};
use serde::Serialize;

use crate::emit;

/// The `--json` object. Fields may be added.
#[derive(Serialize)]
struct ShowJson<'a> {
    trace: String,
    #[serde(flatten)]
    summary: &'a TraceSummary,
    fs: &'a str,
    mount_opts: &'a str,
    mkfs_opts: &'a str,
    image_size: u64,
    source: &'a str,
    format_version: u32,
    workload_argv: Option<&'a [String]>,
    /// Exit code of the workload (null if it died by a signal or there was none).
    workload_exit: Option<i32>,
    workload_signal: Option<i32>,
    workload_wall_ms: Option<u64>,
    final_image_digest: Option<&'a str>,
}

/// A command line as one readable line: words quoted for a POSIX shell (shlex), and
/// control characters (a newline in an argument) escaped so the row stays one line.
fn shell_words(argv: &[String]) -> String {
    let words = argv.iter().map(String::as_str);
    // Only a NUL byte cannot be quoted, and an argument cannot hold one.
    let line = shlex::try_join(words).unwrap_or_else(|_| argv.join(" "));
    line.chars().flat_map(|c| if c.is_control() { c.escape_default().collect() } else { vec![c] }).collect()
}

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1 << 20) as f64)
}

/// `brink show TRACE --files`: per file, the writes and bytes that hold it, then (unless
/// `--summary`) each write with what it holds.
fn show_files(trace: &Path, reader: &TraceReader, json: bool, summary_only: bool) -> Result<i32> {
    let info = TraceInfo::of_trace(reader)?;
    let (attr, links) = (&info.attribution, info.calls.as_ref());
    let files = attr.per_file();
    if json {
        let obj = serde_json::json!({ "trace": trace.display().to_string(), "fs": attr.fs, "covered": attr.covered,
            "notes": attr.notes, "files": files, "writes": attr.writes, "calls": links });
        emit(&(serde_json::to_string_pretty(&obj)? + "\n"))?;
        return Ok(0);
    }
    let mut out = String::new();
    writeln!(out, "trace {} ({}{})", trace.display(), attr.fs, if attr.covered { "" } else { ", not attributed" })?;
    for n in &attr.notes {
        writeln!(out, "  note: {n}")?;
    }
    writeln!(out, "\n{:<40} {:>7} {:>10}  what", "file", "writes", "bytes")?;
    for f in &files {
        let what: Vec<String> = f.kinds.iter().map(|(k, b)| format!("{k} {b}")).collect();
        writeln!(out, "{:<40} {:>7} {:>10}  {}", f.path, f.writes, f.bytes, what.join(", "))?;
    }
    if !summary_only {
        writeln!(out, "\n{:>8}  {:>12}  {:>9}  holds", "event", "sector", "sectors")?;
        for w in &attr.writes {
            let holds: Vec<String> = w.items.iter().map(|i| i.describe()).collect();
            writeln!(
                out,
                "{:>8}  {:>12}  {:>9}  {}",
                w.index,
                w.offset / SECTOR_BYTES,
                w.len / SECTOR_BYTES,
                holds.join("; ")
            )?;
            if let Some(calls) = links.and_then(|l| l.describe_write(w.index)) {
                writeln!(out, "{:>8}  {:>12}  {:>9}  by {calls}", "", "", "")?;
            }
        }
    }
    emit(&out)?;
    Ok(0)
}

pub fn show(trace: &Path, json: bool, summary_only: bool, files: bool) -> Result<i32> {
    let reader = TraceReader::open(trace)?;
    if files {
        return show_files(trace, &reader, json, summary_only);
    }
    let summary = TraceSummary::compute(&reader)?;
    if json {
        emit(&(serde_json::to_string_pretty(&show_json(trace, &reader, &summary))? + "\n"))?;
        return Ok(0);
    }
    let mut out = header(trace, &reader, &summary);
    if !summary_only {
        writeln!(out, "\n{:>8}  {:<12}  {:>12}  {:>9}  detail", "event", "kind", "sector", "sectors")?;
        emit(&out)?;
        out.clear();
        for ev in reader.events()? {
            let ev = ev?;
            let (sector, count, detail) = cells(&ev.event);
            let fmt = |v: Option<u64>| v.map(|v| (v / SECTOR_BYTES).to_string()).unwrap_or_default();
            writeln!(
                out,
                "{:>8}  {:<12}  {:>12}  {:>9}  {}",
                ev.index,
                ev.event.kind(),
                fmt(sector),
                fmt(count),
                detail
            )?;
            // Print as we go: a trace may hold millions of events.
            if out.len() > 1 << 16 {
                emit(&out)?;
                out.clear();
            }
        }
    }
    emit(&out)?;
    Ok(0)
}

fn show_json<'a>(trace: &Path, reader: &'a TraceReader, summary: &'a TraceSummary) -> ShowJson<'a> {
    let meta = reader.meta();
    let wl = meta.workload.as_ref();
    ShowJson {
        trace: trace.display().to_string(),
        summary,
        fs: &meta.fs,
        mount_opts: &meta.mount_opts,
        mkfs_opts: &meta.mkfs_opts,
        image_size: meta.image_size,
        source: &meta.source,
        format_version: meta.format_version,
        workload_argv: wl.map(|w| w.argv.as_slice()),
        workload_exit: wl.and_then(|w| w.exit.code),
        workload_signal: wl.and_then(|w| w.exit.signal),
        workload_wall_ms: wl.map(|w| w.wall_ms),
        final_image_digest: meta.final_image_digest.as_deref(),
    }
}

/// `brink show TRACE --syscalls`: the workload's calls on the recorded file system, one
/// line each, marks in place; what cannot be traced said first.
pub fn show_calls(trace: &Path, json: bool) -> Result<i32> {
    let reader = TraceReader::open(trace)?;
    let (meta, calls) = calls_of(trace, &reader)?;
    let place = brink_calls::Place { cwd: meta.cwd.as_bytes(), mark_file: meta.mark_file.as_bytes() };
    let (shown, hidden) = brink_calls::listing(&calls, place);
    if json {
        let obj = serde_json::json!({ "trace": trace.display().to_string(), "tracer": meta.tracer,
            "untraceable": meta.untraceable, "calls": shown, "calls_total": calls.len(), "calls_not_shown": hidden });
        emit(&(serde_json::to_string_pretty(&obj)? + "\n"))?;
        return Ok(0);
    }
    let mut out = format!("trace {} ({} calls recorded by {})\n", trace.display(), calls.len(), meta.tracer);
    for u in &meta.untraceable {
        writeln!(out, "  WARNING: not traced: {u}")?;
    }
    writeln!(out, "\n{:>7}  {:>7}  {:<48}  {:<10}  at", "call", "thread", "what", "result")?;
    for c in &shown {
        let what = match &c.mark {
            Some(m) => format!("── mark \"{}\" ──", brink_triage::printable(m)),
            None => brink_triage::printable(&c.text).into_owned(),
        };
        writeln!(
            out,
            "{:>7}  {:>7}  {:<48}  {:<10}  {}",
            c.seq,
            c.tid,
            what,
            c.result,
            c.at.as_deref().unwrap_or("-")
        )?;
    }
    writeln!(out, "\n{hidden} calls outside the recorded file system are not shown (the loader, /dev, /proc …)")?;
    emit(&out)?;
    Ok(0)
}

/// The summary rows above the event table.
fn header(trace: &Path, reader: &TraceReader, summary: &TraceSummary) -> String {
    let meta = reader.meta();
    let wl = meta.workload.as_ref();
    let mut out = format!("trace {}\n", trace.display());
    let mut row = |k: &str, v: String| writeln!(out, "  {k:<14} {v}").expect("string write");
    row("source", meta.source.clone());
    row("file system", format!("{} (mount: '{}', mkfs: '{}')", meta.fs, meta.mount_opts, meta.mkfs_opts));
    row("image", mib(meta.image_size));
    if let Some(w) = wl {
        row("workload", shell_words(&w.argv));
        if let Some(s) = &w.setup {
            row("setup", s.clone());
        }
        row("exit", format!("{} after {:.2}s", w.exit, w.wall_ms as f64 / 1000.0));
    }
    row("events", summary.events.to_string());
    row(
        "writes",
        format!("{} ({} written, {} stored)", summary.writes, mib(summary.bytes_written), mib(summary.bytes_stored)),
    );
    row("flushes", format!("{} (fua writes: {})", summary.flushes, summary.fua));
    row("epochs", summary.epochs.to_string());
    row("discards", summary.discards.to_string());
    row("marks", summary.marks.to_string());
    match &meta.calls {
        Some(c) => row("calls", format!("{} system calls ({}; show --syscalls lists them)", c.count, c.tracer)),
        None => row("calls", "not recorded".into()),
    }
    for u in meta.calls.iter().flat_map(|c| &c.untraceable) {
        row("WARNING", format!("not traced: {u}"));
    }
    if summary.errors > 0 {
        row("errors", format!("{} (injected EIO)", summary.errors));
    }
    if let Some(w) = wl {
        for (name, text) in [("stdout", &w.stdout), ("stderr", &w.stderr)] {
            let lines: Vec<&str> = text.lines().collect();
            if !lines.is_empty() {
                let tail = &lines[lines.len().saturating_sub(5)..];
                row(name, format!("(last {} lines) {}", tail.len(), tail.join(" | ")));
            }
        }
    }
    out
}

/// An event's sector, sector count and detail columns (in bytes; None where the event
/// has no extent).
fn cells(event: &Event) -> (Option<u64>, Option<u64>, String) {
    match event {
        Event::Write(w) => {
            let mut flags = Vec::new();
            if w.flags.fua() {
                flags.push("fua");
            }
            if w.flags.metadata() {
                flags.push("meta");
            }
            (Some(w.offset), Some(w.len), flags.join(","))
        }
        Event::Discard { offset, len } | Event::WriteZeroes { offset, len } => {
            (Some(*offset), Some(*len), String::new())
        }
        Event::Flush => (None, None, String::new()),
        Event::Mark { text } => (None, None, format!("{text:?}")),
        Event::Error(Failed::Write { offset, len }) => (Some(*offset), Some(*len), "injected EIO on a write".into()),
        Event::Error(Failed::Flush) => (None, None, "injected EIO on a flush".into()),
    }
}

pub fn verify(trace: &Path) -> Result<i32> {
    let r = brink_trace::verify(trace)?;
    let (applied, got) = (r.events, &r.digest);
    if r.compared {
        emit(&format!(
            "ok: replaying {applied} events onto the base image gives the recorded final image (digest {got})\n"
        ))?;
    } else {
        emit(&format!(
            "ok: replayed {applied} events (digest {got}); the trace holds no final image hash to compare with\n"
        ))?;
    }
    if let Some(n) = r.calls {
        emit(&format!("ok: {n} system calls read back, their data intact\n"))?;
    }
    Ok(0)
}

/// The trace's calls and where they were made, or an error saying the trace has none.
fn calls_of(trace: &Path, reader: &TraceReader) -> Result<(brink_trace::CallsMeta, Vec<brink_calls::Call>)> {
    let (Some(meta), Some(calls)) = (reader.meta().calls.clone(), reader.calls()?) else {
        anyhow::bail!(
            "{} holds no system calls (recorded with --no-syscalls, imported, or by an older brink)",
            trace.display()
        );
    };
    Ok((meta, calls.collect::<Result<_, _>>()?))
}

/// `brink lint TRACE`: the known traps visible in the calls, each with its call and line.
/// Exit 1 if any is found.
pub fn lint(trace: &Path, json: bool) -> Result<i32> {
    let reader = TraceReader::open(trace)?;
    let (meta, calls) = calls_of(trace, &reader)?;
    let cwd = Path::new(&meta.cwd);
    let options = brink_lint::LintOptions::new(Path::new(&meta.mark_file)).base_dir(cwd).root(cwd);
    let findings = brink_lint::lint_with(&calls, &options);
    if json {
        let obj = serde_json::json!({ "trace": trace.display().to_string(), "untraceable": meta.untraceable,
            "findings": findings });
        emit(&(serde_json::to_string_pretty(&obj)? + "\n"))?;
    } else {
        let mut out = String::new();
        for u in &meta.untraceable {
            writeln!(out, "WARNING: not traced, so not linted: {u}")?;
        }
        for f in &findings {
            writeln!(out, "{}", brink_triage::printable(&f.to_string()))?;
        }
        let n = findings.len();
        writeln!(out, "{n} finding{} in {} calls", if n == 1 { "" } else { "s" }, calls.len())?;
        emit(&out)?;
    }
    Ok(i32::from(!findings.is_empty()))
}
