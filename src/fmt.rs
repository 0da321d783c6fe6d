//! `mln fmt`: one canonical layout. One statement per line, four spaces per
//! level, one space between words, comments kept where they were, at most
//! one blank line in a row. It never changes what a file means.

use crate::syntax::{Entry, Statement, Word};

const INDENT: &str = "    ";

/// Formats a parsed file. `text` is the file's source (for blank lines).
/// Callers must not format a file with syntax errors.
pub fn format(entries: &[Entry], text: &str) -> String {
    let mut out = String::new();
    block(entries, text, 0, &mut out);
    // One newline at the end, none at the start.
    let trimmed = out.trim_start_matches('\n').trim_end();
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}\n")
    }
}

fn block(entries: &[Entry], text: &str, depth: usize, out: &mut String) {
    let mut prev_end: Option<usize> = None;
    for e in entries {
        let span = e.span();
        if let Entry::Comment(c) = e {
            if c.trailing && prev_end.is_some() {
                out.push(' ');
                out.push_str(&c.text);
                prev_end = Some(span.end as usize);
                continue;
            }
        }
        if let Some(p) = prev_end {
            out.push('\n');
            if text[p..span.start as usize].matches('\n').count() >= 2 {
                out.push('\n');
            }
        } else if depth > 0 {
            out.push('\n');
        }
        out.push_str(&INDENT.repeat(depth));
        match e {
            Entry::Statement(s) => statement(s, text, depth, out),
            Entry::Assignment(a) => {
                out.push('$');
                out.push_str(&a.name);
                out.push_str(" =");
                if !a.value.is_empty() {
                    out.push(' ');
                    words(&a.value, text, depth, out);
                }
            }
            Entry::Comment(c) => out.push_str(&c.text),
            Entry::Include(i) => {
                // The path exactly as written: re-quoting could change it.
                out.push_str("#include ");
                out.push_str(&text[i.path_span.range()]);
            }
            Entry::Error(_) => out.push_str(&text[span.range()]),
        }
        prev_end = Some(span.end as usize);
    }
}

fn statement(s: &Statement, text: &str, depth: usize, out: &mut String) {
    words(&s.words, text, depth, out);
    if let Some(b) = &s.block {
        if !s.words.is_empty() {
            out.push(' ');
        }
        if b.entries.is_empty() {
            out.push_str("{ }");
            return;
        }
        out.push('{');
        block(&b.entries, text, depth + 1, out);
        out.push('\n');
        out.push_str(&INDENT.repeat(depth));
        out.push('}');
    }
}

/// Words continued over lines with `\` stay on their lines: whether a `"`
/// closes depends on what else stands on its line.
fn words(ws: &[Word], text: &str, depth: usize, out: &mut String) {
    for (i, w) in ws.iter().enumerate() {
        if i > 0 && w.span.start > ws[i - 1].span.end {
            if text[ws[i - 1].span.end as usize..w.span.start as usize].contains('\n') {
                out.push_str(" \\\n");
                out.push_str(&INDENT.repeat(depth + 1));
            } else {
                out.push(' ');
            }
        }
        out.push_str(&w.raw);
    }
}

#[cfg(test)]
mod tests {
    use crate::diag::Diagnostics;
    use crate::source::FileId;

    fn fmt(text: &str) -> String {
        let mut d = Diagnostics::default();
        let e = crate::syntax::parse_file(FileId(0), text, &mut d);
        // A fuzzer case below holds a vertical tab: an error for the
        // compiler (and `mln fmt`), but the formatter must still be stable.
        assert!(d.iter().all(|d| d.code == "mln::syntax::control_character" || d.severity == crate::diag::Severity::Warning), "{d:?}");
        super::format(&e, text)
    }

    #[test]
    fn canonical_layout_keeps_comments() {
        let src = "# top\nglobal{project x;$a=1 # why\n\n\n  }\nhost h {memory 64M; users { u VUmaegY1g8q4I } }   # end\n";
        let want = "# top\nglobal {\n    project x\n    $a = 1 # why\n}\nhost h {\n    memory 64M\n    users {\n        u VUmaegY1g8q4I\n    }\n} # end\n";
        assert_eq!(fmt(src), want);
        assert_eq!(fmt(want), want);
    }

    #[test]
    fn continued_lines_stay_continued() {
        let src = "host h {\nstartup {\necho \"a \\\n  b\" c\\;d\n}\n}\n";
        let want = "host h {\n    startup {\n        echo \"a \\\n            b\" c\\;d\n    }\n}\n";
        assert_eq!(fmt(src), want);
        assert_eq!(fmt(want), want);
    }

    /// Found by the fuzzer: a path holding a quote was re-quoted into text
    /// that no longer parsed.
    #[test]
    fn include_paths_are_kept_as_written() {
        for src in [
            "g\n#include \" glo{\n",
            "#include \"a b.mln\"\n",
            "#include  x y.mln \n",
            // Also found by the fuzzer: a comment after an unquoted path.
            "#include `\r\r# c\n",
            "#include\r\u{b}\n",
        ] {
            let once = fmt(src);
            assert_eq!(fmt(&once), once);
        }
        assert_eq!(fmt("#include  \"a b.mln\"  \n"), "#include \"a b.mln\"\n");
    }
}
