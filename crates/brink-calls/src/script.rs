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

    /// The line (from 1) whose words best match `words` (the first must be there), if any.
    fn line_of(&self, words: &[String]) -> Option<u32> {
        let first = words.first()?;
        let mut best: Option<(usize, usize)> = None;
        for (i, line) in self.lines.iter().enumerate() {
            let code = line.split('#').next().unwrap_or_default();
            let tokens: Vec<&str> = code.split(|c: char| c.is_whitespace() || ";&|()<>\"'`".contains(c)).collect();
            if !tokens.iter().any(|t| t == first || Path::new(t).file_name().is_some_and(|n| n == first.as_str())) {
                continue;
            }
            let score = words[1..].iter().filter(|w| tokens.contains(&w.as_str())).count() + 1;
            if best.is_none_or(|(_, s)| score > s) {
                best = Some((i, score));
            }
        }
        best.map(|(i, _)| i as u32 + 1)
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
                    let words = argv.iter().map(|a| String::from_utf8_lossy(a).into_owned());
                    let mut words: Vec<String> = words.collect();
                    if let Some(w) = words.first_mut() {
                        *w = Path::new(w.as_str())
                            .file_name()
                            .map_or_else(|| w.clone(), |n| n.to_string_lossy().into_owned());
                    }
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
    for c in calls.iter_mut() {
        let frame = procs.context(c.tid).and_then(|(script, command)| {
            let line = match command {
                Some(cmd) => script.line_of(cmd)?,
                None => own_words(c, mark_file).into_iter().find_map(|w| script.line_of(&[w]))?,
            };
            Some(frame_at(script, line))
        });
        if let Some(f) = frame {
            c.stack.push(f);
        }
        procs.observe(c);
    }
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
