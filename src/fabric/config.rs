//! The fabric: which service hosts exist and how to reach them. Two files,
//! both optional: MLN's servers file (`host [max-vms]` per line, `#`
//! comments) and a TOML fabric configuration with defaults and per-host
//! settings (book: "The fabric").

use indexmap::IndexMap;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where to connect (name or address); default: the host's name.
    pub address: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    /// Private key files to try after the ssh-agent's keys.
    pub identity: Option<Vec<PathBuf>>,
    pub known_hosts: Option<PathBuf>,
    /// Record the key of a host with no recorded key instead of refusing
    /// it. A host with any recorded key (of any type) offering another is
    /// a changed key, refused whatever this says.
    pub accept_new_host_keys: Option<bool>,
    /// libvirt URI on the service host.
    pub libvirt: Option<String>,
    pub state_dir: Option<String>,
    pub templates: Option<String>,
    /// Where the agent binary is kept on the service host.
    pub agent_dir: Option<String>,
    pub max_vms: Option<u32>,
    /// Memory the host may give to VMs (`8G`, `512M`).
    pub memory: Option<String>,
    /// Virtual CPUs the host may give to VMs.
    pub vcpus: Option<u32>,
    /// Seconds to wait for a connection and handshake.
    pub connect_timeout: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FabricFile {
    servers: Option<PathBuf>,
    fanout: Option<usize>,
    #[serde(default)]
    defaults: Settings,
    #[serde(default)]
    hosts: IndexMap<String, Settings>,
    /// The deployment automaton per cluster of bare-metal nodes (book:
    /// baremetal.md): `[baremetal.default]`, `[baremetal.SUPERCLASS]`.
    #[serde(default)]
    baremetal: IndexMap<String, crate::baremetal::automaton::Config>,
    /// Where bare-metal nodes network-boot from (book: baremetal.md).
    netboot: Option<NetbootConfig>,
}

/// `[netboot]`: the network-boot service of bare-metal nodes. dnsmasq run
/// by mln on `interface`, or (`pxe_dir`) profiles written into an
/// existing PXE server's TFTP directory.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetbootConfig {
    /// The boot network's interface (a bridge): dnsmasq binds to it alone.
    pub interface: Option<String>,
    /// The boot network (`10.79.3.0/24`): every node's address is in it.
    pub subnet: String,
    /// This machine's address on it (the TFTP server).
    pub server: String,
    /// An existing PXE server's TFTP root: mln writes there and runs no
    /// dnsmasq (the leases for its DHCP server are written beside).
    pub pxe_dir: Option<PathBuf>,
    /// The deploy system's build script; deploysys/build.sh of mln's
    /// source by default. Built once into the state directory.
    pub deploy_build: Option<PathBuf>,
}

/// One service host with every setting decided (sent as it is to a head
/// of a tree fan-out).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Server {
    pub name: String,
    pub address: String,
    pub user: String,
    pub port: u16,
    pub identity: Vec<PathBuf>,
    pub known_hosts: PathBuf,
    pub accept_new_host_keys: bool,
    pub libvirt: String,
    pub state_dir: String,
    pub templates: String,
    pub agent_dir: String,
    pub max_vms: Option<u32>,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub connect_timeout: u64,
}

#[derive(Clone, Debug, Default)]
pub struct Fabric {
    /// Hosts in the order the files name them.
    hosts: IndexMap<String, Settings>,
    defaults: Settings,
    pub fanout: usize,
    /// The file it came from, for messages.
    pub origin: Option<PathBuf>,
    /// The deployment automaton's configuration per cluster (a node's
    /// cluster is its superclass; `default` for the others).
    pub baremetal: IndexMap<String, crate::baremetal::automaton::Config>,
    /// `[netboot]`, paths resolved against the fabric file's directory.
    pub netboot: Option<NetbootConfig>,
}

pub const DEFAULT_FANOUT: usize = 64;

fn home() -> PathBuf {
    std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/root"))
}

fn expand(p: &Path) -> PathBuf {
    match p.strip_prefix("~") {
        Ok(rest) => home().join(rest),
        Err(_) => p.to_path_buf(),
    }
}

/// `8G`, `512M`, `1T`, `1024` (MiB) as MiB; None when it is not a size
/// or does not fit.
pub fn parse_mib(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.chars().last()? {
        'G' | 'g' => (&s[..s.len() - 1], 1024),
        'M' | 'm' => (&s[..s.len() - 1], 1),
        'T' | 't' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    let num = num.trim();
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    num.parse::<u64>().ok()?.checked_mul(mult)
}

/// Limits on the fabric's numbers: anything outside is a mistake (and
/// could overflow the sums made from it).
pub const MAX_VMS_PER_HOST: u32 = 100_000;
/// 1 PiB, in MiB.
pub const MAX_MEMORY_MIB: u64 = 1 << 30;
pub const MAX_VCPUS: u32 = 1 << 20;
pub const MAX_FANOUT: usize = 4096;
pub const MAX_CONNECT_TIMEOUT: u64 = 3600;

/// MLN's servers file: `host [max-vms]` per line; `#` starts a comment.
pub fn parse_servers(text: &str, file: &Path) -> Result<Vec<(String, Option<u32>)>, ConfigError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim().trim_end_matches(';').trim();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            [] => {}
            [h, ..] if crate::name::check(crate::name::NameKind::ServiceHost, h).is_err() => {
                let e = crate::name::check(crate::name::NameKind::ServiceHost, h).unwrap_err();
                errors.push(format!("{}:{}:1: {e}", file.display(), i + 1));
            }
            [h] => out.push((h.to_string(), None)),
            [h, "all"] => out.push((h.to_string(), None)),
            [h, n] => match n.parse::<u32>() {
                Ok(v) if v <= MAX_VMS_PER_HOST => out.push((h.to_string(), Some(v))),
                Ok(_) => errors.push(format!(
                    "{}:{}:{}: {n} VMs is over the limit of {MAX_VMS_PER_HOST} per host",
                    file.display(),
                    i + 1,
                    line.find(n).unwrap_or(0) + 1
                )),
                Err(_) => errors.push(format!(
                    "{}:{}:{}: `{}` is not a number of VMs (a line is `host [max-vms]`)",
                    file.display(),
                    i + 1,
                    line.find(n).unwrap_or(0) + 1,
                    crate::term::escape(n)
                )),
            },
            _ => errors.push(format!("{}:{}:1: a line is `host [max-vms]`, this one has {} words", file.display(), i + 1, words.len())),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(ConfigError::Invalid(errors))
    }
}

/// A fabric configuration that cannot be used: never worth retrying as it
/// stands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {what} {}: {message}", path.display())]
    Unreadable { what: &'static str, path: PathBuf, message: String },
    /// Every problem found, each `file[:line:column]: what`.
    #[error("{}", .0.join("\n"))]
    Invalid(Vec<String>),
}

impl ConfigError {
    fn unreadable<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ConfigError + 'a {
        move |e| ConfigError::Unreadable { what, path: path.to_path_buf(), message: e.to_string() }
    }
}

impl Fabric {
    /// A TOML fabric configuration (`.toml`) or a servers file (anything else).
    pub fn load(path: &Path) -> Result<Fabric, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(ConfigError::unreadable("fabric file", path))?;
        Fabric::parse(&text, path, |p| std::fs::read_to_string(p).map_err(ConfigError::unreadable("servers file", p)))
    }

    /// The fabric in `text`, read from `path` (a TOML configuration when
    /// it ends in `.toml`, else a servers file); a servers file the TOML
    /// names is read with `read`. Every setting is checked: a fabric that
    /// loads has only names and numbers in range.
    pub fn parse(text: &str, path: &Path, read: impl FnOnce(&Path) -> Result<String, ConfigError>) -> Result<Fabric, ConfigError> {
        let mut fabric = Fabric { fanout: DEFAULT_FANOUT, origin: Some(path.to_path_buf()), ..Fabric::default() };
        if path.extension().is_some_and(|e| e == "toml") {
            let file: FabricFile = toml::from_str(text).map_err(|e| ConfigError::Invalid(vec![format!("{}: {e}", path.display())]))?;
            if let Some(servers) = &file.servers {
                let p = path.parent().unwrap_or(Path::new(".")).join(expand(servers));
                let text = read(&p)?;
                for (h, max) in parse_servers(&text, &p)? {
                    fabric.hosts.entry(h).or_default().max_vms = max;
                }
            }
            for (name, s) in file.hosts {
                let e = fabric.hosts.entry(name).or_default();
                let max = e.max_vms;
                *e = s;
                e.max_vms = e.max_vms.or(max);
            }
            fabric.defaults = file.defaults;
            for (cluster, c) in &file.baremetal {
                c.check().map_err(|e| ConfigError::Invalid(vec![format!("{}: [baremetal.{cluster}]: {e}", path.display())]))?;
            }
            fabric.baremetal = file.baremetal;
            fabric.netboot = file.netboot.map(|mut n| {
                let base = path.parent().unwrap_or(Path::new("."));
                n.pxe_dir = n.pxe_dir.map(|p| base.join(expand(&p)));
                n.deploy_build = n.deploy_build.map(|p| base.join(expand(&p)));
                n
            });
            if let Some(f) = file.fanout {
                if !(1..=MAX_FANOUT).contains(&f) {
                    return Err(ConfigError::Invalid(vec![format!("{}: fanout must be from 1 to {MAX_FANOUT}, not {f}", path.display())]));
                }
                fabric.fanout = f;
            }
        } else {
            for (h, max) in parse_servers(text, path)? {
                fabric.hosts.entry(h).or_default().max_vms = max;
            }
        }
        let problems = fabric.problems();
        if problems.is_empty() {
            Ok(fabric)
        } else {
            Err(ConfigError::Invalid(problems.iter().map(|p| format!("{}: {p}", path.display())).collect()))
        }
    }

    /// The fabric from `--fabric`, else `$MLN_FABRIC`, else
    /// `STATE_DIR/fabric.toml` when it exists, else an empty one (every
    /// service host reached by name with the defaults).
    pub fn find(explicit: Option<&Path>, state_dir: &Path) -> Result<Fabric, ConfigError> {
        let path = explicit
            .map(Path::to_path_buf)
            .or_else(|| std::env::var_os("MLN_FABRIC").map(PathBuf::from))
            .or_else(|| Some(state_dir.join("fabric.toml")).filter(|p| p.exists()));
        match path {
            Some(p) => Fabric::load(&p),
            None => Ok(Fabric { fanout: DEFAULT_FANOUT, ..Fabric::default() }),
        }
    }

    /// The automaton's configuration for a bare-metal node of this
    /// superclass: its cluster's, else `default`, else the built-in one.
    pub fn automaton_for(&self, superclass: Option<&str>) -> crate::baremetal::automaton::Config {
        superclass.and_then(|s| self.baremetal.get(s)).or_else(|| self.baremetal.get("default")).cloned().unwrap_or_default()
    }

    pub fn names(&self) -> Vec<String> {
        self.hosts.keys().cloned().collect()
    }

    pub fn knows(&self, name: &str) -> bool {
        self.hosts.contains_key(name)
    }

    /// A host's settings over the defaults over built-in defaults.
    pub fn server(&self, name: &str) -> Server {
        let none = Settings::default();
        let h = self.hosts.get(name).unwrap_or(&none);
        let d = &self.defaults;
        let user = h.user.clone().or(d.user.clone()).unwrap_or_else(|| std::env::var("USER").unwrap_or_else(|_| "root".into()));
        let root = user == "root";
        let state_dir = h.state_dir.clone().or(d.state_dir.clone()).unwrap_or_else(|| {
            if root { "/var/lib/mln".into() } else { ".local/state/mln".into() }
        });
        Server {
            name: name.to_string(),
            address: h.address.clone().unwrap_or_else(|| name.to_string()),
            port: h.port.or(d.port).unwrap_or(22),
            identity: h
                .identity
                .clone()
                .or(d.identity.clone())
                .unwrap_or_else(|| ["id_ed25519", "id_ecdsa", "id_rsa"].iter().map(|k| home().join(".ssh").join(k)).collect())
                .iter()
                .map(|p| expand(p))
                .collect(),
            known_hosts: expand(&h.known_hosts.clone().or(d.known_hosts.clone()).unwrap_or_else(|| home().join(".ssh/known_hosts"))),
            accept_new_host_keys: h.accept_new_host_keys.or(d.accept_new_host_keys).unwrap_or(false),
            libvirt: h.libvirt.clone().or(d.libvirt.clone()).unwrap_or_else(|| "qemu:///system".into()),
            templates: h.templates.clone().or(d.templates.clone()).unwrap_or_else(|| format!("{state_dir}/templates")),
            agent_dir: h.agent_dir.clone().or(d.agent_dir.clone()).unwrap_or_else(|| format!("{state_dir}/agent")),
            state_dir,
            user,
            max_vms: h.max_vms.or(d.max_vms),
            memory_mib: h.memory.as_deref().or(d.memory.as_deref()).and_then(parse_mib),
            vcpus: h.vcpus.or(d.vcpus),
            connect_timeout: h.connect_timeout.or(d.connect_timeout).unwrap_or(10),
        }
    }

    /// Settings that do not parse or are out of range, reported before
    /// anything connects.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in self.hosts.keys() {
            if let Err(e) = crate::name::check(crate::name::NameKind::ServiceHost, name) {
                out.push(e.to_string());
            }
        }
        for (name, s) in std::iter::once(("defaults", &self.defaults)).chain(self.hosts.iter().map(|(k, v)| (k.as_str(), v))) {
            let name = crate::term::escape(name);
            if let Some(m) = &s.memory {
                match parse_mib(m) {
                    None => out.push(format!("{name}: memory `{}` is not a size (e.g. 8G, 512M)", crate::term::escape(m))),
                    Some(v) if !(1..=MAX_MEMORY_MIB).contains(&v) => {
                        out.push(format!("{name}: memory `{}` is out of range (1M to {} G)", crate::term::escape(m), MAX_MEMORY_MIB / 1024))
                    }
                    Some(_) => {}
                }
            }
            if let Some(v) = s.max_vms.filter(|&v| v > MAX_VMS_PER_HOST) {
                out.push(format!("{name}: max_vms {v} is over the limit of {MAX_VMS_PER_HOST}"));
            }
            if let Some(v) = s.vcpus.filter(|v| !(1..=MAX_VCPUS).contains(v)) {
                out.push(format!("{name}: vcpus {v} is out of range (1 to {MAX_VCPUS})"));
            }
            if s.port == Some(0) {
                out.push(format!("{name}: port 0 is not a port (1 to 65535)"));
            }
            if let Some(v) = s.connect_timeout.filter(|v| !(1..=MAX_CONNECT_TIMEOUT).contains(v)) {
                out.push(format!("{name}: connect_timeout {v} is out of range (1 to {MAX_CONNECT_TIMEOUT} seconds)"));
            }
            if let Some(a) = &s.address {
                let ok = !a.is_empty() && !a.starts_with('-') && a.chars().all(|c| c.is_ascii_alphanumeric() || ".-_:%".contains(c));
                if !ok {
                    out.push(format!("{name}: address `{}` is not a host name or an IP address", crate::term::escape(a)));
                }
            }
        }
        out
    }
}

/// The most names one node set may expand to.
pub const MAX_NODESET: u64 = 100_000;

/// One piece of a node-set word: literal text, or a bracketed list of
/// ranges (`from`, `to`, the width to pad to).
enum Piece<'a> {
    Text(&'a str),
    Ranges(Vec<(u64, u64, usize)>),
}

/// Expands a host list as clush writes it: `h1,h2`, `h[1-3,7]`,
/// `node[01-12]`, `r[1-2]n[1-4]` (every combination). Total: any input
/// gives the names or an error saying what is wrong (unbalanced or nested
/// brackets, empty names or ranges, reversed ranges, numbers that do not
/// fit, more than [`MAX_NODESET`] names, names that are not service host
/// names). Names come once each, in the order first given.
pub fn expand_nodeset(spec: &str) -> Result<Vec<String>, String> {
    let shown = crate::term::escape(spec);
    let msg = |m: String| format!("host set `{shown}`: {m}");
    let err = |m: String| Err(msg(m));
    // Words split at commas outside brackets; brackets balanced, not nested.
    let mut words = Vec::new();
    let (mut open, mut start) = (None, 0);
    for (i, c) in spec.char_indices() {
        match c {
            '[' if open.is_some() => return err(format!("`[` inside `[...]` at column {}", i + 1)),
            '[' => open = Some(i),
            ']' if open.is_none() => return err(format!("`]` without `[` at column {}", i + 1)),
            ']' => open = None,
            ',' if open.is_none() => {
                words.push(&spec[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if let Some(i) = open {
        return err(format!("`[` at column {} without `]`", i + 1));
    }
    words.push(&spec[start..]);
    let mut parsed = Vec::new();
    let mut total: u64 = 0;
    for w in words {
        if w.is_empty() {
            return err("an empty name (a comma at an end, or two in a row)".into());
        }
        let pieces = pieces(w).map_err(|m| msg(format!("`{}`: {m}", crate::term::escape(w))))?;
        let count = pieces.iter().fold(1u64, |n, p| match p {
            Piece::Text(_) => n,
            Piece::Ranges(r) => n.saturating_mul(r.iter().fold(0u64, |k, &(a, b, _)| k.saturating_add((b - a).saturating_add(1)))),
        });
        total = total.saturating_add(count);
        if total > MAX_NODESET {
            return err(format!("more than {MAX_NODESET} names"));
        }
        parsed.push(pieces);
    }
    let mut out = indexmap::IndexSet::new();
    for pieces in parsed {
        let mut names = vec![String::new()];
        for p in &pieces {
            names = match p {
                Piece::Text(t) => names.into_iter().map(|n| n + t).collect(),
                Piece::Ranges(rs) => names
                    .iter()
                    .flat_map(|n| rs.iter().flat_map(move |&(a, b, width)| (a..=b).map(move |k| format!("{n}{k:0width$}"))))
                    .collect(),
            };
        }
        for n in names {
            if let Err(e) = crate::name::check(crate::name::NameKind::ServiceHost, &n) {
                return err(e.to_string());
            }
            out.insert(n);
        }
    }
    Ok(out.into_iter().collect())
}

/// The pieces of one word (brackets known to be balanced and flat).
fn pieces(w: &str) -> Result<Vec<Piece<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = w;
    while let Some(open) = rest.find('[') {
        if open > 0 {
            out.push(Piece::Text(&rest[..open]));
        }
        let close = open + rest[open..].find(']').ok_or("`[` without `]`")?;
        let inner = &rest[open + 1..close];
        if inner.is_empty() {
            return Err("empty `[]`".into());
        }
        let mut ranges = Vec::new();
        for r in inner.split(',') {
            let (a, b) = r.split_once('-').unwrap_or((r, r));
            let num = |x: &str| -> Result<u64, String> {
                if x.is_empty() {
                    return Err(format!("`{r}` is not a number or a range (`1`, `1-4`, `01-12`)"));
                }
                if !x.bytes().all(|c| c.is_ascii_digit()) {
                    return Err(format!("`{}` is not a number", crate::term::escape(x)));
                }
                x.parse::<u64>().map_err(|_| format!("{x} is too large"))
            };
            let (x, y) = (num(a)?, num(b)?);
            if y < x {
                return Err(format!("the range {r} goes backwards (write {b}-{a})"));
            }
            // Zero-padded as written: `01-12` gives 01 .. 12.
            ranges.push((x, y, a.len()));
        }
        out.push(Piece::Ranges(ranges));
        rest = &rest[close + 1..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest));
    }
    Ok(out)
}

/// The reverse of [`expand_nodeset`], for folded output: `h1,h2,h3` → `h[1-3]`.
pub fn fold_nodeset(names: &[String]) -> String {
    let mut groups: IndexMap<(String, usize), Vec<u64>> = IndexMap::new();
    let mut plain = Vec::new();
    let split = |n: &str| {
        let digits = n.chars().rev().take_while(|c| c.is_ascii_digit()).count();
        let (p, d) = n.split_at(n.len() - digits);
        (p.to_string(), d.to_string())
    };
    // Zero-padded widths in use per prefix: `node10` joins `node[08-09]`.
    let padded: std::collections::HashSet<(String, usize)> = names
        .iter()
        .map(|n| split(n))
        .filter(|(_, d)| d.len() > 1 && d.starts_with('0'))
        .map(|(p, d)| (p, d.len()))
        .collect();
    for n in names {
        let (prefix, num) = split(n);
        if num.is_empty() {
            plain.push(n.clone());
            continue;
        }
        // Digits that do not fit a number stay as they are.
        let Ok(value) = num.parse::<u64>() else {
            plain.push(n.clone());
            continue;
        };
        let width = if padded.contains(&(prefix.clone(), num.len())) { num.len() } else { 0 };
        groups.entry((prefix, width)).or_default().push(value);
    }
    let mut out = plain;
    for ((prefix, width), mut nums) in groups {
        nums.sort_unstable();
        nums.dedup();
        if nums.len() == 1 {
            out.push(format!("{prefix}{:0width$}", nums[0]));
            continue;
        }
        let mut ranges = Vec::new();
        let mut start = nums[0];
        let mut prev = nums[0];
        for &n in &nums[1..] {
            if n != prev + 1 {
                ranges.push((start, prev));
                start = n;
            }
            prev = n;
        }
        ranges.push((start, prev));
        let text: Vec<String> = ranges
            .iter()
            .map(|&(a, b)| if a == b { format!("{a:0width$}") } else { format!("{a:0width$}-{b:0width$}") })
            .collect();
        out.push(format!("{prefix}[{}]", text.join(",")));
    }
    out.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_metal_clusters_get_their_automaton() {
        let f = Fabric::parse(
            "[baremetal.default]\nwindow = 10\n[baremetal.rack2]\nboot = [{ type = \"hard\", timeout = 500, retries = 2 }]\n",
            Path::new("f.toml"),
            |_| unreachable!(),
        )
        .unwrap();
        assert_eq!(f.automaton_for(Some("rack1")).window, 10);
        assert_eq!(f.automaton_for(Some("rack2")).boot[0].timeout, 500);
        assert_eq!(Fabric::default().automaton_for(None), crate::baremetal::automaton::Config::default());
        let e = Fabric::parse("[baremetal.x]\ninstall = [{ type = \"kexec\", timeout = 5 }]\n", Path::new("f.toml"), |_| unreachable!()).unwrap_err();
        assert!(e.to_string().contains("[baremetal.x]: `kexec` is not a variant of the install step"), "{e}");
    }

    #[test]
    fn servers_file() {
        let s = parse_servers("# comment\nsrv1 4\nsrv2\n\nsrv3 all # rest\n", Path::new("s.txt")).unwrap();
        assert_eq!(s, vec![("srv1".into(), Some(4)), ("srv2".into(), None), ("srv3".into(), None)]);
        let e = parse_servers("a 4\nb x\nc 1 2\n", Path::new("s.txt")).unwrap_err().to_string();
        assert!(e.contains("s.txt:2:3: `x` is not a number"), "{e}");
        assert!(e.contains("s.txt:3:1"), "{e}");
    }

    #[test]
    fn nodesets_round_trip() {
        let hosts = expand_nodeset("h[1-3,7],node[08-10],x").unwrap();
        assert_eq!(hosts, ["h1", "h2", "h3", "h7", "node08", "node09", "node10", "x"]);
        assert_eq!(fold_nodeset(&hosts), "x,h[1-3,7],node[08-10]");
        assert!(expand_nodeset("h[3-1]").is_err());
        assert!(expand_nodeset("h[1-").is_err());
        assert_eq!(expand_nodeset("r[1-2]n[08-09]x,h1,h1").unwrap(), ["r1n08x", "r1n09x", "r2n08x", "r2n09x", "h1"]);
        let big = ["h99999999999999999999999".to_string(), "h18446744073709551615".to_string(), "h18446744073709551614".to_string()];
        assert_eq!(fold_nodeset(&big), "h99999999999999999999999,h[18446744073709551614-18446744073709551615]");
    }

    /// Row 10: `-w 'x]1[2'` panicked (begin > end). Every malformed set is
    /// an error that says what is wrong.
    #[test]
    fn malformed_node_sets_are_errors_not_panics() {
        let cases = [
            ("x]1[2", "`]` without `[` at column 2"),
            ("h[1-2", "`[` at column 2 without `]`"),
            ("h[1[2]]", "`[` inside `[...]`"),
            ("h]", "`]` without `[`"),
            ("[", "without `]`"),
            ("h[]", "empty `[]`"),
            ("h[1,]", "`` is not a number or a range"),
            ("h[-3]", "is not a number or a range"),
            ("h[1-]", "is not a number or a range"),
            ("h[a-b]", "`a` is not a number"),
            ("h[+1-2]", "`+1` is not a number"),
            ("h[1-2-3]", "`2-3` is not a number"),
            ("h[3-1]", "the range 3-1 goes backwards"),
            ("h[99999999999999999999-1]", "99999999999999999999 is too large"),
            ("h[0-18446744073709551615]", "more than 100000 names"),
            ("h[1-100001]", "more than 100000 names"),
            ("a[1-60000],b[1-60000]", "more than 100000 names"),
            ("a[1-1000]b[1-1000]", "more than 100000 names"),
            ("", "an empty name"),
            ("a,,b", "an empty name"),
            ("a,", "an empty name"),
            (",a", "an empty name"),
            ("a b", "holds a space"),
            ("-oProxy", "starts with `-`"),
            ("h\u{1b}[31m", "h\\u{1b}"),
        ];
        for (spec, want) in cases {
            let e = expand_nodeset(spec).expect_err(spec);
            assert!(e.contains(want), "{spec:?}: {e}");
            assert!(!e.contains('\u{1b}'), "{spec:?}: {e}");
        }
        assert_eq!(expand_nodeset("h[1-100000]").unwrap().len(), 100_000);
        assert_eq!(expand_nodeset("h[18446744073709551615]").unwrap(), ["h18446744073709551615"]);
    }

    #[test]
    fn sizes_parse_without_overflow() {
        assert_eq!(parse_mib("8G"), Some(8192));
        assert_eq!(parse_mib(" 512m "), Some(512));
        assert_eq!(parse_mib("1T"), Some(1 << 20));
        assert_eq!(parse_mib("1024"), Some(1024));
        assert_eq!(parse_mib("18446744073709551615"), Some(u64::MAX));
        for bad in ["18446744073709551615G", "17592186044416T", "99999999999999999999", "", "G", "-1G", "+5", "1.5G", "8 GB", "é"] {
            assert_eq!(parse_mib(bad), None, "{bad}");
        }
    }

    fn toml(text: &str) -> Result<Fabric, ConfigError> {
        Fabric::parse(text, Path::new("f.toml"), |p| if p.ends_with("servers.txt") { Ok("h9 2\n".into()) } else { Err(ConfigError::Invalid(vec![format!("no {}", p.display())])) })
    }

    #[test]
    fn numbers_out_of_range_are_refused_with_the_setting_named() {
        let cases = [
            ("[defaults]\nmemory = \"18446744073709551615G\"\n", "defaults: memory `18446744073709551615G` is not a size"),
            ("[hosts.h1]\nmemory = \"2000000T\"\n", "h1: memory `2000000T` is out of range"),
            ("[hosts.h1]\nmemory = \"0\"\n", "h1: memory `0` is out of range"),
            ("[hosts.h1]\nmax_vms = 4000000000\n", "h1: max_vms 4000000000 is over the limit of 100000"),
            ("[hosts.h1]\nmax_vms = 5000000000\n", "max_vms"),
            ("[hosts.h1]\nvcpus = 0\n", "h1: vcpus 0 is out of range"),
            ("[defaults]\nvcpus = 4294967295\n", "defaults: vcpus 4294967295 is out of range"),
            ("[defaults]\nport = 0\n", "defaults: port 0 is not a port"),
            ("[defaults]\nport = 65536\n", "port"),
            ("[defaults]\nport = -1\n", "port"),
            ("[hosts.h1]\nconnect_timeout = 0\n", "h1: connect_timeout 0 is out of range"),
            ("[hosts.h1]\nconnect_timeout = 18446744073709551615\n", "h1: connect_timeout 18446744073709551615 is out of range"),
            ("fanout = 0\n", "fanout must be from 1 to 4096, not 0"),
            ("fanout = 100000\n", "fanout must be from 1 to 4096, not 100000"),
            ("fanout = -3\n", "fanout"),
            ("[hosts.\"-oProxyCommand=x\"]\n", "service host name `-oProxyCommand=x` holds `=`"),
            ("[hosts.\"a b\"]\n", "holds a space"),
            ("[hosts.h1]\naddress = \"-oProxyCommand=x\"\n", "h1: address `-oProxyCommand=x` is not a host name"),
            ("[hosts.h1]\naddress = \"a\\u001b[2J\"\n", "address `a\\u{1b}[2J`"),
            ("servers = \"missing.txt\"\n", "no missing.txt"),
        ];
        for (text, want) in cases {
            let e = toml(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text}: {e}");
            assert!(e.starts_with("f.toml: ") || e.starts_with("no "), "{text}: {e}");
        }
        let f = toml("servers = \"servers.txt\"\nfanout = 4096\n[defaults]\nport = 65535\nmemory = \"1048576G\"\nvcpus = 1048576\nconnect_timeout = 3600\n[hosts.h1]\nmax_vms = 100000\naddress = \"fe80::1%eth0\"\n").unwrap();
        assert_eq!(f.names(), ["h9", "h1"]);
        let h1 = f.server("h1");
        assert_eq!((h1.port, h1.memory_mib, h1.vcpus, h1.max_vms, h1.connect_timeout), (65535, Some(MAX_MEMORY_MIB), Some(MAX_VCPUS), Some(100_000), 3600));
        let e = parse_servers("h1 100001\nh2 99999999999\n-x 2\nok 100000\n", Path::new("s.txt")).unwrap_err().to_string();
        assert!(e.contains("s.txt:1:4: 100001 VMs is over the limit of 100000"), "{e}");
        assert!(e.contains("s.txt:2:4: `99999999999` is not a number of VMs"), "{e}");
        assert!(e.contains("s.txt:3:1: service host name `-x` starts with `-`"), "{e}");
    }

    #[test]
    fn toml_settings_layer_over_defaults_and_servers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("servers.txt"), "h1 4\nh2 2\n").unwrap();
        let f = dir.path().join("fabric.toml");
        std::fs::write(
            &f,
            "servers = \"servers.txt\"\nfanout = 3\n[defaults]\nuser = \"admin\"\nport = 2222\n[hosts.h1]\naddress = \"10.0.0.1\"\nmemory = \"2G\"\n[hosts.h3]\nmax_vms = 1\n",
        )
        .unwrap();
        let fab = Fabric::load(&f).unwrap();
        assert_eq!(fab.names(), ["h1", "h2", "h3"]);
        assert_eq!(fab.fanout, 3);
        let h1 = fab.server("h1");
        assert_eq!((h1.address.as_str(), h1.user.as_str(), h1.port, h1.max_vms, h1.memory_mib), ("10.0.0.1", "admin", 2222, Some(4), Some(2048)));
        assert_eq!(fab.server("h2").address, "h2");
        assert_eq!(fab.server("h3").max_vms, Some(1));
        std::fs::write(&f, "[hosts.h1]\nadress = \"x\"\n").unwrap();
        let e = Fabric::load(&f).unwrap_err().to_string();
        assert!(e.contains("adress"), "{e}");
    }
}
