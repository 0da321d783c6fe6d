//! The machine layer's one error type: every failure says whether trying
//! again can help.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    Power,
    Provision,
    Snapshot,
    Migrate,
    Relocate,
    Update,
}

impl std::fmt::Display for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Capability::Power => "power control",
            Capability::Provision => "provisioning",
            Capability::Snapshot => "saving and restoring",
            Capability::Migrate => "migration",
            Capability::Relocate => "moving a machine with its files",
            Capability::Update => "upgrading a built machine",
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum MachineError {
    /// The backend does not have this capability.
    #[error("{capability} is not supported by {backend}")]
    Unsupported { capability: Capability, backend: String },
    /// Refused before anything was done: what was asked cannot be done as
    /// it stands (not built, a name taken by something else, bad input).
    #[error("{0}")]
    Refused(String),
    /// It went wrong, and would again.
    #[error("{0}")]
    Failed(String),
    /// It went wrong in a way that may pass: a connection lost, a busy
    /// resource, a time-out.
    #[error("{0}")]
    Transient(String),
}

impl MachineError {
    pub fn unsupported(capability: Capability, backend: String) -> MachineError {
        MachineError::Unsupported { capability, backend }
    }
    pub fn retryable(&self) -> bool {
        matches!(self, MachineError::Transient(_))
    }
    /// The same error with its message passed through `f` (escaped for a
    /// terminal, or saying where it happened).
    pub fn map_message(self, f: impl FnOnce(String) -> String) -> MachineError {
        match self {
            MachineError::Unsupported { capability, backend } => MachineError::Unsupported { capability, backend: f(backend) },
            MachineError::Refused(m) => MachineError::Refused(f(m)),
            MachineError::Failed(m) => MachineError::Failed(f(m)),
            MachineError::Transient(m) => MachineError::Transient(f(m)),
        }
    }
}

impl From<crate::state::StateError> for MachineError {
    fn from(e: crate::state::StateError) -> MachineError {
        if e.retryable() {
            MachineError::Transient(e.to_string())
        } else {
            MachineError::Failed(e.to_string())
        }
    }
}
