//! What `status` says of one host.

use crate::machine::{MachineError, PowerState};
use crate::plan::Host;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostStatus {
    pub project: String,
    pub host: String,
    /// `running`, `saved`, `shut off`, `absent`, or `unknown` when its
    /// place could not be asked (`error` says why).
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// How far its build got, as recorded: `building`, `failed`, `built`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phase: Option<crate::state::Phase>,
    /// The service host it is on; null: this machine.
    pub service_host: Option<String>,
    /// `ethN=ADDRESS` (or `=dhcp`) per interface.
    pub addresses: Vec<String>,
}

impl HostStatus {
    pub fn new(project: &str, h: &Host, place: Option<String>, state: Result<PowerState, MachineError>) -> HostStatus {
        let (state, error) = match state {
            Ok(s) => (s.as_str().to_string(), None),
            Err(e) => ("unknown".to_string(), Some(e.to_string())),
        };
        HostStatus {
            project: project.to_string(),
            host: h.name.clone(),
            state,
            error,
            phase: None,
            service_host: place,
            addresses: h
                .interfaces
                .iter()
                .map(|i| format!("{}={}", i.name, if i.dhcp { "dhcp".into() } else { i.address.clone().unwrap_or_default() }))
                .collect(),
        }
    }
}
