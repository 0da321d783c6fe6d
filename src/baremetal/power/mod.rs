//! Power control of bare-metal nodes: IPMI (ipmitool), command templates
//! (a site's own scripts or a PDU) and a soft reboot through SSH. [`Power`]
//! picks the driver each node's `power { driver ... }` names, so the
//! deployment automaton holds one `PowerDriver` for every node.

pub mod command;
pub mod ipmi;
pub mod run;
pub mod ssh;

use super::{NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec};

pub use command::CommandPower;
pub use ipmi::{BootDevice, IpmiPower};
pub use ssh::SshPower;

/// Every driver, each used for the nodes whose spec names it.
#[derive(Default)]
pub struct Power {
    pub ipmi: IpmiPower,
    pub command: CommandPower,
    /// None: nodes with `driver ssh` fail `Unsupported` (no SSH set up).
    pub ssh: Option<SshPower>,
}

impl Power {
    fn driver(&self, spec: &NodeSpec) -> Result<&dyn PowerDriver, PowerError> {
        Ok(match spec.power {
            PowerSpec::Ipmi { .. } => &self.ipmi,
            PowerSpec::Command { .. } => &self.command,
            PowerSpec::Ssh => match &self.ssh {
                Some(s) => s,
                None => return Err(PowerError::Unsupported { driver: "ssh", action: "reboot without an SSH set-up" }),
            },
        })
    }
}

impl PowerDriver for Power {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        self.driver(spec)?.act(node, spec, action)
    }

    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        self.driver(spec)?.status(node, spec)
    }

    fn boot_disk_next(&self, node: &str, spec: &NodeSpec) {
        if let PowerSpec::Ipmi { .. } = spec.power {
            let _ = self.ipmi.bootdev(node, spec, BootDevice::Disk);
        }
    }
}

pub(crate) fn action_word(a: PowerAction) -> &'static str {
    match a {
        PowerAction::On => "on",
        PowerAction::Off => "off",
        PowerAction::Reset => "reset",
        PowerAction::Cycle => "cycle",
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use crate::baremetal::{BootMode, EnvRef, NodeSpec, PowerSpec};

    pub fn node(power: PowerSpec) -> NodeSpec {
        NodeSpec {
            mac: "52:54:00:12:34:56".into(),
            power,
            disk: Some("/dev/vda".into()),
            partition: None,
            environment: EnvRef { name: "debian".into(), version: None },
            boot: BootMode::Disk,
        }
    }
}
