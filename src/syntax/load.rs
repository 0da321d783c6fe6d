//! Reads a project file and everything it `#include`s, relative to the
//! including file, refusing missing files and cycles with both locations.

use super::ast::{Entry, Include};
use super::parse::parse_shared;
use crate::diag::{Diagnostic, Diagnostics};
use crate::source::{normalize, outside_diagnostic, refusal, FileId, FileSystem, Refusal, Roots, SourceMap, Span};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A project's files, parsed. `trees[root]` is the project file.
#[derive(Debug, Default)]
pub struct Loaded {
    pub root: Option<FileId>,
    pub trees: HashMap<FileId, Vec<Entry>>,
}

/// Reads the project file at `path` and every file it includes. Includes
/// must lie under `roots` (the project's directory, or one the user
/// allowed): checked before anything is read.
pub fn load(path: &Path, fs: &dyn FileSystem, roots: &Roots, sources: &mut SourceMap, diags: &mut Diagnostics) -> Loaded {
    let mut loader =
        Loader { fs, roots, sources, diags, by_path: HashMap::new(), stack: Vec::new(), loaded: Loaded::default() };
    let path = normalize(path);
    match fs.read(&path) {
        Ok(text) => {
            let id = loader.add(path, text);
            loader.loaded.root = Some(id);
        }
        Err(e) => {
            let (code, what) = match refusal(&e) {
                Some(Refusal::NotRegular(_)) => ("mln::io::not_regular", "cannot read project file"),
                Some(Refusal::TooLarge(_)) => ("mln::syntax::too_large", "cannot read project file"),
                None => ("mln::io::read", "cannot read project file"),
            };
            loader.diags.push(Diagnostic::error(code, format!("{what} {}: {}", crate::term::escape(&path.display().to_string()), e)))
        }
    }
    loader.loaded
}

struct Loader<'a> {
    fs: &'a dyn FileSystem,
    roots: &'a Roots,
    sources: &'a mut SourceMap,
    diags: &'a mut Diagnostics,
    by_path: HashMap<PathBuf, FileId>,
    /// Files being loaded, with the include that led into each (for cycles).
    stack: Vec<(FileId, Option<Span>)>,
    loaded: Loaded,
}

impl Loader<'_> {
    fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let id = self.sources.add(path.clone(), path.display().to_string(), text);
        self.by_path.insert(path, id);
        let text = self.sources.file(id).text.clone();
        let mut entries = parse_shared(id, &text, self.diags);
        self.stack.push((id, None));
        self.resolve_includes(id, &mut entries);
        self.stack.pop();
        self.loaded.trees.insert(id, entries);
        id
    }

    fn resolve_includes(&mut self, file: FileId, entries: &mut [Entry]) {
        for e in entries {
            match e {
                Entry::Include(inc) => self.include(file, inc),
                Entry::Statement(s) => {
                    if let Some(b) = &mut s.block {
                        self.resolve_includes(file, &mut b.entries)
                    }
                }
                _ => {}
            }
        }
    }

    fn include(&mut self, from: FileId, inc: &mut Include) {
        let base = self.sources.file(from).path.parent().map(Path::to_path_buf).unwrap_or_default();
        let target = normalize(&base.join(&inc.path));
        if let Some(&id) = self.by_path.get(&target) {
            if let Some(pos) = self.stack.iter().position(|(f, _)| *f == id) {
                let mut d = Diagnostic::error("mln::include::cycle", format!("`{}` includes itself", inc.path))
                    .label(inc.path_span, "this include closes the cycle");
                // The include that first entered the cycle, in the other file.
                if let Some((_, Some(entered))) = self.stack.get(pos) {
                    d = d.label(*entered, "the cycle starts with this include");
                }
                self.diags.push(d.help("an included file must not include, directly or not, the file including it"));
                return;
            }
            inc.file = Some(id);
            return;
        }
        // Whether it may be read is decided before it is: `#include
        // /etc/shadow` would show shadow's lines in the diagnostics.
        let resolved = match self.roots.check(self.fs, &target) {
            Ok(r) => r,
            Err(r) => {
                self.diags.push(outside_diagnostic("include", &inc.path, &r, self.roots, inc.path_span));
                return;
            }
        };
        match self.fs.read(&resolved) {
            Ok(text) => {
                if let Some(top) = self.stack.last_mut() {
                    top.1 = Some(inc.path_span);
                }
                inc.file = Some(self.add(target, text));
                if let Some(top) = self.stack.last_mut() {
                    top.1 = None;
                }
            }
            Err(e) => {
                let (code, help) = match refusal(&e) {
                    Some(Refusal::NotRegular(_)) => ("mln::io::not_regular", "only regular files can be included"),
                    Some(Refusal::TooLarge(_)) => ("mln::syntax::too_large", "split it into smaller files"),
                    None => ("mln::include::missing", "include paths are relative to the file that includes them"),
                };
                self.diags.push(
                    Diagnostic::error(code, format!("cannot include `{}`", inc.path))
                        .label(inc.path_span, format!("{}: {e}", target.display()))
                        .help(help),
                )
            }
        }
    }
}
