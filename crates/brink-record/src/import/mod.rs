//! Importers of block-write logs made by other tools.

mod dmlog;

pub use dmlog::{import_dm_log_writes, DmLogImport};
