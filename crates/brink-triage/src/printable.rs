//! Checker messages made safe to print, and classed by what they say.
//!
//! A checker's message is whatever its program wrote: a colour code, a bell, a carriage
//! return or plain garbage would reach the terminal report, the HTML page and the JUnit
//! file as written, and every variant of the garbage would become its own
//! vulnerability. So every report shows a message through [`printable`], and the class
//! a vulnerability is grouped by is computed from [`class_text`]: terminal escape
//! sequences dropped, and nothing after the first other control character. Messages
//! without control characters are untouched by both, so their vulnerability ids stay.

use std::borrow::Cow;

use brink_check::{CheckOutcome, Verdict};

/// The message with every control character (C0, DEL, C1) replaced by a visible escape:
/// `\t`, `\r`, `\n`, or `\xNN` / `\u{NNNN}` for the others.
pub fn printable(message: &str) -> Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len() + 8);
    for c in message.chars() {
        match c {
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() && (c as u32) < 0x100 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{{{:04x}}}", c as u32)),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// What a message is classed by: its terminal escape sequences (`ESC [ … final`)
/// removed, then cut before the first remaining control character with `…` marking the
/// cut, since what follows a raw control character is formatting or garbage, not words.
pub fn class_text(message: &str) -> Cow<'_, str> {
    if !message.chars().any(char::is_control) {
        return Cow::Borrowed(message);
    }
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' && chars.peek() == Some(&'[') {
            chars.next();
            // Parameter and intermediate bytes, then one final byte.
            while chars.next_if(|p| ('\x20'..='\x3f').contains(p)).is_some() {}
            chars.next_if(|f| ('\x40'..='\x7e').contains(f));
        } else if c.is_control() {
            out.push('…');
            break;
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// The violation class of a state's checks (brink-check's, prefixed `fsck: ` for the
/// built-in checker) computed on [`class_text`] of the first violation's message.
pub fn violation_class(checks: &[CheckOutcome]) -> Option<String> {
    let first = checks.iter().find(|c| c.verdict == Verdict::Violation)?;
    let mut c = first.clone();
    c.message = class_text(&first.message).into_owned();
    brink_check::violation_class(std::slice::from_ref(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_print_as_escapes() {
        assert_eq!(printable("lost\x1b[31m txn\x07 5\r"), "lost\\x1b[31m txn\\x07 5\\r");
        assert_eq!(printable("tab\there\u{9b}"), "tab\\there\\x9b");
        assert!(matches!(printable("acknowledged 'txn 5' lost"), Cow::Borrowed(_)));
    }

    #[test]
    fn class_text_drops_colours_and_cuts_garbage() {
        assert_eq!(class_text("\x1b[1;31mlost txn 5\x1b[0m"), "lost txn 5");
        assert_eq!(class_text("bad \x07\x02zq"), "bad …");
        assert_eq!(class_text("bad \x07xy"), class_text("bad \x01\x05ab"));
        assert_eq!(class_text("plain message 17"), "plain message 17");
    }
}
