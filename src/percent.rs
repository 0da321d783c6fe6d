//! Percent-encoding as URIs carry it (`%XX`), decoded strictly: a
//! malformed escape is an error, not passed through, since what is decoded
//! here becomes a path (a libvirt socket, a file of the boot tree).

/// `%XX` escapes decoded; None when an escape is malformed or the result
/// is not UTF-8.
pub fn decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
