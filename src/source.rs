//! Source files, spans, and the one door to the file system.
//!
//! The compiler never touches the disk directly: it asks a [`FileSystem`],
//! so tests (and fuzzing) run on files held in memory.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct FileId(pub u32);

/// A byte range in one source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct Span {
    pub file: FileId,
    pub start: u32,
    pub end: u32,
}

impl Span {
    pub fn new(file: FileId, start: usize, end: usize) -> Span {
        Span { file, start: start as u32, end: end as u32 }
    }
    pub fn len(&self) -> usize {
        (self.end - self.start) as usize
    }
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
    /// The smallest span covering both (same file assumed).
    pub fn to(self, other: Span) -> Span {
        Span { file: self.file, start: self.start.min(other.start), end: self.end.max(other.end) }
    }
    pub fn range(&self) -> std::ops::Range<usize> {
        self.start as usize..self.end as usize
    }
}

/// Text shared with the source file it was read from: a word of a
/// 100,000-host project is a range of the file's text, not a string of its
/// own (a string each was ten allocations per host in the syntax tree, and
/// more in the definitions that copy its words).
#[derive(Clone)]
pub struct SharedStr {
    text: Arc<str>,
    start: u32,
    end: u32,
}

impl SharedStr {
    /// `text[range]`; the range must lie on character boundaries (a
    /// parser's token does).
    pub fn slice(text: &Arc<str>, range: std::ops::Range<usize>) -> SharedStr {
        debug_assert!(text.is_char_boundary(range.start) && text.is_char_boundary(range.end));
        SharedStr { text: text.clone(), start: range.start as u32, end: range.end as u32 }
    }
    pub fn as_str(&self) -> &str {
        &self.text[self.start as usize..self.end as usize]
    }
    /// The whole text this is part of (a word's: its file's).
    pub fn source(&self) -> &Arc<str> {
        &self.text
    }
}

impl std::ops::Deref for SharedStr {
    type Target = str;
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<String> for SharedStr {
    fn from(s: String) -> SharedStr {
        let end = s.len() as u32;
        SharedStr { text: s.into(), start: 0, end }
    }
}

impl From<&str> for SharedStr {
    fn from(s: &str) -> SharedStr {
        SharedStr { text: s.into(), start: 0, end: s.len() as u32 }
    }
}

impl PartialEq for SharedStr {
    fn eq(&self, other: &SharedStr) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for SharedStr {}

impl PartialEq<str> for SharedStr {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for SharedStr {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::fmt::Debug for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl std::fmt::Display for SharedStr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    /// The path as shown to the user (relative to where they ran mln).
    pub name: String,
    pub text: Arc<str>,
}

/// Every file the compiler read, so diagnostics can show snippets from any.
#[derive(Debug, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    pub fn add(&mut self, path: PathBuf, name: String, text: String) -> FileId {
        self.files.push(SourceFile { path, name, text: text.into() });
        FileId(self.files.len() as u32 - 1)
    }
    pub fn file(&self, id: FileId) -> &SourceFile {
        &self.files[id.0 as usize]
    }
    pub fn text(&self, span: Span) -> &str {
        &self.file(span.file).text[span.range()]
    }
    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, file: FileId, offset: u32) -> (usize, usize) {
        let text = &self.file(file).text;
        let offset = (offset as usize).min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map(|i| i + 1).unwrap_or(0);
        (line, before[line_start..].chars().count() + 1)
    }
    /// `file:line:col`, the way editors and terminals link to a place.
    pub fn location(&self, span: Span) -> String {
        let (l, c) = self.line_col(span.file, span.start);
        format!("{}:{}:{}", self.file(span.file).name, l, c)
    }
}

/// Files over this size are refused before they are read (the parser's
/// limit: a project file is text written by people).
pub const MAX_READ_BYTES: usize = crate::syntax::MAX_FILE_BYTES;

/// Why a file was refused without reading it. Carried inside the
/// [`io::Error`] that [`FileSystem::read`] returns; [`refusal`] gets it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// A directory, FIFO, socket or device: reading one could hang (a
    /// FIFO), never end (`/dev/zero`) or do something (a tape, a tty).
    NotRegular(&'static str),
    /// Over [`MAX_READ_BYTES`]; the size in bytes.
    TooLarge(u64),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NotRegular(what) => write!(f, "{what}, not a regular file"),
            Refusal::TooLarge(n) => write!(f, "a file of {n} bytes; the limit is {MAX_READ_BYTES}"),
        }
    }
}

impl std::error::Error for Refusal {}

impl Refusal {
    fn into_io(self) -> io::Error {
        let kind = match self {
            Refusal::NotRegular(_) => io::ErrorKind::InvalidInput,
            Refusal::TooLarge(_) => io::ErrorKind::FileTooLarge,
        };
        io::Error::new(kind, self)
    }
}

/// The refusal inside an error from [`FileSystem::read`], if it is one.
pub fn refusal(e: &io::Error) -> Option<&Refusal> {
    e.get_ref()?.downcast_ref::<Refusal>()
}

/// What the compiler needs from a file system. `Sync`: hosts are checked
/// on several threads.
pub trait FileSystem: Sync {
    /// A regular file's text, at most [`MAX_READ_BYTES`]; anything else is
    /// refused (a [`Refusal`]) before it is read.
    fn read(&self, path: &Path) -> io::Result<String>;
    fn exists(&self, path: &Path) -> bool;
    /// The path as the file system will find it, for deciding whether it
    /// lies under a directory: `..` and `.` removed and, on a real disk,
    /// absolute with symbolic links resolved (as far as the path exists).
    fn resolve(&self, path: &Path) -> PathBuf {
        normalize(path)
    }
}

/// The real disk.
#[derive(Clone, Copy, Debug, Default)]
pub struct DiskFs;

/// What kind of thing a non-regular file is, for messages.
fn file_kind(t: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

impl FileSystem for DiskFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        // Refuse what is plainly no file before opening it (opening a
        // device can do something), then open without blocking (a FIFO
        // would wait for a writer) and look again at what was opened.
        let m = std::fs::metadata(path)?;
        if !m.is_file() {
            return Err(Refusal::NotRegular(file_kind(m.file_type())).into_io());
        }
        let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY).open(path)?;
        let m = file.metadata()?;
        if !m.is_file() {
            return Err(Refusal::NotRegular(file_kind(m.file_type())).into_io());
        }
        let limit = MAX_READ_BYTES as u64;
        if m.len() > limit {
            return Err(Refusal::TooLarge(m.len()).into_io());
        }
        // It may grow between the look and the read: read one byte past
        // the limit at most.
        let mut buf = Vec::with_capacity(usize::try_from(m.len()).unwrap_or(0));
        file.take(limit + 1).read_to_end(&mut buf)?;
        if buf.len() > MAX_READ_BYTES {
            return Err(Refusal::TooLarge(buf.len() as u64).into_io());
        }
        String::from_utf8(buf).map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))
    }
    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }
    fn resolve(&self, path: &Path) -> PathBuf {
        let abs = match path.is_absolute() {
            true => path.to_path_buf(),
            false => std::env::current_dir().unwrap_or_default().join(path),
        };
        let abs = normalize(&abs);
        // The longest part that exists, with its links resolved, and the
        // rest (which cannot be a link: it does not exist) as written.
        let mut rest = Vec::new();
        let mut at = abs.as_path();
        loop {
            if let Ok(mut real) = std::fs::canonicalize(at) {
                real.extend(rest.iter().rev());
                return real;
            }
            match (at.parent(), at.file_name()) {
                (Some(parent), Some(name)) => {
                    rest.push(name.to_os_string());
                    at = parent;
                }
                _ => return abs,
            }
        }
    }
}

/// Files held in memory, for tests and fuzzing.
#[derive(Clone, Debug, Default)]
pub struct MemoryFs {
    pub files: HashMap<PathBuf, String>,
}

impl MemoryFs {
    pub fn with(mut self, path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        self.files.insert(path.into(), text.into());
        self
    }
}

impl FileSystem for MemoryFs {
    fn read(&self, path: &Path) -> io::Result<String> {
        let text = self.files.get(&normalize(path)).ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such file"))?;
        if text.len() > MAX_READ_BYTES {
            return Err(Refusal::TooLarge(text.len() as u64).into_io());
        }
        Ok(text.clone())
    }
    fn exists(&self, path: &Path) -> bool {
        self.files.contains_key(&normalize(path))
    }
}

/// Where a project may read files from: the directory of the project file
/// and directories the person running mln allowed (`--allow-path`). A
/// project file may be someone else's; without this, `#include
/// /etc/shadow` would print shadow's lines in diagnostics, and `files`
/// could copy them into a guest.
#[derive(Clone, Debug)]
pub struct Roots {
    /// Resolved ([`FileSystem::resolve`]); the project's own first.
    dirs: Vec<PathBuf>,
    /// The project's directory as the user named it, for messages.
    shown: PathBuf,
}

impl Roots {
    pub fn new(fs: &dyn FileSystem, project_file: &Path, allowed: &[PathBuf]) -> Roots {
        let project_dir = project_file.parent().unwrap_or(Path::new(""));
        let dirs = std::iter::once(project_dir).chain(allowed.iter().map(PathBuf::as_path)).map(|d| fs.resolve(d)).collect();
        let shown = if project_dir.as_os_str().is_empty() { PathBuf::from(".") } else { project_dir.to_path_buf() };
        Roots { dirs, shown }
    }

    /// The project's directory, as the user named it.
    pub fn project_dir(&self) -> &Path {
        &self.shown
    }

    /// `path` resolved, if it lies under one of the roots; else the
    /// resolved path, to show.
    pub fn check(&self, fs: &dyn FileSystem, path: &Path) -> Result<PathBuf, PathBuf> {
        let resolved = fs.resolve(path);
        if self.dirs.iter().any(|d| within(&resolved, d)) {
            Ok(resolved)
        } else {
            Err(resolved)
        }
    }
}

/// Whether `path` lies under `dir` (both resolved). An empty `dir` is the
/// current directory of a relative, in-memory file system.
fn within(path: &Path, dir: &Path) -> bool {
    if dir.as_os_str().is_empty() {
        path.is_relative() && !matches!(path.components().next(), Some(std::path::Component::ParentDir))
    } else {
        path.starts_with(dir)
    }
}

/// The diagnostic for a path a project may not read (`mln::path::outside`),
/// naming the flag that allows it.
pub fn outside_diagnostic(what: &str, written: &str, resolved: &Path, roots: &Roots, span: Span) -> crate::diag::Diagnostic {
    let dir = resolved.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(resolved);
    crate::diag::Diagnostic::error(
        "mln::path::outside",
        format!("{what} `{written}` is outside the project's directory"),
    )
    .label(span, match Path::new(written) == resolved {
        true => "not under the project's directory".to_string(),
        false => format!("this is {}", resolved.display()),
    })
    .help(format!(
        "a project reads files only under its own directory ({}); to allow another, run mln with `--allow-path {}`",
        roots.project_dir().display(),
        dir.display()
    ))
}

/// Removes `.` and resolves `..` lexically, so that cycle detection sees
/// `a/../b.mln` and `b.mln` as one file.
pub fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}
