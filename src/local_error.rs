//! Failures of mln's own work on this machine: a file it could not make, a
//! tool it runs (qemu-img, mkswap, debugfs, ip) that failed or is missing,
//! input it refuses. One type, so the machine layer can tell what is worth
//! trying again from what would fail again.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("cannot {what} {}: {source}", crate::term::escape(&path.display().to_string()))]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot run {tool}: {source}")]
    Missing {
        tool: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The tool ran and said no.
    #[error("{tool}: {}", crate::term::escape(message))]
    Tool { tool: String, message: String },
    /// What was asked cannot be done as it stands (bad input, a template
    /// that is not there).
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl LocalError {
    /// For `map_err`: an I/O error doing `what` to `path`.
    pub fn io(what: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LocalError {
        let path = path.into();
        move |source| LocalError::Io { what, path, source }
    }

    /// A file system that is busy or an operation interrupted may pass;
    /// a missing tool, a tool's refusal or bad input will not.
    pub fn retryable(&self) -> bool {
        use std::io::ErrorKind as K;
        match self {
            LocalError::Io { source, .. } => matches!(source.kind(), K::Interrupted | K::WouldBlock | K::TimedOut | K::ResourceBusy),
            LocalError::State(e) => e.retryable(),
            _ => false,
        }
    }
}

impl From<LocalError> for crate::machine::MachineError {
    fn from(e: LocalError) -> Self {
        use crate::machine::MachineError as M;
        match e {
            LocalError::Refused(m) => M::Refused(m),
            e if e.retryable() => M::Transient(e.to_string()),
            e => M::Failed(e.to_string()),
        }
    }
}
