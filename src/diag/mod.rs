//! One diagnostic model for every stage. Stages push [`Diagnostic`]s into a
//! [`Diagnostics`] collection and keep going; rendering happens at the edge.

mod render;

pub use render::{render, render_all, RenderStyle, Rendered};

use crate::source::Span;
use std::borrow::Cow;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Advice,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub span: Span,
    /// Most are written in the code, not made: not copied then (a large
    /// project can have a warning per host).
    pub text: Cow<'static, str>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Stable code, e.g. `mln::unknown_keyword`; documented in the book.
    pub code: &'static str,
    pub message: String,
    /// The first label is the primary place.
    pub labels: Vec<Label>,
    /// Most are written in the code: not copied then, as [`Label::text`].
    pub help: Option<Cow<'static, str>>,
}

impl Diagnostic {
    pub fn error(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, code, message: message.into(), labels: vec![], help: None }
    }
    pub fn warning(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Self::error(code, message) }
    }
    pub fn advice(code: &'static str, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Advice, ..Self::error(code, message) }
    }
    pub fn label(mut self, span: Span, text: impl Into<Cow<'static, str>>) -> Self {
        // Most have one or two: no room for four (a large project can
        // have a warning per host).
        self.labels.reserve_exact(1);
        self.labels.push(Label { span, text: text.into() });
        self
    }
    pub fn help(mut self, help: impl Into<Cow<'static, str>>) -> Self {
        self.help = Some(help.into());
        self
    }
    pub fn primary_span(&self) -> Option<Span> {
        self.labels.first().map(|l| l.span)
    }
}

/// Collected diagnostics. The same problem found twice (say, a bad value in
/// a superclass, checked once per inheriting host) is kept once.
#[derive(Clone, Debug, Default)]
pub struct Diagnostics {
    list: Vec<Diagnostic>,
    // Randomly seeded but cheaper than SipHash: a generated project pushes
    // one warning per host, most of them the same.
    /// By code and place, the first diagnostic pushed (its index in
    /// `list`), whose message is not copied: a project of 100,000 written
    /// hosts has 100,000 warnings.
    seen: std::collections::HashMap<(&'static str, Option<Span>), u32, foldhash::fast::RandomState>,
    /// The others of a code and place, with their messages.
    more: std::collections::HashSet<(&'static str, Option<Span>, String), foldhash::fast::RandomState>,
}

impl Diagnostics {
    pub fn push(&mut self, d: Diagnostic) {
        use std::collections::hash_map::Entry;
        let key = (d.code, d.primary_span());
        let new = match self.seen.entry(key) {
            Entry::Vacant(v) => {
                v.insert(self.list.len() as u32);
                true
            }
            Entry::Occupied(first) => {
                self.list[*first.get() as usize].message != d.message && self.more.insert((key.0, key.1, d.message.clone()))
            }
        };
        if new {
            self.list.push(d);
        }
    }
    pub fn extend(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        for d in ds {
            self.push(d)
        }
    }
    pub fn has_code(&self, code: &str) -> bool {
        self.list.iter().any(|d| d.code == code)
    }
    pub fn has_errors(&self) -> bool {
        self.list.iter().any(|d| d.severity == Severity::Error)
    }
    pub fn error_count(&self) -> usize {
        self.list.iter().filter(|d| d.severity == Severity::Error).count()
    }
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.list.iter()
    }
    /// In source order (file, then offset), errors and warnings interleaved,
    /// as a reader scans the file.
    pub fn sorted(&self) -> Vec<&Diagnostic> {
        let mut v: Vec<&Diagnostic> = self.list.iter().collect();
        v.sort_by_key(|d| d.primary_span().map(|s| (s.file, s.start)));
        v
    }
    pub fn into_vec(self) -> Vec<Diagnostic> {
        self.list
    }
}
