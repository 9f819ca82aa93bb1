//! A description of the machine a suite ran on, for `suite.md`: results about crash
//! behaviour depend on the kernel and on the versions of the tools that recover and
//! check the states, so a table without them cannot be compared with another.

use std::process::Command;

fn first_line(s: &str) -> String {
    s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("").to_string()
}

/// The first line a program prints for `args` (stdout, else stderr), or "not found".
fn version(prog: &str, args: &[&str]) -> String {
    match Command::new(prog).args(args).output() {
        Ok(o) => {
            let out = first_line(&String::from_utf8_lossy(&o.stdout));
            if out.is_empty() { first_line(&String::from_utf8_lossy(&o.stderr)) } else { out }
        }
        Err(_) => "not found".into(),
    }
}

/// Markdown bullet lines: kernel, CPU, memory, and the versions of the tools involved.
pub fn describe_machine(brink_version: &str) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:").and_then(|r| r.split_whitespace().next()?.parse().ok()))
        .unwrap_or(0);
    let kernel = first_line(&read("/proc/sys/kernel/osrelease"));
    let tools = [
        ("sqlite3", version("sqlite3", &["--version"])),
        ("e2fsprogs", version("mke2fs", &["-V"])),
        ("xfsprogs", version("mkfs.xfs", &["-V"])),
        ("btrfs-progs", version("mkfs.btrfs", &["--version"])),
    ];
    let mut out = format!(
        "- brink {brink_version}\n- Linux {kernel}, {cpus} CPUs ({cpu}), {:.1} GiB memory\n",
        mem_kib as f64 / (1 << 20) as f64
    );
    for (name, v) in tools {
        out.push_str(&format!("- {name}: {v}\n"));
    }
    out
}
