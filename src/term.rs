//! Text for a terminal. Names and values come from a project file that may
//! be someone else's: an escape sequence in one could rewrite the screen,
//! retitle the window or hide a line. Everything mln prints that came from
//! outside goes through [`escape`].

use std::borrow::Cow;

/// `s` with every control character (C0, DEL, C1) written as a visible
/// escape (`\u{1b}`, `\n`, `\t`...); text without any is returned as is.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like [`escape`], but keeps line breaks and tabs: for multi-line output
/// such as a hook's or a remote command's.
pub fn escape_lines(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn control_characters_become_visible() {
        assert_eq!(super::escape("plain"), "plain");
        assert_eq!(super::escape("a\u{1b}]0;x\u{7}b"), "a\\u{1b}]0;x\\u{7}b");
        assert_eq!(super::escape("a\u{9b}b"), "a\\u{9b}b");
        assert_eq!(super::escape_lines("a\nb\u{1b}c"), "a\nb\\u{1b}c");
    }
}
