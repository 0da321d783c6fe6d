//! IPMI through `ipmitool -I lanplus`. The password is read by ipmitool
//! from the node's password file (`-f`), so it is never on a command line
//! that `ps` shows, nor in the project file.

use super::run::{run, RunError};
use crate::baremetal::{NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

pub struct IpmiPower {
    /// The program (a test puts a fake one here).
    pub program: PathBuf,
    /// The whole call, ipmitool's own retries included.
    pub timeout: Duration,
}

impl Default for IpmiPower {
    fn default() -> IpmiPower {
        IpmiPower { program: PathBuf::from("ipmitool"), timeout: Duration::from_secs(40) }
    }
}

/// What the node boots from next (`chassis bootdev`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BootDevice {
    Pxe,
    Disk,
}

impl IpmiPower {
    fn call(&self, node: &str, spec: &NodeSpec, words: &[&str]) -> Result<String, PowerError> {
        let PowerSpec::Ipmi { address, port, user, password_file } = &spec.power else {
            return Err(PowerError::Unsupported { driver: "ipmi", action: "drive a node without IPMI settings" });
        };
        // Checked here, not by ipmitool: its message for a missing file
        // reads like an authentication failure.
        if let Err(e) = std::fs::metadata(password_file) {
            return Err(PowerError::Failed { node: node.into(), detail: format!("cannot read the IPMI password file {password_file}: {e}"), retry: false });
        }
        let mut c = Command::new(&self.program);
        // -N: seconds per try, -R: tries; kept under our own deadline.
        c.args(["-I", "lanplus", "-H", address, "-p", &port.to_string(), "-U", user, "-f", password_file, "-N", "5", "-R", "3"]);
        // -v: the reason a session failed (RAKP messages, no answer to
        // Get Channel Authentication Capabilities) is only said verbosely.
        c.arg("-v");
        c.args(words);
        let what = words.join(" ");
        let ran = run(c, self.timeout).map_err(|e| match e {
            RunError::Spawn(d) => PowerError::Failed { node: node.into(), detail: d, retry: false },
            RunError::Timeout(t) => PowerError::Unreachable { node: node.into(), detail: format!("ipmitool {what} at {address}:{port} gave no answer within {} s", t.as_secs()) },
        })?;
        if ran.success {
            return Ok(ran.stdout);
        }
        Err(classify(node, &what, &ran.stdout, &ran.stderr))
    }

    /// `chassis bootdev pxe|disk`: for profiles that need the firmware's
    /// boot order changed (nodes that do not try the network first).
    pub fn bootdev(&self, node: &str, spec: &NodeSpec, dev: BootDevice) -> Result<(), PowerError> {
        let d = match dev {
            BootDevice::Pxe => "pxe",
            BootDevice::Disk => "disk",
        };
        self.call(node, spec, &["chassis", "bootdev", d]).map(drop)
    }
}

/// ipmitool's failure as a typed error. Without an answer to the first,
/// unauthenticated request (Get Channel Authentication Capabilities) the
/// BMC is unreachable; with one, a refused RAKP exchange is the
/// credentials: a wrong password shows as an invalid RAKP 2 HMAC, an
/// unknown user as a BMC that stops answering at RAKP 1 (virtualbmc,
/// some firmwares) or says "unauthorized name".
pub(crate) fn classify(node: &str, what: &str, stdout: &str, stderr: &str) -> PowerError {
    let text = format!("{stderr}\n{stdout}");
    let lower = text.to_lowercase();
    let detail = format!("ipmitool {what}: {}", crate::term::escape(text.trim()).replace('\n', "; "));
    let auth = ["unauthorized name", "hmac is invalid", "invalid user name", "invalid password", "insufficient privilege", "rakp 2 message indicates an error", "rakp 4 message", "no response from rakp 1"];
    if auth.iter().any(|w| lower.contains(w)) {
        return PowerError::Auth { node: node.into(), detail };
    }
    let gone = ["unable to establish", "no response", "timeout", "connection refused", "unable to get", "insufficient resources"];
    if gone.iter().any(|w| lower.contains(w)) {
        return PowerError::Unreachable { node: node.into(), detail };
    }
    PowerError::Failed { node: node.into(), detail, retry: true }
}

impl PowerDriver for IpmiPower {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        self.call(node, spec, &["power", super::action_word(action)]).map(drop)
    }

    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        let out = self.call(node, spec, &["power", "status"])?;
        // "Chassis Power is on" / "Chassis Power is off", among -v's lines.
        let line = out.lines().map(|l| l.trim().to_lowercase()).find(|l| l.starts_with("chassis power is")).unwrap_or_default();
        match line.rsplit(' ').next() {
            Some("on") => Ok(PowerReading::On),
            Some("off") => Ok(PowerReading::Off),
            _ => Err(PowerError::Failed { node: node.into(), detail: format!("ipmitool power status said {:?}", crate::term::escape(out.trim())), retry: true }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::power::testing::node;

    /// A fake ipmitool: logs its argv, then runs `body`.
    fn fake(dir: &std::path::Path, body: &str) -> IpmiPower {
        let p = dir.join("ipmitool");
        crate::test_exec::write_executable(&p, &format!("#!/bin/sh\necho \"$@\" >> {}/argv\n{body}\n", dir.display()));
        IpmiPower { program: p, timeout: Duration::from_secs(5) }
    }

    fn spec(dir: &std::path::Path) -> NodeSpec {
        let pw = dir.join("pw");
        std::fs::write(&pw, "s3cret\n").unwrap();
        node(PowerSpec::Ipmi { address: "127.0.0.1".into(), port: 6231, user: "admin".into(), password_file: pw.display().to_string() })
    }

    #[test]
    fn actions_and_status_go_through_ipmitool_with_the_password_in_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = fake(d.path(), "echo 'Running Get VSO Capabilities'; [ \"$(eval echo \\${$#})\" = status ] && echo 'Chassis Power is off'; exit 0");
        let s = spec(d.path());
        p.act("n1", &s, PowerAction::Cycle).unwrap();
        p.bootdev("n1", &s, BootDevice::Pxe).unwrap();
        assert_eq!(p.status("n1", &s).unwrap(), PowerReading::Off);
        let argv = std::fs::read_to_string(d.path().join("argv")).unwrap();
        let lines: Vec<&str> = argv.lines().collect();
        assert!(lines[0].starts_with("-I lanplus -H 127.0.0.1 -p 6231 -U admin -f ") && lines[0].ends_with("power cycle"), "{argv}");
        assert!(lines[1].ends_with("chassis bootdev pxe") && lines[2].ends_with("power status"), "{argv}");
        assert!(!argv.contains("s3cret"), "the password never is on argv: {argv}");
    }

    #[test]
    fn failures_are_typed() {
        let d = tempfile::tempdir().unwrap();
        let s = spec(d.path());
        let e = fake(d.path(), "echo '> RAKP 2 message indicates an error : unauthorized name' >&2; echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1").act("n1", &s, PowerAction::On).unwrap_err();
        assert!(matches!(e, PowerError::Auth { .. }) && !e.retryable(), "{e:?}");
        let e = fake(d.path(), "echo '> RAKP 2 HMAC is invalid' >&2; echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1").act("n1", &s, PowerAction::On).unwrap_err();
        assert!(matches!(e, PowerError::Auth { .. }), "{e:?}");
        let e = fake(d.path(), "echo 'Get Auth Capabilities error' >&2; echo 'Error: Unable to establish IPMI v2 / RMCP+ session' >&2; exit 1").act("n1", &s, PowerAction::On).unwrap_err();
        assert!(matches!(e, PowerError::Unreachable { .. }) && e.retryable(), "{e:?}");
        let mut slow = fake(d.path(), "sleep 5");
        slow.timeout = Duration::from_millis(300);
        let e = slow.act("n1", &s, PowerAction::Off).unwrap_err();
        assert!(matches!(e, PowerError::Unreachable { .. }), "{e:?}");
        let e = fake(d.path(), "echo 'Chassis Power is maybe'").status("n1", &s).unwrap_err();
        assert!(matches!(e, PowerError::Failed { .. }), "{e:?}");
        let mut gone = s.clone();
        if let PowerSpec::Ipmi { password_file, .. } = &mut gone.power {
            *password_file = d.path().join("nope").display().to_string();
        }
        let e = fake(d.path(), "exit 0").act("n1", &gone, PowerAction::On).unwrap_err();
        assert!(matches!(e, PowerError::Failed { retry: false, .. }) && e.to_string().contains("password file"), "{e}");
        let missing = IpmiPower { program: d.path().join("no-ipmitool"), timeout: Duration::from_secs(1) };
        assert!(matches!(missing.act("n1", &s, PowerAction::On), Err(PowerError::Failed { retry: false, .. })));
    }
}
