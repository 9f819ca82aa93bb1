//! Importers of block-write logs made by other tools.

mod dmlog;

pub use dmlog::{DmLogImport, import_dm_log_writes};
