//! The `brink` binary: parses flags into the library crates' configs, runs them, and
//! presents the results. Exit codes: 0 success, 1 violations found (later commands),
//! 2 usage or input error, 101 an internal error (a panic: brink's bug), 128+N when
//! stopped by signal N.

#![forbid(unsafe_code)]

mod check_model;
mod demo;
mod explore;
mod faults;
mod merge;
mod progress;
mod show;
mod suite;

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use brink_blockdev::{FsKind, MountOptions};
use brink_record::{Interrupt, RecordConfig, RecordError, import::DmLogImport};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "brink", version, about = "Find crash-consistency bugs in storage applications")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Record a command's block I/O on a real file system into a trace.
    Record(RecordArgs),
    /// Print what a trace holds (a table, or --json).
    Show {
        trace: PathBuf,
        #[arg(long)]
        json: bool,
        /// Print the summary only, not the event table.
        #[arg(long)]
        summary: bool,
        /// What the writes hold in the file system: per file, the writes and bytes
        /// (ext4; other file systems are listed as not attributed).
        #[arg(long)]
        files: bool,
        /// The workload's system calls on the recorded file system, with paths resolved,
        /// the source line of each, and marks in place.
        #[arg(long, conflicts_with = "files")]
        syscalls: bool,
    },
    /// Replay a whole trace onto its base image and compare with the recorded final image.
    Verify { trace: PathBuf },
    /// Find the known crash-consistency traps in a trace's system calls, without exploring
    /// (exit 1 if any): a rename or creation acknowledged before its directory is fsynced,
    /// data acknowledged before its file is fsynced, an acknowledgement after a failed
    /// fsync, one file open with O_DIRECT and buffered, copies and mappings not synced.
    Lint {
        trace: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Check every crash state a power cut could leave (or a bounded or sampled part).
    Explore(explore::ExploreArgs),
    /// Merge the results of the shards of one exploration (explore --shard I/N) into the
    /// results one machine would have written.
    Merge(merge::MergeArgs),
    /// Check an abstract persistence model against what the kernel recovered from the
    /// same recording: recovered states the model cannot produce (the model is wrong,
    /// exit 1), and how many of its states the kernel never produced.
    #[command(name = "check-model")]
    CheckModel(check_model::CheckModelArgs),
    /// The checker check-model runs: the logical content of the state in the working
    /// directory, as JSON.
    #[command(name = "content-listing", hide = true)]
    ContentListing {
        /// Write the listing to DIR/CONTENT.json (once per distinct content) and print
        /// only its content hash: a large state's listing exceeds what a checker's output
        /// keeps.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Record and explore one workload under ext4 data=ordered, writeback and journal.
    #[command(name = "ext4-modes")]
    Ext4Modes(explore::ModesArgs),
    /// Materialize one crash state, let the kernel recover it, and leave it mounted.
    Replay {
        trace: PathBuf,
        state: String,
        #[arg(short, long)]
        output: PathBuf,
        /// Only write the state's image (not recovered, not mounted).
        #[arg(long)]
        no_mount: bool,
    },
    /// The vulnerabilities of an exploration, then its verdict counts (--json: the
    /// summary with the vulnerabilities).
    Report {
        results: PathBuf,
        #[arg(long)]
        json: bool,
        /// Also write one self-contained HTML page (summary, vulnerabilities, the trace
        /// over time).
        #[arg(long, value_name = "FILE")]
        html: Option<PathBuf>,
        /// Also write JUnit XML: one test case per vulnerability.
        #[arg(long, value_name = "FILE")]
        junit: Option<PathBuf>,
    },
    /// Compare the vulnerabilities of two explorations of the same workload: new, fixed,
    /// unchanged. Exits 1 if a vulnerability is new.
    Diff {
        old: PathBuf,
        new: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Import a block-write log from another tool.
    Import {
        #[command(subcommand)]
        kind: ImportKind,
    },
    /// Record and explore the bundled buggy and fixed atomic-replace workloads: the bug
    /// caught, the fix clean, and how to replay the failing state.
    Demo {
        /// Where the traces and results go (must not exist; default: a new folder in
        /// the temporary directory, kept so the failing state can be replayed).
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Record and explore every workload of a folder in every mode, and compare each
    /// outcome with the one its manifest expects (exit 1 on any mismatch).
    Suite(suite::SuiteArgs),
    /// Fault injection across a workload's requests.
    Faults {
        #[command(subcommand)]
        cmd: faults::FaultsCmd,
    },
}

#[derive(clap::Args)]
struct RecordArgs {
    #[arg(long, default_value = "ext4")]
    fs: String,
    /// Extra mkfs arguments (shell-quoted).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    mkfs_opts: String,
    /// Mount options, e.g. data=ordered, data=writeback, data=journal.
    #[arg(long, default_value = "")]
    mount_opts: String,
    /// Image size: bytes, or with K, M or G (binary units).
    #[arg(long, default_value = IMAGE_SIZE_DEFAULT)]
    size: String,
    /// Shell command run in the mounted file system before recording; its result is the
    /// trace's base image.
    #[arg(long)]
    setup: Option<String>,
    /// Fail requests to the disk with EIO while recording: flush:N, write:N,
    /// sectors:A-B[@N] or file:PATH[@N] (ext4, XFS; @N: the N-th matching write), each
    /// optionally ,once (default) or ,permanent. Repeatable. The workload sees what the
    /// kernel does with the error.
    #[arg(long = "inject")]
    inject: Vec<String>,
    /// Do not record the workload's system calls (recorded by default, for `show
    /// --syscalls`, `lint` and reports in the program's terms).
    #[arg(long)]
    no_syscalls: bool,
    /// Record the system calls without their stacks: no source lines.
    #[arg(long, conflicts_with = "no_syscalls")]
    no_stacks: bool,
    /// What records the system calls: brink's own tracer in the kernel (eBPF, x86_64,
    /// about a microsecond a call), or strace (a ptrace stop per call; with stacks,
    /// about a millisecond a call).
    #[arg(long, value_enum, default_value_t = TracerArg::Kernel, conflicts_with = "no_syscalls")]
    tracer: TracerArg,
    /// Output trace directory (must not exist).
    #[arg(short, long)]
    output: PathBuf,
    /// The workload: a command and its arguments, after `--`.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Subcommand)]
enum ImportKind {
    /// A Linux dm-log-writes log, or a QEMU blklogwrites log (same format).
    #[command(name = "dm-log-writes")]
    DmLogWrites {
        log: PathBuf,
        /// The disk as it was when logging started.
        #[arg(long)]
        base: PathBuf,
        #[arg(short, long)]
        output: PathBuf,
        /// File system on the disk, if known.
        #[arg(long, default_value = "unknown")]
        fs: String,
        #[arg(long, default_value = "")]
        mount_opts: String,
    },
}

/// The image size when none is given, as the flags write it: the suite's default
/// (`brink_suite::manifest::SIZE_DEFAULT`), so a recording and a manifest agree.
const IMAGE_SIZE_DEFAULT: &str = "64M";

/// The exit status of a panic (an internal error), as Rust's own.
const PANIC_EXIT: i32 = 101;

/// How long the cleanup after a panic may take before brink exits anyway: a panic on a
/// thread nobody joins, or a guard that blocks while unwinding, must not hang brink.
const PANIC_EXIT_MAX: Duration = Duration::from_secs(10);

/// Set by the first panic, on any thread: the exit status is then [`PANIC_EXIT`] even if
/// the command itself returned (a panic on a thread it did not wait for).
static PANICKED: AtomicBool = AtomicBool::new(false);

/// A panic is brink's bug: one line naming it and where, then unwinding runs the guards
/// (unmounts, loop devices, work areas) and `main` exits [`PANIC_EXIT`]. Only the first
/// panic is printed (a scoped thread's panic is raised again by its scope). A watchdog
/// exits the process if the cleanup does not end in [`PANIC_EXIT_MAX`].
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        if PANICKED.swap(true, Ordering::SeqCst) {
            return;
        }
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .copied()
            .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
            .unwrap_or("a panic without a message")
            .replace('\n', " ");
        let at = info.location().map(|l| format!(" (at {}:{})", l.file(), l.line())).unwrap_or_default();
        eprintln!("brink: internal error: {message}{at}");
        let _ = std::thread::Builder::new().name("brink-panic-exit".into()).spawn(|| {
            std::thread::sleep(PANIC_EXIT_MAX);
            std::process::exit(PANIC_EXIT);
        });
    }));
}

/// Signals that stop a run cleanly: the first one's number goes into the flag, which
/// the commands poll (checker runs included); guards clean up; exit is 128+N. A second
/// signal (an impatient Ctrl-C) skips the grace period of the checkers still running,
/// not the cleanup: every process of brink's checker cgroup is killed at once
/// ([`hurry`]), and the unmounts and detaches proceed as usual. A third one exits at
/// once, for a brink stuck where nothing polls the flag (the kernel's own waits); what
/// it leaves mounted, the explorer's watchdog and the next run remove.
fn install_interrupt() -> Interrupt {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let interrupt = Interrupt::default();
    let flag = Arc::clone(&interrupt.0);
    // Registration only fails for forbidden signals, which these are not.
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]).expect("signal handler");
    let listener = std::thread::Builder::new().name("brink-signals".into()).spawn(move || {
        for (n, signal) in signals.forever().enumerate() {
            match n {
                0 => flag.store(signal as usize, Ordering::SeqCst),
                1 => {
                    eprintln!(
                        "brink: stopping now: checkers are killed without waiting (a third signal exits at once)"
                    );
                    hurry();
                }
                _ => std::process::exit(128 + flag.load(Ordering::SeqCst) as i32),
            }
        }
    });
    listener.expect("a thread for signals");
    interrupt
}

/// Kill every checker process brink contains (its cgroup `<cgroup2>/brink-<pid>`, see
/// `brink_check::Jail`) without their grace period. Without cgroup v2 there is nothing
/// to kill at once: the checkers get the interrupted grace period (half a second).
fn hurry() {
    let Ok(root) = brink_blockdev::cgroup::cgroup2_mount() else { return };
    let ours = root.join(format!("brink-{}", std::process::id()));
    if ours.exists() {
        let _ = brink_blockdev::cgroup::Cgroup::existing(&ours).kill();
    }
}

fn record_config(args: RecordArgs, interrupt: Interrupt) -> Result<RecordConfig> {
    let fs: FsKind = args.fs.parse().map_err(anyhow::Error::msg)?;
    let size = brink_blockdev::parse_size(&args.size).map_err(anyhow::Error::msg)?;
    let mount_opts: MountOptions = args.mount_opts.parse().context("bad --mount-opts")?;
    Ok(RecordConfig {
        fs,
        mkfs_opts: args.mkfs_opts,
        mount_opts,
        size,
        setup: args.setup,
        argv: args.command,
        output: args.output,
        interrupt,
        inject: args.inject.iter().map(|s| s.parse()).collect::<Result<_, brink_record::InjectionSpecError>>()?,
        watch: Vec::new(),
        syscalls: match (args.no_syscalls, args.no_stacks) {
            (true, _) => brink_record::Syscalls::Off,
            (false, true) => brink_record::Syscalls::Calls,
            (false, false) => brink_record::Syscalls::CallsAndStacks,
        },
        tracer: match args.tracer {
            TracerArg::Kernel => brink_record::CallTracer::Kernel,
            TracerArg::Strace => brink_record::CallTracer::Strace,
        },
    })
}

/// `--tracer`'s values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TracerArg {
    Kernel,
    Strace,
}

/// The recorder names settings in words; `brink record` users set them with flags.
fn name_flag(e: RecordError) -> anyhow::Error {
    use brink_record::Setting;
    let Some(setting) = e.setting() else { return e.into() };
    let flag = match setting {
        Setting::ImageSize => "--size",
        Setting::MkfsOptions => "--mkfs-opts",
        Setting::MountOptions => "--mount-opts",
        Setting::SetupCommand => "--setup",
        Setting::Syscalls => "pass --no-syscalls",
        _ => return e.into(),
    };
    anyhow::anyhow!("{}", e.to_string().replace(setting.words(), flag))
}

fn run(cli: Cli) -> Result<i32> {
    match cli.command {
        Cmd::Record(args) => {
            let cfg = record_config(args, install_interrupt())?;
            let out = progress::record(&cfg).map_err(name_flag)?;
            let s = &out.stats;
            eprintln!(
                "brink: recorded {} events ({} writes, {:.1} MiB; {} flushes; {} marks) into {}; workload {} after {:.2}s",
                s.events,
                s.writes,
                s.bytes_written as f64 / (1 << 20) as f64,
                s.flushes,
                s.marks,
                out.trace.display(),
                out.exit,
                out.workload_wall_ms as f64 / 1000.0
            );
            if out.ignored_marks > 0 {
                eprintln!("brink: note: {} marks written during --setup are not part of the trace", out.ignored_marks);
            }
            if !out.exit.success() {
                eprintln!(
                    "brink: warning: the workload failed ({}); its output is in the trace (brink show)",
                    out.exit
                );
            }
            Ok(0)
        }
        Cmd::Show { trace, json, summary, files, syscalls } => match syscalls {
            true => show::show_calls(&trace, json),
            false => show::show(&trace, json, summary, files),
        },
        Cmd::Verify { trace } => show::verify(&trace),
        Cmd::Lint { trace, json } => show::lint(&trace, json),
        Cmd::Import { kind: ImportKind::DmLogWrites { log, base, output, fs, mount_opts } } => {
            let req = DmLogImport { log, base, output, fs, mount_opts, interrupt: install_interrupt() };
            let s = brink_record::import::import_dm_log_writes(&req)?;
            eprintln!(
                "brink: imported {} entries (sector size {}): {} writes, {} flushes, {} discards, {} marks into {}",
                s.entries,
                s.sector_size,
                s.stats.writes,
                s.stats.flushes,
                s.stats.discards,
                s.stats.marks,
                s.trace.display()
            );
            Ok(0)
        }
        Cmd::Demo { output } => demo::demo(output, install_interrupt()),
        Cmd::Suite(args) => suite::suite(args, install_interrupt()),
        Cmd::Faults { cmd } => faults::faults(cmd, install_interrupt()),
        Cmd::Explore(args) => explore::explore(args, install_interrupt()),
        Cmd::Merge(args) => merge::merge(args),
        Cmd::CheckModel(args) => check_model::check_model(args, install_interrupt()),
        Cmd::ContentListing { out } => check_model::content_listing(out.as_deref()),
        Cmd::Ext4Modes(args) => explore::ext4_modes(args, install_interrupt()),
        Cmd::Replay { trace, state, output, no_mount } => explore::replay(&trace, &state, &output, no_mount),
        Cmd::Report { results, json, html, junit } => {
            explore::report(&results, json, html.as_deref(), junit.as_deref())
        }
        Cmd::Diff { old, new, json } => explore::diff(&old, &new, json),
    }
}

/// Write to stdout; a closed pipe (`brink show | head`) is not an error.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// Print `e` as one line; its exit status (128+N when a signal stopped the run, else 2).
fn error_code(e: &anyhow::Error) -> i32 {
    let signal = match e.downcast_ref::<RecordError>() {
        Some(RecordError::Interrupted(signal)) => Some(*signal),
        _ => e.downcast_ref::<brink_suite::RunError>().and_then(brink_suite::RunError::interrupted),
    };
    let code = signal.map_or(2, |signal| 128 + signal);
    eprintln!("brink: {}", explore::error_line(e));
    code
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        // --help and --version print to stdout and succeed.
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0);
        }
        Err(e) => {
            eprintln!("brink: {}", explore::usage_error(&e));
            std::process::exit(2);
        }
    };
    install_panic_hook();
    // Unwind safety: after a panic nothing of the run is used again; the process exits.
    let code = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(cli))) {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => error_code(&e),
        Err(_) => PANIC_EXIT,
    };
    std::process::exit(if PANICKED.load(Ordering::SeqCst) { PANIC_EXIT } else { code });
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_flags_default_image_size_is_the_suites() {
        let size = brink_blockdev::parse_size(super::IMAGE_SIZE_DEFAULT).unwrap();
        assert_eq!(size, brink_suite::manifest::SIZE_DEFAULT);
    }
}
