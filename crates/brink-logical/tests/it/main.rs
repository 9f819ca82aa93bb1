//! The logical explorer's tests (issue 15): a trace built from strace-format calls over a
//! small ext4 base image made without root (`mkfs.ext4 -d`), explored under APMs with
//! shell checkers: verdicts, dedup, determinism at any `--jobs`, checkers that modify
//! their state, resume, and nothing left behind.

mod explore;
