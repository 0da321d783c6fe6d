//! A bare-metal host's own keywords (`mac`, `power { }`, `disk`,
//! `partition`, `environment`, `boot`) typed into a [`NodeSpec`], and the
//! keywords of a VM refused on it. Every problem is reported, each with
//! its span; the spec is made only when nothing required is missing, so a
//! plan with errors has `baremetal: None` rather than a half node.

use super::typing::Typer;
use super::values::{self, Bad};
use crate::baremetal::automaton::PowerCommand;
use crate::baremetal::{BootMode, EnvRef, NodeSpec, PowerSpec};
use crate::diag::Diagnostic;
use crate::name::NameKind;
use crate::resolve::{RSection, RValue, ResolvedHost};
use crate::source::normalize;

/// IPMI's RMCP port, Kadeploy's and ipmitool's default.
pub const DEFAULT_IPMI_PORT: u16 = 623;
/// Partition numbers: MBR has 4 primary + logical; GPT 128 by default.
pub const MAX_PARTITION: u64 = 128;

/// Keywords of a bare-metal node only.
pub const NODE_KEYWORDS: [&str; 6] = ["mac", "power", "disk", "partition", "environment", "boot"];

/// What a VM has and a physical node cannot: its size, CPUs and memory
/// are the hardware's; its system is an environment, not a template.
const VM_KEYWORDS: [&str; 16] = [
    "memory",
    "vcpus",
    "cpus",
    "template",
    "size",
    "free_space",
    "swap",
    "clone",
    "lvm",
    "lvm_vg",
    "lvm_snapshot",
    "kernel",
    "ramdisk",
    "hvm",
    "vncdisplay",
    "vncpasswd",
];

/// A power command driver's templates, and those it cannot do without.
const TEMPLATES: [&str; 5] = ["on", "off", "reset", "status", "cycle"];
const REQUIRED_TEMPLATES: [&str; 4] = ["on", "off", "reset", "status"];

/// The placeholders a power command template may hold.
const PLACEHOLDERS: [&str; 2] = ["{host}", "{mac}"];

impl Typer<'_> {
    /// A VM's keywords on a bare-metal node, or a node's keywords on a VM.
    pub(super) fn kind_keywords(&mut self, s: &RSection, baremetal: bool) {
        if baremetal {
            for k in VM_KEYWORDS {
                if let Some(v) = s.value(k) {
                    let help = match k {
                        "template" => "a bare-metal node runs an environment: `environment NAME[:VERSION]` (see `mln env list`)",
                        "kernel" | "ramdisk" => "the environment holds the kernel and initrd it boots",
                        _ => "a physical node has the memory, CPUs and disk it was built with",
                    };
                    self.diags.push(
                        Diagnostic::error("mln::baremetal::vm_keyword", format!("`{k}` is for a virtual machine, not a bare-metal node"))
                            .label(v.origin.span, "on a `baremetal` host")
                            .help(help),
                    );
                }
            }
        } else {
            for k in NODE_KEYWORDS {
                let span = s.value(k).map(|v| v.origin.span).or_else(|| s.block(k).map(|b| b.span));
                if let Some(span) = span {
                    self.diags.push(
                        Diagnostic::error("mln::baremetal::not_baremetal", format!("`{k}` is for a bare-metal node"))
                            .label(span, "on a virtual machine")
                            .help("add `baremetal` to the host if it is a physical node"),
                    );
                }
            }
        }
    }

    /// The node's spec, or None after reporting what is missing.
    pub(super) fn node_spec(&mut self, r: &ResolvedHost) -> Option<NodeSpec> {
        let s = &r.section;
        let mut complete = true;
        let mac = match s.value("mac") {
            Some(v) => {
                let m = self.check(v, values::mac(&v.text), "mln::value::mac");
                complete &= m.is_some();
                m
            }
            None => {
                self.diags.push(
                    Diagnostic::error("mln::baremetal::missing_mac", format!("bare-metal host `{}` has no `mac`", r.name))
                        .label(self.def_span(r), "network-boots from which card?")
                        .help("add the MAC of the card the node network-boots from: `mac 52:54:00:12:34:56`"),
                );
                None
            }
        };
        let power = self.power(r);
        let fallback = self.power_fallback(r);
        complete &= fallback.is_some();
        let disk = s.value("disk").and_then(|v| {
            if v.text.starts_with("/dev/") && !v.text.contains("..") && !v.text.contains(char::is_whitespace) {
                Some(v.text.clone())
            } else {
                self.report(
                    v.origin.span,
                    Bad { message: format!("`{}` is not a disk device", crate::term::escape(&v.text)), help: Some("write the node's device, e.g. `disk /dev/sda`".into()) },
                    "mln::baremetal::disk",
                );
                complete = false;
                None
            }
        });
        let partition = s.value("partition").and_then(|v| {
            let n = self.uint_in(v, &v.text, 1, MAX_PARTITION, "partition", "partitions are numbered from 1 (GPT holds 128)");
            complete &= n.is_some();
            n.map(|n| u32::try_from(n).expect("checked against 1..=128"))
        });
        let environment = match s.value("environment") {
            Some(v) => {
                let e = self.env_ref(v);
                complete &= e.is_some();
                e
            }
            None => {
                self.diags.push(
                    Diagnostic::error("mln::baremetal::missing_environment", format!("bare-metal host `{}` has no `environment`", r.name))
                        .label(self.def_span(r), "deploys what?")
                        .help("name an environment of the library: `environment debian12` (see `mln env list`)"),
                );
                None
            }
        };
        let boot = match s.value("boot") {
            Some(v) if v.text == "disk" => Some(BootMode::Disk),
            Some(v) if v.text == "diskless" => Some(BootMode::Diskless),
            Some(v) => {
                if !v.is_broken() {
                    self.report(
                        v.origin.span,
                        Bad { message: format!("unknown boot mode `{}`", crate::term::escape(&v.text)), help: Some("use `boot disk` (the default) or `boot diskless`".into()) },
                        "mln::value::choice",
                    );
                }
                None
            }
            None => Some(BootMode::Disk),
        };
        if boot == Some(BootMode::Disk) && s.value("disk").is_none() {
            let span = s.value("boot").map(|v| v.origin.span).unwrap_or_else(|| self.def_span(r));
            self.diags.push(
                Diagnostic::error("mln::baremetal::boot_without_disk", format!("bare-metal host `{}` boots from its disk but has no `disk`", r.name))
                    .label(span, "boots from disk (the default)")
                    .help("name the disk the environment is written to (`disk /dev/sda`), or boot it from the network: `boot diskless`"),
            );
        }
        if let (Some(BootMode::Diskless), Some(v)) = (boot, s.value("partition")) {
            self.diags.push(
                Diagnostic::warning("mln::baremetal::diskless_partition", "`partition` is ignored: a diskless node writes nothing to disk")
                    .label(v.origin.span, "ignored"),
            );
        }
        Some(NodeSpec { mac: mac?, power: power?, disk, partition, environment: environment?, boot: boot?, fallback: fallback? }).filter(|_| complete)
    }

    /// Where the host is defined (its name), for what is missing in it.
    fn def_span(&self, r: &ResolvedHost) -> crate::source::Span {
        r.chain.first().map(|id| self.tree.def(*id).name_span).unwrap_or(r.section.span)
    }

    /// `NAME[:VERSION]`.
    fn env_ref(&mut self, v: &RValue) -> Option<EnvRef> {
        if v.is_broken() {
            return None;
        }
        let (name, version) = match v.text.split_once(':') {
            Some((n, ver)) => (n, Some(ver)),
            None => (v.text.as_str(), None),
        };
        if let Some(d) = crate::name::diagnose(NameKind::Environment, None, name, v.origin.span) {
            self.diags.push(d.help("write `environment NAME` or `environment NAME:VERSION`"));
            return None;
        }
        let version = match version {
            Some(t) => Some(u32::try_from(self.uint_in(v, t, 1, u64::from(u32::MAX), "environment version", "versions are numbered from 1")?).expect("checked")),
            None => None,
        };
        Some(EnvRef { name: name.to_string(), version })
    }

    fn power(&mut self, r: &ResolvedHost) -> Option<PowerSpec> {
        let Some(p) = r.section.block("power") else {
            self.diags.push(
                Diagnostic::error("mln::baremetal::missing_power", format!("bare-metal host `{}` has no `power` block", r.name))
                    .label(self.def_span(r), "reboots how?")
                    .help("say how mln powers it: `power { driver ipmi; address A; user U; password_file F }`, command templates (`driver command`), or `power { driver ssh }` for soft reboots only"),
            );
            return None;
        };
        if let Some(v) = p.value("password") {
            self.diags.push(
                Diagnostic::error("mln::baremetal::password_inline", "a power password is never written in the project file")
                    .label(v.origin.span, "a secret anyone reading the project sees")
                    .help("put it in a file only you can read and name it: `password_file /etc/mln/ipmi-node1`"),
            );
        }
        let Some(driver) = p.value("driver") else {
            self.diags.push(
                Diagnostic::error("mln::baremetal::power_settings", "the `power` block has no `driver`")
                    .label(p.span, "")
                    .help("`driver ipmi`, `driver command` or `driver ssh`"),
            );
            return None;
        };
        let missing = |this: &mut Self, keys: &[&str], what: &str| -> bool {
            let absent: Vec<String> = keys.iter().filter(|k| p.value(k).is_none()).map(|k| format!("`{k}`")).collect();
            if !absent.is_empty() {
                this.diags.push(
                    Diagnostic::error("mln::baremetal::power_settings", format!("the {what} driver needs {}", absent.join(", ")))
                        .label(driver.origin.span, format!("`driver {what}`"))
                        .label(p.span, "in this block"),
                );
            }
            absent.is_empty()
        };
        match driver.text.as_str() {
            "ipmi" => {
                let have = missing(self, &["address", "user", "password_file"], "ipmi");
                let port = match p.value("port") {
                    Some(v) => u16::try_from(self.uint_in(v, &v.text, 1, 65535, "port", "TCP and UDP ports are 1 to 65535")?).ok(),
                    None => Some(DEFAULT_IPMI_PORT),
                };
                let t = |k: &str| p.text(k).map(str::to_string);
                let password_file = t("password_file").map(|f| normalize(&self.project_dir.join(f)).display().to_string());
                (have && port.is_some()).then(|| PowerSpec::Ipmi {
                    address: t("address").unwrap_or_default(),
                    port: port.unwrap_or(DEFAULT_IPMI_PORT),
                    user: t("user").unwrap_or_default(),
                    password_file: password_file.unwrap_or_default(),
                })
            }
            "command" => {
                let have = missing(self, &["on", "off", "reset", "status"], "command");
                let mut templates_ok = true;
                for k in TEMPLATES {
                    if let Some(v) = p.value(k) {
                        templates_ok &= self.command_template(&format!("`{k}` command"), v);
                    }
                }
                let t = |k: &str| p.text(k).map(str::to_string).unwrap_or_default();
                (have && templates_ok).then(|| PowerSpec::Command { on: t("on"), off: t("off"), reset: t("reset"), status: t("status"), cycle: p.text("cycle").map(str::to_string) })
            }
            "ssh" => Some(PowerSpec::Ssh),
            other => {
                if !driver.is_broken() {
                    let mut d = Diagnostic::error("mln::baremetal::unknown_driver", format!("unknown power driver `{}`", crate::term::escape(other)))
                        .label(driver.origin.span, "");
                    d = match crate::schema::suggest(other, ["ipmi", "command", "ssh"].into_iter()) {
                        Some(m) => d.help(format!("did you mean `{m}`? The drivers are `ipmi`, `command` and `ssh`")),
                        None => d.help("the drivers are `ipmi`, `command` and `ssh`"),
                    };
                    self.diags.push(d);
                }
                None
            }
        }
    }

    /// `power { fallback { on ...; off ...; reset ...; status ...; cycle ... } }`:
    /// Some(None) without one, None when it is wrong (reported).
    fn power_fallback(&mut self, r: &ResolvedHost) -> Option<Option<PowerCommand>> {
        let Some(f) = r.section.block("power").and_then(|p| p.block("fallback")) else { return Some(None) };
        let absent: Vec<String> = REQUIRED_TEMPLATES.iter().filter(|k| f.value(k).is_none()).map(|k| format!("`{k}`")).collect();
        if !absent.is_empty() {
            self.diags.push(
                Diagnostic::error("mln::baremetal::power_settings", format!("the power `fallback` needs {}", absent.join(", ")))
                    .label(f.span, "in this block")
                    .help("the power-command level takes command templates as `driver command` does: `on`, `off`, `reset`, `status` (and optionally `cycle`), each quoted, with `{host}` and `{mac}`"),
            );
        }
        let mut ok = absent.is_empty();
        for k in TEMPLATES {
            if let Some(v) = f.value(k) {
                ok &= self.command_template(&format!("fallback's `{k}` command"), v);
            }
        }
        let t = |k: &str| f.text(k).map(str::to_string).unwrap_or_default();
        ok.then(|| Some(PowerCommand { on: t("on"), off: t("off"), reset: t("reset"), status: t("status"), cycle: f.text("cycle").map(str::to_string) }))
    }

    /// A command template holds only `{host}` and `{mac}` as placeholders,
    /// some program to run, and quotes that close (it is split into words
    /// as a shell would, then run without one).
    fn command_template(&mut self, key: &str, v: &RValue) -> bool {
        if v.is_broken() {
            return false;
        }
        let mut rest = v.text.as_str();
        while let Some(open) = rest.find('{') {
            let after = &rest[open..];
            let close = after.find('}').map(|c| c + 1).unwrap_or(after.len());
            let ph = &after[..close];
            if !PLACEHOLDERS.contains(&ph) {
                self.diags.push(
                    Diagnostic::error("mln::baremetal::placeholder", format!("`{}` in the {key} is not a placeholder", crate::term::escape(ph)))
                        .label(v.origin.span, "")
                        .help("a power command may use `{host}` (the node's name) and `{mac}` (its MAC)"),
                );
                return false;
            }
            rest = &after[close..];
        }
        if v.words.is_empty() || v.text.trim().is_empty() {
            self.diags.push(Diagnostic::error("mln::baremetal::power_settings", format!("the {key} is empty")).label(v.origin.span, ""));
            return false;
        }
        if let Err(why) = crate::baremetal::power::command::split_words(&v.text) {
            self.diags.push(
                Diagnostic::error("mln::baremetal::template_quoting", format!("the {key} cannot be split into words"))
                    .label(v.origin.span, crate::term::escape(&why).into_owned())
                    .help("close each ' and \" inside the template; a \\ must be followed by a character"),
            );
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use crate::baremetal::automaton::PowerCommand;

    fn compile(power: &str) -> crate::Compilation {
        let text = format!("global {{\n project p\n}}\nhost bm {{\n baremetal\n mac 52:54:00:aa:00:01\n disk /dev/vda\n environment e\n power {{\n{power} }}\n}}\n");
        crate::compile(std::path::Path::new("p.mln"), &crate::source::MemoryFs::default().with("p.mln", text), crate::plugin::Registry::new(vec![]))
    }

    /// The power-command level in the project file: typed into the node,
    /// templates kept as written (split and filled only when run).
    #[test]
    fn a_power_fallback_is_part_of_the_node() {
        let c = compile("  driver ipmi\n  address 10.0.0.1\n  user u\n  password_file pw\n  fallback {\n   on \"pdu '{host} a' on\"\n   off \"pdu {mac} off\"\n   reset \"pdu r\"\n   status \"pdu s\"\n  }\n");
        assert!(c.ok(), "{:?}", c.diags);
        let node = c.plan.hosts[0].baremetal.as_deref().unwrap();
        assert_eq!(
            node.fallback,
            Some(PowerCommand { on: "pdu '{host} a' on".into(), off: "pdu {mac} off".into(), reset: "pdu r".into(), status: "pdu s".into(), cycle: None })
        );
        let json = serde_json::to_value(node).unwrap();
        assert_eq!(json["fallback"]["cycle"], serde_json::Value::Null);
        // Without one, the plan's JSON is what it was.
        let c = compile("  driver ssh\n");
        assert!(c.ok(), "{:?}", c.diags);
        assert!(serde_json::to_value(c.plan.hosts[0].baremetal.as_deref().unwrap()).unwrap().get("fallback").is_none());
    }

    #[test]
    fn a_wrong_fallback_is_reported_whole_and_leaves_no_node() {
        let c = compile("  driver ssh\n  fallback {\n   on \"pdu {node}\"\n   cycle \"pdu 'x\"\n  }\n");
        let codes: Vec<&str> = c.diags.iter().map(|d| d.code).collect();
        for want in ["mln::baremetal::power_settings", "mln::baremetal::placeholder", "mln::baremetal::template_quoting"] {
            assert!(codes.contains(&want), "{want}: {codes:?}");
        }
        assert!(c.plan.hosts[0].baremetal.is_none());
    }
}
