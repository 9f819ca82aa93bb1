//! The ext4 metadata reader on small committed images (`tests/data`, see its README), as
//! an unprivileged user with no e2fsprogs: what each write of a trace holds, and that a
//! corrupt base image gives a clear "not attributed" or an error, never a panic.
//!
//! A trace is built here from two images: the blocks `after` changes from `base`,
//! written in the order ext4 would in `data=ordered` (file data, then a jbd2
//! transaction of the metadata, then its checkpoint in place).

use std::io::Read as _;
use std::path::{Path, PathBuf};

use brink_attrib::Attribution;
use brink_trace::{TraceMeta, TraceReader, TraceWriter, WriteFlags};
use expect_test::{Expect, expect};

const BS: u64 = 4096;
/// The journal's blocks (inode 8: journal blocks 0–9 are fs blocks 8–17, 10– are 19–).
const JOURNAL_FS_BLOCK: [u64; 11] = [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 19];
const JBD2_MAGIC: u32 = 0xC03B_3998;

fn image(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data").join(format!("{name}.img.gz"));
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(file).read_to_end(&mut out).expect("gunzip");
    out
}

/// One event of a test trace.
enum Ev {
    Write(u64, Vec<u8>),
    Flush,
}

/// A trace in a fresh temporary directory: `base` as its base image, then `events`.
fn trace(base: &[u8], fs: &str, events: &[Ev]) -> (tempfile::TempDir, TraceReader) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = tmp.path().join("trace");
    let mut w = TraceWriter::create(&dir).expect("create trace");
    std::fs::write(w.base_image_path(), base).expect("base image");
    for ev in events {
        match ev {
            Ev::Write(offset, data) => w.write(*offset, data, WriteFlags::default()).expect("write"),
            Ev::Flush => w.flush().expect("flush"),
        }
    }
    w.finish(TraceMeta::new("test", fs, base.len() as u64)).expect("finish");
    let reader = TraceReader::open(&dir).expect("open trace");
    (tmp, reader)
}

fn block(img: &[u8], b: u64) -> Vec<u8> {
    img[(b * BS) as usize..((b + 1) * BS) as usize].to_vec()
}

fn blocks(img: &[u8], first: u64, n: u64) -> Vec<u8> {
    img[(first * BS) as usize..((first + n) * BS) as usize].to_vec()
}

fn jbd2_header(kind: u32, seq: u32) -> Vec<u8> {
    let mut b = vec![0u8; BS as usize];
    b[0..4].copy_from_slice(&JBD2_MAGIC.to_be_bytes());
    b[4..8].copy_from_slice(&kind.to_be_bytes());
    b[8..12].copy_from_slice(&seq.to_be_bytes());
    b
}

/// A jbd2 descriptor block naming `targets` (the journal has no feature flags: 8-byte
/// tags, a UUID after the first).
fn descriptor(targets: &[u64]) -> Vec<u8> {
    let mut b = jbd2_header(1, 1);
    let mut pos = 12;
    for (i, &t) in targets.iter().enumerate() {
        let mut flags: u16 = if i == 0 { 0 } else { 2 };
        if i + 1 == targets.len() {
            flags |= 8;
        }
        b[pos..pos + 4].copy_from_slice(&u32::try_from(t).expect("block").to_be_bytes());
        b[pos + 6..pos + 8].copy_from_slice(&flags.to_be_bytes());
        pos += 8 + if i == 0 { 16 } else { 0 };
    }
    b
}

/// The metadata `after` changes, in journal order.
const JOURNALED: [u64; 8] = [1, 2, 3, 18, 34, 35, 1162, 1174];

/// `base` → `after` as ext4 writes it in `data=ordered`.
fn ordered_events(after: &[u8]) -> Vec<Ev> {
    let mut evs = vec![
        Ev::Write(1178 * BS, block(after, 1178)),
        Ev::Write(1179 * BS, blocks(after, 1179, 3)),
        Ev::Write(JOURNAL_FS_BLOCK[1] * BS, descriptor(&JOURNALED)),
    ];
    let copies: Vec<u8> = JOURNALED.iter().flat_map(|&b| block(after, b)).collect();
    evs.push(Ev::Write(JOURNAL_FS_BLOCK[2] * BS, copies));
    evs.push(Ev::Flush);
    evs.push(Ev::Write(JOURNAL_FS_BLOCK[10] * BS, jbd2_header(2, 1)));
    evs.push(Ev::Flush);
    // The checkpoint, in place; the superblock as the kernel writes it (1 KiB at 1 KiB).
    evs.push(Ev::Write(BS, blocks(after, 1, 3)));
    evs.push(Ev::Write(18 * BS, block(after, 18)));
    evs.push(Ev::Write(34 * BS, blocks(after, 34, 2)));
    evs.push(Ev::Write(1162 * BS, block(after, 1162)));
    evs.push(Ev::Write(1174 * BS, block(after, 1174)));
    evs.push(Ev::Write(1024, after[1024..2048].to_vec()));
    evs.push(Ev::Flush);
    evs
}

/// An attribution in words: a header, the notes, then one line per write.
fn render(a: &Attribution) -> String {
    let mut out = format!("fs {} covered {}\n", a.fs, a.covered);
    for n in &a.notes {
        out += &format!("note: {n}\n");
    }
    for w in &a.writes {
        let items: Vec<String> = w.items.iter().map(|i| format!("{} [{} B]", i.describe(), i.bytes)).collect();
        out += &format!("#{} {}+{}: {}\n", w.index, w.offset, w.len, items.join("; "));
    }
    out
}

/// `events` that lie inside an image of `len` bytes (a trace cannot write past its image).
fn inside(len: usize, events: Vec<Ev>) -> Vec<Ev> {
    events.into_iter().filter(|e| !matches!(e, Ev::Write(o, d) if *o as usize + d.len() > len)).collect()
}

fn check(base: &str, events: Vec<Ev>, expect: Expect) {
    check_image(&image(base), events, expect);
}

fn check_image(base: &[u8], events: Vec<Ev>, expect: Expect) {
    let (_tmp, reader) = trace(base, "ext4", &inside(base.len(), events));
    let a = Attribution::of_trace(&reader).expect("attribution");
    expect.assert_eq(&render(&a));
}

#[test]
fn ordered_transaction_is_attributed_by_file_and_kind() {
    let after = image("after");
    check(
        "base",
        ordered_events(&after),
        expect![[r#"
        fs ext4 covered true
        #0 4825088+4096: the data of config [4096 B]
        #1 4829184+12288: the data of newdir/file [12288 B]
        #2 36864+4096: the journal descriptor [4096 B]
        #3 40960+32768: the journal copy of the group descriptors [4096 B]; the journal copy of the block bitmap [4096 B]; the journal copy of the directory block of / (+config config→newdir) [4096 B]; the journal copy of the inode bitmap [4096 B]; the journal copy of the inode of / [1365 B]; the journal copy of the inode of newdir [1365 B]; the journal copy of the inode of data/sub/old [1365 B]; the journal copy of the inode of config [2048 B]; the journal copy of the inode of newdir/file [2048 B]; the journal copy of the directory block of newdir/ (+file) [4096 B]; the journal copy of the directory block of data/sub/ (-old) [4096 B]
        #5 77824+4096: the journal commit block [4096 B]
        #7 4096+12288: the group descriptors [4096 B]; the block bitmap [4096 B]; the directory block of / (+config config→newdir) [4096 B]
        #8 73728+4096: the inode bitmap [4096 B]
        #9 139264+8192: the inode of / [1365 B]; the inode of newdir [1365 B]; the inode of data/sub/old [1365 B]; the inode of config [2048 B]; the inode of newdir/file [2048 B]
        #10 4759552+4096: the directory block of newdir/ (+file) [4096 B]
        #11 4808704+4096: the directory block of data/sub/ (-old) [4096 B]
        #12 1024+1024: the superblock [1024 B]
    "#]],
    );
}

#[test]
fn per_file_sums_each_files_writes_and_bytes() {
    let after = image("after");
    let (_tmp, reader) = trace(&image("base"), "ext4", &ordered_events(&after));
    let a = Attribution::of_trace(&reader).expect("attribution");
    let rows: Vec<String> = a
        .per_file()
        .iter()
        .map(|r| {
            let kinds: Vec<String> = r.kinds.iter().map(|(k, b)| format!("{k} {b}")).collect();
            format!("{}: {} writes, {} B ({})", r.path, r.writes, r.bytes, kinds.join(", "))
        })
        .collect();
    expect![[r#"
        (block bitmap): 1 writes, 4096 B (block bitmap 4096)
        (group descriptors): 1 writes, 4096 B (group descriptors 4096)
        (inode bitmap): 1 writes, 4096 B (inode bitmap 4096)
        (journal commit block): 1 writes, 4096 B (journal commit block 4096)
        (journal descriptor): 1 writes, 4096 B (journal descriptor 4096)
        (journal): 1 writes, 12288 B (journal block bitmap 4096, journal group descriptors 4096, journal inode bitmap 4096)
        (superblock): 1 writes, 1024 B (superblock 1024)
        /: 3 writes, 10922 B (directory block 4096, inode 1365, journal directory block 4096, journal inode 1365)
        config: 3 writes, 8192 B (data 4096, inode 2048, journal inode 2048)
        data/sub/: 2 writes, 8192 B (directory block 4096, journal directory block 4096)
        data/sub/old: 2 writes, 2730 B (inode 1365, journal inode 1365)
        newdir: 2 writes, 2730 B (inode 1365, journal inode 1365)
        newdir/: 2 writes, 8192 B (directory block 4096, journal directory block 4096)
        newdir/file: 3 writes, 16384 B (data 12288, inode 2048, journal inode 2048)"#]].assert_eq(&rows.join("\n"));
    // Every write is found by its event index; flushes are not writes.
    assert_eq!(a.of_write(0).map(<[_]>::len), Some(1));
    assert_eq!(a.of_write(4), None);
}

#[test]
fn other_file_systems_are_not_attributed() {
    let (_tmp, reader) = trace(&image("base"), "xfs", &[Ev::Write(0, vec![1; 4096]), Ev::Flush]);
    let a = Attribution::of_trace(&reader).expect("attribution");
    expect![[r#"
        fs xfs covered false
        note: attribution covers ext4 only; xfs writes are not attributed
        #0 0+4096: the unattributed block [4096 B]
    "#]]
    .assert_eq(&render(&a));
}

#[test]
fn truncated_image_is_not_attributed() {
    check(
        "truncated",
        ordered_events(&image("after")),
        expect![[r#"
            fs ext4 covered false
            note: the file system's 2048 blocks of 4096 bytes do not fit in the base image of 147456 bytes
            #0 36864+4096: the unattributed block [4096 B]
            #1 40960+32768: the unattributed block [32768 B]
            #3 77824+4096: the unattributed block [4096 B]
            #5 4096+12288: the unattributed block [12288 B]
            #6 73728+4096: the unattributed block [4096 B]
            #7 139264+8192: the unattributed block [8192 B]
            #8 1024+1024: the unattributed block [1024 B]
        "#]],
    );
}

#[test]
fn image_truncated_in_its_superblock_is_not_attributed() {
    check(
        "truncated-superblock",
        ordered_events(&image("after")),
        expect![[r#"
        fs ext4 covered false
        note: cannot read the superblock: failed to fill whole buffer
    "#]],
    );
}

#[test]
fn image_without_the_ext4_magic_is_not_attributed() {
    check(
        "bad-magic",
        ordered_events(&image("after")),
        expect![[r#"
        fs ext4 covered false
        note: the base image holds no ext4 superblock
        #0 4825088+4096: the unattributed block [4096 B]
        #1 4829184+12288: the unattributed block [12288 B]
        #2 36864+4096: the unattributed block [4096 B]
        #3 40960+32768: the unattributed block [32768 B]
        #5 77824+4096: the unattributed block [4096 B]
        #7 4096+12288: the unattributed block [12288 B]
        #8 73728+4096: the unattributed block [4096 B]
        #9 139264+8192: the unattributed block [8192 B]
        #10 4759552+4096: the unattributed block [4096 B]
        #11 4808704+4096: the unattributed block [4096 B]
        #12 1024+1024: the unattributed block [1024 B]
    "#]],
    );
}

#[test]
fn garbage_inode_table_does_not_panic() {
    check(
        "garbage-inodes",
        ordered_events(&image("after")),
        expect![[r#"
        fs ext4 covered true
        note: the journal inode's blocks could not be read: journal writes are not placed
        #0 4825088+4096: the data of config [4096 B]
        #1 4829184+12288: the data of newdir/file [12288 B]
        #2 36864+4096: the data of inode 8 [4096 B]
        #3 40960+32768: the data of inode 8 [32768 B]
        #5 77824+4096: the data of inode 8 [4096 B]
        #7 4096+12288: the group descriptors [4096 B]; the block bitmap [4096 B]; the directory block of / (+config config→newdir) [4096 B]
        #8 73728+4096: the inode bitmap [4096 B]
        #9 139264+8192: the inode of inode 1 [256 B]; the inode of / [256 B]; the inode of inode 3 [256 B]; the inode of inode 4 [256 B]; the inode of inode 5 [256 B]; the inode of inode 6 [256 B]; the inode of inode 7 [256 B]; the inode of inode 8 [256 B]; the inode of inode 9 [256 B]; the inode of inode 10 [256 B]; the inode of lost+found [256 B]; the inode of newdir [256 B]; the inode of data [256 B]; the inode of inode 14 [256 B]; the inode of inode 15 [256 B]; the inode of inode 16 [256 B]; the inode of logs [256 B]; the inode of inode 18 [256 B]; the inode of config [256 B]; the inode of newdir/file [256 B]; the inode of inode 21 [256 B]; the inode of inode 22 [256 B]; the inode of inode 23 [256 B]; the inode of inode 24 [256 B]; the inode of inode 25 [256 B]; the inode of inode 26 [256 B]; the inode of inode 27 [256 B]; the inode of inode 28 [256 B]; the inode of inode 29 [256 B]; the inode of inode 30 [256 B]; the inode of inode 31 [256 B]; the inode of inode 32 [256 B]
        #10 4759552+4096: the directory block of newdir/ (+file) [4096 B]
        #11 4808704+4096: the directory block (-old) [4096 B]
        #12 1024+1024: the superblock [1024 B]
    "#]],
    );
}

/// `base` with `bytes` written at byte `at`.
fn poked(at: usize, bytes: &[u8]) -> Vec<u8> {
    let mut img = image("base");
    img[at..at + bytes.len()].copy_from_slice(bytes);
    img
}

/// A superblock field (at byte `field` of the superblock) set to `value`.
fn superblock_with(field: usize, value: &[u8]) -> Vec<u8> {
    poked(1024 + field, value)
}

#[test]
fn impossible_superblocks_are_not_attributed() {
    let no_writes = || vec![Ev::Flush];
    // The high half of the block count (the file system has the 64bit feature).
    check_image(
        &superblock_with(0x150, &[0xFF; 4]),
        no_writes(),
        expect![[r#"
        fs ext4 covered false
        note: the file system's 18446744069414586368 blocks of 4096 bytes do not fit in the base image of 8388608 bytes
    "#]],
    );
    // No blocks per group.
    check_image(
        &superblock_with(32, &[0; 4]),
        no_writes(),
        expect![[r#"
        fs ext4 covered false
        note: the superblock describes an impossible layout: group descriptors that do not fit in a block group
    "#]],
    );
    // An inode size of 384 bytes (not a power of two).
    check_image(
        &superblock_with(88, &384u16.to_le_bytes()),
        no_writes(),
        expect![[r#"
        fs ext4 covered false
        note: the superblock describes an impossible layout: an inode size that is not a power of two from 128 bytes to the block size
    "#]],
    );
    // The first data block past the end.
    check_image(
        &superblock_with(20, &4096u32.to_le_bytes()),
        no_writes(),
        expect![[r#"
        fs ext4 covered false
        note: the superblock describes an impossible layout: no block past the first data block
    "#]],
    );
    // Group 0's inode table (its descriptor at block 1) far past the end.
    check_image(
        &poked(4096 + 8, &[0xFF; 4]),
        no_writes(),
        expect![[r#"
        fs ext4 covered false
        note: the bitmaps or the inode table of block group 0 lie outside the file system
    "#]],
    );
}

/// An extent tree whose index block (1200, otherwise free) names itself 340 times, one
/// level too deep: followed naively it is 340^5 blocks.
#[test]
fn a_cyclic_extent_tree_is_not_followed() {
    let inode = 34 * 4096 + 11 * 256; // inode 12, config
    let mut img =
        poked(inode + 0x28, &[0x0A, 0xF3, 1, 0, 4, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB0, 4, 0, 0, 0, 0, 0, 0]);
    let mut node = vec![0x0A, 0xF3, 0x54, 1, 0x54, 1, 1, 0, 0, 0, 0, 0];
    for _ in 0..340 {
        node.extend_from_slice(&[0, 0, 0, 0, 0xB0, 4, 0, 0, 0, 0, 0, 0]);
    }
    img[1200 * 4096..1200 * 4096 + node.len()].copy_from_slice(&node);
    let events = vec![Ev::Write(1200 * 4096, block(&img, 1200)), Ev::Write(1178 * 4096, vec![7; 4096]), Ev::Flush];
    check_image(
        &img,
        events,
        expect![[r#"
        fs ext4 covered true
        #0 4915200+4096: the extent tree of config [4096 B]
        #1 4825088+4096: the unowned block [4096 B]
    "#]],
    );
}

/// config (inode 12) given a one-level extent tree whose leaf (block 1200) maps its
/// block 0 to block 1178: the leaf written before the inode, or after it, and data
/// written before either, is still config's (the leaf is not read from the base image).
#[test]
fn a_leaf_written_apart_from_its_inode_still_names_the_data() {
    let base = image("base");
    let inode = 34 * 4096 + 11 * 256;
    let mut table = block(&base, 34);
    // Root: depth 1, one index entry → leaf 1200.
    table[11 * 256 + 0x28..11 * 256 + 0x28 + 24]
        .copy_from_slice(&[0x0A, 0xF3, 1, 0, 4, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xB0, 4, 0, 0, 0, 0, 0, 0]);
    assert_eq!(inode / 4096, 34);
    let mut leaf = vec![0u8; 4096];
    leaf[..24].copy_from_slice(&[0x0A, 0xF3, 1, 0, 0x54, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x9A, 4, 0, 0]);
    let data = || Ev::Write(1178 * 4096, vec![7; 4096]);
    let inode_then_leaf = vec![data(), Ev::Write(34 * 4096, table.clone()), Ev::Write(1200 * 4096, leaf.clone())];
    let leaf_then_inode = vec![Ev::Write(1200 * 4096, leaf), data(), Ev::Write(34 * 4096, table)];
    check(
        "base",
        inode_then_leaf,
        expect![[r#"
            fs ext4 covered true
            #0 4825088+4096: the data of config [4096 B]
            #1 139264+4096: the inode of config [4096 B]
            #2 4915200+4096: the extent tree of config [4096 B]
        "#]],
    );
    check(
        "base",
        leaf_then_inode,
        expect![[r#"
            fs ext4 covered true
            #0 4915200+4096: the extent tree of config [4096 B]
            #1 4825088+4096: the data of config [4096 B]
            #2 139264+4096: the inode of config [4096 B]
        "#]],
    );
}
