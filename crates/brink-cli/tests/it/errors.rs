//! Clear errors: one line starting with `brink: `, saying what is wrong and what to do,
//! exit code 2.

use std::os::unix::process::CommandExt;

use crate::{Scratch, brink, privileged, run, stderr};

/// `o` failed with exit 2 and one `brink: ` line on stderr that contains `needle`.
pub(crate) fn one_line_error(o: &std::process::Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.starts_with("brink: "), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains(needle), "expected '{needle}' in: {err}");
}

#[test]
fn not_root() {
    if !privileged("not_root") {
        return;
    }
    let s = Scratch::new();
    std::fs::set_permissions(s.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let o = run(s.record(&["-o"]).arg(s.path("t")).args(["--", "true"]).uid(65534).gid(65534));
    one_line_error(&o, "needs root");
}

/// Run `brink ARGS` in a private mount namespace after `prepare` (shell) changed it.
fn brink_in_private_namespace(prepare: &str, args: &str) -> std::process::Output {
    let script = format!("{prepare} && exec {} {args}", env!("CARGO_BIN_EXE_brink"));
    run(std::process::Command::new("unshare").args(["--mount", "--propagation", "private", "sh", "-c", &script]))
}

/// A /dev that lacks fuse.
#[test]
fn no_dev_fuse() {
    if !privileged("no_dev_fuse") {
        return;
    }
    let s = Scratch::new();
    let o = brink_in_private_namespace(
        "mount -t tmpfs tmpfs /dev && mknod /dev/null c 1 3 && mknod /dev/loop-control c 10 237",
        &format!("record -o {} -- true", s.path("t").display()),
    );
    one_line_error(&o, "/dev/fuse");
}

/// With the sbin directories hidden, mkfs.xfs cannot be found.
#[test]
fn mkfs_missing() {
    if !privileged("mkfs_missing") {
        return;
    }
    let s = Scratch::new();
    let o = brink_in_private_namespace(
        "mount -t tmpfs tmpfs /usr/sbin && { [ -L /sbin ] || mount -t tmpfs tmpfs /sbin; } \
         && { [ ! -d /usr/local/sbin ] || mount -t tmpfs tmpfs /usr/local/sbin; } && export PATH=/usr/bin:/bin",
        &format!("record --fs xfs --size 300M -o {} -- true", s.path("t").display()),
    );
    one_line_error(&o, "mkfs.xfs not found: install xfsprogs");
}

#[test]
fn image_too_small() {
    if !privileged("image_too_small") {
        return;
    }
    let s = Scratch::new();
    let o = run(s.record(&["--fs", "xfs", "--size", "64M", "-o"]).arg(s.path("t")).args(["--", "true"]));
    one_line_error(&o, "too small for xfs");
}

#[test]
fn bad_options() {
    let s = Scratch::new();
    let o = run(s.record(&["--fs", "zfs", "-o"]).arg(s.path("t")).args(["--", "true"]));
    one_line_error(&o, "unknown file system 'zfs'");
    let o = run(s.record(&["--size", "12X", "-o"]).arg(s.path("t")).args(["--", "true"]));
    one_line_error(&o, "bad size");
    let o = run(brink().args(["record", "--bogus-flag"]));
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_mount_options() {
    if !privileged("bad_mount_options") {
        return;
    }
    let s = Scratch::new();
    let o = run(s.record(&["--mount-opts", "data=bogus", "-o"]).arg(s.path("t")).args(["--", "true"]));
    one_line_error(&o, "check --mount-opts");
    assert_eq!(std::fs::read_dir(s.tmpdir()).unwrap().count(), 0);
}

#[test]
fn output_exists() {
    if !privileged("output_exists") {
        return;
    }
    let s = Scratch::new();
    std::fs::create_dir(s.path("t")).unwrap();
    let o = run(s.record(&["-o"]).arg(s.path("t")).args(["--", "true"]));
    one_line_error(&o, "already exists");
}

#[test]
fn show_of_a_corrupt_trace() {
    let s = Scratch::new();
    let o = run(brink().arg("show").arg(s.path("nope")));
    one_line_error(&o, "not a brink trace");
}
