//! The one grammar for names a project file gives (projects, hosts,
//! switches, users, groups, plugins, templates, service hosts) and the one
//! door through which mln turns names into paths.
//!
//! A name becomes a directory, a lock file, a libvirt domain, a guest's
//! host name, an argument to `ip` or `qemu-img`: so it may hold only ASCII
//! letters, digits, `.`, `_` and `-`, may not start with `.` or `-` (a
//! hidden file; an option to a command), may not contain `..`, and is no
//! longer than the tightest place its kind is used. Checked at compile time
//! with a diagnostic at the name, again when a plan arrives from the wire
//! (an agent), and once more by [`inside`] before any path is made.

use std::path::{Component, Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NameKind {
    Project,
    Host,
    Switch,
    User,
    Group,
    Plugin,
    Template,
    ServiceHost,
    /// A network interface (`network eth0`) or an existing bridge: Linux
    /// allows 15 bytes.
    Interface,
    /// A bare-metal environment (`environment NAME[:VERSION]`): a
    /// directory of the state's environment library.
    Environment,
}

impl NameKind {
    /// The longest name of this kind, in bytes, and why.
    pub fn max_len(self) -> (usize, &'static str) {
        match self {
            // `<host>.<project>` is a libvirt domain and its XML file name;
            // the project is a directory and a lock file.
            NameKind::Project => (64, "project names are directories, lock files and part of every domain name"),
            // RFC 1123 labels and Linux's HOST_NAME_MAX: the guest's host name.
            NameKind::Host => (63, "a host name is the guest's host name (at most 63 bytes)"),
            NameKind::Switch => (64, "switch names are kept short"),
            // useradd and cloud-init refuse longer names.
            NameKind::User | NameKind::Group => (32, "Linux user and group names are at most 32 bytes"),
            NameKind::Plugin => (64, "plugin names are file names"),
            NameKind::Template => (200, "template names are file names"),
            NameKind::ServiceHost => (253, "a service host's name is a DNS name"),
            NameKind::Interface => (15, "Linux interface names are at most 15 bytes"),
            NameKind::Environment => (64, "environment names are directories of the environment library"),
        }
    }

    pub fn noun(self) -> &'static str {
        match self {
            NameKind::Project => "project name",
            NameKind::Host => "host name",
            NameKind::Switch => "switch name",
            NameKind::User => "user name",
            NameKind::Group => "group name",
            NameKind::Plugin => "plugin name",
            NameKind::Template => "template name",
            NameKind::ServiceHost => "service host name",
            NameKind::Interface => "interface name",
            NameKind::Environment => "environment name",
        }
    }
}

/// Why a name was refused, and what would do instead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadName {
    pub message: String,
    pub help: String,
}

impl std::fmt::Display for BadName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.help)
    }
}

impl std::error::Error for BadName {}

const ALLOWED: &str = "letters, digits, `.`, `_` and `-`";

/// Whether `s` is a valid name of `kind`.
pub fn check(kind: NameKind, s: &str) -> Result<(), BadName> {
    let noun = kind.noun();
    let bad = |message: String, help: &str| Err(BadName { message, help: help.to_string() });
    let shown = crate::term::escape(s);
    if s.is_empty() {
        return bad(format!("empty {noun}"), "give it a name");
    }
    if let Some(c) = s.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))) {
        let what = match c {
            '/' => "`/`".to_string(),
            c if c.is_control() => format!("a control character ({})", c.escape_default()),
            c if c.is_whitespace() => "a space".to_string(),
            c => format!("`{c}`"),
        };
        return bad(format!("{noun} `{shown}` holds {what}"), &format!("a name may hold only {ALLOWED}"));
    }
    if s.starts_with('.') || s.starts_with('-') {
        return bad(format!("{noun} `{shown}` starts with `{}`", &s[..1]), "a name starts with a letter, a digit or `_`");
    }
    if s.contains("..") {
        return bad(format!("{noun} `{shown}` contains `..`"), "use single dots only");
    }
    let (max, why) = kind.max_len();
    if s.len() > max {
        return bad(format!("{noun} is {} bytes long, over the limit of {max}", s.len()), why);
    }
    if kind == NameKind::User || kind == NameKind::Group {
        // useradd refuses names that start with a digit (they read as ids).
        if s.starts_with(|c: char| c.is_ascii_digit()) {
            return bad(format!("{noun} `{shown}` starts with a digit"), "user and group names start with a letter or `_`");
        }
    }
    Ok(())
}

/// [`check`] as a diagnostic (`mln::name::invalid`) pointing at `span`,
/// for a name read from a project file. `noun` replaces the kind's own
/// word in the message where one grammar serves two things (a superclass
/// is named like a host).
pub fn diagnose(kind: NameKind, noun: Option<&str>, s: &str, span: crate::source::Span) -> Option<crate::diag::Diagnostic> {
    let bad = check(kind, s).err()?;
    let message = match noun {
        Some(n) => bad.message.replacen(kind.noun(), n, 1),
        None => bad.message,
    };
    let label = format!("not a valid {}", noun.unwrap_or(kind.noun()));
    Some(crate::diag::Diagnostic::error(INVALID, message).label(span, label).help(bad.help))
}

/// The code of every diagnostic about a name.
pub const INVALID: &str = "mln::name::invalid";

/// Every name of a plan: the check a plan that came over the wire gets
/// before anything is made from it.
pub fn check_plan(plan: &crate::plan::Plan) -> Result<(), BadName> {
    check(NameKind::Project, &plan.project)?;
    for h in &plan.hosts {
        check(NameKind::Host, &h.name)?;
        check(NameKind::Template, &h.template)?;
        if let Some(s) = &h.service_host {
            check(NameKind::ServiceHost, s)?;
        }
        for u in &h.users {
            check(NameKind::User, &u.name)?;
        }
        for g in &h.groups {
            check(NameKind::Group, &g.name)?;
        }
        for i in &h.interfaces {
            check(NameKind::Interface, &i.name)?;
            if let Some(b) = &i.bridge {
                check(NameKind::Interface, b)?;
            }
        }
        for p in h.plugins.keys().chain(h.plugin_settings.keys()) {
            check(NameKind::Plugin, p)?;
        }
    }
    for s in &plan.switches {
        check(NameKind::Switch, &s.name)?;
        // A bridge given to attach to (mln's own are hashes it made).
        if s.attach {
            check(NameKind::Interface, &s.bridge)?;
        }
    }
    Ok(())
}

/// A path derived from names that would lie outside its root.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Escape {
    pub root: PathBuf,
    pub part: String,
    pub why: &'static str,
}

impl std::fmt::Display for Escape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refusing a path under {} from `{}`: {}", self.root.display(), crate::term::escape(&self.part), self.why)
    }
}

impl std::error::Error for Escape {}

/// `root/part/part/...`, proven to lie inside `root`: every part is one
/// plain path component (no `/`, not `.` or `..`, not empty, no NUL), and
/// no part below `root` that exists already is a symbolic link (which
/// could point anywhere). Every path mln derives from a name goes through
/// here before anything is created, written or removed.
pub fn inside(root: &Path, parts: &[&str]) -> Result<PathBuf, Escape> {
    let esc = |part: &str, why| Escape { root: root.to_path_buf(), part: part.to_string(), why };
    let mut out = root.to_path_buf();
    for part in parts {
        if part.is_empty() {
            return Err(esc(part, "an empty name"));
        }
        if part.contains('\0') {
            return Err(esc(part, "a NUL byte"));
        }
        let mut comps = Path::new(part).components();
        match (comps.next(), comps.next()) {
            (Some(Component::Normal(c)), None) if c == std::ffi::OsStr::new(part) => {}
            _ => return Err(esc(part, "not a single plain file name")),
        }
        if part.len() > 255 {
            return Err(esc(part, "longer than a file name may be (255 bytes)"));
        }
        out.push(part);
        if std::fs::symlink_metadata(&out).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(esc(part, "a symbolic link"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_or_confuse_are_refused() {
        for bad in ["", "..", ".", "a/b", "/tmp/x", "../x", "a..b", ".hidden", "-rf", "a b", "a\u{1b}[2Jb", "é", "a\0b"] {
            assert!(check(NameKind::Host, bad).is_err(), "{bad:?} accepted");
            assert!(check(NameKind::Project, bad).is_err(), "{bad:?} accepted");
        }
        for good in ["node01", "a1", "web-1.lab", "_x", "Debian-4.0.ext3", "mpi_cluster"] {
            assert!(check(NameKind::Project, good).is_ok(), "{good:?} refused");
        }
        assert!(check(NameKind::Host, &"a".repeat(63)).is_ok());
        assert!(check(NameKind::Host, &"a".repeat(64)).is_err());
        assert!(check(NameKind::Interface, "eth0").is_ok());
        assert!(check(NameKind::Interface, "a-very-long-name0").is_err());
        assert!(check(NameKind::User, "1bob").is_err());
    }

    #[test]
    fn paths_stay_inside_their_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        assert_eq!(inside(root, &["p", "h"]).unwrap(), root.join("p").join("h"));
        for bad in ["..", ".", "", "a/b", "/etc", "a\0b"] {
            assert!(inside(root, &["p", bad]).is_err(), "{bad:?} accepted");
        }
        std::os::unix::fs::symlink("/tmp", root.join("link")).unwrap();
        let e = inside(root, &["link", "x"]).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }
}
