//! Any bytes as a project file: the compiler must not panic, and wherever
//! the file parses, `fmt` must be idempotent.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mln::diag::Diagnostics;
use mln::plugin::Registry;
use mln::source::{FileId, MemoryFs};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let fs = MemoryFs::default()
        .with("p.mln", text)
        .with("inc.mln", "superclass inc {\n memory 64M\n}\n")
        .with("servers.txt", "a 2\nb\nc all\n");
    let c = mln::compile(std::path::Path::new("p.mln"), &fs, Registry::with_plugins(mln::builtin_plugins()));
    let _ = mln::diag::render_all(c.diags.sorted(), &c.sources, mln::diag::RenderStyle::Plain);

    let mut d = Diagnostics::default();
    let entries = mln::syntax::parse_file(FileId(0), text, &mut d);
    if !d.has_errors() {
        let once = mln::fmt::format(&entries, text);
        let mut d2 = Diagnostics::default();
        let again = mln::syntax::parse_file(FileId(0), &once, &mut d2);
        assert!(!d2.has_errors(), "fmt output does not parse:\n{once}");
        assert_eq!(mln::fmt::format(&again, &once), once, "fmt is not idempotent");
    }
});
