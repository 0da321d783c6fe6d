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
    /// Per node, the power-command level after its own driver: its
    /// cluster's `power_command` templates (a PDU, the site's script),
    /// used when the node's driver refuses the credentials or does not
    /// answer.
    pub fallback: std::collections::HashMap<String, PowerSpec>,
    /// The nodes that went down to that level, and why (the build says it).
    fell: std::sync::Mutex<std::collections::BTreeMap<String, String>>,
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

impl Power {
    /// `f` with the node's own driver; on refused credentials or no
    /// answer, again with its power-command level, if it has one (noted).
    fn escalate<T>(&self, node: &str, spec: &NodeSpec, f: impl Fn(&dyn PowerDriver, &NodeSpec) -> Result<T, PowerError>) -> Result<T, PowerError> {
        let e = match f(self.driver(spec)?, spec) {
            Err(e @ (PowerError::Auth { .. } | PowerError::Unreachable { .. })) => e,
            other => return other,
        };
        let Some(power) = self.fallback.get(node).filter(|p| matches!(p, PowerSpec::Command { .. })) else { return Err(e) };
        let down = NodeSpec { power: power.clone(), ..spec.clone() };
        tracing::warn!("{node}: {e}; the power-command level instead");
        let r = f(&self.command as &dyn PowerDriver, &down);
        if r.is_ok() {
            self.fell.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), e.to_string());
        }
        r
    }
}

impl PowerDriver for Power {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        self.escalate(node, spec, |d, s| d.act(node, s, action))
    }

    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        self.escalate(node, spec, |d, s| d.status(node, s))
    }

    fn escalated(&self, node: &str) -> Option<String> {
        self.fell.lock().unwrap_or_else(|p| p.into_inner()).get(node).cloned()
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
mod tests {
    use super::testing::node;
    use super::*;

    /// A node whose IPMI refuses the credentials is driven through its
    /// power-command level, and says so; without one, the refusal stands.
    #[test]
    fn refused_ipmi_credentials_go_down_to_the_power_command() {
        let d = tempfile::tempdir().unwrap();
        let pw = d.path().join("pw");
        std::fs::write(&pw, "wrong\n").unwrap();
        let calls = d.path().join("calls");
        // An ipmitool that refuses the session as a BMC does (RAKP 2 HMAC).
        let fake = d.path().join("ipmitool");
        std::fs::write(&fake, "#!/bin/sh\necho 'RAKP 2 HMAC is invalid' >&2\nexit 1\n").unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let spec = node(PowerSpec::Ipmi { address: "127.0.0.1".into(), port: 623, user: "admin".into(), password_file: pw.display().to_string() });
        let mut p = Power { ipmi: IpmiPower { program: fake.clone(), ..IpmiPower::default() }, ..Power::default() };
        assert!(matches!(p.act("n1", &spec, PowerAction::On), Err(PowerError::Auth { .. })));
        assert_eq!(p.escalated("n1"), None);
        let log = |w: &str| format!("sh -c 'echo {w} {{host}} >> {}; echo on'", calls.display());
        p.fallback.insert("n1".into(), PowerSpec::Command { on: log("on"), off: log("off"), reset: log("reset"), status: log("status"), cycle: None });
        p.act("n1", &spec, PowerAction::On).unwrap();
        assert_eq!(p.status("n1", &spec).unwrap(), PowerReading::On);
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "on n1\nstatus n1\n");
        assert!(p.escalated("n1").unwrap().contains("refused the credentials"), "{:?}", p.escalated("n1"));
        assert_eq!(p.escalated("n2"), None);
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
