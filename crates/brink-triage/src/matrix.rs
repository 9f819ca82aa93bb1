//! The model matrix (issue 15): one recording explored under several persistence
//! models, and by the kernel, its vulnerabilities lined up by id. A vulnerability's id
//! depends only on its kind, the calls that caused it and the checker's message class
//! (never on the model, the state ids or the level), so the same bug has the same id in
//! every column, and a person reads which models expose it: "exposed under posix and
//! ext4-writeback; not under ext4-ordered, and not seen by the kernel in this
//! recording".
//!
//! A run that did not cover its whole space (sampled, stopped by a budget) can only say
//! "not seen": its column is marked incomplete and the sentence says so.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::{Analysis, VulnKind};

/// The runs' vulnerabilities by model. Fields may be added.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Matrix {
    pub trace: String,
    pub columns: Vec<Column>,
    pub rows: Vec<Row>,
}

/// One run: a model at the logical level, or the kernel's exploration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Column {
    /// `posix`, `ext4-ordered`; `kernel` for a block-level run.
    pub model: String,
    /// For the kernel: the file system and its options (`ext4 data=ordered`).
    pub on: String,
    pub results: String,
    /// Whether the run covered its whole space (else "not seen" is all it can say).
    pub complete: bool,
}

/// One vulnerability across the runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub id: String,
    pub kind: VulnKind,
    /// As the first run that found it tells it.
    pub sentence: String,
    /// ALICE's form, from the first logical run that found it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alice: Option<String>,
    /// Violating states per column (0: not found there).
    pub states: Vec<u64>,
    /// "exposed under posix and ext4-writeback; not under ext4-ordered, …".
    pub exposure: String,
}

impl Column {
    fn of(a: &Analysis) -> Column {
        let s = &a.summary;
        let (model, on) = if s.level.is_block() {
            ("kernel".to_string(), format!("{} {}", s.fs, s.mount_opts).trim().to_string())
        } else {
            (s.model.clone(), String::new())
        };
        Column { model, on, results: a.results.clone(), complete: s.complete && s.fraction_covered.is_none() }
    }

    fn name(&self) -> String {
        if self.on.is_empty() { self.model.clone() } else { format!("{} ({})", self.model, self.on) }
    }
}

/// Line up `runs` (analyses of one recording; logical runs first, as given).
pub fn matrix(runs: &[Analysis]) -> Matrix {
    let columns: Vec<Column> = runs.iter().map(Column::of).collect();
    let mut rows: Vec<Row> = Vec::new();
    for (c, a) in runs.iter().enumerate() {
        for v in &a.vulnerabilities {
            let at = match rows.iter().position(|r| r.id == v.id) {
                Some(i) => i,
                None => {
                    rows.push(Row {
                        id: v.id.clone(),
                        kind: v.kind,
                        sentence: v.sentence.clone(),
                        alice: None,
                        states: vec![0; runs.len()],
                        exposure: String::new(),
                    });
                    rows.len() - 1
                }
            };
            rows[at].states[c] = v.states;
            if rows[at].alice.is_none() {
                rows[at].alice = v.alice.clone();
            }
        }
    }
    for r in &mut rows {
        r.exposure = exposure(&columns, &r.states);
    }
    rows.sort_by(|a, b| {
        b.states
            .iter()
            .filter(|n| **n > 0)
            .count()
            .cmp(&a.states.iter().filter(|n| **n > 0).count())
            .then(a.id.cmp(&b.id))
    });
    Matrix { trace: runs.first().map(|a| a.trace.clone()).unwrap_or_default(), columns, rows }
}

/// Which columns expose a row, in a sentence.
fn exposure(columns: &[Column], states: &[u64]) -> String {
    let names = |f: &dyn Fn(&Column, u64) -> bool| -> Vec<String> {
        columns
            .iter()
            .zip(states)
            .filter(|(c, n)| c.model != "kernel" && f(c, **n))
            .map(|(c, _)| c.model.clone())
            .collect()
    };
    let and = |v: Vec<String>| match v.len() {
        0 => String::new(),
        1 => v[0].clone(),
        n => format!("{} and {}", v[..n - 1].join(", "), v[n - 1]),
    };
    let mut parts = Vec::new();
    let under = names(&|_, n| n > 0);
    if !under.is_empty() {
        parts.push(format!("exposed under {}", and(under)));
    }
    let not = names(&|_, n| n == 0);
    if !not.is_empty() {
        parts.push(format!("not under {}", and(not)));
    }
    for (c, n) in columns.iter().zip(states).filter(|(c, _)| c.model == "kernel") {
        let on = if c.on.is_empty() { String::new() } else { format!(" ({})", c.on) };
        parts.push(match (*n > 0, c.complete) {
            (true, _) => format!("seen by the kernel{on} in this recording"),
            (false, true) => format!("not seen by the kernel{on} in this recording"),
            (false, false) => format!("not seen by the kernel{on} in the part of this recording explored"),
        });
    }
    parts.join("; ")
}

/// The matrix for a terminal.
pub fn matrix_text(m: &Matrix) -> String {
    let mut out = String::new();
    let w = &mut out;
    let _ =
        writeln!(w, "model matrix: {} vulnerabilities across {} runs of {}", m.rows.len(), m.columns.len(), m.trace);
    let widths: Vec<usize> = m.columns.iter().map(|c| c.model.len().max(5)).collect();
    let _ = write!(w, "\n  {:<10}  {:<11}", "id", "kind");
    for (c, wd) in m.columns.iter().zip(&widths) {
        let _ = write!(w, "  {:>wd$}", c.model);
    }
    let _ = writeln!(w);
    for r in &m.rows {
        let _ = write!(w, "  {:<10}  {:<11}", r.id, r.kind.name());
        for (n, wd) in r.states.iter().zip(&widths) {
            let cell = if *n == 0 { "-".to_string() } else { n.to_string() };
            let _ = write!(w, "  {cell:>wd$}");
        }
        let _ = writeln!(w);
    }
    let _ = writeln!(w, "  (violating states per run; - : not found there)");
    for r in &m.rows {
        let _ = writeln!(w, "\n  {}  {}", r.id, r.sentence);
        if let Some(a) = &r.alice {
            let _ = writeln!(w, "    ALICE: {a}");
        }
        let _ = writeln!(w, "    {}", r.exposure);
    }
    let _ = writeln!(w);
    for c in &m.columns {
        let done = if c.complete { "" } else { ", incomplete: not found there means not seen" };
        let _ = writeln!(w, "  {}: {}{done}", c.name(), c.results);
    }
    out
}
