//! One C program per lint, with the mistake and (`-DFIXED`) without it; the atomic
//! replace with and without the directory's fsync; a loop making one mistake 20 times.
//! Each asserts the finding's kind and the exact source line of the offending call
//! (the line holding its `OFFENDING` comment), and that the fixed program has no finding.

use brink_lint::LintKind;

use crate::{Run, can_run, line_of, run, source};

/// Runs `body` unfixed and fixed: the unfixed has exactly one finding, of `kind`, at
/// the `OFFENDING` line, made `count` times; the fixed has none. The unfixed run, if
/// the machine could run it.
fn mistake_and_fix(test: &str, kind: LintKind, body: &str, strace_extra: &[&str], count: u64) -> Option<Run> {
    if !can_run(test) {
        return None;
    }
    let source = source(body);
    let line = line_of(&source, "OFFENDING");
    let broken = run(&source, false, strace_extra);
    assert!(!broken.marks.is_empty(), "the program acknowledged nothing");
    let finding = broken.one_at(kind, line);
    assert_eq!(finding.count, count, "{}", broken.report());
    assert!(finding.first_ack.is_some(), "{finding:?}");
    assert_eq!(broken.findings.len(), 1, "{}", broken.report());
    eprintln!("{test}: {}", broken.report());
    let fixed = run(&source, true, strace_extra);
    assert!(fixed.findings.is_empty(), "the fixed program:\n{}", fixed.report());
    Some(broken)
}

const ATOMIC_REPLACE: &str = r#"
int main(void) {
    int fd = open("file.tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
    write(fd, "new contents\n", 13);
    fsync(fd);
    close(fd);
    rename("file.tmp", "file"); /* OFFENDING */
#ifdef FIXED
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    fsync(dir);
    close(dir);
#endif
    ack("done");
    return 0;
}
"#;

#[test]
fn atomic_replace_without_the_directory_fsync_is_one_finding() {
    let test = "atomic_replace_without_the_directory_fsync_is_one_finding";
    let Some(broken) = mistake_and_fix(test, LintKind::RenameWithoutDirFsync, ATOMIC_REPLACE, &[], 1) else {
        return;
    };
    let finding = &broken.findings[0];
    assert_eq!(finding.path, "file");
    assert_eq!(finding.calls[0].name, "rename");
    assert_eq!(finding.first_ack.as_ref().unwrap().mark, "done");
    let line = line_of(&source(ATOMIC_REPLACE), "OFFENDING");
    let want = format!(
        "rename(file.tmp → file) at {}:{line} was acknowledged ('done') before its directory ./ was fsynced: a power cut in between can lose it",
        broken.source_file.display()
    );
    assert_eq!(finding.message, want);
    let json = serde_json::to_value(finding).unwrap();
    assert_eq!(json["kind"], "rename-without-dir-fsync");
    assert_eq!(json["site"]["source"]["line"], line);
}

#[test]
fn data_not_fsynced_before_its_acknowledgement() {
    let body = r#"
int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("data", O_WRONLY | O_CREAT, 0644);
    fsync(dir);
    pwrite(fd, "record 1\n", 9, 0); /* OFFENDING */
#ifdef FIXED
    int again = open("data", O_RDONLY);
    fdatasync(again);
#else
    sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER);
#endif
    ack("commit 1");
    return 0;
}
"#;
    let _ = mistake_and_fix("data_not_fsynced_before_its_acknowledgement", LintKind::DataWithoutFsync, body, &[], 1);
}

#[test]
fn acknowledged_after_a_failed_fsync_that_a_retry_hid() {
    let body = r#"
int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("wal", O_WRONLY | O_CREAT, 0644);
    fdatasync(dir);
    pwrite(fd, "entry\n", 6, 0);
    if (fsync(fd) != 0) { /* OFFENDING */
#ifdef FIXED
        pwrite(fd, "entry\n", 6, 0);
#endif
        if (fsync(fd) != 0)
            return 1;
    }
    ack("entry 1");
    return 0;
}
"#;
    let inject = ["-e", "inject=fsync:error=EIO:when=1"];
    let test = "acknowledged_after_a_failed_fsync_that_a_retry_hid";
    let _ = mistake_and_fix(test, LintKind::AckAfterFailedFsync, body, &inject, 1);
}

#[test]
fn one_file_written_direct_and_buffered_at_once() {
    let body = r#"
int main(void) {
    void *block;
    if (posix_memalign(&block, 4096, 4096) != 0)
        return 1;
    memset(block, 'x', 4096);
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("db", O_RDWR | O_CREAT, 0644);
    fsync(dir);
    pwrite(fd, "header\n", 7, 0);
    fsync(fd);
#ifdef FIXED
    close(fd);
#endif
    int direct = open("db", O_RDWR | O_DIRECT);
#ifdef FIXED
    pwrite(direct, block, 4096, 4096);
#else
    pwrite(direct, block, 4096, 4096); /* OFFENDING */
#endif
    fsync(direct);
    ack("written");
    return 0;
}
"#;
    let _ = mistake_and_fix("one_file_written_direct_and_buffered_at_once", LintKind::DirectAndBuffered, body, &[], 1);
}

#[test]
fn copied_data_not_fsynced_before_its_acknowledgement() {
    let body = r#"
int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int src = open("src", O_RDWR | O_CREAT, 0644);
    int dst = open("dst", O_WRONLY | O_CREAT, 0644);
    write(src, "some data\n", 10);
    fsync(src);
    fsync(dir);
    if (copy_file_range(src, &(off_t){0}, dst, NULL, 10, 0) != 10) /* OFFENDING */
        return 1;
#ifdef FIXED
    fsync(dst);
#endif
    ack("copied");
    return 0;
}
"#;
    let _ =
        mistake_and_fix("copied_data_not_fsynced_before_its_acknowledgement", LintKind::CopyWithoutFsync, body, &[], 1);
}

#[test]
fn stores_through_a_shared_mapping_not_msynced() {
    let body = r#"
int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("map", O_RDWR | O_CREAT, 0644);
    ftruncate(fd, 4096);
    fsync(fd);
    fsync(dir);
    char *p = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0); /* OFFENDING */
    if (p == MAP_FAILED)
        return 1;
    memcpy(p, "hello", 5);
#ifdef FIXED
    msync(p, 4096, MS_SYNC);
#else
    msync(p, 4096, MS_ASYNC);
#endif
    ack("stored");
    return 0;
}
"#;
    let _ = mistake_and_fix("stores_through_a_shared_mapping_not_msynced", LintKind::MmapWithoutMsync, body, &[], 1);
}

#[test]
fn a_mistake_repeated_in_a_loop_is_one_finding() {
    let test = "a_mistake_repeated_in_a_loop_is_one_finding";
    let body = r#"
int main(void) {
    for (int i = 0; i < 20; i++) {
        char name[32], text[32];
        snprintf(name, sizeof name, "seg.%d", i);
        int fd = open(name, O_WRONLY | O_CREAT | O_EXCL, 0644); /* OFFENDING */
        write(fd, "x", 1);
        fsync(fd);
        close(fd);
#ifdef FIXED
        int dir = open(".", O_RDONLY | O_DIRECTORY);
        fsync(dir);
        close(dir);
#endif
        snprintf(text, sizeof text, "segment %d", i);
        ack(text);
    }
    return 0;
}
"#;
    let Some(broken) = mistake_and_fix(test, LintKind::RenameWithoutDirFsync, body, &[], 20) else { return };
    let finding = &broken.findings[0];
    assert_eq!(finding.path, "seg.0");
    assert_eq!(finding.first_ack.as_ref().unwrap().mark, "segment 0");
    assert_eq!(finding.last_ack.as_ref().unwrap().mark, "segment 19");
}

#[test]
fn a_forked_child_writes_through_an_inherited_descriptor() {
    let body = r#"
int main(void) {
    int dir = open(".", O_RDONLY | O_DIRECTORY);
    int fd = open("log", O_WRONLY | O_CREAT | O_APPEND, 0644);
    fsync(dir);
    pid_t child = fork();
    if (child == 0) {
        int copy = dup(fd);
        close(fd);
        write(copy, "from the child\n", 15); /* OFFENDING */
        _exit(0);
    }
    waitpid(child, NULL, 0);
#ifdef FIXED
    fsync(fd);
#endif
    ack("logged");
    return 0;
}
"#;
    let test = "a_forked_child_writes_through_an_inherited_descriptor";
    let _ = mistake_and_fix(test, LintKind::DataWithoutFsync, body, &[], 1);
}
