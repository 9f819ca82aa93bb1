//! The explorer's pure parts on synthetic traces with known answers (issue 3): space
//! counts, materializing a state by id, and the additive image hash.

mod engine;
mod kernel;
mod results;
mod shard;

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use brink_explore::{ImageHash, count, hash_image, replay::materialize};
use brink_pmodel::{Model, StateId, Strategy};
use brink_trace::{TraceMeta, TraceWriter, WriteFlags};

const IMAGE: u64 = 64 * 4096;

/// Epoch 0: writes A@0, B@8 (sectors), mark "m1", write C@16; flush; epoch 1: D@0 (FUA), E@24.
fn trace(dir: &Path) -> PathBuf {
    let out = dir.join("t");
    let mut w = TraceWriter::create(&out).unwrap();
    File::create(w.base_image_path()).unwrap().set_len(IMAGE).unwrap();
    w.write(0, &[b'A'; 4096], WriteFlags::default()).unwrap(); // 0
    w.write(8 * 512, &[b'B'; 4096], WriteFlags::default()).unwrap(); // 1
    w.mark("m1").unwrap(); // 2
    w.write(16 * 512, &[b'C'; 1024], WriteFlags::default()).unwrap(); // 3
    w.flush().unwrap(); // 4
    w.write(0, &[b'D'; 512], WriteFlags(WriteFlags::FUA)).unwrap(); // 5
    w.write(24 * 512, &[b'E'; 512], WriteFlags::default()).unwrap(); // 6
    w.finish(TraceMeta::new("test", "ext4", IMAGE)).unwrap()
}

fn at(img: &Path, sector: u64, len: usize) -> Vec<u8> {
    let mut b = vec![0u8; len];
    File::open(img).unwrap().read_exact_at(&mut b, sector * 512).unwrap();
    b
}

#[test]
fn counts() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    // Points: before the mark (2 volatile: 4 states), epoch 0 end (3 volatile: 8),
    // epoch 1 end (1 volatile, D is FUA: 2).
    let c = count(&t, Model::WRITEBACK, Strategy::Exhaustive).unwrap();
    assert_eq!((c.epochs, c.crash_points, c.states_total.0), (2, 3, 4 + 8 + 2));
    let c = count(&t, Model::WRITEBACK, Strategy::OmitK(1)).unwrap();
    assert_eq!(c.states_total.0, 3 + 4 + 2);
}

#[test]
fn materialize_applies_durable_and_chosen_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    let img = tmp.path().join("s.img");
    // Crash before the flush (4), write 1 (B) lost: A and C persisted, marks = [m1].
    let m = materialize(&t, &"4-1".parse::<StateId>().unwrap(), &img).unwrap();
    assert_eq!(m.marks, ["m1"]);
    assert_eq!(at(&img, 0, 4096), vec![b'A'; 4096]);
    assert_eq!(at(&img, 8, 4096), vec![0; 4096]);
    assert_eq!(at(&img, 16, 1024), vec![b'C'; 1024]);
    // Epoch 1, E lost: epoch 0 is durable, the FUA write D persisted.
    std::fs::remove_file(&img).unwrap();
    materialize(&t, &"7-6".parse::<StateId>().unwrap(), &img).unwrap();
    assert_eq!(at(&img, 0, 512), vec![b'D'; 512]);
    assert_eq!(at(&img, 1, 512), vec![b'A'; 512]);
    assert_eq!(at(&img, 8, 512), vec![b'B'; 512]);
    assert_eq!(at(&img, 24, 512), vec![0; 512]);
    // Torn: keep only the first and last sector of B (mask 0x81).
    std::fs::remove_file(&img).unwrap();
    materialize(&t, &"4-1t81".parse::<StateId>().unwrap(), &img).unwrap();
    let b = at(&img, 8, 4096);
    assert_eq!(&b[..512], &[b'B'; 512][..]);
    assert_eq!(&b[512..3584], &[0u8; 3072][..]);
    assert_eq!(&b[3584..], &[b'B'; 512][..]);
}

#[test]
fn materialize_refuses_ids_that_do_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let t = trace(tmp.path());
    for (id, why) in [("7-5", "event 5"), ("7-0", "event 0"), ("4-4", "event 4"), ("99", "only 7 events")] {
        let img = tmp.path().join(format!("x{}.img", id.replace('-', "_")));
        let e = materialize(&t, &id.parse::<StateId>().unwrap(), &img).err().unwrap().to_string();
        assert!(e.contains(why), "{id}: {e}");
    }
}

#[test]
fn image_hash_is_additive_and_content_only() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let fa = File::create(&a).unwrap();
    fa.set_len(1 << 20).unwrap();
    fa.write_all_at(&[7u8; 512], 4096).unwrap();
    // b: same content, written with explicit zeros around it (no holes).
    let mut full = vec![0u8; 1 << 20];
    full[4096..4608].fill(7);
    std::fs::write(&b, &full).unwrap();
    let (ha, hb) = (hash_image(&a).unwrap(), hash_image(&b).unwrap());
    assert_eq!(ha, hb);
    // Removing the sector's term and adding another gives the hash of the changed image.
    let mut h = ha;
    h.sub(&ImageHash::sector(8, &[7u8; 512]));
    h.add(&ImageHash::sector(9, &[7u8; 512]));
    let fa = File::options().write(true).open(&a).unwrap();
    fa.write_all_at(&[0u8; 512], 4096).unwrap();
    fa.write_all_at(&[7u8; 512], 9 * 512).unwrap();
    assert_eq!(h, hash_image(&a).unwrap());
    assert_ne!(h, hb);
}
