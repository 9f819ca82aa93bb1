//! Recording on every supported file system and journaling mode: the trace replays to
//! the exact final image, and marks sit exactly where the workload wrote them.

use brink_trace::{Event, TraceReader};

use crate::{Scratch, privileged, run, show_json, stderr};

/// Creates, fsyncs, renames, deletes and overwrites files, with marks in between.
const WORKLOAD: &str = r#"
set -e
for i in 1 2 3; do
  head -c 200000 /dev/urandom > f$i
  sync f$i
  echo "file $i durable" > "$BRINK_MARK"
done
mv f1 renamed
rm f2
mkdir -p dir/sub
printf 'small' > dir/sub/x
dd if=/dev/zero of=big bs=1M count=4 status=none
sync -f .
echo "all done" > "$BRINK_MARK"
"#;

fn record_and_verify(fs: &str, size: &str, mount_opts: &str) {
    if !privileged("record_and_verify") {
        return;
    }
    let s = Scratch::new();
    let trace = s.path("trace");
    let _table = (fs == "btrfs").then(|| crate::MOUNT_TABLE.lock().unwrap_or_else(|e| e.into_inner()));
    let o = run(s
        .record(&["--fs", fs, "--size", size, "--mount-opts", mount_opts, "-o"])
        .arg(&trace)
        .args(["--", "sh", "-c", WORKLOAD]));
    assert!(o.status.success(), "{fs} {mount_opts}: {}", stderr(&o));
    let o = run(crate::brink().arg("verify").arg(&trace));
    assert!(o.status.success(), "{fs} {mount_opts}: replay is not exact: {}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("gives the recorded final image"));
    let j = show_json(&trace);
    assert_eq!(j["fs"], fs);
    assert_eq!(j["mount_opts"], mount_opts);
    assert_eq!(j["workload_exit"], 0);
    assert_eq!(j["marks"], 4, "{j}");
    assert!(j["writes"].as_u64().unwrap() > 10, "{j}");
    assert!(j["flushes"].as_u64().unwrap() >= 4, "every sync is at least one flush: {j}");
    assert!(j["bytes_written"].as_u64().unwrap() >= 4 * 200_000, "{j}");
    for key in ["events", "fua", "discards", "epochs", "image_size"] {
        assert!(j[key].is_u64(), "{key} missing: {j}");
    }
    // Nothing left in the scratch TMPDIR.
    assert_eq!(std::fs::read_dir(s.tmpdir()).unwrap().count(), 0);
}

#[test]
fn exact_ext4_ordered() {
    record_and_verify("ext4", "64M", "data=ordered");
}

#[test]
fn exact_ext4_writeback() {
    record_and_verify("ext4", "64M", "data=writeback");
}

#[test]
fn exact_ext4_journal() {
    record_and_verify("ext4", "64M", "data=journal");
}

#[test]
fn exact_xfs() {
    record_and_verify("xfs", "300M", "");
}

#[test]
fn exact_btrfs() {
    record_and_verify("btrfs", "128M", "");
}

/// A mark is logged after every block request that completed before the workload wrote
/// it and before every request issued after. O_DIRECT writes reach the disk before
/// `dd` returns, so each pattern's write must sit between the neighbouring marks.
#[test]
fn marks_are_ordered_exactly_against_io() {
    if !privileged("marks_are_ordered_exactly_against_io") {
        return;
    }
    let s = Scratch::new();
    let trace = s.path("trace");
    let script = r#"
set -e
dd if=/dev/zero of=a bs=64k count=1 status=none && sync a
echo "before A" > "$BRINK_MARK"
head -c 65536 /dev/zero | tr '\0' 'A' | dd of=a bs=64k oflag=direct conv=notrunc status=none
echo "after A" > "$BRINK_MARK"
head -c 65536 /dev/zero | tr '\0' 'B' | dd of=a bs=64k oflag=direct conv=notrunc status=none
echo "after B" > "$BRINK_MARK"
"#;
    let o = run(s.record(&["--fs", "ext4", "-o"]).arg(&trace).args(["--", "sh", "-c", script]));
    assert!(o.status.success(), "{}", stderr(&o));
    let r = TraceReader::open(&trace).unwrap();
    let mut buf = Vec::new();
    let (mut marks, mut a_writes, mut b_writes) = (Vec::new(), Vec::new(), Vec::new());
    for ev in r.events().unwrap() {
        let ev = ev.unwrap();
        match &ev.event {
            Event::Mark { text } => marks.push((text.clone(), ev.index)),
            Event::Write(w) => {
                r.read_payload(w, &mut buf).unwrap();
                if buf.len() >= 4096 && buf.iter().all(|&b| b == b'A') {
                    a_writes.push(ev.index);
                }
                if buf.len() >= 4096 && buf.iter().all(|&b| b == b'B') {
                    b_writes.push(ev.index);
                }
            }
            _ => {}
        }
    }
    let names: Vec<&str> = marks.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(names, ["before A", "after A", "after B"]);
    let (before_a, after_a, after_b) = (marks[0].1, marks[1].1, marks[2].1);
    assert!(!a_writes.is_empty() && !b_writes.is_empty(), "pattern writes not found: A {a_writes:?} B {b_writes:?}");
    assert!(a_writes.iter().all(|&i| before_a < i && i < after_a), "A {a_writes:?} marks {marks:?}");
    assert!(b_writes.iter().all(|&i| after_a < i && i < after_b), "B {b_writes:?} marks {marks:?}");
}

/// --setup runs before recording: its files are in the base image, not in the events.
#[test]
fn setup_becomes_the_base_image() {
    if !privileged("setup_becomes_the_base_image") {
        return;
    }
    let s = Scratch::new();
    let trace = s.path("trace");
    let setup = "head -c 300000 /dev/zero | tr '\\0' 'S' > seed && echo ignored > \"$BRINK_MARK\"";
    let o = run(s.record(&["--setup", setup, "-o"]).arg(&trace).args(["--", "sh", "-c", "cat seed > /dev/null"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("marks written during --setup are not part of the trace"), "{}", stderr(&o));
    let base = std::fs::read(trace.join("base.img")).unwrap();
    let run_of_s = vec![b'S'; 4096];
    assert!(
        base.windows(4096).step_by(4096).any(|w| w == run_of_s.as_slice()),
        "setup data missing from the base image"
    );
    let j = show_json(&trace);
    assert_eq!(j["marks"], 0);
    assert!(j["bytes_written"].as_u64().unwrap() < 300_000, "setup writes must not be events: {j}");
}

/// Each distinct 4 KiB chunk is stored once: 4 MiB of zeros costs one chunk.
#[test]
fn payloads_are_stored_once() {
    if !privileged("payloads_are_stored_once") {
        return;
    }
    let s = Scratch::new();
    let trace = s.path("trace");
    let o = run(s.record(&["-o"]).arg(&trace).args([
        "--",
        "sh",
        "-c",
        "head -c 8388608 /dev/zero | tr '\\0' 'z' > f && sync f",
    ]));
    assert!(o.status.success(), "{}", stderr(&o));
    let j = show_json(&trace);
    let (written, stored) = (j["bytes_written"].as_u64().unwrap(), j["bytes_stored"].as_u64().unwrap());
    assert!(written >= 8 << 20, "{j}");
    assert!(stored < 1 << 20, "8 MiB of one repeated block must not be stored again and again: {j}");
}
