//! The logical level (issue 15): calls to logical ops (positions, splitting), APMs
//! (what each allows: lost renames, zeros and garbage, rename atomicity), crash states
//! (counts equal what is iterated, ids round-trip, legality) and the trees they leave.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use brink_calls::parse_bytes;
use brink_pmodel::{
    Apm, Applier, Fill, Initial, LStateId, LStrategy, LogicalInput, LogicalTrace, NodeKind, Op, Plan, WarningKind,
    logical_ops,
};

/// The calls of an strace text (`TID TIME call = result` lines).
fn trace(text: &str, initial: Vec<Initial>) -> LogicalTrace {
    let calls = parse_bytes(text.as_bytes()).expect("parses").calls;
    let input = LogicalInput {
        root: PathBuf::from("/w"),
        mark_file: PathBuf::from("/m/mark"),
        start_dir: None,
        initial,
        started_before: brink_calls::parse_bytes(text.as_bytes()).expect("parses").started_before,
    };
    logical_ops(&calls, &input)
}

fn file(path: &str, size: u64) -> Initial {
    Initial { path: PathBuf::from(path), kind: NodeKind::File, size }
}

fn names(t: &LogicalTrace) -> Vec<&'static str> {
    t.ops.iter().map(|o| o.op.name()).collect()
}

/// open tmp, write, fsync, close, rename over `file`, [fsync the directory], ack.
fn atomic_update(dir_fsync: bool) -> LogicalTrace {
    let mut text = String::from(
        "100 1.0 openat(AT_FDCWD</w>, \"file.tmp\", O_WRONLY|O_CREAT|O_TRUNC, 0644) = 3</w/file.tmp>\n\
         100 1.1 write(3</w/file.tmp>, \"new contents\", 12) = 12\n\
         100 1.2 fsync(3</w/file.tmp>) = 0\n\
         100 1.3 close(3</w/file.tmp>) = 0\n\
         100 1.4 rename(\"file.tmp\", \"file\") = 0\n",
    );
    if dir_fsync {
        text.push_str(
            "100 1.5 openat(AT_FDCWD</w>, \".\", O_RDONLY|O_DIRECTORY) = 4</w>\n\
             100 1.6 fsync(4</w>) = 0\n",
        );
    }
    text.push_str("100 1.7 write(5</m/mark>, \"done\\n\", 5) = 5\n");
    trace(&text, vec![file("file", 4)])
}

/// Every state of `plan` (exhaustive, unbounded: the plans here are small).
fn all_states(plan: &Plan) -> Vec<brink_pmodel::LState> {
    plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }).collect()
}

#[test]
fn atomic_update_becomes_alice_ops() {
    let t = atomic_update(true);
    assert_eq!(names(&t), ["creat", "append", "fsync", "rename", "fsync", "ack"]);
    let Op::Rename { replaced: Some(gone), .. } = &t.ops[3].op else { panic!("{:?}", t.ops[3]) };
    assert!(gone.last && gone.size == 4);
    assert_eq!(t.ops[3].path, Path::new("file"));
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
}

/// The rename lost after the acknowledgement: a legal state holding the ack but not the
/// rename, whose tree shows the old file.
fn rename_lost_after_ack(t: &LogicalTrace, apm: Apm) -> bool {
    let plan = Plan::new(t, apm);
    let rename = t.ops.iter().position(|o| o.op.name() == "rename").unwrap();
    let mut applier = Applier::new(t, &plan);
    all_states(&plan).iter().any(|s| {
        let lost = plan.of_op(rename).all(|m| s.end.is_none_or(|e| m > e) || s.missing.contains(&m));
        if s.marks_before == 1 && lost {
            let files = applier.tree(s).files();
            assert!(matches!(files[Path::new("file")].content[0].fill, Fill::Initial { .. }), "{files:?}");
            return true;
        }
        false
    })
}

#[test]
fn a_rename_is_lost_after_the_ack_without_the_directory_fsync_only() {
    for apm in [Apm::Posix, Apm::Ext4Ordered, Apm::Ext4Writeback, Apm::Ext4Journal, Apm::Xfs, Apm::Btrfs] {
        assert!(rename_lost_after_ack(&atomic_update(false), apm), "{apm}: the lost rename is missing");
        assert!(!rename_lost_after_ack(&atomic_update(true), apm), "{apm}: the directory fsync did not keep it");
    }
    // ALICE's omit-one finds it without exhaustion.
    let t = atomic_update(false);
    let plan = Plan::new(&t, Apm::Ext4Ordered);
    assert!(plan.states(LStrategy::OmitOne).any(|s| s.marks_before == 1 && s.id.missing.iter().any(|m| m.op == 3)));
}

fn shows(t: &LogicalTrace, apm: Apm, fill: Fill) -> bool {
    let plan = Plan::new(t, apm);
    let mut applier = Applier::new(t, &plan);
    all_states(&plan).iter().any(|s| {
        applier.tree(s).files().values().any(|f| f.kind == NodeKind::File && f.content.iter().any(|e| e.fill == fill))
    })
}

/// posix: zeros or garbage; ext4-ordered: zeros (unwritten extents, the size updated at
/// mapping); ext4-writeback: garbage; the others: neither.
#[test]
fn an_append_shows_zeros_or_garbage_as_each_model_says() {
    let t = trace(
        "100 1.0 openat(AT_FDCWD</w>, \"log\", O_WRONLY|O_APPEND) = 3</w/log>\n\
         100 1.1 write(3</w/log>, \"entry\", 5) = 5\n\
         100 1.2 write(5</m/mark>, \"1\\n\", 2) = 2\n",
        vec![file("log", 0)],
    );
    assert_eq!(names(&t), ["append", "ack"]);
    assert!(shows(&t, Apm::Posix, Fill::Zeros) && shows(&t, Apm::Posix, Fill::Garbage));
    for apm in [Apm::Ext4Journal, Apm::Xfs, Apm::Btrfs] {
        assert!(!shows(&t, apm, Fill::Zeros) && !shows(&t, apm, Fill::Garbage), "{apm}");
    }
    assert!(shows(&t, Apm::Ext4Ordered, Fill::Zeros) && !shows(&t, Apm::Ext4Ordered, Fill::Garbage));
    assert!(shows(&t, Apm::Ext4Writeback, Fill::Garbage) && !shows(&t, Apm::Ext4Writeback, Fill::Zeros));
}

#[test]
fn rename_is_atomic_in_ext4_and_not_in_posix() {
    let t = atomic_update(false);
    let both_gone_or_both = |apm: Apm| {
        let plan = Plan::new(&t, apm);
        let mut applier = Applier::new(&t, &plan);
        all_states(&plan).iter().any(|s| {
            let files = applier.tree(s).files();
            let (a, b) = (files.contains_key(Path::new("file")), files.contains_key(Path::new("file.tmp")));
            // Both names gone, or both naming the new file.
            (!a && !b) || (a && b && files[Path::new("file")].ino == files[Path::new("file.tmp")].ino)
        })
    };
    assert!(both_gone_or_both(Apm::Posix));
    for apm in [Apm::Ext4Ordered, Apm::Ext4Writeback, Apm::Ext4Journal, Apm::Xfs, Apm::Btrfs] {
        assert!(!both_gone_or_both(apm), "{apm}");
    }
}

#[test]
fn counts_equal_the_states_iterated_and_ids_round_trip() {
    let strategies = [
        LStrategy::Prefix,
        LStrategy::OmitOne,
        LStrategy::Partial,
        LStrategy::Alice,
        LStrategy::Exhaustive { max_missing: 2 },
        LStrategy::Exhaustive { max_missing: u32::MAX },
        LStrategy::Sample { samples: 50, seed: 7 },
    ];
    // A workload that made no call (its program was missing) has only the empty state.
    let traces = [atomic_update(false), atomic_update(true), trace("", Vec::new())];
    for t in &traces {
        for apm in Apm::ALL {
            let plan = Plan::new(t, apm);
            for strategy in strategies {
                let states: Vec<_> = plan.states(strategy).collect();
                assert_eq!(plan.count(strategy).0, states.len() as u128, "{apm} {strategy:?}");
                let mut seen = BTreeSet::new();
                for s in &states {
                    let text = s.id.to_string();
                    let parsed: LStateId = text.parse().unwrap();
                    assert_eq!(parsed, s.id);
                    assert_eq!(plan.state(&parsed).as_ref(), Some(s), "{apm} {text} is legal and the same");
                    let fresh = seen.insert(text.clone());
                    assert!(fresh || matches!(strategy, LStrategy::Sample { .. }), "{apm} {strategy:?} repeats {text}");
                }
            }
            // Alice's three phases are disjoint; exhaustive without bound holds every one.
            let alice: BTreeSet<_> = plan.states(LStrategy::Alice).map(|s| s.id).collect();
            assert_eq!(alice.len() as u128, plan.count(LStrategy::Alice).0);
            let all: BTreeSet<_> = all_states(&plan).into_iter().map(|s| s.id).collect();
            assert!(alice.is_subset(&all), "{apm}");
        }
    }
    // Sampling is deterministic.
    let plan = Plan::new(&atomic_update(false), Apm::Posix);
    let a: Vec<_> = plan.states(LStrategy::Sample { samples: 20, seed: 3 }).map(|s| s.id).collect();
    let b: Vec<_> = plan.states(LStrategy::Sample { samples: 20, seed: 3 }).map(|s| s.id).collect();
    assert_eq!(a, b);
}

#[test]
fn ext4_journal_keeps_a_prefix_of_micro_ops() {
    let t = atomic_update(false);
    let plan = Plan::new(&t, Apm::Ext4Journal);
    for s in all_states(&plan) {
        // Acknowledgements are not in the journal: the rest persists as a prefix.
        let kept: Vec<bool> = (0..plan.micro.len() as u32)
            .filter(|&m| !matches!(plan.micro[m as usize].micro, brink_pmodel::Micro::Ack(_)))
            .map(|m| s.end.is_some_and(|e| m <= e) && !s.missing.contains(&m))
            .collect();
        assert!(kept.windows(2).all(|w| w[0] || !w[1]), "{}", s.id);
    }
}

#[test]
fn ids_parse_and_reject() {
    for ok in ["L", "L0.0", "L7.2", "L9.0-3.0-3.1", "L12.3-12.1"] {
        assert_eq!(ok.parse::<LStateId>().unwrap().to_string(), ok);
    }
    for bad in ["", "7.2", "L7", "L7.2-", "L7.2-9.0", "L7.2-3.1-3.0", "L7.2-3.1-3.1", "Lx.1", "L1.2.3", "L-1.0"] {
        assert!(bad.parse::<LStateId>().is_err(), "{bad}");
    }
}

#[test]
fn file_positions_follow_seeks_reads_dups_forks_and_appends() {
    let t = trace(
        "100 1.0 openat(AT_FDCWD</w>, \"f\", O_RDWR|O_CREAT, 0644) = 3</w/f>\n\
         100 1.1 write(3</w/f>, \"abcdef\", 6) = 6\n\
         100 1.2 lseek(3</w/f>, 1, SEEK_SET) = 1\n\
         100 1.3 write(3</w/f>, \"X\", 1) = 1\n\
         100 1.4 read(0x3, 0x7ffe0000, 0x2) = 0x2\n\
         100 1.5 dup(3</w/f>) = 4</w/f>\n\
         100 1.6 write(4</w/f>, \"yz\", 2) = 2\n\
         100 1.7 write(4</w/f>, \"12\", 2) = 2\n\
         100 1.8 clone(child_stack=NULL, flags=SIGCHLD) = 200\n\
         200 1.9 write(3</w/f>, \"Q\", 1) = 1\n\
         100 2.0 openat(AT_FDCWD</w>, \"old\", O_WRONLY|O_APPEND) = 5</w/old>\n\
         100 2.1 pwrite64(5</w/old>, \"tail\", 4, 0) = 4\n\
         100 2.2 pwrite64(3</w/f>, \"P\", 1, 20) = 1\n\
         100 2.3 write(7</w/inherited>, \"?\", 1) = 1\n",
        vec![file("old", 10)],
    );
    let ops: Vec<(&str, u64, u64)> = t
        .ops
        .iter()
        .filter_map(|o| match o.op {
            Op::Append { offset, len, .. } => Some(("append", offset, len)),
            Op::Overwrite { offset, len, .. } => Some(("overwrite", offset, len)),
            Op::Trunc { from, to, .. } => Some(("trunc", from, to)),
            _ => None,
        })
        .collect();
    let want = [
        ("append", 0, 6),
        ("overwrite", 1, 1),
        ("overwrite", 4, 2),
        ("append", 6, 2),
        ("append", 8, 1),
        ("append", 10, 4),
        ("trunc", 9, 20),
        ("append", 20, 1),
        ("append", 0, 1),
    ];
    assert_eq!(ops, want);
    assert_eq!(
        t.warnings.iter().map(|w| w.kind).collect::<Vec<_>>(),
        [WarningKind::NotListed, WarningKind::OffsetUnknown]
    );
}

#[test]
fn trees_show_data_from_the_calls() {
    let t = atomic_update(true);
    let plan = Plan::new(&t, Apm::Ext4Ordered);
    let last = plan.states(LStrategy::Prefix).last().unwrap();
    let files = Applier::new(&t, &plan).tree(&last).files();
    let f = &files[Path::new("file")];
    assert_eq!((f.size, f.content.len()), (12, 1));
    let seq = t.ops[1].seq;
    assert_eq!(f.content[0].fill, Fill::Data { seq, at: 0 });
    assert!(!files.contains_key(Path::new("file.tmp")));
}

const ATOMIC_UPDATE_C: &str = r#"#include <fcntl.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int fd = open("file.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "new contents", 12);
    fsync(fd);
    close(fd);
    rename("file.tmp", "file");
    int log = open("log", O_RDWR | O_APPEND);
    char buf[4];
    read(log, buf, 4);
    write(log, "more", 4);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    fsync(dir);
    int mark = open(argv[1], O_WRONLY | O_APPEND);
    write(mark, "done\n", 5);
    return 0;
}
"#;

/// The atomic update (plus an append after a read) run under strace: the ops the
/// front end reads from a real trace.
#[test]
fn a_real_strace_run_gives_the_alice_ops() {
    let test = "a_real_strace_run_gives_the_alice_ops";
    let needs = [brink_testkit::Need::Program("strace"), brink_testkit::Need::Program("gcc")];
    if !brink_testkit::can_run(test, &needs) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (root, bin, mark, out) =
        (dir.path().join("fs"), dir.path().join("prog"), dir.path().join("mark"), dir.path().join("trace"));
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("file"), "old\n").unwrap();
    std::fs::write(root.join("log"), "0123456789").unwrap();
    std::fs::write(&mark, "").unwrap();
    std::fs::write(dir.path().join("prog.c"), ATOMIC_UPDATE_C).unwrap();
    let gcc = std::process::Command::new("gcc").arg("-o").arg(&bin).arg(dir.path().join("prog.c")).status();
    assert!(gcc.unwrap().success());
    let opts = brink_calls::TraceOptions { stacks: false, ..Default::default() };
    let workload = [bin.into_os_string(), mark.clone().into_os_string()];
    let status = brink_calls::strace_command(&workload, &out, &opts).unwrap().current_dir(&root).status();
    assert!(status.unwrap().success());
    let calls = brink_calls::parse_file(&out).unwrap().calls;
    let input = LogicalInput {
        root: root.clone(),
        mark_file: mark,
        start_dir: Some(root),
        initial: vec![file("file", 4), file("log", 10)],
        started_before: Vec::new(),
    };
    let t = logical_ops(&calls, &input);
    assert_eq!(names(&t), ["creat", "append", "fsync", "rename", "append", "fsync", "ack"], "{:?}", t.ops);
    assert!(matches!(t.ops[4].op, Op::Append { offset: 10, len: 4, offset_known: true, .. }), "{:?}", t.ops[4]);
    assert!(t.warnings.is_empty(), "{:?}", t.warnings);
    assert!(!rename_lost_after_ack(&t, Apm::Posix));
}

/// A sync of another thread that completed while the acknowledgement's call was in
/// progress comes after the acknowledgement: the mark may reach the disk first (the
/// kernel did so for LevelDB's MANIFEST fsync), so a state with the acknowledgement and
/// without the synced append is one the model allows. In completion order it is not.
#[test]
fn a_sync_inside_an_acknowledgements_call_does_not_hold_it_back() {
    let overlapping = "100 1.0 openat(AT_FDCWD</w>, \"log\", O_WRONLY|O_CREAT|O_APPEND, 0644) = 3</w/log>\n\
                       200 1.1 write(5</m/mark>, \"done\\n\", 5 <unfinished ...>\n\
                       100 1.2 write(3</w/log>, \"abc\", 3) = 3\n\
                       100 1.3 fsync(3</w/log>) = 0\n\
                       200 1.4 <... write resumed>) = 5\n";
    let t = trace(overlapping, Vec::new());
    assert_eq!(names(&t), ["creat", "append", "ack", "fsync"]);
    let plan = Plan::new(&t, Apm::Ext4Ordered);
    let ack_without_append: LStateId = "L2.0-1.0-1.1".parse().unwrap();
    assert!(plan.state(&ack_without_append).is_some(), "{:?}", plan.micro);
    // One after the other, the fsync holds the acknowledgement back.
    let sequential = "100 1.0 openat(AT_FDCWD</w>, \"log\", O_WRONLY|O_CREAT|O_APPEND, 0644) = 3</w/log>\n\
                      100 1.2 write(3</w/log>, \"abc\", 3) = 3\n\
                      100 1.3 fsync(3</w/log>) = 0\n\
                      200 1.4 write(5</m/mark>, \"done\\n\", 5) = 5\n";
    let t = trace(sequential, Vec::new());
    assert_eq!(names(&t), ["creat", "append", "fsync", "ack"]);
    let plan = Plan::new(&t, Apm::Ext4Ordered);
    let states: Vec<_> = plan.states(LStrategy::Exhaustive { max_missing: u32::MAX }).collect();
    let acked = |s: &&brink_pmodel::LState| s.marks_before == 1;
    assert!(states.iter().filter(acked).all(|s| s.missing.is_empty()), "the ack needs the synced append");
}

/// Every state of each file system's model of an atomic update (with and without the
/// directory fsync) translates into a legal posix state with the same acknowledgements
/// and the same files: the witness check-model uses where posix's space is too large.
#[test]
fn every_models_states_translate_into_posix_states_with_the_same_files() {
    for t in [atomic_update(true), atomic_update(false)] {
        let weak = Plan::new(&t, Apm::Posix);
        for apm in Apm::ALL {
            let strong = Plan::new(&t, apm);
            let (mut a, mut b) = (brink_pmodel::Applier::new(&t, &strong), brink_pmodel::Applier::new(&t, &weak));
            for s in all_states(&strong) {
                let w = weak.translate(&strong, &s).unwrap_or_else(|| panic!("{apm} {}: no posix state", s.id));
                assert_eq!(w.marks_before, s.marks_before, "{apm} {}", s.id);
                assert_eq!(a.tree(&s).files(), b.tree(&w).files(), "{apm} {} as {}", s.id, w.id);
            }
        }
    }
}

/// fsync-retry's pattern: an overwrite, an fsync that fails with EIO, a retried fsync
/// that succeeds, an acknowledgement. Every model allows the acknowledged state without
/// the overwrite (the kernel dropped it at the failure); with the first fsync
/// succeeding, none does.
#[test]
fn writes_pending_at_a_failed_fsync_may_be_lost_after_a_later_one_succeeds() {
    let calls = |first: &str| {
        format!(
            "100 1.0 openat(AT_FDCWD</w>, \"data\", O_WRONLY) = 3</w/data>\n\
             100 1.1 pwrite64(3</w/data>, \"new!\", 4, 0) = 4\n\
             100 1.2 fsync(3</w/data>) = {first}\n\
             100 1.3 fsync(3</w/data>) = 0\n\
             100 1.4 write(5</m/mark>, \"data v1\\n\", 8) = 8\n"
        )
    };
    let failed = trace(&calls("-1 EIO (Input/output error)"), vec![file("data", 4)]);
    assert_eq!(names(&failed), ["overwrite", "failed-fsync", "fsync", "ack"]);
    let ok = trace(&calls("0"), vec![file("data", 4)]);
    let lost = |t: &LogicalTrace, apm: Apm| {
        let plan = Plan::new(t, apm);
        all_states(&plan).iter().any(|s| s.marks_before == 1 && plan.of_op(0).all(|m| !s.holds(m)))
    };
    for apm in Apm::ALL {
        assert!(lost(&failed, apm), "{apm}: the write dropped at the failed fsync is kept");
        assert!(!lost(&ok, apm), "{apm}: an fsynced write is lost");
    }
}

/// ALICE's partial states, made one at a time, are exactly its definition: per op of two
/// micro-ops or more (no barrier), each proper prefix, then each prefix less one earlier
/// micro-op of the op that no later one of the prefix depends on; in that order.
#[test]
fn partial_states_are_each_prefix_then_each_prefix_less_one() {
    for apm in Apm::ALL {
        let t = atomic_update(false);
        let plan = Plan::new(&t, apm);
        let mut want = Vec::new();
        for i in 0..plan.ops() {
            let r = plan.of_op(i);
            let n = r.len() as u32;
            if n < 2 || r.clone().any(|m| plan.micro[m as usize].is_barrier()) {
                continue;
            }
            want.extend((1..n).map(|p| plan.id_of(Some(r.start + p - 1), &[])));
            for p in 2..=n {
                for k in 0..p - 1 {
                    let gone = r.start + k;
                    if (gone + 1..r.start + p).all(|m| !plan.micro[m as usize].deps.contains(&gone)) {
                        want.push(plan.id_of(Some(r.start + p - 1), &[gone]));
                    }
                }
            }
        }
        let got: Vec<LStateId> = plan.states(LStrategy::Partial).map(|s| s.id).collect();
        assert_eq!(got, want, "{apm}");
        assert!(apm != Apm::Posix || got.len() > 5, "{got:?}");
    }
}

/// A file mapped shared and writable is named as one whose bytes no model knows (stores
/// through the mapping are no calls); a private or read-only mapping is not.
#[test]
fn a_file_mapped_shared_and_writable_has_unseen_stores() {
    let t = trace(
        "100 1.0 openat(AT_FDCWD</w>, \"shm\", O_RDWR|O_CREAT, 0644) = 3</w/shm>\n\
         100 1.1 openat(AT_FDCWD</w>, \"ro\", O_RDONLY) = 4</w/ro>\n\
         100 1.2 mmap(NULL, 4096, PROT_READ|PROT_WRITE, MAP_SHARED, 3</w/shm>, 0) = 0x7fe52dd53000\n\
         100 1.3 mmap(NULL, 4096, PROT_READ, MAP_SHARED, 4</w/ro>, 0) = 0x7fe52dd54000\n",
        vec![file("ro", 4)],
    );
    assert_eq!(t.unseen_stores.len(), 1, "{:?}", t.unseen_stores);
    let shm = t.ops.iter().find_map(|o| match &o.op {
        Op::Creat { ino, .. } => Some(*ino),
        _ => None,
    });
    assert_eq!(t.unseen_stores.iter().next().copied(), shm);
}
