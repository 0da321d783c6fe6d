//! What can go wrong making, importing or removing a template, each case
//! with what the user needs to act on it.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The recipe file does not parse or holds a value we refuse.
    #[error("recipe {}: {message}", crate::term::escape(source_name))]
    Recipe { source_name: String, message: String },
    #[error("no recipe `{}`: neither a file nor one shipped with mln (shipped: {})", crate::term::escape(name), shipped.join(", "))]
    UnknownRecipe { name: String, shipped: Vec<String> },
    /// mmdebstrap's root mode: the root's files must be owned by their
    /// real owners for the image.
    #[error("building a template needs root (mmdebstrap's root mode)")]
    NeedsRoot,
    #[error("{tool} is not installed (Debian: apt-get install {package})")]
    ToolMissing { tool: &'static str, package: &'static str },
    /// apt found no package of that name in the suite's index.
    #[error("package{} not found in {suite} on {mirror}: {}", if packages.len() > 1 { "s" } else { "" }, packages.join(", "))]
    PackageNotFound { packages: Vec<String>, suite: String, mirror: String },
    #[error("the mirror {mirror} cannot be reached: {}", crate::term::escape(detail))]
    MirrorUnreachable { mirror: String, detail: String },
    /// A recipe command exited non-zero inside the guest's root.
    #[error("recipe command {index} failed inside the guest root:\n{}", crate::term::escape(output))]
    CommandFailed { index: usize, output: String },
    /// A tool ran and failed for another reason; `output` is its last lines.
    #[error("{tool} failed:\n{}", crate::term::escape(output))]
    Tool { tool: &'static str, output: String },
    #[error("cannot {what} {}: {source}", crate::term::escape(&path.display().to_string()))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("template `{}` is not in {} (it has: {})", crate::term::escape(name), dir.display(), if have.is_empty() { "nothing".to_string() } else { have.join(", ") })]
    NotFound { name: String, dir: PathBuf, have: Vec<String> },
    /// Guests' disks are overlays on the template: deleting or replacing it
    /// would corrupt them.
    #[error("template `{name}` backs the disks of {}; remove those projects first", users.join(", "))]
    InUse { name: String, users: Vec<String> },
    #[error("{} is not an image mln can use: {}", crate::term::escape(&path.display().to_string()), crate::term::escape(message))]
    BadImage { path: PathBuf, message: String },
    #[error(transparent)]
    BadName(#[from] crate::name::BadName),
}

impl TemplateError {
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> TemplateError {
        let path = path.into();
        move |source| TemplateError::Io { what, path, source }
    }

    /// Only a mirror that did not answer may answer later; everything else
    /// fails the same way again.
    pub fn retryable(&self) -> bool {
        matches!(self, TemplateError::MirrorUnreachable { .. })
    }
}
