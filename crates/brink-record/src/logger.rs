//! The logger thread: takes events from the FUSE daemon's ordered queue, hashes and packs
//! payloads, and appends them to the trace. Keeping this off the daemon's thread lets the
//! disk answer the next request while the previous payload is hashed; the bounded queue
//! caps what waits in memory.

use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use brink_trace::{TraceError, TraceWriter, WriteFlags};

use crate::RecordError;
use crate::disk::{Log, Op, Phase};

/// Events waiting in the queue at most; each holds at most one FUSE write (1 MiB), so
/// the queue holds at most 32 MiB.
pub(crate) const QUEUE_OPS_MAX: usize = 32;

pub(crate) struct Logger {
    log: Arc<Mutex<Log>>,
    handle: Option<JoinHandle<Result<TraceWriter, TraceError>>>,
}

fn apply(writer: &mut TraceWriter, op: Op) -> Result<(), TraceError> {
    match op {
        Op::Write { offset, data } => writer.write(offset, &data, WriteFlags::default()),
        Op::Flush => writer.flush(),
        Op::Discard { offset, len } => writer.discard(offset, len),
        Op::WriteZeroes { offset, len } => writer.write_zeroes(offset, len),
        Op::Mark(text) => writer.mark(&text),
        Op::Error(failed) => writer.error(failed),
    }
}

impl Logger {
    /// Start logging: from now on the disk queues every request for `writer`.
    pub(crate) fn start(mut writer: TraceWriter, log: &Arc<Mutex<Log>>) -> Logger {
        let (tx, rx) = sync_channel::<Op>(QUEUE_OPS_MAX);
        let handle = std::thread::Builder::new()
            .name("brink-logger".into())
            .spawn(move || {
                // The daemon waits on this thread, and writeback waits on the daemon.
                crate::disk::set_io_flusher();
                for op in rx {
                    apply(&mut writer, op)?;
                }
                Ok(writer)
            })
            .expect("spawn the logger thread");
        let mut l = log.lock().expect("log lock");
        l.queue = Some(tx);
        l.phase = Phase::Recording;
        Logger { log: log.clone(), handle: Some(handle) }
    }

    /// Stop logging and hand back the writer with every queued event applied.
    pub(crate) fn stop(mut self) -> Result<TraceWriter, RecordError> {
        self.close_queue();
        let handle = self.handle.take().expect("running");
        match handle.join() {
            Ok(Ok(writer)) => Ok(writer),
            Ok(Err(e)) => Err(RecordError::Failed(format!("logging the workload's I/O failed: {e}"))),
            Err(_) => Err(RecordError::Failed("the logger thread panicked".into())),
        }
    }

    fn close_queue(&self) {
        let mut l = self.log.lock().expect("log lock");
        l.phase = Phase::Done;
        l.queue = None;
    }
}

impl Drop for Logger {
    fn drop(&mut self) {
        // On an error path: close the queue and wait, so the unfinished trace is removed
        // by its writer before the process exits.
        if let Some(h) = self.handle.take() {
            self.close_queue();
            let _ = h.join();
        }
    }
}
