//! The syntax tree: what was written, with spans, comments and includes
//! kept, so `fmt` can print it back and later stages can point into it.

use crate::source::{FileId, SharedStr, Span};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    /// Exactly as written, quotes included.
    pub raw: SharedStr,
    pub span: Span,
    pub quoted: bool,
}

impl Word {
    /// Offsets (in `raw`) of quotes taken literally: in a bare word, every
    /// `"` not escaped with `\` is one that did not close on its line.
    pub fn open_quotes(&self) -> Vec<usize> {
        if self.quoted {
            return vec![];
        }
        let mut out = Vec::new();
        let mut escaped = false;
        for (i, c) in self.raw.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => out.push(i),
                _ => {}
            }
        }
        out
    }

    /// The word without its quotes and escapes (variables not expanded).
    /// Outside quotes `\` takes the next character literally, as in MLN;
    /// `\$` survives until interpolation, which makes it `$`.
    pub fn unquoted(&self) -> String {
        if !self.quoted {
            if !self.raw.contains('\\') {
                return self.raw.to_string();
            }
            let mut out = String::with_capacity(self.raw.len());
            let mut chars = self.raw.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => match chars.next() {
                        Some('$') => out.push_str("\\$"),
                        Some(n) => out.push(n),
                        None => out.push('\\'),
                    },
                    c => out.push(c),
                }
            }
            return out;
        }
        let inner = &self.raw[1..self.raw.len() - 1];
        let mut out = String::with_capacity(inner.len());
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some(n @ ('"' | '\\')) => out.push(n),
                    // `\$` survives until interpolation, which makes it `$`.
                    Some(n) => {
                        out.push('\\');
                        out.push(n)
                    }
                    None => out.push('\\'),
                },
                c => out.push(c),
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    Statement(Statement),
    Assignment(Assignment),
    Comment(Comment),
    Include(Include),
    Error(SyntaxError),
}

impl Entry {
    pub fn span(&self) -> Span {
        match self {
            Entry::Statement(s) => s.span,
            Entry::Assignment(a) => a.span,
            Entry::Comment(c) => c.span,
            Entry::Include(i) => i.span,
            Entry::Error(e) => e.span,
        }
    }
}

/// `KEY VALUE...`, a flag `KEY`, or a block `KEY [LABEL...] { ... }`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub words: Vec<Word>,
    pub block: Option<Block>,
    pub span: Span,
}

impl Statement {
    pub fn key(&self) -> Option<&Word> {
        self.words.first()
    }
    pub fn args(&self) -> &[Word] {
        self.words.get(1..).unwrap_or(&[])
    }
    /// Span of the words alone (no block).
    pub fn head_span(&self) -> Span {
        match (self.words.first(), self.words.last()) {
            (Some(a), Some(b)) => a.span.to(b.span),
            _ => self.block.as_ref().map(|b| b.open).unwrap_or(self.span),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Block {
    pub entries: Vec<Entry>,
    pub open: Span,
    /// `None` when the file ended before the block was closed.
    pub close: Option<Span>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assignment {
    pub name: String,
    pub name_span: Span,
    pub value: Vec<Word>,
    pub span: Span,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Comment {
    /// Including the leading `#`.
    pub text: String,
    pub span: Span,
    /// On the same line as what precedes it.
    pub trailing: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Include {
    pub path: String,
    pub path_span: Span,
    pub span: Span,
    /// Set by the loader when the file was found and parsed.
    pub file: Option<FileId>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub span: Span,
    pub kind: SyntaxErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyntaxErrorKind {
    /// Text that is no statement (e.g. an unterminated string).
    BadLine,
    /// A `}` with no open block.
    StrayClose,
}
