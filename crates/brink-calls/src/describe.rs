//! The calls in the program's terms, for people (`brink show --syscalls`) and machines
//! (its `--json`): each call as one short line with its paths resolved and shown relative
//! to the workload's directory, its result, the source line that made it, and marks in
//! place (a write to the mark file is the acknowledgement it carries). Calls that touch
//! nothing of the recorded file system (the loader reading libraries, `/dev/null`) are
//! counted, not listed.

use serde::Serialize;

use crate::{Call, CallKind, CallResult, Fd, Flags, Resolver, open_flag};

/// Where the workload ran, as the trace says.
#[derive(Debug, Clone, Copy)]
pub struct Place<'a> {
    /// The workload's starting directory: the recorded file system's mount.
    pub cwd: &'a [u8],
    /// The mark file (`$BRINK_MARK`).
    pub mark_file: &'a [u8],
}

/// One call as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Shown {
    pub seq: u64,
    pub tid: u32,
    pub name: String,
    /// The call in words: `rename(f.tmp → f)`, `write(log, 100 bytes at 4096)`.
    pub text: String,
    /// `ok`, `fd 3`, or the error (`EIO`).
    pub result: String,
    /// The program's line that made it (`prog.c:42 in main`), else its object and offset.
    pub at: Option<String>,
    /// The acknowledgement, if this is a write to the mark file.
    pub mark: Option<String>,
    /// What cannot be traced about it, if anything.
    pub untraceable: Option<String>,
}

/// The calls of `calls` that touch the recorded file system (or acknowledge, or sync, or
/// cannot be traced), and how many others there were.
pub fn listing(calls: &[Call], place: Place<'_>) -> (Vec<Shown>, usize) {
    let mut r = Resolver::new(calls, place.cwd);
    let (mut shown, mut hidden) = (Vec::new(), 0);
    for c in calls {
        let paths = paths_of(c, &r);
        let mark = is_mark(c, place).then(|| mark_text(c));
        let inside = paths.iter().any(|p| under(p, place.cwd));
        let always = matches!(c.kind, CallKind::Sync | CallKind::Untraceable { .. });
        if mark.is_some() || inside || always {
            let rel = |p: &[u8]| relative(p, place.cwd);
            shown.push(Shown {
                seq: c.seq,
                tid: c.tid,
                name: c.name.clone(),
                text: text(c, &paths.iter().map(|p| rel(p)).collect::<Vec<_>>()),
                result: result(c),
                at: at(c, place.cwd),
                mark,
                untraceable: c.untraceable().map(|u| u.what()),
            });
        } else {
            hidden += 1;
        }
        r.observe(c);
    }
    (shown, hidden)
}

/// Whether `c` is a write to the mark file (an acknowledgement).
pub fn is_mark(c: &Call, place: Place<'_>) -> bool {
    matches!(&c.kind, CallKind::Write { fd, .. } if fd.path.as_deref() == Some(place.mark_file))
        && matches!(c.result, CallResult::Ok(_))
}

/// The text of a mark write: its data, less the final newline.
pub fn mark_text(c: &Call) -> String {
    match &c.kind {
        CallKind::Write { data, .. } => String::from_utf8_lossy(data).trim_end_matches('\n').to_string(),
        _ => String::new(),
    }
}

fn under(path: &[u8], dir: &[u8]) -> bool {
    path == dir || (path.starts_with(dir) && path.get(dir.len()) == Some(&b'/'))
}

/// `path` relative to `dir` when under it (`.` for `dir` itself), else as it is.
pub fn relative(path: &[u8], dir: &[u8]) -> String {
    crate::show_path(Some(crate::bytes_path(dir)), crate::bytes_path(path))
}

fn fd_path(fd: &Fd) -> Vec<u8> {
    fd.path.clone().unwrap_or_else(|| format!("fd {}", fd.num).into_bytes())
}

/// Every path `c` names, absolute, in the order its text shows them.
pub fn paths_of(c: &Call, r: &Resolver) -> Vec<Vec<u8>> {
    let t = c.tid;
    match &c.kind {
        CallKind::Open { dir, path, .. } => vec![r.path(t, dir.as_ref(), path)],
        CallKind::Close { fd } | CallKind::Fcntl { fd, .. } | CallKind::Fallocate { fd, .. } => vec![fd_path(fd)],
        CallKind::Dup { old, .. } => vec![fd_path(old)],
        CallKind::Write { fd, .. } | CallKind::Fsync { fd, .. } | CallKind::SyncFileRange { fd, .. } => {
            vec![fd_path(fd)]
        }
        CallKind::Syncfs { fd } => vec![fd_path(fd)],
        CallKind::Chdir { target } | CallKind::Truncate { target, .. } => vec![r.target(t, target)],
        CallKind::Rename { old_dir, old, new_dir, new, .. } | CallKind::Link { old_dir, old, new_dir, new } => {
            vec![r.path(t, old_dir.as_ref(), old), r.path(t, new_dir.as_ref(), new)]
        }
        CallKind::Unlink { dir, path, .. }
        | CallKind::Mkdir { dir, path, .. }
        | CallKind::Symlink { dir, path, .. } => {
            vec![r.path(t, dir.as_ref(), path)]
        }
        CallKind::Copy { from, to, .. } => vec![fd_path(from), fd_path(to)],
        CallKind::Mmap(m) => m.fd.iter().map(fd_path).collect(),
        _ => Vec::new(),
    }
}

fn flag_names(flags: Flags) -> String {
    let names: Vec<&str> = open_flag::NAMES.iter().filter(|(_, b)| flags.contains(*b)).map(|(n, _)| *n).collect();
    names.join("|")
}

/// The call in words, with `paths` (from [`paths_of`], already made relative).
fn text(c: &Call, paths: &[String]) -> String {
    let p = |i: usize| paths.get(i).cloned().unwrap_or_default();
    match &c.kind {
        CallKind::Open { flags, .. } => {
            let f = flag_names(*flags);
            if f.is_empty() { format!("{}({})", c.name, p(0)) } else { format!("{}({}, {f})", c.name, p(0)) }
        }
        CallKind::Write { offset: Some(o), len, .. } => format!("{}({}, {len} bytes at {o})", c.name, p(0)),
        CallKind::Write { len, .. } => format!("{}({}, {len} bytes)", c.name, p(0)),
        CallKind::Truncate { len, .. } => format!("{}({}, {len})", c.name, p(0)),
        CallKind::Fallocate { offset, len, .. } => format!("{}({}, {len} bytes at {offset})", c.name, p(0)),
        CallKind::Rename { .. } | CallKind::Link { .. } => format!("{}({} → {})", c.name, p(0), p(1)),
        CallKind::Symlink { target, .. } => format!("{}({} → {})", c.name, p(0), String::from_utf8_lossy(target)),
        CallKind::Copy { len, .. } => format!("{}({} → {}, {len} bytes)", c.name, p(0), p(1)),
        CallKind::Sync => "sync()".into(),
        CallKind::Untraceable { what } => format!("{}: {}", c.name, what.what()),
        CallKind::Other { raw_args } => format!("{}({raw_args})", c.name),
        _ => format!("{}({})", c.name, paths.join(", ")),
    }
}

fn result(c: &Call) -> String {
    match (&c.result, &c.kind) {
        (CallResult::Ok(fd), CallKind::Open { .. } | CallKind::Dup { .. }) => format!("fd {fd}"),
        (CallResult::Ok(_), _) => "ok".into(),
        (CallResult::Err(e), _) => e.clone(),
        (CallResult::Unfinished, _) => "unfinished (the process ended inside it)".into(),
        (CallResult::NoReturn, _) => "no return".into(),
    }
}

/// The program's line that made `c` (`file:line in function`, the file relative to the
/// workload's directory when under it), else its object and offset.
fn at(c: &Call, cwd: &[u8]) -> Option<String> {
    let site = crate::Site::of(c);
    if site == crate::Site::Unknown {
        return None;
    }
    let func = site.function().map(|n| format!(" in {n}")).unwrap_or_default();
    Some(format!("{}{func}", site.show(Some(crate::bytes_path(cwd)))))
}
