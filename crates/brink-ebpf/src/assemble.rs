//! From the kernel half's records to whole calls: each thread's ENTER, the strings and
//! structures that follow it, its RETURN and the DATA after that, matched by thread
//! (a thread is in one call at a time, and its records reach the ring in the order it
//! wrote them), then put in the order the calls completed.

use std::collections::HashMap;

use crate::events::{Event, Regs};

/// One traced call, its records gathered.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawCall {
    pub(crate) tid: u32,
    pub(crate) pid: u32,
    pub(crate) nr: u32,
    pub(crate) time_ns: u64,
    pub(crate) args: [u64; 6],
    /// String arguments by index (`16 + i` for `argv[i]`); `None` where unreadable.
    pub(crate) strings: Vec<(u32, Option<Vec<u8>>)>,
    pub(crate) blobs: Vec<(u32, Vec<u8>)>,
    /// `None`: the call never returned.
    pub(crate) ret: Option<i64>,
    /// The data the call wrote, and whether part of it could not be read.
    pub(crate) data: Vec<u8>,
    pub(crate) data_unreadable: bool,
    pub(crate) regs: Regs,
    pub(crate) stack: Vec<u8>,
    /// The frames the tracer unwound while the process was alive, if it did.
    pub(crate) frames: Option<(Vec<brink_calls::Frame>, bool)>,
    /// The completion number the kernel gave it (0 for a call that never returned).
    pub(crate) seq: u64,
    /// Calls completed before this one began, by the ring's order (which is the order
    /// the kernel's records were reserved in, a total order).
    pub(crate) rank: u64,
    /// Its place among the completions, by the ring's order; `None` if it never returned.
    pub(crate) ordinal: Option<u64>,
    /// Where it sorts: `(seq, 0)` for a returned call; `(calls returned before its
    /// entry, 1)` for one that never returned.
    key: (u64, u8),
}

impl RawCall {
    pub(crate) fn string(&self, arg: u32) -> Option<&[u8]> {
        self.strings.iter().find(|(a, _)| *a == arg).and_then(|(_, b)| b.as_deref())
    }

    pub(crate) fn blob(&self, arg: u32) -> Option<&[u8]> {
        self.blobs.iter().find(|(a, _)| *a == arg).map(|(_, b)| b.as_slice())
    }

    /// For a call that makes a task (`clone`, `fork`, `vfork`, `clone3`), whether the
    /// task is a thread of the caller's process; `None` for any other call.
    pub(crate) fn spawns_thread(&self) -> Option<bool> {
        const CLONE_THREAD: u64 = 0x10000;
        match self.nr {
            57 | 58 => Some(false),
            56 => Some(self.args[0] & CLONE_THREAD != 0),
            435 => {
                let flags = self.blob(0).and_then(|b| Some(u64::from_ne_bytes(b.get(..8)?.try_into().ok()?)));
                Some(flags.is_some_and(|f| f & CLONE_THREAD != 0))
            }
            _ => None,
        }
    }

    /// The task this call made, if it made one, and whether it is a thread.
    pub(crate) fn spawned(&self) -> Option<(u32, bool)> {
        let thread = self.spawns_thread()?;
        let child = u32::try_from(self.ret?).ok().filter(|&t| t > 0)?;
        Some((child, thread))
    }
}

/// What assembling found amiss (each said in the recording's notes).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Gaps {
    /// RETURN records with no ENTER before them (the ENTER was dropped).
    pub(crate) returns_without_entry: u64,
    /// DATA records whose call was not found.
    pub(crate) orphan_data: u64,
}

/// The calls of `events`, in completion order (a call that never returned sorts after
/// the calls that completed before it began).
pub(crate) fn assemble(events: Vec<Event>) -> (Vec<RawCall>, Gaps) {
    let mut open: HashMap<u32, RawCall> = HashMap::new();
    let mut done: Vec<RawCall> = Vec::new();
    let mut by_seq: HashMap<u64, usize> = HashMap::new();
    let (mut returned, mut gaps) = (0u64, Gaps::default());
    for e in events {
        match e {
            Event::Enter { tid, tgid, nr, time_ns, args } => {
                let call = RawCall { tid, pid: tgid, nr, time_ns, args, rank: returned, ..RawCall::default() };
                if let Some(mut left) = open.insert(tid, call) {
                    left.key = (left.rank, 1);
                    done.push(left);
                }
            }
            Event::Str { tid, arg, bytes } => open.entry(tid).or_default().strings.push((arg, bytes)),
            Event::Blob { tid, arg, bytes } => open.entry(tid).or_default().blobs.push((arg, bytes)),
            Event::Return { tid, tgid, nr, seq, ret, regs, stack, frames, .. } => {
                returned += 1;
                let mut call = match open.remove(&tid) {
                    Some(c) if c.nr == nr => c,
                    _ => {
                        gaps.returns_without_entry += 1;
                        RawCall { tid, nr, rank: returned - 1, ..RawCall::default() }
                    }
                };
                (call.pid, call.ret, call.regs, call.stack, call.key, call.seq) =
                    (tgid, Some(ret), regs, stack, (seq, 0), seq);
                call.ordinal = Some(returned - 1);
                call.frames = frames;
                by_seq.insert(seq, done.len());
                done.push(call);
            }
            Event::Data { seq, off, bytes, .. } => match by_seq.get(&seq).map(|&i| &mut done[i]) {
                Some(call) => add_data(call, off, bytes),
                None => gaps.orphan_data += 1,
            },
            Event::Maps { .. } => {}
        }
    }
    for (_, mut left) in open {
        left.key = (left.rank, 1);
        done.push(left);
    }
    done.sort_by_key(|c| (c.key, c.tid));
    spawns_first(&mut done);
    (done, gaps)
}

/// A new task can run, and complete calls, before the call that made it returns in its
/// parent. strace reports the parent's call first (it sees the task made before the task
/// runs), and the calls' readers expect that: a task is known before its first call. So
/// each spawning call moves to just before its task's first call, to a fixed point (a
/// task's own spawn may move before its parent's).
fn spawns_first(calls: &mut Vec<RawCall>) {
    for _ in 0..8 {
        let mut first: HashMap<u32, usize> = HashMap::new();
        for (i, c) in calls.iter().enumerate() {
            first.entry(c.tid).or_insert(i);
        }
        let mut moved = false;
        let mut keys: Vec<(usize, u8)> = Vec::with_capacity(calls.len());
        for (i, c) in calls.iter().enumerate() {
            match c.spawned().and_then(|(t, _)| first.get(&t)).filter(|&&f| f < i) {
                Some(&f) => {
                    keys.push((f, 0));
                    moved = true;
                }
                None => keys.push((i, 1)),
            }
        }
        if !moved {
            return;
        }
        let mut order: Vec<usize> = (0..calls.len()).collect();
        order.sort_by_key(|&i| keys[i]);
        let mut taken: Vec<Option<RawCall>> = std::mem::take(calls).into_iter().map(Some).collect();
        calls.extend(order.into_iter().map(|i| taken[i].take().expect("each index once")));
    }
}

/// `(index, rank)` for each call that began before the calls `rank..index` (in `calls`'
/// order) completed, as strace's parser reports overlapping calls.
pub(crate) fn started_before(calls: &[RawCall]) -> Vec<(u64, u64)> {
    // For each completion ordinal, the least index of a call completing at or after it.
    let n = calls.iter().filter_map(|c| c.ordinal).max().map_or(0, |m| m as usize + 1);
    let mut least = vec![usize::MAX; n + 1];
    for (i, c) in calls.iter().enumerate() {
        if let Some(o) = c.ordinal {
            least[o as usize] = least[o as usize].min(i);
        }
    }
    for o in (0..n).rev() {
        least[o] = least[o].min(least[o + 1]);
    }
    let mut out = Vec::new();
    for (i, c) in calls.iter().enumerate().filter(|(_, c)| c.ordinal.is_some()) {
        let j = least.get(c.rank as usize).copied().unwrap_or(usize::MAX);
        if j < i {
            out.push((i as u64, j as u64));
        }
    }
    out
}

/// Chunks arrive in order; a gap (a dropped or unreadable chunk) ends what is kept.
fn add_data(call: &mut RawCall, off: u32, bytes: Option<Vec<u8>>) {
    match bytes {
        Some(b) if off as usize == call.data.len() && !call.data_unreadable => call.data.extend_from_slice(&b),
        _ => call.data_unreadable = true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enter(tid: u32, nr: u32) -> Event {
        Event::Enter { tid, tgid: tid, nr, time_ns: 0, args: [0; 6] }
    }

    fn ret(tid: u32, nr: u32, seq: u64) -> Event {
        Event::Return {
            tid,
            tgid: tid,
            nr,
            seq,
            ret: 0,
            regs: Regs::default(),
            stack: Vec::new(),
            remap: false,
            frames: None,
        }
    }

    #[test]
    fn calls_are_matched_by_thread_and_ordered_by_completion() {
        let events = vec![
            enter(1, 82),
            Event::Str { tid: 1, arg: 0, bytes: Some(b"a".to_vec()) },
            enter(2, 1),
            ret(2, 1, 0),
            Event::Data { tid: 2, seq: 0, off: 0, len: 2, bytes: Some(b"hi".to_vec()) },
            ret(1, 82, 1),
            enter(3, 231),
        ];
        let (calls, gaps) = assemble(events);
        assert_eq!(gaps, Gaps::default());
        let order: Vec<(u32, u64)> = calls.iter().map(|c| (c.tid, c.rank)).collect();
        assert_eq!(order, [(2, 0), (1, 0), (3, 2)]);
        assert_eq!(calls[0].data, b"hi");
        assert_eq!(calls[1].string(0), Some(b"a".as_slice()));
        assert_eq!(calls[2].ret, None);
    }

    fn ret_of(tid: u32, nr: u32, seq: u64, ret: i64) -> Event {
        Event::Return {
            tid,
            tgid: tid,
            nr,
            seq,
            ret,
            regs: Regs::default(),
            stack: Vec::new(),
            remap: false,
            frames: None,
        }
    }

    #[test]
    fn a_child_running_before_its_fork_returns_comes_after_the_fork() {
        // The shell (1) forks 2, which opens and writes before the fork returns in 1.
        let events = vec![
            enter(1, 57),
            enter(2, 257),
            ret_of(2, 257, 0, 3),
            enter(2, 1),
            ret_of(2, 1, 1, 5),
            ret_of(1, 57, 2, 2),
            enter(1, 1),
            ret_of(1, 1, 3, 1),
        ];
        let (calls, _) = assemble(events);
        let order: Vec<(u32, u32)> = calls.iter().map(|c| (c.tid, c.nr)).collect();
        assert_eq!(order, [(1, 57), (2, 257), (2, 1), (1, 1)]);
        // The child's calls ran while the fork was in progress: they began before it
        // completed (it is now first); the parent's write overlapped nothing.
        assert_eq!(started_before(&calls), [(1, 0), (2, 0)]);
    }
}
