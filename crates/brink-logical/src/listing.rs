//! A model's crash states as content listings, computed in process (`brink
//! check-model`): the same [`Listing`] that `brink_explore::tree::content_listing` makes
//! of a recovered directory, made here from the state's tree and the trace's bytes, with
//! no directory written and no checker run. That is what lets check-model go through a
//! model's whole space at tens of thousands of states a second rather than one checker
//! process per state.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use brink_explore::tree::{FileDigest, LISTED_BLOCK, LOST_FOUND, Listing};
use brink_pmodel::{Applier, Extent, FileView, Fill, Ino, LState, LStateId, LStrategy, NodeKind, Plan};

use crate::{LogicalError, Recording};

/// Distinct file contents whose digests are remembered at once.
const DIGEST_CACHE_MAX: usize = 1 << 14;

/// One model state's logical content.
#[derive(Debug, Clone)]
pub struct ModelListing {
    pub listing: Listing,
    /// Per file (by its path as the listing shows it), the 4 KiB blocks where the state
    /// holds garbage (any byte of the block), or every block of a file written through a
    /// shared mapping (`LogicalTrace::unseen_stores`); files without either are not named.
    pub garbage: BTreeMap<String, BTreeSet<u64>>,
}

/// Lists the states of one plan, sharing work between them.
pub struct Lister<'a> {
    rec: &'a Recording,
    plan: &'a Plan,
    applier: Applier<'a>,
    digests: HashMap<(Option<Ino>, Vec<Extent>), FileDigest>,
    buf: Vec<u8>,
}

impl<'a> Lister<'a> {
    pub fn new(rec: &'a Recording, plan: &'a Plan) -> Lister<'a> {
        Lister { rec, plan, applier: Applier::new(&rec.logical, plan), digests: HashMap::new(), buf: Vec::new() }
    }

    /// The plan whose states it lists.
    pub fn plan(&self) -> &'a Plan {
        self.plan
    }

    /// What `state` leaves, as a listing.
    pub fn listing(&mut self, state: &LState) -> Result<ModelListing, LogicalError> {
        let mut out = ModelListing { listing: Listing::default(), garbage: BTreeMap::new() };
        self.visit(state, |path, e| match e {
            Seen::Dir => out.listing.dir(path),
            Seen::Link(target) => out.listing.symlink(path, Path::new(&target)),
            Seen::File(d, g) => {
                out.listing.file_digest(path, d);
                if !g.is_empty() {
                    out.garbage.insert(brink_explore::tree::shown(path), g);
                }
            }
        })?;
        Ok(out)
    }

    /// Each entry `state` leaves, parents first, `lost+found` left out (the file
    /// system's, not the program's), as a listing shows it.
    pub(crate) fn visit(&mut self, state: &LState, mut f: impl FnMut(&Path, Seen<'_>)) -> Result<(), LogicalError> {
        let tree = self.applier.tree(state);
        let unseen = &self.rec.logical.unseen_stores;
        let mut failed = None;
        tree.visit(|path, view| {
            if path.starts_with(LOST_FOUND) || failed.is_some() {
                return;
            }
            match &view.kind {
                NodeKind::Dir => f(path, Seen::Dir),
                NodeKind::Symlink(target) => {
                    f(path, Seen::Link(brink_calls::bytes_path(target).to_string_lossy().into_owned()))
                }
                NodeKind::File => {
                    let unknown = unseen.contains(&view.ino);
                    match self.digest(&view) {
                        Ok(d) => f(path, Seen::File(d, if unknown { every_block(d) } else { garbage_blocks(&view) })),
                        Err(e) => failed = Some(e),
                    }
                }
            }
        });
        failed.map_or(Ok(()), Err)
    }

    fn digest(&mut self, view: &FileView) -> Result<&FileDigest, LogicalError> {
        let key = crate::content::content_key(view);
        if !self.digests.contains_key(&key) {
            self.rec.content().bytes(view.ino, &view.content, &mut self.buf)?;
            if self.digests.len() >= DIGEST_CACHE_MAX {
                self.digests.clear();
            }
            self.digests.insert(key.clone(), FileDigest::of(&self.buf));
        }
        Ok(&self.digests[&key])
    }
}

/// One entry of a state as a listing shows it: a file with its digest and the blocks
/// where it holds garbage.
pub(crate) enum Seen<'d> {
    Dir,
    Link(String),
    File(&'d FileDigest, BTreeSet<u64>),
}

/// Every 4 KiB block of a file: a file written through a shared mapping, whose bytes no
/// model knows, compared as garbage.
fn every_block(d: &FileDigest) -> BTreeSet<u64> {
    (0..d.size.div_ceil(LISTED_BLOCK)).collect()
}

/// The 4 KiB blocks of a file that hold garbage.
fn garbage_blocks(view: &FileView) -> BTreeSet<u64> {
    let garbage = view.content.iter().filter(|e| e.fill == Fill::Garbage && e.len > 0);
    garbage.flat_map(|e| e.offset / LISTED_BLOCK..=(e.offset + e.len - 1) / LISTED_BLOCK).collect()
}

/// A model's whole space, by distinct content: each distinct (listing digest,
/// acknowledgements) with the first state (in the space's order) that has it.
#[derive(Debug, Default)]
pub struct ModelSpace {
    /// States gone through.
    pub states: u64,
    pub distinct: BTreeMap<(String, u64), (LStateId, ModelListing)>,
    /// Keep only these (content, acknowledgements) in `distinct` (a witness search:
    /// the others' listings would take gigabytes on a database's states).
    pub only: Option<HashSet<(String, u64)>>,
}

/// States listed between two looks at the interrupt; split among the workers.
const SPACE_CHUNK: usize = 4096;

/// Lists every state `strategy` visits in `plan` (more than `max_states`: refused, an
/// error) on `jobs` threads, each with its own [`Lister`]; the result is the same at
/// any `jobs` (chunks are merged in the space's order). `progress.done` counts states.
pub fn model_space(
    rec: &Recording,
    plan: &Plan,
    strategy: LStrategy,
    (max_states, jobs): (u128, usize),
    interrupt: &AtomicUsize,
    progress: &brink_explore::Progress,
    only: Option<HashSet<(String, u64)>>,
) -> Result<ModelSpace, LogicalError> {
    let max = usize::try_from(max_states).unwrap_or(usize::MAX - 1).min(usize::MAX - 1);
    let too_many =
        || LogicalError::TooManyStates { apm: plan.apm.name().into(), strategy: "exhaustive".into(), max: max_states };
    let total = plan.states(strategy).take(max + 1).count();
    if total > max {
        return Err(too_many());
    }
    progress.total.store(total as u64, Ordering::Relaxed);
    let jobs = jobs.max(1);
    let mut listers: Vec<Lister> = (0..jobs).map(|_| Lister::new(rec, plan)).collect();
    let mut space = ModelSpace { only, ..ModelSpace::default() };
    let mut states = plan.states(strategy).peekable();
    while states.peek().is_some() {
        let signal = interrupt.load(Ordering::Relaxed);
        if signal != 0 {
            return Err(LogicalError::Interrupted(i32::try_from(signal).unwrap_or(i32::MAX)));
        }
        let chunk: Vec<LState> = states.by_ref().take(SPACE_CHUNK).collect();
        let per = chunk.len().div_ceil(jobs);
        let listed: Vec<Result<Vec<ModelListing>, LogicalError>> = std::thread::scope(|s| {
            let work = chunk.chunks(per).zip(listers.iter_mut());
            let handles: Vec<_> =
                work.map(|(part, l)| s.spawn(move || part.iter().map(|st| l.listing(st)).collect())).collect();
            handles.into_iter().map(|h| h.join().expect("a lister panicked")).collect()
        });
        let listed = listed.into_iter().collect::<Result<Vec<_>, _>>()?;
        for (st, l) in chunk.iter().zip(listed.into_iter().flatten()) {
            let key = (l.listing.digest(), st.marks_before);
            if space.only.as_ref().is_none_or(|only| only.contains(&key)) {
                space.distinct.entry(key).or_insert((st.id.clone(), l));
            }
        }
        space.states += chunk.len() as u64;
        progress.done.store(space.states, Ordering::Relaxed);
    }
    Ok(space)
}

/// Most combinations [`Lister::near`] tries from one state.
const NEAR_TRIES_MAX: usize = 4096;

impl Lister<'_> {
    /// A state of the plan near `state` whose listing is `target` (its digest), if one
    /// is found: `state` with the appended data of each file whose content differs at the
    /// same size cut back, page by page, to a prefix (the zeros stages kept), and what
    /// depends on the data cut. That is writeback's page that was mapped (the size
    /// committed) and not yet written: the states a stronger model cannot translate
    /// into ext4-ordered. Bounded by [`NEAR_TRIES_MAX`] combinations.
    pub fn near(&mut self, state: &LState, target: &Listing) -> Result<Option<LState>, LogicalError> {
        let plan = self.plan;
        if state.end.is_none() {
            return Ok(None);
        }
        let mine = self.listing(state)?.listing;
        let sized = |e: &str| e.rsplit_once(' ').map(|(head, _)| head.to_string());
        let theirs: HashSet<String> = target.entries.iter().filter_map(|e| sized(e)).collect();
        let differing: HashSet<String> = (mine.entries.iter())
            .filter(|e| e.starts_with("f ") && !target.entries.contains(e))
            .filter_map(|e| sized(e).filter(|h| theirs.contains(h)))
            .collect();
        let files = self.applier.tree(state).files();
        let inos: HashSet<Ino> = (files.iter())
            .filter(|(p, v)| {
                differing
                    .iter()
                    .any(|h| h.split(' ').nth(1) == Some(&brink_explore::tree::shown(p)) && v.kind == NodeKind::File)
            })
            .map(|(_, v)| v.ino)
            .collect();
        let pages = appended_pages(plan, state, &inos);
        let combos = pages.iter().try_fold(1usize, |n, p| n.checked_mul(p.len() + 1)).unwrap_or(usize::MAX);
        if pages.is_empty() || combos > NEAR_TRIES_MAX {
            return Ok(None);
        }
        let dependents = plan.dependents();
        let want = target.digest();
        for combo in 0..combos {
            let mut cut = Vec::new();
            let mut rest = combo;
            for p in &pages {
                let keep = rest % (p.len() + 1);
                rest /= p.len() + 1;
                cut.extend(p[keep..].iter().flatten());
            }
            let Some(s) = plan.without(state, &cut, &dependents) else { continue };
            if self.listing(&s)?.listing.digest() == want {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }
}

/// The appends to the files `inos` that persisted in `state`, page by page in program
/// order, each as its data stage and the garbage stages of the same block (cut
/// together: the page then reads as its zeros).
fn appended_pages(plan: &Plan, state: &LState, inos: &HashSet<Ino>) -> Vec<Vec<Vec<u32>>> {
    let Some(end) = state.end else { return Vec::new() };
    let mut pages: BTreeMap<(Ino, u64), Vec<Vec<u32>>> = BTreeMap::new();
    for (m, op) in plan.micro.iter().enumerate().take(end as usize + 1) {
        let brink_pmodel::Micro::Write { ino, offset, len, fill: Fill::Data { .. } } = op.micro else { continue };
        if !inos.contains(&ino) || !state.holds(m as u32) {
            continue;
        }
        let same_block = |g: &brink_pmodel::MicroOp| {
            g.op == op.op
                && matches!(g.micro, brink_pmodel::Micro::Write { ino: i, offset: o, len: l, fill: Fill::Garbage } if (i, o, l) == (ino, offset, len))
        };
        let garbage = plan.of_op(op.op as usize).filter(|&g| state.holds(g) && same_block(&plan.micro[g as usize]));
        let group: Vec<u32> = std::iter::once(m as u32).chain(garbage).collect();
        pages.entry((ino, offset / LISTED_BLOCK)).or_default().push(group);
    }
    pages.into_values().collect()
}
