//! Rendering diagnostics through miette. Labels in other files than the
//! primary one become related reports, each with its own snippet, so an
//! include cycle can point into both files at once.

use super::{Diagnostic, Severity};
use crate::term::{escape, escape_lines};
use crate::source::{FileId, SourceMap};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderStyle {
    /// Colours and Unicode, for a terminal.
    Fancy,
    /// No colour, ASCII, fixed width: stable for snapshots and logs.
    Plain,
}

pub fn render(d: &Diagnostic, sources: &SourceMap, style: RenderStyle) -> String {
    render_with(d, sources, &handler(style), &mut Shown::default())
}

fn handler(style: RenderStyle) -> GraphicalReportHandler {
    match style {
        RenderStyle::Fancy => GraphicalReportHandler::new(),
        RenderStyle::Plain => GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false),
    }
}

fn render_with(d: &Diagnostic, sources: &SourceMap, handler: &GraphicalReportHandler, shown: &mut Shown) -> String {
    let mut report = Report::build(d, sources, shown);
    let mut out = String::new();
    // miette writes the help last when no related report follows it, and
    // from the help alone; wrapping it (Unicode line breaking) was most of
    // the time of rendering, and a large project gives the same help many
    // times: each is wrapped once.
    if report.related.is_empty() {
        if let Some(help) = report.help.take() {
            if let (Ok(()), Some(footer)) = (handler.render_report(&mut out, &report), shown.footer(handler, &help)) {
                out.push_str(footer);
                return out;
            }
            out.clear();
            report.help = Some(help);
        }
    }
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", d.code, d.message);
    }
    out
}

/// The diagnostics, rendered one after the other as they are written out
/// (`eprint!("{}", render_all(...))`).
pub fn render_all<'a>(ds: impl IntoIterator<Item = &'a Diagnostic>, sources: &'a SourceMap, style: RenderStyle) -> Rendered<'a> {
    Rendered { ds: ds.into_iter().collect(), sources, style }
}

/// Diagnostics rendered while they are written, a batch at a time, not
/// made into one string first: the 100,000 warnings of a large project
/// were ~90 MB of text, held twice while joined.
pub struct Rendered<'a> {
    ds: Vec<&'a Diagnostic>,
    sources: &'a SourceMap,
    style: RenderStyle,
}

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Each file is made visible and indexed once, not once per
        // diagnostic: a project of 10,000 hosts can have 10,000 warnings.
        let mut shown = Shown::default();
        let handler = handler(self.style);
        // Written in batches: standard error is unbuffered, a write each.
        let mut batch = String::new();
        for d in &self.ds {
            batch.push_str(&render_with(d, self.sources, &handler, &mut shown));
            if batch.len() >= 64 << 10 {
                f.write_str(&batch)?;
                batch.clear();
            }
        }
        f.write_str(&batch)
    }
}

struct Report {
    code: &'static str,
    message: String,
    severity: Severity,
    help: Option<String>,
    source: Option<Source>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn build(d: &Diagnostic, sources: &SourceMap, shown: &mut Shown) -> Report {
        let primary = d.labels.first().map(|l| l.span.file);
        let mut files: Vec<FileId> = Vec::new();
        for l in &d.labels {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        let mut part = |file: FileId, message: String, severity: Severity, help: Option<String>, code| {
            let f = sources.file(file);
            let v = shown.files.entry(file).or_insert_with(|| Arc::new(Visible::new(&f.text))).clone();
            let shifts = &v.shifts;
            let labels = d
                .labels
                .iter()
                .filter(|l| l.span.file == file)
                .map(|l| {
                    let text = if l.text.is_empty() { None } else { Some(escape_lines(&l.text).into_owned()) };
                    let (start, end) = (shifted(shifts, l.span.start as usize), shifted(shifts, l.span.end as usize));
                    LabeledSpan::new(text, start, end - start)
                })
                .collect();
            Report {
                code,
                message: escape_lines(&message).into_owned(),
                severity,
                help: help.map(|h| escape_lines(&h).into_owned()),
                source: Some(Source { name: escape(&f.name).into_owned(), text: v }),
                labels,
                related: vec![],
            }
        };
        match primary {
            None => Report {
                code: d.code,
                message: escape_lines(&d.message).into_owned(),
                severity: d.severity,
                help: d.help.as_deref().map(|h| escape_lines(h).into_owned()),
                source: None,
                labels: vec![],
                related: vec![],
            },
            Some(p) => {
                let mut main = part(p, d.message.clone(), d.severity, d.help.as_deref().map(str::to_string), d.code);
                for f in files.into_iter().skip(1) {
                    let name = sources.file(f).name.clone();
                    main.related.push(part(f, format!("in {name}"), Severity::Advice, None, ""));
                }
                main
            }
        }
    }
}

/// For the diagnostics rendered together: files as shown, by id, and each
/// help as rendered.
#[derive(Default)]
struct Shown {
    files: HashMap<FileId, Arc<Visible>>,
    footers: HashMap<String, Option<String>>,
}

impl Shown {
    /// What miette writes for `help` at the end of a report: what a report
    /// with nothing else but the help adds to the same report without it.
    /// None if that is not a plain addition (then reports are rendered
    /// whole).
    fn footer(&mut self, handler: &GraphicalReportHandler, help: &str) -> Option<&str> {
        if !self.footers.contains_key(help) {
            let bare = Report { code: "", message: String::new(), severity: Severity::Advice, help: None, source: None, labels: vec![], related: vec![] };
            let (mut without, mut with) = (String::new(), String::new());
            let footer = match (handler.render_report(&mut without, &bare), handler.render_report(&mut with, &Report { help: Some(help.to_string()), ..bare })) {
                (Ok(()), Ok(())) => with.strip_prefix(without.as_str()).map(str::to_string),
                _ => None,
            };
            self.footers.insert(help.to_string(), footer);
        }
        self.footers.get(help).and_then(|f| f.as_deref())
    }
}

/// A file's [`visible`] text, where each line starts (as miette counts
/// lines: `\n`, `\r\n` or a lone `\r` ends one) and the escapes' shifts.
struct Visible {
    /// The file's own text when nothing needed escaping.
    text: Arc<str>,
    lines: Vec<usize>,
    shifts: Vec<(usize, usize)>,
}

impl Visible {
    fn new(source: &Arc<str>) -> Visible {
        let (text, shifts) = match visible(source) {
            (None, shifts) => (source.clone(), shifts),
            (Some(escaped), shifts) => (escaped.into(), shifts),
        };
        let b = text.as_bytes();
        let mut lines = vec![0];
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'\r' && b.get(i + 1) == Some(&b'\n') {
                i += 1;
            }
            if matches!(b[i], b'\r' | b'\n') {
                lines.push(i + 1);
            }
            i += 1;
        }
        Visible { text, lines, shifts }
    }

    /// The line holding byte `at`, counted from 0.
    fn line_of(&self, at: usize) -> usize {
        self.lines.partition_point(|s| *s <= at).saturating_sub(1)
    }
}

/// A named source that hands miette only the lines around a span, so
/// that finding them does not scan the file from its start each time
/// (which made 10,000 diagnostics in one large file take minutes).
struct Source {
    name: String,
    text: Arc<Visible>,
}

impl SourceCode for Source {
    fn read_span<'a>(&'a self, span: &SourceSpan, before: usize, after: usize) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let v = &self.text;
        let end = span.offset() + span.len();
        if end > v.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        // Two lines more on each side than asked for: miette then stops
        // inside the window exactly where it would have in the whole file.
        let first = v.line_of(span.offset()).saturating_sub(before + 2);
        let last = v.line_of(end) + after + 3;
        let (from, to) = (v.lines[first], v.lines.get(last).copied().unwrap_or(v.text.len()));
        let window = &v.text.as_bytes()[from..to];
        let inner = SourceSpan::new((span.offset() - from).into(), span.len());
        let c = <[u8] as SourceCode>::read_span(window, &inner, before, after)?;
        Ok(Box::new(MietteSpanContents::new_named(
            self.name.clone(),
            c.data(),
            SourceSpan::new((c.span().offset() + from).into(), c.span().len()),
            c.line() + first,
            c.column(),
            c.line_count() + first,
        )))
    }
}

/// The source as shown: control characters other than line breaks and
/// tabs written as visible escapes (`\u{1b}`), so a file cannot move the
/// cursor, retitle the terminal or hide a line; with, for each escaped
/// character, its offset and the bytes added up to and including it.
/// None for the text: it needs no escapes (most files).
fn visible(text: &str) -> (Option<String>, Vec<(usize, usize)>) {
    let keep = |i: usize, c: char| !c.is_control() || c == '\n' || c == '\t' || (c == '\r' && text[i + 1..].starts_with('\n'));
    if text.char_indices().all(|(i, c)| keep(i, c)) {
        return (None, vec![]);
    }
    let mut out = String::with_capacity(text.len() + 64);
    let mut shifts = Vec::new();
    let mut added = 0;
    for (i, c) in text.char_indices() {
        if keep(i, c) {
            out.push(c);
        } else {
            let before = out.len();
            out.extend(c.escape_default());
            added += out.len() - before - c.len_utf8();
            shifts.push((i, added));
        }
    }
    (Some(out), shifts)
}

/// An offset in the source, moved past what [`visible`] added before it.
fn shifted(shifts: &[(usize, usize)], offset: usize) -> usize {
    match shifts.partition_point(|(at, _)| *at < offset) {
        0 => offset,
        n => offset + shifts[n - 1].1,
    }
}

impl fmt::Debug for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}
impl std::error::Error for Report {}

impl miette::Diagnostic for Report {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        if self.code.is_empty() {
            None
        } else {
            Some(Box::new(self.code))
        }
    }
    fn severity(&self) -> Option<miette::Severity> {
        Some(match self.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
            Severity::Advice => miette::Severity::Advice,
        })
    }
    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help.as_ref().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }
    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.source.as_ref().map(|s| s as &dyn miette::SourceCode)
    }
    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() {
            None
        } else {
            Some(Box::new(self.labels.iter().cloned()))
        }
    }
    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn miette::Diagnostic> + 'a>> {
        if self.related.is_empty() {
            None
        } else {
            Some(Box::new(self.related.iter().map(|r| r as &dyn miette::Diagnostic)))
        }
    }
}


#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceMap, Span};

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let mut sources = SourceMap::default();
        let text = "host a\u{1b}]0;owned\u{7} {\r\n    memroy 1M\u{1b}[2J\r\n}\n";
        let id = sources.add("p\u{1b}.mln".into(), "p\u{1b}.mln".into(), text.into());
        let at = text.find("memroy").unwrap();
        let d = Diagnostic::error("mln::test", "bad \u{1b}[31mred")
            .label(Span::new(id, at, at + 6), "here \u{9b}")
            .help("help \u{7}");
        for style in [RenderStyle::Plain, RenderStyle::Fancy] {
            let out = render(&d, &sources, style);
            let raw: Vec<char> = out.chars().filter(|c| c.is_control() && !matches!(c, '\n' | '\u{1b}')).collect();
            assert!(raw.is_empty(), "{raw:?} in {out}");
            if style == RenderStyle::Plain {
                assert!(!out.contains('\u{1b}'), "{out}");
                assert!(out.contains("a\\u{1b}]0;owned\\u{7}"), "{out}");
                assert!(out.contains("bad \\u{1b}[31mred") && out.contains("help \\u{7}") && out.contains("here \\u{9b}"), "{out}");
                // The label still points at the word, after the escapes.
                assert!(out.contains("memroy 1M\\u{1b}[2J"), "{out}");
                let lines: Vec<&str> = out.lines().collect();
                let i = lines.iter().position(|l| l.contains("memroy")).unwrap();
                let col = |l: &str, p: &str| l.find(p).map(|b| l[..b].chars().count());
                assert_eq!(col(lines[i], "memroy"), col(lines[i + 1], "─"), "{out}");
                assert!(lines[i + 1].contains("───┬──") && !lines[i + 1].contains("───┬───"), "{out}");
            }
        }
        assert_eq!(shifted(&[(3, 5), (10, 8)], 3), 3);
        assert_eq!(shifted(&[(3, 5), (10, 8)], 4), 9);
        assert_eq!(shifted(&[(3, 5), (10, 8)], 11), 19);
    }
}
