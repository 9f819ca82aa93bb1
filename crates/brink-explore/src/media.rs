//! Media-fault states (`ExploreConfig::media_faults`): besides the crash states a
//! persistence model allows, states where the medium itself misbehaved once. Each is a
//! crash state with every volatile write persisted, then one fault laid over it: a torn
//! write whose lost half reads back as garbage, a latent sector error (reads of a
//! write's first sector fail while the state is served), or a write misdirected to a
//! neighbouring location. brink-pmodel's docs give the model; this module only turns
//! an epoch into the states to check and what to lay over them.

use brink_pmodel::{CrashState, MediaFault, StateId, WriteChoice};

use crate::footprint::{Piece, Src};
use crate::plan::EpochData;

/// A media-fault state: its base state (what the pieces come from), the pieces laid
/// over them, and the byte range that fails to read.
pub(crate) struct FaultState {
    pub state: CrashState,
    pub base: CrashState,
    pub extra: Vec<Piece>,
    pub bad: Option<(u64, u64)>,
}

/// At each crash point of the epoch, the state with every volatile write persisted,
/// once per fault kind per volatile write that carries data (brink-pmodel's docs).
/// Latent sector errors need the FUSE slots (`with_latent`).
pub(crate) fn fault_states(ed: &EpochData, image_size: u64, with_latent: bool) -> Vec<FaultState> {
    const S: u64 = brink_trace::SECTOR_BYTES;
    let mut out = Vec::new();
    for p in &ed.epoch.points {
        let at = |fault: MediaFault, choices: Vec<(u64, WriteChoice)>| {
            let state = CrashState {
                id: StateId { position: p.position, choices: Vec::new(), fault: Some(fault) },
                epoch: ed.epoch.number,
                marks_before: p.marks_before,
            };
            let base = CrashState { id: StateId { position: p.position, choices, fault: None }, ..state.clone() };
            (state, base)
        };
        for (k, w) in ed.epoch.writes[..p.writes_before].iter().enumerate().filter(|(_, w)| !w.fua) {
            let data = &ed.writes[k];
            let Some(src) = &data.src else { continue }; // a discard carries no data
            let sectors = u64::from(w.sectors);
            if sectors >= 2 {
                let fault = MediaFault::Garbage(w.index);
                let half = u64::from(MediaFault::garbage_from(w.sectors));
                let (state, base) = at(fault, vec![(w.index, fault.own_sectors(w.sectors).expect("a tear"))]);
                let garbage = Piece {
                    offset: data.offset + half * S,
                    len: (sectors - half) * S,
                    src: Src::Garbage { seed: w.index, offset: 0 },
                };
                out.push(FaultState { state, base, extra: vec![garbage], bad: None });
            }
            if with_latent {
                let (state, base) = at(MediaFault::Latent(w.index), Vec::new());
                out.push(FaultState { state, base, extra: Vec::new(), bad: Some((data.offset, data.offset + S)) });
            }
            if let Some(target) = MediaFault::misdirected_to(data.offset, data.len, image_size) {
                let (state, base) = at(MediaFault::Misdirected(w.index), vec![(w.index, WriteChoice::Omitted)]);
                let moved = Piece { offset: target, len: data.len, src: Src::Write(src.clone(), 0) };
                out.push(FaultState { state, base, extra: vec![moved], bad: None });
            }
        }
    }
    out
}
