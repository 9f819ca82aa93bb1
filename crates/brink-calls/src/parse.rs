//! Reading strace's `-o` output into [`Call`]s, streaming: with `-f` every line starts
//! with the thread id (and, with `-ttt`, a timestamp); a call another thread interrupts
//! is printed as `NAME(args <unfinished ...>` and completed later by
//! `<... NAME resumed>rest) = result`; `-k` stack lines (` > obj(sym+0x1) [0x2]`) follow
//! the line that completes a call; `--- SIG… ---` and `+++ exited with N +++` lines mark
//! signals and ends. Calls come out in the order they completed, numbered by `seq`.
//! Every length is bounded by a named constant and any input gives calls or an error
//! naming its line, never a panic.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, Read};
use std::path::{Path, PathBuf};

use crate::args::{self, UNFINISHED};
use crate::decode;
use crate::error::{CallsError, clip};
use crate::model::{Call, CallResult, EndKind, Fd, Frame, ProcessEnd};

/// Longest line of strace output read, in bytes (a `writev` of many buffers printed with
/// `-xx` is four characters per byte).
pub const LINE_BYTES_MAX: usize = 64 << 20;

/// Most frames kept per call, innermost first; deeper stacks set `stack_truncated`.
pub const STACK_FRAMES_MAX: usize = 256;

/// How strace names a call it could not identify (a thread caught while exiting).
const UNKNOWN_CALL: &str = "???";
/// Most calls in progress (printed `<unfinished ...>`, not yet resumed) at once.
pub const PENDING_MAX: usize = 1 << 16;

/// Most process ends remembered by a [`CallReader`].
pub const PROCESS_ENDS_MAX: usize = 1 << 20;

/// Longest system call name accepted, in bytes.
pub const CALL_NAME_BYTES_MAX: usize = 64;

/// Longest object path or symbol kept from a stack line, in bytes.
pub const FRAME_TEXT_BYTES_MAX: usize = 4096;

/// A call printed `<unfinished ...>`, waiting for its `resumed` line.
struct Pending {
    line: u64,
    /// Calls completed when it started (the seq the next completion gets).
    rank: u64,
    time_us: Option<u64>,
    name: String,
    args: String,
}

/// A streaming reader of strace output: an iterator of calls in completion order.
pub struct CallReader<R> {
    input: R,
    line: u64,
    seq: u64,
    pending: HashMap<u32, Pending>,
    /// The last completed call, still taking stack lines.
    current: Option<Call>,
    ready: VecDeque<Call>,
    ends: Vec<ProcessEnd>,
    /// `(seq, rank)` of each call that was still in progress when an earlier-seq call
    /// completed: `rank` calls had completed when it started ([`Parsed::started_before`]).
    overlaps: Vec<(u64, u64)>,
    /// The line being read has no newline: the input ended inside it.
    unterminated: bool,
    /// The input's last line was cut (no newline) and did not parse: strace was killed
    /// while writing it. Said, not an error: the rest of the trace is whole.
    cut: bool,
    done: bool,
}

/// Everything in one strace output file.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Parsed {
    pub calls: Vec<Call>,
    pub ends: Vec<ProcessEnd>,
    /// `(seq, rank)`: the call `seq` started when only `rank` (< `seq`) calls had
    /// completed, so it overlapped the calls `rank..seq`, which completed while it was in
    /// progress (strace printed it `<unfinished ...>`, then `resumed`). Completion order
    /// alone would put it after them; the logical front end lets a sync that completed
    /// inside an acknowledgement's call come after that acknowledgement.
    pub started_before: Vec<(u64, u64)>,
    /// The last line was cut short (strace killed while writing it) and left out.
    pub last_line_cut: bool,
}

/// Reads a whole strace output file (`strace -o PATH`).
pub fn parse_file(path: &Path) -> Result<Parsed, CallsError> {
    let file = std::fs::File::open(path).map_err(|source| CallsError::Io { path: path.into(), source })?;
    let mut reader = CallReader::new(std::io::BufReader::new(file));
    let calls = reader.by_ref().collect::<Result<Vec<_>, _>>().map_err(|e| match e {
        CallsError::Io { source, .. } => CallsError::Io { path: path.into(), source },
        other => other,
    })?;
    Ok(reader.parsed(calls))
}

/// Reads strace output held in memory.
pub fn parse_bytes(text: &[u8]) -> Result<Parsed, CallsError> {
    let mut reader = CallReader::new(text);
    let calls = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok(reader.parsed(calls))
}

impl<R: BufRead> CallReader<R> {
    pub fn new(input: R) -> Self {
        CallReader {
            input,
            line: 0,
            seq: 0,
            pending: HashMap::new(),
            current: None,
            ready: VecDeque::new(),
            ends: Vec::new(),
            overlaps: Vec::new(),
            unterminated: false,
            cut: false,
            done: false,
        }
    }

    /// The processes (threads) whose end was read so far, in order.
    pub fn ends(&self) -> &[ProcessEnd] {
        &self.ends
    }

    /// Everything read, with `calls`.
    fn parsed(&self, calls: Vec<Call>) -> Parsed {
        Parsed { calls, ends: self.ends.clone(), started_before: self.overlaps.clone(), last_line_cut: self.cut }
    }

    /// The calls read so far that started before earlier-seq calls completed
    /// ([`Parsed::started_before`]), in completion order.
    pub fn started_before(&self) -> &[(u64, u64)] {
        &self.overlaps
    }

    /// One line into `buf` (without its newline); `false` at the end of the input.
    fn read_line(&mut self, buf: &mut Vec<u8>) -> Result<bool, CallsError> {
        buf.clear();
        let limit = LINE_BYTES_MAX as u64 + 1;
        let read = (&mut self.input).take(limit).read_until(b'\n', buf);
        let n = read.map_err(|source| CallsError::Io { path: PathBuf::from("strace output"), source })?;
        if n == 0 {
            return Ok(false);
        }
        self.line += 1;
        self.unterminated = buf.last() != Some(&b'\n');
        if !self.unterminated {
            buf.pop();
        } else if buf.len() > LINE_BYTES_MAX {
            return Err(CallsError::LineTooLong { line: self.line, max: LINE_BYTES_MAX });
        }
        Ok(true)
    }

    /// Reads lines until a call is ready or the input ends.
    fn fill(&mut self) -> Result<(), CallsError> {
        let mut buf = Vec::new();
        while self.ready.is_empty() {
            if !self.read_line(&mut buf)? {
                self.finish();
                return Ok(());
            }
            match self.line_in(&buf) {
                // The last line, cut short: strace was killed while writing it.
                Err(CallsError::Malformed { .. }) if self.unterminated => self.cut = true,
                other => other?,
            }
        }
        Ok(())
    }

    /// At the end of the input: the last call, then the calls that never resumed, in
    /// the order they started.
    fn finish(&mut self) {
        self.done = true;
        self.flush_current();
        let mut left: Vec<(u32, Pending)> = self.pending.drain().collect();
        left.sort_by_key(|(_, p)| p.line);
        for (tid, pending) in left {
            let call = self.abandoned(tid, pending);
            self.ready.push_back(call);
        }
    }

    fn flush_current(&mut self) {
        if let Some(call) = self.current.take() {
            self.ready.push_back(call);
        }
    }

    fn line_in(&mut self, line: &[u8]) -> Result<(), CallsError> {
        if let Some(frame) = line.strip_prefix(b" > ") {
            if let Some(call) = &mut self.current {
                push_frame(call, frame);
            }
            return Ok(());
        }
        self.flush_current();
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let text = String::from_utf8_lossy(line);
        let (tid, time_us, body) = prefix(&text);
        if let Some(rest) = body.strip_prefix("<... ") {
            return self.resumed(tid, time_us, rest);
        }
        if body.starts_with("--- ") {
            return Ok(());
        }
        if let Some(rest) = body.strip_prefix("+++ ") {
            return self.ended(tid, rest);
        }
        self.started(tid, time_us, body)
    }

    fn malformed(&self, what: &str, text: &str) -> CallsError {
        CallsError::Malformed { line: self.line, what: format!("{what}: {}", clip(text)) }
    }

    /// `NAME(args) = result` or `NAME(args <unfinished ...>`.
    fn started(&mut self, tid: u32, time_us: Option<u64>, body: &str) -> Result<(), CallsError> {
        let open = body.find('(').ok_or_else(|| self.malformed("not a system call", body))?;
        let name = &body[..open];
        let valid = |c: char| c.is_ascii_alphanumeric() || c == '_';
        // `???`: strace could not tell which call a thread was in (it was exiting).
        let unknown = name == UNKNOWN_CALL;
        if name.is_empty() || name.len() > CALL_NAME_BYTES_MAX || !(unknown || name.chars().all(valid)) {
            return Err(self.malformed("not a system call name", body));
        }
        let args = &body[open + 1..];
        let split = args::split_args(args);
        if split.after.is_none() {
            if !args.trim_end().ends_with(UNFINISHED) {
                return Err(self.malformed("a call with no result", body));
            }
            return self.pend(tid, time_us, name, args);
        }
        self.complete_split(tid, time_us, name, args, split)
    }

    fn pend(&mut self, tid: u32, time_us: Option<u64>, name: &str, args: &str) -> Result<(), CallsError> {
        if self.pending.len() >= PENDING_MAX && !self.pending.contains_key(&tid) {
            return Err(CallsError::TooMany { line: self.line, max: PENDING_MAX, what: "calls in progress" });
        }
        let args = args.trim_end().strip_suffix(UNFINISHED).unwrap_or(args).trim_end().to_string();
        let pending = Pending { line: self.line, rank: self.seq, time_us, name: name.to_string(), args };
        // A thread has one call in progress; an older one left unresumed never returned.
        if let Some(old) = self.pending.insert(tid, pending) {
            let call = self.abandoned(tid, old);
            self.ready.push_back(call);
        }
        Ok(())
    }

    /// `<... NAME resumed>rest) = result`: the pending call of `tid`, completed.
    fn resumed(&mut self, tid: u32, time_us: Option<u64>, rest: &str) -> Result<(), CallsError> {
        let (name, tail) = rest.split_once(" resumed>").ok_or_else(|| self.malformed("a broken resumed line", rest))?;
        // `<... NAME resumed> <unfinished ...>) = ?`: the thread died in the call (its
        // process exited): the call never returned.
        if tail.trim_start().starts_with(UNFINISHED) {
            return self.cut_by_death(tid, time_us, name);
        }
        let (start_time, rank, args) = match self.pending.remove(&tid) {
            Some(p) if p.name == name => (p.time_us, Some(p.rank), format!("{} {}", p.args, tail.trim_start())),
            Some(p) => {
                let call = self.abandoned(tid, p);
                self.ready.push_back(call);
                (time_us, None, tail.to_string())
            }
            None => (time_us, None, tail.to_string()),
        };
        if name.is_empty() || name.len() > CALL_NAME_BYTES_MAX {
            return Err(self.malformed("not a system call name", rest));
        }
        self.complete(tid, start_time, name, &args)?;
        let seq = self.current.as_ref().map_or(0, |c| c.seq);
        if let Some(rank) = rank.filter(|&r| r < seq) {
            self.overlaps.push((seq, rank));
        }
        Ok(())
    }

    /// A resumed call that never returned: the pending call of `tid` if it is the one
    /// named, else a call known by its name only.
    fn cut_by_death(&mut self, tid: u32, time_us: Option<u64>, name: &str) -> Result<(), CallsError> {
        if name.is_empty() || name.len() > CALL_NAME_BYTES_MAX {
            return Err(self.malformed("not a system call name", name));
        }
        let pending = match self.pending.remove(&tid) {
            Some(p) if p.name == name => p,
            other => {
                if let Some(p) = other {
                    let call = self.abandoned(tid, p);
                    self.ready.push_back(call);
                }
                Pending { line: self.line, rank: self.seq, time_us, name: name.to_string(), args: String::new() }
            }
        };
        self.current = Some(self.abandoned(tid, pending));
        Ok(())
    }

    /// A call whose argument text (after `NAME(`) runs to its result.
    fn complete(&mut self, tid: u32, time_us: Option<u64>, name: &str, args: &str) -> Result<(), CallsError> {
        self.complete_split(tid, time_us, name, args, args::split_args(args))
    }

    /// [`CallReader::complete`] with `args` already split (a long write's line is
    /// scanned once).
    fn complete_split(
        &mut self,
        tid: u32,
        time_us: Option<u64>,
        name: &str,
        args: &str,
        split: args::Split<'_>,
    ) -> Result<(), CallsError> {
        let after = split.after.ok_or_else(|| self.malformed("a call with no result", args))?;
        let result_text = after.trim_start().strip_prefix('=').ok_or_else(|| self.malformed("no '= result'", args))?;
        let (result, returned) = result(result_text).ok_or_else(|| self.malformed("a result", result_text))?;
        let raw = &args[..args.len() - after.len()];
        let raw = raw.strip_suffix(')').unwrap_or(raw);
        let kind = decode::kind(name, &split.args, raw, returned);
        self.current = Some(self.call(tid, time_us, name, kind, result));
        Ok(())
    }

    fn call(&mut self, tid: u32, time_us: Option<u64>, name: &str, kind: crate::CallKind, result: CallResult) -> Call {
        let seq = self.seq;
        self.seq += 1;
        let name = name.to_string();
        Call { seq, tid, time_us, name, kind, result, stack: Vec::new(), stack_truncated: false }
    }

    /// A call that never returned: decoded from what was printed before it was cut.
    fn abandoned(&mut self, tid: u32, p: Pending) -> Call {
        let split = args::split_args(&p.args);
        let kind = decode::kind(&p.name, &split.args, &p.args, None);
        self.call(tid, p.time_us, &p.name, kind, CallResult::Unfinished)
    }

    /// `+++ exited with N +++`, `+++ killed by SIGX (core dumped) +++`,
    /// `+++ superseded by execve in pid N +++`.
    fn ended(&mut self, tid: u32, rest: &str) -> Result<(), CallsError> {
        let text = rest.trim_end().strip_suffix("+++").unwrap_or(rest).trim();
        let how = if let Some(code) = text.strip_prefix("exited with ") {
            EndKind::Exited(args::int(code).ok_or_else(|| self.malformed("an exit status", rest))?)
        } else if let Some(signal) = text.strip_prefix("killed by ") {
            let core = signal.ends_with("(core dumped)");
            let signal = signal.split_whitespace().next().unwrap_or_default();
            EndKind::Killed { signal: signal.chars().take(CALL_NAME_BYTES_MAX).collect(), core }
        } else if text.starts_with("superseded by execve") {
            EndKind::Superseded
        } else {
            return Err(self.malformed("an unknown process end", rest));
        };
        if let Some(p) = self.pending.remove(&tid) {
            let call = self.abandoned(tid, p);
            self.ready.push_back(call);
        }
        if self.ends.len() >= PROCESS_ENDS_MAX {
            return Err(CallsError::TooMany { line: self.line, max: PROCESS_ENDS_MAX, what: "process ends" });
        }
        self.ends.push(ProcessEnd { tid, how });
        Ok(())
    }
}

impl<R: BufRead> Iterator for CallReader<R> {
    type Item = Result<Call, CallsError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.ready.is_empty() && !self.done {
            if let Err(e) = self.fill() {
                self.done = true;
                self.ready.clear();
                self.pending.clear();
                self.current = None;
                return Some(Err(e));
            }
        }
        self.ready.pop_front().map(Ok)
    }
}

/// The thread id and timestamp in front of a line, and the rest. A line without a thread
/// id (strace without `-f`) gets thread 0.
fn prefix(text: &str) -> (u32, Option<u64>, &str) {
    let (tid, rest) = match text.split_once(' ') {
        Some((head, rest)) if !head.is_empty() && head.bytes().all(|b| b.is_ascii_digit()) => {
            (head.parse().unwrap_or(0), rest.trim_start())
        }
        _ => (0, text),
    };
    match rest.split_once(' ') {
        Some((head, body)) if looks_like_time(head) => (tid, epoch_us(head), body.trim_start()),
        _ => (tid, None, rest),
    }
}

fn looks_like_time(token: &str) -> bool {
    !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b':') && token.contains('.')
}

/// `-ttt`'s `1795657128.680072` in microseconds (other time formats give `None`).
fn epoch_us(token: &str) -> Option<u64> {
    let (secs, frac) = token.split_once('.')?;
    let secs: u64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(6).collect();
    let micros: u64 = format!("{digits:0<6}").parse().ok()?;
    secs.checked_mul(1_000_000)?.checked_add(micros)
}

/// The result after `=`: `0`, `3</path>`, `0x7f…`, `-1 ENOENT (…)`, `?`,
/// `? ERESTARTSYS (…)`, `-1 (errno 523)`; and the descriptor when it has a `-y` path.
fn result(text: &str) -> Option<(CallResult, Option<Fd>)> {
    let text = text.trim();
    let (value, rest) = split_value(text);
    if value == "?" {
        return Some((error_name(rest).map_or(CallResult::NoReturn, CallResult::Err), None));
    }
    let number = args::int(value.split(['<', '(']).next().unwrap_or(value))?;
    if number < 0 {
        if let Some(name) = error_name(rest) {
            return Some((CallResult::Err(name), None));
        }
    }
    let returned = if value.contains('<') { args::fd(value) } else { None };
    Some((CallResult::Ok(number), returned))
}

/// The first token of a result (a `3</path with spaces>(deleted)` is one token) and the rest.
fn split_value(text: &str) -> (&str, &str) {
    let mut in_path = false;
    for (i, c) in text.char_indices() {
        match c {
            '<' => in_path = true,
            '>' => in_path = false,
            ' ' if !in_path => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

/// `ENOENT (No such file…)` → `ENOENT`; `(errno 523)` → `errno 523`.
fn error_name(rest: &str) -> Option<String> {
    let rest = rest.trim();
    let first = rest.split_whitespace().next()?;
    if first.starts_with('E') && first.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
        return Some(first.to_string());
    }
    let errno = rest.strip_prefix("(errno ")?.split(')').next()?;
    Some(format!("errno {}", clip(errno)))
}

/// A stack line after ` > `: `/obj(sym+0x10) [0x1234]`, `/obj() [0x1234]`,
/// `message [0x1234]` or `message`.
fn push_frame(call: &mut Call, text: &[u8]) {
    if call.stack.len() >= STACK_FRAMES_MAX {
        call.stack_truncated = true;
        return;
    }
    call.stack.push(parse_frame(text));
}

fn parse_frame(text: &[u8]) -> Frame {
    let text = &text[..text.len().min(FRAME_TEXT_BYTES_MAX * 2)];
    let (head, offset) = match rfind(text, b" [0x") {
        Some(at) => {
            let hex = text[at + 4..].strip_suffix(b"]").unwrap_or(&text[at + 4..]);
            (&text[..at], std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h, 16).ok()))
        }
        None => (text, None),
    };
    let (object, function) = match (head.iter().position(|&b| b == b'('), head.strip_suffix(b")")) {
        (Some(open), Some(inner)) if open < inner.len() || open == inner.len() => {
            let symbol = &inner[open + 1..];
            let name = rfind(symbol, b"+0x").map_or(symbol, |at| &symbol[..at]);
            (&head[..open], (!name.is_empty()).then(|| lossy(name)))
        }
        _ => (head, None),
    };
    Frame { object: PathBuf::from(lossy(object)), function, offset: offset.unwrap_or(0), source: None }
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).rposition(|w| w == needle)
}

/// Bytes as text, at most [`FRAME_TEXT_BYTES_MAX`] bytes of them. Object paths are kept as
/// UTF-8 (lossily) so that every [`Frame`] serializes.
fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(&bytes[..bytes.len().min(FRAME_TEXT_BYTES_MAX)]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_in_every_form() {
        let f = parse_frame(b"/usr/lib/libc.so.6(__open64+0x51) [0xf8011]");
        assert_eq!(
            (f.object.to_str(), f.function.as_deref(), f.offset),
            (Some("/usr/lib/libc.so.6"), Some("__open64"), 0xf8011)
        );
        let f = parse_frame(b"/tmp/ws() [0x12be]");
        assert_eq!((f.object.to_str(), f.function, f.offset), (Some("/tmp/ws"), None, 0x12be));
        let f = parse_frame(b"/a.out(f(int)+0x3) [0x10]");
        assert_eq!((f.object.to_str(), f.function.as_deref()), (Some("/a.out"), Some("f(int)")));
        let f = parse_frame(b"unexpected_backtracing_error [0x7f00]");
        assert_eq!((f.object.to_str(), f.offset), (Some("unexpected_backtracing_error"), 0x7f00));
        assert_eq!(parse_frame(b"").object, PathBuf::new());
    }

    #[test]
    fn results_parse() {
        assert_eq!(result("0").unwrap().0, CallResult::Ok(0));
        assert_eq!(result("-1 ENOENT (No such file or directory)").unwrap().0, CallResult::Err("ENOENT".into()));
        assert_eq!(result("? ERESTARTSYS (To be restarted)").unwrap().0, CallResult::Err("ERESTARTSYS".into()));
        assert_eq!(result("?").unwrap().0, CallResult::NoReturn);
        assert_eq!(result("-1 (errno 523)").unwrap().0, CallResult::Err("errno 523".into()));
        assert_eq!(result("0x7f5272c6a000").unwrap().0, CallResult::Ok(0x7f52_72c6_a000));
        let (r, fd) = result(r"13<\x2f\x20\x61>(deleted)").unwrap();
        assert_eq!(r, CallResult::Ok(13));
        assert!(fd.unwrap().deleted);
        assert_eq!(result("0 (Timeout)").unwrap().0, CallResult::Ok(0));
        assert!(result("junk").is_none());
    }

    /// strace prints `???` for a call it cannot identify (a thread exiting mid-call); such
    /// a line is a call like any other, not a malformed trace (an etcd recording failed on
    /// one).
    #[test]
    fn an_unknown_call_parses() {
        let text = b"7 1.0 ???( <unfinished ...>\n8 1.1 close(3) = 0\n7 1.2 <... ??? resumed>) = ?\n7 1.3 +++ exited with 0 +++\n";
        let parsed = parse_bytes(text).unwrap();
        assert!(parsed.calls.iter().any(|c| c.name == "???"), "{:?}", parsed.calls);
        assert!(parsed.calls.iter().any(|c| c.name == "close"));
    }

    /// `<... NAME resumed> <unfinished ...>) = ?`: a thread that died inside a call (its
    /// process exited), printed by strace in that form. An etcd recording failed on a
    /// clone3 cut this way ("a call with no result").
    #[test]
    fn a_call_cut_short_by_death_parses() {
        let text = b"7 1.0 clone3({flags=CLONE_VM, exit_signal=0} <unfinished ...>\n8 1.1 exit_group(0) = ?\n\
            7 1.2 <... clone3 resumed> <unfinished ...>) = ?\n9 1.3 <... read resumed> <unfinished ...>) = ?\n\
            7 1.4 +++ exited with 0 +++\n";
        let parsed = parse_bytes(text).unwrap();
        let names: Vec<_> = parsed.calls.iter().map(|c| (c.name.as_str(), c.result.clone())).collect();
        assert!(names.contains(&("clone3", CallResult::Unfinished)), "{names:?}");
        assert!(names.contains(&("read", CallResult::Unfinished)), "{names:?}");
        assert!(names.contains(&("exit_group", CallResult::NoReturn)), "{names:?}");
    }

    #[test]
    fn prefixes_parse() {
        assert_eq!(prefix("25557 1795657128.680072 execve("), (25557, Some(1_795_657_128_680_072), "execve("));
        assert_eq!(prefix("25557 write("), (25557, None, "write("));
        assert_eq!(prefix("write(1, \"a b\", 3) = 3"), (0, None, "write(1, \"a b\", 3) = 3"));
    }
}
