//! Shell scripts as the program. A workload is often a shell script: its calls are made by
//! `mv`, `sync` or the shell itself, binaries without debug info, so their stacks name no
//! line the user wrote. The line is in the script: for each call made by a process that a
//! script started (or by the script's shell), the line of the script that ran it is found
//! by matching the command strace saw executed (`mv config.tmp config`) against the
//! script's lines, or, for the shell's own redirections, the file they name; it is added
//! as the outermost frame of the call's stack, so [`crate::Call::user_frame`] gives it
//! when no frame of the program has a source line.
//!
//! Limits: a match is textual (a line that builds its command in a variable, or two lines
//! running the same command, may be told apart wrongly: the first best match wins);
//! functions and sourced files are not followed; only `sh`, `dash`, `bash`, `ash`, `ksh`
//! and `zsh` scripts are read, run as `SHELL FILE` or `SHELL -c TEXT`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::{Call, CallKind, CallResult, Frame, SourceLine};

/// The shells whose scripts are read.
const SHELLS: &[&str] = &["sh", "dash", "bash", "ash", "ksh", "zsh"];

/// The largest script read.
pub const SCRIPT_BYTES_MAX: u64 = 1 << 20;

/// The most of a script line kept as its frame's "function".
pub const SCRIPT_TEXT_CHARS_MAX: usize = 120;

/// A script a shell ran: where it is (a file, or `sh -c` text) and its lines.
#[derive(Debug, Clone)]
struct Script {
    file: PathBuf,
    lines: Vec<String>,
}

impl Script {
    /// The script a shell exec (`argv`) runs, if it is one.
    fn of_exec(argv: &[Vec<u8>]) -> Option<Script> {
        let name = Path::new(std::str::from_utf8(argv.first()?).ok()?).file_name()?.to_str()?;
        if !SHELLS.contains(&name) {
            return None;
        }
        let args: Vec<String> = argv[1..].iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        if let Some(i) = args.iter().position(|a| a == "-c") {
            let text = args.get(i + 1)?;
            return Some(Script {
                file: PathBuf::from(format!("{name} -c")),
                lines: text.lines().map(String::from).collect(),
            });
        }
        let file = PathBuf::from(args.iter().find(|a| !a.starts_with('-'))?);
        std::fs::metadata(&file).ok().filter(|m| m.is_file() && m.len() <= SCRIPT_BYTES_MAX)?;
        let text = std::fs::read_to_string(&file).ok()?;
        let file = std::path::absolute(&file).unwrap_or(file);
        Some(Script { file, lines: text.lines().map(String::from).collect() })
    }

    /// The first line (from 1) that redirects into a file named `name`: with `>>` when
    /// `append`, with `>` alone otherwise.
    fn line_of_redirect(&self, name: &str, append: bool) -> Option<u32> {
        let i = self.lines.iter().position(|line| {
            let code = line.split('#').next().unwrap_or_default();
            let names = code.split(|c: char| c.is_whitespace() || ";&|()<>\"'`".contains(c));
            let named = names.into_iter().any(|t| t == name || Path::new(t).file_name().is_some_and(|n| n == name));
            named && if append { code.contains(">>") } else { code.contains('>') && !code.contains(">>") }
        })?;
        Some(i as u32 + 1)
    }

    /// The line (from 1) whose words best match `words` (the first must be there), if
    /// any. Of equally good lines, the first at or after `after` (a script runs forward:
    /// the line after the last one that ran), else the first.
    fn line_of(&self, words: &[String], after: u32) -> Option<u32> {
        let first = words.first()?;
        let mut best: Option<(u32, usize)> = None;
        for (i, line) in self.lines.iter().enumerate() {
            let n = i as u32 + 1;
            let code = line.split('#').next().unwrap_or_default();
            let tokens: Vec<&str> = code.split(|c: char| c.is_whitespace() || ";&|()<>\"'`".contains(c)).collect();
            if !tokens.iter().any(|t| t == first || Path::new(t).file_name().is_some_and(|n| n == first.as_str())) {
                continue;
            }
            let score = words[1..].iter().filter(|w| tokens.contains(&w.as_str())).count() + 1;
            let better = match best {
                None => true,
                Some((b, s)) => score > s || (score == s && b < after && n >= after),
            };
            if better {
                best = Some((n, score));
            }
        }
        best.map(|(n, _)| n)
    }
}

/// What each process is running, as the calls go: its script (if a shell) or the command
/// it executed, and its parent.
#[derive(Default)]
struct Processes {
    leader: HashMap<u32, u32>,
    parent: HashMap<u32, u32>,
    script: HashMap<u32, Script>,
    command: HashMap<u32, Vec<String>>,
}

impl Processes {
    fn process(&self, tid: u32) -> u32 {
        self.leader.get(&tid).copied().unwrap_or(tid)
    }

    fn observe(&mut self, c: &Call) {
        let CallResult::Ok(r) = c.result else { return };
        let p = self.process(c.tid);
        match &c.kind {
            CallKind::Spawn { thread } => {
                let Ok(child) = u32::try_from(r) else { return };
                match thread {
                    true => self.leader.insert(child, p),
                    false => self.parent.insert(child, p),
                };
            }
            CallKind::Exec { argv, .. } => match Script::of_exec(argv) {
                Some(s) => {
                    self.script.insert(p, s);
                    self.command.remove(&p);
                }
                None => {
                    let words = exec_words(c).unwrap_or_default();
                    self.command.insert(p, words);
                    self.script.remove(&p);
                }
            },
            _ => {}
        }
    }

    /// The nearest script above (or at) `tid`'s process, and the command it ran there.
    fn context(&self, tid: u32) -> Option<(&Script, Option<&Vec<String>>)> {
        let mut p = self.process(tid);
        let mut command = None;
        for _ in 0..64 {
            if let Some(s) = self.script.get(&p) {
                return Some((s, command));
            }
            if command.is_none() {
                command = self.command.get(&p);
            }
            p = *self.parent.get(&p)?;
        }
        None
    }
}

/// Words that find the line of a call the shell made itself: the file it names (a
/// redirection), or `BRINK_MARK` for the mark file.
fn own_words(c: &Call, mark_file: &[u8]) -> Vec<String> {
    let path = match &c.kind {
        CallKind::Open { fd: Some(fd), .. } | CallKind::Write { fd, .. } | CallKind::Fsync { fd, .. } => {
            fd.path.clone()
        }
        CallKind::Open { path, .. } => Some(path.clone()),
        _ => None,
    };
    match path {
        Some(p) if p == mark_file => vec!["\"$BRINK_MARK\"".into(), "$BRINK_MARK".into()],
        Some(p) => Path::new(&*String::from_utf8_lossy(&p))
            .file_name()
            .map(|n| vec![n.to_string_lossy().into_owned()])
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Add to each call made under a shell script the script line that ran it, as the
/// outermost frame of its stack. `mark_file` is `$BRINK_MARK`.
pub fn attribute_scripts(calls: &mut [Call], mark_file: &[u8]) {
    let mut procs = Processes::default();
    // The line whose redirection opened a descriptor of the shell: its writes are that
    // line's (`record "$i" >> logs/app.log` writes through what `>>` opened).
    let mut fd_line: HashMap<(u32, i32), u32> = HashMap::new();
    // The last line each script ran: where the next ambiguous match is looked for first.
    let mut last_line: HashMap<PathBuf, u32> = HashMap::new();
    for c in calls.iter_mut() {
        let p = procs.process(c.tid);
        let frame = procs.context(c.tid).and_then(|(script, command)| {
            // An exec is the line of the command it starts.
            let execd = exec_words(c);
            let line = match execd.as_ref().or(command) {
                Some(cmd) => script.line_of(cmd, last_line.get(&script.file).copied().unwrap_or(0))?,
                None => {
                    let opened_at = fd_of(c).and_then(|fd| fd_line.get(&(p, fd)).copied());
                    own_line(c, script, mark_file, opened_at, last_line.get(&script.file).copied().unwrap_or(0))?
                }
            };
            Some(frame_at(script, line))
        });
        if let Some(s) = frame.as_ref().and_then(|f| f.source.as_ref()) {
            last_line.insert(s.file.clone(), s.line);
        }
        if let Some(f) = frame {
            let line = f.source.as_ref().map(|s| s.line);
            let new_fd = match c.result {
                CallResult::Ok(fd) => i32::try_from(fd).ok(),
                _ => None,
            };
            match (&c.kind, new_fd, line) {
                (CallKind::Open { .. }, Some(fd), Some(l)) => drop(fd_line.insert((p, fd), l)),
                (CallKind::Dup { old, .. }, Some(fd), _) => {
                    if let Some(l) = fd_line.get(&(p, old.num)).copied() {
                        fd_line.insert((p, fd), l);
                    }
                }
                _ => {}
            }
            c.stack.push(f);
        }
        procs.observe(c);
    }
}

/// The command an exec of a program (not of a shell) starts, its name first.
fn exec_words(c: &Call) -> Option<Vec<String>> {
    let CallKind::Exec { argv, .. } = &c.kind else { return None };
    if Script::of_exec(argv).is_some() {
        return None;
    }
    let mut words: Vec<String> = argv.iter().map(|a| String::from_utf8_lossy(a).into_owned()).collect();
    let first = words.first_mut()?;
    *first = Path::new(first.as_str()).file_name().map_or_else(|| first.clone(), |n| n.to_string_lossy().into_owned());
    Some(words)
}

/// The descriptor a call writes, syncs or closes through.
fn fd_of(c: &Call) -> Option<i32> {
    match &c.kind {
        CallKind::Write { fd, .. }
        | CallKind::Fsync { fd, .. }
        | CallKind::Close { fd }
        | CallKind::Dup { old: fd, .. } => Some(fd.num),
        _ => None,
    }
}

/// The line of a call the script's shell made itself: the line that opened its
/// descriptor, or the redirection that names its file (`>>` for an append, `>` else),
/// or any line naming the file.
fn own_line(c: &Call, script: &Script, mark_file: &[u8], opened_at: Option<u32>, after: u32) -> Option<u32> {
    if opened_at.is_some() {
        return opened_at;
    }
    let words = own_words(c, mark_file);
    if let CallKind::Open { flags, .. } = &c.kind {
        let append = flags.contains(crate::open_flag::APPEND);
        if let Some(l) = words.iter().find_map(|w| script.line_of_redirect(w, append)) {
            return Some(l);
        }
    }
    words.into_iter().find_map(|w| script.line_of(&[w], after))
}

/// The frame of `line` of `script`; its "function" is the line's text (bounded).
fn frame_at(script: &Script, line: u32) -> Frame {
    let text = script.lines.get(line as usize - 1).map_or("", |l| l.split('#').next().unwrap_or_default().trim());
    Frame {
        object: script.file.clone(),
        function: Some(text.chars().take(SCRIPT_TEXT_CHARS_MAX).collect()),
        offset: 0,
        source: Some(SourceLine { file: script.file.clone(), line }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse_bytes;

    /// The lines of a script's commands and redirections, ambiguous ones included: the
    /// same command on two lines goes to the one after the line that ran last.
    #[test]
    fn calls_get_the_script_line_that_ran_them() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("w.sh");
        std::fs::write(
            &script,
            ": > log\nsync log; sync .\nfor i in 1 2; do\n  echo x >> log\n  echo \"m\" > \"$BRINK_MARK\"\n  sync log\ndone\n",
        )
        .unwrap();
        let s = script.display();
        let text = format!(
            "100 1.0 execve(\"/bin/sh\", [\"sh\", \"{s}\"], 0x1 /* 1 var */) = 0\n\
             100 1.1 openat(AT_FDCWD</w>, \"log\", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 3</w/log>\n\
             100 1.2 clone(child_stack=NULL, flags=SIGCHLD) = 200\n\
             200 1.3 execve(\"/usr/bin/sync\", [\"sync\", \"log\"], 0x1 /* 1 var */) = 0\n\
             100 1.4 openat(AT_FDCWD</w>, \"log\", O_WRONLY|O_CREAT|O_APPEND, 0666) = 3</w/log>\n\
             100 1.5 write(3</w/log>, \"x\\n\", 2) = 2\n\
             100 1.6 openat(AT_FDCWD</w>, \"/m\", O_WRONLY|O_CREAT|O_TRUNC, 0666) = 4</m>\n\
             100 1.7 write(4</m>, \"m\\n\", 2) = 2\n\
             100 1.8 clone(child_stack=NULL, flags=SIGCHLD) = 300\n\
             300 1.9 execve(\"/usr/bin/sync\", [\"sync\", \"log\"], 0x1 /* 1 var */) = 0\n"
        );
        let mut calls = parse_bytes(text.as_bytes()).unwrap().calls;
        attribute_scripts(&mut calls, b"/m");
        let lines: Vec<(String, Option<u32>)> = calls
            .iter()
            .map(|c| (c.name.clone(), c.stack.last().and_then(|f| f.source.as_ref()).map(|s| s.line)))
            .collect();
        let want = [
            ("execve", None),
            ("openat", Some(1)),
            ("clone", None),
            ("execve", Some(2)),
            ("openat", Some(4)),
            ("write", Some(4)),
            ("openat", Some(5)),
            ("write", Some(5)),
            ("clone", None),
            ("execve", Some(6)),
        ];
        let want: Vec<(String, Option<u32>)> = want.iter().map(|(n, l)| (n.to_string(), *l)).collect();
        assert_eq!(lines, want);
    }
}
