//! A checker's output, read through a pipe by a thread that keeps its first
//! `OUTPUT_BYTES_MAX` bytes and its last `OUTPUT_TAIL_BYTES_MAX` bytes and counts the
//! rest. Nothing goes to disk: a flooding checker (5 GB in 15 s was seen) cannot fill the
//! results file system, and a full disk cannot change what brink reads back. The head
//! holds a violation's message (the first stdout line); the tail holds the details
//! object (the last stdout line) and the reason a checker failed (the last stderr line).
//!
//! The pipe is drained to its end, never left full: a checker blocked on a full pipe
//! would turn a violation into a timeout.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{OUTPUT_BYTES_MAX, OUTPUT_TAIL_BYTES_MAX};

/// What is kept of one output stream.
#[derive(Debug, Default)]
struct HeadTail {
    head: Vec<u8>,
    tail: VecDeque<u8>,
    /// Bytes read but kept in neither part.
    omitted: u64,
    error: Option<std::io::Error>,
}

impl HeadTail {
    fn push(&mut self, mut buf: &[u8]) {
        let room = (OUTPUT_BYTES_MAX as usize).saturating_sub(self.head.len());
        let n = room.min(buf.len());
        self.head.extend_from_slice(&buf[..n]);
        buf = &buf[n..];
        let tail_max = OUTPUT_TAIL_BYTES_MAX as usize;
        if buf.len() > tail_max {
            self.omitted += (buf.len() - tail_max) as u64;
            buf = &buf[buf.len() - tail_max..];
        }
        let excess = (self.tail.len() + buf.len()).saturating_sub(tail_max);
        self.omitted += excess as u64;
        self.tail.drain(..excess);
        self.tail.extend(buf);
    }

    fn text(&self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.omitted > 0 {
            text.push_str(&format!("\n[brink: {} bytes omitted]\n", self.omitted));
        }
        let (a, b) = self.tail.as_slices();
        text.push_str(&String::from_utf8_lossy(&[a, b].concat()));
        text
    }
}

/// One stream being read.
pub(crate) struct Reader {
    kept: Arc<Mutex<HeadTail>>,
    done: Receiver<()>,
}

/// What was read of one stream.
pub(crate) struct Captured {
    pub text: String,
    pub omitted: u64,
}

impl Reader {
    /// Start a thread that reads `pipe` to its end.
    pub fn spawn(mut pipe: impl Read + Send + 'static) -> std::io::Result<Reader> {
        let kept = Arc::new(Mutex::new(HeadTail::default()));
        let (tx, done) = mpsc::channel();
        let shared = Arc::clone(&kept);
        std::thread::Builder::new().name("brink-check-read".into()).spawn(move || {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => shared.lock().unwrap_or_else(PoisonError::into_inner).push(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        shared.lock().unwrap_or_else(PoisonError::into_inner).error = Some(e);
                        break;
                    }
                }
            }
            let _ = tx.send(());
        })?;
        Ok(Reader { kept, done })
    }

    /// Wait up to `wait` for the end of the stream, then take what was read (a process
    /// that was not stopped may hold the pipe open; what it writes later is not read).
    /// A read error is returned: output brink failed to read must not become a verdict.
    pub fn finish(self, wait: Duration) -> std::io::Result<Captured> {
        let _ = self.done.recv_timeout(wait);
        let mut kept = self.kept.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(e) = kept.error.take() {
            return Err(e);
        }
        Ok(Captured { text: kept.text(), omitted: kept.omitted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_and_tail_are_kept_and_the_middle_counted() {
        let mut k = HeadTail::default();
        k.push(b"first line\n");
        let filler = vec![b'x'; (OUTPUT_BYTES_MAX + 3 * OUTPUT_TAIL_BYTES_MAX) as usize];
        k.push(&filler);
        k.push(b"\n{\"last\": 1}\n");
        let total = 11 + filler.len() as u64 + 13;
        assert_eq!(k.head.len() as u64 + k.tail.len() as u64 + k.omitted, total);
        assert_eq!(k.tail.len() as u64, OUTPUT_TAIL_BYTES_MAX);
        let text = k.text();
        assert!(text.starts_with("first line\n"));
        assert!(text.ends_with("\n{\"last\": 1}\n"));
        assert!(text.contains(&format!("[brink: {} bytes omitted]", k.omitted)));
    }

    #[test]
    fn short_output_is_kept_whole() {
        let mut k = HeadTail::default();
        k.push(b"a\n");
        k.push(b"b\n");
        assert_eq!((k.text().as_str(), k.omitted), ("a\nb\n", 0));
    }
}
