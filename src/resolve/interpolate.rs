//! Variable references inside words: `$name`, `$[name]`, and `\$` for a
//! literal dollar sign. Outside quotes every `\` takes the next character
//! literally, as MLN's reader does.

use crate::source::Span;
use crate::syntax::Word;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Var { name: String, span: Span },
}

/// Splits a word into text and variable references, with the exact span
/// of each reference. Quotes and escapes are removed.
pub fn pieces(word: &Word) -> Vec<Piece> {
    let raw = word.raw.as_bytes();
    let (start, end) = if word.quoted { (1, raw.len().saturating_sub(1)) } else { (0, raw.len()) };
    let mut out = Vec::new();
    let mut text = String::new();
    let mut i = start;
    let span_of = |a: usize, b: usize| Span { file: word.span.file, start: word.span.start + a as u32, end: word.span.start + b as u32 };
    while i < end {
        let c = raw[i];
        if c == b'\\' && i + 1 < end {
            let n = raw[i + 1];
            if n == b'$' || (word.quoted && (n == b'"' || n == b'\\')) {
                text.push(n as char);
                i += 2;
                continue;
            }
            // Outside quotes, as in MLN, the next character is literal.
            if !word.quoted {
                let len = utf8_len(n);
                text.push_str(&word.raw[i + 1..(i + 1 + len).min(end)]);
                i += 1 + len;
                continue;
            }
        }
        if c == b'$' {
            let name_at = |j: usize| {
                let mut k = j;
                while k < end && (raw[k].is_ascii_alphanumeric() || raw[k] == b'_') {
                    k += 1;
                }
                k
            };
            if i + 1 < end && raw[i + 1] == b'[' {
                let k = name_at(i + 2);
                if k > i + 2 && k < end && raw[k] == b']' {
                    flush(&mut text, &mut out);
                    out.push(Piece::Var { name: word.raw[i + 2..k].to_string(), span: span_of(i, k + 1) });
                    i = k + 1;
                    continue;
                }
            } else {
                let k = name_at(i + 1);
                if k > i + 1 {
                    flush(&mut text, &mut out);
                    out.push(Piece::Var { name: word.raw[i + 1..k].to_string(), span: span_of(i, k) });
                    i = k;
                    continue;
                }
            }
        }
        // Multi-byte characters are copied whole.
        let len = utf8_len(c);
        text.push_str(&word.raw[i..(i + len).min(end)]);
        i += len;
    }
    flush(&mut text, &mut out);
    out
}

fn flush(text: &mut String, out: &mut Vec<Piece>) {
    if !text.is_empty() {
        out.push(Piece::Text(std::mem::take(text)));
    }
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// The names a text refers to, for the unused-variable check.
pub fn referenced_names(words: &[Word]) -> impl Iterator<Item = String> + '_ {
    // Most words refer to nothing: not split into pieces (allocating) then.
    words.iter().filter(|w| w.raw.contains('$')).flat_map(pieces).filter_map(|p| match p {
        Piece::Var { name, .. } => Some(name),
        Piece::Text(_) => None,
    })
}

/// If the whole word is exactly one reference, its name.
pub fn sole_reference(word: &Word) -> Option<String> {
    if !word.raw.contains('$') {
        return None;
    }
    match pieces(word).as_slice() {
        [Piece::Var { name, .. }] => Some(name.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::FileId;

    fn w(raw: &str) -> Word {
        Word { raw: raw.into(), span: Span::new(FileId(0), 10, 10 + raw.len()), quoted: raw.starts_with('"') }
    }

    #[test]
    fn both_reference_forms_and_escapes() {
        let p = pieces(&w("$[mem]M-$x\\$y"));
        assert_eq!(
            p,
            vec![
                Piece::Var { name: "mem".into(), span: Span::new(FileId(0), 10, 16) },
                Piece::Text("M-".into()),
                Piece::Var { name: "x".into(), span: Span::new(FileId(0), 18, 20) },
                Piece::Text("$y".into()),
            ]
        );
    }

    #[test]
    fn quoted_words_interpolate_and_unescape() {
        let p = pieces(&w(r#""a \"$b\" \$c""#));
        assert_eq!(
            p,
            vec![
                Piece::Text("a \"".into()),
                Piece::Var { name: "b".into(), span: Span::new(FileId(0), 15, 17) },
                Piece::Text("\" $c".into()),
            ]
        );
    }

    #[test]
    fn outside_quotes_a_backslash_takes_the_next_character() {
        assert_eq!(pieces(&w("x\\;y\\}\\\\\\é")), vec![Piece::Text("x;y}\\é".into())]);
        // Inside quotes only `\"`, `\\` and `\$` are escapes.
        assert_eq!(pieces(&w(r#""a\;b""#)), vec![Piece::Text("a\\;b".into())]);
    }

    #[test]
    fn a_lone_dollar_is_text() {
        assert_eq!(pieces(&w("5$")), vec![Piece::Text("5$".into())]);
        assert_eq!(pieces(&w("$[unclosed")), vec![Piece::Text("$[unclosed".into())]);
    }
}
