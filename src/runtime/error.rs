//! The orchestration's errors: what stops an operation as a whole (one
//! machine's failure is an [`Outcome`](crate::machine::Outcome) instead).

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Machine(#[from] crate::machine::MachineError),
    /// A hook failed: nothing after it was done.
    #[error("{0}")]
    Hook(String),
    /// What was asked cannot be done as it stands.
    #[error("{0}")]
    Refused(String),
}

impl RuntimeError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            RuntimeError::State(e) => e.retryable(),
            RuntimeError::Machine(e) => e.retryable(),
            RuntimeError::Hook(_) | RuntimeError::Refused(_) => false,
        }
    }
}
