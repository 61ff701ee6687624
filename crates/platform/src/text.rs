//! The characters free text may not contain, shared by every service's validators (display
//! names, given and family names, message titles and bodies, e-mail addresses).
//!
//! Text in any script is welcome — including letters that look like Latin ones: a display name
//! is not an identifier. What is refused is what changes how text is laid out or hides part of
//! it: control characters, line and paragraph separators in single-line text, the bidirectional
//! embedding, override and isolate controls that reorder what a reader sees ("Trojan Source"),
//! and the invisible characters that make two names look identical.

/// The bidirectional embedding, override and isolate controls (U+202A–U+202E, U+2066–U+2069).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Invisible characters with no place in a name: zero-width space, word joiner and the other
/// invisible operators, the byte-order mark, soft hyphen. Zero-width joiner and non-joiner
/// (needed by several scripts and by emoji sequences) and the directional marks are not among
/// them.
pub fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00ad}' | '\u{180e}' | '\u{200b}' | '\u{2060}'..='\u{2064}' | '\u{feff}'
    )
}

/// Whether `c` may not appear in a single line of text (a name, a title): a control character
/// (C0, DEL, C1), a line or paragraph separator, a bidirectional control or an invisible
/// character.
pub fn is_forbidden_in_line(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') || is_bidi_control(c) || is_invisible(c)
}

/// Whether `c` may not appear in multi-line text (a message body): as for a line, except line
/// feeds, carriage returns, tabs and the Unicode line and paragraph separators.
pub fn is_forbidden_in_text(c: char) -> bool {
    !matches!(c, '\n' | '\r' | '\t' | '\u{2028}' | '\u{2029}') && is_forbidden_in_line(c)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn classifies_characters() {
        for forbidden in [
            '\n', '\u{0}', '\u{7f}', '\u{85}', '\u{2028}', '\u{202e}', '\u{2067}',
        ] {
            assert!(is_forbidden_in_line(forbidden), "{forbidden:?}");
        }
        for forbidden in ['\u{0}', '\u{1b}', '\u{202e}', '\u{200b}', '\u{feff}'] {
            assert!(is_forbidden_in_text(forbidden), "{forbidden:?}");
        }
        for allowed in ['a', 'ü', 'е', '\u{200d}', '\u{200c}', '\u{200f}', '🚀', ' '] {
            assert!(!is_forbidden_in_line(allowed), "{allowed:?}");
            assert!(!is_forbidden_in_text(allowed), "{allowed:?}");
        }
        for line_break in ['\n', '\r', '\t', '\u{2028}'] {
            assert!(!is_forbidden_in_text(line_break), "{line_break:?}");
        }
    }

    proptest! {
        /// Multi-line text allows everything a line does; controls other than line breaks and
        /// tabs, bidirectional controls and invisible characters are refused in both.
        #[test]
        fn text_is_laxer_than_a_line_only_for_line_breaks(c in any::<char>()) {
            if !is_forbidden_in_line(c) {
                prop_assert!(!is_forbidden_in_text(c));
            }
            if is_bidi_control(c) || is_invisible(c) {
                prop_assert!(is_forbidden_in_line(c) && is_forbidden_in_text(c));
            }
            if c.is_control() {
                prop_assert!(is_forbidden_in_line(c));
                prop_assert_eq!(is_forbidden_in_text(c), !matches!(c, '\n' | '\r' | '\t'));
            }
        }
    }
}
