//! The grammar on plain text, without pest: a piece of a file made only of
//! bare words, spaces, line feeds and braces (what a generated project of
//! 100,000 host blocks is, past its first lines) is read here, byte by
//! byte, into the same entries and diagnostics as `grammar/mln.pest` gives.
//! pest took most of the time of checking such a project (a rule call per
//! byte or more, two queued tokens per match).
//!
//! On plain text the grammar comes down to this: a word is a run of
//! [`bare`] bytes; a statement is words (separated by spaces) followed by a
//! block or by the end of its line, a `}` or the end of the piece; a block
//! is `{`, entries, then `}` or the end of the piece (never closed); a `}`
//! at the top level is a stray. No statement can fail there (quotes,
//! escapes, `;`, `#` and `$` are not plain), so there is no `bad_line`.
//! Anything else goes to pest. Tests check both read the same.

use super::ast::*;
use crate::diag::Diagnostics;
use crate::source::{FileId, SharedStr, Span};
use std::sync::Arc;

/// A byte a bare word may hold that is read the same by every rule: what
/// `bare_char` lists first (letters, digits, `. _ - / :`).
fn bare(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/' | b':')
}

/// Whether `text` is plain: bare bytes, spaces, line feeds and braces.
pub fn is_plain(text: &str) -> bool {
    text.bytes().all(is_plain_byte)
}

/// A byte of plain text ([`is_plain`]).
pub fn is_plain_byte(b: u8) -> bool {
    bare(b) || matches!(b, b' ' | b'\n' | b'{' | b'}')
}

/// Reads `text[start..end]` (plain, see [`is_plain`]) as a file, onto the
/// end of `out`. Returns where its last top-level entry ended (trailing
/// spaces of a statement included, as pest's pair ends), or None if it
/// has none.
pub fn parse(file: FileId, text: &Arc<str>, start: usize, end: usize, out: &mut Vec<Entry>, diags: &mut Diagnostics) -> Option<usize> {
    let mut r = Reader { file, text, b: &text.as_bytes()[..end], pos: start, diags };
    let mut last = None;
    while r.pos < end {
        match r.b[r.pos] {
            b' ' | b'\n' => r.pos += 1,
            b'}' => {
                let span = Span::new(file, r.pos, r.pos + 1);
                r.diags.push(super::parse::stray_close(span));
                out.push(Entry::Error(SyntaxError { span, kind: SyntaxErrorKind::StrayClose }));
                r.pos += 1;
                last = Some(r.pos);
            }
            _ => {
                out.push(Entry::Statement(r.statement()));
                last = Some(r.pos);
            }
        }
    }
    last
}

struct Reader<'a> {
    file: FileId,
    text: &'a Arc<str>,
    /// The piece's bytes, up to its end (the end of input for the grammar).
    b: &'a [u8],
    pos: usize,
    diags: &'a mut Diagnostics,
}

impl Reader<'_> {
    fn spaces(&mut self) {
        while self.b.get(self.pos) == Some(&b' ') {
            self.pos += 1;
        }
    }

    /// At a bare byte or a `{`; ends after the block, or after the spaces
    /// that follow the last word.
    fn statement(&mut self) -> Statement {
        let start = self.pos;
        let mut words = Vec::new();
        while self.b.get(self.pos).is_some_and(|&c| bare(c)) {
            let s = self.pos;
            while self.b.get(self.pos).is_some_and(|&c| bare(c)) {
                self.pos += 1;
            }
            let span = Span::new(self.file, s, self.pos);
            words.push(Word { raw: SharedStr::slice(self.text, s..self.pos), span, quoted: false });
            self.spaces();
        }
        words.shrink_to_fit();
        let block = (self.b.get(self.pos) == Some(&b'{')).then(|| self.block());
        let end = match (&block, words.last()) {
            (None, Some(last)) => last.span.end as usize,
            _ => self.pos,
        };
        Statement { words, block, span: Span::new(self.file, start, end) }
    }

    /// At a `{`; ends after its `}`, or at the end of the piece.
    fn block(&mut self) -> Block {
        let open = Span::new(self.file, self.pos, self.pos + 1);
        self.pos += 1;
        let mut entries = Vec::new();
        loop {
            match self.b.get(self.pos) {
                None => {
                    self.diags.push(super::parse::unclosed_block(open));
                    entries.shrink_to_fit();
                    return Block { entries, open, close: None };
                }
                Some(b'}') => {
                    let close = Span::new(self.file, self.pos, self.pos + 1);
                    self.pos += 1;
                    entries.shrink_to_fit();
                    return Block { entries, open, close: Some(close) };
                }
                Some(b' ' | b'\n') => self.pos += 1,
                Some(_) => entries.push(Entry::Statement(self.statement())),
            }
        }
    }
}
