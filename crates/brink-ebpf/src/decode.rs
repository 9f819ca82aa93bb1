//! The events file, read back into brink-calls' [`Parsed`]: the calls as strace's
//! parser would have given them, so everything downstream reads one form.

use std::collections::HashMap;

use brink_calls::{Call, CallKind, Parsed, Untraceable, map_flag};

use crate::assemble::{RawCall, assemble};
use crate::events::Event;
use crate::fds::Fds;
use crate::images::Images;
use crate::kinds;
use crate::stacks::Stacks;
use crate::syscalls;

/// The calls of a trace, and what in it is incomplete (one sentence each).
#[derive(Debug)]
pub struct Decoded {
    pub parsed: Parsed,
    pub notes: Vec<String>,
}

/// The calls in `events`, of a workload started in directory `start`; `boot_offset_ns`
/// turns the kernel's boot-time clock into Unix time.
pub fn decode(events: Vec<Event>, start: &[u8], boot_offset_ns: Option<i64>) -> Decoded {
    let mut stacks = Stacks::new(maps_of(&events));
    let mut images = Images::default();
    let (raw, gaps) = assemble(events);
    let mut unmapped = 0u64;
    let mut fds = Fds::new(start, parents(&raw));
    let mut calls = Vec::with_capacity(raw.len());
    let started_before = crate::assemble::started_before(&raw);
    let mut unreadable = 0u64;
    for (seq, mut c) in raw.into_iter().enumerate() {
        let seq = seq as u64;
        let name = syscalls::name(c.nr).map_or_else(|| format!("syscall_{}", c.nr), str::to_string);
        let mut kind = kinds::kind(&mut fds, &c, &name).unwrap_or_else(|| {
            unreadable += 1;
            CallKind::Other { raw_args: "(an argument could not be read from the program's memory)".into() }
        });
        kinds::update(&mut fds, &c, &kind);
        observe_images(&mut images, &mut fds, &c, &kind);
        // The written bytes move into the call rather than being copied.
        if let CallKind::Write { data, .. } = &mut kind {
            *data = std::mem::take(&mut c.data);
        }
        let time_us = boot_offset_ns.map(|o| (c.time_ns as i64 + o).max(0) as u64 / 1000);
        let result = kinds::result(&c, &name);
        let (stack, stack_truncated) = match (c.frames.take(), c.stack.is_empty()) {
            (Some(unwound), _) => unwound,
            (None, true) => (Vec::new(), false),
            (None, false) => stacks.unwind((c.pid, c.seq), c.regs, &c.stack, images.of(c.pid)).unwrap_or_else(|| {
                unmapped += 1;
                (Vec::new(), false)
            }),
        };
        calls.push(Call { seq, tid: c.tid, time_us, name, kind, result, stack, stack_truncated });
    }
    let mut notes = Vec::new();
    if gaps.returns_without_entry > 0 {
        notes.push(format!(
            "{} calls were seen returning but not starting: their arguments are not known",
            gaps.returns_without_entry
        ));
    }
    if unmapped > 0 {
        notes.push(format!("{unmapped} calls have no stack: their process ended before its memory map was read"));
    }
    if unreadable > 0 {
        notes.push(format!(
            "{unreadable} calls had a path or structure the kernel could not read from the program's memory"
        ));
    }
    Decoded { parsed: Parsed { calls, ends: Vec::new(), started_before, last_line_cut: false }, notes }
}

/// Follow each process's mapped objects through `c` (`images.rs`).
fn observe_images(images: &mut Images, fds: &mut Fds, c: &RawCall, kind: &CallKind) {
    let Some(ret) = c.ret.filter(|r| *r >= 0) else { return };
    match kind {
        CallKind::Spawn { thread: false } if ret > 0 => images.forked(c.pid, ret as u32),
        CallKind::Exec { path, .. } if !c.stack.is_empty() => {
            let dir = if c.nr == 322 { c.args[0] as u32 as i32 } else { brink_calls::AT_FDCWD };
            if let Some(abs) = fds.absolute(c.pid, dir, path) {
                images.exec(c.pid, brink_calls::bytes_path(&abs), &c.stack);
            }
        }
        CallKind::Mmap(m) | CallKind::Untraceable { what: Untraceable::SharedWritableMapping(m) } => {
            if let Some(path) = m.fd.as_ref().and_then(|f| f.path.as_deref()).filter(|p| p.starts_with(b"/")) {
                let exec = m.flags.contains(map_flag::PROT_EXEC);
                images.mapped(c.pid, ret as u64, m.len, m.offset, exec, brink_calls::bytes_path(path));
            }
        }
        _ if c.nr == 11 => images.unmapped(c.pid, c.args[0], c.args[1]),
        _ => {}
    }
}

/// Each process's memory maps as the tracer read them, in the order read.
fn maps_of(events: &[Event]) -> HashMap<u32, Vec<(u64, Vec<u8>)>> {
    let mut maps: HashMap<u32, Vec<(u64, Vec<u8>)>> = HashMap::new();
    for e in events {
        if let Event::Maps { pid, seq, text } = e {
            maps.entry(*pid).or_default().push((*seq, text.clone()));
        }
    }
    maps
}

/// Each process made by a `fork` (or a `clone` without `CLONE_THREAD`), and its parent.
fn parents(raw: &[RawCall]) -> HashMap<u32, u32> {
    raw.iter().filter_map(|c| c.spawned().filter(|&(_, thread)| !thread).map(|(child, _)| (child, c.pid))).collect()
}
