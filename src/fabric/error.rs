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
    /// The agent did what it was asked and it failed there: as it
    /// failed, so whether to retry survives the wire.
    #[error(transparent)]
    Remote(crate::machine::MachineError),
    /// The fabric configuration cannot be used.
    #[error(transparent)]
    Config(#[from] super::config::ConfigError),
    /// This machine could not do its part (read a template, start the
    /// async runtime).
    #[error("{0}")]
    Local(String),
}

impl FabricError {
    /// The same error, its message saying what it was about.
    pub fn about(self, what: &str) -> FabricError {
        use FabricError as F;
        let m = |m: String| format!("{what}: {m}");
        match self {
            F::Unreachable(s) => F::Unreachable(m(s)),
            F::HostKey(s) => F::HostKey(m(s)),
            F::Auth(s) => F::Auth(m(s)),
            F::Agent(s) => F::Agent(m(s)),
            F::Protocol(s) => F::Protocol(m(s)),
            F::Remote(e) => F::Remote(e.map_message(m)),
            F::Local(s) => F::Local(m(s)),
            F::Config(c) => F::Config(c),
        }
    }

    pub fn retryable(&self) -> bool {
        match self {
            FabricError::Remote(e) => e.retryable(),
            other => matches!(other, FabricError::Unreachable(_)),
        }
    }
}

impl From<FabricError> for crate::machine::MachineError {
    fn from(e: FabricError) -> Self {
        use crate::machine::MachineError as M;
        match e {
            FabricError::Unreachable(m) => M::Transient(m),
            FabricError::HostKey(m) | FabricError::Auth(m) | FabricError::Agent(m) => M::Refused(m),
            FabricError::Config(e) => M::Refused(e.to_string()),
            FabricError::Remote(e) => e,
            FabricError::Protocol(m) | FabricError::Local(m) => M::Failed(m),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::MachineError;

    /// An agent's "try again later" reaches the manager's outcome as
    /// such, and its refusal as a refusal.
    #[test]
    fn whether_to_retry_survives_the_wire() {
        for (sent, retry) in [(MachineError::Transient("libvirt is restarting".into()), true), (MachineError::Refused("not built".into()), false)] {
            let line = serde_json::to_string(&super::super::proto::Line::Error(sent.clone())).unwrap();
            let super::super::proto::Line::Error(got) = serde_json::from_str(&line).unwrap() else { panic!("{line}") };
            let e = FabricError::Remote(got).about("h1");
            assert_eq!(e.retryable(), retry, "{line}");
            let m: MachineError = e.into();
            assert_eq!(m.retryable(), retry);
            assert_eq!(std::mem::discriminant(&m), std::mem::discriminant(&sent));
            assert!(m.to_string().starts_with("h1: "), "{m}");
        }
    }
}
