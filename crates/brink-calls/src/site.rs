//! Where in the program a call was made, as every report names it: a source line where
//! the program has debug info, else an object and offset. One notion, so that the lint,
//! `show --syscalls` and the vulnerabilities name a call's place, and group by it, alike.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Call;

/// Where in the program a call was made: its first frame outside the C library and the
/// loader ([`Call::user_frame`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Site {
    /// A source line, from the program's debug info.
    Source { file: PathBuf, line: u32, function: Option<String> },
    /// An object and the offset of the return address in its file, without debug info.
    Object { object: PathBuf, offset: u64, function: Option<String> },
    /// No stack was recorded (or none of it is the program's).
    Unknown,
}

impl Site {
    /// The site of `call`.
    pub fn of(call: &Call) -> Site {
        let Some(frame) = call.user_frame() else { return Site::Unknown };
        let function = frame.function.clone();
        match &frame.source {
            Some(s) => Site::Source { file: s.file.clone(), line: s.line, function },
            None => Site::Object { object: frame.object.clone(), offset: frame.offset, function },
        }
    }

    /// `file:line` (relative to `base` when under it), `object+0xoffset`, or `an unknown site`.
    pub fn show(&self, base: Option<&Path>) -> String {
        match self {
            Site::Source { file, line, .. } => format!("{}:{line}", show_path(base, file)),
            Site::Object { object, offset, .. } => format!("{}+{offset:#x}", show_path(base, object)),
            Site::Unknown => "an unknown site".into(),
        }
    }

    /// The function, if known.
    pub fn function(&self) -> Option<&str> {
        match self {
            Site::Source { function, .. } | Site::Object { function, .. } => function.as_deref(),
            Site::Unknown => None,
        }
    }

    /// The grouping key: file and line, or object and offset (the function is left out:
    /// the same line is the same mistake).
    pub fn key(&self) -> String {
        match self {
            Site::Source { file, line, .. } => format!("{}:{line}", file.display()),
            Site::Object { object, offset, .. } => format!("{}+{offset:#x}", object.display()),
            Site::Unknown => String::new(),
        }
    }
}

/// `path` for a person: relative to `base` when under it (`.` for `base` itself),
/// absolute otherwise.
pub fn show_path(base: Option<&Path>, path: &Path) -> String {
    match base.and_then(|b| path.strip_prefix(b).ok()) {
        Some(r) if r.as_os_str().is_empty() => ".".to_string(),
        Some(r) => r.display().to_string(),
        None => path.display().to_string(),
    }
}

/// Every run of ASCII digits replaced by `N`: the grouping key of paths made in a loop
/// (`log.1` and `log.2` are one place), for the lint and the vulnerabilities alike.
pub fn fold_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_digits = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('N');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}
