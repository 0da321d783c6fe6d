//! The fabric's one error type: what went wrong reaching a service host or
//! its agent, and whether trying again can help.

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FabricError {
    /// The host did not answer, or the connection went away: may pass.
    #[error("{0}")]
    Unreachable(String),
    /// The host's key is unknown, changed or revoked: refused until a
    /// person looks.
    #[error("{0}")]
    HostKey(String),
    /// No key of ours was accepted.
    #[error("{0}")]
    Auth(String),
    /// The agent could not be installed or is not ours.
    #[error("{0}")]
    Agent(String),
    /// The agent answered what this mln cannot read.
    #[error("{0}")]
    Protocol(String),
    /// The agent did what it was asked and it failed there.
    #[error("{0}")]
    Remote(String),
}

impl FabricError {
    pub fn retryable(&self) -> bool {
        matches!(self, FabricError::Unreachable(_))
    }
}

impl From<FabricError> for crate::machine::MachineError {
    fn from(e: FabricError) -> Self {
        use crate::machine::MachineError as M;
        match e {
            FabricError::Unreachable(m) => M::Transient(m),
            FabricError::HostKey(m) | FabricError::Auth(m) | FabricError::Agent(m) => M::Refused(m),
            FabricError::Protocol(m) | FabricError::Remote(m) => M::Failed(m),
        }
    }
}
