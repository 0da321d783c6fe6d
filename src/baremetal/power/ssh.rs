//! `driver ssh`: a soft reboot of a running system through the fabric's
//! SSH (host key checked as for service hosts). It cannot power a node on
//! or off; the reboot escalation goes on to IPMI or a command for that.

use crate::baremetal::{NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading};
use crate::fabric::{FabricError, Server};
use std::sync::Arc;

/// How to reach a node by SSH (its address, user, key, known_hosts).
pub type Reach = Arc<dyn Fn(&str) -> Option<Server> + Send + Sync>;

pub struct SshPower {
    /// Of a multi-thread runtime: a current-thread one's handle drives no I/O.
    pub rt: tokio::runtime::Handle,
    pub reach: Reach,
}

impl SshPower {
    fn server(&self, node: &str) -> Result<Server, PowerError> {
        (self.reach)(node).ok_or_else(|| PowerError::Failed { node: node.into(), detail: "no SSH address is known for it".into(), retry: false })
    }
}

fn typed(node: &str, e: FabricError) -> PowerError {
    match e {
        FabricError::Auth(d) | FabricError::HostKey(d) => PowerError::Auth { node: node.into(), detail: d },
        FabricError::Unreachable(d) => PowerError::Unreachable { node: node.into(), detail: d },
        other => PowerError::Failed { node: node.into(), detail: other.to_string(), retry: false },
    }
}

impl PowerDriver for SshPower {
    fn act(&self, node: &str, _spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        if action != PowerAction::Reset {
            return Err(PowerError::Unsupported { driver: "ssh", action: super::action_word(action) });
        }
        let server = self.server(node)?;
        self.rt.block_on(async {
            let conn = crate::fabric::ssh::connect(&server).await.map_err(|e| typed(node, e))?;
            // The session dies with the system: no exit status is fine. The
            // reboot is put in the background so the command returns first.
            let r = conn.exec("(sleep 1; reboot) >/dev/null 2>&1 </dev/null &", b"").await;
            conn.close().await;
            match r {
                Ok(out) if matches!(out.status, Some(0) | None) => Ok(()),
                Ok(out) => Err(PowerError::Failed {
                    node: node.into(),
                    detail: format!("reboot exited {:?}: {}", out.status, crate::term::escape(String::from_utf8_lossy(&out.stderr).trim())),
                    retry: true,
                }),
                Err(FabricError::Unreachable(_)) => Ok(()),
                Err(e) => Err(typed(node, e)),
            }
        })
    }

    /// On when an SSH session opens; a node that does not answer may be
    /// off or hung, which only a BMC can tell.
    fn status(&self, node: &str, _spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        let server = self.server(node)?;
        self.rt.block_on(async {
            let conn = crate::fabric::ssh::connect(&server).await.map_err(|e| typed(node, e))?;
            conn.close().await;
            Ok(PowerReading::On)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::power::testing::node;
    use crate::baremetal::PowerSpec;

    #[test]
    fn only_a_reboot_and_an_unreachable_node_is_typed() {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let p = SshPower {
            rt: rt.handle().clone(),
            reach: Arc::new(|n: &str| {
                let mut s = crate::fabric::Fabric::default().server(n);
                // A closed port on loopback: refused at once.
                s.address = "127.0.0.1".into();
                s.port = 9;
                s.connect_timeout = 2;
                Some(s)
            }),
        };
        let s = node(PowerSpec::Ssh);
        for a in [PowerAction::On, PowerAction::Off, PowerAction::Cycle] {
            assert!(matches!(p.act("n1", &s, a), Err(PowerError::Unsupported { driver: "ssh", .. })));
        }
        assert!(matches!(p.act("n1", &s, PowerAction::Reset), Err(PowerError::Unreachable { .. })));
        assert!(matches!(p.status("n1", &s), Err(PowerError::Unreachable { .. })));
        let none = SshPower { rt: rt.handle().clone(), reach: Arc::new(|_: &str| None) };
        assert!(matches!(none.act("n1", &s, PowerAction::Reset), Err(PowerError::Failed { retry: false, .. })));
    }
}
