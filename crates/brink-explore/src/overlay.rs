//! One slot's overlay, apart from FUSE: the pieces of the crash state being served (a map
//! of disjoint byte ranges to where their bytes come from), the 4 KiB pages written since
//! (journal replay, a checker), and the range a latent sector error makes unreadable.
//!
//! The interval logic lives here, with no file, trace or mount in sight, so that tests
//! can check it without root; `slots.rs` reads the durable image and the trace through
//! it and serves it over FUSE.

use std::collections::{BTreeMap, HashMap};

use crate::footprint::Src;

/// The page size of a slot file (the kernel caches it in pages of this size).
pub(crate) const PAGE: u64 = 4096;

/// `ranges` widened to whole pages, sorted, with touching and overlapping ones merged:
/// what to drop from the kernel's cache of a slot file.
pub(crate) fn page_ranges(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    merged(ranges.into_iter().filter(|(a, b)| a < b).map(|(a, b)| (a / PAGE * PAGE, b.div_ceil(PAGE) * PAGE)))
}

/// `ranges` (non-empty) sorted, overlapping and touching ones merged.
pub(crate) fn merged(ranges: impl IntoIterator<Item = (u64, u64)>) -> Vec<(u64, u64)> {
    let mut r: Vec<(u64, u64)> = ranges.into_iter().collect();
    r.sort_unstable();
    let mut out: Vec<(u64, u64)> = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

/// One slot's state: pieces of the crash state, and pages written since.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    /// Disjoint byte ranges: start → (end, source).
    pub(crate) segs: BTreeMap<u64, (u64, Src)>,
    /// Written pages by page number, each as long as the page is in the image.
    pub(crate) pages: HashMap<u64, Box<[u8]>>,
    /// A latent sector error: reads touching this byte range fail with EIO.
    pub(crate) bad: Option<(u64, u64)>,
}

impl Overlay {
    /// Lay `src` over `[start, end)`, replacing what was there.
    pub(crate) fn insert(&mut self, start: u64, end: u64, src: Src) {
        let overlapping: Vec<u64> =
            self.segs.range(..end).rev().take_while(|(_, (e, _))| *e > start).map(|(k, _)| *k).collect();
        for k in overlapping {
            let (e, old) = self.segs.remove(&k).expect("present");
            if k < start {
                self.segs.insert(k, (start, old.clone()));
            }
            if e > end {
                self.segs.insert(end, (e, old.advanced(end - k)));
            }
        }
        self.segs.insert(start, (end, src));
    }

    /// The pieces that meet `[offset, end)`, each as (start, end, source), from the last
    /// one backwards.
    pub(crate) fn meeting(&self, offset: u64, end: u64) -> impl Iterator<Item = (u64, u64, &Src)> {
        self.segs.range(..end).rev().take_while(move |(_, (e, _))| *e > offset).map(|(&k, (e, src))| (k, *e, src))
    }

    /// Whether a read of `len` bytes at `offset` touches the latent sector error.
    pub(crate) fn touches_bad(&self, offset: u64, len: u64) -> bool {
        self.bad.is_some_and(|(a, b)| offset < b && a < offset + len)
    }

    /// The byte ranges where this state may read otherwise than the durable image: its
    /// pieces, its written pages and its latent sector error, in no order.
    pub(crate) fn footprint(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        let pieces = self.segs.iter().map(|(&k, (e, _))| (k, *e));
        let pages = self.pages.iter().map(|(&p, b)| (p * PAGE, p * PAGE + b.len() as u64));
        pieces.chain(pages).chain(self.bad)
    }

    /// Forget the pieces, the written pages and the latent sector error.
    pub(crate) fn reset(&mut self, bad: Option<(u64, u64)>) {
        self.pages.clear();
        self.segs.clear();
        self.bad = bad;
    }
}

#[cfg(test)]
mod tests {
    use expect_test::{Expect, expect};

    use super::*;

    /// A source named by its seed, so a layout reads as "which piece, from where".
    fn g(seed: u64) -> Src {
        Src::Garbage { seed, offset: 0 }
    }

    fn layout(ov: &Overlay) -> String {
        let segs = ov.segs.iter().map(|(k, (e, src))| match src {
            Src::Garbage { seed, offset } => format!("[{k},{e})=g{seed}+{offset}"),
            Src::Zero => format!("[{k},{e})=zero"),
            Src::Write(_, off) => format!("[{k},{e})=w+{off}"),
        });
        segs.collect::<Vec<_>>().join(" ")
    }

    /// One case: its name, the ranges laid on in order, the layout after.
    type Case = (&'static str, &'static [(u64, u64)], Expect);

    /// Ranges laid on in order (each with the next seed, from 1), and the layout after.
    fn check(ranges: &[(u64, u64)], want: &Expect) {
        let mut ov = Overlay::default();
        for (i, &(a, b)) in ranges.iter().enumerate() {
            ov.insert(a, b, g(i as u64 + 1));
        }
        let got = layout(&ov);
        // The invariant the readers rely on: sorted, disjoint, non-empty ranges.
        let mut prev_end = 0;
        for (&k, &(e, _)) in &ov.segs {
            assert!(prev_end <= k && k < e, "{got}");
            prev_end = e;
        }
        want.assert_eq(&got);
    }

    #[test]
    fn page_ranges_are_whole_pages_sorted_and_merged() {
        let r = page_ranges([(9000, 9001), (0, 1), (4096, 8192), (20000, 20000), (8191, 12000), (100_000, 100_100)]);
        assert_eq!(r, [(0, 12288), (98304, 102400)]);
        let r = page_ranges([(4095, 4097), (0, 4096)]);
        assert_eq!(r, [(0, 8192)]);
    }

    #[test]
    fn insert_keeps_ranges_disjoint_and_later_pieces_win() {
        let cases: &[Case] = &[
            ("one range", &[(10, 20)], expect!["[10,20)=g1+0"]),
            ("apart", &[(10, 20), (30, 40)], expect!["[10,20)=g1+0 [30,40)=g2+0"]),
            ("adjacent after", &[(10, 20), (20, 30)], expect!["[10,20)=g1+0 [20,30)=g2+0"]),
            ("adjacent before", &[(20, 30), (10, 20)], expect!["[10,20)=g2+0 [20,30)=g1+0"]),
            ("same range", &[(10, 20), (10, 20)], expect!["[10,20)=g2+0"]),
            ("overlap the end", &[(10, 20), (15, 25)], expect!["[10,15)=g1+0 [15,25)=g2+0"]),
            ("overlap the start", &[(10, 20), (5, 15)], expect!["[5,15)=g2+0 [15,20)=g1+5"]),
            ("contained: splits", &[(10, 40), (20, 25)], expect!["[10,20)=g1+0 [20,25)=g2+0 [25,40)=g1+15"]),
            ("containing: replaces", &[(20, 25), (10, 40)], expect!["[10,40)=g2+0"]),
            ("same start, shorter", &[(10, 40), (10, 20)], expect!["[10,20)=g2+0 [20,40)=g1+10"]),
            ("same end, shorter", &[(10, 40), (30, 40)], expect!["[10,30)=g1+0 [30,40)=g2+0"]),
            (
                "spans several",
                &[(0, 10), (10, 20), (20, 30), (30, 40), (5, 35)],
                expect!["[0,5)=g1+0 [5,35)=g5+0 [35,40)=g4+5"],
            ),
            (
                "splits a split",
                &[(0, 100), (40, 60), (45, 50)],
                expect!["[0,40)=g1+0 [40,45)=g2+0 [45,50)=g3+0 [50,60)=g2+10 [60,100)=g1+60"],
            ),
            ("a gap stays a gap", &[(0, 10), (20, 30), (8, 12)], expect!["[0,8)=g1+0 [8,12)=g3+0 [20,30)=g2+0"]),
        ];
        for (name, ranges, want) in cases {
            eprintln!("case: {name}");
            check(ranges, want);
        }
    }

    #[test]
    fn meeting_lists_the_pieces_a_read_touches() {
        let mut ov = Overlay::default();
        for (i, (a, b)) in [(0, 10), (10, 20), (30, 40)].into_iter().enumerate() {
            ov.insert(a, b, g(i as u64 + 1));
        }
        let meets = |a, b| ov.meeting(a, b).map(|(k, e, _)| format!("[{k},{e})")).collect::<Vec<_>>();
        let meets = |a, b| Some(meets(a, b).join(" ")).filter(|s| !s.is_empty()).unwrap_or("none".into());
        let got = [(0, 1), (9, 11), (10, 30), (20, 30), (19, 31), (40, 50), (0, 50)]
            .map(|(a, b)| format!("[{a},{b}): {}", meets(a, b)));
        expect![[r#"
            [0,1): [0,10)
            [9,11): [10,20) [0,10)
            [10,30): [10,20)
            [20,30): none
            [19,31): [30,40) [10,20)
            [40,50): none
            [0,50): [30,40) [10,20) [0,10)"#]]
        .assert_eq(&got.join("\n"));
    }

    #[test]
    fn a_latent_sector_error_touches_reads_that_overlap_it() {
        let ov = Overlay { bad: Some((4096, 4608)), ..Overlay::default() };
        let got = [(0, 4096), (0, 4097), (4607, 1), (4608, 512), (4000, 1000), (4200, 10)]
            .map(|(o, l)| format!("{o}+{l}: {}", ov.touches_bad(o, l)));
        expect![[r#"
            0+4096: false
            0+4097: true
            4607+1: true
            4608+512: false
            4000+1000: true
            4200+10: true"#]]
        .assert_eq(&got.join("\n"));
        assert!(!Overlay::default().touches_bad(0, u64::MAX / 2));
    }
}
