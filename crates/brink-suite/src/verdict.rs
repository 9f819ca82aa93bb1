//! How the suite spells its verdicts. Each kind of verdict is one type that owns its
//! words, in both directions (`Display` and `FromStr`, and serde through them), so a
//! manifest, `suite.json` and the tables cannot drift apart:
//! - [`Expect`]: what a manifest expects of a mode (`clean`, `violations`);
//! - [`Outcome`]: how a mode came out against that (`pass`, `mismatch`, `reported`);
//! - [`RowVerdict`]: the table's verdict column (`ok`, `MISMATCH`, `VIOLATIONS`, `clean`),
//!   capitals where a reader must look;
//! - [`NoCrash`]: the no-crash column, the checkers' verdict on the disk as the workload
//!   left it (`-`, `ok`, `VIOLATION`, `FAILED`).
//!
//! A state's own verdict (`consistent`, `violation`, `checker-failure`) is
//! `brink_check::Verdict`'s.

use std::fmt;
use std::str::FromStr;

use brink_check::Verdict;

use crate::judge::Outcome;
use crate::manifest::Expect;

/// A word that spells none of a type's values. The message is serde's, so a manifest
/// with a bad `expect` reads the same as any other bad value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown variant `{given}`, expected {}", one_of(expected))]
pub struct UnknownWord {
    pub given: String,
    pub expected: &'static [&'static str],
}

fn one_of(words: &[&str]) -> String {
    match words {
        [] => "nothing".to_string(),
        [a] => format!("`{a}`"),
        [a, b] => format!("`{a}` or `{b}`"),
        _ => format!("one of {}", words.iter().map(|w| format!("`{w}`")).collect::<Vec<_>>().join(", ")),
    }
}

/// `Display`, `FromStr` and the conversions serde uses, from one table of words.
macro_rules! spelled {
    ($ty:ident { $($variant:ident => $word:literal),+ $(,)? }) => {
        impl $ty {
            /// Every value, in the order of [`Self::WORDS`].
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            /// How each value is written.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $word),+
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                // pad, not write_str: tables align these words with widths.
                f.pad(self.as_str())
            }
        }

        impl FromStr for $ty {
            type Err = UnknownWord;
            fn from_str(s: &str) -> Result<Self, UnknownWord> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == s)
                    .ok_or_else(|| UnknownWord { given: s.to_string(), expected: Self::WORDS })
            }
        }

        impl From<$ty> for &'static str {
            fn from(v: $ty) -> &'static str {
                v.as_str()
            }
        }

        impl TryFrom<String> for $ty {
            type Error = UnknownWord;
            fn try_from(s: String) -> Result<Self, UnknownWord> {
                s.parse()
            }
        }
    };
}

spelled!(Expect { Clean => "clean", Violations => "violations" });
spelled!(Outcome { Pass => "pass", Mismatch => "mismatch", Reported => "reported" });

/// The table's verdict on a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowVerdict {
    /// As expected.
    Ok,
    /// Not as expected.
    Mismatch,
    /// Nothing was expected, and violations were found.
    Violations,
    /// Nothing was expected, and none were found.
    Clean,
}

spelled!(RowVerdict { Ok => "ok", Mismatch => "MISMATCH", Violations => "VIOLATIONS", Clean => "clean" });

impl RowVerdict {
    /// A row's verdict: its outcome, and for a reported row whether it found violations.
    pub fn of(outcome: Outcome, violations: u64) -> RowVerdict {
        match outcome {
            Outcome::Pass => RowVerdict::Ok,
            Outcome::Mismatch => RowVerdict::Mismatch,
            Outcome::Reported if violations > 0 => RowVerdict::Violations,
            Outcome::Reported => RowVerdict::Clean,
        }
    }
}

/// The no-crash column: does the disk the workload left behind already break it?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoCrash {
    /// Not checked (the run stopped before it, or never ran).
    Unchecked,
    Consistent,
    Violation,
    CheckerFailure,
}

spelled!(NoCrash { Unchecked => "-", Consistent => "ok", Violation => "VIOLATION", CheckerFailure => "FAILED" });

impl From<Option<&Verdict>> for NoCrash {
    fn from(v: Option<&Verdict>) -> NoCrash {
        match v {
            None => NoCrash::Unchecked,
            Some(Verdict::Consistent) => NoCrash::Consistent,
            Some(Verdict::Violation) => NoCrash::Violation,
            Some(Verdict::CheckerFailure) => NoCrash::CheckerFailure,
        }
    }
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    /// Every word of every verdict type, and that each reads back as itself (through
    /// `FromStr` and through serde, as manifests and `suite.json` do).
    #[test]
    fn every_word_reads_back() {
        fn words<T: Copy + fmt::Display + FromStr<Err = UnknownWord> + PartialEq + fmt::Debug>(all: &[T]) -> String {
            for v in all {
                assert_eq!(v.to_string().parse::<T>(), Ok(*v));
            }
            all.iter().map(ToString::to_string).collect::<Vec<_>>().join(" ")
        }
        let table = [
            ("expect", words(Expect::ALL)),
            ("outcome", words(Outcome::ALL)),
            ("row verdict", words(RowVerdict::ALL)),
            ("no crash", words(NoCrash::ALL)),
        ]
        .map(|(k, v)| format!("{k:<12} {v}\n"))
        .concat();
        expect![[r#"
            expect       clean violations
            outcome      pass mismatch reported
            row verdict  ok MISMATCH VIOLATIONS clean
            no crash     - ok VIOLATION FAILED
        "#]]
        .assert_eq(&table);
        for v in Expect::ALL {
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
            assert_eq!(serde_json::from_str::<Expect>(&format!("\"{v}\"")).unwrap(), *v);
        }
        for v in Outcome::ALL {
            assert_eq!(serde_json::to_string(v).unwrap(), format!("\"{v}\""));
            assert_eq!(serde_json::from_str::<Outcome>(&format!("\"{v}\"")).unwrap(), *v);
        }
    }

    /// A bad word is refused with serde's own wording.
    #[test]
    fn unknown_words_read_like_serde() {
        expect!["unknown variant `maybe`, expected `clean` or `violations`"]
            .assert_eq(&"maybe".parse::<Expect>().unwrap_err().to_string());
        expect!["unknown variant `ok`, expected one of `pass`, `mismatch`, `reported`"]
            .assert_eq(&"ok".parse::<Outcome>().unwrap_err().to_string());
    }
}
