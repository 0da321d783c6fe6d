//! Rendering diagnostics through miette. Labels in other files than the
//! primary one become related reports, each with its own snippet, so an
//! include cycle can point into both files at once.

use super::{Diagnostic, Severity};
use crate::source::{FileId, SourceMap};
use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, NamedSource};
use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RenderStyle {
    /// Colours and Unicode, for a terminal.
    Fancy,
    /// No colour, ASCII, fixed width: stable for snapshots and logs.
    Plain,
}

pub fn render(d: &Diagnostic, sources: &SourceMap, style: RenderStyle) -> String {
    let report = Report::build(d, sources);
    let handler = match style {
        RenderStyle::Fancy => GraphicalReportHandler::new(),
        RenderStyle::Plain => GraphicalReportHandler::new_themed(GraphicalTheme::unicode_nocolor())
            .with_width(100)
            .with_links(false),
    };
    let mut out = String::new();
    if handler.render_report(&mut out, &report).is_err() {
        out = format!("{}: {}\n", d.code, d.message);
    }
    out
}

pub fn render_all<'a>(ds: impl IntoIterator<Item = &'a Diagnostic>, sources: &SourceMap, style: RenderStyle) -> String {
    ds.into_iter().map(|d| render(d, sources, style)).collect::<Vec<_>>().join("")
}

struct Report {
    code: &'static str,
    message: String,
    severity: Severity,
    help: Option<String>,
    source: Option<NamedSource<String>>,
    labels: Vec<LabeledSpan>,
    related: Vec<Report>,
}

impl Report {
    fn build(d: &Diagnostic, sources: &SourceMap) -> Report {
        let primary = d.labels.first().map(|l| l.span.file);
        let mut files: Vec<FileId> = Vec::new();
        for l in &d.labels {
            if !files.contains(&l.span.file) {
                files.push(l.span.file);
            }
        }
        let part = |file: FileId, message: String, severity: Severity, help: Option<String>, code| {
            let f = sources.file(file);
            let labels = d
                .labels
                .iter()
                .filter(|l| l.span.file == file)
                .map(|l| {
                    let text = if l.text.is_empty() { None } else { Some(l.text.clone()) };
                    LabeledSpan::new(text, l.span.start as usize, l.span.len())
                })
                .collect();
            Report {
                code,
                message,
                severity,
                help,
                source: Some(NamedSource::new(f.name.clone(), f.text.to_string())),
                labels,
                related: vec![],
            }
        };
        match primary {
            None => Report {
                code: d.code,
                message: d.message.clone(),
                severity: d.severity,
                help: d.help.clone(),
                source: None,
                labels: vec![],
                related: vec![],
            },
            Some(p) => {
                let mut main = part(p, d.message.clone(), d.severity, d.help.clone(), d.code);
                for f in files.into_iter().skip(1) {
                    let name = sources.file(f).name.clone();
                    main.related.push(part(f, format!("in {name}"), Severity::Advice, None, ""));
                }
                main
            }
        }
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

