//! The kernel half's records, read back from the events file: the layouts of
//! `calls.bpf.c`'s `*_rec` structures (native byte order, the file never leaves the
//! machine that wrote it), each record framed in the file by its length.

use std::io::Write;

use brink_calls::Frame;

/// Bytes of the top of the user stack copied per call (`STACK_BYTES`).
pub const STACK_BYTES: usize = 8192;
/// Bytes of written data copied per call (`CHUNKS_MAX * CHUNK`): a longer write is
/// recorded truncated, as strace's `-s` does.
pub const DATA_BYTES_MAX: usize = 1 << 20;
/// Longest string read (`STR_BYTES`, the kernel's `PATH_MAX`, its NUL included).
pub const STRING_BYTES_MAX: usize = 4096;
/// Most `argv` entries read for an `execve`.
pub const ARGV_MAX: usize = 64;
/// Bit set in a string's or a chunk's length (or argument index) when the kernel could
/// not read the user memory.
const UNREADABLE: u32 = 0x8000_0000;

/// One record of the kernel half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A traced call began: its raw arguments.
    Enter { tid: u32, tgid: u32, nr: u32, time_ns: u64, args: [u64; 6] },
    /// A string argument (index `arg`; `16 + i` for `argv[i]`) read at entry; `None`
    /// when the memory could not be read.
    Str { tid: u32, arg: u32, bytes: Option<Vec<u8>> },
    /// A structure argument read at entry.
    Blob { tid: u32, arg: u32, bytes: Vec<u8> },
    /// The call returned: `seq` is the order of completion across the whole trace;
    /// `remap`, it may have changed the process's executable mappings. `frames`: its
    /// stack as the tracer unwound it while the process was alive (the copied `stack` is
    /// then not kept), and whether it went on past what was copied.
    Return {
        tid: u32,
        tgid: u32,
        nr: u32,
        seq: u64,
        ret: i64,
        regs: Regs,
        stack: Vec<u8>,
        remap: bool,
        frames: Option<(Vec<Frame>, bool)>,
    },
    /// Bytes the call `seq` wrote, at offset `off` of its data; `None` when unreadable.
    Data { tid: u32, seq: u64, off: u32, len: u32, bytes: Option<Vec<u8>> },
    /// Process `pid`'s memory map (`/proc/PID/maps`, file-backed lines only) as user
    /// space read it after call `seq` returned; written by the tracer, not the kernel.
    Maps { pid: u32, seq: u64, text: Vec<u8> },
}

/// The record kind of [`Event::Maps`].
const KIND_MAPS: u32 = 6;
/// The record kind of a RETURN whose stack the tracer unwound: the 64 bytes of the
/// kernel's header (stack length 0), then the frame count, a truncated flag, and each
/// frame's file offset, path length and path.
const KIND_UNWOUND: u32 = 7;
/// Bytes of a RETURN record's header, before its stack.
const RETURN_HEADER: usize = 64;
/// The record kind of a RETURN (`K_CALL`), and where its fields are (`struct call_head`).
const KIND_RETURN: u32 = 4;
const RET_TGID: usize = 8;
const RET_SEQ: usize = 16;
const RET_REGS: usize = 32;
const RET_STACK_LEN: usize = 56;
const RET_REMAP: usize = 60;

/// The user registers of a RETURN record.
fn regs_at(b: &[u8]) -> Option<Regs> {
    Some(Regs { ip: u64_at(b, RET_REGS)?, sp: u64_at(b, RET_REGS + 8)?, bp: u64_at(b, RET_REGS + 16)? })
}

/// A RETURN record's header, relabelled `kind` and with no stack after it.
fn bare_header(rec: &[u8], kind: u32) -> Option<Vec<u8>> {
    let mut r = rec.get(..RETURN_HEADER)?.to_vec();
    r[..4].copy_from_slice(&kind.to_ne_bytes());
    r[RET_STACK_LEN..RET_STACK_LEN + 4].copy_from_slice(&0u32.to_ne_bytes());
    Some(r)
}

/// A RETURN record (`rec`, from the kernel) with its stack replaced by its frames.
pub(crate) fn unwound_record(rec: &[u8], frames: &[Frame], truncated: bool) -> Option<Vec<u8>> {
    let mut r = bare_header(rec, KIND_UNWOUND)?;
    r.extend_from_slice(&u32::try_from(frames.len()).ok()?.to_ne_bytes());
    r.extend_from_slice(&u32::from(truncated).to_ne_bytes());
    for f in frames {
        let path = f.object.as_os_str().as_encoded_bytes();
        r.extend_from_slice(&f.offset.to_ne_bytes());
        r.extend_from_slice(&u16::try_from(path.len()).ok()?.to_ne_bytes());
        r.extend_from_slice(path);
    }
    Some(r)
}

/// The frames of a [`KIND_UNWOUND`] record, after its header.
fn parse_frames(b: &[u8]) -> Option<(Vec<Frame>, bool)> {
    let (count, truncated) = (u32_at(b, 0)? as usize, u32_at(b, 4)? != 0);
    let (mut at, mut frames) = (8, Vec::with_capacity(count.min(brink_calls::STACK_FRAMES_MAX)));
    for _ in 0..count.min(brink_calls::STACK_FRAMES_MAX) {
        let offset = u64_at(b, at)?;
        let len = usize::from(u16::from_ne_bytes(b.get(at + 8..at + 10)?.try_into().ok()?));
        let path = b.get(at + 10..at + 10 + len)?;
        let object = std::path::PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
        frames.push(Frame { object, function: None, offset, source: None });
        at += 10 + len;
    }
    Some((frames, truncated))
}

/// The bytes of a [`Event::Maps`] record.
pub(crate) fn maps_record(pid: u32, seq: u64, text: &[u8]) -> Vec<u8> {
    let mut r = Vec::with_capacity(16 + text.len());
    r.extend_from_slice(&KIND_MAPS.to_ne_bytes());
    r.extend_from_slice(&pid.to_ne_bytes());
    r.extend_from_slice(&seq.to_ne_bytes());
    r.extend_from_slice(text);
    r
}

/// The user registers an unwinder starts from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Regs {
    pub ip: u64,
    pub sp: u64,
    pub bp: u64,
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(at..at + 8)?.try_into().ok()?))
}

/// `len` bytes of `b` from `at`, or `None` when the record is too short for them.
fn bytes_at(b: &[u8], at: usize, len: usize) -> Option<Vec<u8>> {
    b.get(at..at.checked_add(len)?).map(<[u8]>::to_vec)
}

impl Event {
    /// A RETURN record's header, read as one with no stack.
    fn parse_header(b: &[u8]) -> Option<Event> {
        Event::parse(&bare_header(b, KIND_RETURN)?)
    }

    /// A record as the kernel half wrote it; `None` for one this version does not know.
    pub fn parse(b: &[u8]) -> Option<Event> {
        let tid = u32_at(b, 4)?;
        match u32_at(b, 0)? {
            1 => {
                let mut args = [0; 6];
                for (i, a) in args.iter_mut().enumerate() {
                    *a = u64_at(b, 24 + 8 * i)?;
                }
                Some(Event::Enter { tid, tgid: u32_at(b, 8)?, nr: u32_at(b, 12)?, time_ns: u64_at(b, 16)?, args })
            }
            2 => {
                let (arg, len) = (u32_at(b, 8)?, u32_at(b, 12)? as usize);
                let unreadable = arg & UNREADABLE != 0;
                // The kernel counts the NUL.
                let bytes = (!unreadable).then(|| bytes_at(b, 16, len.saturating_sub(1))).flatten();
                Some(Event::Str { tid, arg: arg & !UNREADABLE, bytes })
            }
            3 => Some(Event::Blob { tid, arg: u32_at(b, 8)?, bytes: bytes_at(b, 16, u32_at(b, 12)? as usize)? }),
            KIND_RETURN => {
                let regs = regs_at(b)?;
                let stack = bytes_at(b, RETURN_HEADER, (u32_at(b, RET_STACK_LEN)? as usize).min(STACK_BYTES))?;
                let ret = i64::from_ne_bytes(b.get(24..32)?.try_into().ok()?);
                Some(Event::Return {
                    tid,
                    tgid: u32_at(b, RET_TGID)?,
                    nr: u32_at(b, 12)?,
                    seq: u64_at(b, RET_SEQ)?,
                    ret,
                    regs,
                    stack,
                    remap: u32_at(b, RET_REMAP)? != 0,
                    frames: None,
                })
            }
            KIND_UNWOUND => {
                let Event::Return { tid, tgid, nr, seq, ret, regs, remap, .. } = Event::parse_header(b)? else {
                    return None;
                };
                let frames = Some(parse_frames(b.get(RETURN_HEADER..)?)?);
                Some(Event::Return { tid, tgid, nr, seq, ret, regs, stack: Vec::new(), remap, frames })
            }
            5 => {
                let (off, raw) = (u32_at(b, 16)?, u32_at(b, 20)?);
                let len = raw & !UNREADABLE;
                let bytes = (raw & UNREADABLE == 0).then(|| bytes_at(b, 24, len as usize)).flatten();
                Some(Event::Data { tid, seq: u64_at(b, 8)?, off, len, bytes })
            }
            KIND_MAPS => Some(Event::Maps { pid: tid, seq: u64_at(b, 8)?, text: b.get(16..)?.to_vec() }),
            _ => None,
        }
    }
}

/// A RETURN record's process, registers and copied stack, borrowed (the tracer reads
/// every record: no copy), if it carries a stack.
pub(crate) fn stack_view(rec: &[u8]) -> Option<(u32, Regs, &[u8])> {
    if u32_at(rec, 0)? != KIND_RETURN {
        return None;
    }
    let len = (u32_at(rec, RET_STACK_LEN)? as usize).min(STACK_BYTES);
    (len > 0).then_some(())?;
    Some((u32_at(rec, RET_TGID)?, regs_at(rec)?, rec.get(RETURN_HEADER..RETURN_HEADER + len)?))
}

/// What the tracer must do after a record: read process `pid`'s memory map, as of call
/// `seq`, when it is new or its call may have changed its executable mappings.
pub(crate) fn wants_maps(rec: &[u8], known: &mut std::collections::HashSet<u32>) -> Option<(u32, u64)> {
    if u32_at(rec, 0)? != KIND_RETURN {
        return None;
    }
    let (pid, seq, remap) = (u32_at(rec, RET_TGID)?, u64_at(rec, RET_SEQ)?, u32_at(rec, RET_REMAP)? != 0);
    (known.insert(pid) || remap).then_some((pid, seq))
}

/// Append one record to an events file.
pub(crate) fn write_framed(w: &mut impl Write, record: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(record.len()).map_err(std::io::Error::other)?;
    w.write_all(&len.to_ne_bytes())?;
    w.write_all(record)
}

/// The records of an events file, in the order the kernel committed them; a record cut
/// by the end of the file (the tracer killed while writing) ends the list, and is
/// counted in the second value.
pub fn read_framed(bytes: &[u8]) -> (Vec<Event>, usize) {
    let (mut out, mut at, mut bad) = (Vec::new(), 0, 0);
    while let Some(len) = u32_at(bytes, at) {
        let Some(rec) = bytes.get(at + 4..at + 4 + len as usize) else {
            bad += 1;
            break;
        };
        match Event::parse(rec) {
            Some(e) => out.push(e),
            None => bad += 1,
        }
        at += 4 + len as usize;
    }
    (out, bad)
}
