//! One crash state as a real image file, for a person (`brink replay`) or a test: the
//! base image, every write made durable by a flush before the crash point, and the
//! epoch's writes before the point as the state id chooses.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use brink_pmodel::{MediaFault, StateId, WriteChoice};
use brink_trace::{Event, SECTOR_BYTES, TraceReader, image};

use crate::ReplayError;

/// What a materialized state is held to.
#[derive(Debug)]
pub struct Materialized {
    /// Marks acknowledged before the crash point.
    pub marks: Vec<String>,
    /// What the image cannot show (a latent sector error fails reads only while the
    /// explorer serves the state).
    pub note: Option<String>,
}

/// Write the state `id` of the trace at `trace` to the image file `out`.
pub fn materialize(trace: &Path, id: &StateId, out: &Path) -> Result<Materialized, ReplayError> {
    let reader = TraceReader::open(trace)?;
    if id.position > reader.meta().events {
        return Err(ReplayError::PastTheEnd { id: id.clone(), events: reader.meta().events });
    }
    let epoch_start = epoch_start(&reader, id.position)?;
    image::copy_sparse(&reader.base_image_path(), out)?;
    let img = OpenOptions::new().read(true).write(true).open(out).map_err(|e| ReplayError::io(out, e))?;
    let applied = apply_events(&reader, id, epoch_start, &img, out)?;
    if applied.used != id.choices.len() {
        let first_unused = id.choices.iter().map(|(i, _)| *i).find(|&i| i >= id.position).unwrap_or(id.position);
        return Err(not_volatile(id, first_unused));
    }
    // The fault's effects beyond the write's own sectors are laid over the whole state,
    // as the explorer lays them.
    if let Some(w) = &applied.faulted {
        fault_effects(&img, out, id, w, &reader)?;
    }
    img.sync_all().map_err(|e| ReplayError::io(out, e))?;
    let note = match id.fault {
        Some(MediaFault::Latent(i)) => Some(format!(
            "the latent sector error on write {i}'s first sector fails reads only while brink explore serves the state; this image reads it fine"
        )),
        _ => None,
    };
    if let Some(f) = id.fault.filter(|_| applied.faulted.is_none()) {
        return Err(not_volatile(id, f.write()));
    }
    Ok(Materialized { marks: applied.marks, note })
}

fn not_volatile(id: &StateId, event: u64) -> ReplayError {
    ReplayError::NotVolatile { id: id.clone(), event }
}

/// Where the epoch of the crash point starts: after the last flush before it.
fn epoch_start(reader: &TraceReader, position: u64) -> Result<u64, ReplayError> {
    let mut start = 0u64;
    for ev in reader.events()? {
        let ev = ev?;
        if ev.index >= position {
            break;
        }
        if ev.event == Event::Flush {
            start = ev.index + 1;
        }
    }
    Ok(start)
}

/// What applying the events before the crash point found.
struct Applied {
    marks: Vec<String>,
    /// How many of the id's choices named an event.
    used: usize,
    /// The write the id's media fault is on.
    faulted: Option<brink_trace::Write>,
}

/// Apply every event before the crash point to `img`, as the id chooses.
fn apply_events(
    reader: &TraceReader,
    id: &StateId,
    epoch_start: u64,
    img: &std::fs::File,
    out: &Path,
) -> Result<Applied, ReplayError> {
    let mut applied = Applied { marks: Vec::new(), used: 0, faulted: None };
    let mut buf = Vec::new();
    for ev in reader.events()? {
        let ev = ev?;
        if ev.index >= id.position {
            break;
        }
        let own = match (&ev.event, id.fault) {
            (Event::Write(w), Some(f)) if f.write() == ev.index => {
                applied.faulted = Some(w.clone());
                f.own_sectors((w.len / SECTOR_BYTES) as u32)
            }
            _ => None,
        };
        let choice =
            id.choices.binary_search_by_key(&ev.index, |(i, _)| *i).ok().map(|k| &id.choices[k].1).or(own.as_ref());
        if own.is_some() && id.choices.iter().any(|(i, _)| *i == ev.index) {
            return Err(ReplayError::ChoiceAndFault { id: id.clone(), write: ev.index });
        }
        if choice.is_some() {
            applied.used += usize::from(own.is_none());
            if !volatile(&ev.event, choice, ev.index >= epoch_start) {
                return Err(not_volatile(id, ev.index));
            }
        }
        apply_event(reader, &ev.event, choice, img, out, &mut buf, &mut applied.marks)?;
    }
    Ok(applied)
}

/// Whether an event may be chosen (dropped or torn): a write of the epoch that is not
/// FUA, or a discard or write-zeroes of the epoch that is dropped.
fn volatile(event: &Event, choice: Option<&WriteChoice>, in_epoch: bool) -> bool {
    in_epoch
        && match event {
            Event::Write(w) => !w.flags.fua(),
            Event::Discard { .. } | Event::WriteZeroes { .. } => matches!(choice, Some(WriteChoice::Omitted)),
            _ => false,
        }
}

/// One event's effect on the image (a write's kept sectors, zeros), or its mark.
fn apply_event(
    reader: &TraceReader,
    event: &Event,
    choice: Option<&WriteChoice>,
    img: &std::fs::File,
    out: &Path,
    buf: &mut Vec<u8>,
    marks: &mut Vec<String>,
) -> Result<(), ReplayError> {
    match (event, choice) {
        (Event::Mark { text }, _) => marks.push(text.clone()),
        (_, Some(WriteChoice::Omitted)) | (Event::Flush | Event::Error(_), _) => {}
        (Event::Write(w), c) => {
            reader.read_payload(w, buf)?;
            for (i, sector) in buf.chunks(SECTOR_BYTES as usize).enumerate() {
                if c.is_none_or(|c| c.keeps_sector(i as u32)) {
                    img.write_all_at(sector, w.offset + i as u64 * SECTOR_BYTES)
                        .map_err(|e| ReplayError::io(out, e))?;
                }
            }
        }
        (Event::Discard { offset, len } | Event::WriteZeroes { offset, len }, _) => {
            image::zero_range(img, *offset, *len).map_err(|e| ReplayError::io(out, e))?;
        }
    }
    Ok(())
}

/// The part of a media fault that lands outside the write's own sectors: a garbage
/// tear's garbage, a misdirected write's data on its neighbours. Written after the
/// write itself, as the explorer lays it.
fn fault_effects(
    img: &std::fs::File,
    out: &Path,
    id: &StateId,
    w: &brink_trace::Write,
    reader: &TraceReader,
) -> Result<(), ReplayError> {
    let io = |e| ReplayError::io(out, e);
    match id.fault {
        Some(MediaFault::Garbage(i)) => {
            let half = u64::from(MediaFault::garbage_from((w.len / SECTOR_BYTES) as u32)) * SECTOR_BYTES;
            let mut garbage = vec![0u8; (w.len - half) as usize];
            crate::footprint::Src::Garbage { seed: i, offset: 0 }.read(reader, &mut garbage)?;
            img.write_all_at(&garbage, w.offset + half).map_err(io)
        }
        Some(MediaFault::Misdirected(i)) => {
            let to = MediaFault::misdirected_to(w.offset, w.len, reader.meta().image_size)
                .ok_or_else(|| ReplayError::NowhereToMisdirect { id: id.clone(), write: i })?;
            let mut data = Vec::new();
            reader.read_payload(w, &mut data)?;
            img.write_all_at(&data, to).map_err(io)
        }
        Some(MediaFault::Latent(_)) | None => Ok(()),
    }
}

/// One state left for a person to inspect (`brink replay`): its image, its marks and, when
/// asked and possible, the file system recovered by the kernel and left mounted.
#[derive(Debug)]
pub struct Replayed {
    /// `OUT/state.img`.
    pub image: PathBuf,
    /// `OUT/marks`: the marks the state is held to, one a line.
    pub marks_file: PathBuf,
    pub marks: usize,
    /// What the image cannot show (see [`Materialized::note`]).
    pub note: Option<String>,
    pub recovery: Recovery,
}

/// What became of the kernel's recovery of a replayed state.
#[derive(Debug)]
pub enum Recovery {
    /// Not asked for: the image only.
    NotAsked,
    /// The trace's file system is not one brink mounts.
    UnknownFs,
    /// Recovered and mounted at `target` through the loop device `device`; both stay
    /// (the loop device detaches itself when the file system is unmounted).
    Mounted { target: PathBuf, device: PathBuf },
    /// The kernel refused to mount it: why.
    DoesNotMount(String),
}

/// Materialize state `id` of `trace` into the new directory `out` (`state.img`, `marks`)
/// and, if `mount`, let the kernel recover it and leave it mounted at `out/mnt`.
pub fn replay(trace: &Path, id: &StateId, out: &Path, mount: bool) -> Result<Replayed, ReplayError> {
    if out.exists() {
        return Err(ReplayError::OutputExists { path: out.to_path_buf() });
    }
    std::fs::create_dir_all(out).map_err(|e| ReplayError::io(out, e))?;
    let image = out.join("state.img");
    let m = materialize(trace, id, &image)?;
    let marks_file = out.join("marks");
    brink_check::write_marks(&marks_file, &m.marks).map_err(|e| ReplayError::io(&marks_file, e))?;
    let meta = TraceReader::open(trace)?.meta().clone();
    let recovery = match meta.fs.parse::<brink_blockdev::FsKind>() {
        _ if !mount => Recovery::NotAsked,
        Err(_) => Recovery::UnknownFs,
        Ok(fs) => mount_state(fs, &meta.mount_opts, &image, &out.join("mnt"))?,
    };
    Ok(Replayed { image, marks_file, marks: m.marks.len(), note: m.note, recovery })
}

/// Attach `image` to a loop device and mount it at `mnt` (created here) with the options
/// the explorer mounts states with; on success both are left in place.
fn mount_state(fs: brink_blockdev::FsKind, opts: &str, image: &Path, mnt: &Path) -> Result<Recovery, ReplayError> {
    std::fs::create_dir(mnt).map_err(|e| ReplayError::io(mnt, e))?;
    let f = OpenOptions::new().read(true).write(true).open(image).map_err(|e| ReplayError::io(image, e))?;
    let dev = brink_blockdev::LoopDevice::attach(&f, image, false)?;
    let opts = crate::state_mount_options(fs, opts).map_err(ReplayError::MountOptions)?;
    Ok(match brink_blockdev::Mount::mount(dev.path(), mnt, fs.name(), &opts) {
        Ok(m) => Recovery::Mounted { target: m.leak(), device: dev.leak() },
        Err(e) => Recovery::DoesNotMount(e.to_string()),
    })
}
