use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("cannot {what} {path}: {source}")]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("key {path}: {message}")]
    Key { path: PathBuf, message: String },
    #[error("{host} has not published its host keys on its console yet (still booting?)")]
    NoHostKeys { host: String },
    #[error("{host}: {message}")]
    Unreachable { host: String, message: String },
    #[error(transparent)]
    State(#[from] crate::state::StateError),
}

impl LoginError {
    pub(crate) fn io(what: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> LoginError {
        let path = path.to_path_buf();
        move |source| LoginError::Io { what, path, source }
    }
    /// Whether trying again later can help: a guest still booting.
    pub fn retry(&self) -> bool {
        matches!(self, LoginError::NoHostKeys { .. } | LoginError::Unreachable { .. })
    }
}
