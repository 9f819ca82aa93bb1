//! What the tracer's tests share: a command run under the tracer in a cgroup of its own,
//! which is removed however the test ends.

use std::path::Path;
use std::process::Command;

use brink_blockdev::cgroup::{Cgroup, cgroup2_mount};
use brink_ebpf::events::{Event, read_framed};
use brink_ebpf::{Options, Stats, Tracer};

/// Removes its cgroup when dropped, by a return or a panic.
struct Scoped(Cgroup);

impl Drop for Scoped {
    fn drop(&mut self) {
        self.0.remove_tree();
    }
}

/// Run `cmd` under a tracer with `opts` in a fresh cgroup (`brink-ebpf-test-NAME-PID`),
/// the events written to `out`; the command must succeed. The tracer's counts and the
/// events, in the order written.
pub fn run_traced(name: &str, mut cmd: Command, out: &Path, opts: Options) -> (Stats, Vec<Event>) {
    let path = cgroup2_mount().expect("cgroup v2").join(format!("brink-ebpf-test-{name}-{}", std::process::id()));
    let cg = Scoped(Cgroup::create(&path).expect("cgroup"));
    let tracer = Tracer::start(cg.0.path(), out, opts).expect("tracer");
    cg.0.join_on_exec(&mut cmd).expect("join");
    let status = cmd.status().expect("the traced command");
    let stats = tracer.finish().expect("finish");
    assert!(status.success(), "{cmd:?}: {status}");
    let (events, bad) = read_framed(&std::fs::read(out).unwrap());
    assert_eq!(bad, 0, "records that do not read");
    (stats, events)
}
