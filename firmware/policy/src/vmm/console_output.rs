//! What a guest's console line becomes on the host console.
//!
//! A guest's bytes reach the operator's terminal and every reader of the serial log (the tests,
//! `cargo xtask`, whoever splits it into lines). A control character there is an instruction,
//! not text: a vertical tab, a form feed or a Unicode line separator starts a new line for
//! Python's `splitlines()` and for terminals, so a guest could print a line of its own that
//! begins `@nv` (a forged report event); an ESC sequence clears the operator's screen or
//! changes its colours. So every control character but TAB is shown escaped: C0 controls and
//! DEL in caret notation (`^[` for ESC, `^K` for a vertical tab, `^?` for DEL), C1 controls and
//! the Unicode line and paragraph separators as `\u{85}`, `\u{2028}`. A partition whose layout
//! says `console = "raw"` (an interactive shell that needs its terminal's escape sequences)
//! passes its bytes unchanged.

use alloc::borrow::Cow;
use alloc::string::String;
use core::fmt::Write;

/// Whether `c` reaches the host console escaped.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\t') || c == '\u{2028}' || c == '\u{2029}'
}

/// `line` with every control character but TAB escaped (unchanged, and not copied, when it
/// has none).
pub fn escape_controls(line: &str) -> Cow<'_, str> {
    if !line.chars().any(needs_escape) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        match c {
            c if !needs_escape(c) => out.push(c),
            '\u{7F}' => out.push_str("^?"),
            c if (c as u32) < 0x20 => {
                out.push('^');
                out.push(char::from(c as u8 + 0x40));
            }
            c => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn plain_text_and_tabs_pass_unchanged() {
        let line = "Linux version 6.1.0\tSMP";
        assert!(matches!(escape_controls(line), Cow::Borrowed(_)));
        assert_eq!(escape_controls(line), line);
    }

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert_eq!(escape_controls("a\x0b@nv {}"), "a^K@nv {}");
        assert_eq!(escape_controls("\x0c@nv"), "^L@nv");
        assert_eq!(escape_controls("\x1b[2J\x1b[31mred"), "^[[2J^[[31mred");
        assert_eq!(escape_controls("x\x00y\x7f"), "x^@y^?");
        assert_eq!(escape_controls("\r\x1c\x1d\x1e"), "^M^\\^]^^");
        assert_eq!(
            escape_controls("a\u{85}b\u{2028}c\u{2029}"),
            "a\\u{85}b\\u{2028}c\\u{2029}"
        );
        assert_eq!(escape_controls("é ü 日本"), "é ü 日本");
    }

    proptest! {
        /// Whatever a guest prints, the result is one line to every reader: it holds no
        /// character that Python's `splitlines()` or a terminal treats as a line break or an
        /// escape.
        #[test]
        fn nothing_a_guest_prints_breaks_the_line(line in ".*") {
            let out = escape_controls(&line);
            let breaks = ['\n', '\r', '\x0b', '\x0c', '\x1c', '\x1d', '\x1e', '\u{85}', '\u{2028}', '\u{2029}', '\x1b'];
            prop_assert!(!out.chars().any(|c| breaks.contains(&c)), "{out:?}");
            prop_assert!(!out.chars().any(|c| c.is_control() && c != '\t'));
        }
    }
}
