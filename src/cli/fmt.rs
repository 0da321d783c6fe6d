//! `mln fmt [--check] FILE...`: the canonical layout, comments kept.

use super::context::Global;
use mln::diag::render_all;
use mln::source::{DiskFs, FileSystem};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct Args {
    /// Only report files that are not formatted; exit 1 if any.
    #[arg(long)]
    pub check: bool,
    pub files: Vec<PathBuf>,
}

pub fn run(a: Args, g: &Global) -> ExitCode {
    let mut ok = true;
    let mut unformatted = 0;
    for f in &a.files {
        let text = match DiskFs.read(f) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("mln fmt: cannot read {}: {e}", f.display());
                ok = false;
                continue;
            }
        };
        let mut sources = mln::source::SourceMap::default();
        let id = sources.add(f.clone(), f.display().to_string(), text.clone());
        let mut diags = mln::diag::Diagnostics::default();
        let entries = mln::syntax::parse_file(id, &text, &mut diags);
        if diags.has_errors() {
            eprint!("{}", render_all(diags.sorted(), &sources, g.style()));
            eprintln!("mln fmt: {} not formatted: fix the syntax errors first", f.display());
            ok = false;
            continue;
        }
        let formatted = mln::fmt::format(&entries, &text);
        if formatted != text {
            unformatted += 1;
            if a.check {
                println!("{}", f.display());
            } else if let Err(e) = std::fs::write(f, formatted) {
                eprintln!("mln fmt: cannot write {}: {e}", f.display());
                ok = false;
            }
        }
    }
    super::context::exit(ok && !(a.check && unformatted > 0))
}
