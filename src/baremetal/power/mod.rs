//! Power control of bare-metal nodes: IPMI (ipmitool), command templates
//! (a site's own scripts or a PDU) and a soft reboot through SSH. [`Power`]
//! picks the driver each node's `power { driver ... }` names, so the
//! deployment automaton holds one `PowerDriver` for every node.

pub mod command;
pub mod ipmi;
pub mod run;
pub mod ssh;

use super::{NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec, PowerVia};

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
    /// Per node, the site's power-command level after its own driver: its
    /// cluster's `power_command` templates (a PDU, the site's script).
    /// A node's own `power { fallback { } }` wins over it.
    pub fallback: std::collections::HashMap<String, PowerSpec>,
    /// The nodes that went down to that level: why, and whose templates.
    fell: std::sync::Mutex<std::collections::BTreeMap<String, (String, PowerVia)>>,
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

    /// The node's power-command level: its own `fallback`, else its
    /// cluster's `power_command`.
    fn level_below(&self, node: &str, spec: &NodeSpec) -> Option<(PowerSpec, PowerVia)> {
        if let Some(c) = &spec.fallback {
            return Some((c.spec(), PowerVia::Fallback));
        }
        self.fallback.get(node).filter(|p| matches!(p, PowerSpec::Command { .. })).map(|p| (p.clone(), PowerVia::ClusterCommand))
    }

    /// `f` with the node's own driver; when that refuses the credentials,
    /// does not answer or cannot do the action (`driver ssh` has no power
    /// on), again with its power-command level, if it has one (noted).
    /// Also says which did it.
    fn escalate<T>(&self, node: &str, spec: &NodeSpec, f: impl Fn(&dyn PowerDriver, &NodeSpec) -> Result<T, PowerError>) -> Result<(T, PowerVia), PowerError> {
        let own = self.driver(spec).and_then(|d| f(d, spec));
        let e = match own {
            Ok(t) => return Ok((t, PowerVia::of(&spec.power))),
            Err(e @ (PowerError::Auth { .. } | PowerError::Unreachable { .. } | PowerError::Unsupported { .. })) => e,
            Err(e) => return Err(e),
        };
        let Some((power, via)) = self.level_below(node, spec) else { return Err(e) };
        let down = NodeSpec { power, ..spec.clone() };
        tracing::warn!("{node}: {e}; the power-command level ({}) instead", via.as_str());
        let t = f(&self.command as &dyn PowerDriver, &down)?;
        self.fell.lock().unwrap_or_else(|p| p.into_inner()).insert(node.to_string(), (e.to_string(), via));
        Ok((t, via))
    }

}

impl PowerDriver for Power {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        self.act_via(node, spec, action).map(drop)
    }

    fn act_via(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<PowerVia, PowerError> {
        self.escalate(node, spec, |d, s| d.act(node, s, action)).map(|((), via)| via)
    }

    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        self.escalate(node, spec, |d, s| d.status(node, s)).map(|(r, _)| r)
    }

    fn escalated(&self, node: &str) -> Option<String> {
        let fell = self.fell.lock().unwrap_or_else(|p| p.into_inner());
        fell.get(node).map(|(why, via)| {
            let whose = if *via == PowerVia::Fallback { "its power { fallback }" } else { "its cluster's power_command" };
            format!("{whose} ({why})")
        })
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
        crate::test_exec::write_executable(&fake, "#!/bin/sh\necho 'RAKP 2 HMAC is invalid' >&2\nexit 1\n");
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
        assert!(p.escalated("n1").unwrap().starts_with("its cluster's power_command"), "{:?}", p.escalated("n1"));
        assert_eq!(p.act_via("n1", &spec, PowerAction::Off).unwrap(), PowerVia::ClusterCommand);
        assert_eq!(p.escalated("n2"), None);
    }

    /// The node's own `power { fallback }` wins over its cluster's
    /// `power_command`; a driver that cannot do the action (`ssh` has no
    /// power on) goes down to it too; a driver that works is not passed by.
    #[test]
    fn the_nodes_own_fallback_wins_and_says_which_level_acted() {
        let d = tempfile::tempdir().unwrap();
        let calls = d.path().join("calls");
        let log = |who: &str, w: &str| format!("sh -c 'echo {who} {w} {{host}} {{mac}} >> {}; echo on'", calls.display());
        let templates = |who: &str| crate::baremetal::automaton::PowerCommand { on: log(who, "on"), off: log(who, "off"), reset: log(who, "reset"), status: log(who, "status"), cycle: None };
        let mut p = Power::default();
        p.fallback.insert("n1".into(), templates("site").spec());
        let mut spec = node(PowerSpec::Ssh);
        // No SSH set up, and no power on over SSH anyway: the site's level.
        assert_eq!(p.act_via("n1", &spec, PowerAction::On).unwrap(), PowerVia::ClusterCommand);
        spec.fallback = Some(templates("own"));
        assert_eq!(p.act_via("n1", &spec, PowerAction::Reset).unwrap(), PowerVia::Fallback);
        assert_eq!(p.status("n1", &spec).unwrap(), PowerReading::On);
        assert_eq!(std::fs::read_to_string(&calls).unwrap(), "site on n1 52:54:00:12:34:56\nown reset n1 52:54:00:12:34:56\nown status n1 52:54:00:12:34:56\n");
        assert!(p.escalated("n1").unwrap().starts_with("its power { fallback }"), "{:?}", p.escalated("n1"));
        // A driver that does the action itself is what acted.
        let mut own = node(PowerSpec::Command { on: "true".into(), off: "true".into(), reset: "true".into(), status: "echo off".into(), cycle: None });
        own.fallback = Some(templates("unused"));
        assert_eq!(p.act_via("n2", &own, PowerAction::Reset).unwrap(), PowerVia::Command);
        assert!(!std::fs::read_to_string(&calls).unwrap().contains("unused"));
        // A fallback that fails is the error: nothing said to have acted.
        let mut broken = node(PowerSpec::Ssh);
        broken.fallback = Some(crate::baremetal::automaton::PowerCommand { on: "false".into(), off: "false".into(), reset: "false".into(), status: "false".into(), cycle: None });
        assert!(matches!(p.act_via("n3", &broken, PowerAction::On), Err(PowerError::Failed { .. })));
        assert_eq!(p.escalated("n3"), None);
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
            fallback: None,
        }
    }
}
