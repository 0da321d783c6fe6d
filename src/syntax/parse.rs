//! Lowering pest's pairs into the owned syntax tree, with syntax errors as
//! diagnostics.

use super::ast::*;
use crate::diag::{Diagnostic, Diagnostics};
use crate::source::{FileId, SharedStr, Span};
use std::sync::Arc;
use pest::iterators::Pair;
use pest::Parser;

#[derive(pest_derive::Parser)]
#[grammar = "grammar/mln.pest"]
struct MlnParser;

/// Blocks nested deeper than this are refused before parsing: pest recurses
/// once per level and would otherwise exhaust the stack on hostile input.
pub const MAX_DEPTH: usize = 64;

/// Larger files are refused: a project file is text written by people.
pub const MAX_FILE_BYTES: usize = 16 << 20;

/// The grammar needs at most ~32 rule calls per byte on the worst inputs we
/// know (measured; fuzzed with a time limit). pest does not memoise, so as
/// a backstop against a backtracking path nobody found yet, parsing stops
/// after this many calls per byte of the largest accepted file. The limit
/// is process-wide in pest, hence one value for all files.
const CALLS_PER_BYTE: usize = 64;

fn set_call_limit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| pest::set_call_limit(std::num::NonZeroUsize::new(MAX_FILE_BYTES * CALLS_PER_BYTE)));
}

/// Parses one file. Never fails: problems are pushed to `diags` and the
/// tree holds what could be read.
pub fn parse_file(file: FileId, text: &str, diags: &mut Diagnostics) -> Vec<Entry> {
    parse_shared(file, &Arc::from(text), diags)
}

/// [`parse_file`] of a text the tree's words then share (the loader's,
/// kept in the source map) instead of a copy.
pub fn parse_shared(file: FileId, text: &Arc<str>, diags: &mut Diagnostics) -> Vec<Entry> {
    set_call_limit();
    if text.len() > MAX_FILE_BYTES {
        diags.push(
            Diagnostic::error("mln::syntax::too_large", format!("file of {} bytes; the limit is {MAX_FILE_BYTES}", text.len()))
                .label(Span::new(file, 0, 0), "this file")
                .help("split it with #include"),
        );
        return vec![];
    }
    control_characters(file, text, diags);
    if let Some(at) = too_deep(text) {
        diags.push(
            Diagnostic::error("mln::syntax::too_deep", format!("blocks nested more than {MAX_DEPTH} deep"))
                .label(Span::new(file, at, at + 1), "this block is too deep"),
        );
        return vec![];
    }
    // Parsed a piece at a time (see `PIECE_BYTES`), the pieces on every
    // core: each is lowered on its own, and they are joined in order. What
    // a piece reports is held back until every piece parsed: a piece pest
    // gives up on refuses the whole file, as it did when the file was one
    // piece.
    let mut cuts = Vec::new();
    let mut start = 0;
    while start < text.len() {
        let cut = next_cut(text, start);
        cuts.push((start, cut));
        start = cut;
    }
    let pieces = crate::parallel::map_each(&cuts, |&(start, cut)| {
        let (mut entries, mut local) = (Vec::new(), Diagnostics::default());
        let r = parse_piece(file, text, start, cut, &mut entries, &mut local);
        (r, entries, local)
    });
    let mut lowered = Diagnostics::default();
    let mut out = Vec::new();
    for (&(start, _), (r, mut entries, local)) in cuts.iter().zip(pieces) {
        match r {
            Ok(Some(_)) => {
                out.append(&mut entries);
                lowered.extend(local.into_vec());
            }
            // The piece did not end at the top level: the rest in one (the
            // pieces after it were cut in the wrong places).
            Ok(None) => match parse_piece(file, text, start, text.len(), &mut out, &mut lowered) {
                Ok(_) => break,
                Err(d) => {
                    diags.push(d);
                    return vec![];
                }
            },
            Err(d) => {
                diags.push(d);
                return vec![];
            }
        }
    }
    diags.extend(lowered.into_vec());
    out
}

/// A file is parsed in pieces: pest keeps two 40-byte tokens for every
/// rule matched until the last of its pairs is dropped, which for a file of
/// 100,000 host blocks was ~300 MB at once. A piece is at least this many
/// bytes, and a file is cut into at most [`MAX_PIECES`]: pest's call limit
/// counts per parse, so a file may take that many times the calls of one
/// parse (the bound was one parse's worth before files were cut).
const PIECE_BYTES: usize = 64 << 10;
const MAX_PIECES: usize = 16;

/// Where the piece starting at `start` may end: just after a line that is
/// a lone `}` a piece's length on, else at the end of the text. Whether
/// the grammar is at the top level there is checked after parsing
/// ([`parse_piece`]).
fn next_cut(text: &str, start: usize) -> usize {
    let from = start + PIECE_BYTES.max(text.len() / MAX_PIECES);
    if from >= text.len() {
        return text.len();
    }
    // In bytes: `from` may fall inside a character; a line feed cannot.
    match text.as_bytes()[from..].windows(3).position(|w| w == b"\n}\n") {
        Some(i) => from + i + 3,
        None => text.len(),
    }
}

/// Parses `text[start..end]` as a file and lowers its entries into `out`:
/// plain text by hand ([`super::plain`]), the rest with pest. `Ok(None)`
/// (nothing lowered) when `end` is not the end of the text and the piece's
/// top level did not end on its last line feed: then a rule may have read
/// up to the piece's end, where the whole file goes on, and the piece is
/// parsed again with the rest.
///
/// Why a piece that passes reads as the whole file does: it ends with
/// `}` and a line feed, and only a block's body or a continuation (`\`
/// before the line feed) reads past a line feed. A block whose body ran
/// to the end of the piece ends there too (its `close` matches the end of
/// input), so its statement is a top-level entry ending at `end`, which
/// fails the check; a continuation needs a `\` where the `}` is. Every
/// other rule stops at the line feed, so nothing before it looked past it.
fn parse_piece(file: FileId, text: &Arc<str>, start: usize, end: usize, out: &mut Vec<Entry>, diags: &mut Diagnostics) -> Result<Option<usize>, Diagnostic> {
    if let Some(cut) = plain_tail(text, start, end) {
        // Its head with pest, its plain tail by hand: cut where a piece may
        // be cut, so read as the piece whole is whenever the head passes
        // (else the piece is read whole, as before).
        let (mut head, mut local) = (Vec::new(), Diagnostics::default());
        if let Ok(Some(_)) = parse_piece(file, text, start, cut, &mut head, &mut local) {
            let r = parse_piece(file, text, cut, end, &mut head, &mut local)?;
            if r.is_some() {
                out.append(&mut head);
                diags.extend(local.into_vec());
            }
            return Ok(r);
        }
    }
    let (mut entries, mut local) = (Vec::new(), Diagnostics::default());
    let last = if super::plain::is_plain(&text[start..end]) {
        super::plain::parse(file, text, start, end, &mut entries, &mut local)
    } else {
        parse_pest(file, text, start, end, &mut entries, &mut local)?
    };
    if end < text.len() && last.is_some_and(|l| l >= end) {
        return Ok(None);
    }
    // Lowered on its own: a piece starts after a line feed, so its first
    // entry, were it a comment, trails nothing either way.
    out.append(&mut entries);
    diags.extend(local.into_vec());
    Ok(Some(end))
}

/// Where a piece that is not plain may be cut so that the rest is: after
/// the first line that is a lone `}` past its last byte that is not plain
/// (the first piece of a generated project is its `global` block and
/// superclasses, then hundreds of kilobytes of plain host blocks that pest
/// would otherwise read).
fn plain_tail(text: &str, start: usize, end: usize) -> Option<usize> {
    let b = &text.as_bytes()[start..end];
    let last = b.iter().rposition(|&c| !super::plain::is_plain_byte(c))?;
    let i = b[last..].windows(3).position(|w| w == b"\n}\n")?;
    let cut = start + last + i + 3;
    (cut < end).then_some(cut)
}

/// [`parse_piece`] with pest: where the last top-level entry ended (pest's
/// pair, with a statement's trailing spaces), if there is one.
fn parse_pest(file: FileId, text: &Arc<str>, start: usize, end: usize, out: &mut Vec<Entry>, diags: &mut Diagnostics) -> Result<Option<usize>, Diagnostic> {
    // The grammar is total, so an error here means a pest limit was hit.
    let pairs = match MlnParser::parse(Rule::file, &text[start..end]) {
        Ok(p) => p,
        Err(e) => {
            let at = match e.location {
                pest::error::InputLocation::Pos(p) => p,
                pest::error::InputLocation::Span((s, _)) => s,
            };
            return Err(Diagnostic::error("mln::syntax::unparsable", "this file could not be parsed")
                .label(Span::new(file, start + at, start + at), "parsing stopped here"));
        }
    };
    let file_pair = pairs.into_iter().next().expect("file rule");
    let entries: Vec<Pair<Rule>> = file_pair.into_inner().filter(|p| p.as_rule() != Rule::EOI).collect();
    let last = entries.last().map(|p| start + p.as_span().end());
    let mut lower = Lower { file, text, base: start, diags };
    lower.entries(entries, out);
    Ok(last)
}

/// Control characters (other than tab, line feed and carriage return)
/// have no place in a project file: in a name or a value they would reach
/// a guest, a command line or a terminal. One error per file, at the first,
/// with the count; parsing goes on.
fn control_characters(file: FileId, text: &str, diags: &mut Diagnostics) {
    let bad = |c: char| c.is_control() && !matches!(c, '\t' | '\n' | '\r');
    let Some((at, c)) = text.char_indices().find(|(_, c)| bad(*c)) else { return };
    let count = text.chars().filter(|c| bad(*c)).count();
    let more = match count {
        1 => String::new(),
        n => format!(" ({} more in this file)", n - 1),
    };
    diags.push(
        Diagnostic::error("mln::syntax::control_character", format!("control character U+{:04X} in the source{more}", u32::from(c)))
            .label(Span::new(file, at, at + c.len_utf8()), "here")
            .help("a project file is text: remove it (write escape sequences in shell lines for the shell to expand, quoted as `\"\\033\"` or with the backslash doubled, `\\\\033`)"),
    );
}

/// Offset of the first `{` that opens a block deeper than [`MAX_DEPTH`],
/// skipping comments, escapes and quoted strings as the grammar does: a
/// brace the pre-scan missed would let pest recurse past the limit.
fn too_deep(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'#' => {
                if let Some(after) = include_path_end(b, i) {
                    i = after;
                    continue;
                }
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            // The next character is literal, or this is a continuation.
            b'\\' => i += 1,
            b'"' => {
                if let Some(close) = closing_quote(b, i) {
                    i = close;
                }
            }
            b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Some(i);
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where a quote opened at `open` closes on its line, as `dquoted` reads it.
fn closing_quote(b: &[u8], open: usize) -> Option<usize> {
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' if b.get(j + 1).is_some_and(|n| *n != b'\n') => j += 1,
            b'"' => return Some(j),
            b'\n' => return None,
            _ => {}
        }
        j += 1;
    }
    None
}

/// After `#include PATH` at `at` (the grammar's `include`), where scanning
/// goes on; None when the `#` starts a comment instead. An unquoted path
/// stops at a carriage return or a `#`, and what follows on the line is
/// read as statements again.
fn include_path_end(b: &[u8], at: usize) -> Option<usize> {
    let rest = &b[at..];
    if !rest.starts_with(b"#include") {
        return None;
    }
    let mut j = at + "#include".len();
    let blank = |j: usize| match b.get(j) {
        Some(b' ' | b'\t' | b'\r') => 1,
        Some(0xEF) if b[j..].starts_with("\u{FEFF}".as_bytes()) => 3,
        _ => 0,
    };
    let start = j;
    while blank(j) > 0 {
        j += blank(j);
    }
    if j == start {
        return None;
    }
    if b.get(j) == Some(&b'"') {
        if let Some(close) = closing_quote(b, j) {
            return Some(close + 1);
        }
    }
    let path_start = j;
    while j < b.len() && !matches!(b[j], b'\n' | b'\r' | b'#') {
        j += 1;
    }
    (j > path_start).then_some(j)
}

pub(super) fn stray_close(span: Span) -> Diagnostic {
    Diagnostic::error("mln::syntax::stray_close", "unexpected `}`")
        .label(span, "no block is open here")
        .help("remove it, or look for a block closed twice above")
}

pub(super) fn unclosed_block(open: Span) -> Diagnostic {
    Diagnostic::error("mln::syntax::unclosed_block", "block never closed")
        .label(open, "this `{` has no matching `}` before the end of the file")
        .help("add the missing `}`")
}

struct Lower<'a> {
    file: FileId,
    /// The whole file; pest's positions are in the piece at `base`.
    text: &'a Arc<str>,
    base: usize,
    diags: &'a mut Diagnostics,
}

impl<'a> Lower<'a> {
    fn span(&self, p: &Pair<Rule>) -> Span {
        let s = p.as_span();
        Span::new(self.file, self.base + s.start(), self.base + s.end())
    }

    /// Lowers `pairs` onto the end of `out` (a file's entries are lowered
    /// a piece at a time).
    fn entries<'i>(&mut self, pairs: impl IntoIterator<Item = Pair<'i, Rule>>, out: &mut Vec<Entry>) {
        for p in pairs {
            let entry = match p.as_rule() {
                Rule::statement => Entry::Statement(self.statement(p)),
                Rule::assignment => Entry::Assignment(self.assignment(p)),
                Rule::comment => {
                    let span = self.span(&p);
                    let trailing = out.last().is_some_and(|prev| {
                        !self.text[prev.span().end as usize..span.start as usize].contains('\n')
                    });
                    Entry::Comment(Comment { text: p.as_str().trim_end().to_string(), span, trailing })
                }
                Rule::include => {
                    let span = self.span(&p);
                    let whole = p.as_str().trim_end().to_string();
                    let path_pair = p.into_inner().next().expect("include path");
                    let raw = path_pair.as_str().trim_end();
                    // Found by the fuzzer: a "path" of odd white space (a
                    // vertical tab) is no path; the line is a comment.
                    if raw.is_empty() {
                        out.push(Entry::Comment(Comment { text: whole, span, trailing: false }));
                        continue;
                    }
                    let path_start = self.base + path_pair.as_span().start();
                    let path_span = Span::new(self.file, path_start, path_start + raw.len());
                    let path = if raw.starts_with('"') && raw.ends_with('"') && raw.len() >= 2 {
                        raw[1..raw.len() - 1].to_string()
                    } else {
                        raw.to_string()
                    };
                    Entry::Include(Include { path, path_span, span: span.to(path_span), file: None })
                }
                Rule::bad_line => {
                    // Kept so the grammar stays total; every line reads as
                    // statements since quotes that do not close are text.
                    let span = self.span(&p);
                    self.diags.push(Diagnostic::error("mln::syntax::bad_statement", "this is not a statement").label(span, ""));
                    Entry::Error(SyntaxError { span, kind: SyntaxErrorKind::BadLine })
                }
                Rule::stray_close => {
                    let span = self.span(&p);
                    self.diags.push(stray_close(span));
                    Entry::Error(SyntaxError { span, kind: SyntaxErrorKind::StrayClose })
                }
                Rule::EOI => continue,
                r => unreachable!("rule {r:?} at entry level"),
            };
            out.push(entry);
        }
    }

    fn words(&mut self, p: Pair<Rule>) -> Vec<Word> {
        let mut words: Vec<Word> = p
            .into_inner()
            .map(|w| {
                let span = self.span(&w);
                Word { raw: SharedStr::slice(self.text, span.range()), span, quoted: w.as_rule() == Rule::dquoted }
            })
            .collect();
        words.shrink_to_fit();
        for w in words.iter().filter(|w| !w.quoted) {
            for at in w.open_quotes() {
                let start = w.span.start as usize + at;
                // MLN has no quoting, and real files rely on it (a quoted
                // `echo` spread over lines); a forgotten closing quote looks
                // the same, hence a warning and not silence.
                self.diags.push(
                    Diagnostic::warning("mln::syntax::open_quote", "this `\"` does not close on its line: it is taken literally, as MLN does")
                        .label(Span::new(self.file, start, start + 1), "a literal `\"`")
                        .help("a quoted value ends on the line it starts; write `\\\"` for a quote that is meant literally"),
                );
            }
        }
        words
    }

    fn statement(&mut self, p: Pair<Rule>) -> Statement {
        let mut span = self.span(&p);
        let mut words = Vec::new();
        let mut block = None;
        for part in p.into_inner() {
            match part.as_rule() {
                Rule::words => words = self.words(part),
                Rule::block => block = Some(self.block(part)),
                r => unreachable!("rule {r:?} in statement"),
            }
        }
        // Trailing spaces are not part of a statement without a block.
        if block.is_none() {
            if let Some(last) = words.last() {
                span.end = last.span.end;
            }
        }
        Statement { words, block, span }
    }

    fn block(&mut self, p: Pair<Rule>) -> Block {
        let start = self.base + p.as_span().start();
        let open = Span::new(self.file, start, start + 1);
        let mut entries = Vec::new();
        let mut close = None;
        for part in p.into_inner() {
            match part.as_rule() {
                Rule::body => self.entries(part.into_inner(), &mut entries),
                Rule::close => {
                    if part.as_str() == "}" {
                        close = Some(self.span(&part));
                    } else {
                        self.diags.push(unclosed_block(open));
                    }
                }
                r => unreachable!("rule {r:?} in block"),
            }
        }
        // Most blocks of a large project hold a statement or three, in room
        // for four.
        entries.shrink_to_fit();
        Block { entries, open, close }
    }

    fn assignment(&mut self, p: Pair<Rule>) -> Assignment {
        let mut span = self.span(&p);
        let mut inner = p.into_inner();
        let name_pair = inner.next().expect("var name");
        let name_span = self.span(&name_pair);
        let value = inner.next().map(|w| self.words(w)).unwrap_or_default();
        span.end = value.last().map(|w| w.span.end).unwrap_or(span.end);
        Assignment { name: name_pair.as_str().to_string(), name_span: Span { start: name_span.start - 1, ..name_span }, value, span }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Entry>, Diagnostics) {
        let mut d = Diagnostics::default();
        let e = parse_file(FileId(0), text, &mut d);
        (e, d)
    }

    fn keys(entries: &[Entry]) -> Vec<String> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Statement(s) => Some(s.words.iter().map(|w| w.raw.as_str()).collect::<Vec<_>>().join(" ")),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn semicolons_split_statements_and_braces_close_on_a_line() {
        let (e, d) = parse("host a {\n memory 64M; term screen }\n");
        assert!(d.is_empty());
        let Entry::Statement(h) = &e[0] else { panic!() };
        assert_eq!(keys(&h.block.as_ref().unwrap().entries), vec!["memory 64M", "term screen"]);
    }

    #[test]
    fn a_brace_glued_to_a_name_opens_a_block() {
        let (e, d) = parse("host one{\nxen\n}");
        assert!(d.is_empty(), "{d:?}");
        let Entry::Statement(h) = &e[0] else { panic!() };
        assert_eq!(h.words[1].raw, "one");
        assert_eq!(keys(&h.block.as_ref().unwrap().entries), vec!["xen"]);
    }

    #[test]
    fn last_character_of_a_file_without_newline_is_kept() {
        let (e, _) = parse("global {\n project abc\n}\nhost x {\n memory 64M}");
        let Entry::Statement(h) = &e[1] else { panic!() };
        assert_eq!(keys(&h.block.as_ref().unwrap().entries), vec!["memory 64M"]);
    }

    #[test]
    fn quoted_values_hold_comment_and_statement_characters() {
        let (e, d) = parse("x \"a # b; c { }\" # real comment\n");
        assert!(d.is_empty());
        let Entry::Statement(s) = &e[0] else { panic!() };
        assert_eq!(s.words[1].unquoted(), "a # b; c { }");
        let Entry::Comment(c) = &e[1] else { panic!() };
        assert!(c.trailing);
    }

    #[test]
    fn every_syntax_error_is_reported_in_one_run() {
        let (_, d) = parse("a \"open\n}\nhost x {\n b \"also open\n");
        let codes: Vec<_> = d.iter().map(|d| d.code).collect();
        assert_eq!(
            codes,
            vec![
                "mln::syntax::open_quote",
                "mln::syntax::stray_close",
                "mln::syntax::open_quote",
                "mln::syntax::unclosed_block"
            ]
        );
    }

    #[test]
    fn quotes_that_do_not_close_on_their_line_are_text() {
        let (e, d) = parse("echo \"Alias /svn /var/www/svn\n</Location>\" | tee -a x.conf\nx \"a b\" \\\"c\n");
        assert_eq!(
            keys(&e),
            vec!["echo \"Alias /svn /var/www/svn", "</Location>\" | tee -a x.conf", "x \"a b\" \\\"c"]
        );
        // Two warnings, each at its quote; the closed and the escaped quote
        // are none.
        let at: Vec<_> = d.iter().map(|d| (d.code, d.primary_span().unwrap().start)).collect();
        assert_eq!(at, vec![("mln::syntax::open_quote", 5), ("mln::syntax::open_quote", 41)]);
        let Entry::Statement(s) = &e[2] else { panic!() };
        assert!(s.words[1].quoted && !s.words[2].quoted);
        assert_eq!(s.words[2].unquoted(), "\"c");
    }

    #[test]
    fn a_backslash_takes_the_next_character_and_continues_lines() {
        let (e, d) = parse("echo a \\\n   b c\necho x\\;y \\{ z\\}\\#w\nlast \\\r\n word\\");
        assert!(d.is_empty(), "{d:?}");
        assert_eq!(keys(&e), vec!["echo a b c", "echo x\\;y \\{ z\\}\\#w", "last word"]);
        let Entry::Statement(s) = &e[1] else { panic!() };
        let words: Vec<_> = s.words.iter().map(|w| w.unquoted()).collect();
        assert_eq!(words, ["echo", "x;y", "{", "z}#w"]);
    }

    #[test]
    fn the_depth_prescan_reads_escapes_and_open_quotes_as_the_grammar_does() {
        // Braces after a quote that does not close open blocks...
        let (_, d) = parse(&"a \"{\n".repeat(MAX_DEPTH + 1));
        assert!(d.iter().any(|d| d.code == "mln::syntax::too_deep"));
        // ...and escaped braces open none.
        let (_, d) = parse(&"a \\{\n".repeat(MAX_DEPTH + 1));
        assert!(!d.iter().any(|d| d.code == "mln::syntax::too_deep"), "{d:?}");
        // A block after an include path on the same line.
        let (_, d) = parse(&"#include x\r{\n".repeat(MAX_DEPTH + 1));
        assert!(d.iter().any(|d| d.code == "mln::syntax::too_deep"));
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let text = "a {".repeat(100_000);
        let (e, d) = parse(&text);
        assert!(e.is_empty());
        assert_eq!(d.iter().next().unwrap().code, "mln::syntax::too_deep");
    }

    /// The whole text through pest in one piece, as files were read before
    /// they were cut.
    fn pest_whole(text: &str) -> (Vec<Entry>, Vec<Diagnostic>) {
        let text: Arc<str> = text.into();
        let (mut e, mut d) = (Vec::new(), Diagnostics::default());
        parse_pest(FileId(0), &text, 0, text.len(), &mut e, &mut d).expect("parsed");
        (e, d.into_vec())
    }

    /// Pseudo-random (xorshift) text of pieces the grammar cares about.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 >> 8) as usize
        }
        fn text(&mut self, len: usize, plain_only: bool) -> String {
            let plain = ["host", "a1", " ", "  ", "\n", "{", "}", "\n}\n", "x.y:z/-_", " {\n", "}\n"];
            let other = ["\"q\"", "\"open", "#c", "#include x", "$v = 1", "\\\n", ";", "\t", "\\}", "é", "\r\n", "\"a b\" "];
            let mut s = String::new();
            while s.len() < len {
                let n = self.next();
                s.push_str(if plain_only || n % 5 != 0 { plain[n / 5 % plain.len()] } else { other[n / 5 % other.len()] });
            }
            s
        }
    }

    #[test]
    fn plain_text_reads_as_pest_reads_it() {
        let mut g = Gen(0x9e37_79b9_7f4a_7c15);
        for i in 0..1000 {
            let t = g.text(i % 200 + 1, true);
            assert!(super::super::plain::is_plain(&t));
            let text: Arc<str> = t.as_str().into();
            let (mut e, mut d) = (Vec::new(), Diagnostics::default());
            let last = super::super::plain::parse(FileId(0), &text, 0, text.len(), &mut e, &mut d);
            let (mut pe, mut pd) = (Vec::new(), Diagnostics::default());
            let pest_last = parse_pest(FileId(0), &text, 0, text.len(), &mut pe, &mut pd).unwrap();
            assert_eq!((e, d.into_vec(), last), (pe, pd.into_vec(), pest_last), "{t:?}");
        }
    }

    #[test]
    fn a_file_read_in_pieces_reads_as_it_does_whole() {
        let host = |i: usize| format!("host h{i} {{\n  memory 64M\n  network eth0 {{\n    address 10.0.0.{}\n  }}\n}}\n", i % 250);
        let mut g = Gen(0x2545_f491_4f6c_dd1d);
        for round in 0..4 {
            let mut t = String::new();
            let mut i = 0;
            while t.len() < 3 * PIECE_BYTES {
                t += &match g.next() % 40 {
                    // A stray or an unclosed brace, a quote, a comment, a
                    // continuation: text that moves or defeats the cuts.
                    0 if round > 0 => g.text(30, false),
                    1 if round > 1 => "host q {\n echo \"a } b\" # c \\\n d\n}\n".to_string(),
                    _ => host(i),
                };
                i += 1;
            }
            let mut d = Diagnostics::default();
            let e = parse_file(FileId(0), &t, &mut d);
            // Too deep is refused before either reads it.
            if d.iter().any(|d| d.code == "mln::syntax::too_deep") {
                continue;
            }
            let (pe, pd) = pest_whole(&t);
            assert!(e == pe, "round {round}: the entries differ");
            assert_eq!(d.into_vec(), pd, "round {round}");
        }
    }

    #[test]
    fn include_and_assignment() {
        let (e, d) = parse("$gw = 10.0.0.1\n#include servers.txt  \n");
        assert!(d.is_empty());
        let Entry::Assignment(a) = &e[0] else { panic!() };
        assert_eq!((a.name.as_str(), a.value[0].raw.as_str()), ("gw", "10.0.0.1"));
        let Entry::Include(i) = &e[1] else { panic!() };
        assert_eq!(i.path, "servers.txt");
    }
}
