//! The state layer's errors.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state database: {what}: {source}")]
    Database { what: &'static str, source: rusqlite::Error },
    #[error("cannot {what} {}: {source}", path.display())]
    Io { path: PathBuf, what: &'static str, source: std::io::Error },
    #[error(transparent)]
    Escape(#[from] crate::name::Escape),
    #[error("another mln is working on project {project}{}; wait for it to finish", holder.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    Locked { project: String, holder: Option<String> },
    #[error("no project {0} (see `mln list`)")]
    NoProject(String),
    #[error("the recorded {what} of {project} is unreadable: {why}")]
    Unreadable { project: String, what: &'static str, why: String },
    #[error("the state database is of a newer mln (schema {found}, this mln knows up to {known}); use that mln or a newer one")]
    TooNew { found: i64, known: i64 },
}

impl StateError {
    pub fn io(path: &Path, what: &'static str, source: std::io::Error) -> StateError {
        StateError::Io { path: path.to_path_buf(), what, source }
    }
    /// Whether trying again later can help: another process holds the
    /// database or the project.
    pub fn retryable(&self) -> bool {
        match self {
            StateError::Locked { .. } => true,
            StateError::Database { source: rusqlite::Error::SqliteFailure(e, _), .. } => {
                matches!(e.code, rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
            }
            _ => false,
        }
    }
}

pub(super) fn db(what: &'static str) -> impl Fn(rusqlite::Error) -> StateError {
    move |source| StateError::Database { what, source }
}
