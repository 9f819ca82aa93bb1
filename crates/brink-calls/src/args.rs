//! The lexical layer of strace's output: splitting a call's argument list at its top-level
//! commas, and decoding the values strace prints (quoted strings with `\x..` escapes,
//! numbers, `A|B` flag sets, `3</path>` descriptors, iovec arrays). Every function takes
//! any input and answers `None` rather than panic.

use crate::model::{AT_FDCWD, Fd, Flags};

/// Longest decoded string kept from one argument, in bytes; past it the string counts as
/// truncated (strace's own `-s` limit is normally far below).
pub const STRING_BYTES_MAX: usize = 1 << 20;

/// Most arguments kept from one call (no system call has more than six, but arrays and
/// structures are split too when a caller asks).
pub const ARGS_MAX: usize = 4096;

/// The marker strace puts where it stops printing a call to print another thread's.
pub(crate) const UNFINISHED: &str = "<unfinished ...>";

/// A call's arguments split at top-level commas, and where the argument list ended.
#[derive(Debug)]
pub(crate) struct Split<'a> {
    pub args: Vec<&'a str>,
    /// The text after the closing parenthesis (` = 0`), or `None` when the list was cut by
    /// `<unfinished ...>` or the end of the line.
    pub after: Option<&'a str>,
}

/// What the scanner is inside of.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Plain,
    Str,
    Comment,
    Annotation,
}

/// Splits `text`, which starts just after `NAME(`, into its top-level arguments.
pub(crate) fn split_args(text: &str) -> Split<'_> {
    let bytes = text.as_bytes();
    let (mut args, mut depth, mut start, mut mode) = (Vec::new(), 0usize, 0usize, Mode::Plain);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match mode {
            Mode::Str => match b {
                // An escape: the backslash and the byte after it.
                b'\\' => {
                    i += 2;
                    continue;
                }
                b'"' => mode = Mode::Plain,
                // Inside a string only a backslash or a quote matters: skip to the next.
                _ => {
                    let skip = bytes[i..].iter().position(|&c| c == b'\\' || c == b'"').unwrap_or(bytes.len() - i);
                    i += skip;
                    continue;
                }
            },
            Mode::Comment => {
                if bytes[i..].starts_with(b"*/") {
                    mode = Mode::Plain;
                    i += 1;
                }
            }
            Mode::Annotation => {
                if b == b'>' {
                    mode = Mode::Plain;
                }
            }
            Mode::Plain => {
                if bytes[i..].starts_with(UNFINISHED.as_bytes()) {
                    push_arg(&mut args, &text[start..i]);
                    return Split { args, after: None };
                }
                match b {
                    b'"' => mode = Mode::Str,
                    b'/' if bytes[i..].starts_with(b"/*") => mode = Mode::Comment,
                    b'<' => mode = Mode::Annotation,
                    b'(' | b'[' | b'{' => depth += 1,
                    b')' | b']' | b'}' if depth > 0 => depth -= 1,
                    b')' => {
                        push_arg(&mut args, &text[start..i]);
                        return Split { args, after: Some(&text[i + 1..]) };
                    }
                    b',' if depth == 0 => {
                        push_arg(&mut args, &text[start..i]);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
        }
        i += 1;
    }
    push_arg(&mut args, &text[start..]);
    Split { args, after: None }
}

fn push_arg<'a>(args: &mut Vec<&'a str>, arg: &'a str) {
    let arg = arg.trim();
    if !arg.is_empty() && args.len() < ARGS_MAX {
        args.push(arg);
    }
}

/// Decodes a quoted string at the start of `text`: its bytes, whether strace cut it
/// (`"…"...`), and the text after it. `None` if `text` does not start with a quote or
/// the quote is not closed.
pub(crate) fn parse_string(text: &str) -> Option<(Vec<u8>, bool, &str)> {
    let rest = text.strip_prefix('"')?;
    let (bytes, used, closed) = unescape(rest.as_bytes(), b'"');
    if !closed {
        return None;
    }
    let after = rest.get(used..)?;
    let (after, dots) = match after.strip_prefix("...") {
        Some(a) => (a, true),
        None => (after, false),
    };
    let truncated = dots || bytes.len() >= STRING_BYTES_MAX;
    Some((bytes, truncated, after))
}

/// Decodes C-style escapes up to an unescaped `end` byte: the bytes, how many input
/// bytes were used (the end byte included), and whether `end` was found.
pub(crate) fn unescape(input: &[u8], end: u8) -> (Vec<u8>, usize, bool) {
    // `-xx` prints every byte as `\xHH`: four characters a byte, up to 1 MiB a write.
    let mut out = Vec::with_capacity((input.len() / 4).min(STRING_BYTES_MAX));
    let mut i = 0;
    while i < input.len() {
        // The common case first, without the general escape's bookkeeping.
        if let [b'\\', b'x', h, l, ..] = input[i..] {
            if let (Some(h), Some(l)) = (char::from(h).to_digit(16), char::from(l).to_digit(16)) {
                if out.len() < STRING_BYTES_MAX {
                    out.push((h * 16 + l) as u8);
                }
                i += 4;
                continue;
            }
        }
        let b = input[i];
        if b == end {
            return (out, i + 1, true);
        }
        let (byte, used) = if b == b'\\' { escape(&input[i + 1..]) } else { (b, 1) };
        if out.len() < STRING_BYTES_MAX {
            out.push(byte);
        }
        i += if b == b'\\' { used + 1 } else { used };
    }
    (out, i, false)
}

/// One escape sequence after its backslash: the byte and how many bytes it took.
fn escape(input: &[u8]) -> (u8, usize) {
    let Some(&c) = input.first() else { return (b'\\', 0) };
    match c {
        b'x' => {
            let digits = input[1..].iter().take(2).take_while(|d| d.is_ascii_hexdigit()).count();
            let value = input[1..1 + digits].iter().fold(0u32, |v, d| v * 16 + hex_value(*d));
            if digits == 0 { (b'x', 1) } else { (value as u8, 1 + digits) }
        }
        b'0'..=b'7' => {
            let digits = input.iter().take(3).take_while(|d| (b'0'..=b'7').contains(d)).count();
            let value = input[..digits].iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
            ((value & 0xff) as u8, digits)
        }
        b'n' => (b'\n', 1),
        b't' => (b'\t', 1),
        b'r' => (b'\r', 1),
        b'v' => (0x0b, 1),
        b'f' => (0x0c, 1),
        b'a' => (0x07, 1),
        b'b' => (0x08, 1),
        b'e' => (0x1b, 1),
        other => (other, 1),
    }
}

fn hex_value(d: u8) -> u32 {
    char::from(d).to_digit(16).unwrap_or(0)
}

/// A quoted string argument (`NULL` and addresses give `None`).
pub(crate) fn string_arg(arg: &str) -> Option<(Vec<u8>, bool)> {
    parse_string(arg).map(|(bytes, truncated, _)| (bytes, truncated))
}

/// An integer as strace prints it: decimal, `0x` hex, `0`-led octal (modes), negative.
pub(crate) fn int(text: &str) -> Option<i64> {
    let text = text.trim();
    let (negative, digits) = match text.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, text),
    };
    let value = if let Some(hex) = digits.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).ok()?
    } else if digits.len() > 1 && digits.starts_with('0') {
        u64::from_str_radix(&digits[1..], 8).ok()?
    } else {
        digits.parse::<u64>().ok()?
    };
    // Addresses above i64::MAX keep their bits.
    let value = value as i64;
    Some(if negative { value.wrapping_neg() } else { value })
}

/// A non-negative integer; also `[N]` (an in/out offset) and `[N => M]` (its value before).
pub(crate) fn uint(text: &str) -> Option<u64> {
    let text = text.trim();
    let inner = text.strip_prefix('[').map_or(text, |t| t.split([']', ' ']).next().unwrap_or(t));
    int(inner).and_then(|v| u64::try_from(v).ok())
}

/// An offset argument that may be `NULL` (the file position).
pub(crate) fn offset_arg(text: &str) -> Option<Option<u64>> {
    if text.trim() == "NULL" { Some(None) } else { uint(text).map(Some) }
}

/// The named bits of a `A|B|0x10` flag set.
pub(crate) fn flags(text: &str, names: &[(&str, u32)]) -> Flags {
    let bits = text
        .split('|')
        .map(str::trim)
        .filter_map(|part| names.iter().find(|(name, _)| *name == part).map(|(_, bit)| *bit))
        .fold(0, |acc, bit| acc | bit);
    Flags(bits)
}

/// Whether the flag set names `name`.
pub(crate) fn has_flag(text: &str, name: &str) -> bool {
    text.split('|').any(|part| part.trim() == name)
}

/// A file descriptor: `3`, `3</path>`, `3</path>(deleted)`, `AT_FDCWD</cwd>`.
pub(crate) fn fd(text: &str) -> Option<Fd> {
    let text = text.trim();
    let split = text.find(['<', '(']).unwrap_or(text.len());
    let (head, rest) = text.split_at(split);
    let num = if head == "AT_FDCWD" { AT_FDCWD } else { i32::try_from(int(head)?).ok()? };
    let (path, after) = match rest.strip_prefix('<') {
        Some(annotated) => {
            let (bytes, used, closed) = unescape(annotated.as_bytes(), b'>');
            if !closed {
                return None;
            }
            (Some(bytes), annotated.get(used..).unwrap_or(""))
        }
        None => (None, rest),
    };
    Some(Fd { num, path, deleted: after.trim_start().starts_with("(deleted)") })
}

/// A descriptor that may be `-1` (an anonymous mapping's): `None` for a negative one.
pub(crate) fn optional_fd(text: &str) -> Option<Option<Fd>> {
    let fd = fd(text)?;
    Some(if fd.num < 0 && fd.num != AT_FDCWD { None } else { Some(fd) })
}

/// The value of `key=` inside a structure `{a=1, key=VALUE, …}`.
pub(crate) fn field<'a>(structure: &'a str, key: &str) -> Option<&'a str> {
    let inner = structure.trim().strip_prefix('{')?;
    let inner = inner.strip_suffix('}').unwrap_or(inner);
    let split = split_args(inner);
    split.args.into_iter().find_map(|part| part.strip_prefix(key).and_then(|p| p.strip_prefix('=')))
}

/// The data of a `writev`-style iovec array, whether strace cut any of it, and the sum of
/// the lengths.
pub(crate) fn iovec_data(array: &str) -> Option<(Vec<u8>, bool, u64)> {
    let inner = array.trim().strip_prefix('[')?;
    let inner = inner.strip_suffix(']').unwrap_or(inner);
    let split = split_args(inner);
    let (mut data, mut truncated, mut len) = (Vec::new(), false, 0u64);
    for element in split.args {
        if element == "..." {
            truncated = true;
            continue;
        }
        let (bytes, cut) = field(element, "iov_base").and_then(string_arg).unwrap_or_default();
        let element_len = field(element, "iov_len").and_then(uint).unwrap_or(0);
        truncated |= cut || (bytes.len() as u64) < element_len;
        len = len.saturating_add(element_len);
        let room = STRING_BYTES_MAX.saturating_sub(data.len());
        truncated |= bytes.len() > room;
        data.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
    Some((data, truncated, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_top_level_commas_only() {
        let s = split_args(r#"3<\x2f\x61>, [{iov_base="\x61,", iov_len=2}, {iov_base="b", iov_len=1}], 2) = 3"#);
        assert_eq!(s.args.len(), 3);
        assert_eq!(s.after, Some(" = 3"));
        let s = split_args("AT_FDCWD</t>, \"a\", O_RDONLY <unfinished ...>");
        assert_eq!(s.args, vec!["AT_FDCWD</t>", "\"a\"", "O_RDONLY"]);
        assert_eq!(s.after, None);
        let s = split_args(r#""a) = 0", /* 3 vars, ) */ 1) = 0"#);
        assert_eq!(s.args, vec![r#""a) = 0""#, "/* 3 vars, ) */ 1"]);
    }

    #[test]
    fn decodes_strings_and_escapes() {
        assert_eq!(string_arg(r#""\x68\x00\xff""#), Some((vec![b'h', 0, 0xff], false)));
        // The fast path for `\xHH` and the general one agree at their edges.
        assert_eq!(string_arg(r#""\xAb\x7\x\\x41""#), Some((vec![0xab, 7, b'x', b'\\', b'x', b'4', b'1'], false)));
        assert_eq!(string_arg(r#""a\"b\n\\\0""#), Some((b"a\"b\n\\\0".to_vec(), false)));
        assert_eq!(string_arg(r#""\x61"..."#), Some((b"a".to_vec(), true)));
        assert_eq!(string_arg("NULL"), None);
        assert_eq!(string_arg("\"open"), None);
    }

    #[test]
    fn decodes_descriptors() {
        let f = fd(r"13<\x2f\x74\x23>(deleted)").unwrap();
        assert_eq!((f.num, f.path.as_deref(), f.deleted), (13, Some(&b"/t#"[..]), true));
        assert_eq!(fd("AT_FDCWD").unwrap().num, AT_FDCWD);
        assert_eq!(optional_fd("-1"), Some(None));
        assert_eq!(fd("3<\\x2f"), None);
    }

    #[test]
    fn decodes_numbers() {
        assert_eq!(int("0644"), Some(0o644));
        assert_eq!(int("0x7f5272c6a000"), Some(0x7f52_72c6_a000));
        assert_eq!(int("-1"), Some(-1));
        assert_eq!(uint("[0 => 3]"), Some(0));
        assert_eq!(int("0"), Some(0));
        assert_eq!(int(""), None);
    }
}
