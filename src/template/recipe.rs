//! The recipe: a small TOML file that says what a template is made of.
//! Every value in it is untrusted (a recipe may come from anywhere) and is
//! checked here before anything runs, except `commands`, which are shell
//! lines run inside the guest's root by design: a recipe is a program for
//! the guest, as a Dockerfile is.

use super::error::TemplateError;
use serde::Deserialize;
use std::path::Path;

/// The recipes shipped with mln, by name.
pub const SHIPPED: &[(&str, &str)] = &[
    ("debian-12", include_str!("../../recipes/debian-12.toml")),
    ("debian-12-openmpi", include_str!("../../recipes/debian-12-openmpi.toml")),
];

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// The template's name (`--name` overrides it).
    pub name: String,
    /// Only `debian` is built (by mmdebstrap).
    pub distribution: String,
    pub suite: String,
    #[serde(default = "default_mirror")]
    pub mirror: String,
    #[serde(default = "default_components")]
    pub components: Vec<String>,
    /// The root file system's size, e.g. `2G` or `1536M`; guests' disks
    /// may be larger (cloud-init grows the file system at first boot).
    pub size: String,
    /// Kernel command line after `root=/dev/vda rw`.
    #[serde(default = "default_cmdline")]
    pub cmdline: String,
    pub packages: Vec<String>,
    /// Leave manuals, info pages, translations and documentation out of
    /// the root (copyright notices stay).
    #[serde(default = "yes")]
    pub slim: bool,
    #[serde(default)]
    pub files: Vec<RecipeFile>,
    #[serde(default)]
    pub commands: Vec<String>,
}

#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RecipeFile {
    pub path: String,
    pub content: String,
    #[serde(default)]
    pub mode: Option<String>,
}

fn yes() -> bool {
    true
}

fn default_mirror() -> String {
    "http://deb.debian.org/debian".into()
}

fn default_components() -> Vec<String> {
    vec!["main".into()]
}

fn default_cmdline() -> String {
    "console=ttyS0 quiet no_timer_check".into()
}

/// A recipe and the exact text it was read from (hashed into the manifest).
#[derive(Clone, Debug)]
pub struct Loaded {
    pub recipe: Recipe,
    pub text: String,
    /// Where it came from: a path, or `shipped:NAME`.
    pub origin: String,
}

/// `arg` as a file if one is there, else a shipped recipe of that name.
pub fn load(arg: &str) -> Result<Loaded, TemplateError> {
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path).map_err(TemplateError::io("read recipe", path))?;
        let recipe = parse(&text, arg)?;
        return Ok(Loaded { recipe, text, origin: path.display().to_string() });
    }
    match SHIPPED.iter().find(|(n, _)| *n == arg) {
        Some((n, text)) => Ok(Loaded { recipe: parse(text, n)?, text: text.to_string(), origin: format!("shipped:{n}") }),
        None => Err(TemplateError::UnknownRecipe { name: arg.to_string(), shipped: SHIPPED.iter().map(|(n, _)| n.to_string()).collect() }),
    }
}

/// Parses and checks a recipe; `source_name` is for messages.
pub fn parse(text: &str, source_name: &str) -> Result<Recipe, TemplateError> {
    let bad = |message: String| TemplateError::Recipe { source_name: source_name.to_string(), message };
    let r: Recipe = toml::from_str(text).map_err(|e| bad(e.to_string()))?;
    crate::name::check(crate::name::NameKind::Template, &r.name).map_err(|e| bad(e.to_string()))?;
    if r.distribution != "debian" {
        return Err(bad(format!("distribution `{}` is not built (only `debian`)", crate::term::escape(&r.distribution))));
    }
    if !is_word(&r.suite) {
        return Err(bad(format!("suite `{}`: a suite is lower-case letters, digits and `-`", crate::term::escape(&r.suite))));
    }
    for c in &r.components {
        if !is_word(c) {
            return Err(bad(format!("component `{}`: lower-case letters, digits and `-` only", crate::term::escape(c))));
        }
    }
    check_mirror(&r.mirror).map_err(bad)?;
    size_bytes(&r.size).map_err(bad)?;
    if r.cmdline.chars().any(|c| c.is_control()) || r.cmdline.len() > 1024 {
        return Err(bad("cmdline: one line of at most 1024 bytes".into()));
    }
    if r.packages.is_empty() {
        return Err(bad("packages: the list is empty (a guest needs at least a kernel)".into()));
    }
    for p in &r.packages {
        if !is_package(p) {
            return Err(bad(format!("package `{}` is not a Debian package name", crate::term::escape(p))));
        }
    }
    for f in &r.files {
        guest_path(&f.path).map_err(|m| bad(format!("file `{}`: {m}", crate::term::escape(&f.path))))?;
        if let Some(m) = &f.mode {
            mode(m).map_err(|m| bad(format!("file `{}`: {m}", crate::term::escape(&f.path))))?;
        }
    }
    if r.commands.iter().any(|c| c.contains('\0')) {
        return Err(bad("commands: a command holds a NUL byte".into()));
    }
    Ok(r)
}

fn is_word(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Debian policy 5.6.1: lower-case letters, digits, `+`, `-`, `.`, at least
/// two characters, starting with a letter or digit. Nothing else reaches
/// mmdebstrap's `--include` (a comma would split it, a leading `-` would be
/// an option to apt).
pub fn is_package(s: &str) -> bool {
    s.len() >= 2
        && s.len() <= 128
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

/// An http, https or file URL without spaces, quotes or control characters
/// (it becomes a line of the guest's apt sources).
pub fn check_mirror(m: &str) -> Result<(), String> {
    let rest = ["http://", "https://", "file:///"].iter().find_map(|p| m.strip_prefix(p));
    match rest {
        None => Err(format!("mirror `{}`: an http://, https:// or file:/// URL", crate::term::escape(m))),
        Some(r) if r.is_empty() || m.len() > 1024 => Err(format!("mirror `{}`: no host or path", crate::term::escape(m))),
        Some(_) if m.chars().any(|c| c.is_whitespace() || c.is_control() || matches!(c, '"' | '\'' | '\\' | '`' | '$' | ',')) => {
            Err(format!("mirror `{}` holds a space, a quote or a control character", crate::term::escape(m)))
        }
        Some(_) => Ok(()),
    }
}

/// `2G`, `1536M`, `2048K` or bytes; at least 256 MiB, at most 1 TiB.
pub fn size_bytes(s: &str) -> Result<u64, String> {
    let (num, mul) = match s.chars().last() {
        Some('G' | 'g') => (&s[..s.len() - 1], 1u64 << 30),
        Some('M' | 'm') => (&s[..s.len() - 1], 1 << 20),
        Some('K' | 'k') => (&s[..s.len() - 1], 1 << 10),
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("size `{}`: a number with K, M or G", crate::term::escape(s)))?;
    let b = n.checked_mul(mul).ok_or_else(|| format!("size `{s}` is too large"))?;
    if !((256 << 20)..=(1 << 40)).contains(&b) {
        return Err(format!("size `{s}`: between 256M and 1024G"));
    }
    Ok(b)
}

/// A file's place in the guest: absolute, normal components only, so
/// joined to the root it stays inside it.
pub fn guest_path(p: &str) -> Result<Vec<&str>, String> {
    let rest = p.strip_prefix('/').ok_or("not an absolute path")?;
    let parts: Vec<&str> = rest.split('/').collect();
    if parts.iter().any(|c| c.is_empty() || *c == "." || *c == ".." || c.contains('\0')) || p.len() > 4096 {
        return Err("a path of plain components (no `..`, `.` or `//`)".into());
    }
    Ok(parts)
}

/// An octal mode such as `0644` or `755`, permission bits only.
pub fn mode(m: &str) -> Result<u32, String> {
    let v = u32::from_str_radix(m, 8).map_err(|_| format!("mode `{}` is not octal", crate::term::escape(m)))?;
    if v > 0o7777 {
        return Err(format!("mode `{m}` has bits beyond 7777"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_recipes_parse() {
        for (n, t) in SHIPPED {
            let r = parse(t, n).unwrap();
            assert_eq!(r.name, *n);
            assert!(r.packages.iter().any(|p| p == "cloud-init"), "{n}");
        }
    }

    fn with(extra: &str) -> Result<Recipe, TemplateError> {
        parse(&format!("name = \"t\"\ndistribution = \"debian\"\nsuite = \"bookworm\"\nsize = \"1G\"\npackages = [\"linux-image-cloud-amd64\"]\n{extra}"), "test")
    }

    #[test]
    fn untrusted_values_are_refused() {
        assert!(with("").is_ok());
        let refused = [
            "commands = [\"a\\u0000\"]",
            "mirror = \"http://x/ --option\"",
            "mirror = \"ftp://x\"",
            "mirror = \"http://x/$(id)\"",
            "components = [\"main,contrib\"]",
            "cmdline = \"a\\nb\"",
            "[[files]]\npath = \"etc/x\"\ncontent = \"\"",
            "[[files]]\npath = \"/etc/../../x\"\ncontent = \"\"",
            "[[files]]\npath = \"/etc/x\"\ncontent = \"\"\nmode = \"99\"",
            "unknown = 1",
        ];
        for extra in refused {
            assert!(matches!(with(extra), Err(TemplateError::Recipe { .. })), "accepted: {extra}");
        }
        for p in ["-oDebug=1", "a,b", "A", "x", "a b", "a;b", "ñ"] {
            assert!(!is_package(p), "{p}");
        }
        for p in ["g++", "libc6", "openmpi-bin", "python3.11"] {
            assert!(is_package(p), "{p}");
        }
        let bad_name = parse("name = \"../x\"\ndistribution = \"debian\"\nsuite = \"bookworm\"\nsize = \"1G\"\npackages = [\"aa\"]", "t");
        assert!(matches!(bad_name, Err(TemplateError::Recipe { .. })));
    }

    #[test]
    fn sizes() {
        assert_eq!(size_bytes("2G"), Ok(2 << 30));
        assert_eq!(size_bytes("1536M"), Ok(1536 << 20));
        assert!(size_bytes("1M").is_err());
        assert!(size_bytes("99999999999999999G").is_err());
        assert!(size_bytes("G").is_err());
    }

    #[test]
    fn unknown_recipes_name_the_shipped_ones() {
        let e = load("no-such-recipe").unwrap_err();
        assert!(e.to_string().contains("debian-12-openmpi"), "{e}");
    }
}
