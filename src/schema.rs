//! Which keyword may stand in which block, and what its value is.
//!
//! The grammar knows no keywords; this table does. Plugins add keywords by
//! declaring blocks of their own, so validation knows them too.

use indexmap::IndexMap;
use std::sync::Arc;

/// The type of a scalar value, checked when the plan is typed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ty {
    Text,
    Int,
    /// `250M`, `1G`, `512K`, `4096b`: binary units.
    Size,
    Ipv4,
    /// An IPv4 address or `dhcp`.
    Address,
    Netmask,
    Mac,
    /// A crypt(3) hash. Taken literally (`$6$...` is no variable) unless the
    /// whole value is one variable reference.
    Hash,
    /// `xterm`, `screen` or `none` (for plugins; the core's `term` is
    /// ignored with a warning).
    Term,
    /// A single name without spaces.
    Name,
    /// Several space-separated words.
    Words,
}

/// What the lines of a list block hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineTy {
    /// Shell command lines, kept as written.
    Shell,
    /// `NAME CRYPT-HASH [HOME] [UID]`
    Users,
    /// `SRC DEST [MODE]`
    Files,
    /// `SRC MOUNTPOINT FSTYPE [OPTIONS]`
    Mounts,
    /// Any words, one item per word.
    Words,
    /// Lines passed through untouched.
    Raw,
    /// `HOST [COUNT|all]`
    ServiceHosts,
}

#[derive(Clone, Debug)]
pub enum Kind {
    /// `KEY VALUE`; written again, the last one wins.
    Value(Ty),
    /// `KEY` alone, optionally with words after it (`lvm -i2`).
    Flag,
    /// `KEY { line... }`: additive under inheritance.
    Lines(LineTy),
    /// `KEY { ... }`, one per block, merged key by key.
    Block(Arc<Schema>),
    /// `KEY LABEL { ... }`, one per label. With `label_required` false,
    /// `KEY { }` stands for an empty label.
    Named { schema: Arc<Schema>, label_required: bool },
}

#[derive(Clone, Debug)]
pub struct Keyword {
    pub name: &'static str,
    pub kind: Kind,
    /// The keyword this one is another name for (`location` → `service_host`).
    pub alias_of: Option<&'static str>,
    /// Which plugin declared it, if not the core.
    pub plugin: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// Shown in messages: "host", "network", "autoenum"...
    pub name: String,
    pub keywords: IndexMap<String, Keyword>,
    /// Core blocks that may stand in this (plugin's) block, read as the
    /// core reads them (`network eth0 { }` in `openstack { }`). Filled in
    /// with the core's keywords when the plugin's keywords are merged.
    pub nest: Vec<String>,
}

impl Schema {
    pub fn new(name: &str) -> Schema {
        Schema { name: name.to_string(), keywords: IndexMap::new(), nest: vec![] }
    }
    pub fn with(mut self, name: &'static str, kind: Kind) -> Schema {
        self.keywords.insert(name.to_string(), Keyword { name, kind, alias_of: None, plugin: None });
        self
    }
    pub fn alias(mut self, name: &'static str, of: &'static str) -> Schema {
        let kind = self.keywords[of].kind.clone();
        self.keywords.insert(name.to_string(), Keyword { name, kind, alias_of: Some(of), plugin: None });
        self
    }
    pub fn get(&self, name: &str) -> Option<&Keyword> {
        self.keywords.get(name)
    }
    /// The closest known keyword, for "did you mean".
    pub fn suggest(&self, name: &str) -> Option<&str> {
        suggest(name, self.keywords.keys().map(String::as_str))
    }
}

pub fn suggest<'a>(name: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .map(|c| (strsim::damerau_levenshtein(name, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 4) && *d < c.len())
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

pub const HOOKS: [&str; 8] = [
    "beforeProjectStart",
    "afterProjectStart",
    "beforeHostsStart",
    "afterHostsStart",
    "beforeProjectStop",
    "afterProjectStop",
    "beforeHostsStop",
    "afterHostsStop",
];

/// The schemas of the core language, with the keywords of the plugins
/// a project may use merged in.
#[derive(Clone, Debug)]
pub struct CoreSchemas {
    pub global: Schema,
    pub host: Schema,
    pub switch: Schema,
}

impl CoreSchemas {
    /// The schema of `network IFACE { }` blocks (hosts and superclasses).
    pub fn network(&self) -> &Schema {
        match self.host.get("network").map(|k| &k.kind) {
            Some(Kind::Named { schema, .. }) => schema,
            _ => unreachable!("the core declares `network` as a named block"),
        }
    }
    pub fn network_mut(&mut self) -> &mut Schema {
        match self.host.keywords.get_mut("network").map(|k| &mut k.kind) {
            Some(Kind::Named { schema, .. }) => Arc::make_mut(schema),
            _ => unreachable!("the core declares `network` as a named block"),
        }
    }
}

pub fn network() -> Schema {
    use Kind::*;
    Schema::new("network")
        .with("address", Value(Ty::Address))
        .with("netmask", Value(Ty::Netmask))
        .with("broadcast", Value(Ty::Ipv4))
        .with("gateway", Value(Ty::Ipv4))
        .with("mac", Value(Ty::Mac))
        .with("switch", Value(Ty::Name))
        .with("bridge", Value(Ty::Name))
        // User-Mode Linux's, accepted with a warning (definitions.rs).
        .with("tun_iface", Value(Ty::Text))
        .with("tun_address", Value(Ty::Text))
}

/// `power { driver ipmi|command|ssh; ...; fallback { } }` of a bare-metal
/// node.
/// `password` is known only to be refused with a reason: a secret is
/// read from `password_file`, never written in the project.
pub fn power() -> Schema {
    use Kind::*;
    Schema::new("power")
        .with("driver", Value(Ty::Name))
        .with("address", Value(Ty::Text))
        .with("port", Value(Ty::Int))
        .with("user", Value(Ty::Text))
        .with("password_file", Value(Ty::Text))
        .with("password", Value(Ty::Text))
        .with("on", Value(Ty::Text))
        .with("off", Value(Ty::Text))
        .with("reset", Value(Ty::Text))
        .with("status", Value(Ty::Text))
        .with("cycle", Value(Ty::Text))
        .with("fallback", Block(Arc::new(power_fallback())))
}

/// `power { fallback { on ...; off ...; reset ...; status ...; cycle ... } }`:
/// the node's power-command level below its driver (a PDU outlet, the
/// site's script), command templates as `driver command`'s.
pub fn power_fallback() -> Schema {
    use Kind::*;
    Schema::new("fallback")
        .with("on", Value(Ty::Text))
        .with("off", Value(Ty::Text))
        .with("reset", Value(Ty::Text))
        .with("status", Value(Ty::Text))
        .with("cycle", Value(Ty::Text))
}

pub fn core() -> CoreSchemas {
    use Kind::*;
    // `des_hashes`: the project accepts DES password hashes (with a
    // warning each); without it they are refused.
    let mut global = Schema::new("global").with("project", Value(Ty::Name)).with("des_hashes", Flag);
    for h in HOOKS {
        global = global.with(h, Lines(LineTy::Shell));
    }
    let host = Schema::new("host")
        .with("superclass", Value(Ty::Name))
        .with("xen", Flag)
        .with("kvm", Flag)
        .with("uml", Flag)
        .with("baremetal", Flag)
        // A bare-metal node's (book: baremetal.md); refused on a VM
        // (plan/baremetal.rs).
        .with("mac", Value(Ty::Mac))
        .with("power", Block(Arc::new(power())))
        .with("disk", Value(Ty::Text))
        .with("partition", Value(Ty::Int))
        .with("environment", Value(Ty::Text))
        .with("boot", Value(Ty::Name))
        .with("template", Value(Ty::Text))
        .with("size", Value(Ty::Size))
        .with("free_space", Value(Ty::Size))
        .with("swap", Value(Ty::Size))
        // Refused where written (definitions.rs): known, so the message
        // says why rather than "unknown keyword".
        .with("filepath", Value(Ty::Text))
        .with("clone", Value(Ty::Name))
        .with("lvm", Flag)
        .with("lvm_vg", Value(Ty::Name))
        .with("lvm_snapshot", Flag)
        .with("memory", Value(Ty::Size))
        .with("vcpus", Value(Ty::Int))
        .with("cpus", Value(Ty::Text))
        // Accepted with a warning (no effect): definitions.rs.
        .with("term", Value(Ty::Text))
        .with("boot_order", Value(Ty::Int))
        .with("kernel", Value(Ty::Text))
        .with("ramdisk", Value(Ty::Text))
        .with("hvm", Flag)
        .with("vncdisplay", Value(Ty::Int))
        .with("vncpasswd", Value(Ty::Text))
        .with("service_host", Value(Ty::Name))
        .alias("location", "service_host")
        .with("nameserver", Value(Ty::Words))
        .with("root_password", Value(Ty::Hash))
        .alias("root_passwd", "root_password")
        .with("description", Value(Ty::Text))
        .with("network", Named { schema: Arc::new(network()), label_required: true })
        .with("users", Lines(LineTy::Users))
        // `groups { G { user... } }`: any name in `groups` is a group whose
        // lines are member names, additive like every list.
        .with("groups", Block(Arc::new(Schema::new("groups").with("*", Lines(LineTy::Words)))))
        .with("startup", Lines(LineTy::Shell))
        .with("shutdown", Lines(LineTy::Shell))
        .with("files", Lines(LineTy::Files))
        .with("mount", Lines(LineTy::Mounts))
        .with("modules", Lines(LineTy::Words))
        .with("xen_extra", Lines(LineTy::Raw))
        // User-Mode Linux's, accepted with a warning (definitions.rs).
        .with("owner", Value(Ty::Text))
        .with("group", Value(Ty::Text))
        .with("sudo", Value(Ty::Text));
    let switch = Schema::new("switch")
        .with("bridge", Value(Ty::Name))
        .with("service_host", Value(Ty::Name))
        .alias("location", "service_host")
        .with("hub", Flag)
        .with("socket", Value(Ty::Text))
        .with("tap", Value(Ty::Name))
        .with("owner", Value(Ty::Text))
        .with("group", Value(Ty::Text))
        .with("sudo", Value(Ty::Text));
    CoreSchemas { global, host, switch }
}

#[cfg(test)]
mod tests {
    #[test]
    fn suggestions_are_close_words_only() {
        let names = ["memory", "template", "service_host", "network"];
        assert_eq!(super::suggest("memroy", names.into_iter()), Some("memory"));
        assert_eq!(super::suggest("servicehost", names.into_iter()), Some("service_host"));
        assert_eq!(super::suggest("zzz", names.into_iter()), None);
    }
}
