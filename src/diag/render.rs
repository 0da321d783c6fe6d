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
    let files = files_of([d], sources);
    let mut out = String::new();
    Renderer::new(sources, &files, style).render_into(d, &mut out);
    out
}

fn handler(style: RenderStyle) -> GraphicalReportHandler {
    match style {
        RenderStyle::Fancy => GraphicalReportHandler::new(),
        RenderStyle::Plain => GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false),
    }
}

/// The files the diagnostics point into, each made visible and indexed
/// once, not once per diagnostic: a project of 100,000 written hosts has
/// 100,000 warnings in one file.
type Files = HashMap<FileId, Arc<Visible>>;

fn files_of<'a>(ds: impl IntoIterator<Item = &'a Diagnostic>, sources: &SourceMap) -> Files {
    let mut files = Files::new();
    for d in ds {
        for l in &d.labels {
            files.entry(l.span.file).or_insert_with(|| Arc::new(Visible::new(&sources.file(l.span.file).text)));
        }
    }
    files
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

/// Diagnostics per batch: each batch is rendered by one thread and written
/// whole (standard error is unbuffered, a write each). About 250 KB of
/// text for the one-line snippets most have.
const BATCH: usize = 256;

impl fmt::Display for Rendered<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let files = files_of(self.ds.iter().copied(), self.sources);
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let batches: Vec<&[&Diagnostic]> = self.ds.chunks(BATCH).collect();
        let threads = cores.min(batches.len());
        if threads <= 1 {
            let mut r = Renderer::new(self.sources, &files, self.style);
            let mut out = String::new();
            for b in batches {
                out.clear();
                b.iter().for_each(|d| r.render_into(d, &mut out));
                f.write_str(&out)?;
            }
            return Ok(());
        }
        // Rendering 100,000 warnings took more than a second on one core:
        // batches are dealt round-robin to a thread per core and written
        // here in their order, at most two waiting per thread.
        let (sources, style, files, batches) = (self.sources, self.style, &files, &batches);
        std::thread::scope(|s| {
            let waiting: Vec<_> = (0..threads)
                .map(|t| {
                    let (tx, rx) = std::sync::mpsc::sync_channel::<String>(2);
                    s.spawn(move || {
                        let mut r = Renderer::new(sources, files, style);
                        for b in batches.iter().skip(t).step_by(threads) {
                            let mut out = String::with_capacity(b.len() * 1024);
                            b.iter().for_each(|d| r.render_into(d, &mut out));
                            // The writer stopped (a closed standard error).
                            if tx.send(out).is_err() {
                                return;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for i in 0..batches.len() {
                // A thread that panicked ends its channel; the scope passes
                // the panic on.
                let Ok(out) = waiting[i % threads].recv() else { return Err(fmt::Error) };
                f.write_str(&out)?;
            }
            Ok(())
        })
    }
}

/// Renders diagnostics one after another, keeping what repeats.
struct Renderer<'a> {
    sources: &'a SourceMap,
    files: &'a Files,
    handler: GraphicalReportHandler,
    /// Each help as miette writes it at the end of a report ([`Renderer::footer`]).
    footers: HashMap<String, Option<String>>,
    /// Each code, severity and message as miette writes them first.
    heads: HashMap<(&'static str, Severity), HashMap<String, Option<String>>>,
    /// By severity, what a report of no code, no snippet and the message
    /// [`BARE`] writes ([`Renderer::snippet`]).
    bare: HashMap<Severity, Option<String>>,
    scratch: String,
}

/// The message of the reports whose snippets alone are kept.
const BARE: &str = "-";

/// At most this many distinct messages are kept rendered: most projects
/// repeat few.
const MAX_HEADS: usize = 4096;

impl<'a> Renderer<'a> {
    fn new(sources: &'a SourceMap, files: &'a Files, style: RenderStyle) -> Self {
        Renderer { sources, files, handler: handler(style), footers: HashMap::new(), heads: HashMap::new(), bare: HashMap::new(), scratch: String::new() }
    }

    fn render_into(&mut self, d: &Diagnostic, out: &mut String) {
        let mut report = Report::build(d, self.sources, self.files);
        let at = out.len();
        if report.related.is_empty() {
            if self.in_pieces(&mut report, out) {
                return;
            }
            out.truncate(at);
        }
        if self.handler.render_report(out, &report).is_err() {
            out.truncate(at);
            out.push_str(&format!("{}: {}\n", d.code, d.message));
        }
    }

    /// miette writes a report with no related reports in three parts, each
    /// from its own fields alone: the code and the wrapped message, the
    /// snippet, the wrapped help. Wrapping (Unicode line breaking) was
    /// most of the time of rendering, and a large project repeats the same
    /// message and help many times: each is wrapped once and only the
    /// snippet is rendered per diagnostic. False (the report is then
    /// rendered whole, `out` cut back by the caller) when a part does not
    /// come out as a plain piece of the whole; `report` is as it was.
    fn in_pieces(&mut self, report: &mut Report, out: &mut String) -> bool {
        let Some(head) = self.head(report.code, report.severity, &report.message) else { return false };
        out.push_str(head);
        if !report.labels.is_empty() {
            let Some(snippet) = self.snippet(report) else { return false };
            out.push_str(snippet);
        }
        if let Some(help) = &report.help {
            let Some(footer) = self.footer(help) else { return false };
            out.push_str(footer);
        }
        true
    }

    fn head(&mut self, code: &'static str, severity: Severity, message: &str) -> Option<&str> {
        let heads = self.heads.entry((code, severity)).or_default();
        if !heads.contains_key(message) {
            if heads.len() >= MAX_HEADS {
                heads.clear();
            }
            let mut out = String::new();
            let bare = Report { code, message: message.to_string(), severity, help: None, source: None, labels: vec![], related: vec![] };
            let head = self.handler.render_report(&mut out, &bare).ok().map(|()| out);
            heads.insert(message.to_string(), head);
        }
        heads.get(message).and_then(|h| h.as_deref())
    }

    /// The snippet of `report`: the report rendered without code, help and
    /// its own message, less what the same report writes without a snippet.
    fn snippet(&mut self, report: &mut Report) -> Option<&str> {
        let severity = report.severity;
        let prefix = self
            .bare
            .entry(severity)
            .or_insert_with(|| {
                let mut out = String::new();
                let bare = Report { code: "", message: BARE.to_string(), severity, help: None, source: None, labels: vec![], related: vec![] };
                self.handler.render_report(&mut out, &bare).ok().map(|()| out)
            })
            .as_deref()?;
        let code = std::mem::take(&mut report.code);
        let message = std::mem::replace(&mut report.message, BARE.to_string());
        let help = report.help.take();
        self.scratch.clear();
        let rendered = self.handler.render_report(&mut self.scratch, &*report);
        (report.code, report.message, report.help) = (code, message, help);
        rendered.ok()?;
        self.scratch.strip_prefix(prefix)
    }

    /// What miette writes for `help` at the end of a report: what a report
    /// with nothing else but the help adds to the same report without it.
    /// None if that is not a plain addition.
    fn footer(&mut self, help: &str) -> Option<&str> {
        if !self.footers.contains_key(help) {
            let bare = Report { code: "", message: String::new(), severity: Severity::Advice, help: None, source: None, labels: vec![], related: vec![] };
            let (mut without, mut with) = (String::new(), String::new());
            let footer = match (self.handler.render_report(&mut without, &bare), self.handler.render_report(&mut with, &Report { help: Some(help.to_string()), ..bare })) {
                (Ok(()), Ok(())) => with.strip_prefix(without.as_str()).map(str::to_string),
                _ => None,
            };
            self.footers.insert(help.to_string(), footer);
        }
        self.footers.get(help).and_then(|f| f.as_deref())
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
    fn build(d: &Diagnostic, sources: &SourceMap, shown: &Files) -> Report {
        let primary = d.labels.first().map(|l| l.span.file);
        let mut files: Vec<FileId> = Vec::new();
        for l in &d.labels {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        let part = |file: FileId, message: String, severity: Severity, help: Option<String>, code| {
            let f = sources.file(file);
            let v = shown.get(&file).cloned().unwrap_or_else(|| Arc::new(Visible::new(&f.text)));
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

    /// Rendered in pieces (message, snippet and help each on its own,
    /// the first two kept), a report is what miette makes of it whole.
    #[test]
    fn pieces_make_the_whole_report() {
        let mut sources = SourceMap::default();
        let text = "host a {\n    network eth0 {\n        address 10.0.0.1\n    }\n}\nhost b {\n    memroy 1M\n}\n";
        let id = sources.add("p.mln".into(), "p.mln".into(), text.into());
        let other = sources.add("q.mln".into(), "q.mln".into(), "x\n".into());
        let at = |w: &str| text.find(w).unwrap();
        let long = "a message long enough to be wrapped by miette at the width of a terminal, with words and more words past a hundred columns";
        let ds = vec![
            Diagnostic::warning("mln::network::user_mode", "interface `eth0` has no switch")
                .label(Span::new(id, at("network"), at("network") + 12), "on no switch")
                .help(long),
            Diagnostic::warning("mln::network::user_mode", "interface `eth0` has no switch").label(Span::new(id, at("network"), at("network") + 12), ""),
            Diagnostic::error("mln::unknown_keyword", long).label(Span::new(id, at("memroy"), at("memroy") + 6), "here").help("did you mean `memory`?"),
            Diagnostic::error("mln::two", "two labels")
                .label(Span::new(id, at("memroy"), at("memroy") + 6), "one")
                .label(Span::new(id, at("address"), at("address") + 7), "two"),
            Diagnostic::advice("mln::none", "no place at all").help("a help"),
            Diagnostic::advice("mln::none", long),
            Diagnostic::error("mln::files", "in two files").label(Span::new(id, 0, 4), "a").label(Span::new(other, 0, 1), "b"),
        ];
        let files = files_of(&ds, &sources);
        for style in [RenderStyle::Plain, RenderStyle::Fancy] {
            let mut r = Renderer::new(&sources, &files, style);
            // Twice: the second time from what was kept.
            for _ in 0..2 {
                for d in &ds {
                    let mut whole = String::new();
                    handler(style).render_report(&mut whole, &Report::build(d, &sources, &files)).unwrap();
                    let mut out = String::new();
                    r.render_into(d, &mut out);
                    assert_eq!(out, whole, "{style:?}");
                }
            }
            let all = render_all(&ds, &sources, style).to_string();
            assert_eq!(all, ds.iter().map(|d| render(d, &sources, style)).collect::<String>());
        }
    }

    /// Many diagnostics, rendered on several threads, come out in order.
    #[test]
    fn many_diagnostics_keep_their_order() {
        let mut sources = SourceMap::default();
        let text: String = (0..2000).map(|i| format!("host h{i} {{\n}}\n")).collect();
        let id = sources.add("p.mln".into(), "p.mln".into(), text.clone());
        let ds: Vec<Diagnostic> = (0..2000)
            .map(|i| {
                let at = text.find(&format!("host h{i} ")).unwrap();
                Diagnostic::warning("mln::test", format!("host {i}")).label(Span::new(id, at, at + 4), "").help("the same help")
            })
            .collect();
        let all = render_all(&ds, &sources, RenderStyle::Plain).to_string();
        assert_eq!(all, ds.iter().map(|d| render(d, &sources, RenderStyle::Plain)).collect::<String>());
        let mut last = 0;
        for i in 0..2000 {
            let at = all.find(&format!("⚠ host {i}\n")).unwrap();
            assert!(at >= last);
            last = at;
        }
    }

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
