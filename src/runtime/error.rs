//! The orchestration's errors: what stops an operation as a whole (one
//! machine's failure is an [`Outcome`](crate::machine::Outcome) instead).

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Machine(#[from] crate::machine::MachineError),
    /// A hook failed: nothing after it was done.
    #[error(transparent)]
    Hook(#[from] super::hooks::HookError),
    /// What was asked cannot be done as it stands.
    #[error("{0}")]
    Refused(String),
    /// A new file that cannot be applied to what is deployed.
    #[error(transparent)]
    Upgrade(crate::upgrade::UpgradeError),
}

/// The whole of an operation failed, as one machine's error (what an agent
/// sends back to its manager).
impl From<RuntimeError> for crate::machine::MachineError {
    fn from(e: RuntimeError) -> Self {
        use crate::machine::MachineError as M;
        match e {
            RuntimeError::State(e) => e.into(),
            RuntimeError::Machine(e) => e,
            RuntimeError::Hook(e) => M::Failed(e.to_string()),
            RuntimeError::Refused(m) => M::Refused(m),
            RuntimeError::Upgrade(e) => M::Refused(e.to_string()),
        }
    }
}

impl RuntimeError {
    /// Whether trying again later can help.
    pub fn retryable(&self) -> bool {
        match self {
            RuntimeError::State(e) => e.retryable(),
            RuntimeError::Machine(e) => e.retryable(),
            RuntimeError::Hook(_) | RuntimeError::Refused(_) | RuntimeError::Upgrade(_) => false,
        }
    }
}

impl RuntimeError {
    /// The error as a diagnostic of the same model as the compiler's: a
    /// code per kind, and a help line that says whether to try again.
    pub fn diagnostic(&self) -> crate::diag::Diagnostic {
        use crate::machine::MachineError as M;
        use crate::state::StateError as S;
        let code = match self {
            RuntimeError::State(S::Locked { .. }) => "mln::state::locked",
            RuntimeError::State(S::NoProject(_)) => "mln::state::no_project",
            RuntimeError::State(S::TooNew { .. }) => "mln::state::too_new",
            RuntimeError::State(S::Unreadable { .. }) => "mln::state::unreadable",
            RuntimeError::State(S::Escape(_)) => "mln::state::path_outside",
            RuntimeError::State(_) => "mln::state::io",
            RuntimeError::Machine(M::Unsupported { .. }) => "mln::machine::unsupported",
            RuntimeError::Machine(M::Refused(_)) => "mln::machine::refused",
            RuntimeError::Machine(M::Transient(_)) => "mln::machine::transient",
            RuntimeError::Machine(M::Failed(_)) => "mln::machine::failed",
            RuntimeError::Hook(_) => "mln::runtime::hook",
            RuntimeError::Refused(_) => "mln::runtime::refused",
            RuntimeError::Upgrade(crate::upgrade::UpgradeError::OtherProject { .. }) => "mln::upgrade::other_project",
            RuntimeError::Upgrade(crate::upgrade::UpgradeError::Impossible(_)) => "mln::upgrade::impossible",
        };
        let d = crate::diag::Diagnostic::error(code, crate::term::escape_lines(&self.to_string()).into_owned());
        if self.retryable() {
            d.help("this may pass: run the same command again")
        } else {
            d
        }
    }
}

impl From<crate::state::StateError> for crate::diag::Diagnostic {
    fn from(e: crate::state::StateError) -> Self {
        RuntimeError::State(e).diagnostic()
    }
}
