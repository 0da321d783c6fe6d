//! Command templates (`on`, `off`, `reset`, `status`, optional `cycle`):
//! a site's own power scripts or a PDU. A template is split into words
//! first and only then are `{host}` and `{mac}` filled in, each inside its
//! word: a node name can never add an argument or reach a shell.

use super::run::{run, RunError};
use crate::baremetal::{NodeSpec, PowerAction, PowerDriver, PowerError, PowerReading, PowerSpec};
use std::process::Command;
use std::time::Duration;

pub struct CommandPower {
    pub timeout: Duration,
}

impl Default for CommandPower {
    fn default() -> CommandPower {
        CommandPower { timeout: Duration::from_secs(30) }
    }
}

/// Splits like a POSIX shell does words (single and double quotes,
/// backslash), with nothing else a shell does.
pub fn split_words(s: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            ' ' | '\t' | '\n' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed ' in {s:?}")),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(c @ ('"' | '\\' | '$' | '`')) => cur.push(c),
                            Some(c) => {
                                cur.push('\\');
                                cur.push(c);
                            }
                            None => return Err(format!("unclosed \" in {s:?}")),
                        },
                        Some(c) => cur.push(c),
                        None => return Err(format!("unclosed \" in {s:?}")),
                    }
                }
            }
            '\\' => {
                in_word = true;
                match chars.next() {
                    Some(c) => cur.push(c),
                    None => return Err(format!("a lone \\ ends {s:?}")),
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    Ok(words)
}

/// The argv of a template for one node.
pub fn argv(template: &str, host: &str, mac: &str) -> Result<Vec<String>, String> {
    let words = split_words(template)?;
    if words.is_empty() {
        return Err("the command template is empty".into());
    }
    Ok(words.iter().map(|w| w.replace("{host}", host).replace("{mac}", mac)).collect())
}

impl CommandPower {
    fn call(&self, node: &str, spec: &NodeSpec, which: &'static str) -> Result<String, PowerError> {
        let PowerSpec::Command { on, off, reset, status, cycle } = &spec.power else {
            return Err(PowerError::Unsupported { driver: "command", action: "drive a node without command templates" });
        };
        let template = match which {
            "on" => on,
            "off" => off,
            "reset" => reset,
            "status" => status,
            _ => match cycle {
                Some(c) => c,
                None => return Err(PowerError::Unsupported { driver: "command", action: "cycle (no `cycle` template)" }),
            },
        };
        let words = argv(template, node, &spec.mac).map_err(|d| PowerError::Failed { node: node.into(), detail: d, retry: false })?;
        let mut c = Command::new(&words[0]);
        c.args(&words[1..]);
        let ran = run(c, self.timeout).map_err(|e| match e {
            RunError::Spawn(d) => PowerError::Failed { node: node.into(), detail: d, retry: false },
            RunError::Timeout(t) => PowerError::Unreachable { node: node.into(), detail: format!("the {which} command did not end within {} s", t.as_secs()) },
        })?;
        if ran.success {
            Ok(ran.stdout)
        } else {
            let why = crate::term::escape(ran.stderr.trim()).into_owned();
            Err(PowerError::Failed { node: node.into(), detail: format!("the {which} command exited {:?}: {why}", ran.code), retry: true })
        }
    }
}

impl PowerDriver for CommandPower {
    fn act(&self, node: &str, spec: &NodeSpec, action: PowerAction) -> Result<(), PowerError> {
        let which = super::action_word(action);
        // Without a `cycle` template, off then on is a power cycle too.
        if action == PowerAction::Cycle && matches!(&spec.power, PowerSpec::Command { cycle: None, .. }) {
            self.call(node, spec, "off")?;
            return self.call(node, spec, "on").map(drop);
        }
        self.call(node, spec, which).map(drop)
    }

    /// The status command prints `on` or `off` (any case, as a word of its
    /// output; ipmitool's "Chassis Power is on" reads too).
    fn status(&self, node: &str, spec: &NodeSpec) -> Result<PowerReading, PowerError> {
        let out = self.call(node, spec, "status")?;
        let lower = out.to_lowercase();
        let words: Vec<&str> = lower.split(|c: char| !c.is_ascii_alphanumeric()).collect();
        match (words.contains(&"on"), words.contains(&"off")) {
            (true, false) => Ok(PowerReading::On),
            (false, true) => Ok(PowerReading::Off),
            _ => Err(PowerError::Failed { node: node.into(), detail: format!("the status command said {:?}, not on or off", crate::term::escape(out.trim())), retry: true }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::baremetal::power::testing::node;

    #[test]
    fn templates_are_split_before_placeholders_are_filled() {
        assert_eq!(split_words(r#"pdu -o "outlet {host}" 'a b'\ c"#).unwrap(), vec!["pdu", "-o", "outlet {host}", "a b c"]);
        assert!(split_words("a 'b").is_err() && split_words("a \"b").is_err() && split_words("a \\").is_err());
        // A hostile name stays one word and is never a shell's to read.
        let a = argv("power-on --node {host} --mac={mac}", "x; rm -rf / #", "52:54:00:00:00:01").unwrap();
        assert_eq!(a, vec!["power-on", "--node", "x; rm -rf / #", "--mac=52:54:00:00:00:01"]);
        assert!(argv("  ", "h", "m").is_err());
    }

    fn spec(dir: &std::path::Path, cycle: Option<&str>) -> NodeSpec {
        let log = dir.join("log");
        let t = |w: &str| format!("sh -c 'echo {w} $0 $1 >> {}' {{host}} {{mac}}", log.display());
        node(PowerSpec::Command {
            on: t("on"),
            off: t("off"),
            reset: t("reset"),
            status: "echo 'Power: ON'".into(),
            cycle: cycle.map(String::from),
        })
    }

    #[test]
    fn actions_run_their_templates() {
        let d = tempfile::tempdir().unwrap();
        let p = CommandPower::default();
        let s = spec(d.path(), None);
        p.act("n1", &s, PowerAction::Reset).unwrap();
        p.act("n1", &s, PowerAction::Cycle).unwrap();
        assert_eq!(std::fs::read_to_string(d.path().join("log")).unwrap(), "reset n1 52:54:00:12:34:56\noff n1 52:54:00:12:34:56\non n1 52:54:00:12:34:56\n");
        assert_eq!(p.status("n1", &s).unwrap(), PowerReading::On);
    }

    #[test]
    fn failures_are_typed() {
        let d = tempfile::tempdir().unwrap();
        let mut s = spec(d.path(), Some("false"));
        let e = CommandPower::default().act("n1", &s, PowerAction::Cycle).unwrap_err();
        assert!(matches!(e, PowerError::Failed { retry: true, .. }), "{e:?}");
        if let PowerSpec::Command { on, status, .. } = &mut s.power {
            *on = "/nonexistent/power on".into();
            *status = "echo maybe".into();
        }
        assert!(matches!(CommandPower::default().act("n1", &s, PowerAction::On), Err(PowerError::Failed { retry: false, .. })));
        assert!(CommandPower::default().status("n1", &s).is_err());
        if let PowerSpec::Command { off, .. } = &mut s.power {
            *off = "sleep 5".into();
        }
        let e = CommandPower { timeout: Duration::from_millis(200) }.act("n1", &s, PowerAction::Off).unwrap_err();
        assert!(matches!(e, PowerError::Unreachable { .. }), "{e:?}");
    }
}
